"""Side (b) of the benchmark, this project: Seq2SeqModule / Seq2SeqDataModule under a Lightning Trainer,
composed from conf/ exactly as `python -m src.train` composes it."""

from __future__ import annotations

import statistics
import tempfile
import time

from scripts.bench.common import LR, WEIGHT_DECAY, eval_result, sync, train_result
from src.system.paths import REPO


# ---- (b) this project -----------------------------------------------------------------------------------------
def workload_overrides(job: dict, tmp: str) -> list[str]:
    """The `src.train` overrides that make the benchmark's workload: model, data, batch sizes, steps, optimizer."""
    spec = job["spec"]
    return [
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
        f"optimizer.lr={LR}",
        "optimizer.warmup_steps=0",
        f"optimizer.weight_decay={WEIGHT_DECAY}",
        f"seed={job['seed']}",
        f"output_dir={tmp}/run",
    ]


#: what the in-process loop leaves out of the command: validation, the progress display, logging, the logger
LOOP_ONLY = [
    "trainer.limit_val_batches=0",
    "progress=none",
    "trainer.log_every_n_steps=1000000",
    "logger=none",
]


def project_config(job: dict, tmp: str):
    # the project's side, imported in its own process only: the recipe's process imports this module too (the
    # harness names both sides) and must not load Lightning and the project's model, as peak memory is compared
    from hydra import compose, initialize_config_dir

    from src.config.schema import train_config
    from src.models.decoding import KEYS

    spec = job["spec"]
    overrides = [*workload_overrides(job, tmp), *LOOP_ONLY, *job.get("overrides", [])]
    with initialize_config_dir(str(REPO / "conf"), version_base="1.3"):
        cfg = compose("train", overrides=overrides)
    # replaced whole: the recipe's settings, nothing of ours left in (every other key null: generate's default)
    for key in KEYS:
        cfg.data.decoding[key] = spec["generation"].get(key)
    return train_config(cfg)


def run_project(job: dict) -> dict:
    import lightning as L  # in the project's process only: see project_config
    from transformers import EncoderDecoderModel

    from src.run.assemble import assemble, build_module
    from src.system.process import setup_process

    with tempfile.TemporaryDirectory() as tmp:
        cfg = project_config(job, tmp)
        setup_process(cfg.reuse_host_memory)  # what src.train does first
        L.seed_everything(job["seed"], workers=True)
        module = build_module(cfg)
        init = EncoderDecoderModel.from_pretrained(job["init"]).state_dict()
        missing, unexpected = module.model.load_state_dict(init, strict=False)
        if missing or any("pooler" not in k for k in unexpected):
            raise RuntimeError(f"the project's model differs from the recipe's: {missing} {unexpected}")
        if job["phase"] == "train":
            times: list[float] = []
            tokens: list[int] = []
            sizes: list[int] = []

            class StepTimes(L.Callback):
                def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
                    sync()
                    times.append(time.perf_counter())
                    tokens.append(batch["num_target_tokens"] / batch["input_ids"].size(0))
                    sizes.append(batch["input_ids"].size(0))

            run = assemble(cfg, module, [StepTimes()], ["train"], logger=False, enable_checkpointing=False)
            run.trainer.fit(module, datamodule=run.datamodule)
            return train_result(
                job, times, statistics.fmean(tokens), module.model, module.decoder_tokenizer, sizes
            )
        run = assemble(cfg, module, [], ["test"], logger=False, enable_checkpointing=False)
        sync()
        start = time.perf_counter()
        run.trainer.test(module, datamodule=run.datamodule, verbose=False)
        sync()
        seconds = time.perf_counter() - start
        return eval_result(job, seconds, [r["prediction"] for r in module.test_predictions])
