"""Plan a sweep before paying for it: its jobs, their directories and state, budgets, time and memory. Submits nothing.

Takes the overrides of `python -m src.train -m ...` and expands them as the sweep would (the sweeper's params
included), then for every job: its run directory, whether it is already completed (the sweep would skip it),
resumable from last.ckpt, failed before, or new; its parameter budget (meta device: nothing loaded). A short
probe on the device this command runs on, of the largest variant of each workload (task, batch, lengths, decoding),
measures a training step, a validation and a test batch with the job's own data, batch and precision; from it
come the expected time of each job and of the sweep (device-hours), and the memory check: the peak memory of a
training step at the job's batch and at half of it gives the memory per example, hence the largest batch that
fits; the same for beam search at the evaluation batch.
"""

from __future__ import annotations

import argparse
import logging

from src.analysis.plan import plan, render
from src.analysis.sweep import job_devices
from src.system.cli import command_parser
from src.system.errors import report_user_errors
from src.system.outputs import write_json
from src.system.process import setup_process

log = logging.getLogger(__name__)
USAGE = """\
python -m src.plan experiment=rothe_grid_demo
python -m src.plan experiment=rothe_grid data=xsum hydra/launcher=slurm --no-probe
python -m src.plan variant=bert2bert,bertshare seed=1,2 --probe-steps 8 --json plan.json"""


def parser() -> argparse.ArgumentParser:
    p = command_parser("plan", __doc__, USAGE)
    p.add_argument("overrides", nargs="*", help="the sweep's overrides, as for python -m src.train -m")
    p.add_argument("--probe-steps", type=int, default=5, help="timed training steps of the probe (default 5)")
    p.add_argument("--no-probe", action="store_true", help="list jobs and budgets only: no time or memory")
    p.add_argument("--json", help="also write the plan as JSON to this file")
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    setup_process()
    with report_user_errors():
        result = plan(
            [o for o in args.overrides if o not in ("-m", "--multirun")], args.probe_steps, not args.no_probe
        )
        print(render(result))
        if args.json:
            write_json(
                args.json,
                {
                    "jobs": [
                        {
                            "overrides": j.overrides,
                            "run_dir": str(j.run_dir),
                            "state": j.state,
                            "params": j.budget,
                            "steps": int(j.cfg.trainer.max_steps),
                            "devices": job_devices(j.cfg),
                            "estimate_s": j.estimate_s,
                        }
                        for j in result["jobs"]
                    ],
                    "probes": result["probes"],
                    "total_s": result["total_s"],
                    "device_hours": result["device_hours"],
                },
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
