"""Shared by both sides of the benchmark: one held-out loss, the blog's labels and special tokens, the common
initial weights, FLOPs per sample, and the result records."""

from __future__ import annotations

from pathlib import Path

import torch
from transformers import AutoConfig, AutoTokenizer, EncoderDecoderModel

from scripts.bench.workloads import HELD_OUT, read_split

LR = 5e-5


WEIGHT_DECAY = 0.01


# ---- shared by both sides -------------------------------------------------------------------------------------
def sync() -> None:
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        torch.cuda.synchronize()


def held_out_loss(model, tokenizer, rows: list[dict], spec: dict, device) -> float:
    """Token-mean teacher-forced loss on `rows`, one function for both sides (labels: target + [SEP])."""
    model.eval()
    total, count = 0.0, 0
    with torch.no_grad():
        for start in range(0, len(rows), 8):
            chunk = rows[start : start + 8]
            enc = tokenizer(
                [r["source"] for r in chunk],
                truncation=True,
                max_length=spec["max_source_length"],
                padding=True,
                return_tensors="pt",
            )
            labels = recipe_labels(
                tokenizer, [r["target"] for r in chunk], spec["max_target_length"], pad=False
            )
            out = model(
                input_ids=enc["input_ids"].to(device),
                attention_mask=enc["attention_mask"].to(device),
                labels=labels.to(device),
            )
            n = int((labels != -100).sum())
            total, count = total + float(out.loss) * n, count + n
    return total / count


def recipe_labels(tokenizer, targets: list[str], max_length: int, pad: bool):
    """[CLS] target [SEP] truncated to max_length + 1, then without the [CLS] (the model shifts the start token in):
    the labels the project trains on, padded with -100."""

    enc = tokenizer(
        targets,
        truncation=True,
        max_length=max_length + 1,
        padding="max_length" if pad else True,
        return_tensors="pt",
    )
    ids, mask = enc["input_ids"][:, 1:], enc["attention_mask"][:, 1:]
    if pad:  # max_length + 1 tokens minus the [CLS]: max_length
        assert ids.size(1) == max_length
    return ids.masked_fill(mask == 0, -100)


def set_bert_special_tokens(model, tokenizer) -> None:
    """The blog's: decoder start = [CLS], eos = [SEP], pad = [PAD] (config for the loss, generation_config for
    generate)."""
    for cfg in (model.config, model.generation_config):
        cfg.decoder_start_token_id = tokenizer.cls_token_id
        cfg.eos_token_id = tokenizer.sep_token_id
        cfg.pad_token_id = tokenizer.pad_token_id


# ---- results --------------------------------------------------------------------------------------------------
def train_result(
    job: dict, times: list[float], tokens_per_sample: float, model, tokenizer, sizes: list[int] | None = None
) -> dict:
    """Speed over steps 2..N (samples: `sizes`, the examples of each step, where batches vary, as with
    data.max_tokens; else the workload's batch size), peak memory, held-out loss."""
    from src.system.hardware import (
        peak_memory_mb,  # torch only: the recipe process imports nothing else of ours
    )

    spec = job["spec"]
    if len(times) != spec["steps"]:
        raise RuntimeError(f"{job['system']} ran {len(times)} steps instead of {spec['steps']}")
    seconds = times[-1] - times[0]
    samples = sum(sizes[1:]) if sizes else (len(times) - 1) * spec["batch_size"]
    device = next(model.parameters()).device
    rows = read_split(Path(job["data"]), HELD_OUT)
    return {
        "seconds_per_step": seconds / (len(times) - 1),
        "samples_per_s": samples / seconds,
        "target_tokens_per_s": samples * tokens_per_sample / seconds,
        "peak_memory_mb": peak_memory_mb(),
        "loss": held_out_loss(model, tokenizer, rows, spec, device),
    }


def eval_result(job: dict, seconds: float, predictions: list[str]) -> dict:
    from src.system.hardware import (
        peak_memory_mb,  # torch only: the recipe process imports nothing else of ours
    )

    return {
        "samples_per_s": len(predictions) / seconds,
        "seconds": seconds,
        "peak_memory_mb": peak_memory_mb(),
        "predictions": predictions,
    }


def build_init(encoder: str, decoder: str, directory: Path, seed: int) -> str:
    """The recipe's model, assembled once and saved: both sides start from exactly these weights."""
    from src.models.checkpoints import resolve_checkpoint  # ours only where used: see peak_memory_mb below

    enc, dec = resolve_checkpoint(encoder), resolve_checkpoint(decoder)
    enc_tok, dec_tok = AutoTokenizer.from_pretrained(enc), AutoTokenizer.from_pretrained(dec)
    if (
        enc_tok.get_vocab() != dec_tok.get_vocab()
        or dec_tok.cls_token_id is None
        or dec_tok.sep_token_id is None
    ):
        raise SystemExit(
            f"benchmark: the recipe tokenizes both sides with one BERT-style tokenizer ([CLS] ... [SEP]); "
            f"{encoder} and {decoder} need the same vocabulary with CLS/SEP tokens. Fix: pass a BERT or "
            "RoBERTa checkpoint to both --encoder and --decoder."
        )
    torch.manual_seed(seed)
    model = EncoderDecoderModel.from_encoder_decoder_pretrained(enc, dec)
    model.save_pretrained(directory)
    dec_tok.save_pretrained(directory / "tokenizer")
    return str(directory / "tokenizer")


def train_flops_per_sample(init: Path, tokenizer, rows: list[dict], spec: dict) -> float:
    """Mean useful model FLOPs of a training example of `rows` (src.models.flops.train_flops), real tokens only."""
    from src.models.flops import train_flops  # ours only where used: see peak_memory_mb below

    config = AutoConfig.from_pretrained(init)
    total = 0.0
    for r in rows:
        S = len(tokenizer(r["source"], truncation=True, max_length=spec["max_source_length"])["input_ids"])
        T = len(recipe_labels(tokenizer, [r["target"]], spec["max_target_length"], pad=False)[0])
        total += train_flops(config.encoder, config.decoder, S, T)
    return total / len(rows)
