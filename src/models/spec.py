"""What model to build, described once: every consumer (training, evaluation, budgets) reads a `ModelSpec`."""

from __future__ import annotations

from dataclasses import asdict, dataclass

from src.errors import UserError

WEIGHTS = ("pretrained", "random")


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
    """

    encoder: str | None
    decoder: str
    encoder_weights: str = "pretrained"
    decoder_weights: str = "pretrained"
    sharing: str = "embeddings"
    encoder_max_positions: int | None = None
    decoder_max_positions: int | None = None
    seq2seq: str | None = None

    def __post_init__(self):
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
    def from_config(cls, cfg) -> ModelSpec:
        """Resolve the `encoder=` / `decoder=` / `sharing=` groups (and `checkpoints`) into one spec.

        A random side that names no checkpoint takes the other side's architecture and vocabulary, else
        `checkpoints.bert`'s (the paper's rnd2rnd); a pretrained side without a checkpoint is refused.
        """
        if cfg.get("pretrained_seq2seq"):
            return cls.of_saved_model(cfg.pretrained_seq2seq)
        enc, dec = cfg.encoder, cfg.decoder
        decoder_only = enc.name == "none"
        for side, c in (("encoder", enc), ("decoder", dec)):
            if c.pretrained and not c.checkpoint and not (side == "encoder" and decoder_only):
                raise UserError(
                    f"a pretrained {side} needs a checkpoint. Fix: set {side}.checkpoint=<hub id or DIR>."
                )
        fallback = enc.checkpoint or dec.checkpoint or cfg.checkpoints.bert
        return cls(
            encoder=None if decoder_only else enc.checkpoint or fallback,
            decoder=dec.checkpoint or fallback,
            encoder_weights="pretrained" if enc.pretrained and not decoder_only else "random",
            decoder_weights="pretrained" if dec.pretrained else "random",
            sharing="none" if decoder_only else cfg.sharing.mode,
            encoder_max_positions=enc.get("max_positions"),
            decoder_max_positions=dec.get("max_positions"),
        )

    @classmethod
    def of_saved_model(cls, name: str) -> ModelSpec:
        """A whole saved model: an EncoderDecoderModel, or a GPT-2 LM (the decoder-only layout)."""
        from src.models.checkpoints import load_config

        decoder_only = load_config(name, "pretrained_seq2seq").model_type != "encoder-decoder"
        return cls(encoder=None if decoder_only else name, decoder=name, sharing="none", seq2seq=name)
