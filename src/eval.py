"""Evaluate a checkpoint written by `src.train`: generation metrics and predictions on one split.

python -m src.eval ckpt_path=outputs/runs/<run>/checkpoints/last.ckpt
python -m src.eval ckpt_path=... split=validation
"""

from __future__ import annotations

import logging
from pathlib import Path

import hydra
from omegaconf import DictConfig, OmegaConf

from src.assemble import assemble, evaluate
from src.errors import UserError, report_user_errors
from src.loggers import finish_wandb, flatten, log_results_to_wandb, logger_for
from src.outputs import results_table, write_json, write_predictions
from src.process import setup_process
from src.rundir import load_module, upgrade_run_config

log = logging.getLogger(__name__)


def run_eval(cfg: DictConfig) -> dict:
    """Load the checkpoint and evaluate one split with the training run's data and decoding settings."""
    if cfg.split not in ("test", "validation"):
        raise UserError(f"split={cfg.split!r} is not evaluable. Fix: split=test or split=validation.")
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
    # one device, whatever trained
    run.trainer.update(accelerator="auto", devices=1, strategy="auto", num_nodes=1)
    parts = assemble(
        run, module=module, callbacks=[], splits=[cfg.split], logger=False, enable_checkpointing=False
    )
    module = parts.module
    metrics = evaluate(parts.trainer, module, parts.datamodule, split=cfg.split)
    out = Path(cfg.output_dir)
    # what was evaluated: the same choice as above (pretrained_seq2seq wins over ckpt_path)
    what = (
        {"model": cfg.pretrained_seq2seq}
        if cfg.pretrained_seq2seq
        else {"ckpt_path": str(Path(cfg.ckpt_path).resolve())}
    )
    result = {**what, "split": cfg.split, "run_name": run.run_name, "params": module.budget.as_dict()}
    result["metrics"] = metrics
    result["outputs"] = module.test_outputs  # distinct share, repeated 3-grams, length ratio
    write_json(out / "metrics.json", result)
    write_predictions(out / "predictions.jsonl", module.test_predictions)
    logger = eval_logger(cfg, run, out)
    if logger:
        summary = {"test": metrics, "params": module.budget.as_dict(), "status": "completed"}
        log_results_to_wandb(logger, summary, out, module.test_predictions, split=cfg.split)
        finish_wandb()
    log.info("%s on %s:\n%s", run.run_name, cfg.split, results_table({cfg.split: metrics}, sorted(metrics)))
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
    run.output_dir = cfg.output_dir
    return run


def eval_logger(cfg: DictConfig, run: DictConfig, out: Path):
    """A W&B run of job_type `eval` when the training run logged to W&B (or `logger=wandb`), else None."""
    kind = cfg.logger or run.get("logger", {}).get("kind", "none")
    if kind != "wandb":
        return None
    return logger_for(
        run,
        "wandb",
        save_dir=out,
        name=f"{run.run_name}-eval-{cfg.split}",
        group=run.get("wandb_group"),
        job_type="eval",
        config={"ckpt_path": str(cfg.ckpt_path), "split": cfg.split, **flatten(OmegaConf.to_container(run))},
        mode=cfg.logger_mode,
    )


@hydra.main(version_base="1.3", config_path="../conf", config_name="eval")
def main(cfg: DictConfig) -> None:
    with report_user_errors():
        run_eval(cfg)


if __name__ == "__main__":
    main()
