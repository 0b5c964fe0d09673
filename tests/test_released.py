"""The paper's released checkpoints, evaluated as they are, on tiny local imitations of their Hub layouts.

tests/helpers/released.py writes google/roberta2roberta_L-24_* (BertGeneration encoder and decoder sharing one
parameter set, SentencePiece tokenizer) and google/bert2bert_L-24_wmt_* (not shared, WordPiece vocab.txt, used
with add_special_tokens=False and named pad / eos / bos tokens), and predicts with plain transformers as the model
cards say. The real checkpoints (24 layers, hidden 1024) are not reachable here: only these layouts are tested.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from src.analysis.report import write_report
from src.analysis.scoring import score
from src.config.schema import train_config
from src.metrics.text import GenerationMetrics
from src.models.builder import build
from src.models.restore import load_module
from src.models.spec import ModelSpec
from src.system.errors import UserError
from src.train import train
from tests.helpers.commands import compose_train, run_cli
from tests.helpers.hub_rows import all_texts, write_task_dir
from tests.helpers.released import WMT_TOKENIZER_KWARGS, card_predictions, make_released
from tests.helpers.tiny_run import tiny_run

#: (imitation, the Hub repository it imitates, the task it was fine-tuned on, the Hub dataset of that task)
RELEASED = {
    "roberta2roberta": ("roberta2roberta_L-24_wikisplit", "wikisplit", "wikisplit"),
    "bert2bert_wmt": ("bert2bert_L-24_wmt_de_en", "wmt14_de_en", "wmt14"),
}
NEW_TOKENS = 20  # generate's default length, as the model cards use it


@pytest.fixture(scope="module")
def released(tmp_path_factory) -> dict[str, Path]:
    """{kind: checkpoint directory named like its Hub repository}, plus the tasks' data directories."""
    root = tmp_path_factory.mktemp("released")
    texts = [*all_texts(), "Spanish . <::::> Ergo , her poems"]
    out = {}
    for kind, (repo, _, dataset) in RELEASED.items():
        made = make_released(root / "made", kind, texts, train_steps=30)
        out[kind] = root / "google" / repo
        out[kind].parent.mkdir(exist_ok=True)
        shutil.move(made, out[kind])
        out[dataset] = write_task_dir(root / "data", dataset)
    return out


@pytest.mark.parametrize("kind", list(RELEASED))
def test_src_eval_scores_a_released_layout_as_plain_transformers_does_with_its_card(released, kind, tmp_path):
    _, task, dataset = RELEASED[kind]
    result = run_cli(
        "src.eval",
        f"pretrained_seq2seq={released[kind]}",
        f"data={task}",
        f"data.path={released[dataset]}",
        f"data.cache_dir={tmp_path / 'cache'}",
        "data.decoding.num_beams=1",
        f"data.decoding.max_new_tokens={NEW_TOKENS}",
        "eval_batch_size=1",
        "precision=32-true",  # plain transformers runs in fp32; `auto` may be bf16 (greedy ties could flip)
        f"hydra.run.dir={tmp_path / 'eval'}",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    rows = [json.loads(x) for x in (tmp_path / "eval" / "predictions.jsonl").read_text().splitlines()]
    sources = [r["source"] for r in rows]
    card = card_predictions(released[kind], kind, sources, max_new_tokens=NEW_TOKENS)
    assert [r["prediction"] for r in rows] == [c.strip() for c in card]
    assert len(set(card)) > 1  # the imitation answers its input: equal outputs could hide a lost source
    metrics = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    expected = GenerationMetrics(list(metrics["scoring"]["metrics"]), bleu_lowercase=task.startswith("wmt"))
    expected.update(card, [r["reference"] for r in rows], sources)
    scores = {k: v for k, v in metrics["test"].items() if k != "loss"}
    assert scores == pytest.approx({k: float(v) for k, v in expected.compute().items()})
    assert (
        score(tmp_path / "eval" / "predictions.jsonl") == scores
    )  # scored as the evaluation was (its metrics.json)
    # src.report puts the evaluation beside the paper's row of that released model (WMT: the paper has none)
    report = write_report(tmp_path / "eval", tmp_path / "report", resamples=10)
    (row,) = report["rows"]
    assert row["variant"] == ("robertashare 24L" if kind == "roberta2roberta" else "bert2bert 24L")
    if kind == "roberta2roberta":
        assert (row["paper exact"], row["paper sari"]) == (16.4, 63.8)
        assert row["gap to paper (sari)"] == pytest.approx(row["sari"] - 63.8)


def shared_tensors(model) -> int:
    decoder = {id(p) for p in model.decoder.parameters()}
    return sum(id(p) in decoder for p in model.encoder.parameters())


def test_a_tied_released_model_is_one_parameter_set_also_after_the_projects_checkpoint(released, tmp_path):
    made = build(ModelSpec.of_saved_model(str(released["roberta2roberta"])))
    encoder_tensors = len(list(made.model.encoder.parameters()))
    assert shared_tensors(made.model) == encoder_tensors  # every encoder tensor is the decoder's own
    unique = sum(p.numel() for p in made.model.parameters())
    assert made.budget.total == unique < unique + sum(p.numel() for p in made.model.encoder.parameters())
    g = made.model.generation_config
    assert (g.decoder_start_token_id, g.eos_token_id, g.pad_token_id) == (2, 1, 0)  # the saved ones

    # a file that stores each shared tensor once (safetensors, decoder names kept) loads to the same model
    texts = [*all_texts(), "a <::::> b"]
    deduped = build(
        ModelSpec.of_saved_model(
            str(make_released(tmp_path / "st", "roberta2roberta", texts, dedupe=True, train_steps=0))
        )
    )
    full = build(
        ModelSpec.of_saved_model(
            str(make_released(tmp_path / "bin", "roberta2roberta", texts, train_steps=0))
        )
    )
    assert shared_tensors(deduped.model) == encoder_tensors
    for (n, a), (_, b) in zip(
        deduped.model.state_dict().items(), full.model.state_dict().items(), strict=True
    ):
        assert torch.equal(a, b), n

    # fine-tuned in the framework: the project's checkpoint rebuilds one shared set, with the saved ids
    cfg = compose_train(
        f"pretrained_seq2seq={released['roberta2roberta']}",
        "data=wikisplit",
        f"data.path={released['wikisplit']}",
        f"data.cache_dir={tmp_path / 'cache'}",
        f"output_dir={tmp_path / 'run'}",
        *tiny_run(
            steps=1, val_every=1, progress="none", synthetic=False, batch=2, eval_batch=2, new_tokens=4
        ),
    )
    results = train(train_config(cfg))
    assert results.params["total"] == made.budget.total
    module = load_module(str(tmp_path / "run" / "checkpoints" / "last.ckpt"))
    assert shared_tensors(module.model) == encoder_tensors
    assert module.special_ids == {"decoder_start_token_id": 2, "eos_token_id": 1, "pad_token_id": 0}


def test_a_checkpoint_missing_weights_is_an_error_not_a_log_line(released, tmp_path):
    source = released["bert2bert_wmt"]
    broken = tmp_path / source.name
    shutil.copytree(source, broken)
    state = torch.load(broken / "pytorch_model.bin", weights_only=True)
    (broken / "pytorch_model.bin").unlink()
    kept = {k: v.clone() for k, v in state.items() if ".layer.1." not in k or not k.startswith("encoder.")}
    save_file(kept, broken / "model.safetensors", metadata={"format": "pt"})
    with pytest.raises(UserError, match=r"lacks \d+ weight tensors, which would start random"):
        build(ModelSpec.of_saved_model(str(broken)))


def test_a_tokenizer_larger_than_the_embedding_table_is_refused_with_the_fix(released, tmp_path):
    # the wmt layout without its card's tokens: BertTokenizer adds [PAD] past the end of the vocabulary
    plain = tmp_path / "bert2bert_wmt"
    shutil.copytree(released["bert2bert_wmt"], plain)
    with pytest.raises(
        UserError, match=r"embedding table \d+ rows.*Fix: .*pretrained_usage.tokenizer_kwargs"
    ):
        build(ModelSpec.of_saved_model(str(plain)))
    spec = ModelSpec.of_saved_model(
        str(plain), tokenizer_kwargs=WMT_TOKENIZER_KWARGS, source_special_tokens=False
    )
    assert build(spec).decoder_tokenizer.pad_token == "<pad>"


def test_a_run_on_bare_sources_exports_that_and_predicts_so(released, tmp_path):
    from src.models.decoding import Decoding
    from src.models.export import export
    from src.models.module import Seq2SeqModule
    from src.run.predictor import Predictor

    spec = ModelSpec.of_saved_model(str(released["bert2bert_wmt"]))  # the wmt card: no [CLS]/[SEP] on sources
    module = Seq2SeqModule(
        model=spec.as_dict(),
        optimizer={"name": "adamw_linear", "lr": 1e-4, "warmup_steps": 0},
        generation={"num_beams": 1, "max_new_tokens": NEW_TOKENS},
    ).eval()
    out = export(module, tmp_path / "export")
    assert json.loads((out / "config.json").read_text())["warmstart_source_special_tokens"] is False
    assert ModelSpec.of_saved_model(str(out)).source_special_tokens is False  # whatever the directory's name
    sources = ["Gutach: Noch mehr Sicherheit für Fußgänger", "Zwei Anlagen so nah beieinander"]
    predicted = Predictor(str(out)).predict(sources, batch_size=1, decoding=Decoding(), progress=False)
    card = card_predictions(released["bert2bert_wmt"], "bert2bert_wmt", sources, max_new_tokens=NEW_TOKENS)
    assert predicted == [c.strip() for c in card]
