"""Imports stand at the top of a file, so a module's dependencies show there; one inside a function says why in a
comment (start-up time, an optional dependency). The reasons given for start-up time hold: the commands that only
read run directories start without Lightning, W&B, datasets or the models' builder, and neither side of the benchmark
loads the other's libraries on import."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

from src.system.paths import REPO

SOURCES = ("src", "scripts", "hydra_plugins")


def unexplained_imports(path: Path, root: Path = REPO) -> list[str]:
    """`path:line` of each block of imports inside a function with no comment on it or on the line above it."""
    text = path.read_text()
    lines = text.splitlines()
    found = []
    for function in ast.walk(ast.parse(text)):
        if not isinstance(function, (ast.FunctionDef, ast.AsyncFunctionDef)):
            continue
        imports = sorted(
            (n for n in ast.walk(function) if isinstance(n, (ast.Import, ast.ImportFrom))),
            key=lambda n: n.lineno,
        )
        blocks: list[list[ast.stmt]] = []
        for node in imports:  # consecutive imports (a blank line between them allowed) are one block
            if blocks and node.lineno <= blocks[-1][-1].end_lineno + 2:
                blocks[-1].append(node)
            else:
                blocks.append([node])
        for block in blocks:
            first, last = block[0].lineno, block[-1].end_lineno
            if not any("#" in line for line in lines[first - 2 : last]):
                found.append(f"{path.relative_to(root)}:{first}")
    return found


def test_an_import_inside_a_function_says_why():
    files = [p for root in SOURCES for p in sorted((REPO / root).rglob("*.py"))]
    assert len(files) > 50
    unexplained = [where for path in files for where in unexplained_imports(path)]
    assert not unexplained, (
        f"move these imports to the top of their file, or say why they are here: {unexplained}"
    )


def test_the_rule_finds_an_unexplained_import(tmp_path):
    module = tmp_path / "probe.py"
    module.write_text(
        "def f():\n    import json\n\n    return json\n\n\n"
        "def g():\n    import csv  # only for g: a reason\n\n    return csv\n"
    )
    assert unexplained_imports(module, tmp_path) == ["probe.py:2"]


def test_commands_that_read_run_directories_start_without_the_heavy_libraries():
    heavy = ["lightning", "wandb", "datasets", "src.models.builder", "src.models.module"]
    script = (
        "import json, sys\n"
        "loaded = {}\n"
        "for command in ('src.report', 'src.compare', 'src.score', 'src.average'):\n"
        "    __import__(command)\n"
        f"    loaded[command] = [m for m in {heavy!r} if m in sys.modules]\n"
        "import scripts.bench.harness  # each side of the benchmark imports its libraries in its own process\n"
        "loaded['scripts.bench.harness'] = [m for m in ('lightning', 'datasets') if m in sys.modules]\n"
        "print(json.dumps(loaded))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, check=True, timeout=300
    )
    loaded = json.loads(done.stdout.strip().splitlines()[-1])
    commands = ("src.report", "src.compare", "src.score", "src.average", "scripts.bench.harness")
    assert loaded == {c: [] for c in commands}, loaded
