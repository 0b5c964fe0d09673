"""Plan a sweep before paying for it: its jobs, their directories and state, budgets, time and memory. Submits nothing.

    python -m src.plan experiment=rothe_grid_demo
    python -m src.plan experiment=rothe_grid data=xsum hydra/launcher=slurm --no-probe
    python -m src.plan variant=bert2bert,bertshare seed=1,2 --probe-steps 8 --json plan.json

Takes the overrides of `python -m src.train -m ...` and expands them as the sweep would (the sweeper's params
included), then for every job: its run directory, whether it is already completed (the sweep would skip it),
resumable from last.ckpt, failed before, or new; its parameter budget (meta device: nothing loaded). A short
probe on this machine's device, of the largest variant of each workload (task, batch, lengths, decoding),
measures a training step, a validation and a test batch with the job's own data, batch and precision; from it
come the expected time of each job and of the sweep (device-hours), and the memory check: the peak memory of a
training step at the job's batch and at half of it gives the memory per example, hence the largest batch that
fits; the same for beam search at the evaluation batch.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import re
import statistics
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import lightning as L
import torch
from omegaconf import DictConfig, OmegaConf

from src.errors import UserError, report_user_errors
from src.outputs import markdown_table, write_json
from src.process import setup_process
from src.rundir import finished, sweep_job_dir

log = logging.getLogger(__name__)
CONF = Path(__file__).resolve().parents[1] / "conf"
GIB = 1024**3


# ---- the sweep's jobs ------------------------------------------------------------------------------------------
@dataclass
class Job:
    overrides: list[str]
    cfg: DictConfig  # the job's composed config (Hydra's included)
    run_dir: Path
    state: str = "new"  # completed | resumable | failed | new
    budget: dict = field(default_factory=dict)
    arch: dict = field(default_factory=dict)
    estimate_s: float | None = None
    trial: bool = False  # an Optuna trial: its values, hence its directory, are chosen as the sweep runs


def sweep_jobs(overrides: list[str]) -> tuple[list[Job], dict]:
    """The jobs `python -m src.train -m <overrides>` would run, composed as its sweeper and launcher do."""
    from hydra import initialize_config_dir
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
    from hydra.core.global_hydra import GlobalHydra
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.core.utils import setup_globals
    from hydra.errors import HydraException
    from hydra.types import RunMode

    setup_globals()
    with initialize_config_dir(str(CONF), version_base="1.3", job_name="train"):
        loader = GlobalHydra.instance().config_loader()
        try:
            base = loader.load_configuration("train", list(overrides), run_mode=RunMode.MULTIRUN)
        except HydraException as err:
            raise UserError(f"these overrides do not compose: {err}") from None
        sweeper = base.hydra.sweeper
        info = {"sweeper": str(sweeper.get("_target_", "")), "sweep_name_fixed": True}
        # Optuna chooses each trial's values as the sweep runs: plan n_trials of the base config
        if "optuna" in info["sweeper"].lower():
            n = int(sweeper.get("n_trials", 1))
            plain = [o for o in overrides if not re.search(r"[,(]", o.split("=", 1)[-1])]
            batches = [[plain]] * n
            info["note"] = (
                f"Optuna chooses each trial's values as the sweep runs: {n} trials of the base config"
            )
        else:
            params = sweeper.get("params")
            params = OmegaConf.to_container(params, resolve=True) if params else {}
            lines = [f"{k}={v}" for k, v in params.items()] + list(overrides)
            parsed = OverridesParser.create(config_loader=loader).parse_overrides(lines)
            batches = BasicSweeper.split_arguments(parsed, None)
        jobs = []
        trial = "optuna" in info["sweeper"].lower()
        for batch in batches:
            for job_overrides in batch:
                cfg = loader.load_sweep_config(base, list(job_overrides))
                jobs.append(Job(list(job_overrides), cfg, sweep_job_dir(cfg), trial=trial))
        raw = OmegaConf.to_container(base, resolve=False).get("sweep_name")
        info["sweep_name_fixed"] = not str(raw).startswith("${now:")
    return jobs, info


def job_state(job: Job) -> str:
    """completed (the sweep skips it), resumable (last.ckpt), failed (will run again) or new."""
    if job.trial:
        return "new"
    if finished(job.cfg, job.run_dir) is not None:
        return "completed"
    if (job.run_dir / "checkpoints" / "last.ckpt").is_file():
        return "resumable"
    metrics = job.run_dir / "metrics.json"
    if metrics.is_file():
        with contextlib.suppress(ValueError):
            if json.loads(metrics.read_text()).get("status") == "failed":
                return "failed"
    return "new"


def job_budget(cfg: DictConfig) -> tuple[dict, dict]:
    """(parameter budget, architecture) of a job on the meta device, from its checkpoints' facts."""
    from src.models.builder import architecture, build
    from src.models.spec import ModelSpec
    from src.variants import arch_facts

    spec = ModelSpec.from_config(cfg)
    if spec.seq2seq:
        return {}, {}
    enc = None if spec.decoder_only else arch_facts(spec.encoder)
    arch = architecture(spec, enc, arch_facts(spec.decoder), same_vocab=spec.encoder == spec.decoder)
    return build(spec, "meta", arch=arch).budget.as_dict(), arch


def workload(cfg: DictConfig) -> tuple:
    """Jobs with the same workload key run the same batches: one probe serves them all."""
    d = cfg.data
    gen = json.dumps(OmegaConf.to_container(d.generation), sort_keys=True)
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


# ---- memory ----------------------------------------------------------------------------------------------------
class MemoryMeter:
    """Peak memory of this process on a device: CUDA's allocator counters, else the resident set (VmHWM), whose
    peak Linux resets through /proc/self/clear_refs."""

    def __init__(self, device_type: str):
        self.cuda = device_type == "cuda"

    def reset(self) -> None:
        if self.cuda:
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
        else:
            with contextlib.suppress(OSError):
                Path("/proc/self/clear_refs").write_text("5")

    def peak(self) -> float:
        if self.cuda:
            torch.cuda.synchronize()
            return float(torch.cuda.max_memory_allocated())
        return _status_kib("VmHWM") * 1024.0

    def current(self) -> float:
        if self.cuda:
            return float(torch.cuda.memory_allocated())
        return _status_kib("VmRSS") * 1024.0

    def capacity(self) -> float:
        """What this process may use: the GPU's memory, or its resident set plus the host's available memory."""
        if self.cuda:
            return float(torch.cuda.mem_get_info()[1])
        return self.current() + _meminfo_kib("MemAvailable") * 1024.0


def _status_kib(key: str) -> float:
    match = re.search(rf"^{key}:\s+(\d+) kB", Path("/proc/self/status").read_text(), re.M)
    return float(match.group(1)) if match else 0.0


def _meminfo_kib(key: str) -> float:
    match = re.search(rf"^{key}:\s+(\d+) kB", Path("/proc/meminfo").read_text(), re.M)
    return float(match.group(1)) if match else 0.0


def largest_batch(fixed: float, per_example: float, capacity: float, headroom: float = 0.9) -> int:
    """The largest batch whose peak (fixed + per_example x batch) stays within `headroom` of `capacity`."""
    room = headroom * capacity - fixed
    if room <= 0:
        return 0
    if per_example <= 0:
        return 1 << 20  # no measurable growth: bounded by something else
    return int(room // per_example)


def fit_line(b1: int, peak1: float, b2: int, peak2: float) -> tuple[float, float]:
    """(fixed, per_example) of peak = fixed + per_example x batch through two measurements."""
    if b1 == b2:
        return peak2, 0.0
    per = max(0.0, (peak2 - peak1) / (b2 - b1))
    return peak2 - per * b2, per


# ---- the probe -------------------------------------------------------------------------------------------------
class BatchTimer(L.Callback):
    """Wall time of every train / validation / test batch (the device synchronised), and the train lengths."""

    def __init__(self):
        self.train, self.val, self.test, self.lengths = [], [], [], []
        self._t = 0.0

    @staticmethod
    def _sync(pl_module) -> None:
        if pl_module.device.type == "cuda":
            torch.cuda.synchronize()

    def _start(self, pl_module) -> None:
        self._sync(pl_module)
        self._t = time.perf_counter()

    def _stop(self, pl_module) -> float:
        self._sync(pl_module)
        return time.perf_counter() - self._t

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        self._start(pl_module)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self.train.append(self._stop(pl_module))
        self.lengths += list(batch["lengths"])

    def on_validation_batch_start(self, trainer, pl_module, batch, batch_idx, dataloader_idx=0):
        self._start(pl_module)

    def on_validation_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0):
        self.val.append((batch_idx, self._stop(pl_module)))

    def on_test_batch_start(self, trainer, pl_module, batch, batch_idx, dataloader_idx=0):
        self._start(pl_module)

    def on_test_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0):
        self.test.append(self._stop(pl_module))


def job_devices(cfg: DictConfig) -> int:
    """Devices one job trains on: trainer.devices (a count or a list) x num_nodes; "auto" / -1 counts as one."""
    devices = cfg.trainer.get("devices", 1)
    if isinstance(devices, int) and not isinstance(devices, bool):
        n = max(devices, 1)
    elif OmegaConf.is_list(devices) or isinstance(devices, list):
        n = len(devices)
    else:
        n = 1
    return n * int(cfg.trainer.get("num_nodes") or 1)


def probe_config(job: Job, out: str) -> DictConfig:
    """The job's config as a plain one-device run in a scratch directory (no logger, no Hydra): a DDP job is
    probed as one of its devices, at its per-device batch."""
    from src.assemble import per_device_batch_size

    cfg = OmegaConf.create(OmegaConf.to_container(job.cfg, resolve=False))
    cfg.pop("hydra", None)
    cfg.output_dir = out
    cfg.run_name = "plan-probe"
    cfg.sweep_name = "plan"
    accumulation = cfg.trainer.get("accumulate_grad_batches") or 1
    cfg.data.batch_size = per_device_batch_size(cfg.data, job_devices(job.cfg), accumulation)
    cfg.data.global_batch_size = None
    cfg.trainer.update(devices=1, num_nodes=1, strategy="auto")
    return cfg


@contextlib.contextmanager
def quiet_probe():
    """The probe's untrained model would raise the collapsed-output alarm, and each Trainer says its devices:
    neither is news for a plan."""
    loggers = [logging.getLogger(n) for n in ("src.models.module", "lightning.pytorch", "lightning.fabric")]
    levels = [x.level for x in loggers]
    for x in loggers:
        x.setLevel(logging.ERROR)
    try:
        yield
    finally:
        for x, level in zip(loggers, levels, strict=True):
            x.setLevel(level)


def probe(job: Job, steps: int) -> dict:
    """Measure one job on this machine: setup, train step, validation and test batches, and memory."""
    with quiet_probe():
        return _probe(job, steps)


def _probe(job: Job, steps: int) -> dict:
    from src.assemble import assemble, make_trainer
    from src.hardware import keep_freed_host_memory

    with tempfile.TemporaryDirectory(prefix="plan-probe-") as out:
        cfg = probe_config(job, out)
        if cfg.get("reuse_host_memory", True):  # allocate as the job will (its step time depends on it)
            keep_freed_host_memory()
        quiet = {"logger": False, "enable_checkpointing": False, "enable_model_summary": False}
        quiet["enable_progress_bar"] = False
        start = time.perf_counter()
        try:
            parts = assemble(cfg, callbacks=[], splits=["train", "validation", "test"], **quiet)
        except (OSError, UserError, ValueError) as err:
            raise UserError(
                f"the probe cannot build {job.run_dir.name} here ({str(err).splitlines()[0]}). "
                "Fix: plan where its checkpoints and data are reachable, or add --no-probe."
            ) from None
        setup_s = time.perf_counter() - start
        module, dm, precision = parts.module, parts.datamodule, parts.precision
        meter = MemoryMeter(parts.trainer.strategy.root_device.type)
        batch, eval_batch = dm.batch_size, dm.eval_batch_size
        accumulation = parts.trainer.accumulate_grad_batches

        def measured(size: int, attr: str, run) -> tuple[int, float]:
            """Peak memory of `run` with the batch `attr` at `size`."""
            setattr(dm, attr, size)
            meter.reset()
            run()
            return size, meter.peak()

        # training: half the batch, then the job's (timed): memory grows with the batch, so a resident set that
        # never shrinks (CPU) still reads each peak
        timer = BatchTimer()
        fit = {"limit_val_batches": 0, "num_sanity_val_steps": 0, "accumulate_grad_batches": 1, **quiet}
        train_points = [
            measured(
                size,
                "batch_size",
                lambda n=n, t=t: make_trainer(cfg, precision, [t], max_steps=n, **fit).fit(
                    module, datamodule=dm
                ),
            )
            for size, n, t in ((max(1, batch // 2), 2, BatchTimer()), (batch, steps + 1, timer))
        ]
        step_s = statistics.median(timer.train[1:]) if len(timer.train) > 1 else timer.train[0]
        first_s, lengths = timer.train[0], timer.lengths
        train_batches = len(dm.train_dataloader())  # an epoch at the job's batch
        # validation: generated batches and loss-only batches, timed
        val_loader_len = len(dm.val_dataloader())
        gen_batches = cfg.gen_val_batches if cfg.gen_val_batches is not None else val_loader_len
        timer = BatchTimer()
        limit = min(val_loader_len, gen_batches + 2)
        make_trainer(cfg, precision, [timer], limit_val_batches=limit, **quiet).validate(
            module, datamodule=dm, verbose=False
        )
        gen_times = [t for i, t in timer.val if i < gen_batches] or [0.0]
        loss_times = [t for i, t in timer.val if i >= gen_batches] or [0.0]
        # test: beam search at half the evaluation batch, then at it (two batches, timed)
        timer = BatchTimer()
        test = {"verbose": False, "datamodule": dm}
        beam_points = [
            measured(
                size,
                "eval_batch_size",
                lambda n=n, t=t: make_trainer(cfg, precision, [t], limit_test_batches=n, **quiet).test(
                    module, **test
                ),
            )
            for size, n, t in ((max(1, eval_batch // 2), 1, BatchTimer()), (eval_batch, 2, timer))
        ]
        test_len = len(dm.test_dataloader())
        capacity = meter.capacity()
    fixed, per_example = fit_line(*train_points[0], *train_points[1])
    beam_fixed, per_sequence = fit_line(*beam_points[0], *beam_points[1])
    return {
        "job": job.run_dir.name,
        "device": meter_device_name(meter),
        "precision": str(precision),
        "setup_s": setup_s + max(0.0, first_s - step_s),
        "batch_s": step_s,
        "batch": batch,
        "accumulation": accumulation,
        "train_batches": train_batches,
        "mean_lengths": [statistics.fmean(s for s, _ in lengths), statistics.fmean(t for _, t in lengths)],
        "val_batches": val_loader_len,
        "val_gen_batches": min(gen_batches, val_loader_len),
        "val_gen_batch_s": statistics.fmean(gen_times),
        "val_loss_batch_s": statistics.fmean(loss_times),
        "test_batches": test_len,
        "test_batch_s": statistics.fmean(timer.test) if timer.test else 0.0,
        "memory": {
            "capacity_gib": capacity / GIB,
            "train_points_gib": [[b, p / GIB] for b, p in train_points],
            "train_peak_gib": train_points[1][1] / GIB,
            "per_example_mib": per_example / 1024**2,
            "largest_batch": largest_batch(fixed, per_example, capacity),
            "beam_points_gib": [[b, p / GIB] for b, p in beam_points],
            "beam_peak_gib": beam_points[1][1] / GIB,
            "eval_batch": int(eval_batch),
            "num_beams": int(module.generation.get("num_beams") or 1),
            # no growth measured (a CPU's resident set stays at training's higher peak): not extrapolated
            "largest_eval_batch": largest_batch(beam_fixed, per_sequence, capacity)
            if per_sequence > 0
            else None,
        },
    }


def meter_device_name(meter: MemoryMeter) -> str:
    if meter.cuda:
        return torch.cuda.get_device_name()
    from src.hardware import cpu_model

    return f"CPU ({cpu_model()}, {torch.get_num_threads()} threads)"


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
    from src.models.builder import config_from_dict
    from src.models.flops import train_flops

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


def plan(overrides: list[str], probe_steps: int = 5, run_probe: bool = True) -> dict:
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
    return {
        "jobs": jobs,
        "info": info,
        "probes": list(probes.values()),
        "total_s": total_s,
        "device_hours": None if device_s is None else device_s / 3600,
    }


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
            else "it grew no higher than training's peak here, so the largest eval batch is not extrapolated"
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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("overrides", nargs="*", help="the sweep's overrides, as for python -m src.train -m")
    parser.add_argument(
        "--probe-steps", type=int, default=5, help="timed training steps of the probe (default 5)"
    )
    parser.add_argument(
        "--no-probe", action="store_true", help="list jobs and budgets only: no time or memory"
    )
    parser.add_argument("--json", help="also write the plan as JSON to this file")
    args = parser.parse_args(argv)
    setup_process()
    with report_user_errors():
        result = plan(
            [o for o in args.overrides if o not in ("-m", "--multirun")], args.probe_steps, not args.no_probe
        )
        print(render(result))
        if args.json:
            write_json(
                args.json,
                {
                    "jobs": [
                        {
                            "overrides": j.overrides,
                            "run_dir": str(j.run_dir),
                            "state": j.state,
                            "params": j.budget,
                            "steps": int(j.cfg.trainer.max_steps),
                            "devices": job_devices(j.cfg),
                            "estimate_s": j.estimate_s,
                        }
                        for j in result["jobs"]
                    ],
                    "probes": result["probes"],
                    "total_s": result["total_s"],
                    "device_hours": result["device_hours"],
                },
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
