"""Token-budget batches (`data.max_tokens`, src.data.datamodule.TokenBatchSampler): every example once an epoch,
each batch's padded size within the budget, seeded and reshuffled, equal shares under DDP, resume, oversize."""

from __future__ import annotations

import logging

import numpy as np
import pytest

import src.data.datamodule as datamodule_module
from src.config.schema import data_config
from src.data.datamodule import Seq2SeqDataModule, TokenBatchSampler
from src.models.checkpoints import load_tokenizer
from src.system.errors import UserError
from tests.helpers.checkpoints import bert_special_ids
from tests.helpers.commands import check_train

N = 2000
BUDGET = 4096


def lengths(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Source and label lengths; labels grow with sources, as summaries and translations do."""
    rng = np.random.default_rng(seed)
    src = rng.integers(5, 400, size=N)
    return src, src // 4 + rng.integers(2, 20, size=N)


def sampler(seed: int = 1, budget: int = BUDGET, **kwargs) -> TokenBatchSampler:
    src, lab = lengths()
    return TokenBatchSampler(src, budget, seed=seed, target_lengths=lab, **kwargs)


def padded(batch, src, lab) -> int:
    """What the Collator pads a batch to: examples x (longest source + longest label)."""
    b = np.asarray(batch)
    return len(b) * int(src[b].max() + lab[b].max())


def fake_world(monkeypatch, rank: int, world: int) -> None:
    monkeypatch.setattr(datamodule_module, "_rank_and_world", lambda: (rank, world))


def test_every_example_once_an_epoch_each_batch_within_the_budget_and_well_filled():
    src, lab = lengths()
    s = sampler()
    for epoch in (0, 1):
        s.set_epoch(epoch)
        batches = list(s)
        assert len(batches) == len(s)
        assert sorted(i for b in batches for i in b) == list(range(N))  # each once: none lost, none repeated
        sizes = [padded(b, src, lab) for b in batches]
        assert max(sizes) <= BUDGET
        assert len({len(b) for b in batches}) > 5  # example counts vary with the lengths: not a fixed batch
        # as many as fit: batches are full but for the last of each pool, and padding stays small
        assert np.median(sizes) > 0.9 * BUDGET
        assert sum(sizes) < 1.1 * (src.sum() + lab.sum())


def test_seeded_reproducible_and_reshuffled_every_epoch():
    a, b = sampler(seed=1), sampler(seed=1)
    first = list(a)
    assert first == list(b) and first == list(a)  # the same for a seed, and again on a second pass
    a.set_epoch(1)
    assert list(a) != first and sorted(map(tuple, list(a))) != sorted(map(tuple, first))  # other batches
    a.set_epoch(0)
    assert list(a) == first
    assert list(sampler(seed=2)) != first
    src, _ = lengths()
    longest = [src[b].max() for b in first]
    falls = np.mean(np.diff(longest) < 0)
    assert 0.3 < falls < 0.7  # the batches shuffled, not in each pool's longest-first order (falls ~1)


def test_ddp_ranks_get_equal_disjoint_shares_every_world_th_batch(monkeypatch):
    whole = list(sampler())
    world = next(w for w in (3, 4, 5, 7) if len(whole) % w)  # a remainder to drop, so it is tested
    shares = []
    for rank in range(world):
        fake_world(monkeypatch, rank, world)
        s = sampler()
        shares.append(list(s))
        assert len(s) == len(shares[-1])
        assert shares[-1] == whole[rank : len(whole) - len(whole) % world : world]
    assert len({len(share) for share in shares}) == 1 and len(shares[0]) == len(whole) // world
    seen = [i for share in shares for b in share for i in b]
    assert len(seen) == len(set(seen))  # disjoint
    dropped = {i for b in whole[len(whole) - len(whole) % world :] for i in b}
    assert set(seen) == set(range(N)) - dropped


def test_ddp_cached_epoch_follows_the_process_group(monkeypatch):
    s = sampler()
    alone = len(s)
    fake_world(monkeypatch, 0, 2)
    assert len(s) == alone // 2  # not the single-process batches cached before


def test_resume_skips_the_batches_already_trained_in_that_epoch_only():
    whole = sampler()
    whole.set_epoch(2)
    full = list(whole)
    resumed = sampler(resume={"epoch": 2, "skip": 7})
    resumed.set_epoch(2)
    assert list(resumed) == full[7:]
    assert list(resumed) == full  # the skip applies once
    other = sampler(resume={"epoch": 2, "skip": 7})
    other.set_epoch(1)
    assert len(list(other)) == len(other)  # another epoch is not skipped


def test_an_example_over_the_budget_is_a_batch_of_its_own_and_counted_once(caplog):
    src, lab = lengths()
    src, lab = src.copy(), lab.copy()
    src[[3, 17]], lab[[3, 17]] = 4500, 50  # alone over the 4096 budget
    with caplog.at_level(logging.WARNING):
        s = TokenBatchSampler(src, BUDGET, seed=1, target_lengths=lab)
        batches = list(s) + list(s)
    assert s.oversize == 2
    assert [b for b in batches if 3 in b] == [[3], [3]] and [b for b in batches if 17 in b] == [[17], [17]]
    assert sorted(i for b in batches[: len(s)] for i in b) == list(range(N))
    assert all(padded(b, src, lab) <= BUDGET for b in batches if b not in ([3], [17]))
    warnings = [r for r in caplog.records if "alone exceed" in r.getMessage()]
    assert len(warnings) == 1 and "2 training example(s)" in warnings[0].getMessage()


@pytest.mark.parametrize("budget", [0, -5, 2.5, True])
def test_a_budget_that_is_not_a_positive_integer_is_refused(budget):
    with pytest.raises(ValueError, match="max_tokens"):
        sampler(budget=budget)


def test_the_data_module_pads_token_batches_within_the_budget_and_keeps_eval_batches(tiny, tmp_path):
    tok = load_tokenizer(tiny["bert"])
    ids = bert_special_ids(tok)
    config = data_config(
        dict(
            name="t",
            loader="synthetic",
            max_source_length=16,
            max_target_length=6,
            batch_size=4,
            eval_batch_size=3,
            max_tokens=100,
            cache_dir=str(tmp_path / "cache"),
            synthetic={"seed": 0, "num_train": 60, "num_validation": 7, "num_test": 4},
        )
    )
    dm = Seq2SeqDataModule(config, encoder_tokenizer=tok, decoder_tokenizer=tok, special_ids=ids)
    batches = list(dm.train_dataloader())
    assert sorted(i for b in batches for i in b["index"].tolist()) == list(range(60))
    sizes = [b["input_ids"].numel() + b["labels"].numel() for b in batches]  # the tensors as padded
    assert max(sizes) <= 100 and max(len(b["index"]) for b in batches) > 4  # data.batch_size=4 is not used
    assert [len(b["index"]) for b in dm.val_dataloader()] == [3, 3, 1]


def test_config_checks_refuse_a_bad_budget_and_one_with_a_global_batch():
    check_train("data.max_tokens=4096")
    with pytest.raises(UserError) as err:
        check_train("data.max_tokens=0")
    assert "data.max_tokens=0 is not valid" in str(err.value) and "Fix: data.max_tokens=" in str(err.value)
    with pytest.raises(UserError) as err:
        check_train("data.max_tokens=4096", "data.global_batch_size=32")
    message = str(err.value)
    assert "\n" not in message and "Fix: data.global_batch_size=null" in message
    paper = check_train(
        "paper=rothe2020", "data=xsum", "variant=bert2bert"
    )  # the paper presets: example-count batches, max_tokens null
    assert paper.data.max_tokens is None and paper.data.global_batch_size == 128
