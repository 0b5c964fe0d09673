"""The model's groups: `encoder=` and `decoder=` (one side each: a checkpoint family, or a random or absent side)
and `sharing=` (which weights the two sides share), with the keys of a saved seq2seq model's use."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, ClassVar, Optional  # noqa: UP035

from omegaconf import MISSING

from src.models.spec import ModelSpec
from src.system.errors import UserError
from src.system.keys import Checked, at_least, key, one_of

#: encoder and decoder share nothing, the word embeddings, or every weight but cross-attention (src.models.sharing)
SHARING_MODES = ("none", "embeddings", "shared")


@dataclass
class SideConfig(Checked):
    """One side of the model (conf/model/*.yaml, placed as encoder= or decoder=)."""

    PREFIX: ClassVar[str] = "encoder"  # its messages name the side: EncoderConfig / DecoderConfig
    name: str = MISSING  # the family (run names: bert2gpt2): bert, roberta, gpt2, minilm, rnd, none
    checkpoint: Optional[str] = None  # noqa: UP045  hub id, local save_pretrained directory, or pkg://package/dir
    pretrained: bool = True  # false: the architecture of `checkpoint` with random weights (rnd)
    max_positions: Optional[int] = key(  # noqa: UP045  use only the first N learned positions (the paper: 512)
        None, at_least(1, "the learned positions used; null: all", nullable=True, fix="{key}=512")
    )


@dataclass
class EncoderConfig(SideConfig):
    PREFIX: ClassVar[str] = "encoder"


@dataclass
class DecoderConfig(SideConfig):
    PREFIX: ClassVar[str] = "decoder"


@dataclass
class SharingConfig(Checked):
    PREFIX: ClassVar[str] = "sharing"
    mode: str = key("embeddings", one_of(SHARING_MODES, fix="sharing=embeddings"))


@dataclass
class PretrainedUsage:
    """How a whole saved model (pretrained_seq2seq) is used; null: its model card's (src.models.spec)."""

    source_special_tokens: Optional[bool] = None  # noqa: UP045  false: sources without [CLS]/[SEP]
    tokenizer_kwargs: Optional[Any] = None  # noqa: UP045  e.g. {pad_token: <pad>, eos_token: </s>}


def model_spec(
    encoder: SideConfig,
    decoder: SideConfig,
    sharing: SharingConfig,
    *,
    fallback_checkpoint: str,
    attn_implementation: str | None = None,
    pretrained_seq2seq: str | None = None,
    pretrained_usage: PretrainedUsage | None = None,
) -> ModelSpec:
    """The `encoder=` / `decoder=` / `sharing=` groups (or a whole saved model) as one ModelSpec.

    A random side that names no checkpoint takes the other side's architecture and vocabulary, else
    `fallback_checkpoint` (`checkpoints.bert`: the paper's rnd2rnd); a pretrained side without a checkpoint is
    refused. `attn_implementation` (default sdpa) is the attention of both sides.
    """
    attention = attn_implementation or "sdpa"
    if pretrained_seq2seq:
        given = dataclasses.asdict(pretrained_usage) if pretrained_usage is not None else {}
        # plain values: checkpoints load weights_only
        usage = {k: v for k, v in given.items() if v is not None}
        return ModelSpec.of_saved_model(pretrained_seq2seq, attn_implementation=attention, **usage)
    decoder_only = encoder.name == "none"
    for side, c in (("encoder", encoder), ("decoder", decoder)):
        if c.pretrained and not c.checkpoint and not (side == "encoder" and decoder_only):
            raise UserError(
                f"a pretrained {side} needs a checkpoint. Fix: set {side}.checkpoint=<hub id or DIR>."
            )
    fallback = encoder.checkpoint or decoder.checkpoint or fallback_checkpoint
    return ModelSpec(
        encoder=None if decoder_only else encoder.checkpoint or fallback,
        decoder=decoder.checkpoint or fallback,
        encoder_weights="pretrained" if encoder.pretrained and not decoder_only else "random",
        decoder_weights="pretrained" if decoder.pretrained else "random",
        sharing="none" if decoder_only else sharing.mode,
        encoder_max_positions=encoder.max_positions,
        decoder_max_positions=decoder.max_positions,
        attn_implementation=attention,
    )
