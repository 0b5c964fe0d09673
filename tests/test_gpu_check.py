"""scripts/gpu_check.py: checked on the CPU at tiny size in every run; on a CUDA device at base size with -m gpu."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch

from tests.helpers.commands import REPO


def gpu_check(tmp_path, *args: str) -> tuple[subprocess.CompletedProcess, dict]:
    out = tmp_path / "gpu_check.json"
    proc = subprocess.run(
        [sys.executable, "-m", "scripts.gpu_check", *args, "--out", str(out)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    return proc, json.loads(out.read_text())


def assert_every_variant_trained(report: dict) -> None:
    rows = {(r["variant"], r["precision"]): r for r in report["rows"]}
    assert set(rows) == {
        (v, p) for v in ("bert2bert", "bertshare", "bert2gpt", "gpt") for p in ("bf16-mixed", "16-mixed")
    }
    for key, r in rows.items():
        assert r["ok"] == {"finite": True, "loss_falls": True, "generation": True}, key
        assert r["steps"] == report["settings"]["steps"], key
        assert r["last_loss"] < r["first_loss"] - 1.0, key
        assert r["samples_per_s"] > 0 and r["model_tflops_per_s"] > 0 and r["mfu"] is not None, key
    # the variants really differ: bertshare shares its encoder with the decoder, gpt has no encoder
    sizes = {v: rows[(v, "bf16-mixed")]["params_m"] for v in ("bert2bert", "bertshare", "gpt")}
    assert sizes["bertshare"] < sizes["bert2bert"] and sizes["gpt"] != sizes["bert2bert"]


@pytest.mark.slow  # 20-50 s of one worker: make test-slow (CI runs it), the default run stays under 10 min
def test_gpu_check_runs_every_variant_and_precision_on_the_cpu(tmp_path):
    proc, report = gpu_check(tmp_path, "--device", "cpu", "--tiny")
    assert report["device"] == "cpu"
    assert_every_variant_trained(report)
    assert "| bert2gpt | 16-mixed |" in proc.stdout


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_gpu_check_on_a_cuda_device_at_base_size(tmp_path):
    proc, report = gpu_check(tmp_path)
    assert_every_variant_trained(report)
    print(proc.stdout)
