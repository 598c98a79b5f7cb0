#!/usr/bin/env python3
"""Throw-away multi-node SLURM cluster on one machine, for tests and CI.

One slurmctld plus N ``slurmd -N nX`` daemons (Debian's SLURM 22.05), each
slurmd in its own UTS+mount namespace so that ``hostname`` differs per node
and ``/etc/slurm`` (what jobs read) is a bind mount of the state dir, without
touching the host's /etc.  Every node advertises fake GPUs (gres files that
are symlinks to /dev/null), so jobs get ``CUDA_VISIBLE_DEVICES``.

Host-side clients (sbatch/squeue/sacct, hence snakemake) must run with the
environment from :meth:`ClusterInfo.client_env` (it sets ``SLURM_CONF``).

Needs root (daemons, namespaces, apt-get).  Usage::

    python tests/slurm/cluster.py start [--accounting] [--state-dir DIR]
    eval "$(python tests/slurm/cluster.py env)"   # export SLURM_CONF
    python tests/slurm/cluster.py status | stop
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterable, Mapping
from pathlib import Path

DEFAULT_STATE_DIR = Path(os.environ.get("ZEROSWEEP_SLURM_STATE", "/tmp/zerosweep-slurm"))
PARTITION = "debug"
CLUSTER_NAME = "zerosweep"
# 2 real cores are oversubscribed on purpose: 4 "CPUs" per node lets
# 2-rank jobs and a few concurrent jobs fit.
CPUS_PER_NODE = 4
MEM_PER_NODE_MB = 4000
DEF_MEM_PER_CPU_MB = 500
# MinJobAge keeps finished jobs visible to squeue; the slurm executor plugin
# silently falls back to sacct when MinJobAge < 3 * init-seconds, so be generous.
MIN_JOB_AGE_S = 600
DEFAULT_BASE_PORT = 17817
START_TIMEOUT_S = 60.0

BASE_PACKAGES = ("munge", "slurmctld", "slurmd", "slurm-client")
ACCOUNTING_PACKAGES = ("slurmdbd", "mariadb-server")
DB_USER, DB_PASS, DB_NAME = "slurm", "slurm", "slurm_acct_db"


class ClusterError(RuntimeError):
    """Start/stop failed; the message names the daemon and its log file."""


@dataclasses.dataclass(frozen=True)
class ClusterInfo:
    """What a test fixture needs to drive the cluster."""

    state_dir: Path
    slurm_conf: Path
    partition: str
    nodes: tuple[str, ...]
    gpus_per_node: int
    cpus_per_node: int
    mem_per_node_mb: int
    accounting: bool
    base_port: int
    log_dir: Path

    def client_env(self, base: Mapping[str, str] | None = None) -> dict[str, str]:
        """Environment for host-side clients (sbatch, squeue, sacct, snakemake).

        SLURM_CONF is the only thing needed: the host's /etc/slurm/slurm.conf
        does not exist (we never write it); inside jobs /etc/slurm is
        bind-mounted, so the same file is found there.
        """
        env = dict(os.environ if base is None else base)
        # Stale job variables would make sbatch/srun think they run inside a job.
        for key in [k for k in env if k.startswith("SLURM_")]:
            del env[key]
        env["SLURM_CONF"] = str(self.slurm_conf)
        return env

    @property
    def exports(self) -> dict[str, str]:
        return {"SLURM_CONF": str(self.slurm_conf)}

    def to_json(self) -> dict[str, object]:
        d = dataclasses.asdict(self)
        return {k: (str(v) if isinstance(v, Path) else v) for k, v in d.items()}

    @classmethod
    def from_json(cls, d: Mapping[str, object]) -> ClusterInfo:
        d = dict(d)
        for k in ("state_dir", "slurm_conf", "log_dir"):
            d[k] = Path(str(d[k]))
        d["nodes"] = tuple(d["nodes"])  # type: ignore[arg-type]
        return cls(**d)  # type: ignore[arg-type]


# --------------------------------------------------------------------------
# small helpers


def _run(cmd: list[str], env: Mapping[str, str] | None = None, timeout: float = 30,
         check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, env=None if env is None else dict(env), text=True,
                          capture_output=True, timeout=timeout, check=check)


def _proc_starttime(pid: int) -> int | None:
    """Kernel start time of pid: with the pid it identifies a process uniquely
    (pids get reused; we must never signal a stranger)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat[stat.rindex(")") + 2:].split()
    if fields[0] == "Z":  # zombie: already dead, just not reaped
        return None
    return int(fields[19])


def _reap(pid: int) -> None:
    # Children of this Python process (pytest fixture case) would stay zombies.
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass


def _alive(rec: Mapping[str, object]) -> bool:
    pid = int(str(rec["pid"]))
    _reap(pid)
    return _proc_starttime(pid) == rec["starttime"]


def _tail(path: Path | str, n: int = 15) -> str:
    try:
        lines = Path(path).read_text(errors="replace").splitlines()[-n:]
    except OSError:
        return "(no log)"
    return "\n".join("    " + line for line in lines)


def _port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("0.0.0.0", port))
        except OSError:
            return False
    return True


def ensure_packages(accounting: bool = False) -> None:
    """apt-get install what is missing (non-interactive; ~10 s the first time)."""
    wanted = list(BASE_PACKAGES) + (list(ACCOUNTING_PACKAGES) if accounting else [])
    missing = []
    for pkg in wanted:
        r = _run(["dpkg-query", "-W", "-f=${Status}", pkg], check=False)
        if "install ok installed" not in r.stdout:
            missing.append(pkg)
    if not missing:
        return
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    cmd = ["apt-get", "install", "-y", "-q", "--no-install-recommends", *missing]
    r = _run(cmd, env=env, timeout=900, check=False)
    if r.returncode != 0:  # stale package lists on a fresh CI image
        _run(["apt-get", "update", "-q"], env=env, timeout=600, check=False)
        r = _run(cmd, env=env, timeout=900, check=False)
    if r.returncode != 0:
        raise ClusterError(f"apt-get install {' '.join(missing)} failed:\n{r.stdout[-2000:]}{r.stderr[-2000:]}")


# --------------------------------------------------------------------------
# config files


class _Layout:
    """All paths under the state dir, in one place."""

    def __init__(self, state_dir: Path) -> None:
        self.root = state_dir
        self.etc = state_dir / "etc"  # bind-mounted on /etc/slurm inside nodes
        self.conf = self.etc / "slurm.conf"
        self.dbd_conf = self.etc / "slurmdbd.conf"
        self.hosts = state_dir / "hosts"
        self.log = state_dir / "log"
        self.run = state_dir / "run"
        self.ctld_state = state_dir / "ctld"
        self.dev = state_dir / "dev"
        self.munge = state_dir / "munge"
        self.mysql = state_dir / "mysql"
        self.pids = state_dir / "pids.json"
        self.info = state_dir / "cluster.json"
        # Unix socket paths are limited to 108 bytes: munged's, mariadb's and
        # slurmstepd's (<spool>/n1/n1_<jobid>.4294967291). Deep state dirs
        # (pytest's tmp_path) get a short side dir for them, removed by stop().
        self.short = len(str(state_dir)) <= 60
        if self.short:
            self.rt = state_dir
        else:
            h = hashlib.sha1(str(state_dir).encode()).hexdigest()[:10]
            self.rt = Path(f"/tmp/zerosweep-rt-{h}")
        self.spool = self.rt / "spool"
        self.munge_sock = (self.munge if self.short else self.rt) / "munge.sock"
        self.mysql_sock = (self.mysql if self.short else self.rt) / "mysqld.sock"


def _node_names(n: int) -> list[str]:
    return [f"n{i}" for i in range(1, n + 1)]


def _write_configs(L: _Layout, nodes: int, gpus: int, accounting: bool, base_port: int) -> None:
    names = _node_names(nodes)
    host = socket.gethostname().split(".")[0]
    acct = (
        f"AccountingStorageType=accounting_storage/slurmdbd\n"
        f"AccountingStorageHost=127.0.0.1\nAccountingStoragePort={base_port + 1}\n"
        # For slurmdbd connections the munge socket comes from here, not AuthInfo.
        f"AccountingStoragePass={L.munge_sock}\n"
        f"AccountingStorageTRES=gres/gpu\n"  # GPUs show up in sacct's AllocTRES
        f"JobAcctGatherType=jobacct_gather/linux\nJobAcctGatherFrequency=30\n"
        if accounting else
        "AccountingStorageType=accounting_storage/none\nJobAcctGatherType=jobacct_gather/none\n"
    )
    gres = f" Gres=gpu:{gpus}" if gpus else ""
    node_lines = "\n".join(
        f"NodeName={n} NodeAddr=127.0.1.{i} NodeHostname={n} Port={base_port + 10 + i} "
        f"CPUs={CPUS_PER_NODE} Boards=1 SocketsPerBoard=1 CoresPerSocket={CPUS_PER_NODE} "
        f"ThreadsPerCore=1 RealMemory={MEM_PER_NODE_MB}{gres} State=UNKNOWN"
        for i, n in enumerate(names, start=1)
    )
    conf = f"""\
# Generated by tests/slurm/cluster.py -- do not edit, it is rewritten on start.
ClusterName={CLUSTER_NAME}
SlurmctldHost={host}(127.0.0.1)
SlurmctldPort={base_port}
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket={L.munge_sock}
StateSaveLocation={L.ctld_state}
SlurmdSpoolDir={L.spool}/%n
SlurmctldPidFile={L.run}/slurmctld.pid
SlurmdPidFile={L.run}/slurmd-%n.pid
SlurmctldLogFile={L.log}/slurmctld.log
SlurmdLogFile={L.log}/slurmd-%n.log
MailProg=/bin/true
SlurmctldDebug=info
SlurmdDebug=info
# No cgroups: the nodes share one kernel (and CI runners may lack cgroup v2 delegation).
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SwitchType=switch/none
MpiDefault=none
# Declared CPUs/RAM exceed the real machine; trust slurm.conf, not the hardware.
SlurmdParameters=config_overrides
SchedulerType=sched/backfill
SelectType=select/cons_tres
# Without CR_*_Memory + DefMemPerCPU every job would get a whole node.
SelectTypeParameters=CR_Core_Memory
DefMemPerCPU={DEF_MEM_PER_CPU_MB}
GresTypes=gpu
ReturnToService=2
MinJobAge={MIN_JOB_AGE_S}
KillWait=5
InactiveLimit=0
SlurmdTimeout=60
MessageTimeout=20
{acct}JobCompType=jobcomp/none
{node_lines}
PartitionName={PARTITION} Nodes={names[0]}-{names[-1]} Default=YES MaxTime=INFINITE State=UP
"""
    # "n1-n4" is not a hostlist; use the bracket form.
    conf = conf.replace(f"Nodes={names[0]}-{names[-1]}", f"Nodes=n[1-{nodes}]" if nodes > 1 else "Nodes=n1")
    L.conf.write_text(conf)

    # Fake GPUs: File= entries are needed (a bare Count drains the node);
    # symlinks to /dev/null give slurm a device to stat without real hardware.
    lines = ["AutoDetect=off"]
    if gpus:
        L.dev.mkdir(exist_ok=True)
        for g in range(gpus):
            link = L.dev / f"nvidia{g}"
            if not link.is_symlink():
                link.symlink_to("/dev/null")
        files = f"{L.dev}/nvidia[0-{gpus - 1}]" if gpus > 1 else f"{L.dev}/nvidia0"
        lines.append(f"NodeName=n[1-{nodes}] Name=gpu File={files}" if nodes > 1
                     else f"NodeName=n1 Name=gpu File={files}")
    (L.etc / "gres.conf").write_text("\n".join(lines) + "\n")
    (L.etc / "cgroup.conf").write_text("# unused: no cgroup plugins configured\n")
    # Node names must resolve inside jobs (MASTER_ADDR=<first node> for
    # torch.distributed); bind-mounted over /etc/hosts in the node namespaces.
    try:
        hosts = Path("/etc/hosts").read_text()
    except OSError:
        hosts = "127.0.0.1 localhost\n"
    hosts += "".join(f"127.0.1.{i} {n}\n" for i, n in enumerate(names, start=1))
    L.hosts.write_text(hosts)

    if accounting:
        L.dbd_conf.write_text(f"""\
AuthType=auth/munge
AuthInfo=socket={L.munge_sock}
DbdHost={host}
DbdAddr=127.0.0.1
DbdPort={base_port + 1}
SlurmUser=root
LogFile={L.log}/slurmdbd.log
PidFile={L.run}/slurmdbd.pid
StorageType=accounting_storage/mysql
StorageHost=127.0.0.1
StoragePort={base_port + 2}
StorageUser={DB_USER}
StoragePass={DB_PASS}
StorageLoc={DB_NAME}
""")
        L.dbd_conf.chmod(0o600)  # slurmdbd refuses a world-readable password file


# --------------------------------------------------------------------------
# process management


def _load_pids(L: _Layout) -> list[dict[str, object]]:
    try:
        return list(json.loads(L.pids.read_text()))
    except (OSError, ValueError):
        return []


def _save_pids(L: _Layout, recs: list[dict[str, object]]) -> None:
    tmp = L.pids.with_suffix(".tmp")
    tmp.write_text(json.dumps(recs, indent=1))
    tmp.replace(L.pids)


def _spawn(L: _Layout, recs: list[dict[str, object]], name: str, cmd: list[str],
           log: Path, env: Mapping[str, str] | None = None) -> dict[str, object]:
    """Start a foreground daemon in its own session (survives the CLI's exit,
    and a Ctrl-C in the test runner does not hit it) and record it at once,
    so that stop() can clean up even if start() fails half-way."""
    with open(L.log / f"{name}.stdout", "ab") as out:  # the daemon keeps its own descriptor
        p = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                             start_new_session=True, env=None if env is None else dict(env))
    st = None
    for _ in range(50):  # starttime is readable immediately, but be safe
        st = _proc_starttime(p.pid)
        if st is not None:
            break
        time.sleep(0.01)
    rec: dict[str, object] = {"name": name, "pid": p.pid, "starttime": st, "log": str(log),
                              "cmd": cmd}
    recs.append(rec)
    _save_pids(L, recs)
    return rec


def _fail(rec: Mapping[str, object], what: str) -> ClusterError:
    log = Path(str(rec["log"]))
    # Early failures (bad config, port in use) often only reach stdout/stderr.
    out = log.parent / f"{rec['name']}.stdout"
    return ClusterError(
        f"{rec['name']} (pid {rec['pid']}) {what}; see {log}:\n{_tail(log)}\n"
        f"and {out}:\n{_tail(out)}")


def _wait(cond, rec: Mapping[str, object], what: str, timeout: float = START_TIMEOUT_S) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return
        if not _alive(rec):
            raise _fail(rec, f"exited while waiting for it to {what}")
        time.sleep(0.1)
    raise _fail(rec, f"did not {what} within {timeout:.0f}s")


def _kill(recs: Iterable[Mapping[str, object]], timeout: float = 15.0) -> None:
    """SIGTERM, then SIGKILL, exactly the recorded processes (pid+starttime)."""
    live = [r for r in recs if _alive(r)]
    for r in live:
        try:
            os.kill(int(str(r["pid"])), signal.SIGTERM)
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + timeout
    while live and time.monotonic() < deadline:
        time.sleep(0.1)
        live = [r for r in live if _alive(r)]
    for r in live:
        try:
            os.kill(int(str(r["pid"])), signal.SIGKILL)
        except ProcessLookupError:
            pass
    for r in live:
        for _ in range(50):
            if not _alive(r):
                break
            time.sleep(0.1)


def _ns_members(ns_id: str) -> list[int]:
    pids = []
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                if os.readlink(f"/proc/{d}/ns/mnt") == ns_id:
                    pids.append(int(d))
            except OSError:
                continue
    return pids


def _ns_has_slurmstepd(ns_id: str) -> bool:
    for pid in _ns_members(ns_id):
        try:
            if Path(f"/proc/{pid}/cmdline").read_bytes().startswith(b"slurmstepd"):
                return True
        except OSError:
            continue
    return False


def _kill_namespace_members(ns_ids: set[str]) -> None:
    """Kill leftover job processes (slurmstepd, user tasks) of our nodes.

    They were forked by a slurmd and live on after it is killed; they are
    exactly the processes in the private mount namespaces we created.  Once
    they are gone, the namespaces -- and the /etc/slurm bind mounts in them --
    vanish; nothing is ever mounted in the host namespace.
    """
    # Never the host namespace (ours), whatever pids.json says.
    own = os.readlink("/proc/self/ns/mnt")
    ns_ids = {n for n in ns_ids if n.startswith("mnt:") and n != own}
    if not ns_ids:
        return
    for sig in (signal.SIGTERM, signal.SIGKILL):
        victims = [pid for ns in ns_ids for pid in _ns_members(ns)]
        if not victims:
            return
        for pid in victims:
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass
        for _ in range(30):
            time.sleep(0.1)
            if not any(_proc_starttime(p) for p in victims):
                break


# --------------------------------------------------------------------------
# public API


def _sinfo_states(info: ClusterInfo) -> dict[str, str]:
    r = _run(["sinfo", "-h", "-N", "-p", info.partition, "-o", "%N %T"],
             env=info.client_env(), timeout=15, check=False)
    if r.returncode != 0:
        return {}
    return dict(line.split(None, 1) for line in r.stdout.splitlines() if line.strip())


def read_info(state_dir: Path | str = DEFAULT_STATE_DIR) -> ClusterInfo | None:
    try:
        return ClusterInfo.from_json(json.loads(_Layout(Path(state_dir)).info.read_text()))
    except (OSError, ValueError, KeyError, TypeError):
        return None


def is_running(state_dir: Path | str = DEFAULT_STATE_DIR) -> bool:
    """All recorded daemons alive and every node schedulable."""
    L = _Layout(Path(state_dir))
    info = read_info(state_dir)
    recs = _load_pids(L)
    if info is None or not recs or not all(_alive(r) for r in recs):
        return False
    states = _sinfo_states(info)
    ok = ("idle", "mixed", "allocated", "completing")
    return set(states) == set(info.nodes) and all(s.rstrip("*~#") in ok for s in states.values())


def start(state_dir: Path | str = DEFAULT_STATE_DIR, nodes: int = 4, gpus_per_node: int = 8,
          accounting: bool = False, base_port: int = DEFAULT_BASE_PORT,
          timeout: float = START_TIMEOUT_S) -> ClusterInfo:
    """Start (or reuse) the cluster; returns once all nodes are idle.

    Reuses a healthy cluster with the same shape; anything else that was
    started from this state dir is stopped and the cluster is rebuilt from
    scratch (jobs and accounting data are not kept).
    """
    state_dir = Path(state_dir).absolute()
    if any(c.isspace() for c in str(state_dir)):
        raise ClusterError(f"state dir must not contain whitespace: {state_dir!r}")
    if os.geteuid() != 0:
        raise ClusterError("the test cluster needs root (daemons, namespaces, apt-get)")
    if not 1 <= nodes <= 9:
        raise ClusterError("nodes must be 1..9 (one 127.0.1.X address and port each)")
    old = read_info(state_dir)
    if old and is_running(state_dir) and (old.nodes, old.gpus_per_node, old.accounting,
                                          old.base_port) == (
            tuple(_node_names(nodes)), gpus_per_node, accounting, base_port):
        return old
    stop(state_dir)
    ensure_packages(accounting)

    L = _Layout(state_dir)
    # Fresh state each time: no stale jobs, no stale node state.
    for d in (L.etc, L.log, L.run, L.ctld_state, L.spool, L.dev, L.mysql, L.munge):
        shutil.rmtree(d, ignore_errors=True)
    if not L.short:
        shutil.rmtree(L.rt, ignore_errors=True)
    state_dir.mkdir(parents=True, exist_ok=True)
    for d in (L.etc, L.log, L.run, L.ctld_state, L.spool, L.munge, L.rt):
        d.mkdir(parents=True, exist_ok=True)
    # munged insists on world-x for its socket dir (other dirs on the path are
    # tolerated with --force, e.g. pytest's 0700 tmp dirs).
    for d in (state_dir, L.munge, L.rt):
        d.chmod(0o755)
    for n in _node_names(nodes):
        (L.spool / n).mkdir()

    ports = [base_port, base_port + 1, base_port + 2] + [base_port + 10 + i for i in range(1, nodes + 1)]
    busy = [p for p in ports if not _port_free(p)]
    if busy:
        raise ClusterError(f"TCP ports {busy} are in use (another cluster? pass base_port=...)")

    _write_configs(L, nodes, gpus_per_node, accounting, base_port)
    info = ClusterInfo(state_dir=state_dir, slurm_conf=L.conf, partition=PARTITION,
                       nodes=tuple(_node_names(nodes)), gpus_per_node=gpus_per_node,
                       cpus_per_node=CPUS_PER_NODE, mem_per_node_mb=MEM_PER_NODE_MB,
                       accounting=accounting, base_port=base_port, log_dir=L.log)
    env = info.client_env()
    recs: list[dict[str, object]] = []
    _save_pids(L, recs)
    try:
        _start_daemons(L, info, env, recs, timeout)
    except BaseException:
        stop(state_dir)
        raise
    L.info.write_text(json.dumps(info.to_json(), indent=1))
    return info


def _start_daemons(L: _Layout, info: ClusterInfo, env: dict[str, str],
                   recs: list[dict[str, object]], timeout: float) -> None:
    # munge: own key and socket, so we neither need nor disturb a system munged.
    key = L.munge / "munge.key"
    _run(["mungekey", "--create", "--force", f"--keyfile={key}"])
    key.chmod(0o600)
    L.munge_sock.unlink(missing_ok=True)
    rec = _spawn(L, recs, "munged", [
        "munged", "--foreground", "--force", f"--key-file={key}", f"--socket={L.munge_sock}",
        f"--pid-file={L.run}/munged.pid", f"--seed-file={L.munge}/munged.seed",
        f"--log-file={L.log}/munged.log"], L.log / "munged.stdout")
    _wait(L.munge_sock.exists, rec, "create its socket", timeout)

    if info.accounting:
        _start_accounting(L, info, env, recs, timeout)

    ctld_log = L.log / "slurmctld.log"
    # -i: ignore unreadable state; state dir is fresh anyway.
    rec = _spawn(L, recs, "slurmctld", ["slurmctld", "-D", "-i", "-f", str(L.conf)], ctld_log, env)
    _wait(lambda: _run(["scontrol", "ping"], env=env, check=False).stdout.count("UP") > 0,
          rec, "answer 'scontrol ping'", timeout)

    node_recs = []
    for i, n in enumerate(info.nodes, start=1):
        # Own UTS ns -> `hostname` is nX inside jobs; own mount ns -> jobs
        # find our config at /etc/slurm (snakemake's jobstep executor strips
        # SLURM_CONF before running the rule) and node names in /etc/hosts.  unshare's
        # default propagation is private, so the host's /etc is untouched.
        script = (f"hostname {n} && mount --bind {L.etc} /etc/slurm && "
                  f"mount --bind {L.hosts} /etc/hosts && "
                  f"exec slurmd -D -N {n} -f {L.conf}")
        node_recs.append(_spawn(L, recs, f"slurmd-{n}",
                                ["unshare", "--uts", "--mount", "sh", "-c", script],
                                L.log / f"slurmd-{n}.log", env))
    # Remember the namespaces so stop() can find orphaned job processes.
    for r in node_recs:
        for _ in range(50):
            try:
                r["mntns"] = os.readlink(f"/proc/{r['pid']}/ns/mnt")
            except OSError:
                break
            if r["mntns"] != os.readlink("/proc/self/ns/mnt"):
                break
            time.sleep(0.05)
    _save_pids(L, recs)

    deadline = time.monotonic() + timeout
    states: dict[str, str] = {}
    while time.monotonic() < deadline:
        for r in recs:
            if not _alive(r):
                raise _fail(r, "exited during startup")
        states = _sinfo_states(info)
        if set(states) == set(info.nodes) and all(s == "idle" for s in states.values()):
            return
        time.sleep(0.2)
    bad = [n for n in info.nodes if states.get(n) != "idle"]
    r = next(x for x in node_recs if x["name"] == f"slurmd-{bad[0]}") if bad else recs[-1]
    reason = _run(["sinfo", "-h", "-R", "-N", "-o", "%N %T: %E"], env=env, check=False).stdout
    raise ClusterError(
        f"nodes not idle after {timeout:.0f}s: {states or '(sinfo failed)'}\n{reason}"
        f"see {r['log']}:\n{_tail(str(r['log']))}\nand {L.log}/slurmctld.log:\n"
        f"{_tail(L.log / 'slurmctld.log')}")


def _start_accounting(L: _Layout, info: ClusterInfo, env: dict[str, str],
                      recs: list[dict[str, object]], timeout: float) -> None:
    data = L.mysql / "data"
    data.mkdir(parents=True)
    # --no-defaults: ignore Debian's /etc/mysql (fixed socket/port/datadir).
    r = _run(["mariadb-install-db", "--no-defaults", "--user=root", f"--datadir={data}",
              "--skip-test-db", "--auth-root-authentication-method=socket"],
             timeout=120, check=False)
    if r.returncode != 0:
        raise ClusterError(f"mariadb-install-db failed:\n{r.stdout[-1500:]}{r.stderr[-1500:]}")
    db_log = L.log / "mariadb.log"
    rec = _spawn(L, recs, "mariadbd", [
        "mariadbd", "--no-defaults", "--user=root", f"--datadir={data}",
        f"--socket={L.mysql_sock}", f"--port={info.base_port + 2}", "--bind-address=127.0.0.1",
        f"--pid-file={L.run}/mariadbd.pid", f"--log-error={db_log}",
        # slurmdbd's recommended settings, smaller (24 GiB box, 2 cores).
        "--innodb-buffer-pool-size=128M", "--innodb-lock-wait-timeout=900"], db_log)
    mysql = ["mariadb", "--no-defaults", f"--socket={L.mysql_sock}", "-uroot"]
    _wait(lambda: _run(mysql + ["-e", "SELECT 1"], check=False).returncode == 0, rec,
          "accept connections", timeout)
    _run(mysql + ["-e",
                  (f"CREATE USER IF NOT EXISTS '{DB_USER}'@'127.0.0.1' IDENTIFIED BY '{DB_PASS}';"
                   f"CREATE USER IF NOT EXISTS '{DB_USER}'@'localhost' IDENTIFIED BY '{DB_PASS}';"
                   f"GRANT ALL ON {DB_NAME}.* TO '{DB_USER}'@'127.0.0.1';"
                   f"GRANT ALL ON {DB_NAME}.* TO '{DB_USER}'@'localhost';")])

    # slurmdbd finds slurmdbd.conf next to $SLURM_CONF.
    rec = _spawn(L, recs, "slurmdbd", ["slurmdbd", "-D"], L.log / "slurmdbd.log", env)
    _wait(lambda: _run(["sacctmgr", "-n", "list", "cluster"], env=env,
                       check=False).returncode == 0, rec, "answer sacctmgr", timeout)
    # Register cluster + an account for root before slurmctld starts, so
    # slurmctld registers cleanly and jobs carry an account ("sacct -o Account").
    for cmd in (["add", "cluster", CLUSTER_NAME],
                ["add", "account", "zerosweep", f"cluster={CLUSTER_NAME}",
                 "description=test", "organization=test"],
                ["add", "user", "root", "account=zerosweep", f"cluster={CLUSTER_NAME}",
                 "defaultaccount=zerosweep"]):
        _run(["sacctmgr", "-i", *cmd], env=env, check=False)


def stop(state_dir: Path | str = DEFAULT_STATE_DIR) -> None:
    """Kill exactly the processes start() recorded (and the job processes in
    the nodes' private namespaces). Idempotent; keeps logs for post-mortems."""
    L = _Layout(Path(state_dir).absolute())
    recs = _load_pids(L)
    # A live slurmd (pid+starttime checked) vouches for its namespace; for a
    # dead one, only a namespace that still holds a slurmstepd is ours.
    ns_ids = {str(r.get("mntns", "")) for r in recs
              if "mntns" in r and (_alive(r) or _ns_has_slurmstepd(str(r["mntns"])))}
    by_name = {str(r["name"]): r for r in recs}
    # Order: nodes, then controller, then accounting, then munge (others need it to shut down cleanly).
    order = [r for r in recs if str(r["name"]).startswith("slurmd-")]
    order += [by_name[n] for n in ("slurmctld", "slurmdbd", "mariadbd", "munged") if n in by_name]
    for r in order:
        _kill([r])
        if str(r["name"]).startswith("slurmd-"):
            _kill_namespace_members({str(r.get("mntns", ""))} & ns_ids)
    _kill_namespace_members(ns_ids)
    L.pids.unlink(missing_ok=True)
    L.info.unlink(missing_ok=True)
    if not L.short:
        shutil.rmtree(L.rt, ignore_errors=True)


def status(state_dir: Path | str = DEFAULT_STATE_DIR) -> str:
    L = _Layout(Path(state_dir).absolute())
    info = read_info(state_dir)
    lines = [f"state dir: {L.root}"]
    for r in _load_pids(L):
        lines.append(f"  {r['name']:<14} pid {r['pid']:<8} {'alive' if _alive(r) else 'DEAD'}  log {r['log']}")
    if info is None:
        lines.append("not running (no cluster.json)")
        return "\n".join(lines)
    lines.append(f"SLURM_CONF={info.slurm_conf} partition={info.partition} "
                 f"accounting={info.accounting}")
    sinfo = _run(["sinfo", "-N", "-o", "%N %P %T %c %m %G"], env=info.client_env(), check=False)
    lines.append(sinfo.stdout.rstrip() or sinfo.stderr.rstrip())
    lines.append("healthy" if is_running(state_dir) else "NOT healthy")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("command", choices=["start", "stop", "status", "env"])
    ap.add_argument("--state-dir", type=Path, default=DEFAULT_STATE_DIR)
    ap.add_argument("--accounting", action="store_true", help="also run slurmdbd + mariadb (sacct works)")
    ap.add_argument("--nodes", type=int, default=4)
    ap.add_argument("--gpus-per-node", type=int, default=8)
    ap.add_argument("--base-port", type=int, default=DEFAULT_BASE_PORT)
    a = ap.parse_args(argv)
    try:
        if a.command == "start":
            t0 = time.monotonic()
            info = start(a.state_dir, a.nodes, a.gpus_per_node, a.accounting, a.base_port)
            print(f"# cluster up in {time.monotonic() - t0:.1f}s: nodes {','.join(info.nodes)} "
                  f"partition {info.partition}", file=sys.stderr)
            for k, v in info.exports.items():  # eval-able
                print(f"export {k}={v}")
        elif a.command == "env":
            found = read_info(a.state_dir)
            if found is None:
                print(f"no cluster in {a.state_dir}", file=sys.stderr)
                return 1
            for k, v in found.exports.items():
                print(f"export {k}={v}")
        elif a.command == "stop":
            stop(a.state_dir)
        else:
            print(status(a.state_dir))
            return 0 if is_running(a.state_dir) else 1
    except ClusterError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
