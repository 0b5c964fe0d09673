"""The training loss is per target token of the whole optimizer step: gradient accumulation and DDP give the
gradient one big batch gives, with label smoothing, whatever the target lengths of the micro-batches
(src.models.module: Seq2SeqModule.training_step and normalize_gradients). Real Lightning Trainers throughout."""

from __future__ import annotations

import json

import lightning as L
import pytest
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader

from src.models.module import Seq2SeqModule

# Largest gradient difference allowed between accumulation (or DDP) and the one big batch, in fp32. Measured on the
# 2-core AMD EPYC with AVX512-BF16 (the functions below, their differences printed): 6.0e-8 (eps 0) and 3.7e-8
# (eps 0.1) for 4 accumulated batches vs one of all four, 1.9e-9 for 2 DDP processes vs one (summation order);
# the per-micro-batch mean that this replaces is off by 0.29 and 0.26 on the same batches, and eps=0.1 itself
# moves the gradient by 0.048. The tolerance is 170x the largest noise and 4,800x below the smallest signal.
TOLERANCE = 1e-5


def module_for(tiny, label_smoothing: float) -> Seq2SeqModule:
    torch.manual_seed(0)
    module = Seq2SeqModule(
        model={"encoder": tiny["bert"], "decoder": tiny["bert"], "sharing": "none"},
        optimizer={"name": "adamw_linear", "lr": 1e-3, "warmup_steps": 1},
        generation={"num_beams": 1, "max_new_tokens": 4},
        label_smoothing=label_smoothing,
    )
    for m in module.modules():  # the same function on every path: no dropout masks
        if isinstance(m, torch.nn.Dropout):
            m.p = 0.0
    return module


def micro_batches(vocab: int, targets=(8, 3, 6, 1), seed: int = 0) -> list[dict]:
    """Batches of 2 examples whose targets hold 2 x `targets[i]` tokens: unequal across micro-batches."""
    g = torch.Generator().manual_seed(seed)
    out = []
    for n in targets:
        ids = torch.randint(5, vocab, (2, 10), generator=g)
        labels = torch.randint(5, vocab, (2, 8), generator=g)
        dec_mask = torch.zeros_like(labels)
        dec_mask[:, :n] = 1
        out.append(
            {
                "input_ids": ids,
                "attention_mask": torch.ones_like(ids),
                "decoder_input_ids": torch.cat([torch.full((2, 1), 2), labels[:, :-1]], dim=1),
                "decoder_attention_mask": dec_mask,
                "labels": labels.masked_fill(dec_mask == 0, -100),
            }
        )
    return out


def joined(batches: list[dict]) -> dict:
    return {k: torch.cat([b[k] for b in batches]) for k in batches[0]}


class Gradients(L.Callback):
    """The gradients of the first optimizer step as the optimizer got them (after the module's normalisation),
    read at the end of the step's last batch; written to `path` as JSON when given (a DDP process)."""

    def __init__(self, path: str | None = None):
        self.path, self.grads = path, None

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if self.grads is None and (batch_idx + 1) % trainer.accumulate_grad_batches == 0:
            self.grads = {
                n: p.grad.clone() for n, p in pl_module.model.named_parameters() if p.grad is not None
            }
            if self.path and trainer.is_global_zero:
                with open(self.path, "w") as f:
                    json.dump({n: g.flatten().tolist() for n, g in self.grads.items()}, f)


def first_step_gradients(module, batches: list[dict], accumulate: int, **trainer_args) -> dict:
    grads = Gradients(trainer_args.pop("grads_path", None))
    trainer = L.Trainer(
        accelerator="cpu",
        max_steps=1,
        accumulate_grad_batches=accumulate,
        gradient_clip_val=None,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        limit_val_batches=0,
        callbacks=[grads],
        **{"devices": 1, **trainer_args},
    )
    trainer.fit(module, train_dataloaders=DataLoader(batches, batch_size=None))
    return grads.grads


def largest_difference(a: dict, b: dict) -> float:
    assert a.keys() == b.keys()
    return max(float((a[n] - b[n]).abs().max()) for n in a)


def naive_gradients(module, batches: list[dict], label_smoothing: float) -> dict:
    """What a per-micro-batch mean divided by the accumulation gives (the trap this module avoids)."""
    module.zero_grad()
    for batch in batches:
        logits, labels = module.labelled_logits(batch)
        (F.cross_entropy(logits, labels, label_smoothing=label_smoothing) / len(batches)).backward()
    return {n: p.grad.clone() for n, p in module.model.named_parameters() if p.grad is not None}


@pytest.mark.parametrize("label_smoothing", [0.0, 0.1])
def test_accumulating_four_batches_gives_the_gradient_of_one_batch_of_all_four(tiny, label_smoothing):
    batches = micro_batches(module_for(tiny, 0.0).decoder_tokenizer.vocab_size)
    assert len({int((b["labels"] != -100).sum()) for b in batches}) == 4  # unequal target tokens
    accumulated = first_step_gradients(module_for(tiny, label_smoothing), batches, accumulate=4)
    one_batch = first_step_gradients(module_for(tiny, label_smoothing), [joined(batches)], accumulate=1)
    difference = largest_difference(accumulated, one_batch)
    assert difference < TOLERANCE, f"accumulated vs one batch: {difference:.2e}"
    # the test tells them apart: the mean of each micro-batch, averaged, is another gradient
    naive = naive_gradients(module_for(tiny, label_smoothing), batches, label_smoothing)
    assert largest_difference(naive, one_batch) > 100 * TOLERANCE


def test_label_smoothing_changes_the_gradient_and_train_loss_stays_the_nll(tiny):
    batches = micro_batches(module_for(tiny, 0.0).decoder_tokenizer.vocab_size)[:1]
    plain = first_step_gradients(module_for(tiny, 0.0), batches, accumulate=1)
    smoothed = first_step_gradients(module_for(tiny, 0.1), batches, accumulate=1)
    assert largest_difference(plain, smoothed) > 100 * TOLERANCE
    module = module_for(tiny, 0.1)
    trainer = L.Trainer(accelerator="cpu", max_steps=1, logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, limit_val_batches=0)  # fmt: skip
    expected = module_for(tiny, 0.0).loss(batches[0]).item()  # the unsmoothed per-token NLL, before the step
    trainer.fit(module, train_dataloaders=DataLoader(batches, batch_size=None))
    assert trainer.callback_metrics["train/loss"].item() == pytest.approx(expected, rel=1e-5)


@pytest.mark.slow  # two spawned processes (about 30 s): make test-slow
def test_two_ddp_processes_give_the_gradient_of_one_process(tiny, tmp_path):
    """Rank r takes batch r (Lightning's distributed sampler, in order): two ranks with unequal target tokens,
    against one process accumulating the same two batches."""
    batches = micro_batches(module_for(tiny, 0.0).decoder_tokenizer.vocab_size, targets=(8, 2))
    one_process = first_step_gradients(module_for(tiny, 0.1), batches, accumulate=2)
    path = tmp_path / "ddp.json"
    first_step_gradients(
        module_for(tiny, 0.1), batches, accumulate=1, devices=2, strategy="ddp_spawn", grads_path=str(path)
    )
    saved = json.loads(path.read_text())
    ddp = {n: torch.tensor(saved[n]).reshape(g.shape) for n, g in one_process.items()}
    difference = largest_difference(ddp, one_process)
    assert difference < TOLERANCE, f"DDP vs one process: {difference:.2e}"
