"""Precision: what `auto` resolves to on each kind of device, and mixed precision with the fused optimizer.

The training tests run on the CPU in every precision the project can choose, whatever this machine's CPU is:
bf16 autocast works on any x86 CPU (emulated, slower, without AVX512-BF16/AMX), and the fp16 gradient-scaler path
that GPUs take is run here with a CPU GradScaler.
"""

from __future__ import annotations

import copy

import lightning as L
import pytest
import torch
from torch.utils.data import DataLoader

from src.models.module import Seq2SeqModule
from src.models.optim import build_optimizer
from src.system.hardware import cpu_has_fast_bf16, cpu_peak_tflops, gpu_peak_tflops, resolve_precision
from src.system.precision import FusedMixedPrecision, precision_args


def flags(*parts: str) -> set[str]:
    return set(" ".join(parts).split())


# `flags` lines of /proc/cpuinfo (trimmed) of the two kinds of machine this project runs on
AMD_EPYC_AVX2 = flags(
    "fpu vme de pse tsc msr pae mce cx8 apic sep mtrr pge mca cmov pat pse36 clflush mmx fxsr sse sse2 ht syscall "
    "nx mmxext fxsr_opt pdpe1gb rdtscp lm rep_good nopl cpuid extd_apicid pni pclmulqdq ssse3 fma cx16 sse4_1 "
    "sse4_2 x2apic movbe popcnt aes xsave avx f16c rdrand hypervisor lahf_lm cmp_legacy abm sse4a misalignsse "
    "3dnowprefetch osvw topoext fsgsbase bmi1 avx2 smep bmi2 erms invpcid rdseed adx smap clflushopt clwb sha_ni "
    "xsaveopt xsavec xgetbv1 xsaves clzero xsaveerptr rdpru wbnoinvd arat umip pku ospke vaes vpclmulqdq rdpid"
)
INTEL_XEON_AMX = flags(
    "fpu vme de pse tsc msr pae mce cx8 apic sep mtrr pge mca cmov pat pse36 clflush mmx fxsr sse sse2 ss ht "
    "syscall nx pdpe1gb rdtscp lm constant_tsc rep_good nopl xtopology nonstop_tsc cpuid tsc_known_freq pni "
    "pclmulqdq ssse3 fma cx16 pcid sse4_1 sse4_2 x2apic movbe popcnt aes xsave avx f16c rdrand hypervisor lahf_lm "
    "abm avx2 avx512f avx512dq avx512ifma avx512cd avx512bw avx512vl avx_vnni avx512_bf16 avx512vbmi "
    "avx512_vbmi2 gfni vaes avx512_vnni avx512_bitalg amx_bf16 avx512_fp16 amx_tile amx_int8"
)
ICELAKE_AVX512_NO_BF16 = INTEL_XEON_AMX - {"avx512_bf16", "amx_bf16", "amx_tile", "amx_int8", "avx512_fp16"}


# ---- what `auto` means ------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("flags", "expected"),
    [(AMD_EPYC_AVX2, "32-true"), (INTEL_XEON_AMX, "bf16-mixed"), (ICELAKE_AVX512_NO_BF16, "32-true")],
    ids=["amd-epyc-avx2", "intel-xeon-amx", "avx512-without-bf16"],
)
def test_auto_on_each_cpu_kind(flags, expected):
    assert resolve_precision("auto", "cpu", cuda=False, flags=flags) == expected
    assert resolve_precision("auto", "auto", cuda=False, flags=flags) == expected


@pytest.mark.parametrize(("bf16", "expected"), [(True, "bf16-mixed"), (False, "16-mixed")])
def test_auto_on_a_cuda_gpu_with_and_without_bf16(bf16, expected):
    # the CPU's flags do not matter once a GPU is used
    assert resolve_precision("auto", "gpu", cuda=True, cuda_bf16=bf16, flags=AMD_EPYC_AVX2) == expected
    assert resolve_precision("auto", "auto", cuda=True, cuda_bf16=bf16, flags=INTEL_XEON_AMX) == expected


@pytest.mark.parametrize("given", ["32-true", "bf16-mixed", "16-mixed", "bf16-true", 32])
def test_an_explicit_precision_passes_through(given):
    assert resolve_precision(given, "cpu", cuda=False, flags=INTEL_XEON_AMX) == given


@pytest.mark.parametrize(("value", "expected"), [("1", True), ("0", False)])
def test_warmstart_cpu_bf16_forces_the_cpu_answer(monkeypatch, value, expected):
    monkeypatch.setenv("WARMSTART_CPU_BF16", value)
    assert cpu_has_fast_bf16() is expected
    assert cpu_has_fast_bf16(AMD_EPYC_AVX2) is False  # given flags win over the environment


def test_precision_args_put_mixed_precision_through_the_fused_plugin(caplog):
    assert precision_args("32-true", "cpu") == {"precision": "32-true"}
    (plugin,) = precision_args("bf16-mixed", "cpu")["plugins"]
    assert isinstance(plugin, FusedMixedPrecision)
    assert (plugin.precision, plugin.device, plugin.scaler) == ("bf16-mixed", "cpu", None)
    (plugin,) = precision_args("16-mixed", "cpu")["plugins"]  # as Lightning does: no fp16 autocast on CPUs
    assert plugin.precision == "bf16-mixed"
    assert "16-mixed is for GPUs" in caplog.text


def test_peak_tflops_of_each_cpu_kind_and_known_gpus():
    # cores x GHz x FLOPs/cycle: AVX2 FMA 32, AVX-512 FMA 64, AMX bf16 1024; bf16 without it runs at the fp32 rate
    assert cpu_peak_tflops("32-true", AMD_EPYC_AVX2, cores=2, ghz=2.5) == pytest.approx(0.16)
    assert cpu_peak_tflops("bf16-mixed", AMD_EPYC_AVX2, cores=2, ghz=2.5) == pytest.approx(0.16)
    assert cpu_peak_tflops("32-true", INTEL_XEON_AMX, cores=2, ghz=2.6) == pytest.approx(0.3328)
    assert cpu_peak_tflops("bf16-mixed", INTEL_XEON_AMX, cores=2, ghz=2.6) == pytest.approx(5.3248)
    assert gpu_peak_tflops("NVIDIA H100 80GB HBM3") == 989.0 and gpu_peak_tflops("NVIDIA H100 PCIe") == 756.0
    assert gpu_peak_tflops("NVIDIA A100-SXM4-80GB") == 312.0 and gpu_peak_tflops("Some Future GPU") is None


# ---- mixed precision with the fused optimizer and clipping ------------------------------------------------------
CLIP, STEPS, LR = 0.05, 4, 1e-3


def tiny_module(tiny, optimizer: str, lr: float | None = None, **model) -> Seq2SeqModule:
    torch.manual_seed(0)
    model = {
        "encoder": tiny["bert"],
        "decoder": tiny["bert"],
        "sharing": "none",
        **model,
    }
    module = Seq2SeqModule(
        model=model,
        optimizer={
            "name": optimizer,
            "lr": lr or (LR if optimizer == "adamw_linear" else 0.01),
            "warmup_steps": 2,
            "weight_decay": 0.01,
        },
        generation={"num_beams": 1, "max_new_tokens": 4},
    )
    for m in module.modules():  # both paths must compute the same function: no dropout masks
        if isinstance(m, torch.nn.Dropout):
            m.p = 0.0
    return module


def batches(vocab: int, n: int, seed: int = 0) -> list[dict]:
    """Random teacher-forcing batches with padding on both sides (B=4, source 12, target 8)."""
    g = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(n):
        ids = torch.randint(5, vocab, (4, 12), generator=g)
        mask = torch.ones_like(ids)
        mask[0, 9:] = 0
        labels = torch.randint(5, vocab, (4, 8), generator=g)
        dec_mask = torch.ones_like(labels)
        dec_mask[1, 5:] = 0
        out.append(
            {
                "input_ids": ids.masked_fill(mask == 0, 0),
                "attention_mask": mask,
                "decoder_input_ids": torch.cat([torch.full((4, 1), 2), labels[:, :-1]], dim=1),
                "decoder_attention_mask": dec_mask,
                "labels": labels.masked_fill(dec_mask == 0, -100),
            }
        )
    return out


def lightning_path(module: Seq2SeqModule, data: list[dict], plugin_args: dict, accumulate: int) -> None:
    """The project's path: a Lightning Trainer, the configured (fused) optimizer, gradient_clip_val."""
    trainer = L.Trainer(
        accelerator="cpu",
        devices=1,
        max_steps=STEPS,
        gradient_clip_val=CLIP,
        accumulate_grad_batches=accumulate,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        limit_val_batches=0,
        **plugin_args,
    )
    trainer.fit(module, train_dataloaders=DataLoader(data, batch_size=None))
    assert trainer.global_step == STEPS


def reference_path(
    module: Seq2SeqModule, data: list[dict], dtype, accumulate: int, clip: float | None
) -> list:
    """Plain PyTorch: autocast, (scaled) backward, unscale, the gradients made per target token of the step,
    clip_grad_norm_, a non-fused step. Returns the norms."""
    opt_cfg = {k: v for k, v in module.hparams.optimizer.items() if k != "fused"}
    opt, sched = build_optimizer(
        module.model,
        total_steps=STEPS,
        hidden_size=module.model.decoder.config.hidden_size,
        fused=False,
        **opt_cfg,
    )
    assert not opt.defaults.get("fused")
    scaler = torch.amp.GradScaler("cpu") if dtype == torch.float16 else None
    module.train()
    norms = []
    for step in range(STEPS):
        window = data[step * accumulate : (step + 1) * accumulate]
        tokens = sum(int((b["labels"] != -100).sum()) for b in window)
        for batch in window:
            with torch.autocast(
                "cpu", dtype=dtype or torch.bfloat16, enabled=dtype is not None, cache_enabled=False
            ):
                logits, labels = module.labelled_logits(batch)
                # as the module computes it: the summed loss over a constant (its first batch's label slots)
                summed = torch.nn.functional.cross_entropy(logits, labels, reduction="sum")
                loss = summed / data[0]["labels"].numel() / accumulate
            (scaler.scale(loss) if scaler else loss).backward()
        if scaler:
            scaler.unscale_(opt)
        params = [p for g in opt.param_groups for p in g["params"]]
        for p in params:  # ... then per target token of the step (Seq2SeqModule.normalize_gradients)
            if p.grad is not None:
                p.grad.mul_(accumulate * data[0]["labels"].numel() / tokens)
        norms.append(float(torch.nn.utils.clip_grad_norm_(params, clip if clip else float("inf"))))
        if scaler:
            scaler.step(opt)
            scaler.update()
        else:
            opt.step()
        opt.zero_grad()
        sched.step()
    return norms


def max_difference(a: Seq2SeqModule, b: Seq2SeqModule) -> float:
    pb = dict(b.model.named_parameters())
    return max(float((p - pb[n]).detach().abs().max()) for n, p in a.model.named_parameters())


# Tolerances on the largest parameter difference after STEPS steps (each step moves a weight by up to ~lr = 1e-3),
# set from the margin between noise and signal, measured on every CPU kind seen:
# - noise, the fused vs the plain step: 2e-8 to 2.5e-8 in fp32; under autocast 4e-9 to 1.2e-7 on an Intel Xeon with
#   AMX (oneDNN held to AVX512_CORE_BF16 and to AVX2 included) and 3.33e-5 on an AMD EPYC with AVX512-BF16 and no
#   AMX, whose kernels round a bf16/fp16 operand differently: one flipped rounding moves a weight by ~1e-5;
# - signal, what the check must tell apart: without clipping the parameters differ by 2.1e-3 to 7.5e-3, and every
#   run moves a weight by 3.0e-3 to 3.8e-3.
# Under autocast the tolerance is a tenth of the smallest signal (2e-4, 6x the largest noise seen); the checks
# below require the signal to exceed SIGNAL x the tolerance, which leaves the smallest measured signal 2x room.
TOLERANCE = {None: 1e-6, torch.bfloat16: 2e-4, torch.float16: 2e-4}
SIGNAL = 5


@pytest.mark.parametrize(
    ("precision", "optimizer", "accumulate"),
    [
        ("32-true", "adamw_linear", 1),
        ("bf16-mixed", "adamw_linear", 1),
        ("bf16-mixed", "adam_rsqrt", 2),
        ("16-mixed", "adamw_linear", 1),  # the GPU's gradient-scaler path, run on the CPU
        ("16-mixed", "adam_rsqrt", 2),
    ],
)
def test_fused_clipped_path_matches_plain_clipping_and_a_non_fused_step(
    tiny, precision, optimizer, accumulate
):
    dtype = {"32-true": None, "bf16-mixed": torch.bfloat16, "16-mixed": torch.float16}[precision]
    fused = tiny_module(tiny, optimizer)
    reference = copy.deepcopy(fused)
    unclipped = copy.deepcopy(fused)
    data = batches(fused.decoder_tokenizer.vocab_size, STEPS * accumulate)
    start = copy.deepcopy(fused.state_dict())

    plugin_args = (
        {"plugins": [FusedMixedPrecision(precision, "cpu")]}
        if dtype is not None
        else {"precision": precision}
    )
    lightning_path(fused, data, plugin_args, accumulate)
    configured = fused.trainer.optimizers[0]
    assert configured.defaults["fused"], "the project's path must be the fused optimizer"
    if dtype == torch.float16:
        assert fused.trainer.precision_plugin.scaler is not None

    norms = reference_path(reference, data, dtype, accumulate, CLIP)
    assert min(norms) > 2 * CLIP, (
        f"clipping must be active on every step for this test to mean anything: {norms}"
    )
    difference = max_difference(fused, reference)
    assert difference < TOLERANCE[dtype], f"fused+clipped vs reference: {difference:.2e}"

    # the same check tells clipped from unclipped (or from clipping scaled gradients): it can fail
    reference_path(unclipped, data, dtype, accumulate, clip=None)
    assert max_difference(fused, unclipped) > SIGNAL * TOLERANCE[dtype]
    moved = max(
        float((p.detach() - start[f"model.{n}"]).abs().max()) for n, p in fused.model.named_parameters()
    )
    assert moved > SIGNAL * TOLERANCE[dtype]


@pytest.mark.parametrize("precision", ["bf16-mixed", "16-mixed"])
@pytest.mark.parametrize(
    "model",
    [
        {"sharing": "none"},
        {"sharing": "embeddings"},
        {"sharing": "shared"},
        {"decoder": "gpt2", "encoder": None, "sharing": "none"},
    ],
    ids=["none", "embeddings", "shared", "gpt"],
)
def test_every_sharing_mode_and_the_decoder_only_model_train_under_mixed_precision(tiny, precision, model):
    model = {k: tiny.get(v, v) if k == "decoder" else v for k, v in model.items()}
    module = tiny_module(tiny, "adamw_linear", lr=1e-2, **model)
    losses = []

    class Losses(L.Callback):
        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            losses.append(float(outputs["loss"]))

    repeated = (
        batches(module.decoder_tokenizer.vocab_size, 1) * 12
    )  # one batch again and again: loss must fall
    tied_before = {id(p) for p in module.model.parameters()}
    trainer = L.Trainer(
        accelerator="cpu",
        max_steps=12,
        gradient_clip_val=1.0,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        limit_val_batches=0,
        callbacks=[Losses()],
        plugins=[FusedMixedPrecision(precision, "cpu")],
    )
    trainer.fit(module, train_dataloaders=DataLoader(repeated, batch_size=None))
    assert trainer.global_step == 12
    assert all(torch.isfinite(torch.tensor(losses))), losses
    assert losses[-1] < 0.7 * losses[0], losses
    assert {id(p) for p in module.model.parameters()} == tied_before  # sharing survives the optimizer
