"""The oracle round trip: reference -> the project's label ids -> the project's decode -> the task's metrics = 100.

For every task config and every decoder tokenizer family (WordPiece cased and uncased, byte-level BPE as GPT-2 and
RoBERTa use it, SentencePiece as the paper's released BertGeneration models use it, and the cased WordPiece and
SentencePiece tokenizers saved with `"clean_up_tokenization_spaces": true`, as many checkpoints of transformers 4
are), on rows in the Hub datasets' own surface format (tests/helpers/hub_rows.py: `did n't` / `wo n't`, accented
names). The tokenizers other than the real MiniLM (uncased WordPiece) are trained in the test session on those
rows, so none of them meets an unknown character.
"""

from __future__ import annotations

import json
import re
import shutil
import unicodedata

import pytest
import sacrebleu
import sentencepiece as spm
import torch
from omegaconf import OmegaConf
from tokenizers import Tokenizer, models, pre_tokenizers, trainers
from transformers import (
    BertConfig,
    BertForMaskedLM,
    BertGenerationTokenizer,
    BertTokenizer,
    GPT2Tokenizer,
    RobertaTokenizer,
)

from src.config.schema import train_config
from src.data.sources import FieldSpec, read_pairs
from src.data.tokenized import FastEncoder, Tokenization, TokenizedSplit
from src.metrics.text import AS_GIVEN_METRICS, GenerationMetrics, scoring_options
from src.models.checkpoints import load_tokenizer
from src.models.module import decode
from src.models.special_tokens import special_token_ids
from src.train import train
from tests.helpers.checkpoints import MINILM, TINY, merges_from, wordpiece_vocab
from tests.helpers.commands import compose_train
from tests.helpers.hub_rows import ROWS, TASKS, all_texts, write_task_dir
from tests.helpers.tiny_run import tiny_run

FAMILIES = (
    "wordpiece_cased",
    "wordpiece_uncased",
    "gpt2",
    "roberta",
    "sentencepiece",
    "wordpiece_cased_cleanup",
    "sentencepiece_cleanup",
)
#: the families whose saved tokenizer_config.json asks decode to clean up spaces ("did n't" -> "didn't")
CLEANUP = {"wordpiece_cased_cleanup": "wordpiece_cased", "sentencepiece_cleanup": "sentencepiece"}


def texts_for_training() -> list[str]:
    texts = [*all_texts(), "<::::>"]  # WikiSplit's separator, which the project's target_join adds
    return texts + [t.lower() for t in texts]  # Gigaword-style lowercasing of any task (data.lowercase)


@pytest.fixture(scope="module")
def decoders(tmp_path_factory) -> dict[str, str]:
    """{family: a tokenizer directory, loaded as the project loads a decoder's tokenizer}."""
    root, texts = tmp_path_factory.mktemp("tokenizers"), texts_for_training()
    paths = {"wordpiece_uncased": MINILM}

    cased = wordpiece_vocab(texts, lowercase=False, size=1500)
    BertTokenizer(vocab=cased, do_lower_case=False).save_pretrained(root / "wordpiece_cased")

    for name, cls in (("gpt2", GPT2Tokenizer), ("roberta", RobertaTokenizer)):
        bpe = Tokenizer(models.BPE())
        bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        special = ["<s>", "<pad>", "</s>", "<unk>", "<mask>"] if name == "roberta" else ["<|endoftext|>"]
        bpe.train_from_iterator(
            texts,
            trainers.BpeTrainer(
                vocab_size=1500, special_tokens=special, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
            ),
        )
        cls(vocab=bpe.get_vocab(), merges=merges_from(bpe)).save_pretrained(root / name)

    # the released roberta2roberta / bert2bert_L-24_wmt layout: BertGenerationTokenizer over a SentencePiece model
    model = root / "spiece"
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(texts),
        model_prefix=str(model),
        vocab_size=400,
        hard_vocab_limit=False,
        character_coverage=1.0,
        pad_id=0,
        eos_id=1,
        unk_id=2,
        bos_id=3,
        user_defined_symbols=["<::::>"],
        minloglevel=2,
    )
    BertGenerationTokenizer(vocab_file=f"{model}.model").save_pretrained(root / "sentencepiece")
    for family, plain in CLEANUP.items():  # the same tokenizer, saved as transformers 4 often saved it
        shutil.copytree(root / plain, root / family)
        config = root / family / "tokenizer_config.json"
        config.write_text(
            json.dumps({**json.loads(config.read_text()), "clean_up_tokenization_spaces": True})
        )
    for family in FAMILIES:
        paths.setdefault(family, str(root / family))
    return paths


def task_pairs(task: str) -> tuple[list[str], list[str], dict]:
    """The task's sources and targets as the project reads the Hub rows (columns, joins, lowercasing), and its data
    config (metrics, scoring options)."""
    data = OmegaConf.to_container(compose_train(f"data={task}").data, resolve=True)
    sources, targets, _ = read_pairs(
        ROWS[TASKS[task]],
        FieldSpec.of(data["source_column"], data["source_join"]),
        FieldSpec.of(data["target_column"], data["target_join"]),
        where=task,
        lowercase=data["lowercase"],
    )
    return sources, targets, data


def oracle_predictions(tokenizer, sources: list[str], targets: list[str]) -> list[str]:
    """What a perfect model writes: each target's label ids (the project's), after the decoder start, decoded."""
    ids = special_token_ids(tokenizer)
    tokenization = Tokenization(tokenizer, tokenizer, 512, 512, ids["eos_token_id"])
    split = TokenizedSplit.in_memory(sources, targets, tokenization)
    generated = [[ids["decoder_start_token_id"], *split.label(i).tolist()] for i in range(len(split))]
    return decode(tokenizer, generated, ids)


def scores(data, predictions, targets, sources, **override) -> dict[str, float]:
    metrics = GenerationMetrics(data["metrics"], **{**scoring_options(data), **override})
    metrics.update(predictions, targets, sources)
    return {k: float(v) for k, v in metrics.compute().items()}


def uncased(text: str) -> str:
    """What an uncased WordPiece decoder can write at best: lowercase, accents stripped (BERT's normalizer)."""
    return "".join(c for c in unicodedata.normalize("NFD", text.lower()) if unicodedata.category(c) != "Mn")


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("task", list(TASKS))
def test_a_perfect_model_scores_100_on_every_metric(decoders, task, family):
    sources, targets, data = task_pairs(task)
    tokenizer = load_tokenizer(decoders[family], "decoder")
    predictions = oracle_predictions(tokenizer, sources, targets)
    got = scores(data, predictions, targets, sources)
    assert set(got) == set(data["metrics"])
    # Standard sacreBLEU (WMT) scores the decoder's detokenized text as given, as published sacreBLEU figures do:
    # what sacrebleu itself gives on these strings, 100 where the decoder writes the reference back exactly
    # (byte-level BPE, SentencePiece) and below where its detokenization differs (WordPiece's "well - known").
    for name in set(got) & set(AS_GIVEN_METRICS):
        standard = sacrebleu.corpus_bleu(predictions, [targets]).score
        assert got.pop(name) == pytest.approx(standard, abs=1e-3)
        assert (standard == pytest.approx(100.0)) == (predictions == targets), (predictions, targets)
    if family != "wordpiece_uncased" or data["lowercase"]:
        assert got == pytest.approx(dict.fromkeys(got, 100.0), abs=1e-4), list(
            zip(predictions, targets, strict=True)
        )
        return
    # An uncased decoder on a cased task writes each reference lowercased and without accents, no better: it
    # scores what that text scores (computed here without the tokenizer). This is what the model cannot write,
    # not what a cleanup changed.
    expected = scores(data, [uncased(t) for t in targets], targets, sources)
    expected = {k: v for k, v in expected.items() if k in got}
    assert got == pytest.approx(expected, abs=1e-4), list(zip(predictions, targets, strict=True))
    # Case-sensitive metrics fall below 100. ROUGE lowercases, but rouge_score's tokenizer keeps only ASCII letters
    # and digits: the reference's "Arsène" is the tokens "ars ne", the uncased decoder's "arsene" one other token.
    # So ROUGE falls below 100 exactly where a reference has a letter that lowercasing alone does not give.
    stripped = any(uncased(t) != t.lower() for t in targets)
    for name, value in expected.items():
        assert (value < 100.0) == (not name.startswith("rouge") or stripped), (name, value)


@pytest.mark.parametrize("family", list(CLEANUP))
@pytest.mark.parametrize("task", ["discofuse", "wikisplit", "gigaword"])
def test_a_tokenizers_saved_clean_up_would_cost_points_and_the_project_decode_turns_it_off(
    decoders, task, family
):
    """The tokenizer really carries the flag, and decoding with it (transformers' default for such a checkpoint)
    rewrites "did n't" as "didn't", which a perfect model would pay for; the project's decode scores 100."""
    sources, targets, data = task_pairs(task)
    tokenizer = load_tokenizer(decoders[family], "decoder")
    assert tokenizer.clean_up_tokenization_spaces is True
    assert any("n't" in t for t in targets)
    ids = special_token_ids(tokenizer)
    split = TokenizedSplit.in_memory(
        sources, targets, Tokenization(tokenizer, tokenizer, 512, 512, ids["eos_token_id"])
    )
    labels = [[t for t in split.label(i).tolist() if t != ids["eos_token_id"]] for i in range(len(split))]
    cleaned = [t.strip() for t in tokenizer.batch_decode(labels, skip_special_tokens=True)]
    assert any("n't" in t and " n't" not in t for t in cleaned), cleaned  # "didn't": a boundary moved
    assert min(scores(data, cleaned, targets, sources).values()) < 100.0
    assert scores(data, oracle_predictions(tokenizer, sources, targets), targets, sources) == pytest.approx(
        dict.fromkeys(data["metrics"], 100.0), abs=1e-4
    )


def test_what_an_uncased_decoder_loses_on_accented_names_worked_out_by_hand(decoders):
    """ROUGE on "Arsène Wenger praised Mesut Özil ." as an uncased decoder writes it at best ("arsene wenger praised
    mesut ozil ."): rouge_score's tokens are `ars ne wenger praised mesut zil` (6) against `arsene wenger praised
    mesut ozil` (5). ROUGE-1: 3 shared, P 3/5, R 3/6, F 6/11 = 54.55; ROUGE-2: `wenger praised`, `praised mesut`
    shared, P 2/4, R 2/5, F 4/9 = 44.44; ROUGE-L: LCS 3, as ROUGE-1. The canonical form does not fold accents for
    ROUGE: the figures stay those of rouge_score (and of ROUGE-1.5.5, which drops non-ASCII letters too), the
    ones the literature reports. A cased decoder writes the name and scores 100."""
    reference = "Arsène Wenger praised Mesut Özil ."
    data = {"metrics": ["rouge1", "rouge2", "rougeL", "exact"]}
    uncased_tok = load_tokenizer(decoders["wordpiece_uncased"], "decoder")
    [written] = oracle_predictions(uncased_tok, [""], [reference])
    assert written == "arsene wenger praised mesut ozil."
    assert scores(data, [written], [reference], [""]) == pytest.approx(
        {"rouge1": 600 / 11, "rouge2": 400 / 9, "rougeL": 600 / 11, "exact": 0.0}, abs=1e-3
    )
    for family in ("wordpiece_cased", "gpt2", "sentencepiece"):
        tokenizer = load_tokenizer(decoders[family], "decoder")
        perfect = oracle_predictions(tokenizer, [""], [reference])
        assert scores(data, perfect, [reference], [""]) == pytest.approx(
            dict.fromkeys(data["metrics"], 100.0)
        ), (
            family,
            perfect,
        )


@pytest.mark.parametrize("family", FAMILIES)
def test_the_fast_path_gives_the_tokenizers_own_ids(decoders, family):
    """What the cache tokenizes with (`FastEncoder`: a copy of the Rust backend, no truncation, no padding) equals
    the tokenizer's own call on every Hub-format text, lowercased ones included; Rust tokenizers take it."""
    tokenizer = load_tokenizer(decoders[family])
    texts = texts_for_training()
    encoder = FastEncoder(tokenizer)
    assert encoder(texts) == tokenizer(texts, add_special_tokens=False)["input_ids"]
    assert (encoder.backend is not None) == (getattr(tokenizer, "backend_tokenizer", None) is not None)


@pytest.mark.parametrize("task", ["discofuse", "wikisplit", "wmt14_de_en"])
def test_without_the_canonical_form_the_same_perfect_outputs_lose_points(decoders, task):
    sources, targets, data = task_pairs(task)
    tokenizer = load_tokenizer(decoders["wordpiece_cased"], "decoder")
    predictions = oracle_predictions(tokenizer, sources, targets)
    canonical = scores(data, predictions, targets, sources)
    canonical.pop("sacrebleu", None)  # scored as given by definition
    assert min(canonical.values()) == pytest.approx(100.0)
    as_given = scores(data, predictions, targets, sources, scored_text="as_given")
    assert min(as_given.values()) < 95.0, as_given  # the detokenization alone costs points


@pytest.mark.parametrize("task", ["discofuse", "wikisplit"])
def test_what_a_model_gets_wrong_still_costs_points(decoders, task):
    sources, targets, data = task_pairs(task)
    tokenizer = load_tokenizer(decoders["wordpiece_cased"], "decoder")
    wrong = [t.replace(" the ", " a ", 1) if " the " in t else t + " extra" for t in targets]
    predictions = oracle_predictions(tokenizer, sources, wrong)
    got = scores(data, predictions, targets, sources)
    assert got["exact"] == 0.0 and got["sari"] < 100.0
    lowered = scores(
        data, [re.sub("[A-Z]", lambda m: m[0].lower(), t, count=1) for t in targets], targets, sources
    )
    assert lowered["exact"] == 0.0  # a missing capital is a mistake


@pytest.fixture(scope="module")
def tiny_uncased(tmp_path_factory) -> str:
    """A tiny random BERT with an uncased WordPiece vocabulary of the Hub rows (decodes as MiniLM does: joins " .",
    splits "<::::>"), quick to make memorise examples."""
    path = tmp_path_factory.mktemp("tiny-uncased")
    tokenizer = BertTokenizer(vocab=wordpiece_vocab(texts_for_training(), size=800), do_lower_case=True)
    config = BertConfig(vocab_size=len(tokenizer), max_position_embeddings=128, **{**TINY, "hidden_size": 64})
    torch.manual_seed(0)
    BertForMaskedLM(config).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return str(path)


@pytest.mark.parametrize("task", ["wikisplit", "discofuse"])
def test_a_model_that_memorised_hub_format_examples_scores_near_100(task, tiny_uncased, tmp_path):
    # lowercase (an uncased decoder), pre-tokenized, WikiSplit's <::::>: a WordPiece decoder writes
    # "kentucky. < : : : : > the city ' s", which scored as given is Exact 0
    data = write_task_dir(tmp_path, TASKS[task], copies=16)
    cfg = compose_train(
        f"data={task}",
        f"data.path={data}",
        "data.lowercase=true",
        f"data.cache_dir={tmp_path / 'cache'}",
        f"encoder.checkpoint={tiny_uncased}",
        f"decoder.checkpoint={tiny_uncased}",
        f"output_dir={tmp_path / 'run'}",
        *tiny_run(
            steps=250, val_every=250, warmup=10, lr="3e-3", progress="none", synthetic=False, new_tokens=48
        ),
        "optimizer.weight_decay=0",
    )
    results = train(train_config(cfg))
    assert results.test["exact"] >= 99.9 and results.test["sari"] >= 99.9, results.test
    rows = [json.loads(x) for x in (tmp_path / "run" / "predictions.jsonl").read_text().splitlines()]
    assert all(r["scored_prediction"] == r["scored_reference"] for r in rows)
    assert any(
        r["prediction"] != r["reference"] for r in rows
    )  # the decoder's own spelling, kept for reading
    assert results.scoring["scored_text"] == "canonical"
    provenance = results.scoring["provenance"]  # every metric of the run says what computed it, on what text
    assert set(provenance) == set(results.test) - {"loss"}
    assert all(p["text"] == "canonical" and p["tool"] and p["signature"] for p in provenance.values())
