"""scripts/profile_step.py on a tiny model (--quick): the JSON has every category, they account for the whole
profiled self CPU time, and the matmuls and the optimizer step show up in theirs."""

from __future__ import annotations

import json
import subprocess
import sys

from scripts.profile_step import CATEGORIES
from tests.helpers.commands import REPO


def test_quick_profile_breaks_a_step_into_categories(tiny, tmp_path):
    out = tmp_path / "profile.json"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "scripts.profile_step",
            "--quick",
            f"--encoder={tiny['bert']}",
            f"--decoder={tiny['bert']}",
            "--precision=32-true",
            f"--out={out}",
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(out.read_text())
    (run,) = report["runs"]
    assert (run["workload"], run["precision"]) == ("quick", "32-true")
    assert set(run["categories"]) == set(CATEGORIES)
    ms = {k: c["ms_per_step"] for k, c in run["categories"].items()}
    total = run["profiled_self_ms_per_step"]
    assert total > 0 and abs(sum(ms.values()) - total) <= 0.05 * total
    assert ms["matmul"] > 0 and ms["optimizer"] > 0
    assert run["lm_head_wrapped"] and ms["lm_head_loss"] > 0
    assert len(run["step_s"]) == 1 and run["step_s_median"] > 0 and run["model_tflops_per_s"] > 0
    assert len(run["top_ops"]) == 15
    assert "| matmul / linear |" in proc.stdout and "### quick, 32-true" in proc.stdout
