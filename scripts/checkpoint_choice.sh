#!/usr/bin/env bash
# The test score of the checkpoint a run reports, chosen five ways, on the offline demo with three seeds:
# last.ckpt, best.ckpt by val/loss, best.ckpt by val/rouge2, an EMA of the weights (best by val/loss), and the mean of
# the last 3 validation checkpoints.
# Validation every 50 steps (6 candidates in 300). One sweep directory; src.report gives the table with each row's
# paired-bootstrap interval against the first. docs/configuration.md quotes its output.
#   bash scripts/checkpoint_choice.sh [SWEEP_NAME]      (about 25 min on a 2-core CPU; one job at a time)
set -euo pipefail
name="${1:-checkpoint_choice}"
common=(experiment=demo "sweep_name=$name" seed=1,2,3 eval_before_training=false trainer.val_check_interval=50
        logger=none progress=none)
python -m src.train -m "${common[@]}" test_ckpt=last
python -m src.train -m "${common[@]}"
python -m src.train -m "${common[@]}" monitor=val/rouge2 monitor_mode=max
python -m src.train -m "${common[@]}" ema.decay=0.99
python -m src.train -m "${common[@]}" average.last=3 test_ckpt=average
python -m src.report "outputs/sweeps/$name" --baseline "demo-minilm2minilm (test_ckpt=last)"
