"""Export a trained run as a Hugging Face model directory that plain transformers loads and generates with.

python -m src.export ckpt_path=outputs/runs/<run>/checkpoints/best.ckpt out=DIR
python -m src.export ckpt_path=outputs/runs/<run> out=DIR        # a run directory: its tested checkpoint

DIR holds config.json and generation_config.json (decoder start, EOS, pad and the run's decoding: beams,
lengths, length penalty), model.safetensors, the decoder's tokenizer (and the encoder's in encoder_tokenizer/
where they differ), and README.md, a model card with the variant, sharing, parameter budget, data, steps and
test metrics. An encoder-decoder loads with `EncoderDecoderModel.from_pretrained(DIR)`; the decoder-only `gpt`
variant with `GPT2LMHeadModel.from_pretrained(DIR)` (the source, then its start token, as the prompt).
"""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path

import torch

from src.errors import UserError, report_user_errors
from src.models.export import export
from src.process import setup_process
from src.rundir import checkpoint_of, load_module

log = logging.getLogger(__name__)


def main(argv: list[str] | None = None) -> int:
    """`python -m src.export ckpt_path=... out=DIR`."""
    setup_process()
    args = dict(a.split("=", 1) for a in (sys.argv[1:] if argv is None else argv) if "=" in a)
    with report_user_errors():
        if "ckpt_path" not in args or "out" not in args:
            raise UserError("usage: python -m src.export ckpt_path=<checkpoint or run dir> out=<directory>")
        ckpt = checkpoint_of(Path(args["ckpt_path"]).expanduser())
        module = load_module(str(ckpt))
        run_dir = ckpt.parent.parent if ckpt.parent.name == "checkpoints" else ckpt.parent
        metrics_file = run_dir / "metrics.json"
        metrics = json.loads(metrics_file.read_text()) if metrics_file.is_file() else {}
        with torch.no_grad():
            export(module.eval(), Path(args["out"]).expanduser(), module.run_config, metrics)
    print(args["out"])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
