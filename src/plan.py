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
import re

from hydra.errors import HydraException

from src.analysis.plan import cluster_devices, cluster_schedules, plan, render
from src.analysis.sweep import job_devices
from src.config.hydra_errors import describe
from src.paper.grid_cost import grid_cost, render_grid
from src.system.cli import command_parser
from src.system.errors import UserError, one_line, report_user_errors
from src.system.outputs import write_json
from src.system.process import setup_process

log = logging.getLogger(__name__)
USAGE = """\
python -m src.plan experiment=rothe_grid_demo
python -m src.plan experiment=rothe_grid data=xsum hydra/launcher=slurm --no-probe
python -m src.plan variant=bert2bert,bertshare seed=1,2 --probe-steps 8 --json plan.json
python -m src.plan experiment=rothe_grid_demo seed=1,2,3 --cluster 2x4   # its wall time on 2 nodes x 4 devices
python -m src.plan --paper-grid --gpu H100 --mfu 0.35 --cluster 1x8     # the paper's whole grid, from its FLOPs"""


def parser() -> argparse.ArgumentParser:
    p = command_parser("plan", __doc__, USAGE)
    p.add_argument("overrides", nargs="*", help="the sweep's overrides, as for python -m src.train -m")
    p.add_argument("--probe-steps", type=int, default=5, help="timed training steps of the probe (default 5)")
    p.add_argument("--no-probe", action="store_true", help="list jobs and budgets only: no time or memory")
    p.add_argument(
        "--cluster",
        metavar="NODESxDEVICES",
        help="also the sweep's wall time on this many devices (2x4: 2 nodes of 4), jobs starting as devices free "
        "up and in synchronous batches",
    )
    p.add_argument(
        "--paper-grid",
        action="store_true",
        help="instead of a sweep's overrides: the paper's whole grid (every task x variant of its tables) in "
        "device-hours on --gpu at --mfu, from the models' FLOPs (src/paper/grid_cost.py)",
    )
    p.add_argument("--gpu", default="H100", help="--paper-grid: the card (default H100, the SXM one)")
    p.add_argument(
        "--mfu",
        type=float,
        default=0.35,
        help="--paper-grid: the share of the card's peak a run reaches (0.35)",
    )
    p.add_argument("--json", help="also write the plan as JSON to this file")
    p.add_argument(
        "-m",
        "--multirun",
        action="store_true",
        help="accepted as src.train takes it: a plan is always a sweep's",
    )
    return p


def compose_error(err: Exception) -> UserError:
    """A Hydra error composing the overrides (an unknown key or group option, bad grammar, a value of the wrong
    type) as one UserError, said as src.train says it (src.config.hydra_errors.describe)."""
    line = describe(err) or (
        f"these overrides do not compose: {one_line(err).rstrip('.')}. "
        "Fix: write them as for python -m src.train -m (key=value, a sweep as key=a,b)."
    )
    return UserError(line)


def planned(overrides: list[str], probe_steps: int, run_probe: bool, cluster: str | None = None) -> dict:
    """`src.analysis.plan.plan`, with what Hydra (or a value of the wrong type) refuses as one UserError."""
    try:
        result = plan(overrides, probe_steps, run_probe, cluster)
    except HydraException as err:
        raise compose_error(err) from None
    except UserError as err:
        if isinstance(err.__context__, HydraException):  # src.analysis.sweep passed Hydra's whole message on
            raise compose_error(err.__context__) from None
        raise
    except ValueError as err:  # a number given as text (trainer.max_steps=x): no schema types the config
        if not re.match(r"(invalid literal for int\(\)|could not convert string to float)", str(err)):
            raise
        raise UserError(
            f"an override that should be a number is not ({one_line(err)}). "
            "Fix: give numbers as numbers, e.g. trainer.max_steps=1000."
        ) from None
    for job in result["jobs"]:
        steps = job.cfg.trainer.max_steps
        if isinstance(steps, bool) or not str(steps).lstrip("-").isdigit():
            raise UserError(
                f"trainer.max_steps={steps} is not a whole number. Fix: trainer.max_steps=1000, say."
            )
    return result


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    setup_process()
    with report_user_errors():
        if not args.no_probe and args.probe_steps < 1:
            raise UserError(
                f"--probe-steps {args.probe_steps}: the probe needs a step to time. "
                "Fix: --probe-steps 5, or --no-probe."
            )
        devices = cluster_devices(args.cluster) if args.cluster is not None else None  # before anything runs
        if args.paper_grid:
            return paper_grid(args, devices)
        result = planned(
            [o for o in args.overrides if o not in ("-m", "--multirun")],
            args.probe_steps,
            not args.no_probe,
            args.cluster,
        )
        print(render(result))
        if args.json:
            try:
                write_json(args.json, plan_json(result))
            except OSError as err:
                raise UserError(
                    f"cannot write --json {args.json} ({err.strerror or err}). "
                    "Fix: a path in a directory you can write to."
                ) from None
    return 0


def paper_grid(args, devices: int | None) -> int:
    """`--paper-grid`: the paper's grid in device-hours (and on --cluster, its wall time both ways)."""
    if args.overrides:
        raise UserError(
            f"--paper-grid takes no overrides ({' '.join(args.overrides)}): it is the paper's grid at the paper's "
            "settings. Fix: drop them, or plan a sweep of your own without --paper-grid."
        )
    result = grid_cost(args.gpu, args.mfu)
    wall = None
    if devices is not None:
        cells = [(c["device_hours"] * 3600, 1) for c in result["cells"]]
        wall = result["cluster"] = cluster_schedules(args.cluster, cells, devices)
    print(render_grid(result, wall))
    if args.json:
        write_json(args.json, result)
    return 0


def plan_json(result: dict) -> dict:
    return {
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
        "cluster": result.get("cluster"),
    }


if __name__ == "__main__":
    raise SystemExit(main())
