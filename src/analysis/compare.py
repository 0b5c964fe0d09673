"""Two runs' predictions on the same split, example by example: each example's score under both (ROUGE-2 where the
task has it, else the task's first metric), sorted by the gap; how often B wins, ties and loses; the paired
bootstrap interval of B - A in the corpus metric; logged as a W&B table when the runs used W&B."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from omegaconf import OmegaConf

from src.metrics.significance import CONFIDENCE, RESAMPLES, SEED, paired_bootstrap
from src.metrics.text import SUPPORTED, ExampleScorer, scoring_options
from src.run.loggers import resolve_wandb_mode
from src.run.record import read_metrics, read_predictions, run_settings
from src.system.errors import UserError

log = logging.getLogger(__name__)
PREFERRED = ("rouge2",)  # the per-example metric when the task has it; else the task's first metric


@dataclass
class Side:
    """One run's predictions on a split, and what is known of the run."""

    label: str
    path: Path  # predictions.jsonl
    run_dir: Path | None
    predictions: list[str]
    references: list
    sources: list[str] | None
    metrics: list[str]  # the run's metrics, in its own order
    scoring: dict  # the run's scoring options (`src.metrics.text.SCORING_KEYS`)
    used_wandb: bool
    wandb: dict  # the run's W&B project, entity and group
    tested: str | None = None  # which checkpoint and weights its predictions are of (RunRecord.tested)


def load_side(arg: str) -> Side:
    """A run directory, an evaluation directory, or a predictions.jsonl file."""
    path = Path(arg)
    if path.is_dir():
        path = path / "predictions.jsonl"
        if not path.is_file():
            raise UserError(
                f"{arg} holds no predictions.jsonl (has the run finished?). Fix: give a finished run directory, "
                "an src.eval output directory, or a predictions.jsonl file."
            )
    predictions, references, sources = read_predictions(path)
    run_dir = path.parent if (path.parent / "metrics.json").is_file() else None
    settings = run_settings(path)  # a src.train run: its task's metrics
    metrics, scoring = settings.get("metrics", []), scoring_options(settings)
    result = read_metrics(run_dir) if run_dir else None
    used_wandb, wb = False, {}
    composed = path.parent / ".hydra" / "config.yaml"
    if composed.is_file():  # and its logger
        logger = OmegaConf.load(composed).get("logger") or {}
        used_wandb = logger.get("kind") == "wandb"
        wb = {
            "project": logger.get("project"),
            "entity": logger.get("entity"),
            "group": wandb_group_of(path.parent),
        }
    if not metrics:  # an src.eval directory, or a run without its composed config: the metrics it reported
        scores = result.scores("test") if result is not None else {}
        metrics = [m for m in scores if m in SUPPORTED]
    used_wandb = used_wandb or (path.parent / "wandb").is_dir()
    label = (result.run_name if result is not None else None) or (run_dir.name if run_dir else path.stem)
    tested = result.tested() if result is not None else None
    return Side(
        label, path, run_dir, predictions, references, sources, metrics, scoring, used_wandb, wb, tested
    )


def wandb_group_of(run_dir: Path) -> str | None:
    """The W&B group a run logged to (`src.run.loggers.wandb_group`): its sweep's name, else its experiment, else none."""
    hydra_file = run_dir / ".hydra" / "hydra.yaml"
    if not hydra_file.is_file():
        return None
    hydra_cfg = OmegaConf.load(hydra_file).hydra
    if str(hydra_cfg.get("mode")) == "MULTIRUN":
        raw = OmegaConf.to_container(OmegaConf.load(run_dir / ".hydra" / "config.yaml")).get("sweep_name")
        # a sweep_name left to its default (the launch time) is the sweep directory's name
        return str(raw) if raw and "${" not in str(raw) else run_dir.resolve().parent.name
    return hydra_cfg.runtime.choices.get("experiment")


def check_paired(a: Side, b: Side) -> None:
    """Both files must hold the same examples in the same order (the same split of the same task)."""
    if len(a.predictions) != len(b.predictions):
        raise UserError(
            f"{a.path} has {len(a.predictions)} examples and {b.path} {len(b.predictions)}: not the same split. "
            "Fix: compare runs evaluated on the same test split (src.eval ckpt_path=... writes one)."
        )
    for i, (ra, rb) in enumerate(zip(a.references, b.references, strict=True)):
        sa, sb = (a.sources[i] if a.sources else None), (b.sources[i] if b.sources else None)
        if ra != rb or (sa is not None and sb is not None and sa != sb):
            raise UserError(
                f"example {i + 1} differs between {a.path} and {b.path} (source or reference): not the same split "
                "in the same order. Fix: compare runs of the same task and data subset."
            )


def choose_metric(a: Side, b: Side, metric: str | None) -> str:
    if metric:
        if metric not in SUPPORTED:
            raise UserError(f"--metric {metric} is unknown. Fix: one of {', '.join(SUPPORTED)}.")
        return metric
    common = [m for m in a.metrics if m in b.metrics] or a.metrics or b.metrics
    if not common:
        raise UserError(
            f"which metric? Neither {a.path} nor {b.path} is in a run directory that names its metrics. "
            f"Fix: --metric <one of {', '.join(SUPPORTED)}>."
        )
    return next((m for m in PREFERRED if m in common), common[0])


def compare(
    a: Side,
    b: Side,
    metric: str | None = None,
    resamples: int = RESAMPLES,
    seed: int = SEED,
    confidence: float = CONFIDENCE,
) -> dict:
    """Per-example scores, win/tie/loss, and the paired bootstrap; the examples sorted by |gap|, largest first."""
    check_paired(a, b)
    metric = choose_metric(a, b, metric)
    if metric == "sari" and (a.sources is None or b.sources is None):
        raise UserError("sari needs each example's `source`. Fix: --metric <another metric>.")
    # both sides scored one way: A's options, uncased BLEU if either run's was
    lowercase = bool(a.scoring.get("bleu_lowercase") or b.scoring.get("bleu_lowercase"))
    scorer = ExampleScorer([metric], **{**b.scoring, **a.scoring, "bleu_lowercase": lowercase})
    stats_a = scorer.statistics(a.predictions, a.references, a.sources)[metric]
    stats_b = scorer.statistics(b.predictions, b.references, b.sources or a.sources)[metric]
    score_a = np.array([ExampleScorer.sentence(metric, s) for s in stats_a])
    score_b = np.array([ExampleScorer.sentence(metric, s) for s in stats_b])
    gap = score_b - score_a
    tol = 1e-9
    interval = paired_bootstrap(
        metric, stats_a, stats_b, resamples=resamples, seed=seed, confidence=confidence
    )
    n = len(gap)
    order = sorted(range(n), key=lambda i: (-abs(gap[i]), i))
    examples = [
        {
            "index": i,
            "source": a.sources[i] if a.sources else (b.sources[i] if b.sources else ""),
            "reference": a.references[i]
            if isinstance(a.references[i], str)
            else " || ".join(a.references[i]),
            "a": a.predictions[i],
            "b": b.predictions[i],
            "score_a": float(score_a[i]),
            "score_b": float(score_b[i]),
            "gap": float(gap[i]),
        }
        for i in order
    ]
    return {
        "a": {"label": a.label, "path": str(a.path), "tested": a.tested},
        "b": {"label": b.label, "path": str(b.path), "tested": b.tested},
        "metric": metric,
        "examples_count": n,
        "corpus": {
            "a": ExampleScorer.corpus(metric, stats_a.sum(0), n),
            "b": ExampleScorer.corpus(metric, stats_b.sum(0), n),
        },
        "b_wins": int((gap > tol).sum()),
        "ties": int((abs(gap) <= tol).sum()),
        "a_wins": int((gap < -tol).sum()),
        "identical_predictions": sum(x == y for x, y in zip(a.predictions, b.predictions, strict=True)),
        "bootstrap": interval.as_dict(),
        "examples": examples,
    }


def log_to_wandb(result: dict, a: Side, b: Side, out: Path, mode: str) -> str | None:
    """The per-example table and the summary as a W&B run of job_type `compare`, when the runs used W&B (or
    mode is online/offline). Returns the mode used, or None."""
    if mode == "disabled" or (mode == "auto" and not (a.used_wandb or b.used_wandb)):
        return None
    resolved = resolve_wandb_mode(mode)
    if resolved == "disabled":
        return None
    import wandb  # only when logging: 0.7 s of start-up a comparison without W&B skips

    run = wandb.init(
        project=a.wandb.get("project") or b.wandb.get("project") or "warmstart",
        entity=a.wandb.get("entity") or b.wandb.get("entity"),
        group=a.wandb.get("group") or b.wandb.get("group"),
        job_type="compare",
        name=f"compare-{a.label}-vs-{b.label}",
        mode=resolved,
        dir=str(out),
        config={"a": str(a.path), "b": str(b.path), "metric": result["metric"]},
        settings=wandb.Settings(console="off", silent=True),
    )
    columns = ["index", "gap", "score_a", "score_b", "source", "reference", "a", "b"]
    table = wandb.Table(columns=columns, data=[[e[c] for c in columns] for e in result["examples"]])
    run.log({"compare/examples": table})
    boot = result["bootstrap"]
    run.summary.update(
        {
            f"compare/{k}": v
            for k, v in {
                "a": result["corpus"]["a"],
                "b": result["corpus"]["b"],
                "delta": boot["delta"],
                "low": boot["low"],
                "high": boot["high"],
                "p_value": boot["p_value"],
                "b_wins": result["b_wins"],
                "ties": result["ties"],
                "a_wins": result["a_wins"],
            }.items()
        }
    )
    run.finish()
    return resolved
