"""A throwaway single-node SLURM cluster on localhost: munged, slurmctld and slurmd, every file in one folder.

    python -m tests.helpers.slurm_cluster DIR   # start one by hand (prints the SLURM_CONF to export)

Ctrl-C stops it. The tests marked `slurm` start one (tests/test_slurm.py's `cluster` fixture) and stop it by pid
afterwards. Needs Debian's `slurm-wlm` and `munge` (`.ci/run` installs them when missing) and root (the daemons
run as it).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

BINARIES = ("munged", "slurmctld", "slurmd", "sbatch", "squeue", "scontrol")


def missing() -> str | None:
    """Why a cluster cannot start here (one line), or None."""
    absent = [b for b in BINARIES if shutil.which(b) is None]
    if absent:
        return f"SLURM is not installed ({', '.join(absent)} missing): apt-get install slurm-wlm munge"
    if os.geteuid() != 0:
        return "the test cluster's daemons run as root"
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Cluster:
    root: Path
    env: dict = field(default_factory=dict)  # SLURM_CONF for clients (sbatch, squeue, submitit)
    pids: dict = field(default_factory=dict)

    def start(self, timeout: float = 60.0) -> Cluster:
        r = self.root
        for d in ("state", "spool", "munge", "log"):
            (r / d).mkdir(parents=True, exist_ok=True)
        os.chmod(r / "munge", 0o700)
        key = r / "munge" / "munge.key"
        key.write_bytes(os.urandom(1024))
        os.chmod(key, 0o400)
        sock = r / "munge" / "munge.socket"
        subprocess.run(
            ["munged", "--force", f"--key-file={key}", f"--socket={sock}", f"--pid-file={r}/munge/munged.pid",
             f"--log-file={r}/log/munged.log", f"--seed-file={r}/munge/munged.seed"],
            check=True,
        )  # fmt: skip
        self.pids["munged"] = int((r / "munge" / "munged.pid").read_text())
        host = socket.gethostname().split(".")[0]
        mem_mb = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // 2**20
        conf = r / "slurm.conf"
        conf.write_text(
            "\n".join(
                [
                    "ClusterName=warmstart-test",
                    f"SlurmctldHost={host}",
                    "SlurmUser=root",
                    "SlurmdUser=root",
                    f"SlurmctldPort={_free_port()}",
                    f"SlurmdPort={_free_port()}",
                    "AuthType=auth/munge",
                    "CredType=cred/munge",
                    f"AuthInfo=socket={sock}",
                    f"StateSaveLocation={r}/state",
                    f"SlurmdSpoolDir={r}/spool",
                    f"SlurmctldPidFile={r}/slurmctld.pid",
                    f"SlurmdPidFile={r}/slurmd.pid",
                    f"SlurmctldLogFile={r}/log/slurmctld.log",
                    f"SlurmdLogFile={r}/log/slurmd.log",
                    "ProctrackType=proctrack/linuxproc",
                    "TaskPlugin=task/none",
                    "SelectType=select/cons_tres",
                    "SelectTypeParameters=CR_CPU",
                    "SchedulerType=sched/backfill",
                    "MpiDefault=none",
                    "ReturnToService=2",
                    "JobRequeue=1",
                    "JobAcctGatherType=jobacct_gather/none",
                    "AccountingStorageType=accounting_storage/none",
                    "SlurmdParameters=config_overrides",
                    "KillWait=20",  # seconds between SIGTERM and SIGKILL: time to save a checkpoint
                    "MinJobAge=600",  # keep finished jobs visible to squeue/scontrol for a while
                    "SchedulerParameters=sched_interval=1",
                    f"NodeName={host} CPUs={os.cpu_count()} RealMemory={mem_mb} State=UNKNOWN",
                    f"PartitionName=debug Nodes={host} Default=YES MaxTime=INFINITE State=UP OverSubscribe=YES",
                    "",
                ]
            )
        )
        self.env = {"SLURM_CONF": str(conf)}
        env = {**os.environ, **self.env}
        subprocess.run(["slurmctld", "-f", str(conf)], check=True, env=env)
        subprocess.run(["slurmd", "-f", str(conf)], check=True, env=env)
        deadline = time.time() + timeout
        while time.time() < deadline:
            out = subprocess.run(["sinfo", "-h", "-o", "%t"], capture_output=True, text=True, env=env).stdout
            if out.strip() in ("idle", "mix", "alloc"):
                break
            time.sleep(0.5)
        else:
            self.stop()
            raise RuntimeError(f"the test SLURM cluster did not come up in {timeout:.0f} s; logs in {r}/log")
        for name in ("slurmctld", "slurmd"):
            self.pids[name] = int((r / f"{name}.pid").read_text())
        return self

    def stop(self) -> None:
        for name in ("slurmd", "slurmctld", "munged"):
            pid = self.pids.pop(name, None)
            pid_file = {"munged": self.root / "munge" / "munged.pid"}.get(name, self.root / f"{name}.pid")
            if pid is None and pid_file.is_file():
                pid = int(pid_file.read_text())
            if pid is not None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGTERM)


if __name__ == "__main__":
    if why := missing():
        sys.exit(why)
    cluster = Cluster(Path(sys.argv[1] if len(sys.argv) > 1 else "/tmp/slurm-test").resolve()).start()
    print(f"export SLURM_CONF={cluster.env['SLURM_CONF']}", flush=True)
    try:
        signal.pause()
    except KeyboardInterrupt:
        pass
    finally:
        cluster.stop()
