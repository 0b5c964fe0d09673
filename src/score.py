"""Score a predictions file with the project's metrics.

A file inside a run directory is scored as that run was: its metrics, bleu_lowercase, scored_text and
rouge_stemmer (the options given here win). Each line of FILE is a JSON object with `prediction`, the reference as
`reference` (a string) or `references` (a list), and `source` (SARI needs it). Prints a table, what computed each
metric (tool and version, the text form scored, the signature), then the scores as one JSON object on the last
line.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from src.analysis.scoring import score_with_provenance
from src.metrics.text import SUPPORTED
from src.system.cli import command_parser
from src.system.errors import UserError, report_user_errors
from src.system.process import setup_process

USAGE = """\
python -m src.score outputs/runs/<run>/predictions.jsonl            # the run's own metrics and scoring
python -m src.score FILE.jsonl --metrics sari exact bleu_nltk       # another system's outputs
python -m src.score FILE.jsonl --metrics bleu --bleu-lowercase      # uncased sacreBLEU (the paper's WMT)
python -m src.score FILE.jsonl --metrics exact --scored-text as_given   # the strings untouched"""


def parser() -> argparse.ArgumentParser:
    p = command_parser("score", __doc__, USAGE)
    p.add_argument("file", type=Path, help="a predictions.jsonl")
    p.add_argument("--metrics", nargs="+", help=f"of {', '.join(SUPPORTED)}; default: the run's data.metrics")
    p.add_argument(
        "--bleu-lowercase", action=argparse.BooleanOptionalAction, help="sacreBLEU on lowercased text"
    )
    p.add_argument(
        "--scored-text",
        choices=("canonical", "as_given"),
        help="canonical: punctuation split off, single spaces (src/metrics/text.py); as_given: untouched",
    )
    p.add_argument(
        "--rouge-stemmer", action=argparse.BooleanOptionalAction, help="ROUGE with Porter stemming"
    )
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    setup_process()
    options = {
        k: v
        for k, v in {
            "bleu_lowercase": args.bleu_lowercase,
            "scored_text": args.scored_text,
            "rouge_stemmer": args.rouge_stemmer,
        }.items()
        if v is not None
    }
    with report_user_errors():
        if args.file.is_dir():
            inside = args.file / "predictions.jsonl"
            raise UserError(
                f"{args.file} is a directory. Fix: give its predictions file"
                + (f", {inside}." if inside.is_file() else ", e.g. outputs/runs/<run>/predictions.jsonl.")
            )
        scores, provenance = score_with_provenance(args.file, args.metrics, **options)
    for name, value in scores.items():
        print(f"{name:>10} {value:8.2f}")
    for name, p in provenance.items():
        print(f"{name}: {p['what']}; {p['tool']}, {p['text']} text, {p['signature']}")
    print(json.dumps(scores))
    return 0


if __name__ == "__main__":
    sys.exit(main())
