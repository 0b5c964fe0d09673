"""Training under faults: kills and resumes, signals, determinism, non-finite losses, failed runs, running out of
memory, a checkpoint of another architecture, a full disk, atomic checkpoints, and checkpoints the safe loader
reads."""

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
from hydra import compose, initialize_config_dir

from src.config.schema import train_config
from src.system.errors import DiskFull, UserError
from src.system.outputs import atomic_write_text, write_json
from src.train import train
from tests.helpers.commands import CACHE, REPO, run_cli, start_cli
from tests.helpers.faults import nan_losses
from tests.helpers.tiny_run import tiny_models, tiny_run

TINY = tiny_run(
    steps=None,
    val_every=5,
    log_every=1,
    warmup=2,
    lr="1e-3",
    train=64,
    validation=4,
    test=6,
    batch=4,
    eval_batch=6,
)


def start(tiny, run_dir: Path, *extra: str) -> subprocess.Popen:
    return start_cli("src.train", *tiny_models(tiny), f"hydra.run.dir={run_dir}", *TINY, *extra)


def wait_for(path: Path, proc: subprocess.Popen, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert proc.poll() is None, proc.stdout.read()[-3000:]
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.02)


def wait_for_step(path: Path, proc: subprocess.Popen, step: int, timeout: float = 180) -> None:
    """Until the checkpoint at `path` is of `step` or later (checkpoints are replaced atomically)."""
    deadline = time.monotonic() + timeout
    while True:
        wait_for(path, proc, timeout=max(1.0, deadline - time.monotonic()))
        if torch.load(path, weights_only=True, map_location="cpu")["global_step"] >= step:
            return
        assert proc.poll() is None, proc.stdout.read()[-3000:]
        assert time.monotonic() < deadline, f"{path} never reached step {step}"
        time.sleep(0.05)


def final(run_dir: Path) -> dict:
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["status"] == "completed", metrics
    return metrics


# Exact equality holds in each precision the CPU may resolve `auto` to; both are run on every machine; with an
# average of the weights (ema.decay), which the checkpoint carries beside the trained weights; and with the mean of
# the last 3 validation checkpoints tested (average.last), kept beside last.ckpt.
@pytest.mark.slow  # 85 s of one worker: `make test-slow`, which .ci/run runs after `make test`
@pytest.mark.parametrize(
    ("precision", "ema", "last"),
    [("32-true", None, 0), ("bf16-mixed", None, 0), ("32-true", 0.9, 0), ("32-true", None, 3)],
    ids=["fp32", "bf16", "ema", "average"],
)
def test_sigkill_then_rerun_resumes_and_matches_an_uninterrupted_run(tiny, tmp_path, precision, ema, last):
    # 8 batches an epoch: killed in the second epoch, which must draw its own order and skip what it trained on
    steps = [
        "trainer.max_steps=20",
        "data.synthetic.num_train=32",
        f"trainer.precision={precision}",
        f"ema.decay={ema or 'null'}",
    ]
    if last:
        steps += [f"average.last={last}", "test_ckpt=average"]
    reference = start(tiny, tmp_path / "reference", *steps)
    assert reference.wait(timeout=300) == 0, reference.stdout.read()[-3000:]

    victim_dir = tmp_path / "victim"
    victim = start(tiny, victim_dir, *steps)
    wait_for_step(victim_dir / "checkpoints" / "last.ckpt", victim, 10)  # step 10: epoch 1, 2 batches in
    victim.send_signal(signal.SIGKILL)  # no chance to save anything more
    victim.wait(timeout=60)
    assert not (victim_dir / "metrics.json").exists()

    again = start(tiny, victim_dir, *steps)  # the same command
    out = again.communicate(timeout=300)[0]
    assert again.returncode == 0, out[-3000:]
    assert "resuming from" in out

    got, want = final(victim_dir), final(tmp_path / "reference")
    assert got["train"]["resumed_from"] == "checkpoints/last.ckpt" and got["train"]["steps"] == 20
    # same batches, same dropout masks, same optimizer state: identical on CPU, in fp32 and in bf16 autocast
    assert got["test"] == want["test"]
    assert got["validation"] == want["validation"]
    weights = {"kind": "ema", "decay": ema, "start_step": 0} if ema else {"kind": "trained"}
    if last:  # validations every 5 steps: the last 3 are steps 10, 15, 20, each kept once, the same weights
        weights = {"kind": "average", "checkpoints": 3, "steps": [10, 15, 20]}
        kept_steps = [p.name for p in sorted((victim_dir / "checkpoints").glob("step-*.ckpt"))]
        assert kept_steps == ["step-0000010.ckpt", "step-0000015.ckpt", "step-0000020.ckpt"]
    assert got["weights"] == want["weights"] == weights


def ddp_rank_process(parent: int, rank: int, timeout: float = 120) -> int:
    """The pid of the DDP process of local rank `rank` that Lightning started under the command `parent`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for child in Path(f"/proc/{parent}/task/{parent}/children").read_text().split():
            try:
                environ = Path(f"/proc/{child}/environ").read_bytes().split(b"\0")
            except OSError:
                continue
            if f"LOCAL_RANK={rank}".encode() in environ:
                return int(child)
        time.sleep(0.1)
    raise AssertionError(f"no process of rank {rank} under {parent}")


@pytest.mark.slow  # about 60 s of one worker
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_a_signal_to_one_ddp_process_stops_every_process_after_the_same_step(tiny, tmp_path):
    """SIGTERM to the second of two DDP processes only (a signal reaches a job's processes at different moments):
    both save and stop after the same step, and the re-run ends with the uninterrupted run's metrics. Without the
    processes agreeing, one left while the other waited in the next step's all-reduce."""
    steps = ["trainer=ddp", "trainer.accelerator=cpu", "trainer.devices=2", "trainer.max_steps=20"]
    reference = start(tiny, tmp_path / "reference", *steps)
    assert reference.wait(timeout=300) == 0, reference.stdout.read()[-3000:]
    victim = start(tiny, tmp_path / "victim", *steps)
    wait_for_step(tmp_path / "victim" / "checkpoints" / "last.ckpt", victim, 5)
    os.kill(ddp_rank_process(victim.pid, 1), signal.SIGTERM)
    out = victim.communicate(timeout=120)[0]
    assert victim.returncode == 143, out[-3000:]
    assert "SIGTERM received: saved" in out
    saved = torch.load(
        tmp_path / "victim" / "checkpoints" / "last.ckpt", weights_only=True, map_location="cpu"
    )
    assert 5 <= saved["global_step"] < 20
    again = start(tiny, tmp_path / "victim", *steps)
    out = again.communicate(timeout=300)[0]
    assert again.returncode == 0, out[-3000:]
    got, want = final(tmp_path / "victim"), final(tmp_path / "reference")
    assert got["train"]["resumed_from"] == "checkpoints/last.ckpt"
    assert got["test"] == want["test"]


@pytest.mark.slow  # 20-50 s of one worker: make test-slow (CI runs it), the default run stays under 10 min
def test_sigterm_saves_a_checkpoint_and_the_rerun_finishes(tiny, tmp_path):
    proc = start(tiny, tmp_path, "trainer.max_steps=400", "trainer.val_check_interval=1000")
    deadline = time.monotonic() + 120
    lines = []
    while time.monotonic() < deadline:  # wait until training is under way (plain progress lines)
        line = proc.stdout.readline()
        lines.append(line)
        if "step 3/400" in line:
            break
    proc.send_signal(signal.SIGTERM)
    out = proc.communicate(timeout=120)[0]
    assert proc.returncode == 143, "".join(lines) + out[-3000:]
    assert "SIGTERM received: saved" in out
    ckpt = torch.load(tmp_path / "checkpoints" / "last.ckpt", weights_only=True, map_location="cpu")
    assert ckpt["global_step"] >= 3
    assert json.loads((tmp_path / "metrics.json").read_text())["status"] == "interrupted"
    proc = run_cli(
        "src.train",
        *tiny_models(tiny),
        f"hydra.run.dir={tmp_path}",
        *TINY,
        "trainer.max_steps=8",
        "trainer.val_check_interval=1000",
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert final(tmp_path)["train"]["resumed_from"] == "checkpoints/last.ckpt"


def compose_run(tiny, out: Path, *extra: str):
    with initialize_config_dir(str(REPO / "conf"), version_base="1.3"):
        return compose(
            "train",
            overrides=[
                *tiny_models(tiny),
                f"output_dir={out}",
                f"data.cache_dir={CACHE}",
                *TINY,
                "trainer.max_steps=6",
                *extra,
            ],
        )


@pytest.mark.parametrize("precision", ["32-true", "bf16-mixed"])
def test_same_seed_same_metrics(tiny, tmp_path, precision):
    a = train(train_config(compose_run(tiny, tmp_path / "a", f"trainer.precision={precision}")))
    b = train(train_config(compose_run(tiny, tmp_path / "b", f"trainer.precision={precision}")))
    assert a.precision == precision
    assert a.test == b.test and a.validation == b.validation
    c = train(train_config(compose_run(tiny, tmp_path / "c", f"trainer.precision={precision}", "seed=7")))
    assert c.test["loss"] != a.test["loss"]


@pytest.fixture
def nan_at_step_4(monkeypatch):
    nan_losses(monkeypatch, lambda step: step == 4)


def test_nonfinite_loss_stops_with_the_step_and_keeps_the_last_good_checkpoint(tiny, tmp_path, nan_at_step_4):
    cfg = compose_run(tiny, tmp_path, "trainer.val_check_interval=2")
    with pytest.raises(UserError, match=r"the training loss is nan at step 4.*skip_nonfinite=true"):
        train(train_config(cfg))
    ckpt = torch.load(tmp_path / "checkpoints" / "last.ckpt", weights_only=True, map_location="cpu")
    assert ckpt["global_step"] == 4
    assert all(torch.isfinite(t).all() for t in ckpt["state_dict"].values() if t.is_floating_point())


def test_nonfinite_batches_can_be_skipped_and_counted(tiny, tmp_path, nan_at_step_4):
    # 1 of 6 batches: within a bound of 20%, not within the default 10% (tests/test_fault_matrix.py)
    results = train(
        train_config(compose_run(tiny, tmp_path, "skip_nonfinite=true", "skip_nonfinite_max_share=0.2"))
    )
    assert results.status == "completed" and results.train["nonfinite_skipped"] == 1


def test_a_failed_run_is_marked_in_metrics_json(tiny, tmp_path):
    proc = run_cli(
        "src.train",
        *tiny_models(tiny),
        f"hydra.run.dir={tmp_path}",
        *TINY,
        "trainer.max_steps=4",
        f"ckpt_path={tmp_path / 'nope.ckpt'}",
    )
    assert proc.returncode == 2 and "ckpt_path=" in proc.stderr and "does not exist" in proc.stderr
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["status"] == "failed" and "does not exist" in metrics["error"]


def test_oom_while_generating_names_the_batch_size_to_lower(tiny, monkeypatch):
    from src.models.module import Seq2SeqModule

    module = Seq2SeqModule(
        model={"encoder": tiny["bert"], "decoder": tiny["bert"]},
        optimizer={},
        generation={"num_beams": 4},
    )

    def boom(batch, encoded=None):
        raise torch.OutOfMemoryError("CUDA out of memory")

    monkeypatch.setattr(module, "_generate", boom)
    batch = {"input_ids": torch.ones(48, 5, dtype=torch.long), "attention_mask": torch.ones(48, 5)}
    with pytest.raises(
        UserError, match=r"batch of 48 examples with 4 beams.*data.eval_batch_size \(now 48\)"
    ):
        module.generate(batch)


@pytest.mark.slow  # 20-50 s of one worker: make test-slow (CI runs it), the default run stays under 10 min
def test_checkpoint_of_another_architecture_is_refused(tiny, tmp_path):
    first = run_cli(
        "src.train", *tiny_models(tiny), f"hydra.run.dir={tmp_path / 'a'}", *TINY, "trainer.max_steps=5"
    )
    assert first.returncode == 0, first.stderr[-2000:]
    other = run_cli(
        "src.train",
        f"encoder.checkpoint={tiny['bert']}",
        "decoder=gpt2",
        f"decoder.checkpoint={tiny['gpt2']}",
        f"hydra.run.dir={tmp_path / 'b'}",
        *TINY,
        "trainer.max_steps=5",
        f"ckpt_path={tmp_path / 'a' / 'checkpoints' / 'last.ckpt'}",
    )
    assert (
        other.returncode == 2
    )  # refused before loading it, with what differs and the warm start to use instead
    assert "was made with another model or data" in other.stderr and "model.decoder:" in other.stderr
    assert "warm_start_from=" in other.stderr and "Traceback" not in other.stderr
    assert final(tmp_path / "a")  # the first run's outputs are untouched


def test_a_full_disk_while_writing_keeps_the_previous_file(tmp_path, monkeypatch):
    target = tmp_path / "metrics.json"
    write_json(target, {"status": "completed", "value": 1})
    import builtins

    real_fdopen = os.fdopen

    class FullDisk:
        def __init__(self, f):
            self.f = f

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.f.close()

        def write(self, text):
            self.f.write(text[:10])
            raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fdopen", lambda fd, *a, **k: FullDisk(real_fdopen(fd, *a, **k)))
    with pytest.raises(
        DiskFull, match=f"the disk holding {target} is full .* MB free.*previous file is kept"
    ):
        atomic_write_text(target, json.dumps({"status": "completed", "value": 2}))
    monkeypatch.setattr(os, "fdopen", real_fdopen)
    assert json.loads(target.read_text()) == {"status": "completed", "value": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["metrics.json"]  # no temporary file left behind
    assert builtins  # (keeps the import used)


def test_lightning_checkpoints_are_written_atomically(tmp_path, monkeypatch):
    """A kill or a full disk while saving leaves the previous checkpoint: writes go to a temporary file first."""
    from lightning.fabric.utilities.cloud_io import _atomic_save

    path = tmp_path / "last.ckpt"
    _atomic_save({"step": 1}, path)
    import fsspec.implementations.local as local

    def full_disk(self, *args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(local.LocalFileOpener, "write", full_disk)
    with pytest.raises(OSError):
        _atomic_save({"step": 2, "big": torch.zeros(1000)}, path)
    monkeypatch.undo()
    assert torch.load(path, weights_only=True) == {"step": 1}


def test_checkpoints_load_with_weights_only(tiny, tmp_path):
    cfg = compose_run(tiny, tmp_path, "trainer.max_steps=5")
    train(train_config(cfg))
    # every object in our checkpoints is a tensor or a plain value: the safe loader accepts them
    torch.load(tmp_path / "checkpoints" / "last.ckpt", weights_only=True)
    torch.load(tmp_path / "checkpoints" / "best.ckpt", weights_only=True)
