"""A throwaway SLURM cluster on localhost: munged, slurmctld and one slurmd per node, every file in one folder.

    python -m tests.helpers.slurm_cluster DIR           # start one by hand (prints the SLURM_CONF to export)
    python -m tests.helpers.slurm_cluster DIR --nodes 2 # two nodes

Two nodes are two slurmd daemons on this machine (`slurmd -N`, each on a port of its own, its own spool, pid and
log files), named after two names that resolve to this machine: its host name and `localhost` (Lightning's SLURM
environment connects the job's processes to the first node by name). They share the machine's cores: each node
declares all of them.

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


def missing(nodes: int = 1) -> str | None:
    """Why a cluster of `nodes` cannot start here (one line), or None."""
    absent = [b for b in BINARIES if shutil.which(b) is None]
    if absent:
        return f"SLURM is not installed ({', '.join(absent)} missing): apt-get install slurm-wlm munge"
    if os.geteuid() != 0:
        return "the test cluster's daemons run as root"
    if nodes > 1 and socket.gethostname().split(".")[0] == "localhost":
        return "the second test node is named localhost, and so is this machine"
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Cluster:
    root: Path
    nodes: int = 1  # 1 or 2 slurmd daemons (`node_names`)
    env: dict = field(default_factory=dict)  # SLURM_CONF for clients (sbatch, squeue, submitit)
    pids: dict = field(default_factory=dict)

    def node_names(self) -> list[str]:
        host = socket.gethostname().split(".")[0]
        if self.nodes == 1:
            return [host]
        if self.nodes != 2 or host == "localhost":
            raise ValueError(
                f"a test cluster of {self.nodes} nodes on a host named {host!r}: only 1, or 2 names"
            )
        return [host, "localhost"]

    def _node_lines(self) -> list[str]:
        """slurm.conf's daemon files and nodes: one node as before; several with a port and files per node (%n)."""
        r, names = self.root, self.node_names()
        mem_mb = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // 2**20
        if len(names) == 1:
            return [
                f"SlurmdPort={_free_port()}",
                f"SlurmdSpoolDir={r}/spool",
                f"SlurmdPidFile={r}/slurmd.pid",
                f"SlurmdLogFile={r}/log/slurmd.log",
                f"NodeName={names[0]} CPUs={os.cpu_count()} RealMemory={mem_mb} State=UNKNOWN",
            ]
        for name in names:
            (r / "spool" / name).mkdir(parents=True, exist_ok=True)
        return [
            f"SlurmdSpoolDir={r}/spool/%n",
            f"SlurmdPidFile={r}/slurmd-%n.pid",
            f"SlurmdLogFile={r}/log/slurmd-%n.log",
            *(
                f"NodeName={name} NodeHostname={names[0]} NodeAddr=127.0.0.1 Port={_free_port()} "
                f"CPUs={os.cpu_count()} RealMemory={mem_mb // len(names)} State=UNKNOWN"
                for name in names
            ),
        ]

    def slurmd_pid_file(self, name: str) -> Path:
        return self.root / ("slurmd.pid" if self.nodes == 1 else f"slurmd-{name}.pid")

    def slurmd_log(self, name: str) -> Path:
        return self.root / "log" / ("slurmd.log" if self.nodes == 1 else f"slurmd-{name}.log")

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
        names = self.node_names()
        conf = r / "slurm.conf"
        conf.write_text(
            "\n".join(
                [
                    "ClusterName=warmstart-test",
                    f"SlurmctldHost={host}",
                    "SlurmUser=root",
                    "SlurmdUser=root",
                    f"SlurmctldPort={_free_port()}",
                    "AuthType=auth/munge",
                    "CredType=cred/munge",
                    f"AuthInfo=socket={sock}",
                    f"StateSaveLocation={r}/state",
                    f"SlurmctldPidFile={r}/slurmctld.pid",
                    f"SlurmctldLogFile={r}/log/slurmctld.log",
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
                    *self._node_lines(),
                    f"PartitionName=debug Nodes={','.join(names)} Default=YES MaxTime=INFINITE State=UP "
                    "OverSubscribe=YES",
                    "",
                ]
            )
        )
        self.env = {"SLURM_CONF": str(conf)}
        env = {**os.environ, **self.env}
        subprocess.run(["slurmctld", "-f", str(conf)], check=True, env=env)
        for name in names:
            subprocess.run(
                ["slurmd", "-f", str(conf), *(["-N", name] if self.nodes > 1 else [])], check=True, env=env
            )
        deadline = time.time() + timeout
        while time.time() < deadline:
            out = subprocess.run(
                ["sinfo", "-h", "-N", "-o", "%t"], capture_output=True, text=True, env=env
            ).stdout
            states = out.split()
            if len(states) == len(names) and all(s in ("idle", "mix", "alloc") for s in states):
                break
            time.sleep(0.5)
        else:
            self.stop()
            raise RuntimeError(f"the test SLURM cluster did not come up in {timeout:.0f} s; logs in {r}/log")
        self.pids["slurmctld"] = int((r / "slurmctld.pid").read_text())
        for name in names:
            self.pids[f"slurmd {name}"] = int(self.slurmd_pid_file(name).read_text())
        return self

    def stop(self) -> None:
        files = {f"slurmd {n}": self.slurmd_pid_file(n) for n in self.node_names()}
        files |= {"slurmctld": self.root / "slurmctld.pid", "munged": self.root / "munge" / "munged.pid"}
        for name, pid_file in files.items():
            pid = self.pids.pop(name, None)
            if pid is None and pid_file.is_file():
                pid = int(pid_file.read_text())
            if pid is not None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGTERM)


@contextlib.contextmanager
def running(root: Path, nodes: int = 1):
    """A started cluster whose SLURM_CONF the commands under test see (sbatch, squeue, submitit), stopped and the
    variable restored afterwards."""
    cluster = Cluster(root, nodes=nodes).start()
    before = os.environ.get("SLURM_CONF")
    os.environ.update(cluster.env)
    try:
        yield cluster
    finally:
        cluster.stop()
        if before is None:
            os.environ.pop("SLURM_CONF", None)
        else:
            os.environ["SLURM_CONF"] = before


if __name__ == "__main__":
    if why := missing():
        sys.exit(why)
    args = sys.argv[1:]
    nodes = int(args[args.index("--nodes") + 1]) if "--nodes" in args else 1
    where = next((a for a in args if not a.startswith("--") and not a.isdigit()), "/tmp/slurm-test")
    cluster = Cluster(Path(where).resolve(), nodes=nodes).start()
    print(f"export SLURM_CONF={cluster.env['SLURM_CONF']}", flush=True)
    try:
        signal.pause()
    except KeyboardInterrupt:
        pass
    finally:
        cluster.stop()
