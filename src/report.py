"""Compare the runs of a sweep: report.md, report.csv and report.png, with the paper's figures alongside.

    python -m src.report outputs/sweeps/rothe_grid_demo
    python -m src.report outputs/sweeps/rothe_grid-cnn_dailymail --out reports/cnn

It reads only run directories (their metrics.json), so it works on partial sweeps and on runs copied from a
cluster; failed runs are listed with their error.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import logging
from pathlib import Path

from omegaconf import OmegaConf

from src.outputs import atomic_write_text
from src.process import setup_process
from src.variants import VARIANTS

log = logging.getLogger(__name__)
PAPER = Path(__file__).resolve().parents[1] / "conf" / "paper" / "rothe2020.yaml"
PRIMARY = (
    "rouge2",
    "sari",
    "bleu",
    "bleu_nltk",
    "exact",
    "rougeL",
    "rouge1",
)  # the chart's metric, first found


def load_runs(sweep_dir: Path) -> list[dict]:
    """Every metrics.json under `sweep_dir` (any depth), with the directory it came from."""
    runs = []
    for path in sorted(sweep_dir.rglob("metrics.json")):
        try:
            metrics = json.loads(path.read_text())
        except ValueError:
            metrics = {"status": "unreadable"}
        metrics["dir"] = str(path.parent.relative_to(sweep_dir))
        composed = path.parent / ".hydra" / "config.yaml"
        if "variant" not in metrics and composed.is_file():  # runs written before metrics.json named it
            metrics["variant"] = OmegaConf.load(composed).get("variant")
        runs.append(metrics)
    order = {v: i for i, v in enumerate(VARIANTS)}
    runs.sort(key=lambda r: (order.get(r.get("variant") or "", len(order)), r.get("run_name", ""), r["dir"]))
    return runs


def build_rows(runs: list[dict], paper: dict) -> tuple[list[str], list[dict]]:
    """Table columns and rows: one row per run, test metrics, paper figures where the task is the paper's."""
    metrics = []
    for r in runs:
        metrics += [m for m in r.get("test", {}) if m != "loss" and m not in metrics]
    has_paper = any(r.get("data") in paper.get("results", {}) for r in runs)
    columns = ["variant", "data", "seed", "status", *metrics]
    if has_paper:
        columns += [f"paper {m}" for m in metrics]
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
    for r in runs:
        test, params, train = r.get("test", {}), r.get("params", {}), r.get("train", {})
        variant = r.get("variant") or r.get("run_name") or r["dir"]
        row = {"variant": variant, "data": r.get("data"), "seed": r.get("seed"), "status": r.get("status")}
        if r.get("status") == "failed":
            row["status"] = f"failed: {r.get('error', '')[:120]}"
        row.update({m: test.get(m) for m in metrics})
        if has_paper:
            ref = paper["results"].get(r.get("data"), {}).get(variant, {})
            row.update({f"paper {m}": ref.get(m) for m in metrics})
        row.update(
            {
                "test loss": test.get("loss"),
                "params (M)": _millions(params.get("total")),
                "from ckpt (M)": _millions(params.get("from_checkpoint")),
                "random (M)": _millions(params.get("random")),
                "steps": train.get("steps"),
                "wall time (s)": train.get("wall_time_s"),
                "samples/s": train.get("samples_per_s"),
            }
        )
        rows.append(row)
    return columns, rows


def _millions(n: int | None) -> float | None:
    return None if n is None else n / 1e6


def _fmt(value) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.2f}" if abs(value) < 1e4 else f"{value:.0f}"
    return str(value)


def markdown(columns: list[str], rows: list[dict], title: str) -> str:
    lines = [f"# {title}", "", "| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(_fmt(row.get(c)) for c in columns) + " |" for row in rows]
    lines += [
        "",
        "Metrics are test-split scores (0-100); `paper` columns are Rothe et al. (2020), base models.",
    ]
    return "\n".join(lines) + "\n"


def chart(rows: list[dict], columns: list[str], path: Path) -> str | None:
    """A bar chart of the primary metric per run (paper's figure beside it when known); returns the metric."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    metric = next((m for m in PRIMARY if m in columns), None)
    done = [r for r in rows if r.get(metric) is not None]
    if metric is None or not done:
        return None
    fig, ax = plt.subplots(figsize=(max(4, 1.1 * len(done)), 3.6), dpi=120)
    x = range(len(done))
    paper_col = f"paper {metric}"
    with_paper = paper_col in columns and any(r.get(paper_col) is not None for r in done)
    width = 0.4 if with_paper else 0.7
    ax.bar(
        [i - (width / 2 if with_paper else 0) for i in x], [r[metric] for r in done], width, label="this run"
    )
    if with_paper:
        ax.bar(
            [i + width / 2 for i in x], [r.get(paper_col) or 0 for r in done], width, label="paper", alpha=0.6
        )
        ax.legend()
    ax.set_xticks(list(x), [r["variant"] for r in done], rotation=30, ha="right")
    ax.set_ylabel(f"test {metric}")
    ax.set_title(f"{done[0].get('data')}: test {metric} by variant")
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    path.write_bytes(buf.getvalue())
    return metric


def write_report(sweep_dir: str | Path, out_dir: str | Path | None = None) -> dict:
    """Write report.md, report.csv and report.png; returns {"runs": n, "failed": n, "files": [...]}."""
    sweep_dir = Path(sweep_dir)
    if not sweep_dir.is_dir():
        raise SystemExit(
            f"error: {sweep_dir} is not a directory. Fix: pass a sweep directory under outputs/sweeps/."
        )
    out = Path(out_dir) if out_dir else sweep_dir
    out.mkdir(parents=True, exist_ok=True)
    runs = load_runs(sweep_dir)
    if not runs:
        raise SystemExit(
            f"error: no metrics.json under {sweep_dir}: no run has finished or failed there yet."
        )
    paper = OmegaConf.to_container(OmegaConf.load(PAPER))
    columns, rows = build_rows(runs, paper)
    atomic_write_text(out / "report.md", markdown(columns, rows, f"Comparison: {sweep_dir.name}"))
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=columns)
    writer.writeheader()
    writer.writerows({c: row.get(c) for c in columns} for row in rows)
    atomic_write_text(out / "report.csv", buf.getvalue())
    files = [str(out / "report.md"), str(out / "report.csv")]
    if chart(rows, columns, out / "report.png"):
        files.append(str(out / "report.png"))
    failed = sum(1 for r in runs if r.get("status") != "completed")
    return {"runs": len(runs), "failed": failed, "files": files, "columns": columns, "rows": rows}


def log_report_to_wandb(
    result: dict, sweep_dir: Path, mode: str = "auto", project: str = "warmstart"
) -> str | None:
    """The comparison table (and chart) as a W&B run of job_type `report` in the sweep's group.

    mode auto logs only when W&B is online (credentials and a connection); returns the mode used, or None.
    """
    from src.loggers import resolve_wandb_mode

    resolved = resolve_wandb_mode(mode)
    if resolved == "disabled" or (mode == "auto" and resolved != "online"):
        return None
    import wandb

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
    table = wandb.Table(columns=columns, data=[[_fmt(row.get(c)) for c in columns] for row in result["rows"]])
    payload = {"report": table}
    png = sweep_dir / "report.png"
    if png.is_file():
        payload["report_chart"] = wandb.Image(str(png))
    run.log(payload)
    run.finish()
    return resolved


def main(argv=None) -> None:
    setup_process()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("sweep_dir", help="a sweep directory, e.g. outputs/sweeps/rothe_grid_demo")
    parser.add_argument("--out", help="where to write the report (default: the sweep directory)")
    parser.add_argument(
        "--wandb",
        default="auto",
        choices=["auto", "online", "offline", "disabled"],
        help="also log the table to W&B: auto = only when online (default)",
    )
    args = parser.parse_args(argv)
    result = write_report(args.sweep_dir, args.out)
    if log_report_to_wandb(result, Path(args.sweep_dir), args.wandb):
        print(f"report logged to W&B ({args.wandb}) in group {Path(args.sweep_dir).name}")
    print(Path(result["files"][0]).read_text())
    print(f"{result['runs']} runs ({result['failed']} not completed); written: {', '.join(result['files'])}")


if __name__ == "__main__":
    main()
