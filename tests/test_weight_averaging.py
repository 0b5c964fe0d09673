"""ema.decay: an exponential moving average of the weights (Lightning's EMAWeightAveraging) is what validation
chooses best.ckpt on, what the run tests and what src.eval loads; metrics.json says which weights each score is
of. A real run and a real src.eval; the kill-and-resume case is tests/test_train_faults.py's."""

from __future__ import annotations

import json

import pytest
import torch

from src.config.schema import train_config
from src.system.errors import UserError
from src.train import train
from tests.helpers.commands import check_train, compose_train, run_cli
from tests.helpers.tiny_run import tiny_models, tiny_run


def test_an_ema_run_validates_tests_and_evaluates_the_averaged_weights(tiny, tmp_path):
    out = tmp_path / "run"
    cfg = compose_train(
        *tiny_models(tiny),
        *tiny_run(steps=6, val_every=2, warmup=1, lr="3e-3", train=32, validation=4, test=4),
        "ema.decay=0.8",
        f"output_dir={out}",
    )
    results = train(train_config(cfg))
    assert results.completed and results.weights == {"kind": "ema", "decay": 0.8, "start_step": 0}
    best = torch.load(out / "checkpoints" / "best.ckpt", weights_only=True, map_location="cpu")
    averaged, trained = best["state_dict"], best["current_model_state"]
    assert max(float((averaged[k] - trained[k]).abs().max()) for k in averaged) > 1e-4  # two sets of weights
    # src.eval on best.ckpt scores what the run tested: the averaged weights
    proc = run_cli(
        "src.eval", f"ckpt_path={out / 'checkpoints' / 'best.ckpt'}", f"hydra.run.dir={tmp_path / 'eval'}"
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    evaluated = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert evaluated["test"] == pytest.approx(results.test, rel=1e-5)
    assert evaluated["weights"]["kind"] == "ema"
    # src.predict and src.export load the same averaged weights
    from safetensors.torch import load_file

    from src.run.predictor import Predictor

    loaded = Predictor(str(out / "checkpoints" / "best.ckpt")).module.state_dict()
    assert all(torch.equal(loaded[k], v) for k, v in averaged.items())
    proc = run_cli("src.export", str(out / "checkpoints" / "best.ckpt"), "--out", str(tmp_path / "hf"))
    assert proc.returncode == 0, proc.stderr[-3000:]
    exported = load_file(tmp_path / "hf" / "model.safetensors")
    name = "encoder.embeddings.word_embeddings.weight"
    assert torch.equal(exported[name], averaged[f"model.{name}"])
    assert not torch.equal(exported[name], trained[f"model.{name}"])
    # ... and not the trained weights, which score another loss
    swapped = {**best, "state_dict": trained}
    torch.save(swapped, tmp_path / "trained.ckpt")
    proc = run_cli(
        "src.eval", f"ckpt_path={tmp_path / 'trained.ckpt'}", f"hydra.run.dir={tmp_path / 'eval2'}"
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    other = json.loads((tmp_path / "eval2" / "metrics.json").read_text())["test"]["loss"]
    assert abs(other - results.test["loss"]) > 1e-4


def test_ema_keys_are_checked():
    assert check_train("ema.decay=0.999").ema.weights()["kind"] == "ema"
    assert check_train().ema.weights() == {"kind": "trained"}
    with pytest.raises(
        UserError, match=r"ema.decay=1(\.0)? is not valid.*a number in \(0, 1\).*Fix: ema.decay=0.999"
    ):
        check_train("ema.decay=1")
