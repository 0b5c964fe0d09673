"""The paper's ten variants and their architectures, from conf/ alone (nothing downloaded, nothing allocated)."""

from __future__ import annotations

from pathlib import Path

from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from src.errors import UserError
from src.models.builder import ParamBudget, architecture, build
from src.models.spec import ModelSpec

CONF = Path(__file__).resolve().parents[1] / "conf"
VARIANTS = (
    "rnd2rnd",
    "bert2rnd",
    "rnd2bert",
    "bert2bert",
    "bertshare",
    "robertashare",
    "gpt",
    "rnd2gpt",
    "bert2gpt",
    "roberta2gpt",
)


def arch_facts(checkpoint: str):
    """A checkpoint's own config, without a download: conf/arch/<hub id>.yaml for hub checkpoints, the files
    themselves for local and pkg:// ones."""
    from transformers import CONFIG_MAPPING

    from src.models.checkpoints import is_local, load_config, resolve_checkpoint

    facts_file = CONF / "arch" / f"{checkpoint.replace('/', '--')}.yaml"
    if facts_file.is_file():
        facts = OmegaConf.to_container(OmegaConf.load(facts_file))
        return CONFIG_MAPPING[facts.pop("model_type")](**facts)
    if is_local(resolve_checkpoint(checkpoint)):
        return load_config(checkpoint)
    raise UserError(
        f"no architecture facts for checkpoint {checkpoint!r}. Fix: add {facts_file.relative_to(CONF.parent)} "
        "with the fields of its config.json, or name a local directory."
    )


def variant_arch(variant: str, overrides: list[str] = ()) -> tuple[ModelSpec, dict]:
    """Compose `variant=<name>` (as `src.train` would) and describe its architecture from its checkpoints' facts."""
    with initialize_config_dir(str(CONF), version_base="1.3"):
        cfg = compose("train", overrides=[f"variant={variant}", *overrides])
    spec = ModelSpec.from_config(cfg)
    enc = None if spec.decoder_only else arch_facts(spec.encoder)
    return spec, architecture(spec, enc, arch_facts(spec.decoder), same_vocab=spec.encoder == spec.decoder)


def variant_budget(variant: str, overrides: list[str] = ()) -> ParamBudget:
    """Count a variant's parameters on the meta device (nothing downloaded, nothing allocated)."""
    spec, arch = variant_arch(variant, overrides)
    return build(spec, "meta", arch=arch).budget
