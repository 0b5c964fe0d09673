"""Export a trained run as a Hugging Face model directory that plain transformers loads and generates with.

DIR holds config.json and generation_config.json (decoder start, EOS, pad and the run's decoding: beams,
lengths, length penalty), model.safetensors, the decoder's tokenizer (and the encoder's in encoder_tokenizer/
where they differ), and README.md, a model card with the variant, sharing, parameter budget, data, steps and
test metrics. An encoder-decoder loads with `EncoderDecoderModel.from_pretrained(DIR)`; the decoder-only `gpt`
variant with `GPT2LMHeadModel.from_pretrained(DIR)` (the source, then its start token, as the prompt).

DIR must be new or empty: a directory with files in it is refused, untouched. With --force, the files an export
writes are replaced there and every other file is left as it was. The export is written beside DIR first and
moved into place, so DIR never holds half of one.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from src.models.export import export
from src.models.restore import load_module
from src.run.record import checkpoint_of, read_metrics
from src.system.cli import command_parser
from src.system.errors import UserError, report_user_errors
from src.system.process import setup_process

USAGE = """\
python -m src.export outputs/runs/<run> --out DIR                          # a run directory: its tested checkpoint
python -m src.export outputs/runs/<run>/checkpoints/best.ckpt --out DIR    # a checkpoint
python -m src.export outputs/runs/<run> --out DIR --force                  # replace the export already in DIR"""


def parser() -> argparse.ArgumentParser:
    p = command_parser("export", __doc__, USAGE)
    p.add_argument("run", type=Path, help="a run directory of src.train, or a checkpoint it wrote")
    p.add_argument(
        "--out", type=Path, required=True, help="the directory to write: new, or empty (else --force)"
    )
    p.add_argument(
        "--force",
        action="store_true",
        help="DIR is not empty: replace the export's own files there (config.json, generation_config.json, "
        "model.safetensors, the tokenizer files, encoder_tokenizer/, README.md); other files are left alone",
    )
    return p


def check_out(out: Path, force: bool) -> None:
    """`--out` must be a new or empty directory, or (--force) one whose export files may be replaced."""
    if out.exists() and not out.is_dir():
        raise UserError(f"{out} is a file, not a directory. Fix: --out a new directory.")
    if force or not out.is_dir():
        return
    names = sorted(p.name for p in out.iterdir())
    if names:
        shown = ", ".join(names[:3]) + (", ..." if len(names) > 3 else "")
        raise UserError(
            f"{out} is not empty ({shown}). "
            "Fix: choose a new directory, or --force to replace the export's own files."
        )


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    setup_process()
    with report_user_errors():
        out = args.out.expanduser()
        check_out(
            out, args.force
        )  # before anything is loaded: a refused DIR costs nothing and is not touched
        import torch

        ckpt = checkpoint_of(args.run.expanduser())
        module = load_module(str(ckpt))
        run_dir = ckpt.parent.parent if ckpt.parent.name == "checkpoints" else ckpt.parent
        check_out(out, args.force)  # again: it may have been written to while the checkpoint loaded
        try:
            with torch.no_grad():
                record = read_metrics(run_dir)
                export(module.eval(), out, module.run_config, record.as_dict() if record else {})
        except OSError as err:
            raise UserError(
                f"cannot write {out} ({err.strerror or err}). Fix: --out a directory you can write to."
            ) from None
    print(args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
