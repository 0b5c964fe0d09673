"""Decoding sweeps in src.eval (src/analysis/decoding.py): several settings on one checkpoint of the seed sweep
(conftest), chosen on validation."""

from __future__ import annotations

import csv
import json

import pytest

from src.analysis.compare import compare, load_side
from tests.helpers.commands import run_cli
from tests.helpers.runs import run_dirs


def test_eval_sweeps_decoding_on_one_checkpoint_and_chooses_on_validation(seed_sweep, tmp_path):
    ckpt = run_dirs(seed_sweep)[("embeddings", 1)] / "checkpoints" / "last.ckpt"
    sweep = tmp_path / "decoding"
    proc = run_cli(
        "src.eval",
        "-m",
        f"ckpt_path={ckpt}",
        "decoding.num_beams=1,2",
        "decoding.no_repeat_ngram_size=2",
        "decoding.length_penalty_form=gnmt",  # the beam-2 job ranks with GNMT's penalty (raises if unapplied)
        f"hydra.sweep.dir={sweep}",
        "logger=none",
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = [json.loads(p.read_text()) for p in sorted(sweep.glob("*/metrics.json"))]
    assert [r["decoding"]["num_beams"] for r in results] == [1, 2]
    assert all(r["decoding"]["no_repeat_ngram_size"] == 2 for r in results)
    assert all(
        r["decoding"]["length_penalty_form"] == "gnmt" for r in results
    )  # what the scores were made with
    assert all({"validation", "test"} <= set(r) and r["split"] == "test" for r in results)
    with open(sweep / "decoding.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 2 and [r["num_beams"] for r in rows] == ["1", "2"]
    val = [r["validation"]["rouge2"] for r in results]
    best = max(range(2), key=lambda i: val[i])  # ties: the first (cheaper) setting
    assert [r["best"] for r in rows] == [str(i == best) for i in range(2)]
    assert "Best on validation rouge2: num_beams=" in (sweep / "decoding.md").read_text()
    # two settings' directories compare like two runs (the metric from their metrics.json)
    dirs = sorted(p.parent for p in sweep.glob("*/metrics.json"))
    diff = compare(load_side(str(dirs[0])), load_side(str(dirs[1])), resamples=100)
    assert diff["metric"] == "rouge2"
    assert diff["corpus"]["b"] == pytest.approx(results[1]["test"]["rouge2"], abs=1e-3)
