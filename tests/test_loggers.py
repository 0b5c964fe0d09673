"""W&B runs in offline mode, read back from their run files: config, tags, group, history, tables, failures."""

from __future__ import annotations

import json

import pytest

from src.report import main as report_main
from tests.helpers.commands import run_cli
from tests.helpers.tiny_run import tiny_run
from tests.helpers.wandb_reader import read_run, run_files

TINY = tiny_run(log_every=1, progress=None, logger="wandb")
SECRET = "local-0123456789abcdef0123456789abcdef01234567"


def tiny_models(tiny):
    return [f"encoder.checkpoint={tiny['bert']}", "decoder=gpt2", f"decoder.checkpoint={tiny['gpt2']}"]


def test_a_run_logs_config_tags_history_tables_and_never_the_api_key(tiny, tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_API_KEY", SECRET)
    proc = run_cli(
        "src.train",
        *tiny_models(tiny),
        "experiment=demo",
        f"hydra.run.dir={tmp_path}",
        *TINY,
        "trainer.max_steps=4",
        "trainer.val_check_interval=2",
        "eval_before_training=false",
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (
        "wandb sync" in proc.stderr + proc.stdout
    )  # says once where the offline run is and how to upload it
    (path,) = run_files(tmp_path)
    run = read_run(path)
    assert run.name == "demo-minilm2minilm-s42" and run.group == "demo" and run.job_type == "train"
    assert set(run.tags) == {
        "minilm",
        "gpt2",
        "embeddings",
        "synthetic",
    }  # experiment=demo picks encoder=minilm
    for key in (
        "encoder.checkpoint",
        "decoder.checkpoint",
        "optimizer.lr",
        "data.batch_size",
        "params.total",
        "params.from_checkpoint",
        "params.random",
        "git_commit",
    ):
        assert key in run.config, key
    assert run.config["optimizer.lr"] == 1e-4
    for key in (
        "train/loss",
        "train/lr",
        "train/grad_norm",
        "train/samples_per_s",
        "train/tokens_per_s",
        "train/peak_memory_mb",
        "val/loss",
        "val/rouge2",
        "test/rouge2",
        "test/loss",
    ):
        assert key in run.history_keys, key
    assert any(k.startswith("val/examples/") for k in run.history_keys)  # a table at each validation
    assert any(k.startswith("test/predictions/") for k in run.history_keys)
    assert {"test/rouge2", "params/total"} <= set(run.summary)
    assert any(a.startswith("predictions-") for a in run.artifacts)
    assert not any(
        a.startswith("model-") for a in run.artifacts
    )  # checkpoints only with logger.log_model=true
    assert run.exit_code == 0
    for file in tmp_path.rglob("*"):
        if file.is_file():
            assert SECRET.encode() not in file.read_bytes(), file


@pytest.mark.slow  # 20-50 s of one worker: make test-slow (CI runs it), the default run stays under 10 min
def test_a_resumed_run_continues_the_same_wandb_run(tiny, tmp_path):
    args = [*tiny_models(tiny), f"hydra.run.dir={tmp_path}", *TINY]
    assert run_cli("src.train", *args).returncode == 0
    again = run_cli(
        "src.train",
        *args,
        "skip_completed=false",
        "trainer.max_steps=6",
        f"ckpt_path={tmp_path / 'checkpoints' / 'last.ckpt'}",
    )
    assert again.returncode == 0, again.stderr[-3000:]
    ids = {read_run(p).run_id for p in run_files(tmp_path)}
    assert len(run_files(tmp_path)) == 2 and len(ids) == 1


@pytest.mark.slow  # 20-50 s of one worker: make test-slow (CI runs it), the default run stays under 10 min
def test_a_sweep_is_one_group_with_one_run_per_job_and_failures_marked(tiny, tmp_path):
    proc = run_cli(
        "src.train",
        "-m",
        *tiny_models(tiny),
        "sharing=embeddings,shared",
        f"hydra.sweep.dir={tmp_path}",
        "sweep_name=tiny_grid",
        *TINY,
    )
    assert proc.returncode == 1, proc.stderr[-3000:]  # one job failed: the sweep says so in its status
    runs = [read_run(p) for p in run_files(tmp_path)]
    assert len(runs) == 2 and len({r.run_id for r in runs}) == 2
    assert {r.group for r in runs} == {"tiny_grid"}
    assert sorted(r.exit_code for r in runs) == [0, 1]  # the shared job failed (bert + gpt2) and is marked so

    report_main([str(tmp_path), "--wandb", "offline"])
    report_runs = [read_run(p) for p in run_files(tmp_path) if read_run(p).job_type == "report"]
    assert len(report_runs) == 1 and report_runs[0].group == tmp_path.name
    assert any(k.startswith("report/") for k in report_runs[0].history_keys)
    statuses = sorted(json.loads(p.read_text())["status"] for p in tmp_path.glob("*/metrics.json"))
    assert statuses == ["completed", "failed"]


@pytest.mark.slow  # 20-50 s of one worker: make test-slow (CI runs it), the default run stays under 10 min
def test_evaluation_is_a_wandb_run_of_job_type_eval(tiny, tmp_path):
    run_dir = tmp_path / "run"
    assert run_cli("src.train", *tiny_models(tiny), f"hydra.run.dir={run_dir}", *TINY).returncode == 0
    proc = run_cli(
        "src.eval",
        f"ckpt_path={run_dir / 'checkpoints' / 'last.ckpt'}",
        f"hydra.run.dir={tmp_path / 'e'}",
        "logger_mode=offline",
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    (path,) = run_files(tmp_path / "e")
    run = read_run(path)
    assert run.job_type == "eval" and run.name == "bert2gpt2-synthetic-s42-eval-test"
    assert {"test/rouge2", "params/total"} <= set(run.summary) and run.config["split"] == "test"
    assert any(k.startswith("test/predictions/") for k in run.history_keys)


@pytest.mark.slow  # 20-50 s of one worker: make test-slow (CI runs it), the default run stays under 10 min
def test_log_model_uploads_the_exported_model_not_checkpoints(tiny, tmp_path):
    proc = run_cli(
        "src.train", *tiny_models(tiny), f"hydra.run.dir={tmp_path}", *TINY, "logger.log_model=true"
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    (run,) = [read_run(p) for p in run_files(tmp_path)]
    assert f"model-{run.run_id}" in run.artifacts
    assert (tmp_path / "hf" / "config.json").is_file() and (tmp_path / "hf" / "model.safetensors").is_file()
    assert "## Test metrics" in (tmp_path / "hf" / "README.md").read_text()
