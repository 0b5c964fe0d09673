"""python -m src.score: a predictions file scored with the project's metrics, text used as given."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from src.metrics.sari import sari
from src.score import main
from tests.helpers.commands import REPO


def score_cli(*args: str) -> subprocess.CompletedProcess:
    """`python -m src.score ARGS` as a user runs it."""
    return subprocess.run(
        [sys.executable, "-m", "src.score", *args], cwd=REPO, capture_output=True, text=True, timeout=120
    )


def scores_of(capsys, *args: str) -> dict:
    """src.score's main in this process (the same code as the command, without a new interpreter)."""
    assert main(list(args)) == 0
    return json.loads(capsys.readouterr().out.strip().splitlines()[-1])


def write(path, rows: list[dict]):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_scores_worked_out_by_hand_and_json_on_the_last_line(tmp_path):
    # 1: exact; 2: a copy of the source "a b" against "a c": SARI 72.22 (test_metrics works it out by hand);
    # exact = 1/2; sari = (100 + 72.22) / 2
    f = write(
        tmp_path / "p.jsonl",
        [
            {"source": "x y", "prediction": "a c", "reference": "a c"},
            {"source": "a b", "prediction": "a b", "reference": "a c"},
        ],
    )
    proc = score_cli(str(f), "--metrics", "exact", "sari")
    assert proc.returncode == 0, proc.stderr
    scores = json.loads(proc.stdout.strip().splitlines()[-1])
    assert scores["exact"] == pytest.approx(50.0)
    assert scores["sari"] == pytest.approx((100 + 100 * (2 / 3 + 1 / 2 + 1) / 3) / 2, abs=1e-4)


def test_text_is_used_as_given_case_and_spacing_count(tmp_path, capsys):
    # an uncased model's output is not forgiven: "the cat" is not "The cat"
    f = write(tmp_path / "p.jsonl", [{"source": "s", "prediction": "the cat", "reference": "The cat"}])
    assert scores_of(capsys, str(f), "--metrics", "exact", "bleu_nltk")["exact"] == 0.0


def test_a_copy_of_the_source_scores_tensor2tensor_sari_on_those_strings(tmp_path, capsys):
    source = (
        "Street Rod is the first in a series of two games released for the PC and Commodore Amiga in 1989 ."
    )
    reference = "Street Rod is the first in a series of two games . <::::> It was released for the PC and Commodore Amiga in 1989 ."
    f = write(tmp_path / "p.jsonl", [{"source": source, "prediction": source, "references": [reference]}])
    scores = scores_of(capsys, str(f), "--metrics", "sari")
    assert scores["sari"] == pytest.approx(sari(source, source, [reference]), abs=1e-4)
    assert 55 < scores["sari"] < 75  # keeps most, deletes nothing, adds nothing the reference added


def test_several_references_take_the_best_match(tmp_path, capsys):
    f = write(
        tmp_path / "p.jsonl",
        [{"source": "a b", "prediction": "the cat sat", "references": ["a dog ran", "the cat sat"]}],
    )
    scores = scores_of(capsys, str(f), "--metrics", "exact", "rouge2", "bleu_nltk")
    assert scores["exact"] == 100.0 and scores["rouge2"] == pytest.approx(100.0)


@pytest.mark.parametrize(
    ("rows", "args", "needle"),
    [
        ([{"prediction": "a"}], ["--metrics", "exact"], "lacks `prediction` or a reference"),
        ([{"prediction": "a", "reference": "a"}], ["--metrics", "sari"], "sari needs a `source`"),
        ([{"prediction": "a", "reference": "a"}], ["--metrics", "meteor"], "unknown metrics ['meteor']"),
        ([{"prediction": "a", "reference": "a"}], [], "which metrics?"),
    ],
)
def test_bad_input_is_one_clear_error(tmp_path, capsys, rows, args, needle):
    with pytest.raises(SystemExit) as exit_:
        main([str(write(tmp_path / "p.jsonl", rows)), *args])
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and needle in err and "Traceback" not in err


def test_bad_input_from_the_command_line_exits_2_without_a_traceback(tmp_path):
    proc = score_cli(str(write(tmp_path / "p.jsonl", [{"prediction": "a"}])), "--metrics", "exact")
    assert proc.returncode == 2 and "lacks `prediction` or a reference" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_the_output_names_each_metrics_tool_text_and_signature(tmp_path, capsys):
    f = write(
        tmp_path / "p.jsonl",
        [{"prediction": "It is a well - known fact .", "reference": "It is a well-known fact."}],
    )
    assert main([str(f), "--metrics", "bleu", "sacrebleu"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    said = {line.split(":")[0]: line for line in lines if ": " in line and not line.startswith("{")}
    import sacrebleu

    version = sacrebleu.__version__
    assert said["bleu"].endswith(
        f"sacrebleu {version}, canonical text, nrefs:1|case:mixed|eff:no|tok:13a|smooth:exp|version:{version}"
    )
    assert said["sacrebleu"].startswith("sacrebleu: standard sacreBLEU")
    assert "as_given text" in said["sacrebleu"]
    scores = json.loads(lines[-1])
    assert (
        scores["bleu"] == pytest.approx(100.0) and scores["sacrebleu"] < 60
    )  # "well - known" costs 13a BLEU
