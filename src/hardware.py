"""Hardware-dependent defaults: `trainer.precision=auto` picks bf16 only where it is fast; host memory reuse."""

from __future__ import annotations

import ctypes
import resource
import sys

import torch


def peak_memory_mb() -> float:
    """Peak GPU memory allocated by this process, else its peak resident memory (RSS), in MiB."""
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        return torch.cuda.max_memory_allocated() / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


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


# glibc mallopt parameters (malloc.h)
_M_TRIM_THRESHOLD, _M_MMAP_MAX = -1, -4


def keep_freed_host_memory() -> bool:
    """Make glibc keep freed memory for reuse instead of mapping and unmapping large blocks.

    By default glibc serves blocks above its mmap threshold (128 KB, rising up to 32 MB) with a fresh mmap and
    gives them back with munmap, so a training step's large activations are page-faulted and zeroed by the
    kernel again every step. Serving them from the heap and never trimming it keeps them resident. Measured on a
    CNN/DailyMail-like minilm2minilm training step (batch 4 x 512 tokens) on this project's 2-core CPU: minor
    page faults 574k -> 62k a step, kernel time 1.59 s -> 0.21 s, step 3.57 s -> 2.58 s; the same computation.
    The process keeps the memory it freed until it exits.

    Returns:
        True if applied (Linux with glibc), False otherwise.
    """
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # not glibc (musl, ...)
        return False
    return bool(mallopt(_M_MMAP_MAX, 0)) and bool(mallopt(_M_TRIM_THRESHOLD, 2**31 - 1))
