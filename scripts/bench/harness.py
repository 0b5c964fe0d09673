"""Each measurement of the benchmark in a process of its own (peak memory is per process)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import warnings
from pathlib import Path

import torch

from scripts.bench.project import run_project
from scripts.bench.recipe import run_recipe
from src.system.paths import REPO


def child(job: dict) -> None:
    warnings.filterwarnings("ignore", message=".*introduces a better way to train encoder-decoder.*")

    torch.manual_seed(job["seed"])
    result = (run_recipe if job["system"] == "recipe" else run_project)(job)
    Path(job["result"]).write_text(json.dumps(result))


def spawn(job: dict, tmp: Path, log) -> dict:
    job = {**job, "result": str(tmp / f"result-{time.time_ns()}.json")}
    env = {
        **os.environ,
        "TOKENIZERS_PARALLELISM": "false",
    }
    proc = subprocess.run(
        [sys.executable, "-m", "scripts.benchmark", "--child", json.dumps(job)],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
    )
    if proc.returncode != 0:
        log(proc.stdout[-2000:] + proc.stderr[-4000:])
        raise SystemExit(f"benchmark: {job['system']} {job['phase']} on {job['workload']} failed (see above)")
    return json.loads(Path(job["result"]).read_text())
