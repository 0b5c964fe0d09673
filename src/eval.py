"""Evaluate a checkpoint written by `src.train`: generation metrics and predictions on one split.

python -m src.eval ckpt_path=outputs/runs/<run>/checkpoints/last.ckpt
python -m src.eval ckpt_path=... split=validation
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import hydra  # noqa: E402
import lightning as L  # noqa: E402
from omegaconf import DictConfig, OmegaConf  # noqa: E402

from src.errors import UserError, report_user_errors  # noqa: E402
from src.hardware import resolve_precision  # noqa: E402
from src.loggers import build_logger, finish_wandb, flatten  # noqa: E402
from src.models.module import Seq2SeqModule  # noqa: E402
from src.outputs import results_table, write_json, write_predictions  # noqa: E402
from src.precision import precision_args  # noqa: E402
from src.train import build_datamodule, evaluate, log_results_to_wandb, tune_process  # noqa: E402

log = logging.getLogger(__name__)


def run_eval(cfg: DictConfig) -> dict:
    """Load the checkpoint (offline: it carries its architecture and tokenizers) and evaluate one split."""
    if cfg.split not in ("test", "validation"):
        raise UserError(f"split={cfg.split!r} is not evaluable. Fix: split=test or split=validation.")
    tune_process(cfg)
    module = Seq2SeqModule.load_run(cfg.ckpt_path)
    run = OmegaConf.create(module.run_config)
    data = run.data
    if cfg.data_path is not None:
        data.path = cfg.data_path
    if cfg.eval_batch_size is not None:
        data.eval_batch_size = cfg.eval_batch_size
    datamodule = build_datamodule(data, module, run.seed)
    datamodule.prepare([cfg.split])
    if cfg.split == "validation":  # Lightning's test loop runs whatever test_dataloader returns
        datamodule.test_dataloader = datamodule.val_dataloader
    trainer = L.Trainer(
        accelerator="auto",
        devices=1,
        **precision_args(resolve_precision(run.trainer.precision)),
        logger=False,
        enable_checkpointing=False,
        enable_model_summary=False,
    )
    metrics = evaluate(trainer, module, datamodule)
    out = Path(cfg.output_dir)
    logger = eval_logger(cfg, run, out)
    result = {
        "ckpt_path": str(Path(cfg.ckpt_path).resolve()),
        "split": cfg.split,
        "run_name": run.run_name,
        "metrics": metrics,
    }
    write_json(out / "metrics.json", result)
    write_predictions(out / "predictions.jsonl", module.test_predictions)
    if logger:
        log_results_to_wandb(
            logger,
            {"test": metrics, "params": module.budget.as_dict(), "status": "completed"},
            out,
            module.test_predictions,
            split=cfg.split,
        )
        finish_wandb()
    log.info("%s on %s:\n%s", run.run_name, cfg.split, results_table({cfg.split: metrics}, sorted(metrics)))
    log.info("written: %s (metrics.json, predictions.jsonl)", out)
    return result


def eval_logger(cfg: DictConfig, run: DictConfig, out: Path):
    """A W&B run of job_type `eval` when the training run logged to W&B (or `logger=wandb`), else None."""
    kind = cfg.logger or run.get("logger", {}).get("kind", "none")
    if kind != "wandb":
        return None
    lc = run.get("logger") or {}
    return build_logger(
        "wandb",
        save_dir=str(out),
        name=f"{run.run_name}-eval-{cfg.split}",
        group=run.get("wandb_group"),
        tags=[run.encoder.name, run.decoder.name, run.sharing.mode, run.data.name, run.get("variant")],
        job_type="eval",
        config={"ckpt_path": str(cfg.ckpt_path), "split": cfg.split, **flatten(OmegaConf.to_container(run))},
        project=lc.get("project", "warmstart"),
        entity=lc.get("entity"),
        mode=cfg.logger_mode or lc.get("mode", "auto"),
    )


@hydra.main(version_base="1.3", config_path="../conf", config_name="eval")
def main(cfg: DictConfig) -> None:
    with report_user_errors():
        run_eval(cfg)


if __name__ == "__main__":
    main()
