"""Callbacks: checkpoints (written atomically beside their place, resolved inside the run directory), throughput and
memory, progress display (a bar of steps, or log lines), W&B validation examples."""

from __future__ import annotations

import hashlib
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import lightning as L
import torch
from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO
from lightning.pytorch.callbacks import EarlyStopping, EMAWeightAveraging, ModelCheckpoint, RichProgressBar
from lightning.pytorch.callbacks.early_stopping import EarlyStoppingReason
from lightning.pytorch.loggers import WandbLogger
from rich.progress import ProgressColumn
from rich.text import Text

from src.models.flops import model_configs, train_flops
from src.run import average
from src.system import signals
from src.system.errors import UserError
from src.system.hardware import device_peak_tflops, peak_memory_mb
from src.system.outputs import atomic_file, remove_stale_temporaries

log = logging.getLogger(__name__)


class AtomicCheckpointIO(TorchCheckpointIO):
    """Checkpoints written as every other file of the project (`src.system.outputs.atomic_file`): into a temporary
    file in the checkpoint's own directory, fsync-ed, then renamed over it. Lightning's own writer stages the file in
    $TMPDIR and moves it, which across file systems (a local /tmp, outputs on shared storage) copies straight into
    last.ckpt: a kill or a full disk then leaves half a checkpoint and the training progress is gone."""

    def save_checkpoint(self, checkpoint, path, storage_options=None) -> None:
        if storage_options is not None:
            raise TypeError("storage_options are not supported by AtomicCheckpointIO")
        path = Path(path)
        # a save killed mid-write (SIGKILL) left its temporary file: as large as a checkpoint, and this run's alone
        remove_stale_temporaries(path.parent, path.name)
        with atomic_file(path) as f:
            torch.save(checkpoint, f)


class RunCheckpoint(ModelCheckpoint):
    """ModelCheckpoint whose saved paths are read back inside this run's checkpoint directory, and whose last.ckpt
    is written at every validation.

    Lightning restores `best_model_path` (and, in the same directory, the others) as they were written: a run
    directory that was copied or moved would test, or resume beside, the original's checkpoints. Each recorded
    path is taken as its file name in this callback's `dirpath`.

    Lightning writes last.ckpt only where it saved a best one: a validation that did not improve `monitor` left
    last.ckpt at an older step, which a resumed run (and early stopping's patience count) would go back to."""

    def on_validation_end(self, trainer, pl_module) -> None:
        super().on_validation_end(trainer, pl_module)
        due = self.save_last and self._last_global_step_saved != trainer.global_step
        if due and not self._should_skip_saving_checkpoint(trainer):
            self._save_last_checkpoint(trainer, self._monitor_candidates(trainer))

    def load_state_dict(self, state_dict: dict) -> None:
        here = self.dirpath
        if here is None:
            return super().load_state_dict(state_dict)

        def inside(path):
            return os.path.join(here, os.path.basename(path)) if path else path

        state = dict(state_dict)
        state["dirpath"] = here
        for key in ("best_model_path", "kth_best_model_path", "last_model_path"):
            if key in state:
                state[key] = inside(state[key])
        if "best_k_models" in state:
            state["best_k_models"] = {inside(k): v for k, v in state["best_k_models"].items()}
        super().load_state_dict(state)


class RunEarlyStopping(EarlyStopping):
    """Lightning's EarlyStopping (`early_stopping.patience` validations without an improvement of `monitor` stop
    the run), which also notes the step it stopped at; its state, patience count included, is in every
    checkpoint, so a resumed run goes on counting where it was."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.stopped_step: int | None = None

    def _run_early_stopping_check(self, trainer) -> None:
        super()._run_early_stopping_check(trainer)
        stopped = self.stopping_reason != EarlyStoppingReason.NOT_STOPPED
        if trainer.should_stop and stopped and self.stopped_step is None:
            self.stopped_step = trainer.global_step
            log.info("early stopping at step %d: %s", self.stopped_step, self.stopping_reason_message)

    def on_train_start(self, trainer, pl_module) -> None:
        if self.stopped_step is not None:  # resumed from a checkpoint saved as it stopped: it stays stopped
            trainer.should_stop = True

    def state_dict(self) -> dict:
        return {**super().state_dict(), "stopped_step": self.stopped_step}

    def load_state_dict(self, state_dict: dict) -> None:
        state = dict(state_dict)
        self.stopped_step = state.pop("stopped_step", None)
        super().load_state_dict(state)


def early_stopping(
    monitor: str, mode: str, patience: int | None, min_delta: float = 0.0
) -> RunEarlyStopping | None:
    """The `early_stopping` keys' callback; None (no early stopping) when patience is null."""
    if patience is None:
        return None
    return RunEarlyStopping(monitor=monitor, mode=mode, patience=patience, min_delta=min_delta)


class RunEMA(EMAWeightAveraging):
    """Lightning's EMAWeightAveraging (`ema.decay`): an exponential moving average of the weights, updated after
    every optimizer step from `ema.start_step` on. Validation scores the averaged weights, so best.ckpt is chosen
    on them, and every checkpoint holds them as its `state_dict` (the trained ones under `current_model_state`, and
    the average's state, so a resumed run continues it): src.eval, src.export and src.predict load the averaged
    weights.

    After fit the average is let go, so that testing best.ckpt loads its averaged `state_dict`: Lightning's
    callback, still holding it, would load `current_model_state` into the model and test the trained weights."""

    def __init__(self, decay: float, start_step: int = 0):
        super().__init__(decay=decay, update_starting_at_step=start_step)

    def teardown(self, trainer, pl_module, stage: str) -> None:
        if stage == "fit":
            self._average_model = None

    def on_load_checkpoint(self, trainer, pl_module, checkpoint: dict) -> None:
        # resuming fit: the average and the trained weights, each restored; testing: the averaged state_dict
        if self._average_model is not None:
            super().on_load_checkpoint(trainer, pl_module, checkpoint)


def ema(decay: float | None, start_step: int = 0) -> RunEMA | None:
    """The `ema` keys' callback; None (the trained weights, no average) when decay is null."""
    return None if decay is None else RunEMA(decay, start_step)


class KeepForAverage(L.Callback):
    """After each validation of training, the trained weights as checkpoints/step-<step>.ckpt
    (`trainer.save_checkpoint(weights_only=True)`: no optimizer state, and no callback's hook, so with `ema.decay`
    too these are the trained weights, not the moving average); the newest `last` of them are kept.

    Resuming is safe: a step's file is written again, with the same weights, when the resumed run reaches the step,
    and only files older than the newest `last` up to the current step are removed."""

    def __init__(self, dirpath: str, last: int):
        self.dirpath, self.last = dirpath, last

    def on_validation_end(self, trainer, pl_module) -> None:
        if trainer.sanity_checking or trainer.state.fn != "fit":
            return
        step = trainer.global_step
        # every process calls it; the first writes
        trainer.save_checkpoint(average.step_path(self.dirpath, step), weights_only=True)
        if trainer.is_global_zero:
            older = [p for s, p in average.kept(self.dirpath) if s <= step][: -self.last]
            for path in older:
                path.unlink(missing_ok=True)


def keep_for_average(dirpath: str, last: int) -> KeepForAverage | None:
    """The `average` keys' callback; None when average.last is 0."""
    return KeepForAverage(dirpath, last) if last else None


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


class StepProgressBar(RichProgressBar):
    """Lightning's Rich progress bar, with training counted against the step budget: one bar for the whole run,
    "step 120/300", steps/s (s/step when slower) and the time left, across epochs and from a resumed step.

    Lightning's own counts batches per epoch, and under a step budget (max_epochs=-1) reads "Epoch 0/-2" and
    "0.00it/s" until its first estimate. With an epoch budget (trainer.max_steps=-1) training is shown by epoch,
    as Lightning does ("Epoch 3/29"); validation and test bars are Lightning's, in batches.
    """

    def _by_steps(self) -> bool:
        return self.trainer.max_steps is not None and self.trainer.max_steps > 0

    @property
    def total_train_batches(self) -> int | float:
        return self.trainer.max_steps if self._by_steps() else super().total_train_batches

    def _get_train_description(self, current_epoch: int) -> str:
        if self._by_steps():
            text = "Training"
        else:
            epochs = self.trainer.max_epochs
            text = f"Epoch {current_epoch}" + (f"/{epochs - 1}" if epochs is not None and epochs > 0 else "")
        return f"{text:{len(self.validation_description)}}"  # as wide as "Validation": no flicker

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        if not self._by_steps():
            return super().on_train_epoch_start(trainer, pl_module)
        if self.is_disabled or self.progress is None:
            return None
        if self.train_progress_bar_id is None:  # once a run: the steps bar goes on over epochs
            self._initialize_train_progress_bar_id()
        self._update(self.train_progress_bar_id, trainer.global_step)
        return None

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if not self._by_steps():
            return super().on_train_batch_end(trainer, pl_module, outputs, batch, batch_idx)
        if self.is_disabled:
            return None
        if self.train_progress_bar_id is None:  # resumed mid-epoch
            self._initialize_train_progress_bar_id()
        self._update(self.train_progress_bar_id, trainer.global_step)  # optimizer steps, not batches
        self._update_metrics(trainer, pl_module)
        self.refresh()
        return None

    def configure_columns(self, trainer) -> list:
        bar = self

        def is_training(task) -> bool:
            return task.id == bar.train_progress_bar_id and bar._by_steps()

        class Count(ProgressColumn):  # "step 120/300" for training, "3/4" for validation and test batches
            def render(self, task) -> Text:
                total = "--" if task.total in (None, float("inf")) else int(task.total)
                done = f"{int(task.completed)}/{total}"
                return Text(f"step {done}" if is_training(task) else done, style=bar.theme.batch_progress)

        class Speed(ProgressColumn):  # nothing until there is an estimate (Lightning shows 0.00it/s)
            def render(self, task) -> Text:
                one, many = ("step", "steps") if is_training(task) else ("batch", "batches")
                speed = task.speed
                if not speed:
                    return Text("")
                text = f"{speed:.2f} {many}/s" if speed >= 1 else f"{1 / speed:.1f} s/{one}"
                return Text(text, style=bar.theme.processing_speed)

        swap = {"BatchesProcessedColumn": Count(), "ProcessingSpeedColumn": Speed()}  # Lightning's, by name
        return [swap.get(type(c).__name__, c) for c in super().configure_columns(trainer)]


def progress(mode: str = "auto", every_n_steps: int = 50) -> L.Callback | None:
    """The `progress=auto|rich|plain|none` callback: a Rich bar on a terminal (auto), log lines, or none."""
    if mode == "auto":
        mode = "rich" if sys.stderr.isatty() else "plain"
    if mode == "rich":
        return StepProgressBar(leave=True)
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
    batches the interrupted run had already consumed. A checkpoint holds the first process's RNG state only: with
    several processes (DDP), each process seeds its generator before every training batch from the run's seed, the
    epoch, the batch and its rank (`batch_seed`), so that every process of a resumed run draws the dropout masks of
    the uninterrupted one.
    """

    def __init__(self):
        self.order_state: dict = {}
        self.epoch = self.consumed = 0

    def setup(self, trainer, pl_module, stage: str) -> None:  # before a checkpoint is restored
        if trainer.datamodule is not None:
            self.order_state = trainer.datamodule.order_state

    def on_train_epoch_start(self, trainer, pl_module) -> None:  # not called when resuming mid-epoch
        self.epoch, self.consumed = trainer.current_epoch, 0

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if trainer.world_size > 1:
            seed = int(os.environ.get("PL_GLOBAL_SEED", 0))  # seed_everything's, in every process
            torch.manual_seed(batch_seed(seed, trainer.current_epoch, self.consumed, trainer.global_rank))

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


def batch_seed(seed: int, epoch: int, batch: int, rank: int) -> int:
    """A seed for one process's training batch, the same in an uninterrupted and a resumed run."""
    digest = hashlib.sha256(f"{seed}/{epoch}/{batch}/{rank}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & (2**63 - 1)


class Interrupted(Exception):
    """Training stopped on a signal after saving a checkpoint; re-running the command (or SLURM) resumes it."""

    def __init__(self, message: str, requeued: bool = False):
        super().__init__(message)
        self.requeued = requeued  # SLURM runs the job again: it must not hand back a result now


def slurm_job_id() -> str | None:
    """The SLURM job (array task) being run, as scontrol names it, or None outside SLURM."""
    array, task = os.environ.get("SLURM_ARRAY_JOB_ID"), os.environ.get("SLURM_ARRAY_TASK_ID")
    return f"{array}_{task}" if array and task else os.environ.get("SLURM_JOB_ID")


def requeue_slurm_job(signal_name: str) -> bool:
    """Under SLURM, have this job run again (`scontrol requeue`); whether it will be. False outside SLURM."""
    job = slurm_job_id()
    if not job:
        return False

    # already requeued by SLURM (preemption, `scontrol requeue`) or asked here (a warning signal)
    done = subprocess.run(["scontrol", "requeue", job], capture_output=True, text=True, check=False)
    return done.returncode == 0 or "already" in done.stderr.lower() or signal_name == "SIGTERM"


class SaveOnSignal(L.Callback):
    """On Ctrl-C (SIGINT), SIGTERM (preemption, `scontrol requeue`), SIGUSR1 or SIGUSR2 (submitit's warning before
    the time limit): finish the current step, save checkpoints/last.ckpt, then stop with `Interrupted`. Under SLURM
    the job is requeued (`scontrol requeue`) and resumes; `src.train.train_or_skip` then exits without a result, so
    the sweep that submitted it waits for the resumed job. A second Ctrl-C stops at once (Python's KeyboardInterrupt). The
    handlers are in place while training runs; before and after it, the signals do what they did before."""

    SIGNALS = ("SIGINT", "SIGTERM", "SIGUSR1", "SIGUSR2")

    def __init__(self, last_path: str):
        self.last_path, self.received, self.previous = last_path, None, {}

    def on_train_start(self, trainer, pl_module) -> None:
        signals.release()  # from here on, this callback's handlers (and after training, the process's own)
        # a signal while loading or tokenizing (src.system.signals): stop before the first step
        if signals.received() is not None:
            raise Interrupted(f"{signals.received()} received before training started; nothing was trained")
        if threading.current_thread() is not threading.main_thread():
            return
        for name in self.SIGNALS:
            number = getattr(signal, name)
            self.previous[number] = signal.signal(number, self._handle)

    def on_train_end(self, trainer, pl_module) -> None:
        self._restore()

    def on_exception(self, trainer, pl_module, exception) -> None:
        self._restore()

    def _restore(self) -> None:
        for number, handler in self.previous.items():
            signal.signal(number, handler)
        self.previous = {}

    def _handle(self, signum, frame) -> None:
        if signum == signal.SIGINT and self.received == "SIGINT":
            raise KeyboardInterrupt  # the second Ctrl-C: stop now, without the checkpoint of this step
        if signum == signal.SIGINT:
            log.warning("Ctrl-C: saving a checkpoint after this step, then stopping (Ctrl-C again: at once)")
        self.received = signal.Signals(signum).name

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        stop = self.received is not None
        if trainer.world_size > 1:
            # a signal reaches a job's processes at slightly different moments (or only one of them): all stop after
            # the same batch, or one would save and leave while the others wait in the next step's all-reduce
            stop = trainer.strategy.reduce_boolean_decision(stop, all=False)
        if not stop:
            return
        # None: another process's signal (SLURM's preemption sends SIGTERM to every task)
        name = self.received or "SIGTERM"
        trainer.save_checkpoint(self.last_path)
        log.warning("%s received: saved %s at step %d", name, self.last_path, trainer.global_step)
        requeued = requeue_slurm_job(name) if trainer.is_global_zero else False
        if requeued:
            log.warning("SLURM job %s requeued; it will resume from %s", slurm_job_id(), self.last_path)
        raise Interrupted(
            f"{name} at step {trainer.global_step}; checkpoint saved to {self.last_path}",
            requeued=requeued,
        )
