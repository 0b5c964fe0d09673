"""paper=rothe2020: one cell of the paper's tables with the paper's settings (paper=rothe2020, conf/paper/)."""

from __future__ import annotations

import json

import pytest
import torch
from omegaconf import OmegaConf

from src.config.data import per_device_batch_size
from src.config.schema import train_config
from src.models.builder import build
from src.models.spec import ModelSpec
from src.paper.figures import paper_figures
from src.paper.protocol import check_protocol, paper_tasks
from src.paper.variants import VARIANTS, paper_variants
from src.run.assemble import build_datamodule, build_module
from src.system.errors import UserError
from src.train import train
from tests.helpers.commands import REPO, compose_train, run_cli
from tests.helpers.task_records import record
from tests.helpers.tiny_run import tiny_run

# From the paper (rothe2020.md): the checkpoint behind "BERT", the global batch and the length penalty per task.
PAPER = {
    "cnn_dailymail": ("bert-base-cased", 128, 1.0),
    "xsum": ("bert-base-cased", 128, 1.0),
    "gigaword": ("bert-base-uncased", 256, 1.0),  # the paper lowercased Gigaword
    "discofuse": ("bert-base-cased", 256, 1.0),
    "wikisplit": ("bert-base-cased", 256, 1.0),
    "wmt14_en_de": ("bert-base-multilingual-cased", 256, 0.6),
    "wmt14_de_en": ("bert-base-multilingual-cased", 256, 0.6),
}
WMT_ROWS = [v for v in VARIANTS if v not in ("robertashare", "roberta2gpt")]  # no RoBERTa: English-only


def test_every_paper_task_has_a_preset():
    tasks = {p.stem for p in (REPO / "conf" / "paper" / "rothe2020").glob("*.yaml")} - {"figures"}
    assert tasks == set(PAPER) == set(paper_tasks())


def test_the_variants_are_table1s_rows_and_each_task_runs_the_rows_of_its_table():
    figures = paper_figures()
    assert tuple(figures["table1"]) == VARIANTS and len(VARIANTS) == 10
    assert paper_variants() == paper_variants(None) == ",".join(VARIANTS)
    for task in PAPER:
        cfg = compose_train("paper=rothe2020", f"data={task}", "variant=bert2bert")
        rows = [v for v in figures["results"][task] if v in VARIANTS]  # its table's rows (24L ones aside)
        assert cfg.paper.variants.split(",") == rows, task
    with pytest.raises(UserError, match="paper.excluded names robertashar, not one of the paper's variants"):
        paper_variants(["robertashar"])


@pytest.mark.parametrize("task", sorted(PAPER))
def test_paper_preset_sets_the_tasks_checkpoints_optimizer_batch_and_decoding(task):
    bert, batch, length_penalty = PAPER[task]
    for variant in ("bert2bert", "rnd2rnd", "bert2gpt", "gpt"):
        cfg = compose_train("paper=rothe2020", f"data={task}", f"variant={variant}")
        check_protocol(cfg.paper, cfg.variant, cfg.data.name)
        assert cfg.paper.task == task and cfg.checkpoints.bert == bert
        if variant == "bert2bert":
            assert cfg.encoder.checkpoint == cfg.decoder.checkpoint == bert
        if variant == "bert2gpt":
            assert (cfg.encoder.checkpoint, cfg.decoder.checkpoint) == (bert, "gpt2")
        assert cfg.decoder.max_positions == 512  # GPT-2's first 512 positions only
        o = cfg.optimizer
        assert (o.name, o.lr, o.warmup_steps, o.weight_decay) == ("adam_rsqrt", 0.05, 40000, 0.0)
        assert cfg.data.global_batch_size == batch and cfg.data.batch_size is None
        assert cfg.data.decoding.num_beams == 4 and cfg.data.decoding.length_penalty == length_penalty
    # without the preset, the same variant keeps the project's defaults
    plain = compose_train(f"data={task}", "variant=bert2bert")
    assert plain.paper is None and plain.encoder.checkpoint == "bert-base-uncased"
    assert plain.data.global_batch_size is None and plain.optimizer.name == "adamw_linear"


def test_cfg_job_shows_the_papers_settings():
    proc = run_cli("src.train", "paper=rothe2020", "data=cnn_dailymail", "variant=bert2bert", "--cfg", "job")
    assert proc.returncode == 0, proc.stderr
    cfg = OmegaConf.create(proc.stdout)
    assert "  bert: bert-base-cased\n" in proc.stdout and cfg.encoder.checkpoint == "bert-base-cased"
    assert cfg.optimizer.name == "adam_rsqrt" and cfg.data.global_batch_size == 128


def test_the_grid_runs_every_row_of_the_tasks_table_with_the_preset():
    wmt = compose_train("experiment=rothe_grid", "data=wmt14_en_de", hydra=True)
    assert wmt.hydra.sweeper.params.variant.split(",") == WMT_ROWS
    assert wmt.checkpoints.bert == "bert-base-multilingual-cased" and wmt.data.global_batch_size == 256
    xsum = compose_train("experiment=rothe_grid", "data=xsum", hydra=True)
    assert xsum.hydra.sweeper.params.variant.split(",") == list(VARIANTS)
    assert xsum.checkpoints.bert == "bert-base-cased" and xsum.optimizer.name == "adam_rsqrt"


@pytest.mark.parametrize(
    "overrides,expected",
    [
        (["data=wmt14_en_de", "variant=robertashare"], ["variant=robertashare", "RoBERTa", "bert2gpt"]),
        (["data=wmt14_de_en", "variant=roberta2gpt"], ["variant=roberta2gpt", "RoBERTa", "rnd2rnd"]),
        (["data=xsum"], ["a variant is needed", "roberta2gpt"]),
        (["data=synthetic", "variant=bert2bert"], ["data=synthetic", "cnn_dailymail", "wmt14_de_en"]),
    ],
)
def test_paper_refuses_what_the_paper_did_not_run(overrides, expected):
    with pytest.raises(UserError) as err:
        cfg = compose_train("paper=rothe2020", *overrides)
        check_protocol(cfg.paper, cfg.variant, cfg.data.name)
    assert all(e in str(err.value) for e in expected), str(err.value)


def test_wmt_refusal_from_the_command_line_names_the_rows():
    proc = run_cli("src.train", "paper=rothe2020", "data=wmt14_en_de", "variant=robertashare", "logger=none")
    assert proc.returncode != 0 and "Traceback" not in proc.stderr
    assert "RoBERTa is English-only" in proc.stderr and "variant=<one of rnd2rnd" in proc.stderr


@pytest.mark.parametrize(
    "batch,total,devices,accumulation,expected",
    [
        (None, 256, 1, 1, 256),
        (None, 256, 2, 4, 32),
        (None, 128, 8, 16, 1),
        (16, None, 4, 2, 16),  # no global batch: batch_size is per device, as before
        (32, 256, 2, 4, 32),  # consistent: accepted
    ],
)
def test_global_batch_becomes_a_per_device_batch(batch, total, devices, accumulation, expected):
    data = OmegaConf.create({"batch_size": batch, "global_batch_size": total})
    assert per_device_batch_size(data, devices, accumulation) == expected


@pytest.mark.parametrize(
    "batch,total,devices,accumulation,expected",
    [
        (None, 256, 3, 1, ["does not divide", "3 device(s)", "accumulate_grad_batches"]),
        (None, 256, 1, 512, ["does not divide", "accumulate_grad_batches=1 -> batch 256"]),
        (8, 256, 1, 1, ["data.batch_size=8", "= 8 examples per step", "data.batch_size=null"]),
        (None, None, 1, 1, ["both null", "data.batch_size=16"]),
    ],
)
def test_global_batch_combinations_that_do_not_divide_are_refused(
    batch, total, devices, accumulation, expected
):
    data = OmegaConf.create({"batch_size": batch, "global_batch_size": total})
    with pytest.raises(UserError) as err:
        per_device_batch_size(data, devices, accumulation)
    assert all(e in str(err.value) for e in expected), str(err.value)


def test_gpt2_keeps_only_its_first_positions_and_a_checkpoint_rebuilds_that(tiny):
    full = build(ModelSpec(tiny["bert"], tiny["gpt2"]))
    cut = build(ModelSpec(tiny["bert"], tiny["gpt2"], decoder_max_positions=48))
    wpe_full, wpe_cut = (m.model.decoder.base_model.wpe.weight for m in (full, cut))
    assert wpe_full.shape[0] == 128 and wpe_cut.shape[0] == 48
    assert torch.equal(wpe_cut, wpe_full[:48])  # the checkpoint's first positions, not new random ones
    assert cut.arch["decoder"]["n_positions"] == 48
    tokenizers = (cut.encoder_tokenizer, cut.decoder_tokenizer)
    rebuilt = build(
        ModelSpec(tiny["bert"], tiny["gpt2"], decoder_max_positions=48),
        "random",
        arch=cut.arch,
        tokenizers=tokenizers,
    )
    assert rebuilt.model.decoder.base_model.wpe.weight.shape[0] == 48
    assert cut.budget.total == full.budget.total - 80 * 32  # 80 positions x hidden 32 fewer
    # BERT already has no more than its limit: left as it is; a family we cannot cut is refused
    assert (
        build(ModelSpec(tiny["bert"], tiny["bert"], encoder_max_positions=512)).budget
        == build(ModelSpec(tiny["bert"], tiny["bert"])).budget
    )
    with pytest.raises(UserError, match=r"encoder.max_positions=64.*GPT-2 only"):
        build(ModelSpec(tiny["bert"], tiny["bert"], encoder_max_positions=64))


def _wikisplit_files(root):
    root.mkdir()
    for split, n in (("train", 16), ("validation", 4), ("test", 4)):
        rows = [record("wikisplit", i + 100 * len(split)) for i in range(n)]
        (root / f"{split}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return root


def test_decoder_only_gpt_cuts_sources_to_fit_source_and_target_in_its_positions(tiny, tmp_path):
    cfg = compose_train(
        "paper=rothe2020",
        "data=wikisplit",
        "variant=gpt",
        f"checkpoints.gpt2={tiny['gpt2']}",
        "decoder.max_positions=40",
        "data.max_target_length=16",
        f"data.path={_wikisplit_files(tmp_path / 'data')}",
        f"data.cache_dir={tmp_path / 'cache'}",
        f"output_dir={tmp_path / 'run'}",
    )
    config = train_config(cfg)
    module = build_module(config)
    assert module.model.decoder.base_model.wpe.weight.shape[0] == 40
    datamodule = build_datamodule(config.data, module, config.seed)
    lengths = datamodule.split("train").source_lengths()
    assert lengths.max() == 40 - 16  # cut: the fixture's sources are longer than 24 tokens
    assert datamodule.split("train").stats.truncated_sources > 0


def test_a_paper_run_spreads_the_global_batch_over_accumulation(tiny, tmp_path):
    cfg = compose_train(
        "paper=rothe2020",
        "data=wikisplit",
        "variant=bert2gpt",
        f"checkpoints.bert={tiny['bert']}",
        f"checkpoints.gpt2={tiny['gpt2']}",
        f"data.path={_wikisplit_files(tmp_path / 'data')}",
        f"data.cache_dir={tmp_path / 'cache'}",
        "data.global_batch_size=8",
        "trainer.accumulate_grad_batches=2",
        *tiny_run(steps=2, warmup=2, synthetic=False, batch=None, eval_batch=4, new_tokens=6, beams=2),
        f"output_dir={tmp_path / 'run'}",
    )
    results = train(train_config(cfg))
    assert results.batch == {"per_device": 4, "devices": 1, "accumulation": 2, "global": 8}
    assert results.train["steps"] == 2 and results.status == "completed"
    written = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert written["batch"]["global"] == 8 and set(written["test"]) == {"exact", "sari", "bleu_nltk", "loss"}
