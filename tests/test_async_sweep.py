"""The asynchronous sweep (`hydra/sweeper=async`): worker slots that take the next job the moment theirs ends (idle
time measured from the jobs' own start and end stamps, against what synchronous batches of the same jobs idle), a
killed worker's job run again or marked, every job once; then real `python -m src.train -m` sweeps, grid and Optuna,
with unequal job lengths, a worker killed mid-training, and a re-run that starts nothing."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from src.system.workers import Slots, Task, device_env
from tests.helpers.async_jobs import die_once, fail, stamped_sleep
from tests.helpers.commands import REPO, command_environment, run_cli, start_cli
from tests.helpers.tiny_run import tiny_models, tiny_run

LONG, SHORT = 4.0, 0.5


def _run(slots: Slots, tasks: list[Task]):
    queue, ended = list(tasks), []
    slots.run(lambda: queue.pop(0) if queue else None, ended.append)
    return ended


def idle_while_work_left(jobs: list[dict], workers: int) -> float:
    """Worker-seconds without a job between the first start and the last job's start (after it, no work is left
    to take), from the jobs' own stamps."""
    t0, t1 = min(j["start"] for j in jobs), max(j["start"] for j in jobs)
    busy = sum(max(0.0, min(j["end"], t1) - max(j["start"], t0)) for j in jobs)
    return workers * (t1 - t0) - busy


def synchronous_idle(durations: list[float], workers: int) -> float:
    """What batches of `workers` jobs that each wait for their slowest job idle over the same durations."""
    batches = [durations[i : i + workers] for i in range(0, len(durations), workers)]
    return sum(len(b) * max(b) - sum(b) for b in batches[:-1])  # the last batch: no work left behind it


def test_workers_take_the_next_job_when_theirs_ends_not_when_the_batch_does(tmp_path):
    stamps = tmp_path / "stamps.jsonl"
    durations = [LONG] + [SHORT] * 6 + [LONG]
    tasks = [Task(f"job{i}", stamped_sleep, (str(stamps), f"job{i}", d)) for i, d in enumerate(durations)]
    ended = _run(Slots(device_env(2, [])), tasks)
    jobs = [json.loads(x) for x in stamps.read_text().splitlines()]
    assert sorted(j["name"] for j in jobs) == sorted(t.name for t in tasks)  # every job, once
    assert sorted(d.value for d in ended) == sorted(t.name for t in tasks) and all(
        d.task.tries == 1 for d in ended
    )
    long = next(j for j in jobs if j["name"] == "job0")
    beside = [j for j in jobs if j["worker"] != long["worker"] and long["start"] <= j["start"] < long["end"]]
    # synchronous batches of 2 start one job beside the long one; here the free worker keeps taking short ones
    assert len(beside) >= 3, beside
    idle, batched = idle_while_work_left(jobs, 2), synchronous_idle(durations, 2)
    assert idle < batched / 2, (idle, batched)  # the handing over (a process start) is all the idle time left


def test_a_job_whose_worker_dies_runs_again_then_is_reported_died(tmp_path):
    ended = _run(
        Slots(device_env(1, []), retries=1), [Task("dies once", die_once, (str(tmp_path / "a"), 1.5))]
    )
    assert [(d.value, d.task.tries, d.died) for d in ended] == [(1.5, 2, False)]
    ended = _run(Slots(device_env(1, []), retries=0), [Task("dies", die_once, (str(tmp_path / "b"), 1.5))])
    assert [(d.died, d.exitcode, d.death(), d.task.tries) for d in ended] == [
        (True, -9, "killed by SIGKILL", 1)
    ]


def test_a_job_that_raises_is_reported_with_its_error_and_not_run_again(tmp_path):
    ended = _run(Slots(device_env(2, []), retries=2), [Task("fails", fail, ("bad input",))])
    assert [(d.error, d.died, d.task.tries) for d in ended] == [("ValueError: bad input", False, 1)]


def test_each_worker_holds_one_gpu_or_its_share_of_the_cores(monkeypatch):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    assert [e["CUDA_VISIBLE_DEVICES"] for e in device_env(2, ["3", "5"])] == ["3", "5"]
    assert [e["OMP_NUM_THREADS"] for e in device_env(2, [], cpus=8)] == ["4", "4"]
    assert device_env(3, [], cpus=2)[0]["OMP_NUM_THREADS"] == "1"
    with pytest.raises(ValueError, match="3 workers but 2 GPUs"):
        device_env(3, ["0", "1"])


def test_a_bad_worker_count_is_one_error_line(tmp_path):
    proc = run_cli(
        "src.train", "-m", "hydra/sweeper=async", "hydra.sweeper.n_jobs=0", f"hydra.sweep.dir={tmp_path}"
    )
    assert proc.returncode == 2, proc.stderr[-2000:]
    errors = [x for x in proc.stderr.splitlines() if x.startswith("error:")]
    assert len(errors) == 1 and "hydra.sweeper.n_jobs=0" in errors[0], proc.stderr[-2000:]


def _ledger(sweep: Path) -> list[dict]:
    return [json.loads(x) for x in (sweep / "workers.jsonl").read_text().splitlines()]


@pytest.mark.slow  # real training jobs: make test-slow (CI runs it), the default run stays under 10 min
def test_a_grid_of_unequal_jobs_on_two_workers_then_a_rerun_that_starts_nothing(tiny, tmp_path):
    sweep = tmp_path / "sweep"
    command = [
        "src.train",
        "-m",
        "hydra/sweeper=async",
        "hydra.sweeper.n_jobs=2",
        f"hydra.sweep.dir={sweep}",
        *tiny_models(tiny),
        "trainer.max_steps=24,2,3,2",  # the second 2: the same run as the first, run once
        *tiny_run(steps=None, val_every=None, test=4),
        "trainer.val_check_interval=2",
    ]
    proc = run_cli(*command)
    assert proc.returncode == 0, proc.stderr[-3000:]
    runs = {p.parent.name: json.loads(p.read_text()) for p in sweep.glob("*/metrics.json")}
    assert len(runs) == 3 and all(r["status"] == "completed" for r in runs.values())
    assert "4 jobs, 3 to run" in proc.stdout, proc.stdout[-3000:]
    lines = _ledger(sweep)
    assert sorted(x["job"] for x in lines) == [0, 1, 2]  # each run once
    assert all(x["tries"] == 1 and x["outcome"] == "completed" for x in lines)
    long = next(x for x in lines if x["job"] == 0)
    beside = [x for x in lines if x["job"] != 0 and long["started"] <= x["started"] < long["ended"]]
    assert len(beside) == 2, lines  # both short jobs ran while the long one trained, on the other worker
    assert {x["worker"] for x in beside} == {1 - long["worker"]}
    before = {name: (sweep / name / "metrics.json").read_bytes() for name in runs}

    again = run_cli(*command)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "4 jobs, 0 to run" in again.stdout, again.stdout[-3000:]
    assert _ledger(sweep) == lines  # no job started
    assert {name: (sweep / name / "metrics.json").read_bytes() for name in runs} == before


def _optuna_sweep(tiny, sweep: Path, *extra: str, kill: bool = True, steps: int = 4) -> list[str]:
    """An Optuna search of the learning rate on tiny runs of `steps` steps; `kill`: each process killed once after
    step 3."""
    return [
        "src.train",
        "-m",
        "hparams_search=optuna",
        "hydra/sweeper=async",
        "optimizer.warmup_steps=0",  # given: the search is the learning rate's (batch size: tiny_run's)
        f"hydra.sweep.dir={sweep}",
        *tiny_models(tiny),
        *tiny_run(steps=steps, test=4),
        *(["+callbacks.kill_once._target_=tests.helpers.kill_once.KillOnce"] if kill else []),
        *(["+callbacks.kill_once.step=3"] if kill else []),  # after the checkpoint of step 2
        *extra,
    ]


def _trials(db: Path) -> dict[int, dict]:
    """{number: {state, value, attrs}} of a study's trials, read from its SQLite file as another tool would."""
    with sqlite3.connect(db) as con:
        trials = {
            n: {"state": st, "value": None, "attrs": {}}
            for n, st in con.execute("select number, state from trials")
        }
        for n, v in con.execute(
            "select t.number, v.value from trials t join trial_values v using (trial_id)"
        ):
            trials[n]["value"] = v
        for n, k, v in con.execute(
            "select t.number, a.key, a.value_json from trials t join trial_user_attributes a using (trial_id)"
        ):
            trials[n]["attrs"][k] = json.loads(v)
    return trials


def _run_record(trial: dict) -> dict:
    return json.loads((Path(trial["attrs"]["run_dir"]) / "metrics.json").read_text())


@pytest.mark.slow  # real training jobs: make test-slow (CI runs it), the default run stays under 10 min
def test_optuna_trials_on_two_workers_a_killed_worker_resumes_and_a_rerun_adds_none(tiny, tmp_path):
    sweep = tmp_path / "sweep"
    command = _optuna_sweep(
        tiny, sweep, "hydra.sweeper.n_jobs=2", "hydra.sweeper.n_trials=3", "hydra.sweeper.retries=1"
    )
    proc = run_cli(*command)
    assert proc.returncode == 0, proc.stderr[-3000:]
    trials = _trials(sweep / "optuna.db")
    assert sorted((n, t["state"]) for n, t in trials.items()) == [
        (0, "COMPLETE"),
        (1, "COMPLETE"),
        (2, "COMPLETE"),
    ]
    lines = _ledger(sweep)
    assert sorted(x["job"] for x in lines) == [0, 1, 2]  # every trial once
    assert all(
        x["tries"] == 2 and x["outcome"] == "completed" for x in lines
    )  # each killed at step 3, run again
    assert {x["worker"] for x in lines} == {0, 1}
    for trial in trials.values():
        record = _run_record(trial)
        assert record["status"] == "completed" and record["train"]["resumed_from"], record.get("train")
        assert trial["value"] == record["validation"]["loss"]  # the trial's value: its run's monitored metric

    again = run_cli(*command)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "3 of 3 trials there, 0 to run again" in again.stdout, again.stdout[-3000:]
    assert _ledger(sweep) == lines


@pytest.mark.slow  # real training jobs: make test-slow (CI runs it), the default run stays under 10 min
def test_a_trial_whose_worker_died_past_its_retries_is_marked_failed_and_the_rerun_runs_it_again(
    tiny, tmp_path
):
    sweep = tmp_path / "sweep"
    command = _optuna_sweep(
        tiny, sweep, "hydra.sweeper.n_jobs=1", "hydra.sweeper.n_trials=1", "hydra.sweeper.retries=0"
    )
    proc = run_cli(*command)
    assert proc.returncode == 1, proc.stderr[-3000:]  # the sweep's summary: a failed job
    trials = _trials(sweep / "optuna.db")
    assert [(t["state"], t["attrs"]["failure"]) for t in trials.values()] == [("FAIL", "died")]
    record = _run_record(trials[0])
    assert record["status"] == "failed" and "killed by SIGKILL" in record["error"], record
    assert [(x["outcome"], x["tries"]) for x in _ledger(sweep)] == [("died", 1)]

    again = run_cli(*command)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "0 of 1 trials there, 1 to run again" in again.stdout, again.stdout[-3000:]
    trials = _trials(sweep / "optuna.db")
    assert trials[1]["state"] == "COMPLETE" and trials[1]["attrs"]["retry_of"] == 0
    assert trials[1]["attrs"]["run_dir"] == trials[0]["attrs"]["run_dir"]  # the same parameters: the same run
    record = _run_record(trials[1])
    assert record["status"] == "completed" and record["train"]["resumed_from"], (
        record
    )  # from the step-2 checkpoint


@pytest.mark.slow  # real training jobs: make test-slow (CI runs it), the default run stays under 10 min
def test_two_sweeps_given_one_storage_share_the_study_as_sweeps_on_two_machines_would(tiny, tmp_path):
    storage = f"sqlite:///{tmp_path / 'study.db'}"
    shared = [
        "hydra.sweeper.n_jobs=1",
        "hydra.sweeper.n_trials=3",
        f"hydra.sweeper.storage={storage}",
        "hydra.sweeper.study_name=shared",
    ]
    sweeps = [tmp_path / "node0", tmp_path / "node1"]
    procs = [start_cli(*_optuna_sweep(tiny, d, *shared, kill=False)) for d in sweeps]
    outputs = [p.communicate(timeout=600)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outputs[0][-2000:] + outputs[1][-2000:]
    trials = _trials(tmp_path / "study.db")
    ran = {n: t for n, t in trials.items() if t["attrs"].get("failure") != "surplus"}
    assert sorted(ran) == [0, 1, 2] and all(t["state"] == "COMPLETE" for t in ran.values()), trials
    jobs = sorted(x["job"] for d in sweeps for x in _ledger(d))
    assert jobs == [0, 1, 2]  # each trial ran once, in one of the two sweeps
    assert all(_ledger(d) for d in sweeps)  # both took trials


@pytest.mark.slow  # real training jobs: make test-slow (CI runs it), the default run stays under 10 min
def test_a_trial_whose_whole_sweep_died_is_run_again_by_the_next_sweep_once_its_heartbeat_is_stale(
    tiny, tmp_path
):
    sweep = tmp_path / "sweep"
    command = _optuna_sweep(
        tiny,
        sweep,
        "hydra.sweeper.n_jobs=1",
        "hydra.sweeper.n_trials=1",
        "hydra.sweeper.heartbeat_s=1",
        kill=False,
        steps=30,
    )
    # the machine fails: the sweep and its worker are killed at once, mid-training (after a checkpoint)
    node = subprocess.Popen(
        [sys.executable, "-m", *command],
        cwd=REPO,
        env=command_environment(),
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 300
        while not list(sweep.glob("*/checkpoints/last.ckpt")) and time.monotonic() < deadline:
            time.sleep(0.2)
    finally:
        os.killpg(node.pid, signal.SIGKILL)
        node.wait()
    assert list(sweep.glob("*/checkpoints/last.ckpt")), "the trial never reached its first checkpoint"
    trials = _trials(sweep / "optuna.db")
    assert [t["state"] for t in trials.values()] == ["RUNNING"]  # as the dead sweep left it
    time.sleep(3)  # its heartbeat (every 1 s) is stale after 2

    again = run_cli(*command)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "0 of 1 trials there, 1 to run again" in again.stdout, again.stdout[-3000:]
    trials = _trials(sweep / "optuna.db")
    assert trials[0]["state"] == "FAIL" and "failure" not in trials[0]["attrs"]  # failed as stale, by Optuna
    assert trials[1]["state"] == "COMPLETE" and trials[1]["attrs"]["retry_of"] == 0
    record = _run_record(trials[1])
    assert record["status"] == "completed" and record["train"]["resumed_from"], record


@pytest.mark.slow  # real training jobs: make test-slow (CI runs it), the default run stays under 10 min
def test_trials_asked_with_a_running_trials_parameters_get_its_result_instead_of_a_second_job(tiny, tmp_path):
    sweep = tmp_path / "sweep"
    # every searched key given: each trial has the same parameters, as a categorical search can propose again
    fixed = ["optimizer.lr=1e-3"]  # warmup: _optuna_sweep's, batch size: tiny_run's
    command = _optuna_sweep(
        tiny, sweep, "hydra.sweeper.n_jobs=2", "hydra.sweeper.n_trials=3", *fixed, kill=False
    )
    proc = run_cli(*command)
    assert proc.returncode == 0, proc.stderr[-3000:]
    trials = _trials(sweep / "optuna.db")
    assert [t["state"] for t in trials.values()] == ["COMPLETE"] * 3
    assert len({t["value"] for t in trials.values()}) == 1  # one run's val/loss, told to all three
    assert [x["job"] for x in _ledger(sweep)] == [
        0
    ]  # one job ran; two workers did not train one directory at once


@pytest.mark.slow  # real training jobs: make test-slow (CI runs it), the default run stays under 10 min
def test_hydras_batched_optuna_sweeper_runs_trials_of_the_same_parameters_in_parallel_as_one_run(
    tiny, tmp_path
):
    """Two trials of one batch with the same parameters name one run directory: the second job waits for the first
    and takes its result (it was refused, and the refusal ended the whole sweep with exit 2)."""
    sweep = tmp_path / "sweep"
    proc = run_cli(
        "src.train",
        "-m",
        "hparams_search=optuna",
        "hydra/launcher=local",  # joblib: the batch's two jobs at once
        "hydra.sweeper.n_jobs=2",
        "hydra.sweeper.n_trials=2",
        "optimizer.lr=1e-3",  # every searched key given: both trials have the same parameters
        "optimizer.warmup_steps=0",
        "resume=false",  # a fresh run asked for: the job that waited still takes the one its sweep just made
        # the job that trains holds until the other waits for the directory: the two meet whatever the load
        "+callbacks.hold._target_=tests.helpers.lock_waiter.HoldUntilWaited",
        f"hydra.sweep.dir={sweep}",
        *tiny_models(tiny),
        *tiny_run(steps=4, test=4),
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    output = proc.stdout + proc.stderr
    assert "waiting for it to finish" in output and "already completed" in output, output[-3000:]
    (run_dir,) = [p for p in sweep.iterdir() if p.is_dir()]
    assert not list(run_dir.glob("previous-*"))  # not set aside and trained again
    record = json.loads((run_dir / "metrics.json").read_text())
    assert record["status"] == "completed" and record["train"]["steps"] == 4
    best = (sweep / "optimization_results.yaml").read_text()
    assert f"best_value: {record['validation']['loss']}" in best, best


def test_comma_lists_are_a_grid_and_sweeps_written_as_functions_an_optuna_search():
    from src.run.async_sweep import is_optuna_search

    # experiment=rothe_grid's, then hparams_search=optuna's
    assert not is_optuna_search(["variant=rnd2rnd,bert2bert", "seed=1,2", "data=xsum"])
    assert is_optuna_search(["optimizer.lr=tag(log, interval(1e-5, 1e-3))", "seed=1,2"])
    assert is_optuna_search(["optimizer.warmup_steps=choice(0, 100)"])
    assert is_optuna_search(["data.batch_size=range(8, 33, 8)"])


@pytest.mark.slow  # real training jobs: make test-slow (CI runs it), the default run stays under 10 min
def test_a_grid_in_the_sweepers_params_as_the_grid_experiments_write_it_runs_every_job(tiny, tmp_path):
    sweep = tmp_path / "sweep"
    proc = run_cli(
        "src.train",
        "-m",
        "hydra/sweeper=async",
        "hydra.sweeper.n_jobs=2",
        "+hydra.sweeper.params={seed: '1,2'}",
        f"hydra.sweep.dir={sweep}",
        *tiny_models(tiny),
        *tiny_run(steps=2, test=4),
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    seeds = sorted(json.loads(p.read_text())["seed"] for p in sweep.glob("*/metrics.json"))
    assert seeds == [1, 2] and not (sweep / "optuna.db").exists()  # the grid's two jobs, no study
