"""The checkpoint a run reports: best.ckpt chosen on a generated validation metric over the whole validation
split, early stopping with a patience, both recorded in metrics.json's `selection` (src.train, a real run)."""

from __future__ import annotations

import csv

import pytest
import torch

from src.config.schema import train_config
from src.system.errors import UserError
from src.train import train
from tests.helpers.commands import check_train, compose_train
from tests.helpers.tiny_run import tiny_models, tiny_run


def validation_scores(run_dir, name: str) -> list[float]:
    """Every validation's `name`, in order, from the CSV logger's metrics.csv."""
    (path,) = run_dir.rglob("metrics.csv")
    with path.open() as f:
        return [float(r[name]) for r in csv.DictReader(f) if r.get(name)]


def test_a_run_selects_on_a_generated_metric_stops_early_and_records_why(tiny, tmp_path):
    out = tmp_path / "run"
    cfg = compose_train(
        *tiny_models(tiny),
        *tiny_run(steps=40, val_every=2, train=32, validation=6, test=4, eval_batch=2, logger="csv"),
        "monitor=val/exact",
        "monitor_mode=max",
        "early_stopping.patience=1",
        f"output_dir={out}",
    )
    results = train(train_config(cfg))
    chosen = results.selection
    assert results.completed and chosen["stopped_by"] == "early_stopping"
    assert (
        chosen["stopped_at_step"] == results.train["steps"] < 40
    )  # before the budget: completed all the same
    assert (
        chosen["monitor"] == "val/exact" and chosen["patience"] == 1 and "did not improve" in chosen["reason"]
    )
    # best.ckpt is the validation that scored highest on val/exact (the first of equal ones), and it was tested
    scores = validation_scores(out, "val/exact")  # one every 2 steps
    assert len(scores) >= 2 and 2 * len(scores) == chosen["stopped_at_step"]
    best = max(scores)
    best_step = 2 * (scores.index(best) + 1)
    assert chosen["best"] == pytest.approx(best) and chosen["best_checkpoint"] == "checkpoints/best.ckpt"
    assert results.test_checkpoint == "checkpoints/best.ckpt"
    ckpt = torch.load(out / "checkpoints" / "best.ckpt", weights_only=True, map_location="cpu", mmap=True)
    assert ckpt["global_step"] == best_step
    # the monitored metric is scored on every validation batch (3 of 2 examples), not gen_val_batches' 2
    assert ckpt["hyper_parameters"]["gen_val_batches"] is None
    # the last checkpoint carries the stop (and the patience count): a resumed run stays stopped
    last = torch.load(out / "checkpoints" / "last.ckpt", weights_only=True, map_location="cpu", mmap=True)
    (state,) = [v for k, v in last["callbacks"].items() if k.startswith("RunEarlyStopping")]
    assert state["stopped_step"] == chosen["stopped_at_step"] and state["wait_count"] >= 1
    assert last["global_step"] == chosen["stopped_at_step"]  # written at every validation, improved or not


def test_monitor_names_the_loss_or_a_metric_of_the_task_and_ranks_it_the_right_way():
    assert check_train("monitor=val/rouge2", "monitor_mode=max").monitors_generation
    with pytest.raises(UserError, match=r"monitor=val/sari is not valid.*val/loss or a metric of the task"):
        check_train("monitor=val/sari", "monitor_mode=max")  # the synthetic task has no SARI
    with pytest.raises(UserError, match=r"monitor=val/rouge2 is better higher.*Fix: monitor_mode=max"):
        check_train("monitor=val/rouge2")
    with pytest.raises(
        UserError, match=r"early_stopping.patience=0 is not valid.*Fix: early_stopping.patience=5"
    ):
        check_train("early_stopping.patience=0")


@pytest.mark.parametrize(
    ("task", "metric"),
    [("cnn_dailymail", "rouge2"), ("wikisplit", "sari"), ("discofuse", "sari"), ("wmt14_en_de", "bleu_t2t")],
)
def test_the_paper_preset_selects_on_the_tasks_headline_metric(task, metric):
    config = check_train("paper=rothe2020", f"data={task}", "variant=bert2bert")
    assert (config.monitor, config.monitor_mode) == (f"val/{metric}", "max")
