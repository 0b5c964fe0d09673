"""The attention implementation (`attn_implementation`) and torch.compile (`trainer.compile`): on a CPU, in fp32,
the same loss, logits and gradients as the default path; what a run records; the one-line refusals.

FlashAttention-2 needs the flash_attn package and a CUDA GPU: only its refusals are tested here, not the kernel.

Tolerances, from measured differences (tiny random models of tests/helpers/checkpoints.py, fp32, 2-core x86 CPU):
- eager vs sdpa: largest |difference| of logits 1.2e-7 (bert2gpt2; bert2bert 7e-8, gpt 7e-8), of gradients 1.2e-7,
  of the loss 0 (encoder-decoder) and 4.8e-7 (gpt, loss 6.3: one float32 step). ATTENTION_ATOL = 1e-5 is 80x the
  largest, and 170x below the smallest real fault measured (sdpa without the source padding mask: 1.7e-3).
- compiled vs eager, one forward + backward: loss 0; gradients 0 to 3e-8 (aot_eager) and 9e-8 to 1.2e-7
  (inductor); over 3 AdamW steps at lr 1e-3 (inductor, bert2bert) the losses differ by at most 4.8e-7 (one
  float32 step at 5.8). COMPILE_ATOL = 1e-5, 20x that.
"""

from __future__ import annotations

import functools
import importlib.util
import json

import pytest
import torch
from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS

from src.config.schema import train_config
from src.data.datamodule import Collator
from src.data.tokenized import Tokenization, TokenizedSplit
from src.models.builder import BuildFrom, attention_used, build
from src.models.module import Seq2SeqModule
from src.models.optim import build_optimizer
from src.models.spec import ModelSpec
from src.system.errors import UserError
from tests.helpers.commands import check_train, compose_train, run_cli

ATTENTION_ATOL = 1e-5
COMPILE_ATOL = 1e-5
#: encoder, decoder (None: decoder-only, the source as a prefix)
PAIRS = {"bert2bert": ("bert", "bert"), "bert2gpt2": ("bert", "gpt2"), "gpt": (None, "gpt2")}
#: padding on both sides: the masks matter
ROWS = [
    ("the violin and then the tiger .", "instrument then animal"),
    ("anna wrote about the apple and later about the bus", "fruit then vehicle"),
    ("a much longer source sentence about the violin and the tiger", "instrument"),
]
FLASH_INSTALLED = importlib.util.find_spec("flash_attn") is not None


def batch_for(built) -> dict:
    ids = built.model.generation_config
    tokenization = Tokenization(built.encoder_tokenizer, built.decoder_tokenizer, 32, 12, ids.eos_token_id)
    split = TokenizedSplit.in_memory([s for s, _ in ROWS], [t for _, t in ROWS], tokenization)
    collate = Collator(
        split, built.encoder_tokenizer.pad_token_id, ids.pad_token_id, ids.decoder_start_token_id
    )
    return collate(list(range(len(ROWS))))


def spec(tiny, pair: str, **kwargs) -> ModelSpec:
    enc, dec = PAIRS[pair]
    return ModelSpec(tiny[enc] if enc else None, tiny[dec], sharing="embeddings" if enc else "none", **kwargs)


def logits_of(model, batch) -> torch.Tensor:
    return model(
        input_ids=batch["input_ids"],
        attention_mask=batch["attention_mask"],
        decoder_input_ids=batch["decoder_input_ids"],
        decoder_attention_mask=batch["decoder_attention_mask"],
        use_cache=False,
    ).logits


@pytest.fixture
def sdpa_calls():
    """The attention modules that called transformers' sdpa function, in order."""
    calls, real = [], ALL_ATTENTION_FUNCTIONS["sdpa"]

    def counted(module, *args, **kwargs):
        calls.append(type(module).__name__)
        return real(module, *args, **kwargs)

    ALL_ATTENTION_FUNCTIONS["sdpa"] = counted  # the local mapping, over the global one
    try:
        yield calls
    finally:
        del ALL_ATTENTION_FUNCTIONS["sdpa"]


@pytest.mark.parametrize("pair", PAIRS)
def test_eager_and_sdpa_give_the_same_loss_logits_and_gradients(tiny, sdpa_calls, pair):
    runs = {}
    for name in ("eager", "sdpa"):
        torch.manual_seed(0)  # the same new cross-attention weights
        built = build(spec(tiny, pair, attn_implementation=name))
        model = built.model.eval()  # no dropout
        decoder_only = model.encoder is None
        assert attention_used(model) == {"encoder": None if decoder_only else name, "decoder": name}
        batch = batch_for(built)
        assert (batch["attention_mask"] == 0).any() and (batch["labels"] == -100).any()
        sdpa_calls.clear()
        logits = logits_of(model, batch)
        loss = torch.nn.functional.cross_entropy(
            logits.flatten(0, 1), batch["labels"].flatten(), ignore_index=-100
        )
        loss.backward()
        grads = {n: p.grad for n, p in model.named_parameters() if p.grad is not None}
        runs[name] = logits.detach(), loss.detach(), grads, len(sdpa_calls)
    (eager_logits, eager_loss, eager_grads, eager_calls), (logits, loss, grads, calls) = (
        runs["eager"],
        runs["sdpa"],
    )
    # every attention ran the chosen implementation: encoder self-, decoder self- and cross-attention
    layers = model.decoder.config.num_hidden_layers
    expected = layers if decoder_only else model.encoder.config.num_hidden_layers + 2 * layers
    assert (eager_calls, calls) == (0, expected)
    torch.testing.assert_close(logits, eager_logits, rtol=0, atol=ATTENTION_ATOL)
    torch.testing.assert_close(loss, eager_loss, rtol=0, atol=ATTENTION_ATOL)
    assert grads.keys() == eager_grads.keys()
    for n, g in grads.items():
        torch.testing.assert_close(g, eager_grads[n], rtol=0, atol=ATTENTION_ATOL, msg=n)


def test_auto_is_sdpa_for_every_family_and_a_rebuild_sets_the_choice_again(tiny):
    for pair in PAIRS:
        built = build(spec(tiny, pair, attn_implementation="auto"))
        assert set(attention_used(built.model).values()) - {None} == {"sdpa"}, pair
        # rebuilt from its architecture (a checkpoint's route): the choice is set again, not read from the arch
        again = build(spec(tiny, pair, attn_implementation="eager"), BuildFrom.RANDOM, arch=built.arch)
        assert set(attention_used(again.model).values()) - {None} == {"eager"}, pair


@pytest.mark.slow  # a tiny training run with compile, 40 s: keeps `make test` under 10 min on the slower CPU kinds
def test_a_run_records_the_attention_and_compile_it_ran_with(tiny, tiny_run_overrides, tmp_path, monkeypatch):
    from src.models.restore import load_module
    from src.train import train

    # the run's torch.compile through aot_eager (no C++ build): the same plumbing, seconds instead of minutes
    monkeypatch.setattr(torch, "compile", functools.partial(torch.compile, backend="aot_eager"))
    torch._dynamo.reset()
    torch._dynamo.utils.counters.clear()
    cfg = compose_train(
        f"checkpoints.bert={tiny['bert']}",
        f"checkpoints.gpt2={tiny['gpt2']}",
        "decoder=gpt2",
        "attn_implementation=eager",
        "trainer.compile=true",
        *tiny_run_overrides(steps=2, val_every=2, train=16, batch=8, eval_batch=4, new_tokens=3),
        f"data.cache_dir={tmp_path / 'cache'}",
        f"output_dir={tmp_path / 'run'}",
    )
    train(train_config(cfg))
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["status"] == "completed"
    assert metrics["attention"] == {"requested": "eager", "encoder": "eager", "decoder": "eager"}
    assert metrics["compile"] is True
    assert torch._dynamo.utils.counters["stats"]["unique_graphs"] > 0  # the loss pass went through dynamo
    module = load_module(str(tmp_path / "run" / "checkpoints" / "last.ckpt"))  # a checkpoint keeps the choice
    assert module.attention == metrics["attention"]
    assert not module.compiled  # compile is the run's setting, not the checkpoint's


def module_for(tiny, pair: str) -> Seq2SeqModule:
    enc, dec = PAIRS[pair]
    torch.manual_seed(0)
    module = Seq2SeqModule(
        model={
            "encoder": tiny[enc] if enc else None,
            "decoder": tiny[dec],
            "sharing": "embeddings" if enc else "none",
        },
        optimizer={"name": "adamw_linear", "lr": 1e-3, "warmup_steps": 1},
        generation={"num_beams": 1, "max_new_tokens": 4},
    )
    module.model.eval()  # no dropout: compiled and eager draw their random numbers differently
    return module


@pytest.mark.parametrize(
    "pair", ["bert2gpt2", "gpt"]
)  # the two loss passes: decoder hidden states, full forward
def test_compiled_loss_and_gradients_equal_eager(tiny, pair):
    """torch.compile through dynamo and AOTAutograd (backend aot_eager: the graphs run as ATen ops, no C++ build);
    the inductor backend, what trainer.compile uses, is the slow test below."""
    results = {}
    for compiled in (False, True):
        module = module_for(tiny, pair)
        keys = list(module.state_dict())
        if compiled:
            torch._dynamo.reset()
            torch._dynamo.utils.counters.clear()
            module.compile_model(backend="aot_eager")
        loss = module.loss(batch_for(module))
        loss.backward()
        assert list(module.state_dict()) == keys  # checkpoints look the same
        results[compiled] = (
            loss.detach(),
            {n: p.grad for n, p in module.model.named_parameters() if p.grad is not None},
        )
    assert torch._dynamo.utils.counters["stats"]["unique_graphs"] >= 1
    (eager_loss, eager_grads), (loss, grads) = results[False], results[True]
    torch.testing.assert_close(loss, eager_loss, rtol=0, atol=COMPILE_ATOL)
    assert grads.keys() == eager_grads.keys()
    for n, g in grads.items():
        torch.testing.assert_close(g, eager_grads[n], rtol=0, atol=COMPILE_ATOL, msg=n)


@pytest.mark.slow  # inductor compiles C++ for the CPU: 40 to 90 s for the first graph, 35 s for each shape after
def test_inductor_compiled_training_steps_equal_eager(tiny):
    """trainer.compile's torch.compile (default inductor backend): 3 AdamW steps, the same losses as eager."""
    losses = {}
    for compiled in (False, True):
        module = module_for(tiny, "bert2bert")
        if compiled:
            torch._dynamo.reset()
            module.compile_model()
        optimizer, _ = build_optimizer(
            module.model, name="adamw_linear", lr=1e-3, warmup_steps=0, total_steps=10, hidden_size=32
        )
        batch, steps = batch_for(module), []
        for _ in range(3):
            loss = module.loss(batch)
            loss.backward()
            optimizer.step()
            optimizer.zero_grad()
            steps.append(loss.detach())
        losses[compiled] = torch.stack(steps)
    assert losses[False][-1] < losses[False][0]  # it trained
    torch.testing.assert_close(losses[True], losses[False], rtol=0, atol=COMPILE_ATOL)


# ---- refusals --------------------------------------------------------------------------------------------------
@pytest.mark.skipif(FLASH_INSTALLED, reason="flash_attn is installed here")
def test_flash_attention_2_without_the_package_is_refused_in_one_line(tiny, tmp_path):
    proc = run_cli(
        "src.train", "attn_implementation=flash_attention_2", "logger=none", f"hydra.run.dir={tmp_path}"
    )
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr[-2000:]
    assert lines[0].startswith("error: attn_implementation=flash_attention_2 needs the flash_attn package")
    assert "Fix: `pip install flash-attn" in lines[0] and "attn_implementation=sdpa" in lines[0]
    # the builder refuses it too (library use, no config check before it)
    with pytest.raises(UserError, match="needs the flash_attn package"):
        build(spec(tiny, "bert2bert", attn_implementation="flash_attention_2"))


@pytest.mark.skipif(FLASH_INSTALLED, reason="flash_attn is installed here")
def test_a_flash_attention_2_checkpoint_loads_with_sdpa_where_it_cannot_run():
    from src.models.restore import _runnable_attention

    hparams = {"model": {"encoder": "e", "decoder": "d", "attn_implementation": "flash_attention_2"}}
    assert _runnable_attention(hparams) == {"model": {**hparams["model"], "attn_implementation": "sdpa"}}
    assert _runnable_attention({"model": {"attn_implementation": "eager"}}) == {}


def test_flash_attention_2_is_refused_without_cuda_and_in_fp32(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: object() if name == "flash_attn" else real(name, *a)
    )
    flash = "attn_implementation=flash_attention_2"
    with pytest.raises(UserError, match="runs on a CUDA GPU only.*Fix: attn_implementation=sdpa"):
        check_train(flash, "trainer.accelerator=cpu")
    with pytest.raises(UserError, match="fp16/bf16 only.*Fix: trainer.precision=bf16-mixed"):
        check_train(flash, "trainer.precision=32-true")


@pytest.mark.parametrize(
    ("override", "message"),
    [
        (
            "attn_implementation=flash",
            "attn_implementation=flash is not valid: attn_implementation is one of sdpa",
        ),
        (
            "trainer.compile=maybe",
            r"trainer.compile=maybe is not valid \(.*not a valid bool.*\): trainer.compile is true",
        ),
    ],
)
def test_bad_values_are_refused_with_the_fix(override, message):
    with pytest.raises(UserError, match=message):
        check_train(override)


def test_trainer_compile_is_taken_out_before_the_trainer_is_made(tmp_path):
    from src.run.assemble import make_trainer

    cfg = compose_train("trainer.compile=true", "trainer.accelerator=cpu", f"output_dir={tmp_path}")
    trainer = make_trainer(train_config(cfg), callbacks=[], logger=False)
    assert trainer.max_steps == cfg.trainer.max_steps  # made from the group, without a `compile` argument
