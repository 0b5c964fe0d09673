"""Side (a) of the benchmark, the blog recipe: EncoderDecoderModel + Seq2SeqTrainer, inputs and labels padded
to max_length, Seq2SeqTrainer.predict with predict_with_generate for evaluation."""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

from scripts.bench.common import (
    LR,
    WEIGHT_DECAY,
    eval_result,
    recipe_labels,
    set_bert_special_tokens,
    sync,
    train_result,
)
from scripts.bench.workloads import read_split


# ---- (a) the recipe ------------------------------------------------------------------------------------------
def recipe_dataset(tokenizer, rows: list[dict], spec: dict):
    from datasets import Dataset  # the recipe's side, in its own process only (peak memory is compared)

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
    import torch  # the recipe's side, in its own process only
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
    import torch  # the recipe's side, in its own process only
    from transformers import AutoTokenizer, EncoderDecoderModel, Seq2SeqTrainer, TrainerCallback

    spec, data = job["spec"], Path(job["data"])
    if job.get("recipe_reuse_host_memory"):  # --recipe-reuse-host-memory: the project's allocator setting
        from src.system.hardware import keep_freed_host_memory

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
