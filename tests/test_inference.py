"""Faster decoding that computes the same thing (src/models/inference.py, the evaluation step's shared encoder pass)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from transformers.integrations.sdpa_attention import sdpa_attention_forward

from src.models.inference import (
    SHARED_SOURCE,
    VOCAB_SLICE,
    VocabSlicedLinear,
    shared_source_attention,
    sliced,
    source_shared_by_beams,
)
from tests.test_models import ROWS, batch_for


def sliced_layer(rows: int, features: int = 384) -> tuple[torch.nn.Linear, VocabSlicedLinear]:
    torch.manual_seed(0)
    plain = torch.nn.Linear(features, rows)
    fast = torch.nn.Linear(features, rows)
    fast.load_state_dict(plain.state_dict())
    fast.__class__ = VocabSlicedLinear
    return plain, fast


@pytest.mark.parametrize("shape", [(64, 384), (4, 17, 384), (1, 384)])
def test_vocabulary_slices_give_the_whole_products_logits(shape):
    """MiniLM's output layer (30522 x 384) on the shapes decoding gives it. On the 2-core AMD EPYC the slices are
    bit for bit the whole product (MKL sgemm); the tolerance leaves room for another CPU's kernels."""
    plain, fast = sliced_layer(30522)
    x = torch.randn(*shape)
    with torch.no_grad():
        want, got = plain(x), fast(x)
        assert sliced(x, fast.weight)
    assert got.shape == want.shape
    torch.testing.assert_close(got, want, rtol=1e-6, atol=1e-6)


def test_slices_only_where_they_are_measured_fp32_cpu_inference():
    """Each answer of `sliced` forced: training (gradients), autocast, bf16 and a weight of one slice keep the one
    product; the sliced layer then is nn.Linear exactly."""
    plain, fast = sliced_layer(4 * VOCAB_SLICE)
    x = torch.randn(8, 384)
    with torch.no_grad():
        assert sliced(x, fast.weight)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            assert not sliced(x, fast.weight)
            assert torch.equal(fast(x), plain(x))
        assert not sliced(x.bfloat16(), fast.weight.bfloat16())
        assert not sliced(x, torch.zeros(2 * VOCAB_SLICE - 1, 384))
    assert not sliced(x, fast.weight)  # gradients on
    y = fast(x)
    assert torch.equal(y, plain(x))
    y.sum().backward()  # the training path still has its gradients
    assert fast.weight.grad is not None


def test_the_built_models_output_layer_is_sliced_with_its_parameters_and_ties_kept(tiny):
    module = _module(tiny)
    decoder = module.model.decoder
    layer = decoder.get_output_embeddings()
    assert type(layer) is VocabSlicedLinear
    assert (
        layer.weight is decoder.get_input_embeddings().weight
    )  # BERT ties its output layer to its embeddings
    assert "decoder.cls.predictions.decoder.weight" in dict(
        module.model.named_parameters(remove_duplicate=False)
    )


class CrossAttention(torch.nn.Module):
    is_causal = False


@pytest.mark.parametrize("mask", [None, "bool", "float"])
@pytest.mark.parametrize("length", [1, 3])
def test_shared_source_attention_is_sdpa_on_the_copies(mask, length):
    """4 beams of 5 examples against one copy of each example's keys and values, and against the copies: equal to
    fp32 rounding (measured at most 4e-7 at 512 source tokens, docs/performance.md)."""
    torch.manual_seed(0)
    beams, examples, heads, source, dim = 4, 5, 12, 40, 32
    query = torch.randn(beams * examples, heads, length, dim)
    key, value = torch.randn(examples, heads, source, dim), torch.randn(examples, heads, source, dim)
    keep = torch.ones(examples, 1, length, source, dtype=torch.bool)
    keep[::2, ..., source - 7 :] = False  # padding in some sources
    masks = {
        None: None,
        "bool": keep,
        "float": torch.zeros(keep.shape).masked_fill(~keep, torch.finfo(torch.float32).min),
    }
    one = masks[mask]
    every = None if one is None else one.repeat_interleave(beams, dim=0)
    module = CrossAttention()
    copies, _ = sdpa_attention_forward(
        module, query, key.repeat_interleave(beams, 0), value.repeat_interleave(beams, 0), every
    )
    for given in (one, every):  # the mask of one copy per example, or of every copy
        shared, _ = shared_source_attention(module, query, key, value, given)
        assert shared.shape == copies.shape == (beams * examples, length, heads, dim)
        torch.testing.assert_close(shared, copies, rtol=0, atol=2e-6)
    # equal batches: transformers' sdpa, untouched
    same, _ = shared_source_attention(module, query, query, query, None)
    assert torch.equal(same, sdpa_attention_forward(module, query, query, query, None)[0])


def _module(tiny, decoder="bert", attention="sdpa"):
    from src.models.module import Seq2SeqModule

    torch.manual_seed(0)
    return Seq2SeqModule(
        model={
            "encoder": tiny["bert"],
            "decoder": tiny[decoder],
            "sharing": "none",
            "attn_implementation": attention,
        },
        optimizer={"name": "adamw_linear", "lr": 1e-3, "warmup_steps": 1},
        generation={"num_beams": 4, "max_new_tokens": 8},
    ).eval()


def test_beam_search_attention_comes_back_whatever_happens(tiny):
    from src.models.builder import attention_used

    model = _module(tiny).model
    with pytest.raises(RuntimeError), source_shared_by_beams(model, 4):
        assert attention_used(model)["decoder"] == SHARED_SOURCE and model.shared_beams == 4
        raise RuntimeError("a search that failed")
    assert attention_used(model)["decoder"] == "sdpa" and model.shared_beams is None
    with source_shared_by_beams(model, 1):  # greedy: nothing to share
        assert attention_used(model)["decoder"] == "sdpa" and model.shared_beams is None
    eager = _module(tiny, attention="eager").model
    with source_shared_by_beams(eager, 4):  # only sdpa has the shared form
        assert attention_used(eager)["decoder"] == "eager" and eager.shared_beams is None


def test_an_evaluation_step_encodes_once_with_the_same_loss_and_predictions(tiny):
    """test_step and validation_step give the loss and the generation one encoder pass (`encode`): the same numbers
    as each computing its own."""
    module = _module(tiny)
    batch = batch_for(module, ROWS)
    calls = []
    module.model.encoder.register_forward_hook(lambda *_: calls.append(1))
    with torch.no_grad():
        encoded = module.encode(batch)
        assert len(calls) == 1
        assert torch.equal(module.loss(batch, encoded), module.loss(batch))
        assert module.generate(batch, encoded) == module.generate(batch)
        assert len(calls) == 1 + 1 + 1  # encode, then the loss and the generation that were given nothing
    expected = F.cross_entropy(*module.labelled_logits(batch))
    assert torch.equal(module.loss(batch, encoded), expected)
