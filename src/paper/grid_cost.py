"""What the paper's whole grid costs to train: every task x variant of its tables (base size) at the paper's steps,
batch and lengths, in device-hours on one GPU type, from the model FLOPs of a training example.

device-hours = steps x batch x FLOPs(example) / (peak FLOP/s x MFU) / 3600, with
- FLOPs(example) from `src.models.flops.train_flops` (forward and backward, tested equal to PyTorch's FLOP counter)
  on the variant's base-size architecture (conf/arch/ facts, built on the meta device), every example at the
  task's full source and target lengths (the upper bound; padding-free batches of shorter examples cost less);
- the task's steps and global batch under `paper=rothe2020` (WMT14: 30 epochs of its training pairs);
- the card's dense bf16 peak (`src.system.hardware.GPU_PEAK_TFLOPS`) and an MFU the caller gives (an assumption
  until measured: `scripts/gpu_check.py` prints a card's MFU on these models).
Training only: validation and the test set's beam search are not counted. The paper's 24-layer rows and its
DiscoFuse runs on 10% and 1% of the data are not in the grid.
"""

from __future__ import annotations

import math
from functools import cache

from hydra import compose, initialize_config_dir

from src.models.builder import BuildFrom, build
from src.models.flops import model_configs, train_flops
from src.paper.figures import paper_figures
from src.paper.variants import VARIANTS, variant_arch
from src.system.errors import UserError
from src.system.hardware import GPU_PEAK_TFLOPS
from src.system.paths import CONF

#: training pairs of the Hub's wmt14 de-en train split (both directions train on them); the paper: 30 epochs
WMT14_TRAIN_PAIRS = 4_508_785
TRAIN_EXAMPLES = {"wmt14_en_de": WMT14_TRAIN_PAIRS, "wmt14_de_en": WMT14_TRAIN_PAIRS}


def paper_cells() -> list[tuple[str, str]]:
    """(task, variant) of every base-size row of the paper's result tables, in the paper's order."""
    results = paper_figures()["results"]
    return [(task, v) for task, rows in results.items() for v in VARIANTS if v in rows]


@cache
def _example_flops(variant: str, overrides: tuple[str, ...], source: int, target: int) -> float:
    spec, arch = variant_arch(variant, list(overrides))
    model = build(spec, BuildFrom.META, arch=arch).model
    return train_flops(*model_configs(model), source, target)


@cache
def _task_budget(task: str) -> tuple[int, int, int, int]:
    """(steps, global batch, source tokens, target tokens) of a task under paper=rothe2020."""
    with initialize_config_dir(str(CONF), version_base="1.3"):
        data = compose("train", overrides=["paper=rothe2020", f"data={task}"]).data
    batch, source, target = (
        int(data.global_batch_size),
        int(data.max_source_length),
        int(data.max_target_length),
    )
    steps = int(data.max_steps or -1)
    if steps <= 0:  # an epoch budget: its training examples, as the sampler draws them
        steps = math.ceil(int(data.max_epochs) * TRAIN_EXAMPLES[task] / batch)
    return steps, batch, source, target


def cell_cost(task: str, variant: str) -> dict:
    """One cell's steps, batch, lengths and training FLOPs under `paper=rothe2020 data=<task> variant=<variant>`."""
    steps, batch, source, target = _task_budget(task)
    per_example = _example_flops(variant, ("paper=rothe2020", f"data={task}"), source, target)
    return {
        "task": task,
        "variant": variant,
        "steps": steps,
        "batch": batch,
        "source_tokens": source,
        "target_tokens": target,
        "flops": steps * batch * per_example,
    }


def grid_cost(gpu: str, mfu: float) -> dict:
    """Every cell's device-hours on `gpu` (a key of GPU_PEAK_TFLOPS) at `mfu`, and their sum."""
    if gpu not in GPU_PEAK_TFLOPS:
        raise UserError(f"--gpu {gpu!r} is not a known card. Fix: one of {', '.join(GPU_PEAK_TFLOPS)}.")
    if not 0 < mfu <= 1:
        raise UserError(f"--mfu {mfu} is not a share of the peak. Fix: a number in (0, 1], e.g. --mfu 0.35.")
    rate = GPU_PEAK_TFLOPS[gpu] * 1e12 * mfu
    cells = [cell_cost(task, v) for task, v in paper_cells()]
    for c in cells:
        c["device_hours"] = c["flops"] / rate / 3600
    return {
        "gpu": gpu,
        "peak_tflops": GPU_PEAK_TFLOPS[gpu],
        "mfu": mfu,
        "cells": cells,
        "device_hours": sum(c["device_hours"] for c in cells),
    }


def render_grid(result: dict, wall: dict | None = None) -> str:
    """The grid's device-hours as a Markdown table (a row a task, a column a variant), its total, and with `wall`
    (`src.analysis.plan.cluster_schedules` of the cells, one device each) the wall time on a cluster."""
    tasks = list(dict.fromkeys(c["task"] for c in result["cells"]))
    by = {(c["task"], c["variant"]): c for c in result["cells"]}
    lines = [
        f"The paper's grid: {len(result['cells'])} training runs (base size), in {result['gpu']}-hours at "
        f"{result['mfu']:.0%} MFU of its {result['peak_tflops']:.0f} TFLOP/s bf16 peak (training only, every "
        "example at full length):",
        "",
        "| task | steps x batch | source / target tokens | " + " | ".join(VARIANTS) + " | task |",
        "|---|---|---|" + "---:|" * (len(VARIANTS) + 1),
    ]
    for task in tasks:
        cells = [by.get((task, v)) for v in VARIANTS]
        first = next(c for c in cells if c)
        hours = [f"{c['device_hours']:.1f}" if c else "-" for c in cells]
        total = sum(c["device_hours"] for c in cells if c)
        lines.append(
            f"| {task} | {first['steps']:,} x {first['batch']} | {first['source_tokens']} / {first['target_tokens']} "
            f"| " + " | ".join(hours) + f" | {total:.0f} |"
        )
    lines += ["", f"In all: {result['device_hours']:.0f} {result['gpu']}-hours."]
    if wall:
        lines.append(
            f"On {wall['devices']} devices, one run each: {wall['asynchronous_s'] / 3600:.0f} h if each run starts as "
            f"soon as a device is free (hydra/sweeper=async, SLURM's queue), {wall['synchronous_s'] / 3600:.0f} h in "
            "synchronous batches that fill the devices, in this order."
        )
    return "\n".join(lines)
