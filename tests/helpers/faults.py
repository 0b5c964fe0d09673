"""Faults injected into a real `python -m src.train` process: a callback, added on the command line
(`+callbacks.kill._target_=tests.helpers.faults.KillAt +callbacks.kill.point=...`), that SIGKILLs the process at a
named point, so nothing of the project's own clean-up runs."""

from __future__ import annotations

import os
import signal

import lightning as L


class KillAt(L.Callback):
    """SIGKILL this process at `point`: `train_end` (checkpoints written, metrics.json not yet) or `test_batch`
    (during the test evaluation, after its first batch)."""

    def __init__(self, point: str):
        assert point in ("train_end", "test_batch"), point
        self.point = point

    def on_train_end(self, trainer, pl_module) -> None:
        if self.point == "train_end":
            os.kill(os.getpid(), signal.SIGKILL)

    def on_test_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0) -> None:
        if self.point == "test_batch":
            os.kill(os.getpid(), signal.SIGKILL)


def nan_losses(monkeypatch, at) -> None:
    """Make the training loss NaN at the steps `at(global_step)` picks (the module's own logits, times NaN)."""
    from src.models.module import Seq2SeqModule

    real = Seq2SeqModule.labelled_logits

    def labelled_logits(self, batch, encoded=None):
        logits, labels = real(self, batch, encoded)
        return (logits * float("nan") if self.training and at(self.global_step) else logits), labels

    monkeypatch.setattr(Seq2SeqModule, "labelled_logits", labelled_logits)
