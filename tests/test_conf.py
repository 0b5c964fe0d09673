"""Every config: each conf/ folder is a group or a library, each option of each group composes and feeds what it
configures, and names that do not exist list the choices."""

from __future__ import annotations

import pytest
from hydra import compose, initialize_config_dir
from hydra.errors import MissingConfigException
from omegaconf import OmegaConf

from tests.helpers.commands import REPO, compose_train


def config_groups() -> list[tuple[str, str]]:
    """(group, option) for every option of every group train.yaml selects from, read from conf/."""
    defaults = OmegaConf.to_container(OmegaConf.load(REPO / "conf" / "train.yaml").defaults)
    groups = []
    for entry in defaults:
        if isinstance(entry, str) or "${" in str(next(iter(entry.values()))):
            continue  # _self_, and the paper's per-task settings (chosen by data=: tests/test_paper.py)
        groups.append(next(iter(entry)).removeprefix("optional ").split("@")[0])
    groups.append("hydra/launcher")
    return [(g, p.stem) for g in groups for p in sorted((REPO / "conf" / g).glob("*.yaml"))]


#: What each option needs beside it to be a whole run (paper=rothe2020 runs one cell of the paper's tables).
PAPER_CELL = ["data=xsum", "variant=bert2bert"]
COMPANIONS = {("experiment", "rothe_grid"): PAPER_CELL}
COMPANIONS[("paper", "rothe2020")] = PAPER_CELL
#: conf/ folders that are not groups of their own: files other configs include, or facts the code reads.
LIBRARIES = {"model", "arch", "hydra"}


def test_every_conf_folder_is_a_group_or_a_library():
    folders = {p.name for p in (REPO / "conf").iterdir() if p.is_dir()}
    assert folders == {g.split("/")[0] for g, _ in config_groups()} | LIBRARIES


@pytest.mark.parametrize("group,option", config_groups())
def test_every_option_composes_and_feeds_what_it_configures(group, option):
    import lightning as L
    from hydra.utils import get_method

    from src.config.schema import train_config
    from src.paper.protocol import check_protocol

    with initialize_config_dir(str(REPO / "conf"), version_base="1.3"):
        overrides = [f"{group}={option}", *COMPANIONS.get((group, option), [])]
        cfg = compose("train", overrides=overrides, return_hydra_config=group.startswith("hydra"))
    cfg.output_dir = "/tmp/x"
    assert cfg.run_name.endswith(f"-s{cfg.seed}")  # the run's name (and directory) resolves
    # every key of every group is its schema's, each passes its rule, and the Trainer takes the trainer group's
    config = train_config(cfg)
    arguments = {**config.trainer.arguments(), "logger": False, "enable_checkpointing": False}
    if config.trainer.accelerator != "gpu":  # (no GPU here to make that Trainer with)
        assert L.Trainer(**arguments).max_steps == config.trainer.max_steps
    for name, callback in cfg.callbacks.items():
        assert callable(get_method(callback._target_)), name
    config.model_spec()  # the model groups resolve into one spec
    check_protocol(config.paper, config.variant, config.data.name)


def test_demo_experiment_composes_offline_minilm():
    cfg = compose_train("experiment=demo")
    assert cfg.encoder.checkpoint.startswith("pkg://") and cfg.decoder.checkpoint.startswith("pkg://")
    assert cfg.eval_before_training is True and cfg.trainer.max_steps > 0


@pytest.mark.parametrize(
    "group,bad", [("decoder", "bart"), ("variant", "t5share"), ("data", "squad"), ("sharing", "all")]
)
def test_unknown_names_list_the_choices(group, bad):
    with (
        initialize_config_dir(str(REPO / "conf"), version_base="1.3"),
        pytest.raises(MissingConfigException, match=f"Could not find '{group}/{bad}'") as err,
    ):
        compose("train", overrides=[f"{group}={bad}"])
    assert err.value.options  # Hydra lists the available options in its message
