"""A sweep's plan before paying for it: the jobs `python -m src.train -m ...` would run (expanded as its sweeper and
launcher do), each one's run directory, state and parameter budget, and the time each takes from a probe."""

from __future__ import annotations

import json
import logging
import re

from omegaconf import DictConfig

from src.analysis.probe import probe
from src.analysis.sweep import Job, job_budget, job_devices, job_state, sweep_jobs
from src.models.builder import config_from_dict
from src.models.decoding import Decoding
from src.models.flops import train_flops
from src.system.errors import UserError
from src.system.outputs import markdown_table

log = logging.getLogger(__name__)


def workload(cfg: DictConfig) -> tuple:
    """Jobs with the same workload key run the same batches: one probe serves them all."""
    d = cfg.data
    gen = json.dumps(Decoding.of(d.decoding).kwargs(), sort_keys=True)
    return (
        d.name,
        d.batch_size,
        d.get("global_batch_size"),
        d.eval_batch_size,
        d.max_source_length,
        d.max_target_length,
        gen,
        str(cfg.trainer.precision),
        cfg.trainer.get("accumulate_grad_batches", 1),
    )


# ---- the estimate ----------------------------------------------------------------------------------------------
def validations(cfg: DictConfig, batches: int, train_batches: int | None = None) -> int:
    """How many validations a run of `batches` training batches (steps x accumulation) does: Lightning's
    val_check_interval counts training batches (an int) or a share of an epoch of `train_batches` (a float)."""
    interval = cfg.trainer.get("val_check_interval")
    if interval is None:
        return 0
    if isinstance(interval, int) and not isinstance(interval, bool):
        return batches // interval if interval > 0 else 0
    if train_batches:
        return int(batches // max(1, round(interval * train_batches)))
    return 0


def estimate(job: Job, measured: dict, probe_arch: dict) -> float:
    """Seconds for one job from its workload's probe, the training part scaled by the job's FLOPs per example."""

    def flops(arch: dict) -> float:
        if not arch:
            return 1.0
        enc = config_from_dict(arch["encoder"]) if arch.get("encoder") else None
        s, t = measured["mean_lengths"]
        return train_flops(enc, config_from_dict(arch["decoder"]), round(s), round(t))

    ratio = flops(job.arch) / flops(probe_arch) if job.arch and probe_arch else 1.0
    cfg = job.cfg
    steps = int(cfg.trainer.max_steps)
    batches = steps * measured["accumulation"]
    train = batches * measured["batch_s"] * ratio
    per_val = (
        measured["val_gen_batches"] * measured["val_gen_batch_s"]
        + (measured["val_batches"] - measured["val_gen_batches"]) * measured["val_loss_batch_s"]
    )
    tests = 2 if cfg.get("eval_before_training") else 1
    test = tests * measured["test_batches"] * measured["test_batch_s"]
    checks = validations(cfg, batches, measured["train_batches"])
    return measured["setup_s"] + train + checks * per_val + test


def plan(
    overrides: list[str], probe_steps: int = 5, run_probe: bool = True, cluster: str | None = None
) -> dict:
    """The sweep's jobs, their state, budget and (probed) time; with `cluster` (NODESxDEVICES), the wall time on
    it asynchronously and in synchronous batches (`schedules`)."""
    devices = cluster_devices(cluster) if cluster else None
    jobs, info = sweep_jobs(overrides)
    if not jobs:
        raise UserError("these overrides give no job.")
    for job in jobs:
        job.state = job_state(job)
        job.budget, job.arch = job_budget(job.cfg)
    probes = {}
    todo = [j for j in jobs if j.state != "completed"]
    if run_probe and todo:
        groups: dict[tuple, list[Job]] = {}
        for job in todo:
            groups.setdefault(workload(job.cfg), []).append(job)
        for key, members in groups.items():
            largest = max(members, key=lambda j: j.budget.get("total", 0))
            log.info("probe: %d steps of %s", probe_steps, largest.run_dir.name)
            measured = probe(largest, probe_steps)
            probes[key] = measured
            for job in members:
                job.estimate_s = estimate(job, measured, largest.arch)
    total_s = sum(j.estimate_s or 0.0 for j in todo) if probes else None
    device_s = sum((j.estimate_s or 0.0) * job_devices(j.cfg) for j in todo) if probes else None
    on_cluster = None
    if devices is not None and probes:
        widest = max(job_devices(j.cfg) for j in todo)
        if widest > devices:
            raise UserError(
                f"a job trains on {widest} devices and --cluster {cluster} has {devices}. Fix: a larger --cluster."
            )
        on_cluster = cluster_schedules(
            cluster, [(j.estimate_s or 0.0, job_devices(j.cfg)) for j in todo], devices
        )
    return {
        "jobs": jobs,
        "info": info,
        "probes": list(probes.values()),
        "total_s": total_s,
        "device_hours": None if device_s is None else device_s / 3600,
        "cluster": on_cluster,
    }


def cluster_schedules(cluster: str, estimates: list[tuple[float, int]], devices: int) -> dict:
    """The plan's `cluster` record: `--cluster` as given (NxD) and the jobs' wall time on it both ways (`schedules`)."""
    return {"nodes_x_devices": cluster.replace(" ", ""), **schedules(estimates, devices)}


def schedules(estimates: list[tuple[float, int]], devices: int) -> dict:
    """Wall time of jobs (seconds, devices each) on `devices` devices, in the order given, two ways:

    - `asynchronous`: a job starts as soon as enough devices are free (hydra/sweeper=async, SLURM's queue, the local
      launcher's pool):
      greedy list scheduling;
    - `synchronous`: jobs go in batches that fill the devices, each batch waiting for its slowest job (Hydra's
      Optuna sweeper with `n_jobs`, a sweeper's `max_batch_size`).

    A job wider than the cluster is refused by the caller; here it would never start."""
    free = [0.0] * devices  # when each device is next free
    for seconds, width in estimates:
        free.sort()
        start = free[width - 1]  # the moment `width` devices are free
        for i in range(width):
            free[i] = start + seconds
    asynchronous = max(free) if estimates else 0.0
    synchronous, batch, used = 0.0, [], 0
    for seconds, width in estimates:
        if used + width > devices:
            synchronous += max(batch)
            batch, used = [], 0
        batch.append(seconds)
        used += width
    synchronous += max(batch) if batch else 0.0
    return {"devices": devices, "asynchronous_s": asynchronous, "synchronous_s": synchronous}


def cluster_devices(text: str) -> int:
    """`--cluster NODESxDEVICES` (2x4: two nodes of four devices) as a count of devices."""
    m = re.fullmatch(r"\s*(\d+)\s*x\s*(\d+)\s*", text or "")
    if not m or int(m.group(1)) < 1 or int(m.group(2)) < 1:
        raise UserError(
            f"--cluster {text!r} is not NODESxDEVICES. Fix: --cluster 2x4 (2 nodes of 4 devices)."
        )
    return int(m.group(1)) * int(m.group(2))


def render(result: dict) -> str:
    jobs, info = result["jobs"], result["info"]
    rows = []
    for i, j in enumerate(jobs):
        b = j.budget
        rows.append(
            [
                i,
                f"{j.run_dir.parent}/<chosen by Optuna>" if j.trial else str(j.run_dir),
                j.state,
                _m(b.get("total")),
                _m(b.get("from_checkpoint")),
                _m(b.get("random")),
                int(j.cfg.trainer.max_steps),
                "skipped" if j.state == "completed" else _duration(j.estimate_s),
            ]
        )
    header = ["#", "run directory", "state", "params (M)", "from ckpt (M)", "random (M)", "steps", "estimate"]
    lines = [markdown_table(header, rows, "rllrrrrr"), ""]
    todo = [j for j in jobs if j.state != "completed"]
    lines.append(
        f"{len(jobs)} jobs: {len(todo)} to run, {len(jobs) - len(todo)} already completed (skipped)."
    )
    if info.get("note"):
        lines.append(info["note"] + ".")
    if not info.get("sweep_name_fixed"):
        lines.append(
            "sweep_name is the launch time here, so these directories are not the ones the sweep will use: set "
            "sweep_name=<name> on both commands to plan (and later skip) the real ones."
        )
    for p in result["probes"]:
        mem = p["memory"]
        lines += [
            "",
            f"Probe of {p['job']} on {p['device']} ({p['precision']}): setup {p['setup_s']:.1f} s; a training "
            f"batch of {p['batch']} in {p['batch_s']:.3f} s (mean lengths {p['mean_lengths'][0]:.0f} source / "
            f"{p['mean_lengths'][1]:.0f} target tokens); validation: {p['val_gen_batches']} generated batches at "
            f"{p['val_gen_batch_s']:.2f} s and {p['val_batches'] - p['val_gen_batches']} loss batches at "
            f"{p['val_loss_batch_s']:.2f} s; test: {p['test_batches']} batches at {p['test_batch_s']:.2f} s.",
            memory_lines(mem),
        ]
    if result["total_s"] is not None:
        hours = result["device_hours"]
        lines += [
            "",
            f"Estimated time to run: {_duration(result['total_s'])} one job after another ({hours:.2f} "
            "device-hours); jobs run in parallel divide the wall time, not the device-hours.",
        ]
        if result.get("cluster"):
            c = result["cluster"]
            lines.append(
                f"On {c['nodes_x_devices']} ({c['devices']} devices): {_duration(c['asynchronous_s'])} if each job "
                "starts as soon as devices are free (hydra/sweeper=async, SLURM's queue, the local launcher's pool), "
                f"{_duration(c['synchronous_s'])} in synchronous batches that fill the devices (Hydra's Optuna "
                "sweeper's n_jobs), in this order."
            )
        if any(job_devices(j.cfg) > 1 for j in todo):
            lines.append(
                "A job on several devices was probed as one of them at its per-device batch (DDP taken as "
                "perfectly parallel); its device-hours count every device."
            )
    elif todo:
        lines += ["", "No probe (--no-probe): no time or memory estimate."]
    return "\n".join(lines)


def memory_lines(mem: dict) -> str:
    cap = mem["capacity_gib"]
    (b1, p1), (b2, p2) = mem["train_points_gib"]
    train = (
        f"training peaks at {p2:.2f} GiB with batch {b2} ({p1:.2f} GiB with {b1}; "
        f"{mem['per_example_mib']:.1f} MiB per example): {'fits' if p2 <= cap else 'DOES NOT FIT'}; the largest "
        f"batch that fits is about {mem['largest_batch']}"
    )
    beams, eval_batch, peak = mem["num_beams"], mem["eval_batch"], mem["beam_peak_gib"]
    largest = mem["largest_eval_batch"]
    beam = (
        f"beam search ({beams} beams, eval batch {eval_batch}) peaks at {peak:.2f} GiB: "
        f"{'fits' if peak <= cap else 'DOES NOT FIT'}; "
        + (
            f"the largest eval batch that fits is about {largest}"
            if largest is not None
            else "it grew by less than 4 MiB from half the eval batch to it (the meter's resolution, or no higher "
            "than training's peak), so the largest eval batch is not extrapolated"
        )
    )
    return f"Memory ({cap:.1f} GiB available, within 90% of it): {train}. {beam[0].upper()}{beam[1:]}."


def _m(n) -> str:
    return "" if n is None else f"{n / 1e6:.1f}"


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return ""
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 2 * 3600:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"
