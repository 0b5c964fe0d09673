"""A short probe of a sweep's largest job on this device: seconds per training step, validation and test batch,
and peak memory at the job's batch and at half of it (hence memory per example and the largest batch that fits)."""

from __future__ import annotations

import contextlib
import logging
import re
import statistics
import tempfile
import time
from pathlib import Path

import lightning as L
import torch
from omegaconf import OmegaConf

from src.analysis.sweep import Job, job_devices
from src.config.data import per_device_batch_size
from src.config.schema import TrainConfig, train_config
from src.run.assemble import assemble, make_trainer
from src.system.errors import UserError
from src.system.hardware import cpu_model, keep_freed_host_memory

log = logging.getLogger(__name__)


GIB = 1024**3


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


#: bytes: a peak that grows less than this between two batch sizes grew by the meter's granularity (resident-set
#: pages, allocator blocks), not by the batch; no largest batch is extrapolated from it
MIN_GROWTH = 4 * 1024**2


def extrapolated_batch(points, capacity: float) -> int | None:
    """The largest batch that fits, from the peaks (bytes) at two batch sizes [(b1, p1), (b2, p2)]; None where the
    peak grew by less than MIN_GROWTH between them."""
    (b1, p1), (b2, p2) = points
    if p2 - p1 < MIN_GROWTH:
        return None
    return largest_batch(*fit_line(b1, p1, b2, p2), capacity)


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


def probe_config(job: Job, out: str) -> TrainConfig:
    """The job's config as a plain one-device run in a scratch directory (no logger, no Hydra): a DDP job is
    probed as one of its devices, at its per-device batch."""
    cfg = OmegaConf.create(OmegaConf.to_container(job.cfg, resolve=False))
    cfg.pop("hydra", None)
    cfg.output_dir = out
    cfg.run_name = "plan-probe"
    cfg.sweep_name = "plan"
    accumulation = cfg.trainer.get("accumulate_grad_batches") or 1
    cfg.data.batch_size = per_device_batch_size(cfg.data, job_devices(job.cfg), accumulation)
    cfg.data.global_batch_size = None
    cfg.trainer.update(devices=1, num_nodes=1, strategy="auto")
    return train_config(cfg)


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
    with tempfile.TemporaryDirectory(prefix="plan-probe-") as out:
        cfg = probe_config(job, out)
        if cfg.reuse_host_memory:  # allocate as the job will (its step time depends on it)
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
        decoded = cfg.decoded_val_batches  # as the run decodes (all where a generated metric is monitored)
        gen_batches = decoded if decoded is not None else val_loader_len
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
            "num_beams": int(module.decoding.num_beams or 1),
            # no growth measured (a CPU's resident set stays at training's higher peak): not extrapolated
            "largest_eval_batch": extrapolated_batch(beam_points, capacity),
        },
    }


def meter_device_name(meter: MemoryMeter) -> str:
    if meter.cuda:
        return torch.cuda.get_device_name()
    return f"CPU ({cpu_model()}, {torch.get_num_threads()} threads)"
