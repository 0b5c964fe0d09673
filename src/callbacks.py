"""Callbacks: training throughput, measured on training steps only (validation time excluded)."""

from __future__ import annotations

import time

import lightning as L


class Throughput(L.Callback):
    """Samples/s and target tokens/s over training batches; logged as train/samples_per_s, train/tokens_per_s."""

    def __init__(self, log_every_n_steps: int = 50):
        self.log_every_n_steps = log_every_n_steps
        self.samples = self.tokens = 0
        self.seconds = 0.0
        self._start: float | None = None

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self._start = time.perf_counter()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if self._start is None:
            return
        self.seconds += time.perf_counter() - self._start
        self.samples += batch["input_ids"].size(0)
        self.tokens += batch["num_target_tokens"]
        if trainer.global_step % self.log_every_n_steps == 0 and self.seconds > 0:
            pl_module.log_dict(self.summary(), on_step=True, on_epoch=False)

    def summary(self) -> dict[str, float]:
        s = max(self.seconds, 1e-9)
        return {"train/samples_per_s": self.samples / s, "train/tokens_per_s": self.tokens / s}
