"""scripts/benchmark.py end to end on tiny models (--quick): both sides train and evaluate, the JSON is complete,
and where decoding settings are identical the recipe's and the project's predictions are identical."""

from __future__ import annotations

import json
import math
import subprocess
import sys

import pytest

from tests.helpers.commands import REPO


@pytest.mark.slow  # 100 s of one worker: `make test-slow`, which .ci/run runs after `make test`
def test_quick_benchmark_compares_recipe_and_project(tiny, tmp_path):
    out = tmp_path / "bench.json"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "scripts.benchmark",
            "--quick",
            f"--encoder={tiny['bert']}",
            f"--decoder={tiny['bert']}",
            f"--out={out}",
            "--precision=32-true,bf16-mixed",
            "--variant=eager=attn_implementation=eager",
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(out.read_text())
    assert report["precisions"] == ["32-true", "bf16-mixed"]
    assert report["machine"]["cpu_peak_tflops"]["32-true"] > 0
    rows = {r["phase"]: r for r in report["rows"] if r["precision"] == "32-true"}
    assert set(rows) == {"train", "eval"}
    for row in report["rows"]:
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
    assert "| quick | train | 32-true |" in proc.stdout and "| quick | eval | bf16-mixed |" in proc.stdout
    # bf16-mixed against fp32, the same side in the same run, paired by repeat
    compared = {(r["phase"], r["precision"], r["baseline"]) for r in report["precision_rows"]}
    assert compared == {("train", "bf16-mixed", "32-true"), ("eval", "bf16-mixed", "32-true")}
    bf16_train = next(r for r in report["rows"] if r["precision"] == "bf16-mixed" and r["phase"] == "train")
    for row in report["precision_rows"]:
        assert row["project"]["ratios"] and all(x > 0 for x in row["project"]["ratios"])
    assert math.isfinite(bf16_train["project"]["loss"]) and bf16_train["project"]["mfu"] > 0
    assert "bf16-mixed vs 32-true" in proc.stdout
    # a variant of the project against the project, paired: eager attention trains to sdpa's loss and decodes alike
    variants = {(r["phase"], r["precision"]): r for r in report["variant_rows"]}
    assert set(variants) == {(p, q) for p in ("train", "eval") for q in ("32-true", "bf16-mixed")}
    fp32 = variants[("train", "32-true")]
    assert fp32["variant"] == "eager" and fp32["overrides"] == "attn_implementation=eager"
    assert abs(fp32["loss"][0] - fp32["loss"][1]) < 1e-4 and fp32["ratio"] > 0
    assert variants[("eval", "32-true")]["identical_predictions"] == [8, 8]
    assert "| quick | train | 32-true | eager (attn_implementation=eager) |" in proc.stdout
