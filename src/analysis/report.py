"""A sweep's runs as a comparison table: loaded from their run directories (partial sweeps and runs copied from a
cluster included), grouped by what was trained (seeds averaged), with paired-bootstrap intervals against a
baseline, the paper's figures alongside, and report.md / report.csv / report.png (and a W&B table) written."""

from __future__ import annotations

import csv
import io
import logging
import re
import statistics
from pathlib import Path

from omegaconf import OmegaConf

from src.analysis.charts import chart
from src.metrics.significance import RESAMPLES, Interval, paired_bootstrap
from src.metrics.text import ExampleScorer, primary_metric, scoring_options
from src.paper.figures import paper_figures
from src.paper.variants import VARIANTS
from src.run.loggers import resolve_wandb_mode
from src.run.record import read_metrics, read_predictions, run_settings
from src.system.errors import UserError
from src.system.outputs import atomic_write_text
from src.system.paths import CONF

log = logging.getLogger(__name__)


TRAIN_CONF = CONF / "train.yaml"


def _not_identity() -> set[str]:
    """Override keys that do not change what is trained (train.yaml's list for run directories), plus seed."""
    hydra_job = OmegaConf.load(TRAIN_CONF).hydra.job
    return {*hydra_job.config.override_dirname.exclude_keys, "seed", "sweep_name"}


def load_runs(sweep_dir: Path) -> list[dict]:
    """Every run record under `sweep_dir` (any depth), as a row's fields: the record's keys (`RunRecord.as_dict`),
    the directory it came from and its overrides."""
    runs = []
    for path in sorted(sweep_dir.rglob("metrics.json")):
        record = read_metrics(path.parent)
        composed = path.parent / ".hydra" / "config.yaml"
        unnamed = record is not None and record.variant is None  # a run written before records named it
        if unnamed and composed.is_file():
            record.variant = OmegaConf.load(composed).get("variant")
        metrics = record.as_dict() if record is not None else {"status": "unreadable"}
        metrics["tested"] = record.tested() if record is not None else None
        metrics["dir"] = str(path.parent.relative_to(sweep_dir))
        metrics["path"] = path.parent
        overrides = path.parent / ".hydra" / "overrides.yaml"
        metrics["overrides"] = list(OmegaConf.load(overrides)) if overrides.is_file() else None
        runs.append(metrics)
    order = {v: i for i, v in enumerate(VARIANTS)}
    runs.sort(
        key=lambda r: (order.get(r.get("variant") or "", len(order)), r.get("run_name") or "", r["dir"])
    )
    return runs


def group_runs(runs: list[dict]) -> list[dict]:
    """Runs that differ only in `seed` as one group: {"label", "data", "runs": [...]}; a run that did not complete
    is a group of its own. Labels are the variant (or the run name without its seed), with the overrides that
    tell groups apart added where two groups would share one."""
    ignore = _not_identity()
    groups: dict[tuple, dict] = {}
    for r in runs:
        if r.get("overrides") is not None:
            own = tuple(sorted(o for o in r["overrides"] if o.split("=")[0].lstrip("+~") not in ignore))
        else:
            own = (re.sub(r"-s\d+$", "", r.get("run_name") or r["dir"]),)
        done = r.get("status") == "completed"
        key = (r.get("data"), own, "completed" if done else r["dir"])
        base = r.get("variant") or re.sub(r"-s\d+$", "", r.get("run_name") or "") or r["dir"]
        groups.setdefault(key, {"label": base, "data": r.get("data"), "own": set(own), "runs": []})[
            "runs"
        ].append(r)
    out = list(groups.values())
    by_label: dict[tuple, list[dict]] = {}
    for g in out:
        by_label.setdefault((g["label"], g["data"]), []).append(g)
    for clash in by_label.values():
        if len(clash) < 2 or not all(h["runs"][0].get("status") == "completed" for h in clash):
            continue
        shared = set.intersection(*(h["own"] for h in clash))
        for g in clash:
            extra = sorted(g["own"] - shared)
            g["label"] = f"{g['label']} ({' '.join(extra)})" if extra else g["label"]
    return out


def build_rows(
    runs: list[dict],
    paper: dict,
    baseline: str | None = None,
    resamples: int = RESAMPLES,
    tolerance: float | None = None,
) -> tuple[list[str], list[dict]]:
    """Table columns and rows: one row per group of seeds (mean, std, n), paper figures where the task is the
    paper's with the gap to them, and the paired-bootstrap interval of each row's difference from the baseline."""
    metrics = []
    for r in runs:
        metrics += [m for m in r.get("test", {}) if m != "loss" and m not in metrics]
    has_paper = any(r.get("data") in paper.get("results", {}) for r in runs)
    tolerance = paper.get("tolerance", 1.0) if tolerance is None else tolerance
    primary = primary_metric(metrics)
    groups = group_runs(runs)
    columns = ["variant", "data", "seeds", "status", "tested", *metrics]
    if has_paper:
        columns += [f"paper {m}" for m in metrics]
        if primary:
            columns.append(f"gap to paper ({primary})")
    intervals, base_label = significance(groups, primary, baseline, resamples)
    if intervals:
        columns.append(f"{primary} vs {base_label} (95% CI)")
    columns += [
        "test loss",
        "params (M)",
        "from ckpt (M)",
        "random (M)",
        "steps",
        "wall time (s)",
        "samples/s",
    ]
    rows = []
    for g in groups:
        members, first = g["runs"], g["runs"][0]
        params, train = first.get("params", {}), first.get("train", {})
        row = {"variant": g["label"], "data": g["data"], "status": first.get("status")}
        row["seeds"] = ",".join(str(r.get("seed")) for r in members)
        # which checkpoint and weights the scores are of (a grid never mixes them silently)
        row["tested"] = " / ".join(dict.fromkeys(r.get("tested") or "?" for r in members))
        row["n"] = len(members)
        if first.get("status") == "failed":
            row["status"] = f"failed: {first.get('error', '')[:120]}"
        for m in [*metrics, "loss"]:
            values = [r["test"][m] for r in members if m in r.get("test", {})]
            key = "test loss" if m == "loss" else m
            row[key] = statistics.fmean(values) if values else None
            row[f"{key} std"] = statistics.stdev(values) if len(values) > 1 else None
        if has_paper:
            ref = paper["results"].get(g["data"], {}).get(first.get("variant") or g["label"], {})
            row.update({f"paper {m}": ref.get(m) for m in metrics})
            if primary and row.get(primary) is not None and ref.get(primary) is not None:
                gap = row[primary] - ref[primary]
                row[f"gap to paper ({primary})"] = gap
                row["gap flagged"] = abs(gap) > tolerance
        if intervals:
            row[f"{primary} vs {base_label} (95% CI)"] = intervals.get(id(g))
        row.update(
            {
                "params (M)": _millions(params.get("total")),
                "from ckpt (M)": _millions(params.get("from_checkpoint")),
                "random (M)": _millions(params.get("random")),
                "steps": train.get("steps"),
                "wall time (s)": _mean_of(members, "train", "wall_time_s"),
                "samples/s": _mean_of(members, "train", "samples_per_s"),
            }
        )
        rows.append(row)
    return columns, rows


def _mean_of(runs: list[dict], section: str, key: str) -> float | None:
    values = [r[section][key] for r in runs if r.get(section, {}).get(key) is not None]
    return statistics.fmean(values) if values else None


def significance(
    groups: list[dict], metric: str | None, baseline: str | None, resamples: int
) -> tuple[dict, str | None]:
    """{id(group): Interval of group - baseline} over the test examples (seeds averaged), per data set.

    Needs two or more completed groups with predictions.jsonl of the same examples; others get no interval.
    """
    done = [g for g in groups if g["runs"][0].get("status") == "completed"]
    if metric is None or len(done) < 2:
        return {}, None
    if baseline is not None and not any(baseline in (g["label"], g["runs"][0].get("variant")) for g in done):
        names = sorted({g["label"] for g in done})
        raise UserError(f"--baseline {baseline} is not a row of this sweep. Fix: one of {', '.join(names)}.")
    intervals, label = {}, baseline
    for data in dict.fromkeys(g["data"] for g in done):  # each data set against its own baseline row
        rows = [g for g in done if g["data"] == data]
        base = next((g for g in rows if baseline in (g["label"], g["runs"][0].get("variant"))), rows[0])
        label = label or base["label"]
        base_stats = _group_statistics(base, metric)
        if base_stats is None:
            continue
        for g in rows:
            if g is base:
                continue
            stats = _group_statistics(g, metric)
            if stats is None or {len(s) for s in stats} != {len(base_stats[0])}:
                continue
            intervals[id(g)] = paired_bootstrap(metric, base_stats, stats, resamples=resamples)
    return intervals, label


def _group_statistics(group: dict, metric: str) -> list | None:
    """Per-example statistics of each run of the group (from its predictions.jsonl), or None if one lacks them."""
    out = []
    for r in group["runs"]:
        path = Path(r["path"]) / "predictions.jsonl"
        if not path.is_file():
            return None
        settings = run_settings(path)
        predictions, references, sources = read_predictions(path)
        scorer = ExampleScorer([metric], **scoring_options(settings))
        out.append(scorer.statistics(predictions, references, sources)[metric])
    return out


def _millions(n: int | None) -> float | None:
    return None if n is None else n / 1e6


def _fmt(value) -> str:
    if value is None:
        return ""
    if isinstance(value, Interval):
        return str(value)
    if isinstance(value, float):
        return f"{value:.2f}" if abs(value) < 1e4 else f"{value:.0f}"
    return str(value)


def _cell(row: dict, column: str) -> str:
    """A Markdown cell: mean +- std where the row has several seeds, a flag where the gap to the paper is large."""
    text = _fmt(row.get(column))
    std = row.get(f"{column} std")
    if std is not None and text:
        text = f"{text} ± {std:.2f}"
    if column.startswith("gap to paper") and row.get("gap flagged"):
        text = f"{text} ⚠"
    return text


def scoring_lines(runs: list[dict]) -> list[str]:
    """What the runs' metrics computed (metrics.json's `scoring`): per metric, what it is, the tool and version, the
    text form and the signature (`provenance`; older runs: the scored text and each tool's signature), and the
    length penalty the beam search ranked with."""
    seen, unrecorded = {}, {"text": "as_given (unrecorded: an older run)"}
    completed = [r for r in runs if r.get("status") == "completed"]
    for run in completed:
        scoring = run.get("scoring") or {}
        provenance = scoring.get("provenance")
        if isinstance(provenance, dict) and provenance:
            for name, p in provenance.items():
                seen.setdefault(name, set()).add(
                    f"{p.get('what')}; {p.get('tool')}, {p.get('text')} text, `{p.get('signature')}`"
                )
            continue
        for name, value in (scoring.get("signature") or unrecorded).items():
            seen.setdefault(name, set()).add(f"`{value}`")
    lines = [f"- `{name}`: {' / '.join(sorted(values))}" for name, values in seen.items()]
    forms = {((r.get("decoding") or {}).get("length_penalty_form") or "transformers") for r in completed}
    if "gnmt" in forms or any(str(run.get("data", "")).startswith("wmt14") for run in runs):
        said = {
            "gnmt": "GNMT's, a finished hypothesis' log-probability / ((5 + length) / 6)^alpha, as the paper's "
            "tensor2tensor decoder",
            "transformers": "transformers', log-probability / length^alpha; the paper's tensor2tensor decoder "
            "divides by ((5 + length) / 6)^alpha (GNMT: data.decoding.length_penalty_form=gnmt)",
        }
        lines += [f"- length penalty: {said[form]}" for form in sorted(forms)]
    return lines


def markdown(
    columns: list[str], rows: list[dict], title: str, tolerance: float = 1.0, scoring: list[str] = ()
) -> str:
    lines = [f"# {title}", "", "| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(_cell(row, c) for c in columns) + " |" for row in rows]
    lines += [
        "",
        "Metrics are test-split scores (0-100), the mean ± sample std over the seeds listed (runs that differ only "
        "in `seed`); `paper` columns are Rothe et al. (2020), base models.",
    ]
    if any(c.startswith("gap to paper") for c in columns):
        lines.append(
            f"Gap to paper: this row minus the paper's figure (points, 0-100); ⚠ beyond ±{tolerance:g}."
        )
    ci = next((c for c in columns if "(95% CI)" in c), None)
    if ci:
        lines.append(
            f"{ci}: the difference in the corpus metric and its paired-bootstrap 95% interval over the test "
            "examples (seeds averaged, 1,000 resamples unless --resamples, seed 0); * when it excludes 0."
        )
    if scoring:
        lines += [
            "",
            'Scored (docs/paper.md, "What is scored"; `text`: the form every metric compared):',
            *scoring,
        ]
    return "\n".join(lines) + "\n"


def check_sweep_dir(sweep_dir: Path) -> None:
    """A sweep directory to read, else one UserError saying what it is instead."""
    if not sweep_dir.is_dir():
        what = "is a file, not a directory" if sweep_dir.exists() else "does not exist"
        raise UserError(
            f"{sweep_dir} {what}. Fix: pass a sweep directory, e.g. outputs/sweeps/rothe_grid_demo "
            "(ls outputs/sweeps/ lists them)."
        )


def write_report(
    sweep_dir: str | Path,
    out_dir: str | Path | None = None,
    baseline: str | None = None,
    resamples: int = RESAMPLES,
    tolerance: float | None = None,
) -> dict:
    """Write report.md, report.csv and report.png; returns {"runs": n, "failed": n, "files": [...], ...}.

    baseline: the row (variant) every other row is compared with (default: the first); tolerance: the gap to the
    paper's figure, in points, beyond which a row is flagged (default: conf/paper's `tolerance`)."""
    sweep_dir = Path(sweep_dir)
    check_sweep_dir(sweep_dir)
    out = Path(out_dir) if out_dir else sweep_dir
    out.mkdir(parents=True, exist_ok=True)
    runs = load_runs(sweep_dir)
    if not runs:
        raise UserError(
            f"no metrics.json under {sweep_dir}: no run has finished or failed there yet. "
            "Fix: give a sweep directory, e.g. outputs/sweeps/rothe_grid_demo."
        )
    paper = paper_figures()
    tolerance = paper.get("tolerance", 1.0) if tolerance is None else tolerance
    columns, rows = build_rows(runs, paper, baseline, resamples, tolerance)
    title = f"Comparison: {sweep_dir.name}"
    atomic_write_text(out / "report.md", markdown(columns, rows, title, tolerance, scoring_lines(runs)))
    atomic_write_text(out / "report.csv", to_csv(columns, rows))
    files = [str(out / "report.md"), str(out / "report.csv")]
    if chart(rows, columns, out / "report.png"):
        files.append(str(out / "report.png"))
    failed = sum(1 for r in runs if r.get("status") != "completed")
    return {"runs": len(runs), "failed": failed, "files": files, "columns": columns, "rows": rows}


def to_csv(columns: list[str], rows: list[dict]) -> str:
    """Numbers only: a `<metric> std` column beside each metric with several seeds, the interval as three."""
    fields = []
    for c in columns:
        fields.append(c)
        if any(row.get(f"{c} std") is not None for row in rows):
            fields.append(f"{c} std")
        if "(95% CI)" in c:
            fields[-1:] = [f"{c} delta", f"{c} low", f"{c} high"]
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=fields, extrasaction="ignore")
    writer.writeheader()
    for row in rows:
        flat = dict(row)
        ci = next((c for c in columns if "(95% CI)" in c), None)
        if ci and isinstance(row.get(ci), Interval):
            iv = row[ci]
            flat.update({f"{ci} delta": iv.delta, f"{ci} low": iv.low, f"{ci} high": iv.high})
        writer.writerow({f: flat.get(f) for f in fields})
    return buf.getvalue()


def log_report_to_wandb(
    result: dict, sweep_dir: Path, mode: str = "auto", project: str = "warmstart"
) -> str | None:
    """The comparison table (and chart) as a W&B run of job_type `report` in the sweep's group.

    mode auto logs only when W&B is online (credentials and a connection); returns the mode used, or None.
    """
    resolved = resolve_wandb_mode(mode)
    if resolved == "disabled" or (mode == "auto" and resolved != "online"):
        return None
    import wandb  # only when logging: 0.7 s of start-up a report without W&B skips

    run = wandb.init(
        project=project,
        group=sweep_dir.name,
        job_type="report",
        name=f"report-{sweep_dir.name}",
        mode=resolved,
        dir=str(sweep_dir),
        settings=wandb.Settings(console="off", silent=True),
    )
    columns = result["columns"]
    table = wandb.Table(columns=columns, data=[[_cell(row, c) for c in columns] for row in result["rows"]])
    payload = {"report": table}
    png = sweep_dir / "report.png"
    if png.is_file():
        payload["report_chart"] = wandb.Image(str(png))
    run.log(payload)
    run.finish()
    return resolved
