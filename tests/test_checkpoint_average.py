"""average.last=N: the mean of the last N validation checkpoints (src.run.average), tested by test_ckpt=average,
averaged again by `python -m src.average`, and taken by src.eval, src.export and src.predict; metrics.json says which
weights each score is of. A real run and the real commands; the kill-and-resume case is tests/test_train_faults.py's."""

from __future__ import annotations

import json

import pytest
import torch

from src.config.schema import train_config
from src.run.average import average, kept
from src.run.run_record import RunRecord
from src.system.errors import UserError
from src.train import train
from tests.helpers.commands import check_train, compose_train, run_cli
from tests.helpers.tiny_run import tiny_models, tiny_run


def state(path) -> dict[str, torch.Tensor]:
    return torch.load(path, weights_only=True, map_location="cpu")["state_dict"]


@pytest.fixture(scope="module")
def averaged_run(tiny, tmp_path_factory):
    """8 steps, a validation every 2, the last 3 kept and averaged, the average tested."""
    out = tmp_path_factory.mktemp("averaged") / "run"
    cfg = compose_train(
        *tiny_models(tiny),
        *tiny_run(steps=8, val_every=2, warmup=1, lr="3e-3", train=32, validation=4, test=4),
        "average.last=3",
        "test_ckpt=average",
        f"output_dir={out}",
    )
    return out, train(train_config(cfg))


def test_a_run_keeps_its_last_validations_and_tests_their_mean(averaged_run):
    out, results = averaged_run
    checkpoints = out / "checkpoints"
    assert [s for s, _ in kept(checkpoints)] == [4, 6, 8]  # step 2's was removed when step 8's came
    assert results.completed and results.test_checkpoint == "checkpoints/average.ckpt"
    assert results.weights == {"kind": "average", "checkpoints": 3, "steps": [4, 6, 8]}
    assert RunRecord.read(out).tested() == "average of 3"
    steps = [state(p) for _, p in kept(checkpoints)]
    mean = state(checkpoints / "average.ckpt")
    assert mean.keys() == steps[0].keys()
    moved = 0.0
    for name, value in mean.items():
        if value.is_floating_point():
            want = (sum(s[name].double() for s in steps) / 3).float()
            torch.testing.assert_close(value, want, rtol=0, atol=0, msg=name)
            moved = max(moved, float((steps[0][name] - steps[2][name]).abs().max()))
    assert moved > 1e-4  # the steps differ: an average of one set of weights would test nothing
    # the kept checkpoints hold the weights only, and the last one is the trained model at step 8
    last = torch.load(checkpoints / "last.ckpt", weights_only=True, map_location="cpu")
    assert "optimizer_states" not in torch.load(
        kept(checkpoints)[-1][1], weights_only=True, map_location="cpu"
    )
    assert all(torch.equal(last["state_dict"][k], steps[-1][k]) for k in steps[-1])


def test_eval_export_and_predict_take_the_averaged_weights(averaged_run, tmp_path):
    out, results = averaged_run
    ckpt = out / "checkpoints" / "average.ckpt"
    proc = run_cli("src.eval", f"ckpt_path={ckpt}", f"hydra.run.dir={tmp_path / 'eval'}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    evaluated = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert evaluated["test"] == pytest.approx(results.test, rel=1e-5)
    assert evaluated["weights"] == {"kind": "average", "checkpoints": 3, "steps": [4, 6, 8]}
    # a kept step checkpoint is the trained weights of that step
    proc = run_cli(
        "src.eval", f"ckpt_path={kept(out / 'checkpoints')[0][1]}", f"hydra.run.dir={tmp_path / 'step'}"
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    step = json.loads((tmp_path / "step" / "metrics.json").read_text())
    assert step["weights"] == {"kind": "trained"} and step["test"]["loss"] != results.test["loss"]

    # export of the run directory: the checkpoint it tested, the average
    proc = run_cli("src.export", str(out), "--out", str(tmp_path / "hf"))
    assert proc.returncode == 0, proc.stderr[-3000:]
    from safetensors.torch import load_file

    exported = load_file(tmp_path / "hf" / "model.safetensors")
    mean = state(ckpt)
    name = "encoder.embeddings.word_embeddings.weight"
    assert torch.equal(exported[name], mean[f"model.{name}"])

    from src.run.predictor import Predictor

    loaded = Predictor(str(ckpt)).module.state_dict()
    assert all(torch.equal(loaded[k], v) for k, v in mean.items())


def test_the_average_command_averages_fewer_and_never_replaces_a_file(averaged_run, tmp_path):
    out, _ = averaged_run
    checkpoints = out / "checkpoints"
    proc = run_cli("src.average", str(out), "--last", "2")
    assert proc.returncode == 0, proc.stderr[-3000:]
    two = checkpoints / "average-2.ckpt"
    assert f"{two}: the mean of 2 checkpoints (steps 6, 8)" in proc.stdout
    steps = [state(p) for _, p in kept(checkpoints)][-2:]
    mean = state(two)
    name = "model.decoder.cls.predictions.transform.dense.weight"
    torch.testing.assert_close(mean[name], ((steps[0][name].double() + steps[1][name].double()) / 2).float())
    before = two.read_bytes()
    for args, fragment in [
        ([str(out), "--last", "2"], f"{two} exists. Fix: another --out, or --force to replace it."),
        (
            [str(out), "--last", "4"],
            "kept 3 validation checkpoints (steps 4, 6, 8), fewer than --last 4. Fix: --last 3.",
        ),
        ([str(out), "--last", "0"], "--last 0 averages nothing."),
        ([str(checkpoints / "last.ckpt")], "where to write the average? Fix: --out average.ckpt"),
        ([str(tmp_path)], "kept no validation checkpoints to average"),
    ]:
        proc = run_cli("src.average", *args)
        assert proc.returncode == 2, proc.stderr[-2000:]
        assert fragment in proc.stderr and "Traceback" not in proc.stderr, proc.stderr[-2000:]
    assert two.read_bytes() == before  # refused, untouched
    # checkpoints given by name (a run's best and last), written with --out
    proc = run_cli(
        "src.average",
        str(checkpoints / "best.ckpt"),
        str(checkpoints / "last.ckpt"),
        "--out",
        str(tmp_path / "mine.ckpt"),
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert torch.load(tmp_path / "mine.ckpt", weights_only=True)["averaged"]["files"] == [
        "best.ckpt",
        "last.ckpt",
    ]


def test_averaging_refuses_checkpoints_of_different_models(tmp_path):
    def saved(name, tensors):
        torch.save({"state_dict": tensors, "global_step": 1}, tmp_path / name)
        return tmp_path / name

    a = saved("a.ckpt", {"w": torch.ones(2), "ids": torch.arange(3)})
    b = saved("b.ckpt", {"w": torch.zeros(3), "ids": torch.arange(3)})
    c = saved("c.ckpt", {"w": torch.zeros(2), "ids": torch.arange(1, 4)})
    d = saved("d.ckpt", {"v": torch.zeros(2), "ids": torch.arange(3)})
    for other, match in [(b, r"w is \(3,\), not \(2,\)"), (c, "ids differs"), (d, "holds other weights")]:
        with pytest.raises(UserError, match=match):
            average([a, other], tmp_path / "out.ckpt")
    assert not (tmp_path / "out.ckpt").exists()
    entry = average(
        [a, saved("e.ckpt", {"w": torch.zeros(2), "ids": torch.arange(3)})], tmp_path / "out.ckpt"
    )
    assert entry == {"checkpoints": 2, "steps": [1, 1], "files": ["a.ckpt", "e.ckpt"]}
    assert torch.equal(torch.load(tmp_path / "out.ckpt")["state_dict"]["w"], torch.full((2,), 0.5))


def test_average_keys_are_checked():
    assert check_train("average.last=5", "test_ckpt=average").average.last == 5
    with pytest.raises(
        UserError, match=r"test_ckpt=average .* average.last=0 keeps none\. Fix: average.last=5"
    ):
        check_train("test_ckpt=average")
    with pytest.raises(UserError, match=r"average.last=-1 is not valid.*Fix: average.last=5"):
        check_train("average.last=-1")
