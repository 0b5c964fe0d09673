"""The command a user runs against the benchmark's in-process loop (`--phases command`).

The loop (scripts/bench/project.py) times steps inside one process, without validation, progress, logging or a
logger. The command is `python -m src.train` with the same workload overrides and everything else its own
defaults (its callbacks, progress lines, a log every 50 steps, W&B in offline mode, checkpoints), timed as a
whole process for k and for 2k steps: (T(2k) - T(k)) / k is what one step costs it, with start-up, the final
test and the last checkpoint cancelling out. Both ways run alternately, in fresh processes.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

from scripts.bench.project import workload_overrides
from src.system.outputs import markdown_table
from src.system.paths import REPO


def command_seconds(job: dict, steps: int, tmp: Path) -> float:
    """Wall seconds of one `python -m src.train` run of `steps` steps."""
    run = {**job, "spec": {**job["spec"], "steps": steps}}
    overrides = [
        *workload_overrides(run, str(tmp)),
        f"output_dir={tmp}/command-{steps}-{time.time_ns()}",
        "data.limit_eval=8",  # the final test: the same in both runs, kept short so its noise stays small
        "data.decoding.max_new_tokens=8",
        *job.get("overrides", []),
    ]
    env = {**os.environ, "TOKENIZERS_PARALLELISM": "false", "WANDB_MODE": "offline", "WANDB_SILENT": "true"}
    start = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "src.train", *overrides], cwd=REPO, env=env, capture_output=True, text=True
    )
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        sys.stderr.write(proc.stdout[-2000:] + proc.stderr[-4000:])
        raise SystemExit(f"benchmark: python -m src.train failed for {job['workload']} (see above)")
    return seconds


def command_row(workload: str, precision: str, steps: int, loop: list[dict], command: list[tuple]) -> dict:
    """Per-step seconds both ways, per repeat, and their ratio (command / loop)."""
    loop_s = [r["seconds_per_step"] for r in loop]
    command_s = [(t2 - t1) / steps for t1, t2 in command]
    ratios = [c / s for c, s in zip(command_s, loop_s, strict=True)]
    return {
        "workload": workload,
        "precision": precision,
        "steps": [steps, 2 * steps],
        "loop_s_per_step": loop_s,
        "command_s_per_step": command_s,
        "command_wall_s": command,
        "ratio": statistics.median(ratios),
        "ratios": ratios,
    }


def command_table(rows: list[dict]) -> str:
    header = ["workload", "precision", "steps k / 2k", "loop s/step (runs)", "command s/step (runs)",
              "command / loop (runs)"]  # fmt: skip
    body = []
    for r in rows:

        def runs(xs):
            return f"{statistics.median(xs):.3f} ({', '.join(f'{x:.3f}' for x in xs)})"

        spread = ", ".join(f"{x:.2f}" for x in r["ratios"])
        body.append([r["workload"], r["precision"], "{} / {}".format(*r["steps"]), runs(r["loop_s_per_step"]),
                     runs(r["command_s_per_step"]), f"**{r['ratio']:.2f}** ({spread})"])  # fmt: skip
    return markdown_table(header, body)
