"""Export: a trained run as a Hugging Face directory that plain transformers reloads and generates the run's
predictions with, exactly; `python -m src.predict` on the run and on the exported directory."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch
from transformers import AutoTokenizer, EncoderDecoderModel, GPT2LMHeadModel

from src.config.schema import train_config
from src.models.decoding import GNMTLengthPenalty
from src.train import train
from tests.helpers.commands import REPO, compose_train, run_cli
from tests.helpers.tiny_run import synthetic_overrides

RUNS = {  # (overrides, beams): a tied, a shared, a two-vocabulary and a decoder-only model; greedy and beam 4
    # (the GNMT length penalty, which plain transformers applies when given the penalty as GNMTLengthPenalty)
    "bert2bert-tied": (["sharing=embeddings", "data.decoding.length_penalty_form=gnmt"], 4),
    "bertshare": (["sharing=shared"], 1),
    "bert2gpt": (["decoder=gpt2"], 4),
    "gpt": (["variant=gpt"], 1),
}

#: the tiny synthetic task the runs train on (beams: each run's)
TASK = {"train": 48, "validation": 4, "test": 10, "batch": 8, "eval_batch": 4, "new_tokens": 6}


def tiny_task(beams: int) -> list[str]:
    return synthetic_overrides(**TASK, beams=beams)


@pytest.fixture(scope="module", params=list(RUNS))
def trained(request, tiny, tiny_run_overrides, tmp_path_factory):
    overrides, beams = RUNS[request.param]
    out = tmp_path_factory.mktemp(request.param)
    cfg = compose_train(
        *overrides,
        f"checkpoints.bert={tiny['bert']}",
        f"checkpoints.gpt2={tiny['gpt2']}",
        *tiny_run_overrides(steps=8, val_every=4, warmup=2, lr="3e-3", **TASK, beams=beams),
        f"data.cache_dir={out / 'cache'}",
        f"output_dir={out / 'run'}",
    )
    results = train(train_config(cfg))
    return request.param, out / "run", results, cfg


def test_export_reloads_in_plain_transformers_and_generates_the_runs_predictions(trained, tmp_path):
    name, run, results, cfg = trained
    proc = run_cli("src.export", str(run), "--out", str(tmp_path / "hf"))
    assert proc.returncode == 0, proc.stderr[-3000:]
    hf = tmp_path / "hf"
    card = (hf / "README.md").read_text()
    assert f"training: {results.train['steps']} steps" in card and "## Test metrics" in card
    expected = [json.loads(x) for x in (run / "predictions.jsonl").read_text().splitlines()]
    sources = [r["source"] for r in expected]
    tok = AutoTokenizer.from_pretrained(hf)
    if name == "gpt":  # decoder-only: the source, then the start token, as the prompt
        model = GPT2LMHeadModel.from_pretrained(hf).eval()
        start = model.generation_config.decoder_start_token_id
        got = []
        for source in sources:
            ids = tok(source, truncation=True, max_length=cfg.data.max_source_length)["input_ids"] + [start]
            out = model.generate(torch.tensor([ids]))[0, len(ids) :]
            got.append(tok.decode(out, skip_special_tokens=True).strip())
    else:
        model = EncoderDecoderModel.from_pretrained(hf).eval()
        enc_dir = hf / "encoder_tokenizer"
        enc_tok = AutoTokenizer.from_pretrained(enc_dir) if enc_dir.is_dir() else tok
        assert enc_dir.is_dir() == (name == "bert2gpt")
        batch = enc_tok(
            sources, return_tensors="pt", padding=True, truncation=True, max_length=cfg.data.max_source_length
        )
        g = model.generation_config
        gnmt = getattr(g, "length_penalty_form", None) == "gnmt"  # as the model card says
        assert gnmt == (name == "bert2bert-tied") and ("GNMT's" in card) == gnmt
        penalty = {"length_penalty": GNMTLengthPenalty(g.length_penalty)} if gnmt else {}
        with torch.no_grad():
            out = model.generate(
                input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], **penalty
            )
        got = [
            t.strip()
            for t in tok.batch_decode(out, skip_special_tokens=True, clean_up_tokenization_spaces=False)
        ]
        assert model.generation_config.num_beams == cfg.data.decoding.num_beams
    assert got == [r["prediction"] for r in expected]
    # src.predict on the exported directory: the same answers, in the input's order
    from src.models.decoding import Decoding
    from src.run.predictor import Predictor

    assert Predictor(str(hf)).predict(sources, 3, Decoding(), progress=False) == got  # GNMT read back
    recorded = json.loads((run / "metrics.json").read_text())["decoding"]  # what the run was scored with
    assert recorded.get("length_penalty_form") == ("gnmt" if name == "bert2bert-tied" else None)
    if name == "bertshare":
        assert "reloads the two sides untied" in card
    if name == "bert2bert-tied":  # the command line on the run itself, sources on standard input
        stdin = "".join(r["source"] + "\n" for r in expected[:3])
        proc = subprocess.run(
            [sys.executable, "-m", "src.predict", str(run), "-"],
            input=stdin,
            capture_output=True,
            text=True,
            cwd=REPO,
        )
        assert proc.returncode == 0, proc.stderr[-3000:]
        assert proc.stdout.splitlines() == [r["prediction"] for r in expected[:3]]


@pytest.mark.parametrize("trained", ["bert2gpt", "gpt"], indirect=True)  # two tokenizers; decoder-only
@pytest.mark.slow  # 20-50 s of one worker: make test-slow (CI runs it), the default run stays under 10 min
def test_a_saved_model_is_evaluated_and_fine_tuned_in_the_framework(trained, tiny_run_overrides, tmp_path):
    """pretrained_seq2seq: the exported directory, scored by src.eval with the run's metrics, and trained further
    by src.train (whose checkpoint then rebuilds offline like any other). An encoder-decoder with two tokenizers
    and the decoder-only model are the two loading paths."""
    name, run, results, cfg = trained
    hf = tmp_path / "hf"
    assert run_cli("src.export", str(run), "--out", str(hf)).returncode == 0
    beams = cfg.data.decoding.num_beams
    data = tiny_task(beams)
    proc = run_cli(
        "src.eval", f"pretrained_seq2seq={hf}", "data=synthetic", *data, f"hydra.run.dir={tmp_path / 'eval'}"
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    scored = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert scored["test"] == pytest.approx(results.test, rel=1e-5)
    assert scored["params"]["total"] == results.params["total"]

    quick = tiny_run_overrides(steps=2, val_every=2, warmup=1, **TASK, beams=beams)
    tuned = compose_train(f"pretrained_seq2seq={hf}", *quick, f"output_dir={tmp_path / 'tuned'}")
    assert (
        tuned.run_name == "hf-synthetic-s42"
    )  # named after the saved model, not the default encoder/decoder
    again = train(train_config(tuned))
    assert again.status == "completed" and again.params["random"] == 0  # every weight from the saved model
    from src.models.module import Seq2SeqModule

    module = Seq2SeqModule.load_from_checkpoint(tmp_path / "tuned" / "checkpoints" / "last.ckpt")
    assert sum(p.numel() for p in module.model.parameters()) == again.params["total"]
