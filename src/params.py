"""Print the Table-1 parameter budget of every variant next to the paper's, without downloading any weights.

python -m src.params                 # all ten variants, base-size architectures from conf/arch/
python -m src.params --json          # the same as JSON
"""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass
from pathlib import Path

from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from src.models.builder import ParamBudget, estimate_budget

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


def arch_config(name: str):
    """A transformers config built from the facts in conf/arch/<name>.yaml."""
    from transformers import CONFIG_MAPPING

    facts = OmegaConf.to_container(OmegaConf.load(CONF / "arch" / f"{name}.yaml"))
    return CONFIG_MAPPING[facts.pop("model_type")](**facts)


@dataclass
class Layout:
    """A variant's architecture from conf/arch facts: what its model is made of, with no weights."""

    encoder: object | None  # a transformers config; None: decoder-only (variant gpt)
    decoder: object
    pretrained: tuple[bool, bool]
    sharing: str
    same_vocab: bool


def variant_layout(variant: str, overrides: list[str] = ()) -> Layout:
    """Compose `variant=<name>` and describe its base-size architecture from conf/arch/."""
    with initialize_config_dir(str(CONF), version_base="1.3"):
        cfg = compose("train", overrides=[f"variant={variant}", *overrides])
    enc_arch, dec_arch = cfg.encoder.get("arch"), cfg.decoder.arch
    if cfg.encoder.name == "none":
        return Layout(None, arch_config(dec_arch), (False, cfg.decoder.pretrained), "none", True)
    enc_arch = enc_arch or dec_arch or "bert_base"  # rnd: the other side's architecture and vocabulary
    dec_arch = dec_arch or enc_arch
    return Layout(
        arch_config(enc_arch),
        arch_config(dec_arch),
        (cfg.encoder.pretrained, cfg.decoder.pretrained),
        cfg.sharing.mode,
        enc_arch == dec_arch,
    )


def variant_budget(variant: str, overrides: list[str] = ()) -> ParamBudget:
    """Count a variant's parameters on the meta device from conf/arch facts."""
    v = variant_layout(variant, overrides)
    return estimate_budget(
        v.encoder, v.decoder, pretrained=v.pretrained, sharing=v.sharing, same_vocab=v.same_vocab
    )


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
