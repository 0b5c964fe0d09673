"""Callbacks: throughput and memory, progress display, validation examples for W&B."""

from __future__ import annotations

import logging
import os
import sys
import time

import lightning as L
import torch

from src.models.flops import model_configs, train_flops
from src.system.errors import UserError
from src.system.hardware import device_peak_tflops, peak_memory_mb

log = logging.getLogger(__name__)


class Throughput(L.Callback):
    """Samples/s and target tokens/s over training batches only (validation excluded), model FLOP rate, memory.

    Logged every `log_every_n_steps` as train/samples_per_s, train/tokens_per_s, train/model_tflops_per_s
    (src.models.flops: real tokens only), train/mfu (against src.system.hardware.device_peak_tflops, where known) and
    train/peak_memory_mb.
    """

    def __init__(self, log_every_n_steps: int = 50):
        self.log_every_n_steps = log_every_n_steps
        self.samples = self.tokens = 0
        self.seconds = self.flops = 0.0
        self._start: float | None = None
        self._configs = self._peak = None

    def on_train_start(self, trainer, pl_module) -> None:
        self._configs = model_configs(pl_module.model)
        self._peak = device_peak_tflops(pl_module.device.type, trainer.precision)

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self._start = time.perf_counter()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if self._start is None:
            return
        self.seconds += time.perf_counter() - self._start
        self.samples += batch["input_ids"].size(0)
        self.tokens += batch["num_target_tokens"]
        self.flops += sum(train_flops(*self._configs, S, T) for S, T in batch["lengths"])
        if trainer.global_step % self.log_every_n_steps == 0 and self.seconds > 0:
            summary = self.summary()
            pl_module.log(
                "train/samples_per_s",
                summary.pop("train/samples_per_s"),
                on_step=True,
                on_epoch=False,
                prog_bar=True,
            )  # shown on the progress bar beside steps, loss and ETA
            pl_module.log_dict(summary, on_step=True, on_epoch=False)

    def summary(self) -> dict[str, float]:
        s = max(self.seconds, 1e-9)
        tflops = self.flops / s / 1e12
        return {
            "train/samples_per_s": self.samples / s,
            "train/tokens_per_s": self.tokens / s,
            "train/model_tflops_per_s": tflops,
            **({"train/mfu": tflops / self._peak} if self._peak else {}),
            "train/peak_memory_mb": peak_memory_mb(),
        }


class PlainProgress(L.Callback):
    """One log line every `every_n_steps` (for logs that are not a terminal): step, loss, samples/s, ETA."""

    def __init__(self, every_n_steps: int = 50):
        self.every_n_steps = every_n_steps
        self._t0: float | None = None

    def on_train_start(self, trainer, pl_module) -> None:
        self._t0, self._step0 = time.perf_counter(), trainer.global_step

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        step, total = trainer.global_step, trainer.max_steps
        if step % self.every_n_steps or step == self._step0:
            return
        elapsed = time.perf_counter() - self._t0
        rate = (step - self._step0) / elapsed
        metrics = trainer.callback_metrics
        loss = metrics.get("train/loss")
        sps = metrics.get("train/samples_per_s")
        parts = [f"step {step}" + (f"/{total}" if total and total > 0 else "")]
        if loss is not None:
            parts.append(f"loss {float(loss):.4f}")
        if sps is not None:
            parts.append(f"{float(sps):.1f} samples/s")
        if total and total > 0 and rate > 0:
            parts.append(f"ETA {_duration((total - step) / rate)}")
        log.info(" | ".join(parts))


def _duration(seconds: float) -> str:
    m, s = divmod(int(seconds), 60)
    h, m = divmod(m, 60)
    return f"{h}h{m:02d}m" if h else f"{m}m{s:02d}s"


def progress(mode: str = "auto", every_n_steps: int = 50) -> L.Callback | None:
    """The `progress=auto|rich|plain|none` callback: a Rich bar on a terminal (auto), log lines, or none."""
    if mode == "auto":
        mode = "rich" if sys.stderr.isatty() else "plain"
    if mode == "rich":
        from lightning.pytorch.callbacks import RichProgressBar

        return RichProgressBar(leave=True)
    if mode == "plain":
        return PlainProgress(every_n_steps)
    if mode != "none":
        raise UserError(f"progress={mode!r} is not a choice. Fix: progress=auto, rich, plain or none.")
    return None


class ValidationExamples(L.Callback):
    """At each validation, a table of the first `n` generated examples (source, reference, prediction) in W&B;
    `n=0` (loggers other than W&B: `logger.examples` unset) logs none."""

    def __init__(self, n: int = 8):
        self.n, self.rows = n, []

    def on_validation_epoch_start(self, trainer, pl_module) -> None:
        self.rows = []

    def on_validation_batch_end(
        self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0
    ) -> None:
        if not outputs or len(self.rows) >= self.n:
            return
        for src, ref, pred in zip(batch["source"], batch["target"], outputs["predictions"], strict=False):
            if len(self.rows) < self.n:
                self.rows.append([src, ref, pred])

    def on_validation_epoch_end(self, trainer, pl_module) -> None:
        from lightning.pytorch.loggers import WandbLogger

        for logger in trainer.loggers:
            if isinstance(logger, WandbLogger) and self.rows and trainer.is_global_zero:
                logger.log_table(
                    "val/examples",
                    columns=["source", "reference", "prediction"],
                    data=self.rows,
                    step=trainer.global_step,
                )


class ResumableOrder(L.Callback):
    """Saves where training is in its epoch and the RNG state in every checkpoint, so a resumed run draws the
    same batches and the same dropout masks as an uninterrupted one.

    On restore the data module's `order_state` receives {"epoch", "skip"} and the training sampler skips the
    batches the interrupted run had already consumed.
    """

    def __init__(self):
        self.order_state: dict = {}
        self.epoch = self.consumed = 0

    def setup(self, trainer, pl_module, stage: str) -> None:  # before a checkpoint is restored
        if trainer.datamodule is not None:
            self.order_state = trainer.datamodule.order_state

    def on_train_epoch_start(self, trainer, pl_module) -> None:  # not called when resuming mid-epoch
        self.epoch, self.consumed = trainer.current_epoch, 0

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.epoch, self.consumed = trainer.current_epoch, self.consumed + 1

    def state_dict(self) -> dict:
        state = {"epoch": self.epoch, "consumed": self.consumed, "torch_rng": torch.get_rng_state()}
        if torch.cuda.is_available() and torch.cuda.is_initialized():
            state["cuda_rng"] = torch.cuda.get_rng_state_all()
        return state

    def load_state_dict(self, state: dict) -> None:
        self.epoch, self.consumed = state["epoch"], state["consumed"]
        self.order_state.update(epoch=self.epoch, skip=self.consumed)
        torch.set_rng_state(state["torch_rng"])
        if "cuda_rng" in state and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state["cuda_rng"])


class Interrupted(Exception):
    """Training stopped on a signal after saving a checkpoint; re-running the command (or SLURM) resumes it."""

    def __init__(self, message: str, requeued: bool = False):
        super().__init__(message)
        self.requeued = requeued  # SLURM runs the job again: it must not hand back a result now


def slurm_job_id() -> str | None:
    """The SLURM job (array task) being run, as scontrol names it, or None outside SLURM."""
    array, task = os.environ.get("SLURM_ARRAY_JOB_ID"), os.environ.get("SLURM_ARRAY_TASK_ID")
    return f"{array}_{task}" if array and task else os.environ.get("SLURM_JOB_ID")


class SaveOnSignal(L.Callback):
    """On SIGTERM (preemption, `scontrol requeue`), SIGUSR1 or SIGUSR2 (submitit's warning before the time limit):
    finish the current step, save checkpoints/last.ckpt, then stop with `Interrupted`. Under SLURM the job is
    requeued (`scontrol requeue`) and resumes; `src.train.run` then exits without a result, so the sweep that
    submitted it waits for the resumed job."""

    SIGNALS = ("SIGTERM", "SIGUSR1", "SIGUSR2")

    def __init__(self, last_path: str):
        self.last_path, self.received = last_path, None

    def on_train_start(self, trainer, pl_module) -> None:
        import signal
        import threading

        if threading.current_thread() is not threading.main_thread():
            return
        for name in self.SIGNALS:
            signal.signal(getattr(signal, name), self._handle)

    def _handle(self, signum, frame) -> None:
        import signal

        self.received = signal.Signals(signum).name

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if self.received is None:
            return
        trainer.save_checkpoint(self.last_path)
        log.warning("%s received: saved %s at step %d", self.received, self.last_path, trainer.global_step)
        job = slurm_job_id()
        requeued = False
        if job and trainer.is_global_zero:
            import subprocess

            # already requeued by SLURM (preemption, `scontrol requeue`) or asked here (a warning signal)
            done = subprocess.run(["scontrol", "requeue", job], capture_output=True, text=True, check=False)
            requeued = done.returncode == 0 or "already" in done.stderr.lower() or self.received == "SIGTERM"
            log.warning("SLURM job %s requeued; it will resume from %s", job, self.last_path)
        raise Interrupted(
            f"{self.received} at step {trainer.global_step}; checkpoint saved to {self.last_path}",
            requeued=requeued,
        )
