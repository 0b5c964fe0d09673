"""Hardware-dependent defaults: `trainer.precision=auto` picks bf16 only where it is fast."""

from __future__ import annotations

import torch


def cpu_has_fast_bf16() -> bool:
    """AVX512-BF16 or AMX: without them bf16 autocast on the CPU is emulated and many times slower than fp32."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            flags = next((line for line in f if line.startswith("flags")), "")
    except OSError:
        return False
    return any(flag in flags.split() for flag in ("avx512_bf16", "amx_bf16"))


def resolve_precision(precision: str | int, accelerator: str = "auto") -> str | int:
    """Map `auto` to bf16-mixed on a bf16-capable GPU or CPU, else 32-true; other values pass through."""
    if precision != "auto":
        return precision
    gpu = accelerator in ("auto", "gpu", "cuda") and torch.cuda.is_available()
    if gpu:
        return "bf16-mixed" if torch.cuda.is_bf16_supported() else "16-mixed"
    return "bf16-mixed" if cpu_has_fast_bf16() else "32-true"
