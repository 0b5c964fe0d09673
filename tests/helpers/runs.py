"""Run directories the analysis tests read: hand-made ones (two systems on six examples), and the runs of a tiny
real sweep (two sharing schemes x two seeds, W&B offline) that the `seed_sweep` fixture makes once per session."""

from __future__ import annotations

import json
from pathlib import Path

from tests.helpers.tiny_run import tiny_run


# ---- hand-made runs --------------------------------------------------------------------------------------------
def write_run(path: Path, predictions: list[str], references: list[str], sources: list[str]) -> Path:
    path.mkdir(parents=True)
    rows = [
        {"source": s, "reference": r, "prediction": p}
        for s, r, p in zip(sources, references, predictions, strict=True)
    ]
    (path / "predictions.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (path / "metrics.json").write_text(
        json.dumps(
            {"status": "completed", "run_name": path.name, "test": {"rouge1": 0, "rouge2": 0, "exact": 0}}
        )
    )
    return path


SOURCES = [f"source {i}" for i in range(6)]
# two systems on those six examples: B wins 3 (two by 100 points), ties 2, loses 1
A_PRED = ["fruit then animal", "fruit then vehicle", "fruit then country", "vehicle then animal", "a b", "x"]
B_PRED = [
    "fruit then fruit",
    "animal then vehicle",
    "country then fruit",
    "vehicle then animal",
    "a b c",
    "x",
]
REFS = [
    "fruit then animal",
    "animal then vehicle",
    "country then fruit",
    "vehicle then animal",
    "a b c",
    "x y z",
]


# ---- the tiny sweep: src.train -m sharing=embeddings,shared seed=1,2 ---------------------------------------------
def seed_sweep_overrides(tiny, sweep: Path) -> list[str]:
    models = [f"encoder.checkpoint={tiny['bert']}", f"decoder.checkpoint={tiny['bert']}"]
    return [
        *models,
        "sharing=embeddings,shared",
        "seed=1,2",
        f"hydra.sweep.dir={sweep}",
        "sweep_name=seeds",
        *tiny_run(steps=6, val_every=3, logger="wandb", train=48, validation=8, test=12),
    ]


def run_dirs(sweep: Path) -> dict[tuple[str, int], Path]:
    """{(sharing, seed): run directory}."""
    out = {}
    for path in sweep.glob("*/metrics.json"):
        m = json.loads(path.read_text())
        out[(m["sharing"], m["seed"])] = path.parent
    return out
