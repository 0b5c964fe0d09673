"""Files a command writes, replaced atomically (a reader sees the old file or the new one), and Markdown tables."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path


def atomic_write_text(path: str | Path, text: str) -> None:
    """Write to a temporary file beside `path`, then rename: a reader sees the old file or the new one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_json(path: str | Path, data: dict) -> None:
    atomic_write_text(path, json.dumps(data, indent=2, sort_keys=False) + "\n")


def markdown_table(header: list[str], rows: list[list], align: str = "") -> str:
    """A Markdown table; `align` has one letter per column, `r` for right-aligned (default: all left)."""
    align = align or "l" * len(header)
    sep = "|" + "|".join("---:" if a == "r" else "---" for a in align) + "|"
    lines = ["| " + " | ".join(header) + " |", sep]
    return "\n".join(lines + ["| " + " | ".join(str(c) for c in row) + " |" for row in rows])


def results_table(rows: dict[str, dict[str, float]], metrics: list[str]) -> str:
    """A small Markdown table: one row per evaluation (e.g. before/after training), one column per metric."""
    head = "| | " + " | ".join(metrics) + " |"
    sep = "|---|" + "---:|" * len(metrics)
    body = [
        f"| {name} | " + " | ".join(f"{vals.get(m, float('nan')):.2f}" for m in metrics) + " |"
        for name, vals in rows.items()
    ]
    return "\n".join([head, sep, *body])
