"""Why does one run beat another? Compare two runs' predictions on the same test split, example by example.

    python -m src.compare RUN_A RUN_B                       # run directories (or their predictions.jsonl)
    python -m src.compare RUN_A RUN_B --metric exact --out reports/a-vs-b --resamples 2000

Writes compare.md, compare.html (a static page: open it in a browser) and compare.json to --out (default
outputs/compare/<A>-vs-<B>): each example's score under both runs (ROUGE-2 where the task has it, else the task's
first metric), the examples sorted by the gap between them, source / reference / both predictions side by side
with the words that differ marked; how often B wins, ties and loses; and the paired-bootstrap interval of the
difference B - A in the corpus metric (1,000 resamples, seeded). Logged as a W&B table when the runs used W&B.
"""

from __future__ import annotations

import argparse
import difflib
import html
import json
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from omegaconf import OmegaConf

from src.errors import UserError, report_user_errors
from src.metrics.significance import CONFIDENCE, RESAMPLES, SEED, Interval, paired_bootstrap
from src.metrics.text import SUPPORTED, ExampleScorer, scoring_options
from src.outputs import atomic_write_text, markdown_table, write_json
from src.process import setup_process
from src.score import read_predictions, run_settings

log = logging.getLogger(__name__)
PREFERRED = ("rouge2",)  # the per-example metric when the task has it; else the task's first metric


@dataclass
class Side:
    """One run's predictions on a split, and what is known of the run."""

    label: str
    path: Path  # predictions.jsonl
    run_dir: Path | None
    predictions: list[str]
    references: list
    sources: list[str] | None
    metrics: list[str]  # the run's metrics, in its own order
    scoring: dict  # the run's scoring options (`src.metrics.text.SCORING_KEYS`)
    used_wandb: bool
    wandb: dict  # the run's W&B project, entity and group


def load_side(arg: str) -> Side:
    """A run directory, an evaluation directory, or a predictions.jsonl file."""
    path = Path(arg)
    if path.is_dir():
        path = path / "predictions.jsonl"
        if not path.is_file():
            raise UserError(
                f"{arg} holds no predictions.jsonl (has the run finished?). Fix: give a finished run directory, "
                "an src.eval output directory, or a predictions.jsonl file."
            )
    predictions, references, sources = read_predictions(path)
    run_dir = path.parent if (path.parent / "metrics.json").is_file() else None
    settings = run_settings(path)  # a src.train run: its task's metrics
    metrics, scoring = settings.get("metrics", []), scoring_options(settings)
    result = json.loads((run_dir / "metrics.json").read_text()) if run_dir else {}
    used_wandb, wb = False, {}
    composed = path.parent / ".hydra" / "config.yaml"
    if composed.is_file():  # and its logger
        logger = OmegaConf.load(composed).get("logger") or {}
        used_wandb = logger.get("kind") == "wandb"
        wb = {
            "project": logger.get("project"),
            "entity": logger.get("entity"),
            "group": wandb_group_of(path.parent),
        }
    if not metrics:  # an src.eval directory, or a run without its composed config: the metrics it reported
        scores = result.get("test") or result.get("metrics") or {}
        metrics = [m for m in scores if m in SUPPORTED]
    used_wandb = used_wandb or (path.parent / "wandb").is_dir()
    label = result.get("run_name") or (run_dir.name if run_dir else path.stem)
    return Side(label, path, run_dir, predictions, references, sources, metrics, scoring, used_wandb, wb)


def wandb_group_of(run_dir: Path) -> str | None:
    """The W&B group a run logged to (`src.loggers.wandb_group`): its sweep's name, else its experiment, else none."""
    hydra_file = run_dir / ".hydra" / "hydra.yaml"
    if not hydra_file.is_file():
        return None
    hydra_cfg = OmegaConf.load(hydra_file).hydra
    if str(hydra_cfg.get("mode")) == "MULTIRUN":
        raw = OmegaConf.to_container(OmegaConf.load(run_dir / ".hydra" / "config.yaml")).get("sweep_name")
        # a sweep_name left to its default (the launch time) is the sweep directory's name
        return str(raw) if raw and "${" not in str(raw) else run_dir.resolve().parent.name
    return hydra_cfg.runtime.choices.get("experiment")


def check_paired(a: Side, b: Side) -> None:
    """Both files must hold the same examples in the same order (the same split of the same task)."""
    if len(a.predictions) != len(b.predictions):
        raise UserError(
            f"{a.path} has {len(a.predictions)} examples and {b.path} {len(b.predictions)}: not the same split. "
            "Fix: compare runs evaluated on the same test split (src.eval ckpt_path=... writes one)."
        )
    for i, (ra, rb) in enumerate(zip(a.references, b.references, strict=True)):
        sa, sb = (a.sources[i] if a.sources else None), (b.sources[i] if b.sources else None)
        if ra != rb or (sa is not None and sb is not None and sa != sb):
            raise UserError(
                f"example {i + 1} differs between {a.path} and {b.path} (source or reference): not the same split "
                "in the same order. Fix: compare runs of the same task and data subset."
            )


def choose_metric(a: Side, b: Side, metric: str | None) -> str:
    if metric:
        if metric not in SUPPORTED:
            raise UserError(f"--metric {metric} is unknown. Fix: one of {', '.join(SUPPORTED)}.")
        return metric
    common = [m for m in a.metrics if m in b.metrics] or a.metrics or b.metrics
    if not common:
        raise UserError(
            f"which metric? Neither {a.path} nor {b.path} is in a run directory that names its metrics. "
            f"Fix: --metric <one of {', '.join(SUPPORTED)}>."
        )
    return next((m for m in PREFERRED if m in common), common[0])


def marked(words: list[str], other: list[str], left: bool, style: str) -> str:
    """`words` with the words not in `other` (by a word-level diff) marked: <mark> in HTML, **bold** in Markdown."""
    out = []
    matcher = difflib.SequenceMatcher(None, words, other, autojunk=False)
    for op, i1, i2, j1, j2 in matcher.get_opcodes():
        span = words[i1:i2] if left else other[j1:j2]
        if not span:
            continue
        text = " ".join(span)
        if style == "html":
            text = html.escape(text)
            out.append(text if op == "equal" else f"<mark>{text}</mark>")
        else:
            text = md_cell(text)
            out.append(text if op == "equal" else f"**{text}**")
    return " ".join(out)


def md_cell(text: str) -> str:
    return text.replace("\\", "\\\\").replace("|", "\\|").replace("\n", "<br>").replace("*", "\\*")


def compare(
    a: Side,
    b: Side,
    metric: str | None = None,
    resamples: int = RESAMPLES,
    seed: int = SEED,
    confidence: float = CONFIDENCE,
) -> dict:
    """Per-example scores, win/tie/loss, and the paired bootstrap; the examples sorted by |gap|, largest first."""
    check_paired(a, b)
    metric = choose_metric(a, b, metric)
    if metric == "sari" and (a.sources is None or b.sources is None):
        raise UserError("sari needs each example's `source`. Fix: --metric <another metric>.")
    # both sides scored one way: A's options, uncased BLEU if either run's was
    lowercase = bool(a.scoring.get("bleu_lowercase") or b.scoring.get("bleu_lowercase"))
    scorer = ExampleScorer([metric], **{**b.scoring, **a.scoring, "bleu_lowercase": lowercase})
    stats_a = scorer.statistics(a.predictions, a.references, a.sources)[metric]
    stats_b = scorer.statistics(b.predictions, b.references, b.sources or a.sources)[metric]
    score_a = np.array([ExampleScorer.sentence(metric, s) for s in stats_a])
    score_b = np.array([ExampleScorer.sentence(metric, s) for s in stats_b])
    gap = score_b - score_a
    tol = 1e-9
    interval = paired_bootstrap(
        metric, stats_a, stats_b, resamples=resamples, seed=seed, confidence=confidence
    )
    n = len(gap)
    order = sorted(range(n), key=lambda i: (-abs(gap[i]), i))
    examples = [
        {
            "index": i,
            "source": a.sources[i] if a.sources else (b.sources[i] if b.sources else ""),
            "reference": a.references[i]
            if isinstance(a.references[i], str)
            else " || ".join(a.references[i]),
            "a": a.predictions[i],
            "b": b.predictions[i],
            "score_a": float(score_a[i]),
            "score_b": float(score_b[i]),
            "gap": float(gap[i]),
        }
        for i in order
    ]
    return {
        "a": {"label": a.label, "path": str(a.path)},
        "b": {"label": b.label, "path": str(b.path)},
        "metric": metric,
        "examples_count": n,
        "corpus": {
            "a": ExampleScorer.corpus(metric, stats_a.sum(0), n),
            "b": ExampleScorer.corpus(metric, stats_b.sum(0), n),
        },
        "b_wins": int((gap > tol).sum()),
        "ties": int((abs(gap) <= tol).sum()),
        "a_wins": int((gap < -tol).sum()),
        "identical_predictions": sum(x == y for x, y in zip(a.predictions, b.predictions, strict=True)),
        "bootstrap": interval.as_dict(),
        "examples": examples,
    }


def summary_lines(result: dict) -> list[tuple[str, str]]:
    iv = Interval(**{k: v for k, v in result["bootstrap"].items() if k != "significant"})
    a, b, m, n = result["a"]["label"], result["b"]["label"], result["metric"], result["examples_count"]
    verdict = (
        f"B is {'better' if iv.delta > 0 else 'worse'}: the interval excludes 0"
        if iv.significant
        else "no significant difference: the interval includes 0"
    )
    return [
        ("A", a),
        ("B", b),
        (f"corpus {m} (A / B)", f"{result['corpus']['a']:.2f} / {result['corpus']['b']:.2f}"),
        (
            f"B - A, {100 * iv.confidence:.0f}% paired-bootstrap interval",
            f"{iv.delta:+.2f} [{iv.low:+.2f}, {iv.high:+.2f}] ({verdict}; p = {iv.p_value:.3f}, "
            f"{iv.resamples} resamples, seed {iv.seed})",
        ),
        (
            f"examples where B wins / ties / A wins (sentence {m})",
            f"{result['b_wins']} / {result['ties']} / {result['a_wins']} of {n}",
        ),
        ("identical predictions", f"{result['identical_predictions']} of {n}"),
    ]


def to_markdown(result: dict, limit: int) -> str:
    m = result["metric"]
    lines = [f"# {result['a']['label']} (A) vs {result['b']['label']} (B)", ""]
    lines += [markdown_table(["", ""], [[k, md_cell(v)] for k, v in summary_lines(result)]), ""]
    shown = result["examples"][:limit]
    lines += [
        f"## Examples by gap, largest first ({len(shown)} of {result['examples_count']}; sentence {m}, 0-100; "
        "words that differ between the predictions in **bold**)",
        "",
    ]
    rows = []
    for e in shown:
        wa, wb = e["a"].split(), e["b"].split()
        rows.append(
            [
                e["index"] + 1,
                f"{e['gap']:+.1f}",
                f"{e['score_a']:.1f}",
                f"{e['score_b']:.1f}",
                md_cell(e["source"]),
                md_cell(e["reference"]),
                marked(wa, wb, True, "md"),
                marked(wa, wb, False, "md"),
            ]
        )
    header = ["#", "B - A", "A", "B", "source", "reference", "prediction A", "prediction B"]
    lines.append(markdown_table(header, rows, "rrrrllll"))
    return "\n".join(lines) + "\n"


STYLE = """
body { font: 14px/1.4 system-ui, sans-serif; margin: 24px; color: #222; }
table { border-collapse: collapse; }
th, td { border: 1px solid #ccc; padding: 4px 8px; vertical-align: top; text-align: left; }
th { background: #f3f3f3; position: sticky; top: 0; }
td.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
#examples td.text { max-width: 28em; }
mark { background: #ffe08a; }
tr.b-wins td.gap { color: #17702b; } tr.a-wins td.gap { color: #b3261e; }
#summary th { position: static; }
"""


def to_html(result: dict, limit: int) -> str:
    a, b, m = result["a"]["label"], result["b"]["label"], result["metric"]
    esc = html.escape
    summary = "\n".join(f"<tr><th>{esc(k)}</th><td>{esc(v)}</td></tr>" for k, v in summary_lines(result))
    rows = []
    for e in result["examples"][:limit]:
        wa, wb = e["a"].split(), e["b"].split()
        kind = "b-wins" if e["gap"] > 1e-9 else "a-wins" if e["gap"] < -1e-9 else "tie"
        rows.append(
            f'<tr class="{kind}"><td class="num">{e["index"] + 1}</td>'
            f'<td class="num gap">{e["gap"]:+.1f}</td><td class="num">{e["score_a"]:.1f}</td>'
            f'<td class="num">{e["score_b"]:.1f}</td><td class="text">{esc(e["source"])}</td>'
            f'<td class="text">{esc(e["reference"])}</td><td class="text pred-a">{marked(wa, wb, True, "html")}</td>'
            f'<td class="text pred-b">{marked(wa, wb, False, "html")}</td></tr>'
        )
    shown = min(limit, result["examples_count"])
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{esc(a)} vs {esc(b)}</title>
<style>{STYLE}</style></head>
<body>
<h1>{esc(a)} (A) vs {esc(b)} (B)</h1>
<table id="summary">
{summary}
</table>
<h2>Examples by gap, largest first ({shown} of {result["examples_count"]}; sentence {esc(m)}, 0-100;
words that differ between the predictions <mark>marked</mark>)</h2>
<table id="examples">
<thead><tr><th>#</th><th>B - A</th><th>A</th><th>B</th><th>source</th><th>reference</th>
<th>prediction A</th><th>prediction B</th></tr></thead>
<tbody>
{chr(10).join(rows)}
</tbody>
</table>
</body></html>
"""


def log_to_wandb(result: dict, a: Side, b: Side, out: Path, mode: str) -> str | None:
    """The per-example table and the summary as a W&B run of job_type `compare`, when the runs used W&B (or
    mode is online/offline). Returns the mode used, or None."""
    from src.loggers import resolve_wandb_mode

    if mode == "disabled" or (mode == "auto" and not (a.used_wandb or b.used_wandb)):
        return None
    resolved = resolve_wandb_mode(mode)
    if resolved == "disabled":
        return None
    import wandb

    run = wandb.init(
        project=a.wandb.get("project") or b.wandb.get("project") or "warmstart",
        entity=a.wandb.get("entity") or b.wandb.get("entity"),
        group=a.wandb.get("group") or b.wandb.get("group"),
        job_type="compare",
        name=f"compare-{a.label}-vs-{b.label}",
        mode=resolved,
        dir=str(out),
        config={"a": str(a.path), "b": str(b.path), "metric": result["metric"]},
        settings=wandb.Settings(console="off", silent=True),
    )
    columns = ["index", "gap", "score_a", "score_b", "source", "reference", "a", "b"]
    table = wandb.Table(columns=columns, data=[[e[c] for c in columns] for e in result["examples"]])
    run.log({"compare/examples": table})
    boot = result["bootstrap"]
    run.summary.update(
        {
            f"compare/{k}": v
            for k, v in {
                "a": result["corpus"]["a"],
                "b": result["corpus"]["b"],
                "delta": boot["delta"],
                "low": boot["low"],
                "high": boot["high"],
                "p_value": boot["p_value"],
                "b_wins": result["b_wins"],
                "ties": result["ties"],
                "a_wins": result["a_wins"],
            }.items()
        }
    )
    run.finish()
    return resolved


def default_out(a: Side, b: Side) -> Path:
    name = (
        f"{a.label}-vs-{b.label}" if a.label != b.label else f"{a.path.parent.name}-vs-{b.path.parent.name}"
    )
    return Path("outputs/compare") / name.replace("/", "_")


def main(argv: list[str] | None = None) -> int:
    setup_process()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_a", help="run directory, src.eval directory or predictions.jsonl (A)")
    parser.add_argument("run_b", help="the same for B, on the same split")
    parser.add_argument(
        "--metric", help=f"the per-example metric (default rouge2, else the task's first): {SUPPORTED}"
    )
    parser.add_argument("--out", help="where to write (default outputs/compare/<A>-vs-<B>)")
    parser.add_argument("--resamples", type=int, default=RESAMPLES, help="bootstrap resamples (default 1000)")
    parser.add_argument("--seed", type=int, default=SEED, help="bootstrap seed (default 0)")
    parser.add_argument("--confidence", type=float, default=CONFIDENCE, help="interval level (default 0.95)")
    parser.add_argument(
        "--limit", type=int, default=500, help="examples shown in the .md and .html (default 500)"
    )
    parser.add_argument(
        "--wandb",
        default="auto",
        choices=["auto", "online", "offline", "disabled"],
        help="log the table to W&B: auto = when the runs used W&B (online if possible, else offline)",
    )
    args = parser.parse_args(argv)
    with report_user_errors():
        a, b = load_side(args.run_a), load_side(args.run_b)
        if a.label == b.label:  # one run under two decodings, say: name them by their directories
            a.label, b.label = a.path.parent.name, b.path.parent.name
        result = compare(a, b, args.metric, args.resamples, args.seed, args.confidence)
        out = Path(args.out) if args.out else default_out(a, b)
        out.mkdir(parents=True, exist_ok=True)
        atomic_write_text(out / "compare.md", to_markdown(result, args.limit))
        atomic_write_text(out / "compare.html", to_html(result, args.limit))
        write_json(out / "compare.json", result)
        for key, value in summary_lines(result):
            print(f"{key}: {value}")
        mode = log_to_wandb(result, a, b, out, args.wandb)
        if mode:
            print(f"logged to W&B ({mode}) as job_type compare")
        print(f"written: {out / 'compare.md'}, {out / 'compare.html'}, {out / 'compare.json'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
