"""One GPU per job for parallel local sweeps: a job takes a free device, or waits until one is free.

Leases are `flock` locks (`src.system.locks.FileLock`) on files in a shared directory, so they are released by the kernel when a job ends or
dies, and they coordinate any number of processes (joblib workers, separate shells) on one machine.
"""

from __future__ import annotations

import contextlib
import logging
import os
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from src.system.locks import FileLock

log = logging.getLogger(__name__)
DEFAULT_LOCK_DIR = Path(
    os.environ.get("WARMSTART_GPU_LOCKS", Path(tempfile.gettempdir()) / "warmstart-gpu-locks")
)


@contextlib.contextmanager
def lease_device(n_devices: int, lock_dir: Path = DEFAULT_LOCK_DIR, poll_s: float = 2.0) -> Iterator[int]:
    """Hold one of `n_devices` device indices for the duration of the block; waits while all are held."""
    lock_dir.mkdir(parents=True, exist_ok=True)
    waiting_since = None
    while True:
        for index in range(n_devices):
            lock = FileLock(lock_dir / f"device{index}.lock")
            if not lock.acquire(block=False):
                continue
            try:
                lock.mark_held()
                log.info("leased device %d of %d", index, n_devices)
                yield index
            finally:
                lock.release()
            return
        if waiting_since is None:
            waiting_since = time.monotonic()
            log.info("all %d devices are busy; waiting for one to be free", n_devices)
        time.sleep(poll_s)
