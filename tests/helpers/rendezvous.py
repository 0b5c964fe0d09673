"""A Lightning callback for tests: every job of a sweep waits at the start of training until `parties` jobs have
arrived. Jobs that run one after another never all arrive, so the first one raises instead of hanging."""

from __future__ import annotations

import os
import time
from pathlib import Path

from lightning.pytorch.callbacks import Callback


class Rendezvous(Callback):
    def __init__(self, dir: str, parties: int, timeout_s: float = 120.0):
        self.dir, self.parties, self.timeout_s = Path(dir), parties, timeout_s

    def on_train_start(self, trainer, pl_module):
        self.dir.mkdir(parents=True, exist_ok=True)
        (self.dir / f"{os.getpid()}-{time.time_ns()}").touch()
        deadline = time.monotonic() + self.timeout_s
        while len(list(self.dir.iterdir())) < self.parties:
            if time.monotonic() > deadline:
                raise RuntimeError(f"only {len(list(self.dir.iterdir()))} of {self.parties} jobs ran at once")
            time.sleep(0.05)
