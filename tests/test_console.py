"""A quiet, readable console: the demo shows the run, not the libraries' notes.

Each note is silenced where it starts (src.system.process.quiet_library_notes, src.data.tokenized, W&B's logger,
src.models.decoding.generate_kwargs); the libraries' real warnings still show.
"""

from __future__ import annotations

import io
import logging
import re
import warnings

import pytest

from src.models.decoding import BEAM_ONLY, Decoding
from tests.helpers.commands import run_cli
from tests.helpers.tiny_run import tiny_run

#: what a newcomer saw in `python -m src.train experiment=demo` before, and must not see now
NOISE = {
    "Lightning's litlogger / litmodels tip": "💡 Tip",
    "Lightning's GPU census": "GPU available:",
    "Lightning's TPU census": "TPU available:",
    "Lightning's HPU census": "HPU available:",
    "Lightning's srun hint": "The `srun` command is available",
    "torch.load's FutureWarning": "weights_only",
    "W&B's deprecated anonymous setting": "anonymous setting has no effect",
    "W&B without an API key": "api key not configured",
    "transformers' beam flags beside greedy decoding": "generation flags are not valid",
    "the tokenizer's own length check": "Token indices sequence length",
}


@pytest.mark.slow  # 20-50 s of one worker: make test-slow (CI runs it), the default run stays under 10 min
def test_the_demo_prints_its_run_and_results_without_library_noise(tmp_path):
    proc = run_cli(
        "src.train",
        "experiment=demo",
        f"hydra.run.dir={tmp_path}",
        # greedy decoding (num_beams=1 beside the data config's early_stopping), W&B offline, a line every 2 steps
        *tiny_run(batch=2, eval_batch=4, train=8, log_every=2, logger="wandb"),
        timeout=300,
    )
    console = proc.stdout + proc.stderr
    assert proc.returncode == 0, console[-3000:]
    seen = {what: line for what, line in NOISE.items() if line.lower() in console.lower()}
    assert not seen, f"library noise on the console: {seen}\n{console}"
    assert "step 4/4" in console  # plain progress: steps of the budget
    assert re.search(r"test results \(demo-minilm2minilm-s42", console)  # the results table, both rows
    assert "| before training |" in console and "| after training |" in console


# ---- each source, on its own ---------------------------------------------------------------------------------
def test_greedy_decoding_sends_generate_no_beam_search_settings():
    beam = Decoding.of({"num_beams": 4, "early_stopping": True, "length_penalty": 2.0, "max_new_tokens": 8})
    assert beam.generate_kwargs() == beam.kwargs()  # beam search: all of them
    greedy = beam.override({"num_beams": 1})
    assert greedy.generate_kwargs() == {"num_beams": 1, "max_new_tokens": 8}
    assert greedy.kwargs()["early_stopping"] is True  # the decoding itself (records, exports) is unchanged
    assert set(BEAM_ONLY) == {"early_stopping", "length_penalty", "length_penalty_form"}


def test_unset_beams_follow_the_models_generation_config():
    from transformers import GenerationConfig

    unset = Decoding.of({"early_stopping": True, "max_new_tokens": 8})
    assert unset.generate_kwargs() == unset.kwargs()  # the model's default is unknown: kept
    assert unset.generate_kwargs(GenerationConfig()) == {"max_new_tokens": 8}  # its default: one beam
    assert unset.generate_kwargs(GenerationConfig(num_beams=4)) == unset.kwargs()


def test_greedy_generate_kwargs_raise_no_generation_flag_warning():
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    model = GPT2LMHeadModel(GPT2Config(n_layer=1, n_head=2, n_embd=8, vocab_size=20, n_positions=16)).eval()
    model.generation_config.update(bos_token_id=0, eos_token_id=1, pad_token_id=0)
    decoding = Decoding.of({"num_beams": 1, "early_stopping": True, "max_new_tokens": 2})
    with _transformers_log() as log:
        model.generate(torch.tensor([[2, 3]]), **decoding.generate_kwargs(model.generation_config))
    assert "generation flags are not valid" not in log.getvalue()
    with _transformers_log() as log:  # the check is real: the raw kwargs warn
        model.generate(torch.tensor([[2, 3]]), **decoding.kwargs())
    assert "generation flags are not valid" in log.getvalue()


def test_tokenizing_a_long_source_counts_its_cut_without_the_tokenizers_warning():
    from transformers import BertTokenizer

    from src.data.sources import SplitStats
    from src.data.tokenized import Tokenization

    vocab = {t: i for i, t in enumerate(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "a", "b"])}

    def tokenizer():
        return BertTokenizer(vocab=vocab, model_max_length=8)

    tokenization = Tokenization(tokenizer(), tokenizer(), max_source_length=8, max_target_length=4, eos_id=3)
    stats = SplitStats()
    with _transformers_log() as log:
        _, (source_length,), _, (label_length,) = tokenization.arrays(["a " * 20], ["b " * 20], stats)
    assert (
        source_length == 8 and label_length == 4 and stats.truncated_sources == stats.truncated_targets == 1
    )
    assert "Token indices sequence length" not in log.getvalue()
    with _transformers_log() as log:  # the check is real: the tokenizer warns when asked the plain way
        tokenizer()(["a " * 20], add_special_tokens=False)
    assert "Token indices sequence length" in log.getvalue()


def test_lightning_keeps_its_warnings_and_other_notes_but_not_its_census_or_tips():
    from lightning.pytorch.utilities.rank_zero import rank_zero_info, rank_zero_warn

    from src.system.process import LIGHTNING_RANK_ZERO_LOGGERS, quiet_library_notes

    quiet_library_notes()
    quiet_library_notes()  # idempotent: one filter a logger
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    loggers = [logging.getLogger(name) for name in LIGHTNING_RANK_ZERO_LOGGERS]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.addHandler(handler)
        lg.setLevel(logging.INFO)
    try:
        rank_zero_info("GPU available: False, used: False")
        rank_zero_info("TPU available: False, using: 0 TPU cores")
        rank_zero_info(
            "💡 Tip: For seamless cloud logging and experiment tracking, try installing [litlogger]"
        )
        rank_zero_info("`Trainer.fit` stopped: `max_steps=4` reached.")
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            rank_zero_warn(
                "GPU available but not used. You can set it by doing `Trainer(accelerator='gpu')`."
            )
    finally:
        for lg, level in zip(loggers, levels, strict=True):
            lg.removeHandler(handler)
            lg.setLevel(level)
    assert out.getvalue() == "`Trainer.fit` stopped: `max_steps=4` reached.\n"
    assert [str(w.message) for w in caught] == [
        "GPU available but not used. You can set it by doing `Trainer(accelerator='gpu')`."
    ]
    assert sum(len(lg.filters) for lg in loggers) == len(loggers)


def test_a_real_user_warning_still_shows_after_setup_process():
    from src.system.process import setup_process

    setup_process()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("default")  # as a run starts: only the project's filters on top
        setup_process()
        warnings.warn("data.path has no test.jsonl; testing on validation", UserWarning, stacklevel=1)
    assert [str(w.message) for w in caught] == ["data.path has no test.jsonl; testing on validation"]


def test_the_rich_bar_counts_steps_of_the_budget_over_epochs():
    import lightning as L
    import torch
    from torch.utils.data import DataLoader, TensorDataset

    from src.run.callbacks import StepProgressBar

    class Tiny(L.LightningModule):
        def __init__(self):
            super().__init__()
            self.layer = torch.nn.Linear(2, 1)

        def training_step(self, batch, batch_idx):
            (x,) = batch
            return self.layer(x).pow(2).mean()

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.1)

    screen = io.StringIO()
    bar = StepProgressBar(leave=True, console_kwargs={"file": screen, "force_terminal": True, "width": 160})
    trainer = L.Trainer(
        max_steps=6,  # 4 batches an epoch: two epochs, one bar
        max_epochs=-1,
        accelerator="cpu",
        callbacks=[bar],
        logger=False,
        enable_checkpointing=False,
        enable_model_summary=False,
    )
    loader = DataLoader(TensorDataset(torch.randn(8, 2)), batch_size=2)
    try:
        trainer.fit(Tiny(), loader)
    finally:
        from rich import reconfigure

        reconfigure()  # the global console, as it was
    shown = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", screen.getvalue())  # without the terminal's control codes
    assert "step 6/6" in shown and "Training" in shown
    assert "Epoch" not in shown and "it/s" not in shown and "-2" not in shown


# ---- helpers -------------------------------------------------------------------------------------------------
class _transformers_log:
    """What transformers logs (at WARNING and above) inside the block, as text."""

    def __enter__(self) -> io.StringIO:
        from transformers.utils import logging as hf_logging

        self.out, self.logger = io.StringIO(), hf_logging.get_logger("transformers")
        self.handler = logging.StreamHandler(self.out)
        self.handler.setLevel(logging.WARNING)
        self.logger.addHandler(self.handler)
        return self.out

    def __exit__(self, *exc) -> None:
        self.logger.removeHandler(self.handler)
