"""Export a trained run as a Hugging Face model directory that plain transformers loads and generates with.

DIR holds config.json and generation_config.json (decoder start, EOS, pad and the run's decoding: beams,
lengths, length penalty), model.safetensors, the decoder's tokenizer (and the encoder's in encoder_tokenizer/
where they differ), and README.md, a model card with the variant, sharing, parameter budget, data, steps and
test metrics. An encoder-decoder loads with `EncoderDecoderModel.from_pretrained(DIR)`; the decoder-only `gpt`
variant with `GPT2LMHeadModel.from_pretrained(DIR)` (the source, then its start token, as the prompt).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from src.models.export import export
from src.models.restore import load_module
from src.run.record import checkpoint_of, read_metrics
from src.system.cli import command_parser
from src.system.errors import report_user_errors
from src.system.process import setup_process

USAGE = """\
python -m src.export outputs/runs/<run> --out DIR                          # a run directory: its tested checkpoint
python -m src.export outputs/runs/<run>/checkpoints/best.ckpt --out DIR    # a checkpoint"""


def parser() -> argparse.ArgumentParser:
    p = command_parser("export", __doc__, USAGE)
    p.add_argument("run", type=Path, help="a run directory of src.train, or a checkpoint it wrote")
    p.add_argument("--out", type=Path, required=True, help="the directory to write")
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    setup_process()
    with report_user_errors():
        import torch

        ckpt = checkpoint_of(args.run.expanduser())
        module = load_module(str(ckpt))
        run_dir = ckpt.parent.parent if ckpt.parent.name == "checkpoints" else ckpt.parent
        with torch.no_grad():
            export(module.eval(), args.out.expanduser(), module.run_config, read_metrics(run_dir) or {})
    print(args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
