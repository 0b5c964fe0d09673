"""Generate with a trained model: one prediction a line, from a text file, a JSONL file or standard input.

MODEL: a run directory, a checkpoint of `src.train`, or a directory written by `python -m src.export`.
INPUT: a text file (one source a line), a .jsonl file (the source in --column, default the run's
data.source_column, else `source`), or `-` for standard input. Batches of --batch-size (default the run's
data.eval_batch_size); a progress bar on a terminal. The decoding flags override the model's own settings.
One output line per input line, in order: a blank line (or an empty source) is not sent to the model and gives an
empty prediction; an INPUT with no source at all is an error.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import fields

from src.models.decoding import LENGTH_PENALTY_FORMS, Decoding
from src.run.predictor import Predictor, read_input, sources_of
from src.system.cli import command_parser
from src.system.errors import UserError, report_user_errors
from src.system.process import setup_process

USAGE = """\
echo "anna talked about the violin ." | python -m src.predict outputs/runs/<run> -
python -m src.predict outputs/runs/<run>/checkpoints/best.ckpt sources.txt > predictions.txt
python -m src.predict EXPORTED_DIR data.jsonl --column article --jsonl   # JSONL out: source, prediction
python -m src.predict outputs/runs/<run> - --num-beams 1 --max-new-tokens 32   # decoding other than the run's"""


def parser() -> argparse.ArgumentParser:
    p = command_parser("predict", __doc__, USAGE)
    p.add_argument("model", help="a run directory, a checkpoint, or an exported directory")
    p.add_argument("input", help="a text file, a .jsonl file, or - for standard input")
    p.add_argument("--column", help="the source column of a .jsonl input")
    p.add_argument("--jsonl", action="store_true", help="write JSON lines (source, prediction)")
    p.add_argument("--batch-size", type=int, help="sources a batch (default: the run's data.eval_batch_size)")
    decoding = p.add_argument_group("decoding (src/models/decoding.py; default: the model's own)")
    for f in fields(Decoding):  # f.type: the annotation's text, e.g. "Optional[int]"
        kind = {"int": int, "float": float, "bool": _boolean, "str": str}[
            f.type.removeprefix("Optional[").removesuffix("]")
        ]
        choices = LENGTH_PENALTY_FORMS if f.name == "length_penalty_form" else None
        decoding.add_argument(
            f"--{f.name.replace('_', '-')}", dest=f.name, type=kind, choices=choices, metavar=f.name.upper()
        )
    return p


def _boolean(text: str) -> bool:
    if text.lower() not in ("true", "false"):
        raise argparse.ArgumentTypeError(f"{text!r} is not true or false")
    return text.lower() == "true"


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    setup_process()
    with report_user_errors():
        if args.batch_size is not None and args.batch_size <= 0:
            raise UserError(
                f"--batch-size {args.batch_size} is not a batch. Fix: a positive number, e.g. 16."
            )
        rows = read_input(args.input)  # before the model loads: a bad INPUT costs nothing
        predictor = Predictor(args.model)
        sources = sources_of(rows, args.input, args.column or predictor.source_column())
        decoding = Decoding.of({f.name: getattr(args, f.name) for f in fields(Decoding)})
        batch = args.batch_size or int(predictor.run.get("data", {}).get("eval_batch_size", 16))
        given = [s for s in sources if s is not None]  # a blank line is not sent to the model
        predicted = iter(predictor.predict(given, batch, decoding, progress=sys.stderr.isatty()))
        predictions = ["" if s is None else next(predicted) for s in sources]
    for source, prediction in zip(sources, predictions, strict=True):
        line = (
            json.dumps({"source": source or "", "prediction": prediction}, ensure_ascii=False)
            if args.jsonl
            else prediction
        )
        print(line)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
