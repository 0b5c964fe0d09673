"""Jobs for the asynchronous sweep's tests: a sleep that stamps its own start and end, a process that kills itself
on its first try, one that raises. Light to import: a worker process loads this module before the job starts."""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path


def stamped_sleep(stamps: str, name: str, seconds: float) -> str:
    """Sleep `seconds`; append {name, worker, start, end} (the job's own clock) to the file `stamps`."""
    start = time.time()
    time.sleep(seconds)
    line = {"name": name, "worker": os.environ.get("WARMSTART_WORKER"), "start": start, "end": time.time()}
    with open(stamps, "a") as f:
        f.write(json.dumps(line) + "\n")
    return name


def die_once(marker: str, value: float) -> float:
    """SIGKILL this process the first time (it leaves `marker`); return `value` the next."""
    if not Path(marker).exists():
        Path(marker).touch()
        os.kill(os.getpid(), signal.SIGKILL)
    return value


def fail(message: str) -> None:
    raise ValueError(message)
