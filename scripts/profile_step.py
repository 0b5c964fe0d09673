"""Where one training step of this project's model spends its time: a torch.profiler breakdown by category.

    python -m scripts.profile_step                    # minilm2minilm, cnndm + gigaword, 32-true + bf16-mixed
    python -m scripts.profile_step --workloads cnndm --precision 32-true --steps 3 --out outputs/profile.json
    python -m scripts.profile_step --quick --encoder DIR --decoder DIR --precision 32-true   # tiny, seconds

The model, data and optimizer are the benchmark's project side (scripts/bench/project.py): the config composed
from conf/ as `python -m src.train` composes it (`project_config`), `src.run.assemble.build_module` and
`build_datamodule`, the workload files of scripts/bench/workloads.py (`make_workload`), real training batches
from the train dataloader (length-bucketed, in the order training sees them), and the optimizer of
`Seq2SeqModule.configure_optimizers()` (fused AdamW). Every (workload, precision) then runs `--warmup`
unprofiled steps and `--steps` profiled ones, by hand, as Lightning's automatic optimisation runs them:

    forward    module.loss(batch) (encoder, decoder, the LM head on labelled positions only, cross-entropy),
               in the precision plugin's forward context (bf16-mixed: the project's FusedMixedPrecision, i.e.
               torch.autocast("cpu", dtype=torch.bfloat16, cache_enabled=False), as Lightning's)
    backward   loss.backward() (outside autocast, as in Lightning)
    clip       the plugin's clip_gradients(optimizer, 1.0) (clip_grad_norm_ over all parameters)
    optimizer  optimizer.step(), the LR scheduler's step, optimizer.zero_grad(set_to_none=True)

each inside a `record_function` of that name, and the LM head (BERT's `cls`: transform + vocabulary
projection) inside one named `lm_head` (its module's forward is wrapped; the computation is unchanged); the
step ends with training_step's torch.isfinite(loss) check (elementwise, microseconds). Without a trainer
`configure_optimizers` plans a 1-step linear schedule, so the learning rate is 0 after the first step: the
fused AdamW kernel does the same work at any learning rate, so the timing does not change.

Categories: every profiler event's *self* CPU time (its time minus its children's, so nothing counts twice;
the categories sum to the profiled total) goes to exactly one category.

1. Whole subtrees owned by a context (the outermost one wins):
   - `lm_head_loss`  LM head + loss: everything inside `lm_head` (its linears, GELU, LayerNorm), the labelled
     positions' cross-entropy (cross_entropy_loss, log_softmax, nll_loss) and the backward of all of these.
     The backward is linked to its forward op by the autograd sequence number (the profiler records the
     forward op's sequence number on the autograd node that differentiates it).
   - `attention`  scaled_dot_product_attention and everything under it (flash-attention CPU kernels, or the
     math path's bmm / softmax / masking / dropout), and its backward, linked the same way.
   - `embedding`  aten::embedding (index_select) and its backward (embedding_dense_backward).
   - `optimizer`  everything in the `optimizer` region (aten::_fused_adamw_, the step-count _foreach_add_,
     Python of Optimizer.step / zero_grad, the schedule).
   - `clip`  everything in the `clip` region (_foreach_norm, stack, the norm, _foreach_mul_).
2. Otherwise by the op's own name (backward nodes such as AddmmBackward0 by the op they differentiate):
   - `matmul`  mm, addmm, bmm, baddbmm, matmul, linear, addmv, mv, dot, the mkldnn / oneDNN linear and matmul
     ops, and their backward nodes (whose mm's are matmuls by name anyway). Bias gradients (aten::sum under
     AddmmBackward0) count here too.
   - `elementwise_norm`  softmax (outside attention), GELU, LayerNorm, dropout (bernoulli_ / mul / div),
     residual adds and every other elementwise or comparison op (mask building: ge, bitwise_and, where,
     masked_fill ...) and their backward.
   - `alloc_copy`  allocation, copies and casts: empty*, zeros, ones, full, arange, copy_, to / _to_copy
     (autocast's fp32->bf16 weight casts are here), contiguous, clone, cat, stack, fill_, zero_, resize_, and
     the gathers / scatters of indexing (the loss's hidden[labels != -100], its index_put_ backward).
   - `optimizer`  a fused Adam(W) or _foreach_ op outside the optimizer region.
   - `overhead`  Python, dispatcher and autograd bookkeeping: the self time of the `forward` / `backward` /
     `train_step` regions (the Python of the model's modules between ops), of the autograd engine's
     evaluate_function wrappers and AccumulateGrad, and view / metadata ops (view, reshape, transpose,
     expand, slice, detach, ...) that are not inside an op of another category.
3. View ops, reductions and unknown ops inside an op of a category in 2 take that category (aten::t inside
   aten::linear is matmul); reductions outside any are elementwise; anything left is `other` (the JSON lists
   the ops that went there).

Caveats: the LM head's matmuls are in `lm_head_loss`, not `matmul`; with the eager attention implementation
(attn_implementation=eager) there is no SDPA op, so attention's bmm's count as matmul and its softmax as
elementwise; the attention-mask preparation outside SDPA is elementwise / alloc_copy. Self CPU time is the
main thread's: intra-op (OpenMP) worker threads run inside the op that started them, so a matmul on N
threads counts its wall time once. Profiling adds a little per op; compare the profiled steps' wall times
with the warm-up steps'.

Per (workload, precision) it prints a Markdown table (category, ms per step, share of the profiled self
time), the median step wall time, model TFLOP/s (src.models.flops.train_flops of each batch's real lengths
over the profiled steps' wall time) and MFU against src.system.hardware.cpu_peak_tflops for the precision,
and the top 15 ops by self CPU time. --out writes all of it as JSON.
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import sys
import tempfile
import time
import warnings
from collections import defaultdict
from pathlib import Path

import lightning as L
import torch
from lightning.pytorch.plugins.precision import Precision
from torch.profiler import ProfilerActivity, profile, record_function

from scripts.bench.project import project_config
from scripts.bench.workloads import MINILM, QUICK, WORKLOADS, make_workload
from scripts.benchmark import machine
from src.config.data import per_device_batch_size
from src.models.flops import model_configs, train_flops
from src.models.module import lm_head
from src.run.assemble import build_datamodule, build_module
from src.system.hardware import cpu_peak_tflops, resolve_precision
from src.system.outputs import markdown_table
from src.system.precision import precision_args
from src.system.process import setup_process

CATEGORIES = {
    "matmul": "matmul / linear",
    "attention": "attention (SDPA)",
    "elementwise_norm": "softmax / GELU / LayerNorm / dropout / elementwise",
    "lm_head_loss": "LM head + loss",
    "embedding": "embedding",
    "optimizer": "optimizer",
    "clip": "gradient clipping",
    "alloc_copy": "allocation / copies / casts",
    "overhead": "Python / dispatcher / autograd overhead",
    "other": "other",
}

REGIONS = ("forward", "backward", "clip", "optimizer")
STEP, HEAD = "train_step", "lm_head"

# ---- categorisation ----------------------------------------------------------------------------------------
_MATMUL = {
    "mm", "addmm", "bmm", "baddbmm", "addbmm", "matmul", "linear", "addmv", "mv", "dot", "vdot",
    "addmm_activation", "int_mm", "scaled_mm", "mkl_linear", "mkldnn_linear", "mkldnn_matmul",
    "linear_pointwise", "linear_pointwise_binary", "qlinear_pointwise",
}  # fmt: skip
_ELEMENTWISE = {
    "softmax", "gelu", "layer_norm", "native_layer_norm", "rms_norm", "group_norm", "batch_norm",
    "native_batch_norm", "dropout", "native_dropout", "feature_dropout", "bernoulli", "add", "sub", "rsub",
    "mul", "div", "neg", "tanh", "erf", "exp", "log", "pow", "sqrt", "rsqrt", "reciprocal", "relu",
    "threshold", "silu", "sigmoid", "where", "masked_fill", "clamp", "clamp_min", "clamp_max", "maximum",
    "minimum", "ge", "gt", "le", "lt", "eq", "ne", "bitwise_and", "bitwise_or", "bitwise_not", "bitwise_xor",
    "logical_and", "logical_or", "logical_not", "and", "or", "invert", "abs", "sign", "lerp", "addcmul",
    "addcdiv", "square", "triu", "tril", "isfinite", "isnan", "isinf",
}  # fmt: skip
_ALLOC_COPY = {
    "empty", "empty_like", "empty_strided", "new_empty", "new_empty_strided", "zeros", "zeros_like",
    "new_zeros", "ones", "ones_like", "new_ones", "full", "full_like", "new_full", "scalar_tensor", "arange",
    "copy", "to", "to_copy", "contiguous", "clone", "cat", "stack", "fill", "zero", "resize", "index",
    "index_put", "index_put_impl", "nonzero", "masked_select", "gather", "scatter", "scatter_add",
    "index_add", "index_select", "lift_fresh", "lift_fresh_copy", "masked_scatter", "narrow_copy",
    "copy_from", "pin_memory",
}  # fmt: skip
_VIEW = {
    "view", "reshape", "reshape_alias", "unsafe_view", "t", "transpose", "permute", "expand", "expand_as",
    "as_strided", "select", "slice", "unsqueeze", "squeeze", "split", "split_with_sizes", "chunk", "unbind",
    "detach", "alias", "flatten", "unflatten", "narrow", "numel", "item", "local_scalar_dense", "is_nonzero",
    "resolve_conj", "resolve_neg", "conj", "view_as", "view_as_real", "size", "stride", "type_as",
}  # fmt: skip
_REDUCTION = {"sum", "mean", "all", "any", "amax", "amin", "max", "min", "norm", "linalg_vector_norm"}
_LOSS = {"cross_entropy_loss", "cross_entropy", "log_softmax", "nll_loss", "nll_loss_nd", "nll_loss_forward"}
_ATTENTION = re.compile(r"scaled_dot_product|flash_attention|efficient_attention|^sdp|attention")
_EMBEDDING = re.compile(r"^embedding")
_OPTIMIZER = re.compile(r"^(fused_adamw?|adamw?|fused_sgd|foreach_.*)$")
_INHERITABLE = ("matmul", "elementwise_norm", "alloc_copy")
_WRAPPER = "autograd::engine::evaluate_function: "


def op_name(raw: str) -> tuple[str, bool]:
    """(the op a profiler event runs, normalised; whether it is an autograd backward node or its wrapper).

    aten::_softmax_backward_data -> softmax; NativeLayerNormBackward0 -> native_layer_norm; aten::add_ -> add.
    """
    name = raw.removeprefix(_WRAPPER)
    name = name.rsplit("::", 1)[-1]
    node = re.fullmatch(r"(\w+?)Backward\d*", name)
    if node:
        name = re.sub(r"(?<!^)(?=[A-Z])", "_", node.group(1))
    name = name.lower().strip("_")
    name = re.sub(r"_backward(_data|_input|_weight)?$", "", name).strip("_")
    return name, bool(node) or raw.startswith(_WRAPPER)


def owner(raw: str) -> str | None:
    """The category that owns this event's whole subtree by its name alone, or None."""
    if raw == HEAD:
        return "lm_head_loss"
    if raw == "clip":
        return "clip"
    if raw == "optimizer" or raw.startswith("Optimizer."):
        return "optimizer"
    name, _ = op_name(raw)
    if name in _LOSS:
        return "lm_head_loss"
    if _ATTENTION.search(name):
        return "attention"
    if _EMBEDDING.search(name):
        return "embedding"
    return None


def own_category(raw: str) -> str:
    """An event's category by its own name, or `view` / `reduction` / `unknown` (its parents decide)."""
    if raw in ("forward", "backward", STEP) or raw.startswith(_WRAPPER) or "AccumulateGrad" in raw:
        return "overhead"
    if raw == "detach":  # the autograd-internal detach under AccumulateGrad
        return "overhead"
    name, _ = op_name(raw)
    if name in _MATMUL or (
        raw.split("::")[0] in ("mkldnn", "onednn") and re.search("linear|mm|matmul", name)
    ):
        return "matmul"
    if name in _ELEMENTWISE:
        return "elementwise_norm"
    if name in _ALLOC_COPY:
        return "alloc_copy"
    if _OPTIMIZER.match(name):
        return "optimizer"
    if name in _VIEW:
        return "view"
    if name in _REDUCTION:
        return "reduction"
    return "unknown"


def _descendants(event):
    stack = [event]
    while stack:
        e = stack.pop()
        yield e
        stack.extend(e.cpu_children)


def categorise(events) -> tuple[dict[str, float], dict[str, dict[str, float]]]:
    """({category: self CPU us}, {event name: {category: self CPU us}}) of `prof.events()`."""
    roots = [e for e in events if e.cpu_parent is None]
    # forward ops inside an owner: their autograd sequence numbers give the owner its backward nodes
    by_sequence: dict[int, str] = {}

    def collect(e) -> None:
        if e.name == "backward" or op_name(e.name)[1]:
            return
        o = owner(e.name)
        if o in ("lm_head_loss", "attention", "embedding"):
            for d in _descendants(e):
                if d.sequence_nr is not None and d.sequence_nr >= 0:
                    by_sequence.setdefault(d.sequence_nr, o)
            return
        for c in e.cpu_children:
            collect(c)

    for r in roots:
        collect(r)

    totals: dict[str, float] = defaultdict(float)
    per_op: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))

    def visit(e, owned: str | None, inherited: str | None) -> None:
        if owned is None:
            owned = owner(e.name)
            if owned is None and op_name(e.name)[1] and e.sequence_nr in by_sequence:
                owned = by_sequence[e.sequence_nr]
        if owned is not None:
            cat = owned
        else:
            own = own_category(e.name)
            if own in _INHERITABLE:
                cat = inherited = own
            elif own in ("overhead", "optimizer"):
                cat = own
            elif inherited is not None:  # a view, reduction or unknown op inside a categorised op
                cat = inherited
            else:
                cat = {"view": "overhead", "reduction": "elementwise_norm", "unknown": "other"}[own]
        totals[cat] += e.self_cpu_time_total
        per_op[e.name][cat] += e.self_cpu_time_total
        for c in e.cpu_children:
            visit(c, owned, inherited)

    for r in roots:
        visit(r, None, None)
    return dict(totals), {k: dict(v) for k, v in per_op.items()}


# ---- one (workload, precision) -----------------------------------------------------------------------------
def plugin_for(precision: str):
    """(the Lightning precision plugin a Trainer of this project runs (`precision_args`), the precision)."""
    resolved = resolve_precision(precision, "cpu")
    args = precision_args(resolved, "cpu")
    if "plugins" in args:
        return args["plugins"][0], str(args["plugins"][0].precision)
    if str(resolved) not in ("32-true", "32"):
        raise SystemExit(
            f"profile_step: precision {precision} is not supported here; use 32-true or bf16-mixed"
        )
    return Precision(), "32-true"


def batches_from(datamodule, n: int) -> list[dict]:
    """The first n training batches in the order training sees them (the next epochs' if one is too short)."""
    out, epoch = [], 0
    loader = datamodule.train_dataloader()
    while len(out) < n:
        loader.batch_sampler.set_epoch(epoch)
        out += [b for _, b in zip(range(n - len(out)), loader, strict=False)]
        epoch += 1
    return out


def optimizer_of(configured) -> tuple:
    """(optimizer, scheduler or None) of what configure_optimizers returned: an optimizer, a dict, a list of
    optimizers, or ([optimizers], [schedulers])."""
    scheduler = None
    if isinstance(configured, dict):
        optimizer, scheduler = configured["optimizer"], configured.get("lr_scheduler")
    elif isinstance(configured, (list, tuple)):
        first = configured[0]
        if isinstance(first, (list, tuple)):
            optimizer = first[0]
            scheduler = configured[1][0] if len(configured) > 1 and configured[1] else None
        else:
            optimizer = first["optimizer"] if isinstance(first, dict) else first
    else:
        optimizer = configured
    if isinstance(scheduler, dict):
        scheduler = scheduler["scheduler"]
    return optimizer, scheduler


def wrap_head(module) -> bool:
    """Wrap the LM head's forward (on the instance) in record_function('lm_head'); False: no head."""
    head = lm_head(module.model)
    if head is None:
        return False
    forward = head.forward

    def labelled(*args, **kwargs):
        with record_function(HEAD):
            return forward(*args, **kwargs)

    head.forward = labelled
    return True


def profile_one(name: str, spec: dict, precision: str, args, tmp: Path, log) -> dict:
    plugin, resolved = plugin_for(precision)
    run_dir = tmp / f"{name}-{resolved}"
    job = dict(
        spec={**spec, "steps": args.warmup + args.steps},
        encoder=args.encoder,
        decoder=args.decoder,
        data=str(tmp / name),
        precision=resolved,
        seed=args.seed,
        overrides=args.override,
    )
    cfg = project_config(job, str(run_dir))
    setup_process(cfg.reuse_host_memory)
    L.seed_everything(cfg.seed, workers=True)
    module = build_module(cfg)
    if cfg.trainer.compile and not module.compiled:
        module.compile_model()
    if not (tmp / name / "train.jsonl").is_file():
        make_workload(spec, module.decoder_tokenizer, tmp / name, seed=0)
    datamodule = build_datamodule(cfg.data, module, cfg.seed)
    datamodule.batch_size = per_device_batch_size(cfg.data, 1, 1)
    datamodule.prepare(["train"])
    batches = batches_from(datamodule, args.warmup + args.steps)
    optimizer, scheduler = optimizer_of(module.configure_optimizers())
    head_wrapped = wrap_head(module)
    module.train()

    def step(batch: dict) -> float:
        start = time.perf_counter()
        with record_function(STEP):
            with record_function("forward"), plugin.forward_context():
                loss = module.loss(batch)
            with record_function("backward"):
                loss.backward()
            with record_function("clip"):
                plugin.clip_gradients(optimizer, clip_val=cfg.trainer.gradient_clip_val or 0.0)
            with record_function("optimizer"):
                optimizer.step()
                if scheduler is not None:
                    scheduler.step()
                optimizer.zero_grad(set_to_none=True)
            finite = bool(torch.isfinite(loss))  # training_step's check (it skips or stops on a NaN/inf loss)
        if not finite:
            raise SystemExit(f"profile_step: non-finite loss on {name} {resolved}")
        return time.perf_counter() - start

    warm = [step(b) for b in batches[: args.warmup]]
    profiled = batches[args.warmup :]
    with profile(activities=[ProfilerActivity.CPU], record_shapes=False) as prof:
        times = [step(b) for b in profiled]
    n = len(profiled)
    averages = prof.key_averages()
    total_us = sum(e.self_cpu_time_total for e in averages)
    events = prof.events()
    totals, per_op = categorise(events)
    regions = defaultdict(float)
    for e in events:
        if e.name in REGIONS:
            regions[e.name] += e.cpu_time_total
    enc_cfg, dec_cfg = model_configs(module.model)
    flops = [sum(train_flops(enc_cfg, dec_cfg, S, T) for S, T in b["lengths"]) for b in profiled]
    tflops = sum(flops) / sum(times) / 1e12
    peak = cpu_peak_tflops(resolved)
    categories = {
        k: {
            "label": label,
            "ms_per_step": totals.get(k, 0.0) / n / 1e3,
            "share": totals.get(k, 0.0) / total_us if total_us else 0.0,
        }
        for k, label in CATEGORIES.items()
    }
    top = sorted(averages, key=lambda e: e.self_cpu_time_total, reverse=True)[:15]
    other = sorted(
        ((op, cats["other"]) for op, cats in per_op.items() if cats.get("other")), key=lambda x: -x[1]
    )
    result = {
        "workload": name,
        "precision": resolved,
        "batch_size": datamodule.batch_size,
        "threads": torch.get_num_threads(),
        "attention": module.attention,
        "lm_head_wrapped": head_wrapped,
        "batches": [
            {
                "examples": int(b["input_ids"].size(0)),
                "source_padded": int(b["input_ids"].size(1)),
                "target_padded": int(b["labels"].size(1)),
                "source_tokens": int(b["attention_mask"].sum()),
                "target_tokens": int(b["num_target_tokens"]),
            }
            for b in profiled
        ],
        "warmup_step_s": warm,
        "step_s": times,
        "step_s_median": statistics.median(times),
        "profiled_self_ms_per_step": total_us / n / 1e3,
        "categories": categories,
        "regions_ms_per_step": {r: regions[r] / n / 1e3 for r in REGIONS},
        "model_flops_per_step": sum(flops) / n,
        "model_tflops_per_s": tflops,
        "peak_tflops": peak,
        "mfu": tflops / peak if peak else None,
        "top_ops": [
            {
                "op": e.key,
                "self_ms_per_step": e.self_cpu_time_total / n / 1e3,
                "calls_per_step": e.count / n,
                "share": e.self_cpu_time_total / total_us if total_us else 0.0,
                "categories": {c: us / n / 1e3 for c, us in sorted(per_op.get(e.key, {}).items())},
            }
            for e in top
        ],
        "other_ops": [{"op": op, "self_ms_per_step": us / n / 1e3} for op, us in other[:20]],
    }
    log(f"{name} {resolved}: step {result['step_s_median']:.3f} s (median of {n} profiled)")
    return result


# ---- report ------------------------------------------------------------------------------------------------
def report(r: dict) -> str:
    shapes = ", ".join(f"{b['examples']}x{b['source_padded']}->{b['target_padded']}" for b in r["batches"])
    warm = ", ".join(f"{t:.3f}" for t in r["warmup_step_s"])
    lines = [
        f"### {r['workload']}, {r['precision']} (batches {shapes}; {r['threads']} threads)",
        "",
        f"step wall time {r['step_s_median'] * 1e3:.1f} ms (median of {len(r['step_s'])} profiled; warm-up "
        f"steps unprofiled: {warm} s); profiled self CPU time {r['profiled_self_ms_per_step']:.1f} ms/step",
    ]
    flops = f"model {r['model_flops_per_step'] / 1e9:.3g} GFLOP/step, {r['model_tflops_per_s']:.4f} TFLOP/s"
    if r["mfu"] is not None:
        flops += f", MFU {r['mfu']:.2%} of {r['peak_tflops']:.3g} TFLOP/s (CPU peak, {r['precision']})"
    lines.append(flops)
    lines.append("regions: " + ", ".join(f"{k} {v:.1f} ms" for k, v in r["regions_ms_per_step"].items()))
    lines.append("")
    body = [
        [c["label"], f"{c['ms_per_step']:.2f}", f"{c['share']:.1%}"]
        for c in sorted(r["categories"].values(), key=lambda c: -c["ms_per_step"])
    ]
    total = sum(c["ms_per_step"] for c in r["categories"].values())
    body.append(["**total (self CPU)**", f"{total:.2f}", "100%"])
    lines.append(markdown_table(["category", "ms / step", "share"], body, "lrr"))
    lines.append("")
    top = []
    for o in r["top_ops"]:
        cats = ", ".join(f"{c} {ms:.2f}" for c, ms in sorted(o["categories"].items(), key=lambda x: -x[1]))
        top.append(
            [
                f"`{o['op']}`",
                f"{o['self_ms_per_step']:.2f}",
                f"{o['calls_per_step']:g}",
                f"{o['share']:.1%}",
                cats,
            ]
        )
    lines.append(
        markdown_table(
            ["top op (self CPU)", "ms / step", "calls / step", "share", "categories (ms)"], top, "lrrrl"
        )
    )
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--encoder", default=MINILM, help="encoder checkpoint (BERT family, as the benchmark)")
    p.add_argument("--decoder", default=MINILM, help="decoder checkpoint (BERT family)")
    p.add_argument("--workloads", default="cnndm,gigaword", help="comma-separated: cnndm, gigaword")
    p.add_argument("--precision", default="32-true,bf16-mixed", help="comma-separated trainer precisions")
    p.add_argument("--steps", type=int, default=3, help="profiled training steps per (workload, precision)")
    p.add_argument("--warmup", type=int, default=1, help="unprofiled steps before them")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--override", action="append", default=[], help="extra src.train override (repeatable)")
    p.add_argument(
        "--quick", action="store_true", help="the tiny QUICK workload, 1 warm-up + 1 profiled step"
    )
    p.add_argument("--out", default=None, help="write the JSON here")
    args = p.parse_args(argv)
    if args.quick:
        args.warmup, args.steps = 1, 1
    if args.steps < 1 or args.warmup < 0:
        p.error("--steps must be >= 1 and --warmup >= 0")

    def log(msg: str) -> None:
        print(msg, file=sys.stderr, flush=True)

    warnings.filterwarnings("ignore", message=".*introduces a better way to train encoder-decoder.*")
    specs = {"quick": QUICK} if args.quick else {w: WORKLOADS[w] for w in args.workloads.split(",")}
    runs = []
    with tempfile.TemporaryDirectory() as tmp_name:
        for name, spec in specs.items():
            for precision in args.precision.split(","):
                runs.append(profile_one(name, spec, precision, args, Path(tmp_name), log))

    out = {
        "command": " ".join(
            ["python -m scripts.profile_step", *(argv if argv is not None else sys.argv[1:])]
        ),
        "machine": machine(),
        "encoder": args.encoder,
        "decoder": args.decoder,
        "warmup": args.warmup,
        "steps": args.steps,
        "categories": CATEGORIES,
        "runs": runs,
    }
    print("\n\n".join(report(r) for r in runs))
    if args.out:
        path = Path(args.out)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(out, indent=1))
        print(f"\nJSON: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
