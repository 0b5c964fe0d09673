"""A stop asked for by a signal before training starts (loading, tokenizing): noted at once, acted on between
chunks of work, so that a SLURM preemption or Ctrl-C during a long tokenization stops within a chunk.

`stop_on_signals()` is in force from the start of a training command until training starts, when the checkpoint
callback (src.run.callbacks.SaveOnSignal) takes the signals over; long loops call `check_stop()`, which raises
`StopRequested`. A second Ctrl-C stops at once (KeyboardInterrupt).
"""

from __future__ import annotations

import contextlib
import signal
import threading

SIGNALS = ("SIGINT", "SIGTERM", "SIGUSR1", "SIGUSR2")
_received: str | None = None


class StopRequested(Exception):
    """A signal asked the process to stop before training started; nothing was lost (no step was trained)."""


def received() -> str | None:
    """The name of the signal that asked for a stop, or None."""
    return _received


def check_stop(doing: str) -> None:
    """Raise StopRequested if a signal asked for a stop (`doing`: what is interrupted, for the message)."""
    if _received is not None:
        raise StopRequested(f"{_received} received while {doing}; stopped before training, nothing was lost")


def _handle(signum, frame) -> None:
    global _received
    name = signal.Signals(signum).name
    if signum == signal.SIGINT and _received == "SIGINT":
        raise KeyboardInterrupt  # the second Ctrl-C: at once
    _received = name


_previous: dict = {}


def release() -> None:
    """Give the signals back to the handlers they had before `stop_on_signals` (training's own take over)."""
    for number, handler in _previous.items():
        signal.signal(number, handler)
    _previous.clear()


@contextlib.contextmanager
def stop_on_signals():
    """Note SIGINT / SIGTERM / SIGUSR1 / SIGUSR2 in the block (main thread only) until `release()`; the earlier
    handlers after it."""
    global _received
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    _received = None
    for name in SIGNALS:
        number = getattr(signal, name)
        _previous[number] = signal.signal(number, _handle)
    try:
        yield
    finally:
        release()
