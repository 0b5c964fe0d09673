"""Model assembly: every encoder x decoder pairing, special tokens, sharing, parameter budgets."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

from src.data.datamodule import Collator
from src.data.tokenized import Tokenization, TokenizedSplit
from src.models.builder import build
from src.models.checkpoints import load_config
from src.models.optim import build_optimizer
from src.models.sharing import is_cross_attention
from src.models.spec import ModelSpec
from src.system.errors import UserError
from tests.helpers.commands import REPO

ENCODERS = ("rnd", "bert", "roberta", "minilm")
DECODERS = ("rnd", "bert", "roberta", "gpt2", "minilm")
ROWS = [
    ("the violin and then the tiger .", "instrument then animal"),
    ("anna wrote about the apple and later about the bus", "fruit then vehicle"),
]


def side(tiny: dict, name: str, other: str) -> tuple[str, str]:
    """(checkpoint, weights) for an `encoder=`/`decoder=` option, with tiny checkpoints for hub ids."""
    if name == "rnd":  # architecture of the other side; rnd2rnd: BERT's, as the configs default to
        return (tiny["bert"] if other == "rnd" else tiny[other]), "random"
    return tiny[name], "pretrained"


def batch_for(built, rows=ROWS) -> dict:
    ids = built.model.generation_config
    tokenization = Tokenization(built.encoder_tokenizer, built.decoder_tokenizer, 32, 12, ids.eos_token_id)
    split = TokenizedSplit.in_memory([s for s, _ in rows], [t for _, t in rows], tokenization)
    return Collator(
        split, built.encoder_tokenizer.pad_token_id, ids.pad_token_id, ids.decoder_start_token_id
    )(list(range(len(rows))))


def loss_of(model, batch) -> torch.Tensor:
    logits = model(
        input_ids=batch["input_ids"],
        attention_mask=batch["attention_mask"],
        decoder_input_ids=batch["decoder_input_ids"],
        decoder_attention_mask=batch["decoder_attention_mask"],
    ).logits
    return torch.nn.functional.cross_entropy(
        logits.flatten(0, 1), batch["labels"].flatten(), ignore_index=-100
    )


@pytest.mark.parametrize("decoder", DECODERS)
@pytest.mark.parametrize("encoder", ENCODERS)
def test_every_pairing_builds_trains_and_generates(tiny, encoder, decoder):
    enc_ckpt, enc_pre = side(tiny, encoder, decoder)
    dec_ckpt, dec_pre = side(tiny, decoder, encoder)
    torch.manual_seed(0)
    built = build(
        ModelSpec(enc_ckpt, dec_ckpt, encoder_weights=enc_pre, decoder_weights=dec_pre, sharing="embeddings")
    )
    model = built.model.train()
    batch = batch_for(built)
    opt, sched = build_optimizer(
        model,
        name="adamw_linear",
        lr=1e-3,
        warmup_steps=1,
        total_steps=10,
        hidden_size=model.config.decoder.hidden_size,
    )
    first = loss_of(model, batch)
    first.backward()
    opt.step()
    sched.step()
    assert torch.isfinite(first)
    assert model.decoder.get_output_embeddings().weight.grad is not None

    model.eval()
    out = model.generate(
        input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], num_beams=2, max_new_tokens=5
    )
    assert out.shape[0] == 2 and 1 < out.shape[1] <= 6
    assert int(out.max()) < model.config.decoder.vocab_size
    assert (out[:, 0] == model.generation_config.decoder_start_token_id).all()
    # The random side really is random: budgets say so
    b = built.budget
    assert b.total == b.from_checkpoint + b.random
    if enc_pre == dec_pre == "random":
        assert b.from_checkpoint == 0
    if enc_pre == dec_pre == "pretrained":
        assert b.random < b.from_checkpoint


def test_special_tokens_per_decoder_family(tiny):
    bert = build(ModelSpec(tiny["bert"], tiny["bert"]))
    tok = bert.decoder_tokenizer
    for cfg in (bert.model.config, bert.model.generation_config):
        assert (cfg.decoder_start_token_id, cfg.eos_token_id, cfg.pad_token_id) == (
            tok.cls_token_id,
            tok.sep_token_id,
            tok.pad_token_id,
        )
    roberta = build(ModelSpec(tiny["roberta"], tiny["roberta"]))
    tok = roberta.decoder_tokenizer
    assert roberta.model.generation_config.decoder_start_token_id == tok.bos_token_id == tok.cls_token_id
    assert roberta.model.generation_config.eos_token_id == tok.eos_token_id
    gpt = build(ModelSpec(tiny["bert"], tiny["gpt2"]))
    tok = gpt.decoder_tokenizer
    eos = tok.convert_tokens_to_ids("<|endoftext|>")
    g = gpt.model.generation_config
    assert g.decoder_start_token_id == g.eos_token_id == g.pad_token_id == eos


def test_gpt2_targets_end_with_eos_and_padding_is_masked_by_length(tiny):
    built = build(ModelSpec(tiny["bert"], tiny["gpt2"]))
    batch = batch_for(built)
    eos = built.model.generation_config.eos_token_id
    for b in range(2):
        n = int((batch["labels"][b] != -100).sum())
        assert batch["labels"][b, n - 1] == eos  # the model must learn to stop
        assert (batch["labels"][b, n:] == -100).all()
        # the start token equals the pad id, yet it is attended to: the mask comes from lengths
        assert batch["decoder_input_ids"][b, 0] == eos and batch["decoder_attention_mask"][b, 0] == 1
        assert batch["decoder_attention_mask"][b].sum() == n
        # teacher forcing: decoder inputs are the labels shifted right, not the labels
        assert torch.equal(batch["decoder_input_ids"][b, 1:n], batch["labels"][b, : n - 1])


def test_trained_gpt2_decoder_stops_before_max_length(tiny):
    torch.manual_seed(0)
    built = build(ModelSpec(tiny["bert"], tiny["gpt2"]))
    model = built.model.train()
    rows = [
        (f"the {w} and then the {v} .", f"{w} then {v}")
        for w, v in [("violin", "tiger"), ("apple", "bus"), ("piano", "cat"), ("dog", "car")]
    ]
    batch = batch_for(built, rows)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    for _ in range(150):
        opt.zero_grad()
        loss_of(model, batch).backward()
        opt.step()
    model.eval()
    out = model.generate(
        input_ids=batch["input_ids"],
        attention_mask=batch["attention_mask"],
        num_beams=1,
        do_sample=False,
        max_new_tokens=30,
    )
    eos = model.generation_config.eos_token_id
    assert out.shape[1] < 31, "generation ran to max length: the decoder never learned to emit EOS"
    for row in out:
        assert (row[1:] == eos).any()
    texts = [t.strip() for t in built.decoder_tokenizer.batch_decode(out, skip_special_tokens=True)]
    assert texts == [t for _, t in rows]


def test_shared_shares_every_weight_but_cross_attention(tiny):
    none = build(ModelSpec(tiny["bert"], tiny["bert"], sharing="none"))
    shared = build(ModelSpec(tiny["bert"], tiny["bert"], sharing="shared"))
    enc, dec = shared.model.encoder, shared.model.decoder
    assert (
        enc.encoder.layer[1].attention.self.query.weight
        is dec.bert.encoder.layer[1].attention.self.query.weight
    )
    assert enc.encoder.layer[0].output.dense.bias is dec.bert.encoder.layer[0].output.dense.bias
    assert enc.embeddings.word_embeddings.weight is dec.get_output_embeddings().weight
    cross = dec.bert.encoder.layer[0].crossattention.self.query.weight  # new, and the decoder's own (Table 1)
    assert all(cross is not p for p in enc.parameters())
    enc_ids = {id(p) for p in enc.parameters()}
    cross = [p for n, p in dec.named_parameters() if "crossattention" in n]
    assert cross and not any(id(p) in enc_ids for p in cross)
    # the decoder's self-attention stays causal although its weights are the encoder's
    assert (
        dec.bert.encoder.layer[0].attention.self.is_causal
        and not enc.encoder.layer[0].attention.self.is_causal
    )
    # counts: the decoder adds only cross-attention and its LM head's transform and bias (the output matrix is
    # the shared embedding matrix, which named_parameters lists once, under bert.embeddings)
    dec_only = sum(
        p.numel() for n, p in dec.named_parameters() if "crossattention" in n or n.startswith("cls.")
    )
    enc_total = sum(p.numel() for p in enc.parameters())
    assert shared.budget.total == enc_total + dec_only
    assert shared.budget.total < none.budget.total


def test_embeddings_sharing_ties_three_roles_only_when_vocabularies_match(tiny):
    b2b = build(ModelSpec(tiny["bert"], tiny["bert"], sharing="embeddings")).model
    w = b2b.encoder.get_input_embeddings().weight
    assert w is b2b.decoder.get_input_embeddings().weight is b2b.decoder.get_output_embeddings().weight
    assert (
        b2b.encoder.encoder.layer[0].attention.self.query.weight
        is not b2b.decoder.bert.encoder.layer[0].attention.self.query.weight
    )
    b2g = build(ModelSpec(tiny["bert"], tiny["gpt2"], sharing="embeddings")).model
    assert b2g.encoder.get_input_embeddings().weight is not b2g.decoder.get_input_embeddings().weight
    assert b2g.decoder.get_input_embeddings().weight is b2g.decoder.get_output_embeddings().weight
    # rnd2gpt: the random encoder takes GPT-2's vocabulary and shares GPT-2's (pretrained) embedding matrix
    r2g = build(ModelSpec(tiny["gpt2"], tiny["gpt2"], encoder_weights="random", sharing="embeddings"))
    assert r2g.model.encoder.get_input_embeddings().weight is r2g.model.decoder.get_input_embeddings().weight
    assert r2g.model.config.encoder.model_type == "bert"
    assert r2g.budget.from_checkpoint == sum(
        p.numel() for n, p in r2g.model.decoder.named_parameters() if not is_cross_attention(n)
    )


def test_shared_refused_across_architectures(tiny):
    with pytest.raises(UserError, match=r"sharing=shared .* Fix: sharing=embeddings"):
        build(ModelSpec(tiny["bert"], tiny["gpt2"], sharing="shared"))
    with pytest.raises(UserError, match="architecture differs"):  # MiniLM is BERT, but wider and deeper
        build(ModelSpec(tiny["minilm"], tiny["bert"], sharing="shared"))


def test_gpt2_cannot_be_a_pretrained_encoder(tiny):
    with pytest.raises(UserError, match="cannot be a pretrained encoder"):
        build(ModelSpec(tiny["gpt2"], tiny["bert"]))


def test_offline_hub_id_fails_fast_with_a_fix(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(UserError) as err:
        load_config("bert-base-uncased", "encoder")
    msg = str(err.value)
    assert "'bert-base-uncased'" in msg and "encoder.checkpoint=DIR" in msg and "experiment=demo" in msg


def test_checkpoint_directory_without_weights_is_a_clear_error(tiny, tmp_path):
    import shutil

    broken = tmp_path / "no-weights"
    shutil.copytree(tiny["bert"], broken)
    for f in broken.glob("*.safetensors"):
        f.unlink()
    with pytest.raises(UserError, match="could not load its weights"):
        build(ModelSpec(str(broken), tiny["bert"]))


@pytest.mark.parametrize("decoder", ["bert", "roberta", "gpt2"])
def test_loss_on_labelled_positions_equals_full_logits_loss(tiny, decoder):
    """The module runs the LM head only where labels are: same loss, same gradients as full logits."""
    from src.models.module import Seq2SeqModule, lm_head

    torch.manual_seed(0)
    module = Seq2SeqModule(
        model={"encoder": tiny["bert"], "decoder": tiny[decoder], "sharing": "none"},
        optimizer={"name": "adamw_linear", "lr": 1e-3, "warmup_steps": 1},
        generation={"num_beams": 1, "max_new_tokens": 4},
    )
    module.model.eval()  # no dropout: both paths must see the same masks
    assert lm_head(module.model) is not None
    rows = [*ROWS, ("a much longer source sentence about the violin", "instrument")]  # padding on both sides
    batch = batch_for(module, rows)
    assert (batch["labels"] == -100).any() and (batch["attention_mask"] == 0).any()

    def grads(loss):
        module.zero_grad()
        loss.backward()
        return {n: p.grad.clone() for n, p in module.model.named_parameters() if p.grad is not None}

    fast = module.loss(batch)
    fast_grads = grads(fast)
    full = loss_of(module.model, batch)
    full_grads = grads(full)
    torch.testing.assert_close(fast, full, rtol=1e-5, atol=1e-6)
    assert fast_grads.keys() == full_grads.keys()
    for name, g in full_grads.items():
        torch.testing.assert_close(fast_grads[name], g, rtol=1e-4, atol=1e-6, msg=name)


@pytest.mark.parametrize("decoder", ["bert", "gpt2"])
def test_beam_search_skipping_the_cross_attention_reorder_gives_identical_outputs(tiny, decoder):
    """The project's beam search (cross-attention cache not gathered, one copy of it per example, the beams'
    queries side by side) against transformers' own on the same weights: the same tokens."""
    from transformers import EncoderDecoderModel

    from src.models.builder import WarmStartedEncoderDecoder, attention_used
    from src.models.module import Seq2SeqModule

    torch.manual_seed(0)
    module = Seq2SeqModule(
        model={"encoder": tiny["bert"], "decoder": tiny[decoder], "sharing": "none"},
        optimizer={"name": "adamw_linear", "lr": 1e-3, "warmup_steps": 1},
        generation={"num_beams": 4, "max_new_tokens": 8, "no_repeat_ngram_size": 2},
    )
    model = module.model.eval()
    rows = [*ROWS, ("a much longer source sentence about the violin and the tiger", "instrument")]
    batch = batch_for(module, rows)
    calls, shared = [], []

    def counted(cache, beam_idx):
        calls.append(beam_idx.numel())
        cache = WarmStartedEncoderDecoder._reorder_cache(model, cache, beam_idx)
        # the beams of an example share one copy of its keys and values from the first step on
        shared.append({layer.keys.shape[0] for layer in cache.cross_attention_cache.layers})
        return cache

    model._reorder_cache = counted
    fast = module._generate(batch)
    del model._reorder_cache
    assert attention_used(model)["decoder"] == "sdpa"  # beam search's attention ended with it
    model.__class__ = EncoderDecoderModel  # transformers' own reorder: self- and cross-attention caches
    full = module._generate(batch)
    assert calls and calls[0] == 4 * len(rows)  # the fast path ran, on every beam of every example
    assert shared and all(rows_kept == {len(rows)} for rows_kept in shared)
    assert torch.equal(fast, full)


FAULTS = """
import ctypes, resource
from src.system.hardware import keep_freed_host_memory
assert keep_freed_host_memory()
libc = ctypes.CDLL("libc.so.6")
libc.malloc.restype, libc.malloc.argtypes, libc.free.argtypes = ctypes.c_void_p, [ctypes.c_size_t], [ctypes.c_void_p]
SIZE = 64 * 2**20  # above glibc's largest mmap threshold: without the setting, a fresh mapping every time
def step():
    block = libc.malloc(SIZE)
    ctypes.memset(block, 1, SIZE)
    libc.free(block)
step()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(3):
    step()
print((resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) // 3)
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt")
def test_reuse_host_memory_keeps_freed_blocks_resident():
    """Without it each 64 MB block is mapped afresh and page-faulted again (16384 faults with 4 KB pages)."""
    out = subprocess.run([sys.executable, "-c", FAULTS], cwd=REPO, capture_output=True, text=True, check=True)
    assert int(out.stdout.split()[-1]) < 100  # the freed block came back resident
