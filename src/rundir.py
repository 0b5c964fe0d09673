"""A run directory: what `metrics.json` holds, whether a run is finished, where it resumes from, failures.

<run>/metrics.json       status (running | completed | failed | interrupted), config summary, results
<run>/predictions.jsonl  test predictions (source, reference, prediction), the strings the metrics saw
<run>/checkpoints/       best.ckpt, last.ckpt (each carries the model description and tokenizers)
<run>/error.txt          the traceback of a failed run
"""

from __future__ import annotations

import json
import logging
import os
import time
import traceback
from pathlib import Path

from omegaconf import DictConfig

from src.callbacks import Throughput
from src.errors import UserError
from src.outputs import results_table, write_json, write_predictions

log = logging.getLogger(__name__)
ENCODER_TOKENIZER = (
    "encoder_tokenizer"  # where an exported model keeps its encoder's tokenizer when it differs
)


def sweep_job_dir(sweep_config: DictConfig) -> Path:
    """Where a sweep job writes: hydra.sweep.dir / hydra.sweep.subdir of its composed config."""
    return Path(str(sweep_config.hydra.sweep.dir)) / str(sweep_config.hydra.sweep.subdir)


def completed(out: Path) -> dict | None:
    """The metrics.json of a run directory if that run completed, else None."""
    try:
        metrics = json.loads((out / "metrics.json").read_text())
    except (OSError, ValueError):
        return None
    return metrics if metrics.get("status") == "completed" else None


def finished(cfg: DictConfig, out: Path) -> dict | None:
    """The completed run in `out` that this command would not run again (`skip_completed` and `resume` on)."""
    return completed(out) if cfg.get("skip_completed", True) and cfg.get("resume", True) else None


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


def run_identity(cfg: DictConfig) -> dict:
    """What a run is, as metrics.json (and the report) names it."""
    return {
        "run_name": cfg.run_name,
        "variant": cfg.get("variant"),
        "encoder": cfg.encoder.name,
        "decoder": cfg.decoder.name,
        "sharing": cfg.sharing.mode,
        "data": cfg.data.name,
        "seed": cfg.seed,
    }


def header(cfg: DictConfig, budget: dict, precision, batch: dict) -> dict:
    """The start of metrics.json: what is trained, on what, how."""
    return {
        "status": "running",
        **run_identity(cfg),
        "params": budget,
        "precision": str(precision),
        "batch": batch,  # examples per optimizer step = per_device x devices x accumulation
    }


def training_summary(trainer, module, callbacks, out: Path, resume_from: str | None, seconds: float) -> dict:
    """metrics.json's `train` section: steps, time, throughput (the Throughput callback's), skipped steps."""
    summary = next((c.summary() for c in callbacks if isinstance(c, Throughput)), {})
    section = {
        "steps": trainer.global_step,
        "wall_time_s": round(seconds, 2),
        **summary,
        "nonfinite_skipped": module.nonfinite_skipped,
        "resumed_from": os.path.relpath(resume_from, out) if resume_from else None,
    }
    return {k.removeprefix("train/"): v for k, v in section.items()}


def test_checkpoint(trainer, which: str) -> str | None:
    """The checkpoint evaluated on test: `best` or `last` (whichever exists when the other does not)."""
    ckpt = trainer.checkpoint_callback
    best, last = (ckpt.best_model_path, ckpt.last_model_path) if ckpt is not None else ("", "")
    return (best if which == "best" else last) or last or best or None


def write_completed(out: Path, results: dict, predictions: list[dict], metrics: list[str]) -> None:
    results["status"] = "completed"
    write_predictions(out / "predictions.jsonl", predictions)
    write_json(out / "metrics.json", results)
    show_results(results, out, metrics)


def show_results(results: dict, out: Path, metrics: list[str]) -> None:
    shown = {"before training": results.get("test_before_training"), "after training": results["test"]}
    table = results_table({k: v for k, v in shown.items() if v}, [*metrics, "loss"])
    log.info(
        "test results (%s, %s parameters):\n%s",
        results["run_name"],
        f"{results['params']['total'] / 1e6:.1f}M",
        table,
    )
    log.info("run directory: %s (metrics.json, predictions.jsonl, checkpoints/)", out)


def record_failure(out: Path, cfg: DictConfig, err: BaseException) -> None:
    """Mark the run failed in metrics.json (the grid report shows it) and keep the traceback in error.txt."""
    write_json(
        out / "metrics.json",
        {
            "status": "failed",
            **run_identity(cfg),
            "error": f"{type(err).__name__}: {err}",
        },
    )
    (out / "error.txt").write_text("".join(traceback.format_exception(err)))


def record_interrupted(out: Path, cfg: DictConfig, reason: str) -> None:
    write_json(out / "metrics.json", {"status": "interrupted", "run_name": cfg.run_name, "reason": reason})


# ---- checkpoints -----------------------------------------------------------------------------------------
def load_module(ckpt_path: str):
    """A checkpoint of `src.train` as a Seq2SeqModule, rebuilt offline (it carries its architecture and tokenizers)."""
    path = Path(ckpt_path).expanduser()
    if not path.is_file():
        raise UserError(
            f"checkpoint {path} does not exist. Fix: ckpt_path=outputs/<run>/checkpoints/last.ckpt"
        )
    import torch

    from src.models.module import Seq2SeqModule

    ckpt = torch.load(path, map_location="cpu", weights_only=True)
    if "seq2seq" in ckpt:  # written before the model spec (2026-11): its description is kept elsewhere
        return _legacy_module(ckpt)
    if "built" not in ckpt.get("hyper_parameters", {}):
        raise UserError(f"{path} was not written by src.train (no model description inside).")
    return Seq2SeqModule.load_from_checkpoint(path, map_location="cpu", weights_only=True)


def _legacy_module(ckpt: dict):
    """A checkpoint of the earlier layout (model arguments by checkpoint name, description under `seq2seq`)."""
    from src.models.module import Seq2SeqModule

    old, extra = ckpt["hyper_parameters"], ckpt["seq2seq"]
    m = old["model"]
    spec = {
        "encoder": None if m.get("decoder_only") else m["encoder_checkpoint"] or m["decoder_checkpoint"],
        "decoder": m["decoder_checkpoint"] or m["encoder_checkpoint"],
        "encoder_weights": "pretrained" if m.get("encoder_pretrained", True) else "random",
        "decoder_weights": "pretrained" if m.get("decoder_pretrained", True) else "random",
        "sharing": m.get("sharing", "embeddings"),
    }
    built = {"arch": extra["arch"], "tokenizers": extra["tokenizers"]}
    module = Seq2SeqModule(**{**old, "model": spec}, built=built)
    module.load_state_dict(ckpt["state_dict"])
    module.run_config = extra.get("config")
    return module


def upgrade_run_config(run: dict) -> dict:
    """A run config of an earlier layout, with keys that have moved since put where they are now."""
    for key in ("enable_progress_bar", "skip_nonfinite"):  # were Trainer-group keys; now ours, top-level
        run.get("trainer", {}).pop(key, None)
    for key in ("max_steps", "max_epochs"):  # the budget was data.max_steps too; it is trainer.max_steps now
        run.get("data", {}).pop(key, None)
    return run


def checkpoint_of(path: Path) -> Path:
    """A checkpoint file, or the checkpoint a run directory was tested with (else its last)."""
    if path.is_file():
        return path
    metrics = path / "metrics.json"
    if metrics.is_file():
        tested = json.loads(metrics.read_text()).get("test_checkpoint")
        if tested and (path / tested).is_file():
            return path / tested
    if (path / "checkpoints" / "last.ckpt").is_file():
        return path / "checkpoints" / "last.ckpt"
    raise UserError(
        f"{path} is neither a checkpoint nor a run directory with one. Fix: ckpt_path=<run>/checkpoints/best.ckpt"
    )
