"""scripts/benchmark.py end to end on tiny models (--quick): both sides train and evaluate, the JSON is complete,
and where decoding settings are identical the recipe's and the project's predictions are identical."""

from __future__ import annotations

import json
import math
import subprocess
import sys

from tests.conftest import REPO


def test_quick_benchmark_compares_recipe_and_project(tiny, tmp_path):
    out = tmp_path / "bench.json"
    proc = subprocess.run(
        [
            sys.executable,
            "scripts/benchmark.py",
            "--quick",
            f"--encoder={tiny['bert']}",
            f"--decoder={tiny['bert']}",
            f"--out={out}",
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(out.read_text())
    rows = {r["phase"]: r for r in report["rows"]}
    assert set(rows) == {"train", "eval"}
    for row in rows.values():
        for side in ("recipe", "project"):
            assert row[side]["samples_per_s"] > 0 and row[side]["peak_memory_mb"] > 0
        assert math.isclose(row["ratio"], row["project"]["samples_per_s"] / row["recipe"]["samples_per_s"])
    train = rows["train"]
    # same initial weights, same data, same optimizer: after 3 steps the held-out losses agree closely
    assert (
        math.isfinite(train["recipe"]["loss"])
        and abs(train["recipe"]["loss"] - train["project"]["loss"]) < 0.05
    )
    assert rows["eval"]["predictions"] == 8
    assert rows["eval"]["identical_predictions"] == 8, rows["eval"]["example"]
    assert "| quick | train |" in proc.stdout and "| quick | eval |" in proc.stdout
