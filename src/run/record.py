"""A run directory, the one owner of its layout: what `metrics.json` holds, whether a run is finished, where it
resumes from, failures, and the one reader (`read_metrics`) that report, compare, the decoding table, plan, export
and the SLURM launcher use. `src.train` and `src.eval` write the same schema.

<run>/metrics.json       status (running | completed | failed | interrupted), what was run (run_name, variant,
                         encoder, decoder, sharing, data, seed, params, precision), `scoring`, and the scores of
                         each evaluated split under its name: `validation` and `test` ({metric: 0-100, loss})
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

from omegaconf import DictConfig, OmegaConf

from src.metrics.text import scoring_options
from src.system.errors import UserError
from src.system.outputs import atomic_write_text, results_table, write_json

log = logging.getLogger(__name__)


def sweep_job_dir(sweep_config: DictConfig) -> Path:
    """Where a sweep job writes: hydra.sweep.dir / hydra.sweep.subdir of its composed config."""
    return Path(str(sweep_config.hydra.sweep.dir)) / str(sweep_config.hydra.sweep.subdir)


SPLITS = ("validation", "test")  # the evaluated splits, each a key of metrics.json


def read_metrics(out: Path) -> dict | None:
    """A run directory's metrics.json in today's schema (older layouts upgraded), or None where it has none."""
    try:
        metrics = json.loads((out / "metrics.json").read_text())
    except (OSError, ValueError):
        return None
    return upgrade_metrics(metrics) if isinstance(metrics, dict) else None


def upgrade_metrics(metrics: dict) -> dict:
    """metrics.json of an earlier layout with its scores where they are now: a train run's `val` is `validation`;
    an eval directory's `splits` ({split: scores}) and `metrics` (the scores of `split`) are each split's key."""
    metrics = dict(metrics)
    if isinstance(metrics.get("val"), dict):
        metrics.setdefault("validation", metrics.pop("val"))
    splits = metrics.pop("splits", None) or {}
    if isinstance(metrics.get("metrics"), dict):
        splits.setdefault(metrics.get("split", "test"), metrics.pop("metrics"))
    for split, scores in splits.items():
        metrics.setdefault(split, scores)
    return metrics


def completed(out: Path) -> dict | None:
    """The metrics.json of a run directory if that run completed, else None."""
    metrics = read_metrics(out)
    return metrics if metrics is not None and metrics.get("status") == "completed" else None


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


def training_summary(
    trainer, module, throughput: dict, out: Path, resume_from: str | None, seconds: float
) -> dict:
    """metrics.json's `train` section: steps, time, `throughput` (the Throughput callback's), skipped steps."""
    section = {
        "steps": trainer.global_step,
        "wall_time_s": round(seconds, 2),
        **throughput,
        "nonfinite_skipped": module.nonfinite_skipped,
        "resumed_from": os.path.relpath(resume_from, out) if resume_from else None,
    }
    return {k.removeprefix("train/"): v for k, v in section.items()}


def test_checkpoint(trainer, which: str) -> str | None:
    """The checkpoint evaluated on test: `best` or `last` (whichever exists when the other does not)."""
    ckpt = trainer.checkpoint_callback
    best, last = (ckpt.best_model_path, ckpt.last_model_path) if ckpt is not None else ("", "")
    return (best if which == "best" else last) or last or best or None


def write_predictions(path: str | Path, rows: list[dict]) -> None:
    """One JSON object a line: source, reference, prediction and, where scored, the strings the metrics saw."""
    keys = ("source", "reference", "prediction", "scored_prediction", "scored_reference")
    lines = (json.dumps({k: r[k] for k in keys if k in r}, ensure_ascii=False) for r in rows)
    atomic_write_text(path, "".join(line + "\n" for line in lines))


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


def write_failed(out: Path, cfg: DictConfig, err: BaseException) -> None:
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


def write_interrupted(out: Path, cfg: DictConfig, reason: str) -> None:
    write_json(out / "metrics.json", {"status": "interrupted", "run_name": cfg.run_name, "reason": reason})


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


# ---- reading a run back ------------------------------------------------------------------------------------
def read_predictions(path: Path) -> tuple[list[str], list[str | list[str]], list[str] | None]:
    """(predictions, references, sources or None) of a predictions file; a bad line is an error naming it."""
    if not path.is_file():
        raise UserError(
            f"{path} does not exist. Fix: give a predictions file, e.g. outputs/runs/<run>/predictions.jsonl"
        )
    predictions, references, sources = [], [], []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except ValueError as err:
            raise UserError(f"{path}:{n} is not JSON ({err}). Fix: one JSON object a line.") from None
        ref = row.get("references", row.get("reference"))
        if "prediction" not in row or ref is None:
            raise UserError(
                f"{path}:{n} lacks `prediction` or a reference (keys: {', '.join(row) or 'none'}). "
                "Fix: give `prediction` and `reference` (a string) or `references` (a list)."
            )
        predictions.append(row["prediction"])
        references.append(ref)
        sources.append(row.get("source"))
    if not predictions:
        raise UserError(f"{path} holds no predictions.")
    return predictions, references, sources if all(s is not None for s in sources) else None


def run_settings(path: Path) -> dict:
    """How the run whose directory holds `path` was scored: `metrics` and its `SCORING_KEYS`, or {}.

    A src.train run's composed config says it (data.*); an src.eval directory's metrics.json (`scoring`). A run
    made before the canonical form existed (its config names no `scored_text`) was scored as given.
    """
    composed = path.parent / ".hydra" / "config.yaml"
    data = (OmegaConf.load(composed).get("data") or {}) if composed.is_file() else {}
    if data.get("metrics"):
        return {"metrics": list(data.metrics), "scored_text": "as_given", **scoring_options(data)}
    recorded = path.parent / "metrics.json"
    scoring = json.loads(recorded.read_text()).get("scoring") if recorded.is_file() else None
    if isinstance(scoring, dict) and scoring.get("metrics"):
        return {"metrics": list(scoring["metrics"]), **scoring_options(scoring)}
    return {}
