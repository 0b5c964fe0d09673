"""README.md as a newcomer reads it: short, its docs/ links alive, and its main commands valid as written.

The commands are the fenced block after `<!-- commands -->` in README.md. Each `python -m src.X ...` line is
checked against the command as it is now, without training or writing anything:

- argparse commands (score, export, predict, report, compare, plan, params, average): `--help` exits 0 and names every
  `--flag` the line uses, whole (argparse would take an abbreviation), and the line's own arguments parse (the
  command stops right after parsing);
- Hydra commands (train, eval): the line with `--cfg job` appended composes (exit 0); a `-m` sweep is composed
  once per setting of its comma-separated values (Hydra takes `--cfg` without `-m`).

Every command runs in one child process (`python -c DRIVER`, the repository as its working directory) that
executes each one as `python -m src.X` would (`runpy`, `__main__`, sys.argv as given): the project's imports
take most of a command's start-up (about 15 s each on a 2-core CPU), and paying them once keeps this test short.
"""

from __future__ import annotations

import itertools
import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"
MARK = "<!-- commands -->"
HYDRA = {"src.train", "src.eval"}  # the Hydra entry points; every other src.X takes argparse flags
COMMANDS = {"train", "eval", "predict", "export", "score", "report", "compare", "plan", "params", "average"}
MAX_LINES = 250

# Runs each job [module, argv] as `python -m module *argv` would, in this one process, and writes
# [{"code": exit status, "out": stdout + stderr}] to the file named by argv[2]. With parse_only, argparse's
# parse_args returns control here right after a successful parse (raising _Parsed), so nothing else runs.
DRIVER = r"""
import argparse, contextlib, importlib.util, io, json, runpy, sys, traceback

class _Parsed(Exception):
    pass

_parse_args = argparse.ArgumentParser.parse_args

def _parse_then_stop(self, args=None, namespace=None):
    _parse_args(self, args, namespace)
    raise _Parsed

jobs, results_file = json.loads(sys.argv[1]), sys.argv[2]
results = []
for module, argv, parse_only in jobs:
    buffer = io.StringIO()
    argparse.ArgumentParser.parse_args = _parse_then_stop if parse_only else _parse_args
    sys.argv = [importlib.util.find_spec(module).origin, *argv]
    code = 0
    with contextlib.redirect_stdout(buffer), contextlib.redirect_stderr(buffer):
        try:
            runpy.run_module(module, run_name="__main__", alter_sys=True)
        except _Parsed:
            code = 0
        except SystemExit as exit:
            code = exit.code if isinstance(exit.code, int) else (0 if exit.code is None else 1)
        except BaseException:
            traceback.print_exc()
            code = 1
    results.append({"code": code, "out": buffer.getvalue()})
argparse.ArgumentParser.parse_args = _parse_args
with open(results_file, "w") as f:
    json.dump(results, f)
"""


def command_block(text: str) -> list[str]:
    """The lines of the fenced block right after MARK, backslash continuations joined."""
    assert MARK in text, f"README.md has no {MARK} before its main command block"
    after = text.split(MARK, 1)[1].lstrip("\n")
    assert after.startswith("```"), f"{MARK} must be followed by a fenced block"
    body = after.split("\n", 1)[1].split("\n```", 1)[0]
    lines, pending = [], ""
    for line in body.splitlines():
        if line.rstrip().endswith("\\"):
            pending += line.rstrip()[:-1] + " "
            continue
        lines.append(pending + line)
        pending = ""
    return [line for line in lines if line.strip()]


def src_commands(lines: list[str]) -> list[tuple[str, list[str], str]]:
    """(module, arguments, the README line) of every `python -m src.X ...` in the lines, pipes split."""
    found = []
    for line in lines:
        tokens = shlex.split(line, comments=True)
        segments = [list(g) for is_pipe, g in itertools.groupby(tokens, lambda t: t == "|") if not is_pipe]
        for seg in segments:
            if seg[:2] == ["python", "-m"] and len(seg) > 2 and seg[2].startswith("src."):
                found.append((seg[2], seg[3:], line))
    return found


def split_top_level(value: str) -> list[str]:
    """A sweep value's choices: `1,4` -> [1, 4]; commas inside brackets or quotes do not split."""
    parts, depth, quote, current = [], 0, "", ""
    for ch in value:
        if quote:
            quote = "" if ch == quote else quote
        elif ch in "'\"":
            quote = ch
        elif ch in "[({":
            depth += 1
        elif ch in "])}":
            depth -= 1
        elif ch == "," and depth == 0:
            parts.append(current)
            current = ""
            continue
        current += ch
    return [*parts, current]


def compositions(args: list[str]) -> list[list[str]]:
    """The single-job argument lists of a Hydra command: `-m a=1,4 b=x` -> [a=1 b=x], [a=4 b=x]."""
    if not ({"-m", "--multirun"} & set(args)):
        return [args]
    args = [a for a in args if a not in ("-m", "--multirun")]
    choices = []
    for arg in args:
        key, eq, value = arg.partition("=")
        if eq and not arg.startswith("-") and "(" not in value:
            choices.append([f"{key}={v}" for v in split_top_level(value)])
        else:
            choices.append([arg])
    return [list(combo) for combo in itertools.product(*choices)]


def readme_text() -> str:
    return README.read_text(encoding="utf-8")


def run_driver(jobs: list[tuple[str, list[str], bool]], tmp_path: Path) -> list[dict]:
    out = tmp_path / "results.json"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "WANDB_MODE": "disabled"}
    proc = subprocess.run(
        [sys.executable, "-c", DRIVER, json.dumps(jobs), str(out)],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0 and out.exists(), (
        f"driver failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    )
    return json.loads(out.read_text())


def test_readme_is_short():
    lines = readme_text().count("\n") + 1
    assert lines < MAX_LINES, f"README.md has {lines} lines; keep it under {MAX_LINES} (move detail to docs/)"


def test_readme_docs_links_exist():
    text = readme_text()
    links = re.findall(r"\]\((docs/[^)#\s]+)(?:#[^)\s]*)?\)", text)
    assert links, "README.md links no docs/ page"
    missing = sorted({link for link in links if not (REPO / link).is_file()})
    assert not missing, f"README.md links docs pages that do not exist: {missing}"


def test_docs_links_between_pages_exist():
    """Links from one docs/ page to another (or back to the README) point at files that exist."""
    missing = []
    for page in sorted((REPO / "docs").glob("*.md")):
        for link in re.findall(r"\]\(([^)#\s:]+\.md)(?:#[^)\s]*)?\)", page.read_text(encoding="utf-8")):
            if not (page.parent / link).resolve().is_file():
                missing.append(f"{page.name} -> {link}")
    assert not missing, f"broken links in docs/: {missing}"


def test_command_block_covers_every_command():
    commands = src_commands(command_block(readme_text()))
    named = {module.removeprefix("src.") for module, _, _ in commands}
    assert named == COMMANDS, f"the README's command block lacks {sorted(COMMANDS - named)}"
    for module, _, _ in commands:
        assert (REPO / "src" / f"{module.removeprefix('src.')}.py").is_file(), f"{module} is not a command"


def test_readme_commands_run_as_written(tmp_path):
    commands = src_commands(command_block(readme_text()))
    jobs, checks = [], []  # checks: (README line, what is checked, index into jobs, flags the line uses)
    for module, args, line in commands:
        if module in HYDRA:
            for composed in compositions(args):
                checks.append((line, "composes with --cfg job", len(jobs), []))
                jobs.append((module, [*composed, "--cfg", "job"], False))
        else:
            flags = [a.split("=", 1)[0] for a in args if a.startswith("--")]
            checks.append((line, "--help", len(jobs), flags))
            jobs.append((module, ["--help"], False))
            checks.append((line, "parses as written", len(jobs), []))
            jobs.append((module, args, True))
    results = run_driver(jobs, tmp_path)
    failures = []
    for line, what, index, flags in checks:
        result = results[index]
        if result["code"] != 0:
            failures.append(f"{line!r}: {what} exited {result['code']}:\n{result['out'][-1500:]}")
            continue
        named = set(re.findall(r"--[A-Za-z0-9][\w-]*", result["out"]))  # whole flags: no abbreviations
        unknown = [f for f in flags if f not in named]
        if unknown:
            failures.append(f"{line!r}: --help does not name {unknown}")
    assert not failures, "\n\n".join(failures)
