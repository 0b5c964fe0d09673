"""The paper's ten variants and their architectures, from conf/ alone (nothing downloaded, nothing allocated).

The variants, in the paper's order, are the rows of its Table 1 (conf/paper/rothe2020/figures.yaml): the one place
they are written. `import src` imports this module for the config resolver `paper_variants`, so the models' builder
(transformers' model classes, 2 s to import) is imported where a variant is measured, not at the top.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf
from transformers import CONFIG_MAPPING

from src.config.schema import composed_model_spec
from src.metrics.text import primary_metric
from src.models.checkpoints import is_local, load_config, resolve_checkpoint
from src.paper.figures import paper_figures
from src.system.errors import UserError
from src.system.paths import CONF

if TYPE_CHECKING:
    from src.models.builder import ParamBudget
    from src.models.spec import ModelSpec

#: rnd2rnd, bert2rnd, rnd2bert, bert2bert, bertshare, robertashare, gpt, rnd2gpt, bert2gpt, roberta2gpt
VARIANTS: tuple[str, ...] = tuple(paper_figures()["table1"])


def paper_variants(excluded: Iterable[str] | None = ()) -> str:
    """`${paper_variants:${paper.excluded}}`: the paper's variants less `excluded`, in its order, comma-separated
    (the form a sweep's `variant:` takes). A name that is not one of the variants is refused."""
    excluded = list(excluded or ())
    unknown = [v for v in excluded if v not in VARIANTS]
    if unknown:
        raise UserError(
            f"paper.excluded names {', '.join(map(str, unknown))}, not one of the paper's variants. "
            f"Fix: name some of {', '.join(VARIANTS)}."
        )
    return ",".join(v for v in VARIANTS if v not in excluded)


def arch_facts(checkpoint: str):
    """A checkpoint's own config, without a download: conf/arch/<hub id>.yaml for hub checkpoints, the files
    themselves for local and pkg:// ones."""
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
    from src.models.builder import architecture  # not at the top: see the module's docstring

    with initialize_config_dir(str(CONF), version_base="1.3"):
        cfg = compose("train", overrides=[f"variant={variant}", *overrides])
    spec = composed_model_spec(cfg)
    enc = None if spec.decoder_only else arch_facts(spec.encoder)
    return spec, architecture(spec, enc, arch_facts(spec.decoder), same_vocab=spec.encoder == spec.decoder)


def variant_budget(variant: str, overrides: list[str] = ()) -> ParamBudget:
    """Count a variant's parameters on the meta device (nothing downloaded, nothing allocated)."""
    from src.models.builder import BuildFrom, build  # not at the top: see the module's docstring

    spec, arch = variant_arch(variant, overrides)
    return build(spec, BuildFrom.META, arch=arch).budget


def register_resolver() -> None:
    """`${paper_variants:...}` and `${primary_metric:${data.metrics}}` (the task's headline metric: ROUGE-2, SARI,
    t2t BLEU, ...) for the configs (idempotent); `import src` calls it before Hydra composes."""
    if not OmegaConf.has_resolver("paper_variants"):
        OmegaConf.register_new_resolver("paper_variants", paper_variants)
    if not OmegaConf.has_resolver("primary_metric"):
        OmegaConf.register_new_resolver("primary_metric", lambda metrics: primary_metric(list(metrics)))
