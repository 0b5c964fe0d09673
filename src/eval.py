"""Evaluate a checkpoint written by `src.train`: generation metrics and predictions on a split.

python -m src.eval ckpt_path=outputs/runs/<run>/checkpoints/last.ckpt
python -m src.eval ckpt_path=... split=validation decoding.num_beams=1
python -m src.eval -m ckpt_path=... decoding.num_beams=1,4   # a decoding sweep: decoding.md picks the best
"""

from __future__ import annotations

import logging
from pathlib import Path

import hydra
from omegaconf import DictConfig, OmegaConf

from src.config.hydra_errors import hydra_entry
from src.config.schema import eval_config
from src.models.restore import load_module, upgrade_run_config
from src.models.spec import paper_row
from src.run.assemble import assemble, evaluate
from src.run.loggers import finish_wandb, flatten, log_results_to_wandb, logger_for
from src.run.record import RunLock, run_identity, write_predictions
from src.system.errors import UserError, report_user_errors
from src.system.outputs import results_table, write_json
from src.system.process import is_multirun, setup_process

log = logging.getLogger(__name__)


def eval_splits(split, multirun: bool) -> list[str]:
    """The splits to evaluate: `split` as given (a name or a list), else test, and validation too in a sweep (the
    decoding sweep chooses on validation and reports test)."""
    if split is None:
        return ["validation", "test"] if multirun else ["test"]
    names = [split] if isinstance(split, str) else list(split)
    if not names or any(s not in ("test", "validation") for s in names):
        raise UserError(
            f"split={split!r} is not evaluable. Fix: split=test, validation or [validation,test]."
        )
    return sorted(set(names), key=["validation", "test"].index)


def run_eval(cfg: DictConfig) -> dict:
    """Load the checkpoint and evaluate with the training run's data and decoding settings (or those given); one
    process at a time in its output directory (`RunLock`)."""
    eval_config(cfg)  # every key's rule, before anything loads
    with RunLock(Path(cfg.output_dir)):
        return _run_eval(cfg)


def _run_eval(cfg: DictConfig) -> dict:
    splits = eval_splits(cfg.split, is_multirun())
    setup_process(cfg)
    if cfg.pretrained_seq2seq:
        module, run = None, saved_model_run(cfg)
    elif cfg.ckpt_path:
        module = load_module(cfg.ckpt_path)
        run = OmegaConf.create(upgrade_run_config(module.run_config))
    else:
        raise UserError(
            "nothing to evaluate. Fix: ckpt_path=<run>/checkpoints/best.ckpt, or pretrained_seq2seq=DIR data=<task>."
        )
    if cfg.data_path is not None:
        run.data.path = cfg.data_path
    if cfg.eval_batch_size is not None:
        run.data.eval_batch_size = cfg.eval_batch_size
    if cfg.get("precision") is not None:
        run.trainer.precision = cfg.precision
    # one device, whatever trained
    run.trainer.update(accelerator="auto", devices=1, strategy="auto", num_nodes=1)
    parts = assemble(
        run, module=module, callbacks=[], splits=splits, logger=False, enable_checkpointing=False
    )
    module = parts.module
    # as the run decoded, unless decoding.* says otherwise
    module.decoding = module.decoding.override(cfg.decoding)
    out = Path(cfg.output_dir)
    # what was evaluated: the same choice as above (pretrained_seq2seq wins over ckpt_path)
    what = (
        {"model": cfg.pretrained_seq2seq}
        if cfg.pretrained_seq2seq
        else {"ckpt_path": str(Path(cfg.ckpt_path).resolve())}
    )
    try:  # what was trained (a checkpoint of an older layout may not say): src.report shows the row by it
        identity = run_identity(run)
    except Exception:  # noqa: BLE001
        identity = {}
    result = {
        **identity,
        **what,
        "run_name": run.run_name,
        "params": module.budget.as_dict(),
        "decoding": module.decoding.kwargs(),
        "scoring": module.scoring,
    }
    by_split, outputs = {}, {}
    for split in splits:
        by_split[split] = evaluate(parts.trainer, module, parts.datamodule, split=split)
        outputs[split] = module.test_outputs  # distinct share, repeated 3-grams, length ratio
        name = "predictions.jsonl" if split == splits[-1] else f"predictions.{split}.jsonl"
        write_predictions(out / name, module.test_predictions)
    last = splits[-1]  # test when it was evaluated: `metrics` and predictions.jsonl are the test split's
    # each split's scores under its name (record.EVALUATED_SPLITS)
    result.update(split=last, outputs=outputs[last], **by_split)
    if (
        cfg.pretrained_seq2seq and "test" in by_split
    ):  # src.report reads it as a row (the paper's, if released)
        result.update(data=run.data.name, variant=paper_row(cfg.pretrained_seq2seq))
    # every split asked for is scored: src.report counts the directory as done
    result["status"] = "completed"
    write_json(out / "metrics.json", result)
    logger = eval_logger(cfg, run, out, last)
    if logger:
        summary = {"test": by_split[last], "params": module.budget.as_dict(), "status": "completed"}
        log_results_to_wandb(logger, summary, out, module.test_predictions, split=last)
        finish_wandb()
    names = sorted(by_split[last])
    log.info("%s (%s):\n%s", run.run_name, module.decoding, results_table(by_split, names))
    log.info("written: %s (metrics.json, predictions.jsonl)", out)
    return result


def saved_model_run(cfg: DictConfig) -> DictConfig:
    """The `src.train` config of `pretrained_seq2seq` on the `data=` task (its decoding and metrics), to evaluate."""
    from hydra import compose
    from hydra.core.hydra_config import HydraConfig

    task = HydraConfig.get().runtime.choices.get("data") if HydraConfig.initialized() else None
    if not task:
        raise UserError(
            "pretrained_seq2seq needs the task to evaluate on. Fix: add data=<option>, e.g. data=synthetic."
        )
    overrides = [f"pretrained_seq2seq={cfg.pretrained_seq2seq}", f"data={task}", "logger=none"]
    run = compose("train", overrides=overrides)
    OmegaConf.set_struct(run, False)  # evaluation adjusts the trainer (one device) as for a run's config
    run.data = cfg.data  # the task as composed here, with this command's data.* overrides
    run.pretrained_usage = cfg.pretrained_usage
    run.output_dir = cfg.output_dir
    return run


def eval_logger(cfg: DictConfig, run: DictConfig, out: Path, split: str):
    """A W&B run of job_type `eval` when the training run logged to W&B (or `logger=wandb`), else None."""
    kind = (cfg.get("logger") or {}).get("kind") or run.get("logger", {}).get("kind", "none")
    if kind != "wandb":
        return None
    return logger_for(
        run,
        "wandb",
        save_dir=out,
        name=f"{run.run_name}-eval-{split}",
        group=run.get("wandb_group"),
        job_type="eval",
        config={"ckpt_path": str(cfg.ckpt_path), "split": split, **flatten(OmegaConf.to_container(run))},
        mode=cfg.logger_mode,
    )


@hydra_entry  # Hydra's own errors (an unknown key, a missing option) as one line, exit 2
@hydra.main(version_base="1.3", config_path="../conf", config_name="eval")
def main(cfg: DictConfig) -> None:
    with report_user_errors():
        run_eval(cfg)


if __name__ == "__main__":
    main()
