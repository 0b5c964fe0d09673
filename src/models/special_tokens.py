"""A decoder's special tokens for sequence-to-sequence use: its start, EOS and pad ids, from its tokenizer (EOS
before SEP) or from a saved model, and setting them on a model's config and generation_config."""

from __future__ import annotations

from transformers import (
    EncoderDecoderModel,
)

from src.system.errors import UserError

SPECIAL_KEYS = ("decoder_start_token_id", "eos_token_id", "pad_token_id")


def special_token_ids(decoder_tokenizer) -> dict[str, int]:
    """Decoder start, EOS and pad for the decoder's family.

    BERT/RoBERTa: start [CLS]/<s>, eos [SEP]/</s>, pad [PAD]/<pad>. GPT-2: start = eos = pad = <|endoftext|>
    (it has no pad token); targets are given an explicit EOS and padding is masked by length, not by id.
    A tokenizer's own EOS wins over its separator: BertGeneration's separator is `<::::>`, WikiSplit's text.
    """
    tok = decoder_tokenizer
    ids = {
        "decoder_start_token_id": tok.cls_token_id if tok.cls_token_id is not None else tok.bos_token_id,
        "eos_token_id": tok.eos_token_id if tok.eos_token_id is not None else tok.sep_token_id,
        "pad_token_id": tok.pad_token_id,
    }
    if None in ids.values():
        raise UserError(f"decoder tokenizer {type(tok).__name__} lacks a special token: {ids}")
    return ids


def saved_special_ids(model, decoder_tokenizer) -> dict[str, int]:
    """A saved model's own start / EOS / pad ids (generation_config, else config), its tokenizer's where unset."""
    ids = {}
    for key in SPECIAL_KEYS:
        value = getattr(model.generation_config, key, None)
        ids[key] = value if value is not None else getattr(model.config, key, None)
    if None in ids.values():
        ids = {**special_token_ids(decoder_tokenizer), **{k: v for k, v in ids.items() if v is not None}}
    return ids


def set_special_tokens(
    model: EncoderDecoderModel, decoder_tokenizer, ids: dict | None = None
) -> dict[str, int]:
    """Start, EOS and pad ids (`ids`, else `special_token_ids` of the decoder's tokenizer) on model.config and
    generation_config."""
    ids = ids or special_token_ids(decoder_tokenizer)
    for cfg in (model.config, model.generation_config):
        for key, value in ids.items():
            setattr(cfg, key, value)
    if isinstance(model, EncoderDecoderModel):
        model.config.vocab_size = model.config.decoder.vocab_size
    else:  # decoder-only: the start token separates source from target
        model.decoder_start_token_id = ids["decoder_start_token_id"]
    return ids


def special_affixes(tokenizer) -> tuple[list[int], list[int]]:
    """The special tokens a tokenizer puts before and after one sequence ([CLS] / [SEP], <s> / </s>, none)."""
    bare = tokenizer("a", add_special_tokens=False)["input_ids"]
    full = tokenizer("a", add_special_tokens=True)["input_ids"]
    for i in range(len(full) - len(bare) + 1):
        if full[i : i + len(bare)] == bare:
            return full[:i], full[i + len(bare) :]
    raise ValueError(f"cannot locate the text among {type(tokenizer).__name__}'s special tokens")
