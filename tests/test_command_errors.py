"""Nothing a user typed or a crash did loses a result: every bad input of export, predict, eval (a checkpoint),
score, report, compare, plan and params is one `error: ... Fix: ...` line on stderr and exit 2, with no traceback;
export never writes over a user's files; predict keeps one output line per input line. Each command is run once as
a user runs it (`python -m src.X`); the other cases call its main() in-process."""

from __future__ import annotations

import io
import json
import sys
from pathlib import Path

import pytest

from src.config.schema import train_config
from src.system.errors import UserError
from tests.helpers.commands import compose_train, run_cli

SOURCES = ["anna talked about the violin .", "the cat sat on the mat ."]


# ---- the one error line -------------------------------------------------------------------------------------
def assert_one_error(stderr: str, *fragments: str) -> str:
    """stderr holds exactly one `error:` line, with a fix and each fragment, and no traceback; returns the line."""
    assert "Traceback" not in stderr, stderr[-3000:]
    errors = [line for line in stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, stderr[-3000:]
    assert "Fix:" in errors[0], errors[0]
    for fragment in fragments:
        assert fragment in errors[0], errors[0]
    return errors[0]


def cli_error(module: str, *args: str, fragments: tuple[str, ...] = ()) -> str:
    """`python -m module args...` as a user runs it: exit 2 and one error line (see assert_one_error)."""
    proc = run_cli(module, *args)
    assert proc.returncode == 2, (proc.returncode, proc.stderr[-3000:])
    return assert_one_error(proc.stderr, *fragments)


def main_error(main, argv: list[str], capsys, *fragments: str) -> str:
    """main(argv) in-process: SystemExit(2) and one error line (see assert_one_error)."""
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_:
        main(argv)
    assert exit_.value.code == 2
    return assert_one_error(capsys.readouterr().err, *fragments)


# ---- a tiny trained run -------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def run(tiny, tiny_run_overrides, tmp_path_factory) -> Path:
    """A tiny bert2bert run of src.train on the synthetic task (2 steps): its run directory."""
    from src.train import train

    out = tmp_path_factory.mktemp("errors-run")
    cfg = compose_train(
        f"checkpoints.bert={tiny['bert']}",
        *tiny_run_overrides(steps=2, val_every=2, warmup=1, train=16, validation=2, test=2, eval_batch=2),
        f"data.cache_dir={out / 'cache'}",
        f"output_dir={out / 'run'}",
    )
    assert train(train_config(cfg)).completed
    return out / "run"


@pytest.fixture(scope="module")
def ckpt(run) -> Path:
    return run / "checkpoints" / "last.ckpt"


def snapshot(directory: Path) -> dict[str, bytes]:
    """Every file under `directory` (relative path -> bytes)."""
    return {
        str(p.relative_to(directory)): p.read_bytes() for p in sorted(directory.rglob("*")) if p.is_file()
    }


def user_dir(path: Path) -> Path:
    path.mkdir()
    (path / "README.md").write_text("# my notes, not a model card\n")
    (path / "config.json").write_text('{"mine": true}\n')
    (path / "notes.txt").write_text("keep me\n")
    return path


# ---- export ---------------------------------------------------------------------------------------------------
def test_export_refuses_a_directory_with_files_and_touches_nothing(run, tmp_path):
    out = user_dir(tmp_path / "mine")
    before = snapshot(out)
    line = cli_error(
        "src.export",
        str(run),
        "--out",
        str(out),
        fragments=(f"{out} is not empty (README.md, config.json, notes.txt)", "--force"),
    )
    assert line.endswith("Fix: choose a new directory, or --force to replace the export's own files.")
    assert snapshot(out) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mine"]  # no export half-written beside it


def test_export_force_replaces_only_the_exports_own_files(run, tmp_path, capsys):
    from src.export import main

    out = user_dir(tmp_path / "mine")
    (out / "encoder_tokenizer").mkdir()  # an earlier export's, of a model with two vocabularies: stale now
    (out / "encoder_tokenizer" / "vocab.txt").write_text("stale\n")
    assert main([str(run), "--out", str(out), "--force"]) == 0
    assert (out / "notes.txt").read_text() == "keep me\n"  # not an export's file: left as it was
    assert "# my notes" not in (out / "README.md").read_text()  # the export's files: replaced
    assert "mine" not in json.loads((out / "config.json").read_text())
    assert (out / "model.safetensors").is_file() and (out / "generation_config.json").is_file()
    assert not (out / "encoder_tokenizer").exists()  # one vocabulary: the stale encoder tokenizer is gone
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mine"]
    from src.models.decoding import Decoding
    from src.run.predictor import Predictor

    assert len(Predictor(str(out)).predict(SOURCES, 2, Decoding(), progress=False)) == 2  # a whole model


def test_export_to_a_new_directory_appears_whole_or_not_at_all(ckpt, tmp_path, monkeypatch):
    """Written beside DIR, then renamed: a crash half-way leaves no DIR and no scratch directory."""
    import src.models.export as exporting
    from src.models.restore import load_module

    module = load_module(str(ckpt))
    real = exporting.write_export

    def crash(module, out, run, metrics):
        real(module, out, run, metrics)
        assert (out / "config.json").is_file()
        raise KeyboardInterrupt

    monkeypatch.setattr(exporting, "write_export", crash)
    with pytest.raises(KeyboardInterrupt):
        exporting.export(module, tmp_path / "new" / "hf")
    assert list((tmp_path / "new").iterdir()) == []
    monkeypatch.setattr(exporting, "write_export", real)
    exporting.export(module, tmp_path / "new" / "hf")
    assert (tmp_path / "new" / "hf" / "model.safetensors").is_file()
    assert [p.name for p in (tmp_path / "new").iterdir()] == ["hf"]


def test_export_into_an_empty_directory_needs_no_force(run, tmp_path):
    from src.export import main

    (tmp_path / "hf").mkdir()
    assert main([str(run), "--out", str(tmp_path / "hf")]) == 0
    assert (tmp_path / "hf" / "config.json").is_file() and (tmp_path / "hf" / "README.md").is_file()
    assert [p.name for p in tmp_path.iterdir()] == ["hf"]


def test_export_to_a_file_is_one_error(run, tmp_path, capsys):
    from src.export import main

    out = tmp_path / "model.bin"
    out.write_bytes(b"a user's file")
    main_error(main, [str(run), "--out", str(out)], capsys, f"{out} is a file, not a directory")
    main_error(main, [str(run), "--out", str(out), "--force"], capsys, "is a file")
    assert out.read_bytes() == b"a user's file"


# ---- a file that is not a checkpoint: export, predict, eval ----------------------------------------------------
@pytest.fixture
def broken(ckpt, tmp_path) -> dict[str, Path]:
    """A text file named .ckpt, a real checkpoint cut in half, and an empty one."""
    text, cut, empty = tmp_path / "x.ckpt", tmp_path / "cut.ckpt", tmp_path / "empty.ckpt"
    text.write_bytes(b"hello")
    data = ckpt.read_bytes()
    cut.write_bytes(data[: len(data) // 2])
    empty.write_bytes(b"")
    return {"text": text, "cut": cut, "empty": empty}


def test_eval_of_a_text_file_named_ckpt_is_one_error(broken, tmp_path):
    cli_error(
        "src.eval",
        f"ckpt_path={broken['text']}",
        f"hydra.run.dir={tmp_path / 'eval'}",
        fragments=(f"{broken['text']} is not a checkpoint written by src.train",),
    )


@pytest.mark.parametrize("kind", ["text", "cut", "empty"])
def test_every_broken_checkpoint_is_one_error_in_export_and_predict(kind, broken, tmp_path, capsys):
    from src.export import main as export_main
    from src.predict import main as predict_main

    sources = tmp_path / "sources.txt"
    sources.write_text(SOURCES[0] + "\n")
    want = f"{broken[kind]} is not a checkpoint written by src.train ("
    main_error(export_main, [str(broken[kind]), "--out", str(tmp_path / "hf")], capsys, want)
    main_error(predict_main, [str(broken[kind]), str(sources)], capsys, want)
    assert not (tmp_path / "hf").exists()


def test_a_missing_checkpoint_names_where_runs_live(tmp_path):
    from src.models.restore import load_module

    with pytest.raises(UserError, match=r"Fix: ckpt_path=outputs/runs/<run>/checkpoints/last\.ckpt"):
        load_module(str(tmp_path / "nope.ckpt"))
    with pytest.raises(UserError, match="is a directory"):
        load_module(str(tmp_path))


# ---- predict: one output line per input line ------------------------------------------------------------------
def test_predict_keeps_a_blank_line_as_an_empty_prediction(run, tmp_path):
    from src.models.decoding import Decoding
    from src.run.predictor import Predictor

    sources = tmp_path / "sources.txt"
    sources.write_text(f"{SOURCES[0]}\n\n{SOURCES[1]}\n")
    proc = run_cli("src.predict", str(run), str(sources), "--batch-size", "2")
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = proc.stdout.split("\n")
    assert lines[-1] == "" and len(lines) == 4, proc.stdout  # three lines, each ended by a newline
    expected = Predictor(str(run)).predict(SOURCES, 2, Decoding(), progress=False)
    assert lines[:3] == [expected[0], "", expected[1]]


def test_a_blank_line_is_not_sent_to_the_model(run, tmp_path, capsys, monkeypatch):
    from src.predict import main
    from src.run.predictor import Predictor

    seen = []
    monkeypatch.setattr(
        Predictor, "predict", lambda self, s, *a, **k: seen.extend(s) or [f"<{x}>" for x in s]
    )
    sources = tmp_path / "in.jsonl"
    rows = [{"source": SOURCES[0]}, None, {"source": "  "}, {"source": SOURCES[1]}]
    sources.write_text("".join(("" if r is None else json.dumps(r)) + "\n" for r in rows))
    capsys.readouterr()
    assert main([str(run), str(sources), "--jsonl"]) == 0
    out = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert seen == SOURCES
    assert [o["prediction"] for o in out] == [f"<{SOURCES[0]}>", "", "", f"<{SOURCES[1]}>"]


def test_predict_with_no_sources_is_one_error(run, tmp_path, capsys, monkeypatch):
    from src.predict import main

    monkeypatch.setattr(sys, "stdin", io.StringIO(""))
    main_error(main, [str(run), "-"], capsys, "no sources in standard input (it is empty)", "echo")
    empty, blank = tmp_path / "empty.txt", tmp_path / "blank.txt"
    empty.write_text("")
    blank.write_text("\n  \n")
    main_error(main, [str(run), str(empty)], capsys, f"no sources in {empty} (it is empty)")
    main_error(main, [str(run), str(blank)], capsys, f"no sources in {blank} (its 2 lines are blank)")


def test_predict_input_errors_name_the_file_and_line(run, tmp_path, capsys):
    from src.predict import main

    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"source": "a"}\n{"source": \n')
    main_error(main, [str(run), str(bad)], capsys, f"{bad}:2 is not JSON (", "Fix: one JSON object a line.")
    listed = tmp_path / "list.jsonl"
    listed.write_text('["a"]\n')
    main_error(main, [str(run), str(listed)], capsys, f"{listed}:1 is a JSON list, not an object")
    other = tmp_path / "other.jsonl"
    other.write_text('{"source": "a"}\n{"article": "b"}\n')
    main_error(main, [str(run), str(other)], capsys, f"{other}:2 has no column 'source'", "--column")
    main_error(main, [str(run), str(tmp_path / "missing.txt")], capsys, "missing.txt does not exist")
    main_error(main, [str(run), str(tmp_path)], capsys, "is a directory")
    binary = tmp_path / "binary.txt"
    binary.write_bytes(b"\xff\xfe\x00")
    main_error(main, [str(run), str(binary)], capsys, "is not UTF-8 text")
    for size in ("0", "-1"):
        main_error(main, [str(run), str(bad), "--batch-size", size], capsys, f"--batch-size {size}")
    main_error(main, [str(run), str(bad), "--batch-size", "x"], capsys, "invalid int value")


def test_predict_with_a_model_that_is_not_there_is_one_error(tmp_path, capsys):
    from src.predict import main

    sources = tmp_path / "sources.txt"
    sources.write_text(SOURCES[0] + "\n")
    main_error(main, [str(tmp_path / "nope"), str(sources)], capsys, "nope does not exist")
    half = tmp_path / "half"  # an export cut short: config.json, no weights
    half.mkdir()
    (half / "config.json").write_text("{")
    main_error(
        main, [str(half), str(sources)], capsys, "is not a whole model directory written by src.export"
    )


# ---- score, report, compare, plan, params ---------------------------------------------------------------------
def predictions(path: Path) -> Path:
    path.write_text(
        "".join(
            json.dumps({"source": s, "prediction": s, "reference": s}) + "\n" for s in [*SOURCES, "x y ."]
        )
    )
    return path


def test_score_bad_inputs_are_one_error(tmp_path, capsys):
    cli_error(
        "src.score", str(tmp_path / "missing.jsonl"), "--metrics", "exact", fragments=("does not exist",)
    )
    from src.score import main

    bad = tmp_path / "bad.jsonl"
    bad.write_text("not json\n")
    main_error(main, [str(bad), "--metrics", "exact"], capsys, f"{bad}:1 is not JSON")
    main_error(main, [str(predictions(tmp_path / "p.jsonl"))], capsys, "which metrics?")
    main_error(main, [str(tmp_path / "p.jsonl"), "--metrics", "nope"], capsys, "unknown metrics")
    main_error(main, [str(tmp_path), "--metrics", "exact"], capsys, "is a directory")
    main_error(main, [str(tmp_path / "p.jsonl"), "--scored-text", "raw"], capsys, "invalid choice")


def test_report_bad_inputs_are_one_error(tmp_path, capsys):
    cli_error("src.report", str(tmp_path / "missing"), fragments=("does not exist", "outputs/sweeps/"))
    from src.report import main

    (tmp_path / "empty").mkdir()
    main_error(main, [str(tmp_path / "empty")], capsys, "no metrics.json under")
    main_error(main, [str(predictions(tmp_path / "p.jsonl"))], capsys, "is a file, not a directory")
    main_error(main, [str(tmp_path / "empty"), "--resamples", "0"], capsys, "--resamples 0")
    main_error(main, [str(tmp_path / "empty"), "--out", str(tmp_path / "p.jsonl")], capsys, "--out")
    assert list((tmp_path / "empty").iterdir()) == []


def test_a_refusal_of_the_report_library_exits_2_too(tmp_path, capsys, monkeypatch):
    import src.report
    from src.system.errors import UserError

    def refuse(*args):  # what src.analysis.report raises for a baseline the sweep lacks
        raise UserError("--baseline nope is not a row of this sweep. Fix: one of a, b.")

    monkeypatch.setattr(src.report, "write_report", refuse)
    (tmp_path / "sweep").mkdir()
    main_error(src.report.main, [str(tmp_path / "sweep"), "--baseline", "nope"], capsys, "--baseline nope")


def test_compare_bad_inputs_are_one_error(tmp_path, capsys):
    a = predictions(tmp_path / "a.jsonl")
    cli_error("src.compare", str(tmp_path / "missing"), str(a), fragments=("missing does not exist",))
    from src.compare import main

    (tmp_path / "empty").mkdir()
    main_error(main, [str(tmp_path / "empty"), str(a)], capsys, "holds no predictions.jsonl")
    main_error(main, [str(a), str(a)], capsys, "which metric?")
    main_error(main, [str(a), str(a), "--metric", "nope"], capsys, "--metric nope")
    for flag, value in (("--resamples", "0"), ("--confidence", "2"), ("--limit", "-1")):
        main_error(main, [str(a), str(a), "--metric", "exact", flag, value], capsys, f"{flag} {value}")
    main_error(main, [str(a), str(a), "--metric", "exact", "--out", str(a)], capsys, "is a file")


def test_plan_with_a_bad_override_is_one_error(capsys):
    """Hydra's refusals inside plan's compose, said as src.train says them (src.config.hydra_errors)."""
    cli_error(
        "src.plan",
        "variant=nope",
        "--no-probe",
        fragments=("Could not find 'variant/nope'", "Fix: variant=<one of bert2bert,"),
    )
    from src.plan import compose_error, main

    main_error(main, ["+experiment=nope", "--no-probe"], capsys, "Fix: experiment=<one of demo")
    main_error(main, ["nokey=1", "--no-probe"], capsys, "nokey is not a top-level key", "+nokey=1")
    main_error(
        main, ["seed=[", "--no-probe"], capsys, "cannot read the override 'seed=['", "override_grammar"
    )
    main_error(
        main, ["-m", "seed=1,2", "trainer.max_steps=x", "--no-probe"], capsys, "trainer.max_steps=x is not"
    )
    main_error(main, ["--probe-steps", "0"], capsys, "--probe-steps 0")
    from hydra.errors import ConfigCompositionException

    made = compose_error(ConfigCompositionException("Something new\nmore lines\nand more"))
    assert str(made).startswith("Something new. Fix: ")


def test_params_refuses_an_unknown_option_in_one_line():
    line = cli_error("src.params", "--bogus", fragments=("unrecognized arguments: --bogus",))
    assert "python -m src.params --help" in line


# ---- the debug route -------------------------------------------------------------------------------------------
@pytest.mark.parametrize("variable", ["WARMSTART_DEBUG", "HYDRA_FULL_ERROR"])
def test_a_debug_variable_keeps_the_traceback(variable, tmp_path, monkeypatch, capsys):
    from src.score import main

    bad = tmp_path / "bad.jsonl"
    bad.write_text("not json\n")
    monkeypatch.setenv(variable, "1")
    with pytest.raises(UserError, match="is not JSON") as raised:
        main([str(bad), "--metrics", "exact"])
    assert raised.value.__suppress_context__ is False  # the JSON error it came from is shown with it
    assert isinstance(raised.value.__context__, ValueError)
    monkeypatch.setenv(variable, "0")
    main_error(main, [str(bad), "--metrics", "exact"], capsys, "is not JSON")


def test_a_message_of_many_lines_is_cut_to_one_with_its_fix():
    from src.system.errors import one_line

    assert one_line("first\n\nsecond\nFix: do this\nand that.") == "first ... Fix: do this and that."
    assert one_line("first. Fix: here.\nmore") == "first. Fix: here."
    assert one_line("only\nmore") == "only"
