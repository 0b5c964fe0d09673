"""The paper's tasks: every data config composes and runs a training step plus evaluation on a local fixture
written in the dataset's own schema (tests/helpers/task_records.py), the paper's settings in each task config, and
script-free Hub sources."""

from __future__ import annotations

import json

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from src.analysis.scoring import score
from src.config.schema import train_config
from src.train import train
from tests.helpers.commands import REPO, compose_train
from tests.helpers.task_records import record
from tests.helpers.tiny_run import tiny_run

TASKS = [
    "cnn_dailymail",
    "cnn_dailymail_blog",
    "xsum",
    "gigaword",
    "wmt14_en_de",
    "wmt14_de_en",
    "discofuse",
    "wikisplit",
]
QUICK = tiny_run(steps=1, val_every=1, synthetic=False, batch=4, eval_batch=4, new_tokens=None, beams=2)


@pytest.mark.parametrize("task", TASKS)
def test_every_task_trains_a_step_and_evaluates_on_its_fixture(task, tiny, tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    for split, n in (("train", 12), ("validation", 4), ("test", 4)):
        rows = [record(task, i + 100 * len(split)) for i in range(n)]
        (data / f"{split}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    short = (
        ["data.decoding.max_length=12", "data.decoding.min_length=2"]
        if task.endswith("blog")
        else ["data.decoding.max_new_tokens=8"]
    )
    cfg = compose_train(
        f"data={task}",
        f"data.path={data}",
        f"data.cache_dir={tmp_path / 'cache'}",
        f"encoder.checkpoint={tiny['bert']}",
        f"decoder.checkpoint={tiny['bert']}",
        f"output_dir={tmp_path / 'run'}",
        *QUICK,
        *short,
    )
    results = train(train_config(cfg))

    assert results.status == "completed" and results.train["steps"] == 1
    assert set(results.test) == {*cfg.data.metrics, "loss"}
    assert results.data_stats["train"]["rows"] == 12 and results.data_stats["test"]["rows"] == 4
    predictions = [json.loads(x) for x in (tmp_path / "run" / "predictions.jsonl").read_text().splitlines()]
    assert len(predictions) == 4
    expected = [record(task, i + 400) for i in range(4)]
    if task == "gigaword":  # lowercased, as the paper did
        assert [p["source"] for p in predictions] == [e["document"].lower() for e in expected]
    if task == "wikisplit":
        assert all(" <::::> " in p["reference"] for p in predictions)
    # predictions.jsonl holds the very strings the metrics saw: src.score gives back metrics.json's figures
    # (the run's metrics by default: a WikiSplit run's SARI, Exact and NLTK BLEU)
    (tmp_path / "run" / ".hydra").mkdir()
    (tmp_path / "run" / ".hydra" / "config.yaml").write_text(OmegaConf.to_yaml(cfg))
    rescored = score(tmp_path / "run" / "predictions.jsonl")  # the CLI itself: test_score.py
    assert rescored == {m: results.test[m] for m in cfg.data.metrics}
    if task == "wmt14_de_en":
        assert [p["reference"] for p in predictions] == [e["translation"]["en"] for e in expected]
    if task == "discofuse":
        assert [p["reference"] for p in predictions] == [
            " ".join(s for s in (e["coherent_first_sentence"], e["coherent_second_sentence"]) if s)
            for e in expected
        ]


def test_paper_settings_are_in_the_task_configs():
    expected = {  # task: (max source, max target, batch, steps, metrics) from the paper (Rothe et al., 2020)
        "cnn_dailymail": (512, 128, 128, 300000, ["rouge1", "rouge2", "rougeL", "rougeLsum"]),
        "xsum": (512, 64, 128, 200000, ["rouge1", "rouge2", "rougeL"]),
        "gigaword": (128, 32, 256, 500000, ["rouge1", "rouge2", "rougeL"]),
        "wmt14_en_de": (128, 128, 256, -1, ["bleu", "bleu_t2t", "sacrebleu"]),
        "discofuse": (128, 128, 256, 300000, ["exact", "sari"]),
        "wikisplit": (128, 128, 256, 300000, ["exact", "sari", "bleu_nltk"]),
    }
    with initialize_config_dir(str(REPO / "conf"), version_base="1.3"):
        for task, (src, tgt, batch, steps, metrics) in expected.items():
            cfg = compose("train", overrides=[f"data={task}"])
            d = cfg.data
            assert (d.max_source_length, d.max_target_length, d.batch_size, cfg.trainer.max_steps) == (
                src,
                tgt,
                batch,
                steps,
            )
            assert list(d.metrics) == metrics and d.decoding.num_beams == 4
        assert compose("train", overrides=["data=wmt14_en_de"]).data.decoding.length_penalty == 0.6
        assert compose("train", overrides=["data=wmt14_en_de"]).trainer.max_epochs == 30
        assert compose("train", overrides=["data=gigaword"]).data.lowercase is True
        blog_run, paper_run = (
            compose("train", overrides=[f"data={t}"]) for t in ("cnn_dailymail_blog", "cnn_dailymail")
        )
        # the blog as it ran: no weight decay, 3 epochs of 287,113 articles at batch 16, unstemmed ROUGE
        assert (blog_run.optimizer.weight_decay, blog_run.trainer.max_steps, blog_run.data.rouge_stemmer) == (
            0.0,
            3 * -(-287113 // 16),
            False,
        )
        assert (paper_run.optimizer.weight_decay, paper_run.data.rouge_stemmer) == (0.01, True)
        blog = blog_run.data.decoding
        assert (blog.max_length, blog.min_length, blog.no_repeat_ngram_size, blog.length_penalty) == (
            142,
            56,
            3,
            2.0,
        )


@pytest.mark.parametrize(
    "task", ["cnn_dailymail", "xsum", "gigaword", "discofuse", "wikisplit", "wmt14_en_de", "wmt14_de_en"]
)
def test_paper_tasks_validate_on_a_fixed_random_subset_and_test_on_all(task):
    with initialize_config_dir(str(REPO / "conf"), version_base="1.3"):
        data = compose("train", overrides=[f"data={task}"]).data
    assert data.validation_size == 2000 and data.subset_seed == 0
    assert data.train_fraction is None and data.limit_eval is None


# Hub repositories whose main branch is a loading script (datasets >= 4 refuses to run them); the Hub's Parquet
# export of each lives on refs/convert/parquet, with the script's only configuration named `default`.
SCRIPT_REPOSITORIES = {"Harvard/gigaword", "EdinburghNLP/xsum"}


@pytest.mark.parametrize("task", TASKS)
def test_hub_sources_are_script_free(task):
    with initialize_config_dir(str(REPO / "conf"), version_base="1.3"):
        data = compose("train", overrides=[f"data={task}"]).data
    assert data.loader == "hub" and data.hub_name
    if data.hub_name in SCRIPT_REPOSITORIES:
        assert (data.hub_revision, data.hub_config) == ("refs/convert/parquet", "default")
    else:
        assert data.hub_revision is None
