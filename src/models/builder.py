"""Build warm-started encoder-decoder models from two checkpoints (plain transformers: no Lightning, no Hydra)."""

from __future__ import annotations

import inspect
import logging
from dataclasses import asdict, dataclass

import torch
from transformers import (
    CONFIG_MAPPING,
    AutoModel,
    AutoModelForCausalLM,
    BertConfig,
    EncoderDecoderModel,
)

from src.errors import UserError
from src.models.checkpoints import DEFAULT_RND_CHECKPOINT, load_config, load_tokenizer, load_weights
from src.models.decoder_only import DecoderOnlySeq2Seq
from src.models.sharing import apply_sharing, is_cross_attention

log = logging.getLogger(__name__)

#: Families that exist only as causal LMs: usable as a decoder, or as a random encoder's vocabulary source.
DECODER_ONLY_TYPES = ("gpt2",)


@dataclass(frozen=True)
class ParamBudget:
    """Parameter counts in the paper's terms (Table 1); shared tensors are counted once."""

    total: int
    embeddings: int
    from_checkpoint: int
    random: int

    def as_dict(self) -> dict[str, int]:
        return asdict(self)

    def __str__(self) -> str:
        m = {k: f"{v / 1e6:.1f}M" for k, v in self.as_dict().items()}
        return (
            f"{m['total']} parameters ({m['embeddings']} embeddings): "
            f"{m['from_checkpoint']} from checkpoints, {m['random']} random"
        )


@dataclass
class Seq2Seq:
    """A built model with its two tokenizers and what it is made of."""

    model: EncoderDecoderModel
    encoder_tokenizer: object
    decoder_tokenizer: object
    budget: ParamBudget
    arch: dict  # everything needed to rebuild the same architecture without downloads (see build_from_arch)
    sharing_note: str


def encoder_config(cfg, tokenizer=None, pretrained: bool = True):
    """The config of an encoder: bidirectional, no cross-attention.

    A decoder-only family (GPT-2) cannot be a pretrained encoder; as the source of a random encoder it gives
    its vocabulary and sizes to a BERT-architecture encoder, which is how the paper built rnd2gpt.
    """
    if cfg.model_type in DECODER_ONLY_TYPES:
        if pretrained:
            raise UserError(
                f"a {cfg.model_type} checkpoint cannot be a pretrained encoder (it is a causal LM). "
                "Fix: encoder=bert, encoder=roberta or encoder=minilm; or encoder=rnd for a random encoder "
                "with its vocabulary."
            )
        vocab_size = len(tokenizer) if tokenizer is not None else cfg.vocab_size
        pad = tokenizer.pad_token_id if tokenizer is not None else cfg.eos_token_id
        cfg = BertConfig(
            vocab_size=vocab_size,
            hidden_size=cfg.n_embd,
            num_hidden_layers=cfg.n_layer,
            num_attention_heads=cfg.n_head,
            intermediate_size=cfg.n_inner or 4 * cfg.n_embd,
            max_position_embeddings=min(cfg.n_positions, 512),
            pad_token_id=pad,
        )
    cfg.is_decoder = False
    cfg.add_cross_attention = False
    return cfg


def decoder_config(cfg):
    """The config of a decoder: causal self-attention plus (new) cross-attention."""
    cfg.is_decoder = True
    cfg.add_cross_attention = True
    return cfg


def decoder_only_config(cfg):
    """The config of a decoder-only LM (the `gpt` variant): causal self-attention, no cross-attention."""
    cfg.is_decoder = True
    cfg.add_cross_attention = False
    return cfg


def _encoder_kwargs(cfg) -> dict:
    # The pooler is unused by a seq2seq loss (and DDP would complain about it): drop it where the family can.
    model_cls = AutoModel._model_mapping[type(cfg)]
    return (
        {"add_pooling_layer": False} if "add_pooling_layer" in inspect.signature(model_cls).parameters else {}
    )


def usable_positions(cfg) -> int | None:
    """How many token positions a config's learned position embeddings cover (RoBERTa's start after pad + 1)."""
    if cfg.model_type == "gpt2":
        return cfg.n_positions
    n = getattr(cfg, "max_position_embeddings", None)
    if n is not None and cfg.model_type in ("roberta", "xlm-roberta", "camembert"):
        n -= cfg.pad_token_id + 1
    return n


def limit_positions(module, n: int | None, side: str) -> None:
    """Keep only the first `n` learned positions (the paper used GPT-2's first 512), in place.

    A model that already has `n` or fewer is left as it is; a family other than GPT-2 with more is refused.
    """
    cfg = module.config
    have = usable_positions(cfg)
    if n is None or have is None or have <= n:
        return
    if cfg.model_type != "gpt2":
        raise UserError(
            f"{side}.max_positions={n}: cutting {cfg.model_type}'s {have} positions is not supported (GPT-2 only). "
            f"Fix: {side}.max_positions=null, or a checkpoint with at most {n} positions."
        )
    wpe = module.base_model.wpe
    # the same module with its first n rows: a new module would count as uninitialised and be re-initialised
    # when the encoder-decoder model is put together
    wpe.weight = torch.nn.Parameter(wpe.weight.detach()[:n].clone(), requires_grad=wpe.weight.requires_grad)
    wpe.num_embeddings = n
    cfg.n_positions = n


def _side(model_cls, cfg, checkpoint: str | None, side: str, max_positions: int | None = None, **kwargs):
    """One side, with pretrained weights from `checkpoint` or random ones; returns (module, random names)."""
    if checkpoint is None:
        module = model_cls.from_config(cfg, **kwargs)
        random = {name for name, _ in module.named_parameters(remove_duplicate=False)}
    else:
        module, random = load_weights(model_cls, checkpoint, side, cfg, **kwargs)
    limit_positions(module, max_positions, side)
    return module, random


def param_budget(model: EncoderDecoderModel, pretrained_ids: set[int]) -> ParamBudget:
    """Count unique parameters: all, word-embedding matrices, from a checkpoint, random."""
    params = list(model.parameters())  # unique tensors
    encoder_embeddings = model.encoder.get_input_embeddings() if model.encoder is not None else None
    embedding_ids = {
        id(m.weight)
        for m in (
            encoder_embeddings,
            model.decoder.get_input_embeddings(),
            model.decoder.get_output_embeddings(),
        )
        if m is not None
    }
    total = sum(p.numel() for p in params)
    from_ckpt = sum(p.numel() for p in params if id(p) in pretrained_ids)
    embeddings = sum(p.numel() for p in params if id(p) in embedding_ids)
    return ParamBudget(
        total=total, embeddings=embeddings, from_checkpoint=from_ckpt, random=total - from_ckpt
    )


def assemble(
    enc_cfg,
    dec_cfg,
    *,
    encoder_weights: str | None,
    decoder_weights: str | None,
    sharing: str,
    same_vocab: bool,
    pretrained: tuple[bool, bool] | None = None,
    max_positions: tuple[int | None, int | None] = (None, None),
) -> tuple[EncoderDecoderModel, ParamBudget, str]:
    """Put an encoder and a decoder together, share weights and count parameters.

    Args:
        encoder_weights / decoder_weights: checkpoint to load each side's weights from, or None for random.
        pretrained: which sides count as "from checkpoint" when no weights are loaded (a parameter-budget
            estimate, e.g. on the meta device): everything of such a side but cross-attention.
        max_positions: (encoder, decoder) limits on learned positions (`limit_positions`); None: all.
    """
    encoder, enc_random = _side(
        AutoModel, enc_cfg, encoder_weights, "encoder", max_positions[0], **_encoder_kwargs(enc_cfg)
    )
    decoder, dec_random = _side(AutoModelForCausalLM, dec_cfg, decoder_weights, "decoder", max_positions[1])
    model = EncoderDecoderModel(encoder=encoder, decoder=decoder)

    names = [n for n, _ in model.named_parameters(remove_duplicate=False)]
    if pretrained is None:
        random = {f"encoder.{n}" for n in enc_random} | {f"decoder.{n}" for n in dec_random}
        random |= {n for n in names if n.startswith("enc_to_dec_proj.")}
        pretrained = (encoder_weights is not None, decoder_weights is not None)
    else:
        random = {n for n in names if is_cross_attention(n) or not pretrained[n.startswith("decoder.")]}
    pretrained_ids = {id(p) for n, p in model.named_parameters(remove_duplicate=False) if n not in random}

    # The shared tensor keeps the pretrained side's values (bert2rnd: BERT's embeddings; rnd2bert: also BERT's).
    keep = "decoder" if pretrained[1] and not pretrained[0] else "encoder"
    note = apply_sharing(model, sharing, same_vocab, keep=keep)
    return model, param_budget(model, pretrained_ids), note


def set_special_tokens(model: EncoderDecoderModel, decoder_tokenizer) -> dict[str, int]:
    """Decoder start, EOS and pad for the decoder's family, on both model.config and generation_config.

    BERT/RoBERTa: start [CLS]/<s>, eos [SEP]/</s>, pad [PAD]/<pad>. GPT-2: start = eos = pad = <|endoftext|>
    (it has no pad token); targets are given an explicit EOS and padding is masked by length, not by id.
    """
    tok = decoder_tokenizer
    ids = {
        "decoder_start_token_id": tok.cls_token_id if tok.cls_token_id is not None else tok.bos_token_id,
        "eos_token_id": tok.sep_token_id if tok.sep_token_id is not None else tok.eos_token_id,
        "pad_token_id": tok.pad_token_id,
    }
    if None in ids.values():
        raise UserError(f"decoder tokenizer {type(tok).__name__} lacks a special token: {ids}")
    for cfg in (model.config, model.generation_config):
        for key, value in ids.items():
            setattr(cfg, key, value)
    if isinstance(model, EncoderDecoderModel):
        model.config.vocab_size = model.config.decoder.vocab_size
    else:  # decoder-only: the start token separates source from target
        model.decoder_start_token_id = ids["decoder_start_token_id"]
    return ids


def same_vocabulary(tok_a, tok_b) -> bool:
    return tok_a is tok_b or (len(tok_a) == len(tok_b) and tok_a.get_vocab() == tok_b.get_vocab())


def build_seq2seq(
    encoder_checkpoint: str | None,
    decoder_checkpoint: str | None,
    *,
    encoder_pretrained: bool = True,
    decoder_pretrained: bool = True,
    sharing: str = "embeddings",
    decoder_only: bool = False,
    encoder_max_positions: int | None = None,
    decoder_max_positions: int | None = None,
) -> Seq2Seq:
    """Warm-start an encoder-decoder model from two checkpoints.

    Args:
        encoder_checkpoint / decoder_checkpoint: hub id, local directory or `pkg://package/dir`. For a random
            side (`*_pretrained=False`) it names only the architecture and tokenizer; None means the other
            side's checkpoint, else BERT's.
        sharing: "none", "embeddings" (one embedding matrix where vocabularies match) or "shared" (every
            encoder weight shared with the decoder except cross-attention).
        decoder_only: no encoder; the decoder (GPT-2) reads the source as a prefix (the paper's `gpt`).
        encoder_max_positions / decoder_max_positions: use only the first N learned positions of that side
            (the paper: GPT-2's first 512); None: all the checkpoint's.
    """
    if decoder_only:
        return build_decoder_only(
            decoder_checkpoint, pretrained=decoder_pretrained, max_positions=decoder_max_positions
        )
    if encoder_pretrained and encoder_checkpoint is None or decoder_pretrained and decoder_checkpoint is None:
        raise UserError(
            "a pretrained side needs a checkpoint. Fix: set encoder.checkpoint / decoder.checkpoint."
        )
    enc_src = encoder_checkpoint or decoder_checkpoint or DEFAULT_RND_CHECKPOINT
    dec_src = decoder_checkpoint or encoder_checkpoint or DEFAULT_RND_CHECKPOINT
    enc_tok = load_tokenizer(enc_src, "encoder")
    dec_tok = enc_tok if dec_src == enc_src else load_tokenizer(dec_src, "decoder")
    enc_cfg = encoder_config(load_config(enc_src, "encoder"), enc_tok, encoder_pretrained)
    dec_cfg = decoder_config(load_config(dec_src, "decoder"))
    same_vocab = same_vocabulary(enc_tok, dec_tok)

    model, budget, note = assemble(
        enc_cfg,
        dec_cfg,
        encoder_weights=enc_src if encoder_pretrained else None,
        decoder_weights=dec_src if decoder_pretrained else None,
        sharing=sharing,
        same_vocab=same_vocab,
        max_positions=(encoder_max_positions, decoder_max_positions),
    )
    set_special_tokens(model, dec_tok)
    arch = {
        "encoder": model.config.encoder.to_dict(),
        "decoder": model.config.decoder.to_dict(),
        "sharing": sharing,
        "same_vocab": same_vocab,
        "pretrained": [encoder_pretrained, decoder_pretrained],
        "budget": budget.as_dict(),
    }
    log.info("model: %s; %s", budget, note)
    return Seq2Seq(model, enc_tok, dec_tok, budget, arch, note)


def assemble_decoder_only(
    dec_cfg, decoder_weights: str | None, start_id: int = 0, max_positions: int | None = None
):
    """A causal LM wrapped to take seq2seq batches; returns (model, budget)."""
    decoder, random = _side(AutoModelForCausalLM, dec_cfg, decoder_weights, "decoder", max_positions)
    model = DecoderOnlySeq2Seq(decoder, start_id)
    pretrained_ids = {id(p) for n, p in decoder.named_parameters(remove_duplicate=False) if n not in random}
    return model, param_budget(model, pretrained_ids)


def build_decoder_only(
    checkpoint: str | None, pretrained: bool = True, max_positions: int | None = None
) -> Seq2Seq:
    """The paper's `gpt`: source and target through one language model, one tokenizer."""
    if checkpoint is None:
        raise UserError(
            "variant gpt needs a decoder checkpoint. Fix: decoder=gpt2 (or decoder.checkpoint=DIR)."
        )
    tok = load_tokenizer(checkpoint, "decoder")
    cfg = load_config(checkpoint, "decoder")
    if cfg.model_type not in DECODER_ONLY_TYPES:
        raise UserError(
            f"encoder=none needs a causal language model as decoder, got {cfg.model_type}. Fix: decoder=gpt2."
        )
    model, budget = assemble_decoder_only(
        decoder_only_config(cfg), checkpoint if pretrained else None, max_positions=max_positions
    )
    set_special_tokens(model, tok)
    arch = {
        "decoder_only": True,
        "decoder": model.decoder.config.to_dict(),
        "sharing": "none",
        "same_vocab": True,
        "pretrained": [False, pretrained],
        "budget": budget.as_dict(),
    }
    log.info("model: %s; decoder-only (the source is a prefix)", budget)
    return Seq2Seq(model, tok, tok, budget, arch, "decoder-only")


def config_from_dict(d: dict):
    d = dict(d)
    return CONFIG_MAPPING[d.pop("model_type")].from_dict(d)


def build_from_arch(arch: dict, encoder_tokenizer, decoder_tokenizer) -> Seq2Seq:
    """Rebuild a saved architecture (random weights, no download) with its sharing: load a state dict next."""
    if arch.get("decoder_only"):
        model, _ = assemble_decoder_only(config_from_dict(arch["decoder"]), None)
        set_special_tokens(model, decoder_tokenizer)
        return Seq2Seq(
            model, encoder_tokenizer, decoder_tokenizer, ParamBudget(**arch["budget"]), arch, "decoder-only"
        )
    enc_cfg, dec_cfg = config_from_dict(arch["encoder"]), config_from_dict(arch["decoder"])
    model, _, note = assemble(
        enc_cfg,
        dec_cfg,
        encoder_weights=None,
        decoder_weights=None,
        sharing=arch["sharing"],
        same_vocab=arch["same_vocab"],
        pretrained=tuple(arch["pretrained"]),
    )
    set_special_tokens(model, decoder_tokenizer)
    return Seq2Seq(model, encoder_tokenizer, decoder_tokenizer, ParamBudget(**arch["budget"]), arch, note)


def estimate_budget(
    enc_cfg, dec_cfg, *, pretrained: tuple[bool, bool], sharing: str, same_vocab: bool
) -> ParamBudget:
    """Parameter budget of an architecture without weights or downloads (built on the meta device).

    `enc_cfg=None` is the decoder-only layout (variant gpt): everything from the decoder's checkpoint.
    """
    if enc_cfg is None:
        with torch.device("meta"):
            decoder = AutoModelForCausalLM.from_config(decoder_only_config(dec_cfg))
            ids = {id(p) for p in decoder.parameters()} if pretrained[1] else set()
            return param_budget(DecoderOnlySeq2Seq(decoder, 0), ids)
    with torch.device("meta"):
        _, budget, _ = assemble(
            encoder_config(enc_cfg, pretrained=pretrained[0]),
            decoder_config(dec_cfg),
            encoder_weights=None,
            decoder_weights=None,
            sharing=sharing,
            same_vocab=same_vocab,
            pretrained=pretrained,
        )
    return budget
