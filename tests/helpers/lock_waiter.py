"""A Lightning callback for tests: the job that trains holds at the start of training until another process waits
for its run directory's lock, so a test sees the two jobs meet there whatever the machine's load."""

from __future__ import annotations

import time
from pathlib import Path

from lightning.pytorch.callbacks import Callback


def lock_waiters(path: Path) -> int:
    """Processes blocked on a flock of `path`, as the kernel lists them (/proc/locks: `-> FLOCK ... dev:inode`)."""
    inode = path.stat().st_ino
    waiting = 0
    for line in Path("/proc/locks").read_text().splitlines():
        fields = line.split()
        if len(fields) > 6 and fields[1] == "->" and int(fields[6].rsplit(":", 1)[1]) == inode:
            waiting += 1
    return waiting


class HoldUntilWaited(Callback):
    def __init__(self, timeout_s: float = 180.0):
        self.timeout_s = timeout_s

    def on_train_start(self, trainer, pl_module):
        lock = Path(trainer.default_root_dir) / ".lock"
        deadline = time.monotonic() + self.timeout_s
        while not lock_waiters(lock):
            if time.monotonic() > deadline:
                raise RuntimeError(f"no other process waited for {lock} in {self.timeout_s:.0f} s")
            time.sleep(0.1)
