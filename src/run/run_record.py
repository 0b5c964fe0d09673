"""What a run directory's `metrics.json` holds, typed: `RunRecord`, written by src.train and src.eval through
src.run.record and read back (older layouts upgraded) by every command that reads a run.

Each field is a key of metrics.json; a key whose value is None is not written, except the run's identity
(`IDENTITY`: the report groups and labels rows by it, null included). Scores are 0-100, losses per token.
docs/reliability.md shows the schema (tests/test_record.py checks that it names every field).
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from src.config import schema

#: the layout written today; a metrics.json without `schema_version` is of version 1 (read by `from_dict`)
SCHEMA_VERSION = 2

#: how a run ended: `running` while it trains; `completed` when the configured budget was trained and scored
STATUSES = ("running", "completed", "failed", "interrupted")

#: the keys that say what a run is (TrainConfig.identity); written even when null
IDENTITY = tuple(schema.IDENTITY)

#: the evaluated splits, each a key of metrics.json ({metric: 0-100, loss})
EVALUATED_SPLITS = ("validation", "test")


@dataclass
class RunRecord:
    """One run directory's record: what was run, with what, and its scores."""

    status: str  # one of STATUSES
    command: str = "train"  # train (src.train) | eval (src.eval)
    # what was run (TrainConfig.identity)
    run_name: str | None = None
    variant: str | None = None
    encoder: str | None = None
    decoder: str | None = None
    sharing: str | None = None
    data: str | None = None
    seed: int | None = None
    # eval: what was evaluated (a checkpoint, or a whole saved model), and the split of `test_outputs` and
    # predictions.jsonl
    ckpt_path: str | None = None
    model: str | None = None
    split: str | None = None
    # what resuming, skipping or testing this directory is checked against (src.run.record.made_with)
    made_with: dict | None = None
    params: dict | None = None  # the parameter budget (total, from_checkpoint, random, ...)
    precision: str | None = None
    batch: dict | None = None  # examples per optimizer step = per_device x devices x accumulation
    attention: dict | None = None  # asked for, and what encoder and decoder run
    compile: bool | None = None  # whether the loss pass ran torch.compile'd
    scoring: dict | None = None  # what the metrics compared, and sacreBLEU's signatures
    # which weights the test scores are of: {kind: trained}, {kind: ema, decay, ...}, {kind: average, checkpoints, steps}
    weights: dict | None = None
    decoding: dict | None = None  # the decoding scored
    train: dict | None = None  # steps, wall time, throughput, skipped batches, resumed_from
    # how the tested checkpoint was chosen and why training ended: monitor, mode, best, best_checkpoint,
    # stopped_by (max_steps | max_epochs | early_stopping), stopped_at_step, reason
    selection: dict | None = None
    data_stats: dict | None = None  # examples, truncation, lengths per split
    test_before_training: dict | None = None
    validation: dict | None = None  # the last validation's scores (a train run), or the split's (eval)
    test: dict | None = None
    test_outputs: dict | None = None  # distinct share, repeated 3-grams, length ratio of the test predictions
    outputs: dict | None = (
        None  # eval: {split: its predictions' distinct share, repeated 3-grams, length ratio}
    )
    test_checkpoint: str | None = None  # relative to the run directory
    data_files: dict | None = None  # local data files: {name: [size, mtime_ns]}
    started_at: float | None = None
    finished_at: float | None = None
    error: str | None = None  # failed: the exception, in a line (error.txt has the traceback)
    reason: str | None = None  # interrupted: the signal and step
    extra: dict[str, Any] = field(default_factory=dict)  # keys this layout does not know, kept as read
    schema_version: int = SCHEMA_VERSION

    @property
    def completed(self) -> bool:
        return self.status == "completed"

    def scores(self, split: str) -> dict:
        """A split's scores ({metric: 0-100, loss}); {} where it was not evaluated."""
        return (getattr(self, split) or {}) if split in EVALUATED_SPLITS else {}

    def monitored(self, monitor: str) -> float | None:
        """The last validation value of `monitor` (val/loss, val/rouge2, ...): what an Optuna sweep optimises."""
        return (self.validation or {}).get(monitor.removeprefix("val/"))

    def identity(self) -> dict:
        return {k: getattr(self, k) for k in IDENTITY}

    def tested(self) -> str | None:
        """Which checkpoint and weights the test scores are of, in a few words (the report's and src.compare's):
        "best val/rouge2, EMA 0.999", "last", "average of 5", "best.ckpt" (an evaluation), "saved model"; None where
        unknown."""
        weights = self.weights or {}
        kind = weights.get("kind")
        how = {
            "ema": f"EMA {weights.get('decay')}",
            "average": f"average of {weights.get('checkpoints')}",
        }.get(kind)
        if self.command == "eval":
            ckpt = Path(self.ckpt_path).name if self.ckpt_path else ("saved model" if self.model else None)
        else:
            ckpt = Path(self.test_checkpoint).stem if self.test_checkpoint else None
            if ckpt == "best" and self.selection:
                ckpt = f"best {self.selection.get('monitor')}"
            if kind == "average":  # checkpoints/average.ckpt: the kind says it
                ckpt = None
        return ", ".join(p for p in (ckpt, how) if p) or None

    def as_dict(self) -> dict:
        """metrics.json's content: the set keys in the schema's order, then `extra`'s."""
        out = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if f.name == "extra":
                continue
            if value is not None or f.name in IDENTITY:
                out[f.name] = value
        return {**out, **{k: v for k, v in self.extra.items() if k not in out}}

    @classmethod
    def from_dict(cls, metrics: dict) -> RunRecord:
        """A metrics.json of today's layout or an earlier one (`upgrade`); keys it does not know go to `extra`."""
        metrics = upgrade(metrics)
        known = {f.name for f in dataclasses.fields(cls)} - {"extra"}
        given = {k: v for k, v in metrics.items() if k in known}
        given.setdefault("status", "unreadable")
        return cls(**given, extra={k: v for k, v in metrics.items() if k not in known})

    @classmethod
    def read(cls, out: Path) -> RunRecord | None:
        """A run directory's metrics.json, or None where it has none (or not a whole one)."""
        try:
            metrics = json.loads((out / "metrics.json").read_text())
        except (OSError, ValueError):
            return None
        return cls.from_dict(metrics) if isinstance(metrics, dict) else None


def upgrade(metrics: dict) -> dict:
    """metrics.json of an earlier layout (version 1) with its keys where they are now: `generation` is `decoding`;
    a train run's `val` is `validation`; an eval directory's `splits` ({split: scores}) and `metrics` (the scores
    of `split`) are each split's key, and it says `command: eval`."""
    metrics = dict(metrics)
    if metrics.get("schema_version", 1) >= SCHEMA_VERSION:
        return metrics
    # src.eval's record: what it evaluated, or its splits under their earlier keys
    evaluation = bool({"ckpt_path", "splits", "metrics"} & set(metrics)) or {"model", "split"} <= set(metrics)
    if "generation" in metrics:  # the decoding scored, under its earlier name
        metrics.setdefault("decoding", metrics.pop("generation"))
    if isinstance(metrics.get("val"), dict):
        metrics.setdefault("validation", metrics.pop("val"))
    splits = metrics.pop("splits", None) or {}
    if isinstance(metrics.get("metrics"), dict):
        splits.setdefault(metrics.get("split", "test"), metrics.pop("metrics"))
    for split, scores in splits.items():
        metrics.setdefault(split, scores)
    if evaluation:
        metrics.setdefault("command", "eval")
        outputs = metrics.get("outputs")
        if isinstance(outputs, dict) and not all(isinstance(v, dict) for v in outputs.values()):
            metrics["outputs"] = {metrics.get("split", "test"): outputs}  # was the last split's only
    metrics["schema_version"] = SCHEMA_VERSION
    return metrics
