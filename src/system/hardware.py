"""Hardware-dependent defaults: `trainer.precision=auto` picks bf16 only where it is fast; host memory reuse."""

from __future__ import annotations

import ctypes
import os
import platform
import resource
import sys

import torch


def peak_memory_mb() -> float:
    """Peak GPU memory allocated by this process, else its peak resident memory (RSS), in MiB."""
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        return torch.cuda.max_memory_allocated() / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


def _cpuinfo(field: str) -> str | None:
    """The value of the first `field` line of /proc/cpuinfo, or None where there is none."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            line = next((line for line in f if line.startswith(field)), None)
    except OSError:
        return None
    return line.split(":", 1)[1].strip() if line else None


def cpu_flags() -> set[str]:
    """This CPU's feature flags as /proc/cpuinfo lists them (empty where it cannot be read)."""
    return set((_cpuinfo("flags") or "").split())


#: CPU flags that make bf16 matrix products native (else they are emulated through fp32)
FAST_BF16_FLAGS = frozenset({"avx512_bf16", "amx_bf16"})


def cpu_has_fast_bf16(flags: set[str] | None = None) -> bool:
    """AVX512-BF16 or AMX: without them bf16 autocast on the CPU is emulated and many times slower than fp32.

    Args:
        flags: CPU feature flags; None reads this machine's, unless `WARMSTART_CPU_BF16=0|1` says the answer
            (to run the whole suite as on the other kind of CPU).
    """
    if flags is None:
        forced = os.environ.get("WARMSTART_CPU_BF16")
        if forced is not None:
            return forced.strip().lower() in ("1", "true", "yes")
        flags = cpu_flags()
    return bool(FAST_BF16_FLAGS & set(flags))


def uses_cuda(accelerator: str = "auto") -> bool:
    """Whether a Trainer with this `accelerator` runs on a CUDA GPU here."""
    return str(accelerator) in ("auto", "gpu", "cuda") and torch.cuda.is_available()


def resolve_precision(
    precision: str | int,
    accelerator: str = "auto",
    *,
    cuda: bool | None = None,
    cuda_bf16: bool | None = None,
    flags: set[str] | None = None,
) -> str | int:
    """Map `auto` to what is fastest on the device; other values pass through.

    GPU: bf16-mixed where the card supports bf16 (Ampere and later), else 16-mixed (with a gradient scaler).
    CPU: bf16-mixed with AVX512-BF16/AMX, else 32-true (see docs/performance.md, "Precision", for the measurements).

    Args:
        cuda: whether a CUDA GPU is used; None: `accelerator` allows one and this machine has one.
        cuda_bf16: whether that GPU supports bf16; None asks it.
        flags: the CPU's feature flags; None reads this machine's (see `cpu_has_fast_bf16`).
    """
    if precision != "auto":
        return precision
    if cuda if cuda is not None else uses_cuda(accelerator):
        bf16 = cuda_bf16 if cuda_bf16 is not None else torch.cuda.is_bf16_supported()
        return "bf16-mixed" if bf16 else "16-mixed"
    return "bf16-mixed" if cpu_has_fast_bf16(flags) else "32-true"


def cpu_model() -> str:
    """The CPU's model name as /proc/cpuinfo (and lscpu) give it, or the platform's machine type."""
    return _cpuinfo("model name") or platform.machine()


def cpu_ghz() -> float | None:
    """The clock /proc/cpuinfo gives ("cpu MHz": the nominal one in a VM), in GHz; None where it cannot be read."""
    mhz = _cpuinfo("cpu MHz")
    return float(mhz) / 1000 if mhz else None


def cpu_flops_per_cycle(precision: str | int, flags: set[str]) -> int:
    """Dense FLOPs per cycle per core (an FMA counts 2) of the matrix products a precision runs on.

    fp32: two FMA units of 16 lanes with AVX-512 (64), of 8 lanes with AVX2 (32). bf16-mixed: AMX tiles (1024,
    Intel's figure for Sapphire Rapids), else AVX512-BF16 dot products (two units x 32 bf16 pairs: 128); without
    either, bf16 is computed through fp32 and the fp32 figure is the ceiling.
    """
    fp32 = 64 if "avx512f" in flags else 32 if "avx2" in flags else 16
    if str(precision).startswith("bf16"):
        if "amx_bf16" in flags:
            return 1024
        if "avx512_bf16" in flags:
            return 128
    return fp32


def cpu_peak_tflops(
    precision: str | int, flags: set[str] | None = None, cores: int | None = None, ghz: float | None = None
) -> float | None:
    """This CPU's peak TFLOP/s for a precision: cores x clock x FLOPs per cycle (None if the clock is unknown).

    Args:
        flags, cores, ghz: the CPU's; None reads this machine's (cores: those this process may use).
    """
    flags = cpu_flags() if flags is None else flags
    cores = cores or len(os.sched_getaffinity(0))
    ghz = ghz or cpu_ghz()
    return cores * ghz * cpu_flops_per_cycle(precision, flags) / 1000 if ghz else None


#: Dense bf16/fp16 tensor-core peaks (TFLOP/s, without sparsity) of common cards, matched in the device name.
GPU_PEAK_TFLOPS = {
    "H200": 989.0,
    "H100 PCIe": 756.0,
    "H100": 989.0,  # SXM
    "A100": 312.0,
    "L40S": 362.0,
    "L4": 121.0,
    "A10G": 70.0,
    "V100": 125.0,  # fp16 only
    "T4": 65.0,  # fp16 only
}


def gpu_peak_tflops(name: str) -> float | None:
    """The bf16/fp16 peak of a card from its name (torch.cuda.get_device_name), or None if not in the table."""
    return next((peak for key, peak in GPU_PEAK_TFLOPS.items() if key in name), None)


def device_peak_tflops(device_type: str, precision: str | int) -> float | None:
    """The peak TFLOP/s MFU is taken against: a known GPU's bf16/fp16 tensor-core peak (None in fp32 or for a
    card missing from GPU_PEAK_TFLOPS), else this CPU's for the precision."""
    if device_type == "cuda":
        return None if str(precision).startswith("32") else gpu_peak_tflops(torch.cuda.get_device_name())
    return cpu_peak_tflops(precision)


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
