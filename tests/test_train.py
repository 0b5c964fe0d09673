"""src.train and src.eval end to end through real subprocesses: the run directory, checkpoints that rebuild
offline, eval reproducing the test metrics, sharing, each precision, DDP with two CPU processes, and the errors a
user may hit."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

from src.metrics.text import canonical
from src.models.module import Seq2SeqModule
from tests.helpers.commands import run_cli
from tests.helpers.tiny_run import tiny_run

TINY = tiny_run(
    steps=6,
    val_every=3,
    log_every=2,
    warmup=2,
    lr="1e-3",
    logger=None,
    train=64,
    validation=8,
    test=12,
    new_tokens=6,
    beams=2,
)


@pytest.fixture(scope="module")
def trained_run(tiny, tmp_path_factory) -> Path:
    run_dir = tmp_path_factory.mktemp("run")
    proc = run_cli(
        "src.train",
        f"encoder.checkpoint={tiny['bert']}",
        "decoder=gpt2",
        f"decoder.checkpoint={tiny['gpt2']}",
        f"hydra.run.dir={run_dir}",
        "logger=csv",
        *TINY,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return run_dir


def test_train_writes_the_run_directory(trained_run):
    for name in (
        ".hydra/config.yaml",
        "checkpoints/last.ckpt",
        "checkpoints/best.ckpt",
        "metrics.json",
        "predictions.jsonl",
        "csv/metrics.csv",
    ):
        assert (trained_run / name).is_file(), name
    metrics = json.loads((trained_run / "metrics.json").read_text())
    assert metrics["status"] == "completed" and metrics["train"]["steps"] == 6
    outputs = metrics["test_outputs"]  # how varied the test predictions are (src.metrics.health)
    predictions = [
        json.loads(x)["prediction"] for x in (trained_run / "predictions.jsonl").read_text().splitlines()
    ]
    assert outputs["distinct"] == pytest.approx(100 * len(set(predictions)) / len(predictions))
    assert (
        metrics["encoder"] == "bert" and metrics["decoder"] == "gpt2" and metrics["sharing"] == "embeddings"
    )
    p = metrics["params"]
    assert p["total"] == p["from_checkpoint"] + p["random"] > 0
    assert set(metrics["test"]) >= {"loss", "rouge1", "rouge2", "rougeL", "exact"}
    assert "loss" in metrics["validation"] and metrics["train"]["samples_per_s"] > 0
    # model FLOP rate of the real tokens, against this CPU's peak for the run's precision
    assert metrics["train"]["model_tflops_per_s"] > 0 and 0 < metrics["train"]["mfu"] < 1
    rows = [json.loads(line) for line in (trained_run / "predictions.jsonl").read_text().splitlines()]
    assert len(rows) == 12 and set(rows[0]) == {
        "source",
        "reference",
        "prediction",
        "scored_prediction",
        "scored_reference",
    }
    assert all(r["scored_prediction"] == canonical(r["prediction"]) for r in rows)
    # restored to the split's order although evaluation ran longest-first
    from src.data.synthetic import make_synthetic

    expected = make_synthetic({"train": 64, "validation": 8, "test": 12}, seed=0)["test"]
    assert [r["source"] for r in rows] == [e["source"] for e in expected]
    composed = OmegaConf.load(trained_run / ".hydra/config.yaml")
    assert composed.decoder.name == "gpt2" and composed.trainer.max_steps == 6


def test_checkpoint_carries_config_and_rebuilds_offline(trained_run):
    ckpt = torch.load(trained_run / "checkpoints/last.ckpt", weights_only=True)
    assert ckpt["run_config"]["decoder"]["name"] == "gpt2" and "built" in ckpt["hyper_parameters"]
    module = Seq2SeqModule.load_from_checkpoint(trained_run / "checkpoints/last.ckpt")
    state = ckpt["state_dict"]
    for name, tensor in module.state_dict().items():
        assert torch.equal(tensor, state[name]), name


def test_eval_reproduces_the_test_metrics(trained_run, tmp_path):
    metrics = json.loads((trained_run / "metrics.json").read_text())
    ckpt = trained_run / metrics["test_checkpoint"]
    proc = run_cli("src.eval", f"ckpt_path={ckpt}", f"hydra.run.dir={tmp_path}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "test: tokenization cache hit" in proc.stderr + proc.stdout  # tokenized by the training run
    again = json.loads((tmp_path / "metrics.json").read_text())["test"]
    for key in ("rouge1", "rouge2", "rougeL", "exact"):
        assert again[key] == pytest.approx(metrics["test"][key], abs=1e-6), key
    assert again["loss"] == pytest.approx(metrics["test"]["loss"], rel=1e-4)
    assert (tmp_path / "predictions.jsonl").read_text() == (trained_run / "predictions.jsonl").read_text()


def test_shared_sharing_survives_a_training_checkpoint(tiny, tmp_path):
    proc = run_cli(
        "src.train",
        f"encoder.checkpoint={tiny['bert']}",
        f"decoder.checkpoint={tiny['bert']}",
        "sharing=shared",
        f"hydra.run.dir={tmp_path}",
        "logger=none",
        *TINY,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    module = Seq2SeqModule.load_from_checkpoint(tmp_path / "checkpoints/last.ckpt")
    enc, dec = module.model.encoder, module.model.decoder
    assert (
        enc.encoder.layer[1].intermediate.dense.weight is dec.bert.encoder.layer[1].intermediate.dense.weight
    )
    assert enc.embeddings.word_embeddings.weight is dec.get_output_embeddings().weight
    saved = json.loads((tmp_path / "metrics.json").read_text())["params"]
    assert sum(p.numel() for p in module.model.parameters()) == saved["total"]


# Each CPU kind resolves precision=auto differently (README, "Precision"); these runs set bf16-mixed, so the GPU's
# code path runs on every machine (bf16 autocast works on any x86 CPU, only slower without AVX512-BF16/AMX).
# Explicit 32-true end-to-end runs are in test_train_faults (same seed, kill and resume).
@pytest.mark.parametrize(
    ("precision", "extra"),
    [
        (
            "bf16-mixed",
            [
                "sharing=shared",
                "trainer.accumulate_grad_batches=2",
                "optimizer=adam_rsqrt",
                "optimizer.lr=0.05",
                "optimizer.warmup_steps=2",
            ],
        ),
        ("bf16-mixed", ["variant=gpt", "decoder.checkpoint={gpt2}"]),
    ],
    ids=["bf16-shared-accumulate-adam", "bf16-gpt"],
)
def test_training_end_to_end_in_each_precision(tiny, tmp_path, precision, extra):
    proc = run_cli(
        "src.train",
        f"encoder.checkpoint={tiny['bert']}",
        f"decoder.checkpoint={tiny['bert']}",
        f"trainer.precision={precision}",
        "eval_before_training=true",
        f"hydra.run.dir={tmp_path}",
        "logger=none",
        *TINY,
        *(e.format(**tiny) for e in extra),
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["status"] == "completed" and metrics["precision"] == precision
    assert metrics["train"]["steps"] == 6
    assert metrics["test"]["loss"] < metrics["test_before_training"]["loss"] - 0.1  # it learned
    ckpt = torch.load(tmp_path / "checkpoints/last.ckpt", weights_only=True, map_location="cpu")
    assert all(torch.isfinite(t).all() for t in ckpt["state_dict"].values() if t.is_floating_point())


@pytest.mark.slow  # 20-50 s of one worker: make test-slow (CI runs it), the default run stays under 10 min
def test_ddp_with_two_cpu_processes_writes_one_run_directory(tiny, tmp_path):
    run_dir = tmp_path / "run"
    proc = run_cli(
        "src.train",
        "trainer=ddp",
        "trainer.accelerator=cpu",
        "trainer.devices=2",
        f"encoder.checkpoint={tiny['bert']}",
        f"decoder.checkpoint={tiny['bert']}",
        f"hydra.run.dir={run_dir}",
        *tiny_run(test=6, batch=4, eval_batch=4),
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert [p.name for p in tmp_path.iterdir()] == ["run"]
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["status"] == "completed" and metrics["train"]["steps"] == 4
    rows = (run_dir / "predictions.jsonl").read_text().splitlines()
    assert len(rows) == 6  # both processes' shards, gathered, sampler padding dropped
    assert len({json.loads(r)["source"] for r in rows}) == 6


# ---- errors a user may hit: one clear message, no traceback ------------------------------------------------
def assert_clean_failure(proc, *needles: str) -> None:
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr, proc.stderr[-2000:]
    for needle in needles:
        assert needle in proc.stderr, proc.stderr[-2000:]


def test_unknown_option_lists_choices(tmp_path):
    proc = run_cli("src.train", "encoder=bart", f"hydra.run.dir={tmp_path}")
    assert_clean_failure(proc, "Could not find 'encoder/bart'", "minilm", "roberta")


def test_shared_across_bert_and_gpt2_is_refused(tiny, tmp_path):
    proc = run_cli(
        "src.train",
        f"encoder.checkpoint={tiny['bert']}",
        "decoder=gpt2",
        f"decoder.checkpoint={tiny['gpt2']}",
        "sharing=shared",
        f"hydra.run.dir={tmp_path}",
    )
    assert_clean_failure(proc, "error: sharing=shared", "Fix: sharing=embeddings")


def test_hub_id_offline_names_the_checkpoint_and_the_fix(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    proc = run_cli("src.train", "encoder=bert", "decoder=gpt2", f"hydra.run.dir={tmp_path}")
    assert_clean_failure(proc, "'bert-base-uncased'", "encoder.checkpoint=DIR", "experiment=demo")


def test_data_file_without_the_columns_lists_what_it_has(tiny, tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    for split in ("train", "validation", "test"):
        (data / f"{split}.jsonl").write_text(json.dumps({"document": "a b", "summary": "a"}) + "\n")
    proc = run_cli(
        "src.train",
        f"encoder.checkpoint={tiny['bert']}",
        f"decoder.checkpoint={tiny['bert']}",
        "data=jsonl",
        f"data.path={data}",
        f"hydra.run.dir={tmp_path / 'run'}",
    )
    assert_clean_failure(proc, "no column 'source' (columns: document, summary)", "data.source_column")
    assert not (tmp_path / "run" / "checkpoints").exists()


def test_empty_split_is_refused(tiny, tmp_path):
    proc = run_cli(
        "src.train",
        f"encoder.checkpoint={tiny['bert']}",
        f"decoder.checkpoint={tiny['bert']}",
        "data.synthetic.num_validation=0",
        f"hydra.run.dir={tmp_path}",
    )
    assert_clean_failure(proc, "data.synthetic.num_validation=0 is not valid")  # before anything loads
