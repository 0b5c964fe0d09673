"""Evaluate a checkpoint written by `src.train`: generation metrics and predictions on a split.

python -m src.eval ckpt_path=outputs/runs/<run>/checkpoints/last.ckpt
python -m src.eval ckpt_path=... split=validation decoding.num_beams=1
python -m src.eval -m ckpt_path=... decoding.num_beams=1,4   # a decoding sweep: decoding.md picks the best
"""

from __future__ import annotations

import logging
from pathlib import Path

import hydra
from hydra import compose
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from src.config.hydra_errors import hydra_entry
from src.config.schema import EvalConfig, TrainConfig, eval_config, stored_train_config, train_config
from src.models.restore import load_module
from src.models.spec import paper_row
from src.run import record
from src.run.assemble import assemble, evaluate
from src.run.loggers import finish_wandb, flatten, log_results_to_wandb, logger_for
from src.run.record import RunLock
from src.run.run_record import RunRecord
from src.system.errors import UserError, report_user_errors
from src.system.outputs import results_table
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


def run_eval(cfg: DictConfig) -> RunRecord:
    """Load the checkpoint and evaluate with the training run's data and decoding settings (or those given); one
    process at a time in its output directory (`RunLock`)."""
    config = eval_config(cfg)  # every key's rule, before anything loads
    with RunLock(Path(config.output_dir)):
        return _run_eval(config)


def _run_eval(config: EvalConfig) -> RunRecord:
    splits = eval_splits(config.split, is_multirun())
    setup_process(config.reuse_host_memory)
    group = None  # the training run's W&B group
    if config.pretrained_seq2seq:
        module, run = None, saved_model_run(config)
    elif config.ckpt_path:
        module = load_module(config.ckpt_path)
        run = stored_train_config(module.run_config)
        group = module.run_config.get("wandb_group")
    else:
        raise UserError(
            "nothing to evaluate. Fix: ckpt_path=<run>/checkpoints/best.ckpt, or pretrained_seq2seq=DIR data=<task>."
        )
    if config.data_path is not None:
        run.data.path = config.data_path
    if config.eval_batch_size is not None:
        run.data.eval_batch_size = config.eval_batch_size
    if config.precision is not None:
        run.trainer.precision = config.precision
    # one device, whatever trained
    run.trainer.accelerator, run.trainer.devices, run.trainer.strategy, run.trainer.num_nodes = (
        "auto",
        1,
        "auto",
        1,
    )
    parts = assemble(
        run, module=module, callbacks=[], splits=splits, logger=False, enable_checkpointing=False
    )
    module = parts.module
    # as the run decoded, unless decoding.* says otherwise
    module.decoding = module.decoding.override(config.decoding)
    out = Path(config.output_dir)
    result = record.evaluation(
        run,
        # what was evaluated: the same choice as above (pretrained_seq2seq wins over ckpt_path)
        model=config.pretrained_seq2seq,
        ckpt_path=None if config.pretrained_seq2seq else str(Path(config.ckpt_path).resolve()),
        params=module.budget.as_dict(),
        decoding=module.decoding.kwargs(),
        scoring=module.scoring,
    )
    by_split, outputs = {}, {}
    for split in splits:
        by_split[split] = evaluate(parts.trainer, module, parts.datamodule, split=split)
        outputs[split] = module.test_outputs  # distinct share, repeated 3-grams, length ratio
        name = "predictions.jsonl" if split == splits[-1] else f"predictions.{split}.jsonl"
        record.write_predictions(out / name, module.test_predictions)
        setattr(result, split, by_split[split])  # each split's scores under its name (EVALUATED_SPLITS)
    last = splits[-1]  # test when it was evaluated: predictions.jsonl is the test split's
    result.split, result.outputs, result.test_outputs = last, outputs, outputs.get("test")
    # src.report reads a saved model's test as a row (the paper's, if released)
    if config.pretrained_seq2seq and "test" in by_split:
        result.data, result.variant = run.data.name, paper_row(config.pretrained_seq2seq)
    # every split asked for is scored: src.report counts the directory as done
    result.status = "completed"
    record.write_record(out, result)
    logger = eval_logger(config, run, group, out, last)
    if logger:
        log_results_to_wandb(logger, result, out, module.test_predictions, split=last)
        finish_wandb()
    names = sorted(by_split[last])
    log.info("%s (%s):\n%s", run.run_name, module.decoding, results_table(by_split, names))
    log.info("written: %s (metrics.json, predictions.jsonl)", out)
    return result


def saved_model_run(config: EvalConfig) -> TrainConfig:
    """The `src.train` config of `pretrained_seq2seq` on the `data=` task (its decoding and metrics), to evaluate."""
    task = HydraConfig.get().runtime.choices.get("data") if HydraConfig.initialized() else None
    if not task:
        raise UserError(
            "pretrained_seq2seq needs the task to evaluate on. Fix: add data=<option>, e.g. data=synthetic."
        )
    overrides = [f"pretrained_seq2seq={config.pretrained_seq2seq}", f"data={task}", "logger=none"]
    run = train_config(compose("train", overrides=overrides))
    run.data = config.data  # the task as composed here, with this command's data.* overrides
    run.pretrained_usage = config.pretrained_usage
    run.output_dir = config.output_dir
    return run


def eval_logger(config: EvalConfig, run: TrainConfig, group: str | None, out: Path, split: str):
    """A W&B run of job_type `eval` when the training run logged to W&B (or `logger=wandb`), else None."""
    kind = (config.logger.kind if config.logger is not None else None) or run.logger.kind
    if kind != "wandb":
        return None
    return logger_for(
        run,
        "wandb",
        save_dir=out,
        name=f"{run.run_name}-eval-{split}",
        group=group,
        job_type="eval",
        config={"ckpt_path": str(config.ckpt_path), "split": split, **flatten(run.as_dict())},
        mode=config.logger_mode,
    )


@hydra_entry  # Hydra's own errors (an unknown key, a missing option) as one line, exit 2
@hydra.main(version_base="1.3", config_path="../conf", config_name="eval")
def main(cfg: DictConfig) -> None:
    with report_user_errors():
        run_eval(cfg)


if __name__ == "__main__":
    main()
