"""Build warm-started encoder-decoder models (plain transformers: no Lightning, no Hydra).

`build(spec, source)` is the one entry: from the spec's checkpoints (training), from a saved architecture with
random weights (loading a run checkpoint, offline) or on the meta device (parameter budgets): `BuildFrom`.

Every route from a spec to a model (two checkpoints, a saved seq2seq model, a saved architecture) shares the
private helpers here (configs, positions, budgets); the special tokens are their own module (special_tokens.py).
"""

from __future__ import annotations

import contextlib
import inspect
import logging
from dataclasses import asdict, dataclass
from enum import Enum
from pathlib import Path

import torch
from transformers import (
    CONFIG_MAPPING,
    AutoModel,
    AutoModelForCausalLM,
    BertConfig,
    EncoderDecoderModel,
)
from transformers.cache_utils import EncoderDecoderCache

from src.models.checkpoints import (
    ENCODER_TOKENIZER,
    is_local,
    load_config,
    load_tokenizer,
    load_weights,
    resolve_checkpoint,
)
from src.models.decoder_only import DecoderOnlySeq2Seq
from src.models.inference import share_source, slice_output_layer, source_shared_by_beams
from src.models.sharing import apply_sharing, is_cross_attention
from src.models.spec import ModelSpec, check_attention
from src.models.special_tokens import SPECIAL_KEYS, saved_special_ids, set_special_tokens
from src.system.errors import UserError

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
    # everything, with the spec, needed to rebuild the same architecture offline (BuildFrom.RANDOM)
    arch: dict


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


def set_attention(cfg, name: str) -> None:
    """Ask a config (and its sub-configs: an EncoderDecoderConfig's two sides) for attention `name`
    (`spec.ATTENTION`); the model built from it runs it in self-attention and, in a decoder, cross-attention.

    "auto" leaves transformers its own choice (sdpa where the family has it, else eager). The value is not saved
    with a config (transformers drops it from config.json and `to_dict`), so every build sets it again.
    """
    cfg._attn_implementation = None if name == "auto" else name


def attention_used(model) -> dict[str, str | None]:
    """The attention implementation each side of a built model runs: the `_attn_implementation` of the configs its
    modules hold (attention layers keep the config they were built with). A side whose modules disagree shows every
    value, comma-separated; a decoder-only model has no encoder (None)."""

    def side(module) -> str | None:
        if module is None:
            return None
        configs = [getattr(m, "config", None) for m in module.modules()]
        return ",".join(
            sorted({str(c._attn_implementation) for c in configs if hasattr(c, "_attn_implementation")})
        )

    return {"encoder": side(model.encoder), "decoder": side(model.decoder)}


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


class WarmStartedEncoderDecoder(EncoderDecoderModel):
    """An EncoderDecoderModel whose beam search reorders only the self-attention cache.

    After each step beam search gathers the cache rows of the beams it keeps. Cross-attention keys and values are
    the encoder's, identical for every beam of an example, and beams never move between examples, so gathering
    them changes nothing: it only copies rows x source length x hidden floats per layer per step (for
    CNN/DailyMail, 16 examples x 4 beams x 512 x 384, 50 MB a layer a step). Outputs stay identical. With an sdpa
    decoder the beams then share one copy (`src.models.inference.source_shared_by_beams`).
    """

    # during a beam search whose beams share their source (src.models.inference)
    shared_beams: int | None = None

    def generate(self, *args, **kwargs):
        config = kwargs.get("generation_config") or self.generation_config
        beams = kwargs.get("num_beams") or getattr(config, "num_beams", None) or 1
        with source_shared_by_beams(self, beams):
            return super().generate(*args, **kwargs)

    def _reorder_cache(self, cache, beam_idx: torch.Tensor):  # generate() calls it when a model has one
        if isinstance(cache, EncoderDecoderCache):
            cache.self_attention_cache.reorder_cache(beam_idx)
            if self.shared_beams:
                share_source(cache.cross_attention_cache, self.shared_beams)
        else:
            cache.reorder_cache(beam_idx)
        return cache


def _assemble(spec: ModelSpec, enc_cfg, dec_cfg, same_vocab: bool, load: bool):
    """The model from role-ready configs; returns (model, budget, note).

    Args:
        load: pretrained sides load their checkpoint's weights; False: every weight random (to be replaced by a
            state dict, or on the meta device), the budget then counts a pretrained side as from checkpoint
            except cross-attention.
    """
    sources = [
        c if p and load else None for c, p in zip((spec.encoder, spec.decoder), spec.pretrained, strict=True)
    ]
    decoder, dec_random = _side(
        AutoModelForCausalLM, dec_cfg, sources[1], "decoder", spec.decoder_max_positions
    )
    if spec.decoder_only:
        model = DecoderOnlySeq2Seq(decoder, 0)
        random = dec_random if load else set() if spec.pretrained[1] else dec_random
        ids = {id(p) for n, p in decoder.named_parameters(remove_duplicate=False) if n not in random}
        return model, param_budget(model, ids), "decoder-only (the source is a prefix)"
    encoder, enc_random = _side(
        AutoModel, enc_cfg, sources[0], "encoder", spec.encoder_max_positions, **_encoder_kwargs(enc_cfg)
    )
    model = WarmStartedEncoderDecoder(encoder=encoder, decoder=decoder)
    names = [n for n, _ in model.named_parameters(remove_duplicate=False)]
    if load:
        random = {f"encoder.{n}" for n in enc_random} | {f"decoder.{n}" for n in dec_random}
        random |= {n for n in names if n.startswith("enc_to_dec_proj.")}
    else:
        random = {n for n in names if is_cross_attention(n) or not spec.pretrained[n.startswith("decoder.")]}
    pretrained_ids = {id(p) for n, p in model.named_parameters(remove_duplicate=False) if n not in random}
    # The shared tensor keeps the pretrained side's values (bert2rnd: BERT's embeddings; rnd2bert: also BERT's).
    keep = "decoder" if spec.pretrained[1] and not spec.pretrained[0] else "encoder"
    note = apply_sharing(model, spec.sharing, same_vocab, keep=keep)
    return model, param_budget(model, pretrained_ids), note


def same_vocabulary(tok_a, tok_b) -> bool:
    return tok_a is tok_b or (len(tok_a) == len(tok_b) and tok_a.get_vocab() == tok_b.get_vocab())


def architecture(spec: ModelSpec, enc_cfg, dec_cfg, same_vocab: bool, encoder_tokenizer=None) -> dict:
    """A model's architecture as data: each side's config set up for its role, and whether vocabularies match.

    `enc_cfg` / `dec_cfg` are the checkpoints' own configs (or conf/arch facts); a saved model's `arch` (what
    `build(..., "random")` takes) is this with the built model's final configs.
    """
    if spec.decoder_only:
        if dec_cfg.model_type not in DECODER_ONLY_TYPES:
            raise UserError(
                f"encoder=none needs a causal language model as decoder, got {dec_cfg.model_type}. Fix: decoder=gpt2."
            )
        return {"encoder": None, "decoder": decoder_only_config(dec_cfg).to_dict(), "same_vocab": True}
    enc = encoder_config(enc_cfg, encoder_tokenizer, pretrained=spec.pretrained[0])
    return {"encoder": enc.to_dict(), "decoder": decoder_config(dec_cfg).to_dict(), "same_vocab": same_vocab}


def describe(spec: ModelSpec) -> tuple[dict, tuple]:
    """The architecture and the (encoder, decoder) tokenizers from the spec's checkpoints, without weights."""
    if spec.decoder_only:
        tok = load_tokenizer(spec.decoder, "decoder")
        return architecture(spec, None, load_config(spec.decoder, "decoder"), True), (tok, tok)
    enc_tok = load_tokenizer(spec.encoder, "encoder")
    dec_tok = enc_tok if spec.decoder == spec.encoder else load_tokenizer(spec.decoder, "decoder")
    arch = architecture(
        spec,
        load_config(spec.encoder, "encoder"),
        load_config(spec.decoder, "decoder"),
        same_vocabulary(enc_tok, dec_tok),
        enc_tok,
    )
    return arch, (enc_tok, dec_tok)


def config_from_dict(d: dict):
    d = dict(d)
    return CONFIG_MAPPING[d.pop("model_type")].from_dict(d)


def load_saved(spec: ModelSpec):
    """A whole saved model (`spec.seq2seq`): returns (model, budget, note, arch, (encoder, decoder) tokenizers).

    The encoder's pooler, unused by generation, is dropped (the project's models have none), so a checkpoint of a
    run started from it rebuilds offline like any other. A model saved with `tie_encoder_decoder` (the paper's
    roberta2roberta ones) has one parameter set for encoder and decoder (`spec.sharing` "shared"), whichever
    side's tensors the file holds. Weights the file lacks, and a tokenizer with more ids than the embedding
    table, are refused.
    """
    name, kwargs = spec.seq2seq, spec.tokenizer_kwargs or {}
    tok = load_tokenizer(name, "pretrained_seq2seq", **kwargs)
    resolved = resolve_checkpoint(name)
    enc_dir = Path(resolved) / ENCODER_TOKENIZER
    enc_tok = (
        load_tokenizer(str(enc_dir), "encoder", **kwargs) if is_local(resolved) and enc_dir.is_dir() else tok
    )
    cfg = load_config(name, "pretrained_seq2seq")
    set_attention(cfg, spec.attn_implementation)
    if spec.decoder_only:
        if cfg.model_type not in DECODER_ONLY_TYPES:
            raise UserError(
                f"pretrained_seq2seq={name} is a {cfg.model_type}, neither an encoder-decoder nor GPT-2."
            )
        decoder, random = load_weights(AutoModelForCausalLM, name, "pretrained_seq2seq", cfg)
        model = DecoderOnlySeq2Seq(decoder, 0)
        random = {f"decoder.{n}" for n in random}
    else:
        model, random = load_weights(WarmStartedEncoderDecoder, name, "pretrained_seq2seq", cfg)
        if getattr(model.encoder, "pooler", None) is not None:
            model.encoder.pooler = None
        random = {n for n in random if not n.startswith("encoder.pooler.")}
        if spec.sharing == "shared":  # the file may hold one side's tensors only: those are the shared set
            keep = "decoder" if any(n.startswith("encoder.") for n in random) else "encoder"
            apply_sharing(model, "shared", True, keep=keep)
            random = _still_missing(model, random)
    if random:
        raise UserError(
            f"pretrained_seq2seq={name} lacks {len(random)} weight tensors, which would start random "
            f"(e.g. {', '.join(sorted(random)[:3])}). Fix: a complete checkpoint (config.json and all weights), "
            "or start from encoder=/decoder= checkpoints to train new parts."
        )
    check_vocabulary(name, model, enc_tok, tok)
    named = list(model.named_parameters(remove_duplicate=False))
    budget = param_budget(model, {id(p) for n, p in named if n not in random})
    shared = (
        0
        if spec.decoder_only
        else len(
            {id(p) for _, p in model.encoder.named_parameters()}
            & {id(p) for _, p in model.decoder.named_parameters()}
        )
    )
    note = f"loaded whole from {name}" + (
        f"; {shared} tensors shared by encoder and decoder (tie_encoder_decoder)" if shared else ""
    )
    same_vocab = same_vocabulary(enc_tok, tok)
    arch = {
        "encoder": None if spec.decoder_only else model.encoder.config.to_dict(),
        "same_vocab": same_vocab,
    }
    return model, budget, note, arch, (enc_tok, tok)


def _still_missing(model, missing: set[str]) -> set[str]:
    """The missing names whose tensor is not shared with a loaded one (after sharing, loaded values are kept)."""
    params = dict(model.named_parameters(remove_duplicate=False))
    loaded = {id(p) for n, p in params.items() if n not in missing}
    return {n for n in missing if n in params and id(params[n]) not in loaded}


def check_vocabulary(name: str, model, *tokenizers) -> None:
    """Refuse (encoder, decoder) tokenizers with ids beyond their side's embedding table (an IndexError later)."""
    encoder = getattr(model, "encoder", None)
    sides = [(tokenizers[0], (encoder or model.decoder).get_input_embeddings().num_embeddings)]
    sides.append((tokenizers[1], model.decoder.get_input_embeddings().num_embeddings))
    for tok, rows in sides:
        beyond = sorted(i for i in tok.get_vocab().values() if i >= rows)
        if beyond:
            tokens = tok.convert_ids_to_tokens(beyond[:3])
            raise UserError(
                f"pretrained_seq2seq={name}: its tokenizer has {len(tok)} ids but the model's embedding table "
                f"{rows} rows; ids {beyond[:3]} ({', '.join(map(str, tokens))}) would crash. Fix: the "
                "tokenizer the model was trained with, with its model card's tokens, e.g. "
                'pretrained_usage.tokenizer_kwargs=\'{pad_token:"<pad>",eos_token:"</s>",bos_token:"<s>"}\'.'
            )


class BuildFrom(str, Enum):
    """Where `build` takes a model from."""

    # the spec's checkpoints: configs, tokenizers, pretrained sides' weights (training)
    CHECKPOINTS = "checkpoints"
    RANDOM = "random"  # a saved architecture (`Seq2Seq.arch`) with random weights, for a state dict; offline
    META = "meta"  # a saved architecture on the meta device: nothing allocated (parameter budgets)


def build(
    spec: ModelSpec, source: BuildFrom = BuildFrom.CHECKPOINTS, *, arch: dict | None = None, tokenizers=None
) -> Seq2Seq:
    """Build the model a spec describes: the one builder.

    Args:
        source: `BuildFrom.CHECKPOINTS` (configs and tokenizers from the spec's checkpoints, pretrained sides with
            their weights: training starts here), `BuildFrom.RANDOM` (the architecture `arch` with random weights,
            to load a state dict into; nothing is downloaded) or `BuildFrom.META` (`arch` on the meta device:
            nothing allocated, for the parameter budget).
        arch: the architecture for RANDOM and META (`Seq2Seq.arch`, or `architecture()` of conf/arch facts).
        tokenizers: (encoder, decoder) tokenizers for RANDOM / META; the decoder's sets the special tokens.

    Encoder, decoder and cross-attention run `spec.attn_implementation` (refused where this machine cannot run
    it); META keeps transformers' default, as nothing runs there.
    """
    source = BuildFrom(source)
    if source is not BuildFrom.META:
        check_attention(spec.attn_implementation)
    if source is BuildFrom.CHECKPOINTS and spec.seq2seq:
        model, budget, note, arch, tokenizers = load_saved(spec)
    else:
        if source is BuildFrom.CHECKPOINTS:
            arch, tokenizers = describe(spec)
        elif arch is None:
            raise ValueError(f"build from {source.value} needs the architecture: arch=Seq2Seq.arch")
        enc_cfg = config_from_dict(arch["encoder"]) if arch.get("encoder") is not None else None
        dec_cfg = config_from_dict(arch["decoder"])
        if source is not BuildFrom.META:
            for c in (enc_cfg, dec_cfg):
                if c is not None:
                    set_attention(c, spec.attn_implementation)
        with torch.device("meta") if source is BuildFrom.META else contextlib.nullcontext():
            model, budget, note = _assemble(
                spec, enc_cfg, dec_cfg, arch["same_vocab"], load=source is BuildFrom.CHECKPOINTS
            )
    if source is not BuildFrom.CHECKPOINTS and "budget" in arch:
        budget = ParamBudget(**arch["budget"])  # the count of the model as it was loaded from its checkpoints
    if source is not BuildFrom.META:
        slice_output_layer(model)  # the same logits, faster on a CPU (src.models.inference)
    tokenizers = tokenizers or (None, None)
    if tokenizers[1] is not None:
        # a saved model keeps its own ids (and a checkpoint of a run started from it, through `arch`)
        own = arch.get("special_ids") or (
            saved_special_ids(model, tokenizers[1])
            if spec.seq2seq and source is BuildFrom.CHECKPOINTS
            else None
        )
        set_special_tokens(model, tokenizers[1], own)
    built = {
        "encoder": None if spec.decoder_only else model.encoder.config.to_dict(),
        "decoder": model.decoder.config.to_dict(),  # after limit_positions
        "same_vocab": arch["same_vocab"],
        "budget": budget.as_dict(),
    }
    if spec.seq2seq or arch.get("special_ids"):
        built["special_ids"] = {k: getattr(model.generation_config, k) for k in SPECIAL_KEYS}
    if source is BuildFrom.CHECKPOINTS:
        log.info("model: %s; %s", budget, note)
    return Seq2Seq(model, tokenizers[0], tokenizers[1], budget, built)
