"""src/models/decoding.py: the one typed decoding config that training, eval, predict and export read."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import FrozenInstanceError, fields

import pytest

from src.models.decoding import KEYS, Decoding
from src.system.errors import UserError
from tests.helpers.commands import REPO, compose_train


def test_an_override_is_a_new_object_and_leaves_the_original_as_it_was():
    trained = Decoding.of({"num_beams": 4, "max_new_tokens": 64, "length_penalty": 1.0})
    greedy = trained.override({"num_beams": 1, "max_new_tokens": None})  # None: keep the trained setting
    assert greedy is not trained and greedy.kwargs() == {
        "num_beams": 1,
        "max_new_tokens": 64,
        "length_penalty": 1.0,
    }
    assert trained.num_beams == 4
    with pytest.raises(FrozenInstanceError):
        trained.num_beams = 2


def test_an_unknown_setting_is_refused_with_the_keys_that_exist():
    with pytest.raises(UserError, match=r"unknown decoding setting\(s\) \['beams'\].*num_beams"):
        Decoding.of({"beams": 4})


def test_the_training_config_and_the_eval_config_hold_exactly_the_decoding_keys():
    assert tuple(compose_train("data=synthetic").data.decoding) == KEYS
    from hydra import compose, initialize_config_dir

    with initialize_config_dir(str(REPO / "conf"), version_base="1.3"):
        evaluated = compose("eval", overrides=["ckpt_path=x"])
    assert tuple(evaluated.decoding) == KEYS and all(v is None for v in evaluated.decoding.values())


def test_predict_offers_a_flag_for_every_decoding_key():
    help_text = subprocess.run(
        [sys.executable, "-m", "src.predict", "--help"], cwd=REPO, capture_output=True, text=True, check=True
    ).stdout
    assert all(f"--{f.name.replace('_', '-')}" in help_text for f in fields(Decoding))


def test_a_decoding_value_of_the_wrong_type_is_refused_when_the_config_is_composed():
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "src.train",
            "--cfg",
            "job",
            "data=synthetic",
            "data.decoding.num_beams=four",
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
    )
    assert proc.returncode != 0 and "num_beams" in proc.stderr
