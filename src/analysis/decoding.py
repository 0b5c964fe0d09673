"""The table of a decoding sweep (`python -m src.eval -m ckpt_path=... decoding.num_beams=1,4`).

Each job of the sweep evaluated one checkpoint under one decoding setting on validation and test. The table has a
row per setting; the best setting is chosen on the validation split's primary metric (ROUGE-2 where the task has
it) and reported with its test scores, so the test split is never what picks the decoding.
"""

from __future__ import annotations

import csv
import io
import logging
from pathlib import Path

from hydra.experimental.callback import Callback

from src.metrics.text import primary_metric
from src.run.record import read_metrics
from src.run.run_record import EVALUATED_SPLITS
from src.system.outputs import atomic_write_text, markdown_table

log = logging.getLogger(__name__)


def decoding_results(sweep_dir: Path) -> list[dict]:
    """Every evaluation under `sweep_dir`: its directory, decoding and per-split metrics."""
    rows = []
    for path in sorted(sweep_dir.glob("*/metrics.json"), key=lambda p: p.parent.name):
        result = read_metrics(path.parent)
        if result is None:
            rows.append({"dir": path.parent.name, "decoding": {}, "splits": {}})
            continue
        splits = {s: result.scores(s) for s in EVALUATED_SPLITS if result.scores(s)}
        rows.append({"dir": path.parent.name, "decoding": result.decoding or {}, "splits": splits})
    return rows


def best_on_validation(rows: list[dict]) -> tuple[str | None, dict | None]:
    """(metric, row) with the highest validation score of the primary metric; (None, None) without validation."""
    scored = [r for r in rows if "validation" in r["splits"]]
    if not scored:
        return None, None
    metric = primary_metric(scored[0]["splits"]["validation"])
    return metric, max(scored, key=lambda r: r["splits"]["validation"].get(metric, float("-inf")))


def write_decoding_table(sweep_dir: Path) -> dict | None:
    """decoding.md and decoding.csv in `sweep_dir`; returns {"rows", "metric", "best"}, or None if no job finished."""
    rows = decoding_results(sweep_dir)
    if not rows:
        return None
    keys = list(dict.fromkeys(k for r in rows for k in r["decoding"]))  # generate's arguments, as evaluated
    varied = [k for k in keys if len({str(r["decoding"].get(k)) for r in rows}) > 1] or keys
    metric, best = best_on_validation(rows)
    # the loss is teacher-forced: the same under every decoding
    test_metrics = sorted({m for r in rows for m in r["splits"].get("test", {}) if m != "loss"})
    header = [
        *varied,
        *([f"validation {metric}"] if metric else []),
        *[f"test {m}" for m in test_metrics],
        "dir",
    ]
    table, records = [], []
    for r in rows:
        val = r["splits"].get("validation", {}).get(metric) if metric else None
        test = r["splits"].get("test", {})
        record = {
            **{k: r["decoding"].get(k) for k in varied},
            **({f"validation {metric}": val} if metric else {}),
            **{f"test {m}": test.get(m) for m in test_metrics},
            "dir": r["dir"],
        }
        records.append(record)
        cells = [_fmt(record[h]) for h in header]
        if r is best:
            cells[0] = f"**{cells[0]}** (best)"
        table.append(cells)
    lines = [f"# Decoding sweep: {sweep_dir.name}", "", markdown_table(header, table), ""]
    if best is not None:
        setting = ", ".join(f"{k}={best['decoding'].get(k)}" for k in varied)
        test = best["splits"].get("test", {})
        lines.append(
            f"Best on validation {metric}: {setting} (validation {best['splits']['validation'][metric]:.2f}); "
            f"its test scores: " + ", ".join(f"{m} {v:.2f}" for m, v in sorted(test.items()) if m != "loss")
        )
    else:
        lines.append("No setting was evaluated on validation (split=test): nothing is chosen.")
    atomic_write_text(sweep_dir / "decoding.md", "\n".join(lines) + "\n")
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=[*header, "best"])
    writer.writeheader()
    for r, record in zip(rows, records, strict=True):
        writer.writerow({**record, "best": r is best})
    atomic_write_text(sweep_dir / "decoding.csv", buf.getvalue())
    return {"rows": records, "metric": metric, "best": best}


def _fmt(value) -> str:
    if value is None:
        return ""
    return f"{value:.2f}" if isinstance(value, float) else str(value)


class DecodingTable(Callback):
    """Hydra callback of `src.eval` (conf/eval.yaml): after a sweep, the table of its decodings."""

    def on_multirun_end(self, config, **kwargs) -> None:
        sweep_dir = Path(config.hydra.sweep.dir)
        result = write_decoding_table(sweep_dir)
        if result is not None:
            log.info("decoding sweep:\n%s", (sweep_dir / "decoding.md").read_text())
