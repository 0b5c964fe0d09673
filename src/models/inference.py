"""Decoding, the same search faster: the output layer in slices of the vocabulary; one copy of the source per example.

Beam search runs the decoder's output layer (hidden -> vocabulary) on every beam at every step: for MiniLM's
384 x 30522, 4 beams of 32 examples, a 128 x 30522 product a step, a third of Gigaword-like evaluation. As one
product the CPU's matrix kernel streams a 47 MB weight and a 16 MB result through its caches; in slices of
`VOCAB_SLICE` rows of the weight each slice stays in cache. Every logit is the same dot product of the same
numbers either way; on the 2-core AMD EPYC (MKL sgemm) the slices gave the whole product's logits bit for bit
(tests/test_inference.py allows 1e-6 for other CPUs' kernels); the benchmark's gain: docs/performance.md. Only
in inference (no gradient), on a CPU, in fp32 outside autocast: training, GPUs and bf16 keep the one product.

Beam search repeats each example's encoder output once per beam, and every decoder layer's cross-attention reads
the keys and values of every copy at every step: for CNN/DailyMail-like data (16 examples x 4 beams x 512 source
tokens x 384) 50 MB each a layer a step, read to compute 64 rows of attention. The copies are equal, and the
model's `_reorder_cache` never moves them (beams stay within their example). After the first step
`share_source` keeps one copy per example, and `SHARED_SOURCE` attention (transformers' sdpa, registered
through its AttentionInterface) puts the beams of an example side by side as queries of that one copy: the same
attention, reading a quarter of the memory. It differs from the copies' attention only in rounding (the kernel
sums a block of 4 queries, not 4 blocks of 1: within 2e-6 in fp32, tests/test_inference.py), so predictions may
differ where two beams tie to that precision; the benchmark's 144 predictions are the recipe's (docs/performance.md).
"""

from __future__ import annotations

import contextlib

import torch
import torch.nn.functional as F
from transformers import AttentionInterface
from transformers.integrations.sdpa_attention import sdpa_attention_forward
from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

#: the weight rows of one slice: 512 x 384 floats, 0.8 MB, beside a 128-row result slice of 0.25 MB
VOCAB_SLICE = 512


class VocabSlicedLinear(torch.nn.Linear):
    """nn.Linear whose inference on a CPU in fp32 computes the output in slices of `VOCAB_SLICE` features.

    The same parameters and state-dict keys as the Linear it replaces (`slice_output_layer` changes only the class),
    so checkpoints, tied embeddings and exports are untouched.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not sliced(x, self.weight):
            return super().forward(x)
        out = x.new_empty(*x.shape[:-1], self.out_features)
        for start in range(0, self.out_features, VOCAB_SLICE):
            end = min(start + VOCAB_SLICE, self.out_features)
            bias = None if self.bias is None else self.bias[start:end]
            out[..., start:end] = F.linear(x, self.weight[start:end], bias)
        return out


def sliced(x: torch.Tensor, weight: torch.Tensor) -> bool:
    """Whether this product goes in slices: inference, on a CPU, fp32 outside autocast, a weight of 2+ slices."""
    return (
        not torch.is_grad_enabled()
        and x.device.type == "cpu"
        and x.dtype == torch.float32
        and weight.dtype == torch.float32
        and not torch.is_autocast_enabled("cpu")
        and weight.shape[0] >= 2 * VOCAB_SLICE
    )


def slice_output_layer(model) -> bool:
    """Make the decoder's output layer (`get_output_embeddings()`, a plain nn.Linear) a `VocabSlicedLinear`, in
    place; False where the decoder's output layer is something else (left as it is)."""
    decoder = getattr(model, "decoder", model)
    layer = decoder.get_output_embeddings() if hasattr(decoder, "get_output_embeddings") else None
    if type(layer) is not torch.nn.Linear:
        return False
    layer.__class__ = VocabSlicedLinear
    return True


#: the attention a decoder runs during beam search when its attention is sdpa: sdpa, with an example's beams as the
#: queries of one copy of its source (`shared_source_attention`)
SHARED_SOURCE = "sdpa_shared_source"


def shared_source_attention(module, query, key, value, attention_mask, **kwargs):
    """sdpa, where the keys and values may hold one row per example for `g` rows of queries (its beams).

    query (g*m, H, L, D) against key and value (m, H, S, D): each example's g beams become g*L queries of one
    sdpa row; the output comes back in the queries' order. Equal batches: transformers' sdpa as it is.
    """
    n, m = query.shape[0], key.shape[0]
    if n == m:
        return sdpa_attention_forward(module, query, key, value, attention_mask, **kwargs)
    g, (_, heads, length, dim) = n // m, query.shape
    grouped = query.view(m, g, heads, length, dim).transpose(1, 2).reshape(m, heads, g * length, dim)
    if attention_mask is not None:
        if attention_mask.shape[0] == n:  # the mask of every copy: the first of each example's
            attention_mask = attention_mask[::g]
        if attention_mask.shape[-2] > 1:  # a mask row per query position: per beam, in the queries' order
            attention_mask = attention_mask.repeat(1, 1, g, 1)
    out, weights = sdpa_attention_forward(module, grouped, key, value, attention_mask, **kwargs)
    return out.reshape(n, length, heads, dim), weights  # (m, g*L, H, D) -> (n, L, H, D)


AttentionInterface.register(SHARED_SOURCE, shared_source_attention)
AttentionMaskInterface.register(SHARED_SOURCE, sdpa_mask)  # the masks sdpa would get


@contextlib.contextmanager
def source_shared_by_beams(model, beams: int):
    """Around one `generate` of an encoder-decoder: with 2+ beams and a decoder running sdpa, the decoder runs
    `SHARED_SOURCE` attention and `model.shared_beams` is `beams` (its `_reorder_cache` then calls
    `share_source`); as before afterwards, whatever happened."""
    # the decoder's config and the ones its layers were built with (EncoderDecoderModel gives the decoder a copy)
    configs = {id(c): c for m in model.decoder.modules() if (c := getattr(m, "config", None)) is not None}
    configs = [c for c in configs.values() if hasattr(c, "_attn_implementation")]
    if beams < 2 or any(c._attn_implementation != "sdpa" for c in configs):
        yield
        return
    for c in configs:
        c._attn_implementation = SHARED_SOURCE
    model.shared_beams = beams
    try:
        yield
    finally:
        for c in configs:
            c._attn_implementation = "sdpa"
        model.shared_beams = None


def share_source(cross_attention_cache, beams: int) -> None:
    """Keep one copy per example of each layer's cross-attention keys and values (rows b*beams .. b*beams+beams-1
    are copies of one example's, as beam search expanded the encoder output); done once, after the first step."""
    for layer in getattr(cross_attention_cache, "layers", []):
        keys = getattr(layer, "keys", None)
        if keys is None or keys.shape[0] % beams or keys.shape[0] == 0:
            continue
        if getattr(layer, "shared_by_beams", False):
            continue
        layer.keys, layer.values = keys[::beams].contiguous(), layer.values[::beams].contiguous()
        layer.shared_by_beams = True
