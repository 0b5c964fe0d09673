"""Worker slots that each run one task at a time in a fresh process and take the next task the moment theirs ends.

The asynchronous sweep (src/run/async_sweep.py) runs on these: K slots, each holding one device (slot i sees the
i-th GPU alone, or a share of the CPU cores), so that a short job never waits for a long one to free its batch.
A task is a function and its arguments, sent with cloudpickle (as Hydra's joblib launcher sends its jobs) to a fresh
Python process that imports only what the task needs; the process answers on a pipe of its own with the function's
return value or its error, its output going where this process's goes. A process that dies without
an answer (killed, out of memory) is run again up to `retries` times, then reported as died.
"""

from __future__ import annotations

import logging
import os
import pickle
import signal
import subprocess
import sys
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from multiprocessing.connection import wait
from typing import Any

import cloudpickle

log = logging.getLogger(__name__)


@dataclass
class Task:
    """What one slot runs: `call(*args)` in a process of its own; `name` says which in messages."""

    name: str
    call: Callable[..., Any]
    args: tuple = ()
    key: Any = None  # the caller's handle (a sweep's job)
    tries: int = 0  # processes started for it so far


@dataclass
class Done:
    """How a task ended, as its slot saw it (`started`, `ended`: time.time() of its last try)."""

    task: Task
    slot: int
    started: float
    ended: float
    value: Any = None
    error: str | None = None  # the function raised: its message
    exitcode: int | None = None  # the process died without an answer: its exit code (-9: SIGKILL)

    @property
    def died(self) -> bool:
        return self.exitcode is not None

    def death(self) -> str:
        """The process's end in words, e.g. 'killed by SIGKILL' or 'exit code 1'."""
        if self.exitcode is not None and self.exitcode < 0:
            with_name = (
                signal.Signals(-self.exitcode).name if -self.exitcode in signal.valid_signals() else "?"
            )
            return f"killed by {with_name}"
        return f"exit code {self.exitcode}"


def device_env(slots: int, gpus: list[str], cpus: int | None = None) -> list[dict[str, str]]:
    """The environment of each slot: slot i sees the i-th of `gpus` alone (CUDA_VISIBLE_DEVICES); without GPUs,
    the cores split evenly (OMP_NUM_THREADS, unless the caller's environment sets it), so slots do not
    oversubscribe the CPU."""
    if gpus and slots > len(gpus):
        raise ValueError(f"{slots} workers but {len(gpus)} GPUs")
    cpus = cpus or os.cpu_count() or 1
    threads = os.environ.get("OMP_NUM_THREADS") or str(max(1, cpus // slots))
    envs = []
    for i in range(slots):
        env = {"OMP_NUM_THREADS": threads, "WARMSTART_WORKER": str(i)}
        if gpus:
            env["CUDA_VISIBLE_DEVICES"] = gpus[i]
        envs.append(env)
    return envs


# the worker process: the parent's import path, then the task; the answer written to the descriptor it was given
_BOOT = """
import os, pickle, sys
fd, path = pickle.load(sys.stdin.buffer)
sys.path[:0] = [p for p in path if p not in sys.path]
import cloudpickle
call, args = cloudpickle.load(sys.stdin.buffer)
sys.stdin.close()
try:
    answer = ("value", call(*args))
except BaseException as err:  # SystemExit and KeyboardInterrupt too: the task's error
    answer = ("error", f"{type(err).__name__}: {err}")
with os.fdopen(fd, "wb") as out:
    cloudpickle.dump(answer, out)
"""


@dataclass
class _Running:
    process: subprocess.Popen
    answer: int  # the read end of the task's answer pipe
    task: Task
    slot: int
    started: float


@dataclass
class Slots:
    """`len(envs)` slots; `run` keeps every slot busy while `next_task` gives work.

    Args:
        envs: each slot's extra environment variables (`device_env`).
        retries: how many times a task whose process died is run again (in the slot that frees first).
        tick: seconds between `on_tick` calls while tasks run (a heartbeat), None for none.
    """

    envs: list[dict[str, str]]
    retries: int = 0
    tick: float | None = None
    _running: dict = field(default_factory=dict)
    _stopping: bool = False

    def stop(self) -> None:
        """Start no more tasks; the running ones end as they will (a signal handler calls this)."""
        self._stopping = True

    @property
    def stopping(self) -> bool:
        return self._stopping

    def pids(self) -> list[int]:
        return [r.process.pid for r in self._running.values()]

    def run(
        self,
        next_task: Callable[[], Task | None],
        on_done: Callable[[Done], None],
        on_tick: Callable[[list[Task]], None] | None = None,
    ) -> None:
        """Run tasks until `next_task` gives None while no slot is busy (it is asked again whenever a slot frees,
        so work that appears meanwhile is taken), or until `stop()`; `on_done` gets each task's end (a died task
        only once its retries are spent)."""
        free = deque(range(len(self.envs)))
        again: deque[Task] = deque()
        last_tick = time.monotonic()
        while True:
            while free and not self._stopping:
                task = again.popleft() if again else next_task()
                if task is None:
                    break
                self._start(task, free.popleft())
            if not self._running:
                return
            timeout = None if self.tick is None else max(0.0, self.tick - (time.monotonic() - last_tick))
            ready = wait(
                list(self._running), timeout=timeout
            )  # an answer, or the end of its pipe (exit, kill)
            if on_tick is not None and time.monotonic() - last_tick >= (self.tick or 0):
                on_tick([r.task for r in self._running.values()])
                last_tick = time.monotonic()
            for fd in ready:
                done = self._finish(self._running.pop(fd))
                free.append(done.slot)
                if done.died and done.task.tries <= self.retries and not self._stopping:
                    log.warning(
                        "%s: its worker process died (%s); running it again (try %d of %d)",
                        done.task.name,
                        done.death(),
                        done.task.tries + 1,
                        self.retries + 1,
                    )
                    again.append(done.task)
                    continue
                on_done(done)

    def _start(self, task: Task, slot: int) -> None:
        read, write = os.pipe()
        process = subprocess.Popen(
            [sys.executable, "-c", _BOOT],
            stdin=subprocess.PIPE,
            env={**os.environ, **self.envs[slot]},  # a fresh interpreter: no CUDA or thread state inherited
            pass_fds=(write,),
        )
        os.close(write)  # the child holds it: the pipe ends when the child does
        try:
            pickle.dump((write, sys.path), process.stdin)
            cloudpickle.dump((task.call, task.args), process.stdin)
            process.stdin.close()
        except BrokenPipeError:  # it died at once: its exit tells
            pass
        task.tries += 1
        self._running[read] = _Running(process, read, task, slot, time.time())

    @staticmethod
    def _finish(r: _Running) -> Done:
        chunks = []
        while chunk := os.read(r.answer, 1 << 20):  # to the end: the child wrote its answer and exited
            chunks.append(chunk)
        os.close(r.answer)
        r.process.wait()
        done = Done(r.task, r.slot, r.started, time.time())
        try:
            kind, value = cloudpickle.loads(b"".join(chunks))
        except Exception:  # no answer, or half of one: the process died
            done.exitcode = r.process.returncode
            return done
        if kind == "value":
            done.value = value
        else:
            done.error = value
        return done
