"""What model to build, described once: every consumer (training, evaluation, budgets) reads a `ModelSpec`."""

from __future__ import annotations

import importlib.util
from dataclasses import asdict, dataclass

import torch

from src.models.checkpoints import load_config
from src.system.errors import UserError

WEIGHTS = ("pretrained", "random")
#: what `attn_implementation` may be: torch's scaled_dot_product_attention (the default), the plain
#: matmul-softmax-matmul of the original code, FlashAttention-2 (the flash_attn package, a CUDA GPU, fp16/bf16), or
#: transformers' own pick (sdpa where a family has it, else eager). In transformers 5 every family the project
#: builds has sdpa and flash_attention_2 (BertModel, RobertaModel, GPT2, BertGeneration, and EncoderDecoderModel,
#: whose cross-attention is the decoder's own attention class): `auto` means sdpa for all of them.
ATTENTION = ("sdpa", "eager", "flash_attention_2", "auto")
#: How the paper's released checkpoints are used, from their model cards, by the repository's name: the
#: google/bert2bert_L-24_wmt_* cards tokenize with add_special_tokens=False and name the pad / eos / bos tokens.
#: (google/roberta2roberta_L-24_*: BertGenerationTokenizer adds no special tokens; nothing to set.)
CARD_USAGE = {
    "bert2bert_L-24_wmt_": {
        "source_special_tokens": False,
        "tokenizer_kwargs": {"pad_token": "<pad>", "eos_token": "</s>", "bos_token": "<s>"},
    },
}


#: The paper's row of each released model (docs/export.md, "The paper's released checkpoints"); src.report puts an
#: evaluation of one beside that row's figures. The WMT table has no 24-layer row.
PAPER_ROW = {"roberta2roberta_L-24_": "robertashare 24L", "bert2bert_L-24_wmt_": "bert2bert 24L"}


def _repository(name: str) -> str:
    return name.rstrip("/").rsplit("/", 1)[-1]


def paper_row(name: str) -> str | None:
    """The paper's name for a released model (a Hub id or a directory named like the repository), else None."""
    return next((v for prefix, v in PAPER_ROW.items() if _repository(name).startswith(prefix)), None)


def card_usage(name: str) -> dict:
    """`CARD_USAGE` of a saved model (a Hub id or a directory named like the repository), else {}."""
    return next((dict(v) for prefix, v in CARD_USAGE.items() if _repository(name).startswith(prefix)), {})


def check_attention(name, cuda: bool | None = None, key: str = "attn_implementation") -> None:
    """Refuse an attention implementation this machine cannot run, with the fix (one UserError).

    Args:
        name: one of `ATTENTION`.
        cuda: whether the run has a CUDA device; None: whether torch sees one.
    """
    if name not in ATTENTION:
        raise UserError(
            f"{key}={name} is not valid: {key} is one of {', '.join(ATTENTION)}. Fix: {key}=sdpa (the default)."
        )
    if name != "flash_attention_2":
        return

    if importlib.util.find_spec("flash_attn") is None:
        raise UserError(
            f"{key}=flash_attention_2 needs the flash_attn package, which is not installed. Fix: "
            f"`pip install flash-attn --no-build-isolation` on a machine with a CUDA GPU, or {key}=sdpa (the default)."
        )
    if cuda is None:
        cuda = torch.cuda.is_available()
    if not cuda:
        raise UserError(
            f"{key}=flash_attention_2 runs on a CUDA GPU only, and this run has none. Fix: {key}=sdpa (the "
            "default), or run on a GPU (trainer=gpu)."
        )


@dataclass(frozen=True)
class ModelSpec:
    """An encoder-decoder (or decoder-only) model in the paper's terms.

    Args:
        encoder / decoder: checkpoint of each side (hub id, local directory or `pkg://package/dir`): its weights
            when that side is pretrained, else only its architecture and vocabulary. `encoder=None`: no encoder,
            the decoder reads the source as a prefix (the paper's `gpt`).
        encoder_weights / decoder_weights: "pretrained" (from the checkpoint) or "random".
        sharing: "none", "embeddings" or "shared" (`src.models.sharing`).
        encoder_max_positions / decoder_max_positions: use only the first N learned positions (None: all).
        seq2seq: a whole saved model to start from (a directory written by `python -m src.export`, or a Hub id of
            an EncoderDecoderModel such as the paper's released ones); `encoder` / `decoder` then name it too.
            Its `tie_encoder_decoder` makes `sharing` "shared".
        source_special_tokens: wrap sources in the encoder tokenizer's special tokens ([CLS] ... [SEP]); False
            as a model trained without them wants (google/bert2bert_L-24_wmt_*).
        tokenizer_kwargs: keyword arguments for loading a saved model's tokenizer (its model card's).
        attn_implementation: the attention of encoder, decoder and cross-attention (`ATTENTION`); it changes
            how attention is computed, not the weights.
    """

    encoder: str | None
    decoder: str
    encoder_weights: str = "pretrained"
    decoder_weights: str = "pretrained"
    sharing: str = "embeddings"
    encoder_max_positions: int | None = None
    decoder_max_positions: int | None = None
    seq2seq: str | None = None
    source_special_tokens: bool = True
    tokenizer_kwargs: dict | None = None
    attn_implementation: str = "sdpa"

    def __post_init__(self):
        if self.attn_implementation not in ATTENTION:
            check_attention(self.attn_implementation)  # the UserError naming the valid ones
        for side in ("encoder", "decoder"):
            if getattr(self, f"{side}_weights") not in WEIGHTS:
                raise UserError(
                    f"{side} weights must be one of {WEIGHTS}, got {getattr(self, f'{side}_weights')!r}"
                )
        if not self.decoder:
            raise UserError(
                "the model needs a decoder checkpoint. Fix: decoder=bert|gpt2|... or decoder.checkpoint=DIR."
            )

    @property
    def decoder_only(self) -> bool:
        return self.encoder is None

    @property
    def pretrained(self) -> tuple[bool, bool]:
        return self.encoder_weights == "pretrained", self.decoder_weights == "pretrained"

    def as_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def of_saved_model(cls, name: str, **usage) -> ModelSpec:
        """A whole saved model: an EncoderDecoderModel, or a GPT-2 LM (the decoder-only layout).

        Args:
            usage: `source_special_tokens` / `tokenizer_kwargs` (`pretrained_usage.*`); unset: what its export
                recorded, else its model card's (`CARD_USAGE`), else the tokenizer's own convention; and
                `attn_implementation`.
        """
        cfg = load_config(name, "pretrained_seq2seq")
        decoder_only = cfg.model_type != "encoder-decoder"
        saved = {}  # what an export of a run on bare sources recorded (src.models.export)
        if getattr(cfg, "warmstart_source_special_tokens", True) is False:
            saved["source_special_tokens"] = False
        tied = not decoder_only and bool(getattr(cfg, "tie_encoder_decoder", False))
        return cls(
            encoder=None if decoder_only else name,
            decoder=name,
            sharing="shared" if tied else "none",
            seq2seq=name,
            **{**card_usage(name), **saved, **usage},
        )
