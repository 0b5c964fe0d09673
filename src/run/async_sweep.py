"""`hydra/sweeper=async` (conf/hydra/sweeper/async.yaml): K workers on this machine, each holding one device, take
the next job of a grid or the next Optuna trial the moment their last one ends.

Hydra's own sweepers launch jobs in batches and wait for a batch's slowest job (its Optuna sweeper asks n_jobs
trials, waits for all of them, then asks again), so devices idle behind a long job. Here (src/system/workers.py):

- grid (every sweep a comma list, on the command line or in hydra.sweeper.params as the grid experiments write
  them): every combination, in order; a job whose directory holds a completed run is not started again.
- Optuna (a sweep written as a function, `interval(...)`, `choice(...)`, as `hparams_search=optuna` gives): a trial
  is asked when a worker frees and told when it ends. The study lives in `storage` (default
  `<sweep dir>/optuna.db`, SQLite), so a re-run counts the trials already there against n_trials, and sweeps on
  other machines given the same storage (a database server they all reach; SQLite only where they share one
  machine) join the study.
- A worker process that dies (killed, out of memory) runs its job again, `retries` times (the run resumes from its
  checkpoint); then the job is marked failed in its metrics.json, its trial FAIL with `failure: died`. Trials whose
  sweep died (no heartbeat for 2 x heartbeat_s), that died past their retries, or that a signal interrupted are run
  again by the next sweep on the study; a trial whose job failed (`failure: job`) is not.
- `<sweep dir>/workers.jsonl`: each job's end: worker, tries, start and end times, outcome, value.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
from collections import deque
from pathlib import Path

import optuna
from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.singleton import Singleton

# a job in a fresh process as Hydra's joblib launcher runs it; the Optuna sweeper's search-space parsing and
# trial-to-overrides code, so the two read `params` alike
from hydra_plugins.hydra_joblib_launcher._core import execute_job as joblib_job
from hydra_plugins.hydra_optuna_sweeper._impl import OptunaSweeperImpl, create_params_from_overrides
from omegaconf import OmegaConf
from optuna.trial import TrialState

from src.config.schema import identity
from src.run import record
from src.run.sweeps import completed_before
from src.system.errors import UserError
from src.system.workers import Done, Slots, Task, device_env

log = logging.getLogger(__name__)


def execute_job(idx, overrides, hydra_context, config, task_function, singleton_state):
    """One job of the sweep, in its worker's process, run as Hydra's joblib launcher runs one: its return value
    (raising the job's own error where it failed)."""
    return joblib_job(idx, overrides, hydra_context, config, task_function, singleton_state).return_value


def visible_gpus() -> list[str]:
    """The GPU ids a worker can be given (CUDA_VISIBLE_DEVICES, else 0..n-1); none on a machine without one."""
    import torch  # the sweep's jobs import it anyway; here only where a sweep starts

    n = torch.cuda.device_count() if torch.cuda.is_available() else 0
    listed = [x for x in os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",") if x]
    return (listed or [str(i) for i in range(n)])[:n]


def is_optuna_search(overrides: list[str]) -> bool:
    """Whether overrides (the sweeper's params and the command line's) ask for an Optuna search: a sweep written as a
    function (`choice(...)`, `interval(...)`, `range(...)`, `tag(...)`). Comma lists (`variant=a,b`, as the grid
    experiments' params are) are a grid's."""
    for override in OverridesParser.create().parse_overrides(overrides):
        if override.is_sweep_override() and not getattr(override.value(), "simple_form", False):
            return True
    return False


def retryable(trial) -> bool:
    """A failed trial that did not fail by itself: its sweep or worker died, or a signal interrupted it (not one whose
    job failed, nor a surplus one that never ran)."""
    return trial.state == TrialState.FAIL and trial.user_attrs.get("failure") not in ("job", "surplus")


def counted(trials) -> int:
    """How many of `trials` count toward n_trials: those asked, less surplus ones given back and failed ones whose
    retry is among them (the retry counts instead)."""
    retried = {t.user_attrs["retry_of"] for t in trials if "retry_of" in t.user_attrs}
    return sum(
        1
        for t in trials
        if t.state != TrialState.WAITING
        and t.user_attrs.get("failure") != "surplus"
        and not (retryable(t) and t.number in retried)
    )


class AsyncSweeper(OptunaSweeperImpl):
    """The project's asynchronous sweeper; its keys are the Optuna sweeper's, n_jobs being the number of workers."""

    def __init__(
        self,
        sampler,
        direction,
        storage,
        study_name,
        n_trials: int,
        n_jobs: int,
        retries: int = 1,
        heartbeat_s: float = 60.0,
        params=None,
        search_space=None,
        custom_search_space=None,
    ) -> None:
        super().__init__(
            sampler,
            direction,
            storage,
            study_name,
            n_trials,
            n_jobs,
            0.0,
            search_space,
            custom_search_space,
            params,
        )
        self.retries, self.heartbeat_s = retries, heartbeat_s

    def setup(self, *, hydra_context, task_function, config) -> None:
        super().setup(hydra_context=hydra_context, task_function=task_function, config=config)
        self.task_function = task_function

    # ---- the sweep --------------------------------------------------------------------------------------------
    def sweep(self, arguments: list[str]) -> None:
        launcher = str(OmegaConf.select(self.config, "hydra.launcher._target_") or "")
        if not launcher.endswith("BasicLauncher"):
            raise UserError(
                f"hydra/sweeper=async runs its jobs on this machine's devices, not through {launcher}. Fix: drop "
                "hydra/launcher=..., and on a cluster run the same sweep command on each node (with one storage)."
            )
        if self.n_jobs < 1 or self.retries < 0 or self.heartbeat_s <= 0:
            raise UserError(
                f"hydra.sweeper.n_jobs={self.n_jobs}, retries={self.retries}, heartbeat_s={self.heartbeat_s}: "
                "n_jobs (workers) must be at least 1, retries at least 0, heartbeat_s above 0. Fix: e.g. "
                "hydra.sweeper.n_jobs=2 hydra.sweeper.retries=1."
            )
        gpus = visible_gpus()
        if gpus and self.n_jobs > len(gpus):
            raise UserError(
                f"hydra.sweeper.n_jobs={self.n_jobs} workers, but this machine shows {len(gpus)} GPUs: each worker "
                f"holds one. Fix: hydra.sweeper.n_jobs={len(gpus)}."
            )
        self.sweep_dir = Path(str(self.config.hydra.sweep.dir))
        self.sweep_dir.mkdir(parents=True, exist_ok=True)
        OmegaConf.save(self.config, self.sweep_dir / "multirun.yaml")
        slots = Slots(device_env(self.n_jobs, gpus), retries=self.retries, tick=self.heartbeat_s)
        self._process_searchspace_config()
        params = self._parse_sweeper_params_config()
        where = f"{len(gpus)} GPUs" if gpus else f"CPU, {slots.envs[0]['OMP_NUM_THREADS']} threads each"
        log.info("asynchronous sweep: %d workers (%s) in %s", self.n_jobs, where, self.sweep_dir)
        with _stopping_on_signals(slots):
            if self.search_space_distributions or is_optuna_search([*params, *arguments]):
                self._optuna(slots, [*params, *arguments])
            else:
                self._grid(slots, [*params, *arguments])
        if slots.stopping:
            log.warning("sweep interrupted; the same command resumes it (unfinished jobs run again)")
            raise SystemExit(143)

    def _grid(self, slots: Slots, arguments: list[str]) -> None:
        parser = OverridesParser.create(config_loader=self.hydra_context.config_loader)
        jobs = BasicSweeper.split_arguments(parser.parse_overrides(arguments), None)[0]
        queue, seen = deque(), {}
        for idx, overrides in enumerate(jobs):
            sweep_config = self.hydra_context.config_loader.load_sweep_config(self.config, list(overrides))
            out = str(record.sweep_job_dir(sweep_config.hydra.sweep))
            # `a,b,a`, or overrides that do not change what is trained: one run, not two at once
            if out in seen:
                log.info(
                    "#%d %s: the same run as #%d (%s), run once", idx, " ".join(overrides), seen[out], out
                )
                continue
            seen[out] = idx
            if completed_before(sweep_config) is not None:
                log.info("#%d %s: already completed, not run again", idx, " ".join(overrides))
                continue
            queue.append((idx, tuple(overrides), sweep_config))
        log.info("%d jobs, %d to run", len(jobs), len(queue))

        def next_task() -> Task | None:
            return self._task(*queue.popleft()) if queue else None

        def on_done(done: Done) -> None:
            self._ended(done, self._outcome(done, slots))

        slots.run(next_task, on_done)

    def _optuna(self, slots: Slots, params: list[str]) -> None:
        search, fixed = create_params_from_overrides(params)
        search = {**(self.search_space_distributions or {}), **search}
        for name in fixed:
            search.pop(name, None)
        storage = self.storage
        if storage is None:
            storage = f"sqlite:///{(self.sweep_dir / 'optuna.db').resolve()}"
        if isinstance(storage, str):
            storage = optuna.storages.RDBStorage(storage, heartbeat_interval=int(max(1, self.heartbeat_s)))
        study = optuna.create_study(
            study_name=self.study_name,
            storage=storage,
            sampler=self.sampler,
            directions=self._get_directions(),
            load_if_exists=True,
        )
        again: deque = deque()  # failed trials to run again, before any new one
        # each running trial's run directory: the trials asked meanwhile with its parameters
        running: dict[str, list] = {}
        given_up: set[int] = set()  # trials that died here past their retries: marked, run again by a re-run

        def to_run_again() -> None:  # trials whose sweep died (stale heartbeat), died or were interrupted
            if storage.is_heartbeat_enabled():
                storage.fail_stale_trials(study._study_id)
            trials = study.get_trials(deepcopy=False)
            retried = {t.user_attrs["retry_of"] for t in trials if "retry_of" in t.user_attrs}
            skip = retried | given_up | {t.number for t in again}
            again.extend(t for t in trials if retryable(t) and t.number not in skip)

        to_run_again()
        log.info(
            "study %s in %s: %d of %d trials there, %d to run again",
            study.study_name,
            storage.url if hasattr(storage, "url") else storage,
            counted(study.get_trials(deepcopy=False)) - len(again),
            self.n_trials,
            len(again),
        )

        def next_task() -> Task | None:
            to_run_again()
            old = again.popleft() if again else None
            if old is None and counted(study.get_trials(deepcopy=False)) >= self.n_trials:
                return None
            if old is not None:
                study.enqueue_trial(old.params)
            trial = study.ask()
            # another sweep on the study may have asked (or retried the same trial) between the count and this ask:
            # trials are numbered as asked, so the earlier one runs and this one is given back (failure: surplus)
            earlier = [t for t in study.get_trials(deepcopy=False) if t.number < trial.number]
            if old is not None:
                surplus = any(t.user_attrs.get("retry_of") == old.number for t in earlier)
            else:
                surplus = counted(earlier) >= self.n_trials
            if surplus:
                trial.set_user_attr("failure", "surplus")
                study.tell(trial, state=TrialState.FAIL)
                return next_task() if old is not None else None
            if old is not None:
                trial.set_user_attr("retry_of", old.number)
            overrides = tuple(self._configure_trials([trial], search, fixed)[0])
            if storage.is_heartbeat_enabled():
                storage.record_heartbeat(trial._trial_id)
            sweep_config = self.hydra_context.config_loader.load_sweep_config(self.config, list(overrides))
            run_dir = str(record.sweep_job_dir(sweep_config.hydra.sweep))
            trial.set_user_attr("overrides", " ".join(overrides))
            trial.set_user_attr("run_dir", run_dir)
            if run_dir in running:  # a running trial's parameters again (a categorical search): its result
                running[run_dir].append(trial)
                log.info(
                    "trial #%d: the parameters of a running trial; it gets that trial's result", trial.number
                )
                return next_task()
            before = completed_before(sweep_config)
            value = before.monitored(str(sweep_config.monitor)) if before is not None else None
            if value is not None and len(self._get_directions()) == 1:  # run before: its result, no job
                study.tell(trial, values=[float(value)])
                log.info("trial #%d: already completed in %s (%s)", trial.number, run_dir, value)
                return next_task()
            running[run_dir] = []
            return self._task(trial.number, overrides, sweep_config, trial)

        def on_done(done: Done) -> None:
            outcome = self._outcome(done, slots)
            _, _, sweep_config, trial = done.task.key
            for t in [trial, *running.pop(str(record.sweep_job_dir(sweep_config.hydra.sweep)), [])]:
                if outcome == "completed":
                    values = done.value if isinstance(done.value, list | tuple) else [done.value]
                    study.tell(t, values=[float(v) for v in values])
                else:
                    t.set_user_attr("failure", "job" if outcome == "failed" else outcome)
                    study.tell(t, state=TrialState.FAIL)
                    if outcome == "died":
                        given_up.add(t.number)
            self._ended(done, outcome)

        def on_tick(tasks: list[Task]) -> None:
            if storage.is_heartbeat_enabled():
                waiting = [t for trials in running.values() for t in trials]
                for trial in waiting + [task.key[3] for task in tasks]:
                    storage.record_heartbeat(trial._trial_id)

        slots.run(next_task, on_done, on_tick)
        done = [t for t in study.get_trials(deepcopy=False) if t.state == TrialState.COMPLETE]
        if done and len(self._get_directions()) == 1:
            best = study.best_trial
            results = {"name": "optuna", "best_params": best.params, "best_value": best.value}
            OmegaConf.save(OmegaConf.create(results), self.sweep_dir / "optimization_results.yaml")
            log.info("best trial #%d: %s = %s", best.number, best.params, best.value)

    # ---- one job ----------------------------------------------------------------------------------------------
    def _task(self, idx: int, overrides: tuple, sweep_config, trial=None) -> Task:
        args = (idx, overrides, self.hydra_context, self.config, self.task_function, Singleton.get_state())
        return Task(
            f"#{idx} {' '.join(overrides)}", execute_job, args, key=(idx, overrides, sweep_config, trial)
        )

    def _outcome(self, done: Done, slots: Slots) -> str:
        """completed (a value), failed (the job failed: its record says why), died (its worker process, past its
        retries: marked failed here), interrupted (by a signal to the sweep)."""
        ok = done.error is None and not done.died and _number(done.value)
        if ok:
            return "completed"
        if slots.stopping:
            return "interrupted"
        if done.died:
            _, _, sweep_config, _ = done.task.key
            why = RuntimeError(
                f"its worker process died ({done.death()}) in each of {done.task.tries} tries "
                f"(hydra.sweeper.retries={self.retries})"
            )
            out = record.sweep_job_dir(sweep_config.hydra.sweep)
            # a config that does not make a record (a rule failed before): workers.jsonl still says so
            with contextlib.suppress(Exception):
                record.write_failed(out, identity(sweep_config), why)
            log.error("%s: %s; marked failed", done.task.name, why)
            return "died"
        return "failed"

    def _ended(self, done: Done, outcome: str) -> None:
        idx, overrides, _, _ = done.task.key
        line = {
            "job": idx,
            "overrides": list(overrides),
            "worker": done.slot,
            "tries": done.task.tries,
            "started": done.started,
            "ended": done.ended,
            "outcome": outcome,
            "value": done.value if _number(done.value) else None,
            "error": done.error or (done.death() if done.died else None),
        }
        with open(self.sweep_dir / "workers.jsonl", "a") as f:  # one line a job, appended whole (O_APPEND)
            f.write(json.dumps(line) + "\n")
        log.info(
            "%s: %s on worker %d (%.0f s)", done.task.name, outcome, done.slot, done.ended - done.started
        )


def _number(value) -> bool:
    values = value if isinstance(value, list | tuple) else [value]
    try:
        return len(values) > 0 and all(v is not None and float(v) == float(v) for v in values)
    except (TypeError, ValueError):
        return False


@contextlib.contextmanager
def _stopping_on_signals(slots: Slots):
    """SIGINT or SIGTERM to the sweep: no new job starts. SIGTERM is passed on to the running jobs (which save and
    stop); a terminal's Ctrl-C reaches them itself."""

    def handle(signum, frame) -> None:
        slots.stop()
        log.warning("%s: no new jobs; waiting for the running ones to stop", signal.Signals(signum).name)
        if signum == signal.SIGTERM:
            for pid in slots.pids():
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGTERM)

    previous = {s: signal.signal(s, handle) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for s, h in previous.items():
            signal.signal(s, h)
