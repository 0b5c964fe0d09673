"""A predictions file scored with the project's metrics, as the run that wrote it was scored (or as told)."""

from __future__ import annotations

from pathlib import Path

from src.metrics.text import SUPPORTED, GenerationMetrics, scoring_options
from src.run.record import read_predictions, run_settings
from src.system.errors import UserError


def score(path: Path, metrics: list[str] | None = None, **options) -> dict[str, float]:
    """The corpus scores (0-100) of a predictions file; `options` (`SCORING_KEYS`) win over the run's own."""
    return score_with_provenance(path, metrics, **options)[0]


def score_with_provenance(
    path: Path, metrics: list[str] | None = None, **options
) -> tuple[dict[str, float], dict[str, dict[str, str]]]:
    """`score`, and what computed each metric (`ExampleScorer.provenance`: tool and version, text, signature)."""
    settings = run_settings(path)
    metrics = list(metrics or settings.get("metrics") or [])
    if not metrics:
        raise UserError(
            f"which metrics? {path} is not in a run directory. Fix: --metrics {' '.join(SUPPORTED)} (some of them)"
        )
    unknown = sorted(set(metrics) - set(SUPPORTED))
    if unknown:
        raise UserError(f"unknown metrics {unknown}. Fix: choose from {', '.join(SUPPORTED)}.")
    predictions, references, sources = read_predictions(path)
    if "sari" in metrics and sources is None:
        raise UserError(f"sari needs a `source` on every line of {path}. Fix: add it, or leave sari out.")
    try:
        scorer = GenerationMetrics(metrics, **{**scoring_options(settings), **scoring_options(options)})
        scorer.update(predictions, references, sources)
    except ValueError as err:
        raise UserError(f"{path}: {err}.") from None
    return {k: float(v) for k, v in scorer.compute().items()}, scorer.scorer.provenance()
