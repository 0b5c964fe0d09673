"""The model's groups: `encoder=` and `decoder=` (one side each: a checkpoint family, or a random or absent side)
and `sharing=` (which weights the two sides share), with the keys of a saved seq2seq model's use."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Optional  # noqa: UP035

from omegaconf import MISSING

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
