"""Train, validate and test a warm-started encoder-decoder model.

python -m src.train experiment=demo                                    # offline demo (minilm2minilm)
python -m src.train encoder=bert decoder=gpt2                          # needs the Hugging Face Hub
python -m src.train encoder=minilm decoder=minilm sharing=shared data=synthetic
python -m src.train data=jsonl data.path=DIR trainer.max_steps=5000
python -m src.train -m encoder=minilm,rnd decoder=minilm               # a sweep
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import time
import traceback
from pathlib import Path

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import hydra  # noqa: E402
import lightning as L  # noqa: E402
from hydra.core.hydra_config import HydraConfig  # noqa: E402
from hydra.types import RunMode  # noqa: E402
from hydra.utils import instantiate  # noqa: E402
from omegaconf import DictConfig, OmegaConf  # noqa: E402

from src.callbacks import (  # noqa: E402
    Interrupted,
    ResumableOrder,
    SaveOnSignal,
    Throughput,
    ValidationExamples,
    progress_callbacks,
)
from src.data.datamodule import Seq2SeqDataModule  # noqa: E402
from src.errors import UserError, report_user_errors  # noqa: E402
from src.gpu_lease import lease_device  # noqa: E402
from src.hardware import keep_freed_host_memory, resolve_precision  # noqa: E402
from src.loggers import build_logger, finish_wandb, flatten, git_commit  # noqa: E402
from src.models.module import Seq2SeqModule  # noqa: E402
from src.outputs import results_table, write_json, write_predictions  # noqa: E402
from src.precision import precision_args  # noqa: E402

log = logging.getLogger(__name__)
CONF = Path(__file__).resolve().parents[1] / "conf"


def build_module(cfg: DictConfig) -> Seq2SeqModule:
    """The LightningModule from the encoder/decoder/sharing/optimizer/data groups."""
    # A random side that names no checkpoint takes the other side's architecture and vocabulary, else BERT's.
    decoder_only = cfg.encoder.name == "none"
    fallback = cfg.encoder.checkpoint or cfg.decoder.checkpoint or cfg.checkpoints.bert
    return Seq2SeqModule(
        model={
            "encoder_checkpoint": None
            if decoder_only
            else cfg.encoder.checkpoint or (None if cfg.encoder.pretrained else fallback),
            "decoder_checkpoint": cfg.decoder.checkpoint or (None if cfg.decoder.pretrained else fallback),
            "encoder_pretrained": cfg.encoder.pretrained,
            "decoder_pretrained": cfg.decoder.pretrained,
            "sharing": cfg.sharing.mode,
            "decoder_only": decoder_only,
            "encoder_max_positions": cfg.encoder.get("max_positions"),
            "decoder_max_positions": cfg.decoder.get("max_positions"),
        },
        optimizer=OmegaConf.to_container(cfg.optimizer),
        generation=OmegaConf.to_container(cfg.data.generation),
        metrics=list(cfg.data.metrics),
        gen_val_batches=cfg.gen_val_batches,
        bleu_lowercase=cfg.data.get("bleu_lowercase", False),
        skip_nonfinite=cfg.trainer.get("skip_nonfinite", False),
    )


def build_datamodule(data: DictConfig, module: Seq2SeqModule, seed: int) -> Seq2SeqDataModule:
    """The DataModule from a `data=` config; the tokenizers and special tokens come from the model."""
    get = data.get
    synthetic = get("synthetic")
    return Seq2SeqDataModule(
        name=data.name,
        loader=data.loader,
        encoder_tokenizer=module.encoder_tokenizer,
        decoder_tokenizer=module.decoder_tokenizer,
        special_ids=module.special_ids,
        path=get("path"),
        hub_name=get("hub_name"),
        hub_config=get("hub_config"),
        hub_revision=get("hub_revision"),
        splits=OmegaConf.to_container(data.splits) if get("splits") else None,
        source_column=OmegaConf.to_object(data.source_column)
        if OmegaConf.is_config(data.source_column)
        else data.source_column,
        target_column=OmegaConf.to_object(data.target_column)
        if OmegaConf.is_config(data.target_column)
        else data.target_column,
        source_join=get("source_join", " "),
        target_join=get("target_join", " "),
        lowercase=get("lowercase", False),
        max_source_length=module.source_length(data.max_source_length, data.max_target_length),
        max_target_length=data.max_target_length,
        batch_size=data.batch_size,
        eval_batch_size=data.eval_batch_size,
        num_workers=data.num_workers,
        seed=seed,
        limit_train=get("limit_train"),
        limit_eval=get("limit_eval"),
        train_fraction=get("train_fraction"),
        validation_size=get("validation_size"),
        subset_seed=get("subset_seed", 0),
        cache_dir=get("cache_dir", ".cache/tokenized"),
        synthetic=OmegaConf.to_container(synthetic) if synthetic is not None else None,
    )


def per_device_batch_size(data: DictConfig, devices: int, accumulation: int) -> int:
    """`data.batch_size`, or the share of `data.global_batch_size` one device takes in one forward pass.

    The global batch (examples per optimizer step) is per-device batch x devices x gradient accumulation; a
    combination that does not divide it, or a batch_size that contradicts it, is refused.
    """
    batch, total = data.get("batch_size"), data.get("global_batch_size")
    if total is None:
        if batch is None:
            raise UserError(
                "data.batch_size and data.global_batch_size are both null. Fix: set one, e.g. data.batch_size=16."
            )
        return batch
    split = devices * accumulation
    fits = [a for a in (1, 2, 4, 8, 16, 32, 64) if total % (devices * a) == 0]
    fix = ", ".join(f"accumulate_grad_batches={a} -> batch {total // (devices * a)}" for a in fits[:5])
    if total % split:
        raise UserError(
            f"data.global_batch_size={total} does not divide into {devices} device(s) x "
            f"trainer.accumulate_grad_batches={accumulation}. Fix: devices x accumulation must divide {total}"
            + (f"; with {devices} device(s): {fix}." if fits else ".")
        )
    if batch is not None and batch * split != total:
        raise UserError(
            f"data.batch_size={batch} x {devices} device(s) x trainer.accumulate_grad_batches={accumulation} = "
            f"{batch * split} examples per step, not data.global_batch_size={total}. Fix: data.batch_size=null "
            f"(it follows from the global batch), or with {devices} device(s): {fix}."
        )
    return total // split


def check_protocol(cfg: DictConfig) -> None:
    """experiment=paper (protocol=rothe2020) runs one cell of the paper's tables: a task and variant it has."""
    paper = cfg.get("paper")
    if paper is None:
        return
    rows = paper.variants.split(",")
    if paper.task is None:
        tasks = sorted(p.stem for p in (CONF / "protocol_task" / "rothe2020").glob("*.yaml"))
        raise UserError(
            f"experiment=paper has no settings for data={cfg.data.name}: the paper's tasks are "
            f"{', '.join(tasks)}. Fix: data=<one of them>, or drop experiment=paper for a task of your own."
        )
    if cfg.get("variant") not in rows:
        given = f"variant={cfg.variant} is not in" if cfg.get("variant") else "a variant is needed for"
        why = f" ({paper.left_out})" if paper.get("left_out") else ""
        raise UserError(
            f"experiment=paper: {given} the paper's {paper.task} table{why}. "
            f"Fix: variant=<one of {', '.join(rows)}>."
        )


def make_trainer(cfg: DictConfig, precision: str | int | None = None, **overrides) -> L.Trainer:
    """The Lightning Trainer from `trainer=` (our own keys such as skip_nonfinite are not Trainer arguments).

    Args:
        precision: the resolved precision (`resolve_precision`); None resolves `trainer.precision` here.
            Mixed precision is given to the Trainer as a plugin that lets the fused optimizer clip gradients.
    """
    if precision is None:
        precision = resolve_precision(cfg.trainer.precision, cfg.trainer.accelerator)
    args = {k: v for k, v in cfg.trainer.items() if k not in ("skip_nonfinite", "precision")}
    return instantiate(
        OmegaConf.create(args), **precision_args(precision, cfg.trainer.accelerator), **overrides
    )


def checkpoint_to_resume(cfg: DictConfig, out: Path) -> str | None:
    """`ckpt_path` if given (it must exist), else this run's last checkpoint when `resume` is on."""
    if cfg.ckpt_path:
        path = Path(cfg.ckpt_path).expanduser()
        if not path.is_file():
            raise UserError(
                f"ckpt_path={cfg.ckpt_path} does not exist. Fix: point it at a .ckpt file, "
                f"e.g. {out / 'checkpoints' / 'last.ckpt'}, or drop it."
            )
        return str(path)
    last = out / "checkpoints" / "last.ckpt"
    if not last.is_file():
        return None
    if cfg.get("resume", True):
        log.info("resuming from %s (resume=false to start afresh)", last)
        return str(last)
    aside = out / f"checkpoints.before-{time.strftime('%Y%m%d-%H%M%S')}"
    (out / "checkpoints").rename(aside)  # starting afresh never deletes what was written
    log.info("resume=false: starting afresh; the earlier checkpoints are kept in %s", aside)
    return None


def evaluate(trainer: L.Trainer, module: Seq2SeqModule, datamodule, ckpt_path: str | None = None) -> dict:
    """Test metrics ({name: value} without the `test/` prefix); predictions stay on module.test_predictions."""
    (metrics,) = trainer.test(
        module,
        datamodule=datamodule,
        ckpt_path=ckpt_path,
        verbose=False,
        weights_only=True if ckpt_path else None,
    )
    return {k.removeprefix("test/"): float(v) for k, v in metrics.items()}


def wandb_group(cfg: DictConfig) -> str | None:
    """The sweep in a multirun (a grid is one group), else the experiment's name, else none."""
    if is_multirun():
        return cfg.sweep_name
    if HydraConfig.initialized():
        return HydraConfig.get().runtime.choices.get("experiment")
    return None


def make_logger(cfg: DictConfig, job_type: str):
    """The `logger=` choice, with the whole resolved config (flattened) and the git commit."""
    lc = cfg.logger
    config = {**flatten(OmegaConf.to_container(cfg, resolve=True)), "git_commit": git_commit()}
    return build_logger(
        lc.kind if is_launching_process() or lc.kind != "wandb" else "none",
        save_dir=cfg.output_dir,
        name=cfg.run_name,
        group=wandb_group(cfg),
        tags=[cfg.encoder.name, cfg.decoder.name, cfg.sharing.mode, cfg.data.name, cfg.get("variant")],
        job_type=job_type,
        config=config,
        project=lc.get("project", "warmstart"),
        entity=lc.get("entity"),
        mode=lc.get("mode", "auto"),
        log_model=lc.get("log_model", False),
    )


def log_results_to_wandb(
    logger, results: dict, out: Path, predictions: list[dict], split: str = "test"
) -> None:
    """Test metrics and budget into the run summary; predictions as a table and as an artifact."""
    from lightning.pytorch.loggers import WandbLogger

    if not isinstance(logger, WandbLogger):
        return
    import wandb

    run = logger.experiment
    run.summary.update(
        {
            **{f"{split}/{k}": v for k, v in results["test"].items()},
            **{f"params/{k}": v for k, v in results["params"].items()},
            "status": results["status"],
        }
    )
    columns = ["source", "reference", "prediction"]
    run.log(
        {
            f"{split}/predictions": wandb.Table(
                columns=columns, data=[[r[c] for c in columns] for r in predictions]
            )
        }
    )
    artifact = wandb.Artifact(f"predictions-{run.id}", type="predictions")
    artifact.add_file(str(out / "predictions.jsonl"))
    run.log_artifact(artifact)


def leased_devices(cfg: DictConfig):
    """A context giving `devices` for the Trainer: a leased GPU index for one-GPU jobs on a multi-GPU machine."""
    import torch

    t = cfg.trainer
    one_gpu = str(t.devices) == "1" and t.accelerator in ("auto", "gpu", "cuda")
    if cfg.get("gpu_lease", True) and one_gpu and torch.cuda.is_available() and torch.cuda.device_count() > 1:
        return _lease_as_list(torch.cuda.device_count())
    return contextlib.nullcontext(t.devices)


@contextlib.contextmanager
def _lease_as_list(n: int):
    with lease_device(n) as index:
        yield [index]


def check_ddp_launch(cfg: DictConfig) -> None:
    """Lightning starts DDP workers by re-running the command, which in a local sweep is the whole sweep."""
    strategy = str(cfg.trainer.get("strategy", ""))
    if is_multirun() and "ddp" in strategy and "SLURM_JOB_ID" not in os.environ:
        raise UserError(
            "trainer=ddp inside a local sweep (-m) is not supported: Lightning would re-run the whole sweep in each "
            "worker. Fix: run each job on its own (python -m src.train trainer=ddp ...), or sweep with "
            "hydra/launcher=slurm, where SLURM starts each job's processes, or use hydra/launcher=local "
            "(one GPU per job, jobs in parallel)."
        )


def train(cfg: DictConfig) -> dict:
    """Fit, then test the best (or last) checkpoint; writes metrics.json and predictions.jsonl.

    Returns:
        The content of metrics.json.
    """
    check_ddp_launch(cfg)
    check_protocol(cfg)
    with leased_devices(cfg) as devices:
        return _train(cfg, devices)


def tune_process(cfg: DictConfig) -> None:
    """Process-wide settings that change speed, never results (`reuse_host_memory`)."""
    if cfg.get("reuse_host_memory", True) and keep_freed_host_memory():
        log.debug("glibc keeps freed memory for reuse (reuse_host_memory=false turns it off)")


def _train(cfg: DictConfig, devices) -> dict:
    started = time.time()
    tune_process(cfg)
    L.seed_everything(cfg.seed, workers=True)
    out = Path(cfg.output_dir)
    logger = make_logger(cfg, "train")  # first, so that a job failing from here on still has its W&B run
    module = build_module(cfg)
    if logger:
        logger.log_hyperparams({f"params.{k}": v for k, v in module.budget.as_dict().items()})
    module.run_config = {**OmegaConf.to_container(cfg, resolve=True), "wandb_group": wandb_group(cfg)}
    datamodule = build_datamodule(cfg.data, module, cfg.seed)

    callbacks = [instantiate(c) for c in cfg.callbacks.values()]
    callbacks += [
        ResumableOrder(datamodule.order_state),
        SaveOnSignal(str(out / "checkpoints" / "last.ckpt")),
    ]
    progress, show_bar = progress_callbacks(cfg.progress, cfg.trainer.log_every_n_steps)
    callbacks += progress
    if cfg.logger.get("examples"):
        callbacks.append(ValidationExamples(cfg.logger.examples))
    precision = resolve_precision(cfg.trainer.precision, cfg.trainer.accelerator)
    trainer: L.Trainer = make_trainer(
        cfg,
        callbacks=callbacks,
        logger=logger,
        precision=precision,
        devices=devices,
        enable_progress_bar=show_bar and cfg.trainer.enable_progress_bar,
    )
    devices_used = trainer.num_devices * trainer.num_nodes
    datamodule.batch_size = per_device_batch_size(cfg.data, devices_used, trainer.accumulate_grad_batches)
    datamodule.prepare()  # bad data fails here, before anything is trained or written
    results: dict = {
        "status": "running",
        "run_name": cfg.run_name,
        "variant": cfg.get("variant"),
        "encoder": cfg.encoder.name,
        "decoder": cfg.decoder.name,
        "sharing": cfg.sharing.mode,
        "data": cfg.data.name,
        "seed": cfg.seed,
        "params": module.budget.as_dict(),
        "precision": str(precision),
        "batch": {  # examples per optimizer step = per_device x devices x accumulation
            "per_device": datamodule.batch_size,
            "devices": devices_used,
            "accumulation": trainer.accumulate_grad_batches,
            "global": datamodule.batch_size * devices_used * trainer.accumulate_grad_batches,
        },
    }
    if cfg.eval_before_training:
        probe = make_trainer(
            cfg,
            callbacks=[],
            logger=False,
            enable_checkpointing=False,
            precision=precision,
            devices=devices,
            enable_progress_bar=False,
        )
        results["test_before_training"] = evaluate(probe, module, datamodule)
        log.info("before training: %s", results["test_before_training"])

    resume_from = checkpoint_to_resume(cfg, out)
    start = time.perf_counter()
    try:
        trainer.fit(module, datamodule=datamodule, ckpt_path=resume_from, weights_only=True)
    except RuntimeError as err:
        if resume_from and "state_dict" in str(err):
            raise UserError(
                f"checkpoint {resume_from} belongs to another architecture than this run's "
                f"({cfg.run_name}): {str(err).splitlines()[0]}. Fix: pass a checkpoint of this model, or resume=false."
            ) from None
        raise
    results["train"] = {
        "steps": trainer.global_step,
        "wall_time_s": round(time.perf_counter() - start, 2),
        **next((c.summary() for c in callbacks if isinstance(c, Throughput)), {}),
        "nonfinite_skipped": module.nonfinite_skipped,
        "resumed_from": os.path.relpath(resume_from, out) if resume_from else None,
    }
    results["train"] = {k.removeprefix("train/"): v for k, v in results["train"].items()}
    results["data_stats"] = datamodule.stats()
    results["val"] = {
        k.removeprefix("val/"): float(v) for k, v in trainer.callback_metrics.items() if k.startswith("val/")
    }

    ckpt = trainer.checkpoint_callback
    best, last = (ckpt.best_model_path, ckpt.last_model_path) if ckpt is not None else ("", "")
    test_ckpt = (best if cfg.test_ckpt == "best" else last) or last or best or None
    results["test"] = evaluate(trainer, module, datamodule, ckpt_path=test_ckpt)
    results["test_checkpoint"] = os.path.relpath(test_ckpt, out) if test_ckpt else None
    results["status"] = "completed"
    results["started_at"], results["finished_at"] = started, time.time()
    if trainer.is_global_zero:
        write_predictions(out / "predictions.jsonl", module.test_predictions)
        write_json(out / "metrics.json", results)
        log_results_to_wandb(logger, results, out, module.test_predictions)
        show_results(results, out, [*cfg.data.metrics, "loss"])
    return results


def show_results(results: dict, out: Path, metrics: list[str]) -> None:
    shown = {"before training": results.get("test_before_training"), "after training": results["test"]}
    table = results_table({k: v for k, v in shown.items() if v}, metrics)
    log.info(
        "test results (%s, %s parameters):\n%s",
        results["run_name"],
        f"{results['params']['total'] / 1e6:.1f}M",
        table,
    )
    log.info("run directory: %s (metrics.json, predictions.jsonl, checkpoints/)", out)


def completed(out: Path) -> dict | None:
    """The metrics.json of a run directory if that run completed, else None."""
    try:
        metrics = json.loads((out / "metrics.json").read_text())
    except (OSError, ValueError):
        return None
    return metrics if metrics.get("status") == "completed" else None


def record_failure(out: Path, cfg: DictConfig, err: BaseException) -> None:
    """Mark the run failed in metrics.json (the grid report shows it) and keep the traceback in error.txt."""
    write_json(
        out / "metrics.json",
        {
            "status": "failed",
            "run_name": cfg.run_name,
            "variant": cfg.get("variant"),
            "data": cfg.data.name,
            "seed": cfg.seed,
            "error": f"{type(err).__name__}: {err}",
        },
    )
    (out / "error.txt").write_text("".join(traceback.format_exception(err)))


def is_launching_process() -> bool:
    """False in the extra processes of a DDP run (they must not write the run's files or open W&B runs)."""
    return int(os.environ.get("LOCAL_RANK", 0)) == 0 and int(os.environ.get("NODE_RANK", 0)) == 0


def is_multirun() -> bool:
    return HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN


def run(cfg: DictConfig) -> float | None:
    """Train unless this run directory already holds a completed run; a failure in a sweep is recorded, not raised.

    Returns:
        The monitored validation metric (what an Optuna sweep optimises), or None.
    """
    out = Path(cfg.output_dir)
    done = completed(out) if cfg.skip_completed and cfg.get("resume", True) else None
    if done is not None:
        log.info(
            "%s: already completed in %s, not run again (skip_completed=false or resume=false to redo it)",
            cfg.run_name,
            out,
        )
        show_results(done, out, [*cfg.data.metrics, "loss"])
    else:
        try:
            done = train(cfg)
        except Interrupted as err:
            finish_wandb(failed=True)
            write_json(
                out / "metrics.json", {"status": "interrupted", "run_name": cfg.run_name, "reason": str(err)}
            )
            log.warning("interrupted: %s. Re-run the same command to resume.", err)
            if is_multirun():
                return None
            raise SystemExit(143) from None
        except Exception as err:
            finish_wandb(failed=True)  # one W&B run per job, closed and marked failed
            if is_launching_process():
                record_failure(out, cfg, err)
            if not is_multirun():
                raise
            log.error("%s failed (%s); the sweep goes on. Details: %s", cfg.run_name, err, out / "error.txt")
            return None
        finish_wandb(failed=False)
    return done.get("val", {}).get(cfg.monitor.removeprefix("val/"))


@hydra.main(version_base="1.3", config_path="../conf", config_name="train")
def main(cfg: DictConfig) -> float | None:
    """Entry point; returns the monitored validation metric, for Hydra sweepers such as Optuna."""
    with report_user_errors():
        return run(cfg)


if __name__ == "__main__":
    main()
