"""The paper's `gpt` variant: a decoder-only LM reads the source as a prefix and continues with the target.

It takes the same batch as the encoder-decoder models (source right-padded, decoder inputs = labels shifted
right) and returns logits for the target positions only, so the loss covers the target only and the
LightningModule does not care which kind of model it trains.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn


@dataclass
class TargetLogits:
    logits: torch.Tensor  # (B, T, V): one row per target position


def left_align(ids: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-padded (B, S) -> left-padded, so every source ends at position S - 1, right before the target."""
    S = ids.size(1)
    shift = S - mask.sum(1)  # (B,) pads per row
    idx = (torch.arange(S, device=ids.device)[None, :] - shift[:, None]) % S  # pads wrap round to the front
    return ids.gather(1, idx), mask.gather(1, idx)


class DecoderOnlySeq2Seq(nn.Module):
    """[source, start, target] through one causal LM (GPT-2), with positions counted from the first real token.

    Args:
        decoder: a causal LM (GPT2LMHeadModel), without cross-attention.
        decoder_start_token_id: the token between source and target (GPT-2's <|endoftext|>).
    """

    def __init__(self, decoder: nn.Module, decoder_start_token_id: int):
        super().__init__()
        self.decoder = decoder
        self.encoder = None
        self.decoder_start_token_id = decoder_start_token_id

    @property
    def config(self):
        return self.decoder.config

    @property
    def generation_config(self):
        return self.decoder.generation_config

    def forward(
        self, input_ids, attention_mask, decoder_input_ids, decoder_attention_mask, use_cache=False, **_
    ):
        src, src_mask = left_align(input_ids, attention_mask)
        ids = torch.cat([src, decoder_input_ids], dim=1)  # (B, S + T)
        mask = torch.cat([src_mask, decoder_attention_mask], dim=1)
        positions = (mask.cumsum(1) - 1).clamp(min=0)
        T = decoder_input_ids.size(1)
        out = self.decoder(  # the LM head on the T target positions only, not on the source prefix
            input_ids=ids, attention_mask=mask, position_ids=positions, use_cache=use_cache, logits_to_keep=T
        )
        return TargetLogits(out.logits)

    @torch.no_grad()
    def generate(self, input_ids, attention_mask, **kwargs) -> torch.Tensor:
        """Continue [source, start]; returns (B, 1 + new tokens) starting with the start token, like a seq2seq model."""
        src, src_mask = left_align(input_ids, attention_mask)
        start = torch.full((src.size(0), 1), self.decoder_start_token_id, dtype=src.dtype, device=src.device)
        out = self.decoder.generate(
            input_ids=torch.cat([src, start], 1),
            attention_mask=torch.cat([src_mask, torch.ones_like(start)], 1),
            **kwargs,
        )
        return out[:, src.size(1) :]
