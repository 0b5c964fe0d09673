"""GPU readiness: the paper's base-size variants trained in bf16-mixed and 16-mixed on one CUDA device, in minutes.

    python -m scripts.gpu_check                          # 4 variants x 2 precisions, 30 steps each
    python -m scripts.gpu_check --peak-tflops 989        # a card missing from src.system.hardware.GPU_PEAK_TFLOPS
    pytest -m gpu                                        # the same, as a test
    python -m scripts.gpu_check --device cpu --tiny      # the script checking itself on a CPU (the default tests)

bert2bert, bertshare, bert2gpt and gpt are built from the architecture facts in conf/arch/ with random weights
(no hub), each trained for --steps steps on one repeated batch through the project's own path: Seq2SeqModule, a
Lightning Trainer, the mixed-precision plugin (src.system.precision), fused AdamW, gradient clipping 1.0. Checked: the
loss is finite at every step and falls by more than 1 (mean of the last three steps against the first); beam-4
generation returns tokens of the vocabulary. Printed: samples/s (steps after the first 5), peak memory, model
TFLOP/s and MFU (src.models.flops against the device's peak).
Exits 1 if a check fails. JSON: --out.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import lightning as L
import torch
from torch.utils.data import DataLoader

from src.models.builder import config_from_dict
from src.models.flops import train_flops
from src.models.module import Seq2SeqModule
from src.models.special_tokens import set_special_tokens
from src.paper.variants import variant_arch
from src.system.hardware import device_peak_tflops, peak_memory_mb
from src.system.outputs import markdown_table
from src.system.precision import FusedMixedPrecision
from src.system.process import setup_process

VARIANTS = ("bert2bert", "bertshare", "bert2gpt", "gpt")
PRECISIONS = ("bf16-mixed", "16-mixed")
# special tokens by vocabulary (no tokenizer is loaded): BERT uncased [CLS]/[SEP]/[PAD], GPT-2 <|endoftext|>
BERT_TOKENS = SimpleNamespace(
    cls_token_id=101, sep_token_id=102, pad_token_id=0, bos_token_id=None, eos_token_id=None
)
GPT2_TOKENS = SimpleNamespace(
    cls_token_id=None, sep_token_id=None, pad_token_id=50256, bos_token_id=50256, eos_token_id=50256
)
TINY = {"layers": 2, "hidden": 64, "heads": 4, "intermediate": 128}
BERT_SIZES = ("num_hidden_layers", "hidden_size", "num_attention_heads", "intermediate_size")
# the run's shape at base size, and with --tiny
BASE = {"steps": 30, "batch_size": 16, "source": 256, "target": 64, "lr": 1e-4}
SMALL = {"steps": 8, "batch_size": 2, "source": 24, "target": 8, "lr": 5e-3}


def shrink(cfg: dict, tiny: dict) -> None:
    """--tiny: the same families and vocabularies, two narrow layers (a check of the script, not of a GPU)."""
    keys = ("n_layer", "n_embd", "n_head", "n_inner") if cfg["model_type"] == "gpt2" else BERT_SIZES
    cfg.update(zip(keys, (tiny["layers"], tiny["hidden"], tiny["heads"], tiny["intermediate"]), strict=True))


def build(variant: str, tiny: bool, lr: float, target: int):
    """(module, layout) of a variant with random weights, from conf/arch facts (nothing downloaded)."""
    spec, arch = variant_arch(variant)
    for side in ("encoder", "decoder"):
        if arch[side] is not None and tiny:
            shrink(arch[side], TINY)
    module = Seq2SeqModule(
        model=spec.as_dict(),
        optimizer={"name": "adamw_linear", "lr": lr, "warmup_steps": 5, "weight_decay": 0.01},
        generation={"num_beams": 4, "max_new_tokens": target},
        built={"arch": arch, "tokenizers": None},
    )
    decoder = config_from_dict(arch["decoder"])
    set_special_tokens(module.model, GPT2_TOKENS if decoder.model_type == "gpt2" else BERT_TOKENS)
    encoder = config_from_dict(arch["encoder"]) if arch["encoder"] is not None else None
    return module, SimpleNamespace(encoder=encoder, decoder=decoder)


def repeated_batch(layout, batch_size: int, source: int, target: int, seed: int = 0) -> dict:
    """One teacher-forcing batch of random ids, no padding: every token counts in the FLOPs."""
    g = torch.Generator().manual_seed(seed)
    src_vocab = (layout.encoder or layout.decoder).vocab_size
    labels = torch.randint(1000, layout.decoder.vocab_size - 1, (batch_size, target), generator=g)
    ids = torch.randint(1000, src_vocab - 1, (batch_size, source), generator=g)
    start = GPT2_TOKENS.bos_token_id if layout.decoder.model_type == "gpt2" else BERT_TOKENS.cls_token_id
    return {
        "input_ids": ids,
        "attention_mask": torch.ones_like(ids),
        "decoder_input_ids": torch.cat([torch.full((batch_size, 1), start), labels[:, :-1]], 1),
        "decoder_attention_mask": torch.ones_like(labels),
        "labels": labels,
    }


def check_one(variant: str, precision: str, args) -> dict:
    cuda = args.device == "cuda"
    torch.manual_seed(0)
    with torch.device(args.device):  # random weights made on the device: seconds, not minutes, at base size
        module, layout = build(variant, args.tiny, args.lr, args.target)
    batch = repeated_batch(layout, args.batch_size, args.source, args.target)
    losses, times = [], []

    class Record(L.Callback):
        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            if cuda:
                torch.cuda.synchronize()
            times.append(time.perf_counter())
            losses.append(float(outputs["loss"]))

    if cuda:
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    trainer = L.Trainer(
        accelerator="gpu" if cuda else "cpu",
        devices=1,
        max_steps=args.steps,
        gradient_clip_val=1.0,
        plugins=[FusedMixedPrecision(precision, args.device)],
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[Record()],
    )
    trainer.fit(module, train_dataloaders=DataLoader([batch] * args.steps, batch_size=None))
    warm = min(5, len(times) - 2)
    samples_per_s = (len(times) - 1 - warm) * args.batch_size / (times[-1] - times[warm])

    module.eval()
    device_batch = {k: v[: min(4, args.batch_size)].to(args.device) for k, v in batch.items()}
    dtype = torch.bfloat16 if precision == "bf16-mixed" else torch.float16
    start = time.perf_counter()
    with torch.autocast(args.device, dtype=dtype):
        out = module._generate(device_batch)
    if cuda:
        torch.cuda.synchronize()
    generate_s = time.perf_counter() - start
    vocab = layout.decoder.vocab_size
    generation_ok = (
        out.shape[0] == device_batch["input_ids"].size(0) and out.shape[1] > 1 and int(out.max()) < vocab
    )

    flops = train_flops(layout.encoder, layout.decoder, args.source, args.target)
    tflops = samples_per_s * flops / 1e12
    peak = args.peak_tflops or device_peak_tflops(args.device, precision)
    finite = all(math.isfinite(x) for x in losses)
    falls = finite and sum(losses[-3:]) / 3 < losses[0] - 1.0  # by more than a nat: perplexity / e
    return {
        "variant": variant,
        "precision": precision,
        "params_m": round(module.budget.total / 1e6, 1),
        "steps": trainer.global_step,
        "first_loss": losses[0],
        "last_loss": losses[-1],
        "losses": losses,
        "samples_per_s": samples_per_s,
        "peak_memory_mb": peak_memory_mb(),  # this variant's on a GPU (reset above); the process's RSS on a CPU
        "model_tflops_per_s": tflops,
        "peak_tflops": peak,
        "mfu": tflops / peak if peak else None,
        "generate_s": generate_s,
        "generated_shape": list(out.shape),
        "ok": {"finite": finite, "loss_falls": falls, "generation": bool(generation_ok)},
    }


def table(rows: list[dict]) -> str:
    header = [
        "variant", "precision", "params", "loss first -> last", "samples/s", "peak memory", "model TFLOP/s", "MFU",
        "beam-4 generate", "checks",
    ]  # fmt: skip
    body = []
    for r in rows:
        mfu = f"{r['mfu']:.1%}" if r["mfu"] is not None else "n/a (--peak-tflops)"
        failed = [k for k, ok in r["ok"].items() if not ok]
        body.append([
            r["variant"], r["precision"], f"{r['params_m']}M", f"{r['first_loss']:.3f} -> {r['last_loss']:.3f}",
            f"{r['samples_per_s']:.1f}", f"{r['peak_memory_mb']:.0f} MB", f"{r['model_tflops_per_s']:.2f}", mfu,
            f"{r['generate_s']:.2f} s", "ok" if not failed else "FAILED: " + ", ".join(failed),
        ])  # fmt: skip
    return markdown_table(header, body, "llrlrrrrrl")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cuda", choices=["cuda", "cpu"])
    p.add_argument("--variants", default=",".join(VARIANTS))
    p.add_argument("--precisions", default=",".join(PRECISIONS))
    p.add_argument("--steps", type=int, help="training steps (default 30; --tiny 8)")
    p.add_argument("--batch-size", type=int, help="examples per step (default 16; --tiny 2)")
    p.add_argument("--source", type=int, help="source tokens per example (default 256; --tiny 24)")
    p.add_argument(
        "--target", type=int, help="target tokens per example and generated (default 64; --tiny 8)"
    )
    p.add_argument("--lr", type=float, help="AdamW peak learning rate (default 1e-4; --tiny 5e-3)")
    p.add_argument("--peak-tflops", type=float, default=None, help="the device's dense bf16/fp16 peak")
    p.add_argument("--tiny", action="store_true", help="two narrow layers per side: checks the script itself")
    p.add_argument("--out", default="outputs/gpu_check.json")
    args = p.parse_args(argv)

    setup_process()
    defaults = SMALL if args.tiny else BASE
    for key, value in defaults.items():
        if getattr(args, key) is None:
            setattr(args, key, value)

    if args.device == "cuda" and not torch.cuda.is_available():
        print(
            "gpu_check: no CUDA device here. Fix: run it on a GPU machine, or --device cpu --tiny.",
            file=sys.stderr,
        )
        return 2
    device = torch.cuda.get_device_name() if args.device == "cuda" else "cpu"
    rows = []
    started = time.perf_counter()
    for variant in args.variants.split(","):
        for precision in args.precisions.split(","):
            rows.append(check_one(variant, precision, args))
            r = rows[-1]
            print(
                f"{variant} {precision}: loss {r['first_loss']:.3f} -> {r['last_loss']:.3f}, "
                f"{r['samples_per_s']:.1f} samples/s",
                file=sys.stderr,
                flush=True,
            )
    report = {
        "device": device,
        "torch": torch.__version__,
        "seconds": round(time.perf_counter() - started, 1),
        "settings": {k: v for k, v in vars(args).items() if k != "out"},
        "rows": rows,
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=1))
    print(table(rows))
    print(f"\n{device}, torch {torch.__version__}, {report['seconds']} s; JSON: {out}")
    return 0 if all(all(r["ok"].values()) for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
