"""The blog recipe against this project's training and evaluation, same model, data, batch size and machine.

    python -m scripts.benchmark                        # minilm2minilm, both workloads, median of 3 (~18 min here)
    python -m scripts.benchmark --workloads gigaword --repeats 1
    python -m scripts.benchmark --encoder bert-base-uncased --decoder bert-base-uncased   # a GPU machine
    python -m scripts.benchmark --quick --encoder DIR --decoder DIR                       # tiny models, seconds
    python -m scripts.benchmark --phases command --repeats 2   # python -m src.train against the in-process loop
    python -m scripts.benchmark --phases train --variant eager=attn_implementation=eager   # (b) against (b) changed

(a) the recipe: EncoderDecoderModel.from_encoder_decoder_pretrained + Seq2SeqTrainer, inputs and labels padded to
max_length, Seq2SeqTrainer.predict with predict_with_generate for evaluation.
(b) this project: Seq2SeqModule / Seq2SeqDataModule under a Lightning Trainer, composed from conf/ exactly as
`python -m src.train` composes it, with its process settings (per-batch padding, length-bucketed batches, loss
on target tokens only, fused AdamW, reuse_host_memory, the beam-search cache kept in place, ...).
--recipe-reuse-host-memory gives the recipe the project's allocator setting too, to show what else differs.

Both start from the same weights (the recipe's freshly assembled model, cross-attention included), see the same
examples and take the same optimizer (AdamW, linear schedule, clipping 1.0). Every measurement runs in a process
of its own (peak memory is per process), recipe and project alternating. Training speed is measured over steps
2..N (step 1 pays one-off costs on both sides); "loss" is the teacher-forced loss of the trained model on the same
held-out examples, computed by one function for both. Evaluation times beam search over the test examples and
counts the predictions that are identical between (a) and (b).

Prints a table and writes JSON (--out).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
from pathlib import Path

import torch
import transformers
from transformers import AutoTokenizer

from scripts.bench.command import command_row, command_seconds, command_table
from scripts.bench.common import build_init, train_flops_per_sample
from scripts.bench.harness import child, spawn
from scripts.bench.workloads import MINILM, QUICK, WORKLOADS, make_workload, read_split
from src.system.hardware import (
    FAST_BF16_FLAGS,
    cpu_flags,
    cpu_model,
    cpu_peak_tflops,
    device_peak_tflops,
    uses_cuda,
)
from src.system.outputs import markdown_table

# Token-length distributions (lognormal, clipped), from the blog's CNN/DailyMail figures: articles 847.6 BERT tokens
# on average with 73.6% over 512, summaries 57.8 with none over 128; Gigaword: ~40 / ~10 tokens.


def median_row(results: list[dict], keys: list[str]) -> dict:
    return {k: statistics.median(r[k] for r in results) for k in keys}


def summarise(
    workload: str,
    phase: str,
    runs: dict[str, list[dict]],
    flops_per_sample: float | None = None,
    peak_tflops: float | None = None,
) -> dict:
    if phase == "train":
        keys = ["samples_per_s", "target_tokens_per_s", "peak_memory_mb", "loss"]
    else:
        keys = ["samples_per_s", "seconds", "peak_memory_mb"]
    row = {s: median_row(rs, keys) for s, rs in runs.items()}
    if flops_per_sample:
        for side in ("recipe", "project"):
            row[side]["model_tflops_per_s"] = row[side]["samples_per_s"] * flops_per_sample / 1e12
            if peak_tflops:
                row[side]["mfu"] = row[side]["model_tflops_per_s"] / peak_tflops
    row["ratio"] = row["project"]["samples_per_s"] / row["recipe"]["samples_per_s"]
    row["samples"] = {s: [r["samples_per_s"] for r in rs] for s, rs in runs.items()}
    row["ratios"] = [
        p["samples_per_s"] / r["samples_per_s"] for r, p in zip(runs["recipe"], runs["project"], strict=True)
    ]
    if phase == "train":
        row["loss_spread"] = {s: [r["loss"] for r in rs] for s, rs in runs.items()}
    else:
        pairs = list(zip(runs["recipe"][0]["predictions"], runs["project"][0]["predictions"], strict=True))
        row["identical_predictions"] = sum(a == b for a, b in pairs)
        row["predictions"] = len(pairs)
        row["example"] = {"recipe": pairs[0][0], "project": pairs[0][1]}
    return {"workload": workload, "phase": phase, **row}


def table(rows: list[dict]) -> str:
    header = [
        "workload", "phase", "precision", "recipe samples/s", "project samples/s", "ratio (median of runs)",
        "recipe / project peak MB", "loss recipe / project", "model TFLOP/s recipe / project", "identical outputs",
    ]  # fmt: skip
    body = []
    for r in rows:
        a, b = r["recipe"], r["project"]
        loss = f"{a['loss']:.4f} / {b['loss']:.4f}" if "loss" in a else ""
        same = f"{r['identical_predictions']}/{r['predictions']}" if "predictions" in r else ""
        flops = ""
        if "model_tflops_per_s" in a:
            flops = f"{a['model_tflops_per_s']:.3f} / {b['model_tflops_per_s']:.3f}"
            if "mfu" in a:
                flops += f" (MFU {a['mfu']:.1%} / {b['mfu']:.1%})"
        spread = ", ".join(f"{x:.2f}" for x in r["ratios"])
        body.append([
            r["workload"], r["phase"], r["precision"], f"{a['samples_per_s']:.3g}", f"{b['samples_per_s']:.3g}",
            f"**{r['ratio']:.2f}x** ({spread})", f"{a['peak_memory_mb']:.0f} / {b['peak_memory_mb']:.0f}", loss,
            flops, same,
        ])  # fmt: skip
    return markdown_table(header, body)


def precision_rows(rows: list[dict]) -> list[dict]:
    """Each precision against the first one, per workload and phase: the same side, runs paired by repeat."""
    out = []
    for base in rows:
        if base["precision"] != rows[0]["precision"]:
            continue
        for other in rows:
            if (other["workload"], other["phase"]) != (base["workload"], base["phase"]) or other is base:
                continue
            row = {"workload": base["workload"], "phase": base["phase"], "baseline": base["precision"]}
            row["precision"] = other["precision"]
            for side in ("recipe", "project"):
                a, b = base["samples"][side], other["samples"][side]
                row[side] = {
                    "ratio": statistics.median(y / x for x, y in zip(a, b, strict=True)),
                    "ratios": [y / x for x, y in zip(a, b, strict=True)],
                    "mfu": [base[side].get("mfu"), other[side].get("mfu")],
                }
            out.append(row)
    return out


def precision_table(rows: list[dict]) -> str:
    header = [
        "workload", "phase", "precision vs baseline", "project speed-up (runs)", "recipe speed-up (runs)",
        "project MFU baseline -> precision",
    ]  # fmt: skip
    body = []
    for r in rows:
        p, a = r["project"], r["recipe"]
        mfu = " -> ".join(f"{m:.1%}" if m is not None else "n/a" for m in p["mfu"])
        runs = ", ".join(f"{x:.2f}" for x in p["ratios"])
        speedup = f"**{p['ratio']:.2f}x** ({runs})"
        body.append(
            [
                r["workload"],
                r["phase"],
                f"{r['precision']} vs {r['baseline']}",
                speedup,
                f"{a['ratio']:.2f}x",
                mfu,
            ]
        )
    return markdown_table(header, body)


def measure_command(name, spec, tmp, args, precisions, repeats, tokenizer_dir, log) -> list[dict]:
    """`--phases command`: the in-process loop over 2k steps against `python -m src.train` for k and 2k steps,
    alternating, per precision (scripts/bench/command.py)."""
    k = args.command_steps
    out = []
    for prec in precisions:
        loop, command = [], []
        for rep in range(repeats):
            job = dict(system="project", phase="train", workload=name, spec={**spec, "steps": 2 * k},
                       data=str(tmp / name), init=str(tmp / "init"), tokenizer=tokenizer_dir, encoder=args.encoder,
                       decoder=args.decoder, seed=rep, precision=prec, overrides=list(args.project_override),
                       recipe_reuse_host_memory=False)  # fmt: skip
            loop.append(spawn(job, tmp, log))
            command.append((command_seconds(job, k, tmp), command_seconds(job, 2 * k, tmp)))
            log(f"{name} command {prec} run {rep + 1}/{repeats}: loop {loop[-1]['seconds_per_step']:.3f} s/step, "
                f"command {(command[-1][1] - command[-1][0]) / k:.3f} s/step")  # fmt: skip
        out.append(command_row(name, prec, k, loop, command))
    return out


def variant_row(workload: str, phase: str, precision: str, name: str, overrides: str, runs: dict) -> dict:
    """A variant of the project against the project itself: samples/s ratio per repeat (paired), and the loss."""
    base, other = runs["project"], runs[name]
    ratios = [o["samples_per_s"] / b["samples_per_s"] for b, o in zip(base, other, strict=True)]
    row = {
        "workload": workload,
        "phase": phase,
        "precision": precision,
        "variant": name,
        "overrides": overrides,
        "samples_per_s": [statistics.median(r["samples_per_s"] for r in rs) for rs in (base, other)],
        "ratio": statistics.median(ratios),
        "ratios": ratios,
    }
    if phase == "train":
        row["loss"] = [statistics.median(r["loss"] for r in rs) for rs in (base, other)]
    else:
        pairs = list(zip(base[0]["predictions"], other[0]["predictions"], strict=True))
        row["identical_predictions"] = [sum(a == b for a, b in pairs), len(pairs)]
    return row


def variant_table(rows: list[dict]) -> str:
    header = ["workload", "phase", "precision", "variant (overrides)", "project / variant samples/s",
              "variant speed-up (runs)", "loss project / variant", "identical outputs"]  # fmt: skip
    body = []
    for r in rows:
        a, b = r["samples_per_s"]
        loss = f"{r['loss'][0]:.4f} / {r['loss'][1]:.4f}" if "loss" in r else ""
        same = "{}/{}".format(*r["identical_predictions"]) if "identical_predictions" in r else ""
        spread = ", ".join(f"{x:.2f}" for x in r["ratios"])
        body.append([r["workload"], r["phase"], r["precision"], f"{r['variant']} ({r['overrides']})",
                     f"{a:.3g} / {b:.3g}", f"**{r['ratio']:.2f}x** ({spread})", loss, same])  # fmt: skip
    return markdown_table(header, body)


def machine() -> dict:
    flags = cpu_flags()
    info = {
        "cpu": cpu_model(),
        "cpu_bf16": sorted(FAST_BF16_FLAGS & flags),
        "cpu_peak_tflops": {p: cpu_peak_tflops(p) for p in ("32-true", "bf16-mixed")},
        "cores": os.cpu_count(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "threads": torch.get_num_threads(),
    }
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name()
    return info


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument(
        "--encoder", default=MINILM, help="encoder checkpoint (BERT family: the recipe's tokenization)"
    )
    p.add_argument("--decoder", default=MINILM, help="decoder checkpoint (BERT family)")
    p.add_argument("--workloads", default="cnndm,gigaword", help="comma-separated: cnndm, gigaword")
    p.add_argument(
        "--phases",
        default="train,eval",
        help="comma-separated: train, eval, command (python -m src.train against the in-process loop, per step)",
    )
    p.add_argument(
        "--command-steps", type=int, default=64, help="k of the command phase: runs of k and 2k steps"
    )
    p.add_argument("--repeats", type=int, default=3, help="runs per side; the table shows medians")
    p.add_argument("--steps", type=int, default=None, help="training steps per run (default: the workload's)")
    p.add_argument(
        "--precision",
        default="32-true",
        help="both sides, comma-separated to compare (32-true,bf16-mixed): each against the first, same run",
    )
    p.add_argument(
        "--peak-tflops",
        type=float,
        default=None,
        help="the device's peak TFLOP/s for MFU (default: src.system.hardware's figure for this CPU or a known GPU)",
    )
    p.add_argument(
        "--recipe-reuse-host-memory",
        action="store_true",
        help="give the recipe the project's glibc setting too (reuse_host_memory), to see what else differs",
    )
    p.add_argument(
        "--project-override", action="append", default=[], help="extra src.train override (b only)"
    )
    p.add_argument(
        "--variant",
        action="append",
        default=[],
        metavar="NAME=OVERRIDES",
        help="another project side, with src.train overrides (space-separated), run after (b) in every repeat and "
        "compared with it: --variant eager=attn_implementation=eager --variant compile=trainer.compile=true",
    )
    p.add_argument(
        "--quick", action="store_true", help="one tiny workload, 3 steps, 1 repeat: checks the script"
    )
    p.add_argument("--out", default="outputs/benchmark/benchmark.json", help="where the JSON goes")
    p.add_argument("--child", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        child(json.loads(args.child))
        return 0

    def log(msg: str) -> None:
        print(msg, file=sys.stderr, flush=True)

    specs = {"quick": QUICK} if args.quick else {w: WORKLOADS[w] for w in args.workloads.split(",")}
    variants = dict(v.split("=", 1) for v in args.variant)  # {name: "key=value key=value"}
    repeats = 1 if args.quick else args.repeats
    phases = args.phases.split(",")
    precisions = args.precision.split(",")
    rows, variant_rows, command_rows = [], [], []
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        tokenizer_dir = build_init(args.encoder, args.decoder, tmp / "init", seed=0)

        tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
        for name, spec in specs.items():
            spec = {**spec, "steps": args.steps or spec["steps"]}
            make_workload(spec, tokenizer, tmp / name, seed=0)
            for phase in phases:
                if phase == "command":
                    command_rows += measure_command(
                        name, spec, tmp, args, precisions, repeats, tokenizer_dir, log
                    )
                    continue
                runs = {
                    prec: {"recipe": [], "project": [], **{v: [] for v in variants}} for prec in precisions
                }
                for rep in range(repeats):
                    for prec in precisions:
                        for side in (
                            "recipe",
                            "project",
                            *variants,
                        ):  # alternating: drift hits every side alike
                            system = "recipe" if side == "recipe" else "project"
                            extra = variants[side].split() if side in variants else []
                            job = dict(
                                system=system,
                                phase=phase,
                                workload=name,
                                spec=spec,
                                data=str(tmp / name),
                                init=str(tmp / "init"),
                                tokenizer=tokenizer_dir,
                                encoder=args.encoder,
                                decoder=args.decoder,
                                seed=rep,
                                precision=prec,
                                overrides=[*args.project_override, *extra] if system == "project" else [],
                                recipe_reuse_host_memory=args.recipe_reuse_host_memory,
                            )
                            result = spawn(job, tmp, log)
                            runs[prec][side].append(result)
                            log(
                                f"{name} {phase} {prec} {side} run {rep + 1}/{repeats}: "
                                f"{result['samples_per_s']:.3g} samples/s"
                                + (f", loss {result['loss']:.4f}" if "loss" in result else "")
                            )
                flops = None
                if phase == "train":
                    flops = train_flops_per_sample(
                        tmp / "init", tokenizer, read_split(tmp / name, "train"), spec
                    )
                device = "cuda" if uses_cuda() else "cpu"
                for prec in precisions:
                    peak = args.peak_tflops or device_peak_tflops(device, prec)
                    pair = {s: runs[prec][s] for s in ("recipe", "project")}
                    rows.append({**summarise(name, phase, pair, flops, peak), "precision": prec})
                    for v in variants:
                        variant_rows.append(variant_row(name, phase, prec, v, variants[v], runs[prec]))
    report = {
        "command": " ".join([Path(sys.argv[0]).name, *(argv if argv is not None else sys.argv[1:])]),
        "machine": machine(),
        "precisions": precisions,
        "recipe_reuse_host_memory": args.recipe_reuse_host_memory,
        "repeats": repeats,
        "workloads": specs,
        "rows": rows,
        "precision_rows": precision_rows(rows),
        "variant_rows": variant_rows,
        "command_rows": command_rows,
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=1))
    if rows:
        print(table(rows))
    if report["precision_rows"]:
        print("\n" + precision_table(report["precision_rows"]))
    if variant_rows:
        print("\n" + variant_table(variant_rows))
    if command_rows:
        print("\n" + command_table(command_rows))
    print(f"\n{report['machine']}\nJSON: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
