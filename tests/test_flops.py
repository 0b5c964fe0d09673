"""The model-FLOP count behind MFU figures equals what PyTorch's FLOP counter sees in a training step."""

from __future__ import annotations

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from src.models.flops import train_flops
from src.models.module import Seq2SeqModule

LAYOUTS = {
    "bert2bert": {"encoder": "bert", "decoder": "bert"},
    "bert2gpt": {"encoder": "bert", "decoder": "gpt2"},
    "gpt": {"encoder": None, "decoder": "gpt2"},
}


@pytest.mark.parametrize("variant", LAYOUTS)
def test_train_flops_equal_counted_flops_of_forward_and_backward(tiny, variant):
    model = {k: tiny.get(v, v) for k, v in LAYOUTS[variant].items()}
    module = Seq2SeqModule(
        model={**model, "sharing": "none"},
        optimizer={"name": "adamw_linear", "lr": 1e-3, "warmup_steps": 1},
        generation={},
    )
    B, S, T = 2, 24, 8  # no padding: every token counts
    g = torch.Generator().manual_seed(0)
    labels = torch.randint(5, 300, (B, T), generator=g)
    batch = {
        "input_ids": torch.randint(5, 300, (B, S), generator=g),
        "attention_mask": torch.ones(B, S, dtype=torch.long),
        "decoder_input_ids": torch.cat([torch.full((B, 1), 2), labels[:, :-1]], 1),
        "decoder_attention_mask": torch.ones(B, T, dtype=torch.long),
        "labels": labels,
    }
    with FlopCounterMode(display=False) as counter:
        module.loss(batch).backward()
    config = module.model.config
    encoder = None if variant == "gpt" else config.encoder
    decoder = config if variant == "gpt" else config.decoder
    assert counter.get_total_flops() == B * train_flops(encoder, decoder, S, T)
