"""Print the Table-1 parameter budget of every variant next to the paper's, without downloading any weights.

python -m src.params                 # all ten variants, base-size architectures from conf/arch/ facts
python -m src.params --json          # the same as JSON
"""

from __future__ import annotations

import argparse
import json
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
COLUMNS = ("total", "embeddings", "from_checkpoint", "random")


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


def paper_table1() -> dict[str, dict[str, float]]:
    return OmegaConf.to_container(OmegaConf.load(CONF / "paper" / "rothe2020.yaml"))["table1"]


def budget_rows() -> list[dict]:
    paper = paper_table1()
    rows = []
    for v in VARIANTS:
        ours = {k: round(x / 1e6, 1) for k, x in variant_budget(v).as_dict().items()}
        # deviation relative to the paper's total: the paper's random column rounds cross-attention to 26M
        worst = max(abs(ours[c] - paper[v][c]) for c in COLUMNS) / paper[v]["total"]
        rows.append({"variant": v, **ours, "paper": paper[v], "max_deviation_pct": round(100 * worst, 2)})
    return rows


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    args = parser.parse_args(argv)
    rows = budget_rows()
    if args.json:
        print(json.dumps(rows, indent=2))
        return
    print(
        "| variant | total | embeddings | from checkpoint | random | paper (total / emb / ckpt / random) | max dev. |"
    )
    print("|---|---:|---:|---:|---:|---|---:|")
    for r in rows:
        p = r["paper"]
        print(
            f"| {r['variant']} | {r['total']}M | {r['embeddings']}M | {r['from_checkpoint']}M | {r['random']}M | "
            f"{p['total']} / {p['embeddings']} / {p['from_checkpoint']} / {p['random']} | {r['max_deviation_pct']}% |"
        )
    print(
        "\nmax dev.: largest gap over the four columns, as a share of the paper's total (millions, base size)."
    )


if __name__ == "__main__":
    main()
