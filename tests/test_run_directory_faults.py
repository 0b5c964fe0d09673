"""A run directory under faults (src/run/record.py, src/train.py): what a crash, a kill, Ctrl-C, a second process,
a damaged checkpoint or changed data leave is either a completed run with its results or a run that resumes —
never a record that points at what is gone, and never a completed run's results replaced."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from src.run import record
from src.run.run_record import RunRecord
from src.system.errors import UserError
from tests.helpers.commands import REPO, check_train, one_error_line, run_cli, start_cli
from tests.helpers.tiny_run import tiny_run

TINY = tiny_run(
    steps=6, val_every=3, log_every=1, warmup=1, lr="1e-3", train=32, test=4, batch=4, eval_batch=4
)


def models(tiny) -> list[str]:
    return [f"encoder.checkpoint={tiny['bert']}", f"decoder.checkpoint={tiny['bert']}"]


def train_cli(tiny, run_dir: Path, *extra: str) -> subprocess.CompletedProcess:
    return run_cli("src.train", *models(tiny), f"hydra.run.dir={run_dir}", *TINY, *extra)


def start(tiny, run_dir: Path, *extra: str) -> subprocess.Popen:
    return start_cli("src.train", *models(tiny), f"hydra.run.dir={run_dir}", *TINY, *extra)


def read_until(proc: subprocess.Popen, needle: str, timeout: float = 180) -> str:
    deadline, seen = time.monotonic() + timeout, []
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line and proc.poll() is not None:
            break
        seen.append(line)
        if needle in line:
            return "".join(seen)
    raise AssertionError(f"{needle!r} never printed:\n" + "".join(seen)[-3000:])


@pytest.fixture(scope="module")
def completed_run(tiny, tmp_path_factory) -> Path:
    run_dir = tmp_path_factory.mktemp("completed")
    proc = train_cli(tiny, run_dir)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return run_dir


def copy_of(run_dir: Path, where: Path) -> Path:
    import shutil

    shutil.copytree(run_dir, where, ignore=shutil.ignore_patterns(".lock"))
    return where


# ---- the record, in process ----------------------------------------------------------------------------------
def test_a_failed_attempt_is_recorded_beside_a_completed_run_and_replaces_nothing(tmp_path):
    done = {"status": "completed", "run_name": "r", "test": {"rouge2": 12.5}}
    (tmp_path / "metrics.json").write_text(json.dumps(done))
    identity = {"run_name": "r", "encoder": "bert", "decoder": "bert", "sharing": "none", "data": "synthetic"}
    record.write_failed(tmp_path, {**identity, "seed": 1}, RuntimeError("boom"))
    record.write_interrupted(tmp_path, "r", "SIGTERM at step 3")
    assert json.loads((tmp_path / "metrics.json").read_text()) == done
    attempts = sorted(p.name.split("-")[0] for p in (tmp_path / "attempts").iterdir())
    assert attempts == ["failed", "interrupted"]
    failed = next((tmp_path / "attempts").glob("failed-*"))
    assert "boom" in (failed / "error.txt").read_text()


def test_starting_afresh_moves_the_record_with_its_checkpoints_and_deletes_nothing(tmp_path):
    (tmp_path / "checkpoints").mkdir()
    (tmp_path / "checkpoints" / "last.ckpt").write_bytes(b"weights")
    (tmp_path / "metrics.json").write_text('{"status": "completed"}')
    (tmp_path / "predictions.jsonl").write_text("{}\n")
    (tmp_path / "train.log").write_text("log")
    config = check_train("data=synthetic", "resume=false")
    assert record.checkpoint_to_resume(config, tmp_path) is None
    aside = next(tmp_path.glob("previous-*"))
    assert sorted(p.name for p in aside.iterdir()) == ["checkpoints", "metrics.json", "predictions.jsonl"]
    assert (aside / "checkpoints" / "last.ckpt").read_bytes() == b"weights"
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        aside.name,
        "train.log",
    ]  # the log describes the command


def test_a_damaged_checkpoint_is_one_error_naming_it(tmp_path):
    good = tmp_path / "good.ckpt"
    torch.save({"state_dict": {"w": torch.zeros(64)}}, good)
    cut = tmp_path / "cut.ckpt"
    cut.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    text = tmp_path / "text.ckpt"
    text.write_text("hello")
    record.check_checkpoint_file(good, "good", "fix")
    for path in (cut, text):
        with pytest.raises(UserError, match=rf"{path.name} is not a whole checkpoint .*Fix: delete it"):
            record.check_checkpoint_file(path, path.name, "delete it")


def test_a_second_process_on_a_run_directory_is_refused_and_the_lock_dies_with_its_holder(tmp_path):
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; from src.run.record import RunLock\n"
         "with RunLock(__import__('pathlib').Path(sys.argv[1])):\n    print('held', flush=True); time.sleep(60)",
         str(tmp_path)],
        cwd=REPO, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert holder.stdout.readline().strip() == "held"
    with (
        pytest.raises(UserError, match=rf"is in use by pid {holder.pid} .*Fix: wait for it"),
        record.RunLock(tmp_path),
    ):
        pass
    holder.send_signal(signal.SIGKILL)  # a crash: no clean-up at all
    holder.wait(timeout=30)
    with record.RunLock(tmp_path):  # the kernel released it with the process: no stale lock
        assert f"pid {os.getpid()}" in (tmp_path / ".lock").read_text()


def test_a_sweep_job_waits_for_the_process_holding_its_run_directory(tmp_path):
    """RunLock(wait=True), as a sweep's job takes its directory: it waits for the holder instead of failing."""
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; from src.run.record import RunLock\n"
         "run = __import__('pathlib').Path(sys.argv[1])\n"
         "with RunLock(run):\n    print('held', flush=True); time.sleep(2); (run / 'done').touch()",
         str(tmp_path)],
        cwd=REPO, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert holder.stdout.readline().strip() == "held"
    with record.RunLock(tmp_path, wait=True) as lock:
        assert lock.waited and (tmp_path / "done").exists()  # taken once the holder had finished, not before
        assert f"pid {os.getpid()}" in (tmp_path / ".lock").read_text()
    holder.wait(timeout=30)
    with record.RunLock(tmp_path, wait=True) as lock:
        assert not lock.waited  # free: taken at once


def test_changed_data_files_make_a_completed_record_stale(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    (data / "train.jsonl").write_text('{"source": "a", "target": "b"}\n')
    config = check_train("data=jsonl", f"data.path={data}").data
    done = RunRecord(status="completed", data_files=record.data_files(config))
    record.check_data_unchanged(config, tmp_path, done)  # the same files: current
    (data / "train.jsonl").write_text('{"source": "a", "target": "c d"}\n')
    with pytest.raises(
        UserError, match=r"changed since the run .* completed \(train.jsonl\).*Fix: resume=false"
    ):
        record.check_data_unchanged(config, tmp_path, done)


# ---- real runs -------------------------------------------------------------------------------------------------
@pytest.mark.slow  # 20-50 s of one worker: make test-slow (CI runs it), the default run stays under 10 min
def test_a_truncated_last_checkpoint_is_one_error_and_the_completed_results_are_kept(
    tiny, completed_run, tmp_path
):
    run_dir = copy_of(completed_run, tmp_path / "run")
    before = (run_dir / "metrics.json").read_text()
    last = run_dir / "checkpoints" / "last.ckpt"
    last.write_bytes(last.read_bytes()[:1000])
    line = one_error_line(train_cli(tiny, run_dir, "skip_completed=false"))
    assert str(last) in line and "Fix: delete it" in line
    assert (run_dir / "metrics.json").read_text() == before  # the completed results, untouched
    assert json.loads(next(run_dir.glob("attempts/failed-*/metrics.json")).read_text())["status"] == "failed"


@pytest.mark.slow  # 20-50 s of one worker: make test-slow (CI runs it), the default run stays under 10 min
def test_the_same_command_twice_at_once_is_refused_while_the_first_trains(tiny, tmp_path):
    first = start(tiny, tmp_path, "trainer.max_steps=400", "trainer.val_check_interval=1000")
    try:
        read_until(first, "step 2/400")
        line = one_error_line(
            train_cli(tiny, tmp_path, "trainer.max_steps=400", "trainer.val_check_interval=1000")
        )
        assert f"is in use by pid {first.pid}" in line
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=60)


@pytest.mark.slow  # 4 runs of a tiny model: `make test-slow`
def test_ctrl_c_saves_a_checkpoint_says_how_to_resume_and_keeps_the_directory_consistent(
    tiny, completed_run, tmp_path
):
    """Ctrl-C in a fresh start (resume=false) of a completed run: the earlier attempt is aside, whole; the run
    directory holds an interrupted record and the checkpoint it resumes from; the same command finishes it."""
    run_dir = copy_of(completed_run, tmp_path / "run")
    afresh = ["resume=false", "trainer.max_steps=400", "trainer.val_check_interval=1000"]
    proc = start(tiny, run_dir, *afresh)
    read_until(proc, "step 3/400")
    proc.send_signal(signal.SIGINT)
    out = proc.communicate(timeout=120)[0]
    assert proc.returncode == 143, out[-3000:]
    assert "To resume, run the same command again: python -m src.train" in out and "resume=false" in out
    assert json.loads((run_dir / "metrics.json").read_text())["status"] == "interrupted"
    ckpt = torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=True, map_location="cpu")
    assert ckpt["global_step"] >= 3
    aside = next(run_dir.glob("previous-*"))
    assert json.loads((aside / "metrics.json").read_text())["status"] == "completed"
    assert (aside / "checkpoints" / "last.ckpt").is_file()
    # resuming: the same budget minus resume=false finishes from the saved step
    proc = train_cli(tiny, run_dir, "trainer.max_steps=8", "trainer.val_check_interval=1000")
    assert proc.returncode == 0, proc.stderr[-3000:]
    done = json.loads((run_dir / "metrics.json").read_text())
    assert done["status"] == "completed" and done["train"]["resumed_from"] == "checkpoints/last.ckpt"


@pytest.mark.slow  # 4 runs of a tiny model: `make test-slow`
@pytest.mark.parametrize("point", ["train_end", "test_batch"])
def test_a_kill_at_any_point_leaves_a_run_that_resumes_to_completion(tiny, tmp_path, point):
    """SIGKILL between the checkpoints and metrics.json, and during the test evaluation: the directory holds no
    record claiming more than it has, and the same command completes it (a kill during a checkpoint write keeps
    the previous checkpoint: tests/test_train_faults.py, Lightning's writes are atomic)."""
    kill = ["+callbacks.kill._target_=tests.helpers.faults.KillAt", f"+callbacks.kill.point={point}"]
    proc = train_cli(tiny, tmp_path, *kill)
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-3000:]
    assert record.read_metrics(tmp_path) is None  # no completed (nor any) record written
    assert (tmp_path / "checkpoints" / "last.ckpt").is_file()
    again = train_cli(tiny, tmp_path)
    assert again.returncode == 0, again.stderr[-3000:]
    done = record.completed(tmp_path)
    assert done is not None and done.train["steps"] == 6 and done.test["loss"] > 0


def test_a_run_directory_that_cannot_be_made_is_one_error_line():
    line = one_error_line(run_cli("src.train", "logger=none", "hydra.run.dir=/proc/warmstart-no-such-dir"))
    assert (
        "cannot write the run directory /proc/warmstart-no-such-dir" in line and "Fix: hydra.run.dir=" in line
    )
