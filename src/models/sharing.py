"""Weight sharing between encoder and decoder, done by hand.

transformers 5 silently ignores `tie_encoder_decoder=True`, so sharing is implemented here at the level of
`nn.Parameter` objects: the same Parameter is placed in both modules. Modules themselves are never shared,
because a decoder's self-attention module carries its own `is_causal` flag.
"""

from __future__ import annotations

from torch import nn
from transformers import EncoderDecoderModel

from src.system.errors import UserError

SHARING_MODES = ("none", "embeddings", "shared")
#: Parameter-name fragments of the decoder's cross-attention (BERT/RoBERTa, GPT-2) and the projection added
#: when encoder and decoder widths differ: always new, never shared.
CROSS_ATTENTION_MARKERS = ("crossattention", "ln_cross_attn", "enc_to_dec_proj")
_ARCH_FIELDS = ("model_type", "hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size")


def is_cross_attention(name: str) -> bool:
    return any(marker in name for marker in CROSS_ATTENTION_MARKERS)


def _set_parameter(root: nn.Module, name: str, param: nn.Parameter) -> None:
    module_name, _, leaf = name.rpartition(".")
    setattr(root.get_submodule(module_name) if module_name else root, leaf, param)


def _describe(cfg) -> str:
    return (
        f"{cfg.model_type} (hidden {cfg.hidden_size}, {cfg.num_hidden_layers} layers, "
        f"{cfg.num_attention_heads} heads, vocab {cfg.vocab_size})"
    )


def check_shareable(encoder_config, decoder_config, same_vocab: bool) -> None:
    """Raise a UserError unless `sharing=shared` is possible between these two sides."""
    arch_differs = any(
        getattr(encoder_config, f, None) != getattr(decoder_config, f, None) for f in _ARCH_FIELDS
    )
    if arch_differs or not same_vocab or encoder_config.vocab_size != decoder_config.vocab_size:
        reason = "architecture" if arch_differs else "vocabulary"
        raise UserError(
            "sharing=shared shares every encoder weight with the decoder, so both sides need one architecture "
            f"and one vocabulary, but their {reason} differs: encoder {_describe(encoder_config)} vs decoder "
            f"{_describe(decoder_config)}. Fix: sharing=embeddings (ties embedding matrices where the "
            "vocabularies match) or sharing=none."
        )


def tie_output_to_input(model: EncoderDecoderModel) -> None:
    """Make the decoder's output projection the decoder's input embedding matrix (as the checkpoints do)."""
    out = model.decoder.get_output_embeddings()
    if out is not None:
        out.weight = model.decoder.get_input_embeddings().weight


def tie_embeddings(model: EncoderDecoderModel, keep: str = "encoder") -> None:
    """One word-embedding matrix for encoder input, decoder input and decoder output.

    Args:
        keep: whose matrix survives, "encoder" or "decoder" (the pretrained side's, normally).
    """
    enc, dec = model.encoder.get_input_embeddings(), model.decoder.get_input_embeddings()
    if enc.weight.shape != dec.weight.shape:
        raise UserError(
            f"cannot tie embeddings of shapes {tuple(enc.weight.shape)} and {tuple(dec.weight.shape)}. "
            "Fix: sharing=none."
        )
    keeper = enc.weight if keep == "encoder" else dec.weight
    enc.weight = keeper
    dec.weight = keeper
    tie_output_to_input(model)


def share_encoder_decoder(model: EncoderDecoderModel, keep: str = "encoder") -> int:
    """Share every encoder parameter with its decoder twin, cross-attention excepted (bertshare).

    Returns:
        How many parameter tensors are now shared.
    """
    enc_params = dict(model.encoder.named_parameters(remove_duplicate=False))
    base = model.decoder.get_submodule(model.decoder.base_model_prefix)
    shared = 0
    for name, dec_param in list(base.named_parameters(remove_duplicate=False)):
        enc_param = enc_params.get(name)
        if is_cross_attention(name) or enc_param is None or enc_param.shape != dec_param.shape:
            continue
        keeper = enc_param if keep == "encoder" else dec_param
        _set_parameter(model.encoder, name, keeper)
        _set_parameter(base, name, keeper)
        shared += 1
    tie_output_to_input(model)
    return shared


def apply_sharing(model: EncoderDecoderModel, mode: str, same_vocab: bool, keep: str = "encoder") -> str:
    """Apply a sharing mode; returns a one-line description of what was tied, for the run log."""
    if mode not in SHARING_MODES:
        raise UserError(
            f"unknown sharing mode {mode!r}. Fix: sharing=none, sharing=embeddings or sharing=shared."
        )
    if mode == "none":
        return "no sharing"
    if mode == "shared":
        check_shareable(model.config.encoder, model.config.decoder, same_vocab)
        n = share_encoder_decoder(model, keep)
        return f"encoder and decoder share {n} tensors (all but cross-attention)"
    if same_vocab and model.config.encoder.vocab_size == model.config.decoder.vocab_size:
        tie_embeddings(model, keep)
        return "one embedding matrix for encoder input, decoder input and output"
    tie_output_to_input(model)
    return "vocabularies differ: encoder embeddings kept apart; decoder input and output tied"
