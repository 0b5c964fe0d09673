"""Callbacks the SLURM tests put into a job from the command line (`+callbacks.<name>._target_=...`)."""

from __future__ import annotations

import time
from pathlib import Path

import lightning as L


class PauseOnce(L.Callback):
    """At training step `step` of the job's first run, write `marker` (the test then requeues the job) and pause
    `seconds`, so the signal arrives in the middle of training; a resumed run finds the marker and goes on."""

    def __init__(self, step: int, marker: str, seconds: float = 5.0):
        self.step, self.marker, self.seconds = step, Path(marker), seconds

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if trainer.global_step == self.step and not self.marker.exists():
            self.marker.write_text(str(trainer.global_step))
            time.sleep(self.seconds)


class FailOn(L.Callback):
    """Fail at the start of training when the run's sharing mode is `sharing` (a job of a sweep that fails)."""

    def __init__(self, sharing: str):
        self.sharing = sharing

    def on_train_start(self, trainer, pl_module) -> None:
        if pl_module.hparams.model["sharing"] == self.sharing:
            raise RuntimeError(f"a job that fails on purpose (sharing={self.sharing})")
