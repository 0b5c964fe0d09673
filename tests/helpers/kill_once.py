"""A Lightning callback for tests: a training job whose process is killed mid-run, once."""

from __future__ import annotations

import os
import signal
from pathlib import Path

from lightning.pytorch.callbacks import Callback


class KillOnce(Callback):
    """SIGKILL the training process after `step` steps, the first time a run directory trains (a marker file there
    says it happened): a worker dying mid-run, as the OOM killer or a node failure ends it."""

    def __init__(self, step: int = 2):
        self.step = step

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        marker = Path(trainer.default_root_dir) / "killed-once"
        if trainer.global_step >= self.step and not marker.exists():
            marker.touch()
            os.kill(os.getpid(), signal.SIGKILL)
