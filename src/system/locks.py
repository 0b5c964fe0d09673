"""One exclusive lock on a file (`flock`), the project's only one: a run directory (one process trains in it), a
tokenization cache entry (one process builds it), a GPU lease (one job per device).

The kernel drops the lock when its process ends, however it ends, so no stale lock outlives a crash, a kill or a
SLURM requeue. The file may hold a line about its holder (pid, since when) for the message a second process gets.
"""

from __future__ import annotations

import fcntl
import os
import time
from pathlib import Path


class FileLock:
    """An exclusive `flock` on `path` (created, with its directory, as needed)."""

    def __init__(self, path: str | Path):
        self.path, self._file = Path(path), None

    def acquire(self, block: bool = True) -> bool:
        """Take the lock; with block=False, return False at once where another process holds it."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        handle = open(self.path, "a+")  # noqa: SIM115 (held open for the lock's life)
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | (0 if block else fcntl.LOCK_NB))
        except BlockingIOError:
            handle.close()
            return False
        self._file = handle
        return True

    def release(self) -> None:
        if self._file is not None:
            self._file.close()  # closing the descriptor releases the lock
            self._file = None

    def mark_held(self) -> None:
        """Write who holds the lock (pid and time) into its file, for `holder()` in another process."""
        self._file.seek(0)
        self._file.truncate()
        self._file.write(f"pid {os.getpid()} (since {time.strftime('%Y-%m-%d %H:%M:%S')})\n")
        self._file.flush()

    def holder(self) -> str:
        """What the process holding the lock wrote (`mark_held`), or "another process"."""
        try:
            return self.path.read_text().strip() or "another process"
        except OSError:
            return "another process"

    def __enter__(self) -> FileLock:
        self.acquire()
        return self

    def __exit__(self, *exc) -> None:
        self.release()
