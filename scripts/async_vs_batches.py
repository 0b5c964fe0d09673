"""Hydra's Optuna sweeper (trials in batches of n_jobs, each batch waiting for its slowest) against the project's
asynchronous sweeper (hydra/sweeper=async: a worker takes the next trial when its own ends), on the same Optuna
trials of unequal length, two at a time, one after the other in this process's run; prints and writes the wall
times, their ratio and the device-seconds left idle while trials remained (from each run's own start and end
stamps in metrics.json).

    python -m scripts.async_vs_batches [--trials 6] [--out outputs/benchmark/async-vs-batches.json]

Each trial is the offline demo (minilm2minilm, synthetic) trained for 30 or 150 steps (scripts/conf/
hparams_search/unequal_trials.yaml); one thread a worker (OMP_NUM_THREADS=1) so that two fit two cores.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SWEEPERS = {
    "batches": ["hydra/launcher=local", "hydra.launcher.n_jobs=2", "hydra.sweeper.n_jobs=2"],
    "async": ["hydra/sweeper=async", "hydra.sweeper.n_jobs=2"],
}


def idle_while_work_left(jobs: list[tuple[float, float]], workers: int) -> float:
    """Device-seconds without a job between the first start and the last start (after it no trial is left)."""
    t0, t1 = min(s for s, _ in jobs), max(s for s, _ in jobs)
    busy = sum(max(0.0, min(e, t1) - max(s, t0)) for s, e in jobs)
    return workers * (t1 - t0) - busy


def sweep(name: str, trials: int, root: Path) -> dict:
    out = root / name
    command = [
        sys.executable, "-m", "src.train", "-m", "--config-dir", str(REPO / "scripts" / "conf"),
        "hparams_search=unequal_trials", "experiment=demo", "eval_before_training=false", "logger=none",
        "progress=none", "trainer.val_check_interval=30", f"hydra.sweeper.n_trials={trials}",
        f"hydra.sweep.dir={out}", *SWEEPERS[name],
    ]  # fmt: skip
    start = time.time()
    proc = subprocess.run(command, cwd=REPO, env={**os.environ, "OMP_NUM_THREADS": "1"}, capture_output=True)
    wall = time.time() - start
    if proc.returncode != 0:
        sys.exit(f"{name}: exit {proc.returncode}\n{proc.stderr.decode()[-3000:]}")
    records = [json.loads(p.read_text()) for p in out.glob("*/metrics.json")]
    jobs = sorted((r["started_at"], r["finished_at"]) for r in records)
    steps = sorted(r["train"]["steps"] for r in records)
    return {"wall_s": wall, "trials": len(records), "steps": steps, "idle_s": idle_while_work_left(jobs, 2)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--trials", type=int, default=6)
    p.add_argument("--out", default="outputs/benchmark/async-vs-batches.json")
    args = p.parse_args()
    root = Path(tempfile.mkdtemp(prefix="async-vs-batches-"))
    try:
        results = {name: sweep(name, args.trials, root) for name in SWEEPERS}
    finally:
        shutil.rmtree(root, ignore_errors=True)
    results["ratio"] = results["batches"]["wall_s"] / results["async"]["wall_s"]
    for name in SWEEPERS:
        r = results[name]
        print(f"{name}: {r['wall_s']:.0f} s for {r['trials']} trials (steps {r['steps']}), {r['idle_s']:.0f} "
              "device-seconds idle while trials remained")  # fmt: skip
    print(f"async is {results['ratio']:.2f}x faster")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
