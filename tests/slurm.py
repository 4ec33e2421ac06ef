"""A real one-node SLURM cluster on 127.0.0.1 for the tests, from Debian's packages.

``install_reason()`` installs ``slurm-wlm`` and ``munge`` with apt when they are missing and says
why SLURM cannot be had, if it cannot. ``start_cluster(folder)`` writes ``slurm.conf``,
``cgroup.conf`` and a munge key into ``folder`` (nothing under /etc is read or changed), starts
munged, slurmctld and slurmd in the foreground from there, and returns a ``Cluster`` whose
``stop()`` cancels its jobs and ends the daemons it started, by their PIDs.

What makes slurmd 22.05 start in a container: ``ProctrackType=proctrack/linuxproc``,
``TaskPlugin=task/none`` and a cgroup.conf with every ``Constrain*`` off. There is no accounting
database, so ``sacct`` (which submitit polls for job states) fails on every call; the cluster's
``bin/sacct`` answers those polls from ``squeue``, which remembers finished jobs for MinJobAge
(300 s), so a job that dies without a result is seen as FAILED instead of waited for forever.
"""

from __future__ import annotations

import atexit
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

PACKAGES = ("slurm-wlm", "munge")
PROGRAMS = ("munged", "slurmctld", "slurmd", "sbatch", "squeue", "scontrol", "scancel")

SACCT = """#!/bin/sh
# sacct for a cluster without accounting, for submitit's polls
# (sacct -o JobID,State,NodeList --parsable2 -j ID ...): the same columns from squeue.
jobs=""
while [ $# -gt 0 ]; do
    case "$1" in -j) jobs="$jobs,$2"; shift 2 ;; *) shift ;; esac
done
echo "JobID|State|NodeList"
squeue --noheader --states=all --array --format='%i|%T|%N' --jobs="${jobs#,}" 2>/dev/null
exit 0
"""


def install_reason() -> str | None:
    """None when SLURM and munge are ready; else why they cannot be installed here."""
    if all(shutil.which(p) for p in PROGRAMS):
        return None
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        return "SLURM is not installed, and installing it needs root and apt-get (Debian)"
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    steps = (
        ["apt-get", "update", "-q"],
        ["apt-get", "install", "-y", "-q", "--no-install-recommends", *PACKAGES],
    )
    for step in steps:
        proc = subprocess.run(step, env=env, capture_output=True, text=True, timeout=900)
        if proc.returncode != 0:
            return f"{' '.join(step)} failed: {(proc.stderr or proc.stdout)[-500:]}"
    missing = [p for p in PROGRAMS if not shutil.which(p)]
    return f"installed {PACKAGES} but {missing} are missing" if missing else None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Cluster:
    folder: Path
    env: dict[str, str]  # what a client needs: SLURM_CONF, and bin/ (sacct) first on PATH
    munge_dir: Path  # munged wants its socket's folder open to all, which tmp_path is not
    processes: dict[str, subprocess.Popen] = field(default_factory=dict)

    def run(self, *args: str, check: bool = True) -> str:
        proc = subprocess.run(args, env=self.env, capture_output=True, text=True, timeout=60)
        if check and proc.returncode != 0:
            raise RuntimeError(f"{' '.join(args)}: {proc.stderr or proc.stdout}")
        return proc.stdout

    def jobs(self) -> list[str]:
        """Ids of the jobs not finished yet."""
        return self.run("squeue", "--noheader", "--format=%i").split()

    def wait_until(self, condition, timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while not condition():
            self.check_daemons()
            if time.monotonic() > deadline:
                raise TimeoutError(f"{what} after {timeout:.0f} s; logs: {self.log_tails()}")
            time.sleep(0.5)

    def check_daemons(self) -> None:
        for name, proc in self.processes.items():
            if proc.poll() is not None:
                out = (self.folder / f"{name}.out").read_text()[-2000:]
                raise RuntimeError(f"{name} exited with {proc.returncode}: {out}")

    def log_tails(self) -> str:
        tails = []
        for log in sorted(self.folder.glob("*.log")):
            tails.append(f"--- {log.name}\n" + "\n".join(log.read_text().splitlines()[-15:]))
        return "\n".join(tails)

    def stop(self) -> None:
        """Cancel every job, then end the daemons this cluster started (by PID), newest first."""
        if self.processes.get("slurmctld") and self.processes["slurmctld"].poll() is None:
            try:
                self.run("scancel", "--full", "--user", str(os.getuid()), check=False)
                self.wait_until(lambda: not self.jobs(), 60, "jobs still there")
            except (RuntimeError, TimeoutError, subprocess.TimeoutExpired):
                pass  # the daemons go anyway
        for name in reversed(list(self.processes)):
            proc = self.processes.pop(name)
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
        shutil.rmtree(self.munge_dir, ignore_errors=True)


def slurm_conf(folder: Path, munge_dir: Path, cpus: int, ctld_port: int, slurmd_port: int) -> str:
    memory_mb = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // 2**20
    return f"""\
ClusterName=lstmtest
SlurmctldHost=localhost(127.0.0.1)
SlurmctldPort={ctld_port}
SlurmdPort={slurmd_port}
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
AuthInfo=socket={munge_dir}/munge.socket
StateSaveLocation={folder}/state
SlurmdSpoolDir={folder}/spool
SlurmctldPidFile={folder}/slurmctld.pid
SlurmdPidFile={folder}/slurmd.pid
SlurmctldLogFile={folder}/slurmctld.log
SlurmdLogFile={folder}/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
MpiDefault=none
SwitchType=switch/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
SlurmdParameters=config_overrides
ReturnToService=2
JobRequeue=1
NodeName=localhost NodeAddr=127.0.0.1 CPUs={cpus} RealMemory={memory_mb * 3 // 4} State=UNKNOWN
PartitionName=debug Nodes=localhost Default=YES MaxTime=INFINITE State=UP
"""


CGROUP_CONF = """\
CgroupPlugin=cgroup/v1
ConstrainCores=no
ConstrainDevices=no
ConstrainRAMSpace=no
ConstrainSwapSpace=no
"""


def start_cluster(folder: Path, cpus: int = 2) -> Cluster:
    """A running one-node cluster with ``cpus`` CPUs (whatever the machine has) in ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    for sub in ("state", "spool", "bin"):
        (folder / sub).mkdir(exist_ok=True)
    key = folder / "munge.key"
    key.write_bytes(os.urandom(1024))
    key.chmod(0o600)
    conf = folder / "slurm.conf"
    munge_dir = Path(tempfile.mkdtemp(prefix="slurm-test-munge-"))
    munge_dir.chmod(0o755)
    conf.write_text(slurm_conf(folder, munge_dir, cpus, free_port(), free_port()))
    (folder / "cgroup.conf").write_text(CGROUP_CONF)
    sacct = folder / "bin" / "sacct"
    sacct.write_text(SACCT)
    sacct.chmod(0o755)
    env = {
        **os.environ,
        "SLURM_CONF": str(conf),
        "PATH": f"{folder / 'bin'}{os.pathsep}{os.environ['PATH']}",
    }
    cluster = Cluster(folder, env, munge_dir)
    atexit.register(cluster.stop)  # also when a test run is interrupted
    daemons = {
        "munged": [
            "munged",
            "--foreground",
            f"--socket={munge_dir}/munge.socket",
            f"--key-file={key}",
            f"--pid-file={folder}/munged.pid",
            f"--seed-file={folder}/munged.seed",
            f"--log-file={folder}/munged.log",
        ],
        "slurmctld": ["slurmctld", "-D", "-f", str(conf)],
        "slurmd": ["slurmd", "-D", "-N", "localhost", "-f", str(conf)],
    }
    try:
        for name, cmd in daemons.items():
            out = open(folder / f"{name}.out", "w")  # noqa: SIM115 (the daemon keeps it)
            cluster.processes[name] = subprocess.Popen(
                cmd, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
            )
            if name == "munged":
                socket_file = munge_dir / "munge.socket"
                cluster.wait_until(socket_file.exists, 30, "no munge socket")
        cluster.wait_until(lambda: _node_state(cluster) == "idle", 90, "the node is not idle")
    except BaseException:
        cluster.stop()
        raise
    return cluster


def _node_state(cluster: Cluster) -> str:
    try:
        return cluster.run("sinfo", "--noheader", "--format=%T", check=False).strip()
    except subprocess.TimeoutExpired:
        return ""


def main() -> None:
    """``python tests/slurm.py [FOLDER]``: a local cluster to try commands on, until Ctrl-C."""
    folder = Path(sys.argv[1] if len(sys.argv) > 1 else tempfile.mkdtemp(prefix="slurm-"))
    reason = install_reason()
    if reason:
        sys.exit(f"no SLURM: {reason}")
    cluster = start_cluster(folder.resolve())
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))  # kill <pid> stops it cleanly too
    env = cluster.env
    print(f"export SLURM_CONF={env['SLURM_CONF']} PATH={folder.resolve()}/bin:$PATH", flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        cluster.stop()


if __name__ == "__main__":
    main()
