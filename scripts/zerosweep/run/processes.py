"""Child-process hygiene shared by the launcher, the node launcher and the monitors: children in sessions of
their own that die with their parent, signals passed on in order, and no descendant left behind."""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import IO, Any

import psutil

SCRIPTS_DIR = Path(__file__).resolve().parents[2]  # holds the zerosweep package
STOP_TIMEOUT_S = 5.0
TERMINATE_GRACE_S = 15.0  # torchrun's own worker shutdown, well inside SLURM's default KillWait of 30 s
DESCENDANT_SCAN_S = 2.0
HANDLED_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)

_PR_SET_DEATHSIG = 1
_PR_SET_CHILD_SUBREAPER = 36
# Loaded before any fork: the pre-exec hook must not load libraries in the child.
_LIBC = ctypes.CDLL(None, use_errno=True)


def parent_death_signal(sig: int = signal.SIGTERM) -> Callable[[], None]:
    """A Popen preexec_fn: the child gets `sig` when the launcher dies, even by SIGKILL.

    The parent's pid is taken before the fork, so a parent that died between fork and prctl is noticed.
    """
    parent = os.getpid()

    def hook() -> None:
        _LIBC.prctl(_PR_SET_DEATHSIG, int(sig), 0, 0, 0)
        if os.getppid() != parent:
            os.kill(os.getpid(), sig)

    return hook


def die_with_parent(sig: int = signal.SIGKILL) -> None:
    """For a process that cannot be given a preexec hook (torchrun's ranks): bind its life to its parent."""
    parent = os.getppid()
    _LIBC.prctl(_PR_SET_DEATHSIG, int(sig), 0, 0, 0)
    if os.getppid() != parent or parent == 1:
        os.kill(os.getpid(), sig)


def become_subreaper() -> None:
    """Orphaned descendants (ranks whose torchrun died) are re-parented to us, so we can still stop them."""
    _LIBC.prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)


def tools_first_path(environ: Mapping[str, str]) -> str:
    """PATH with this interpreter's bin directory first: DeepSpeed's JIT builds run `ninja`, and a different
    ninja (or compiler) than the one that built the shared extensions rebuilds them."""
    return os.pathsep.join(dict.fromkeys([str(Path(sys.executable).parent),
                                          *environ.get("PATH", "").split(os.pathsep)]))


def python_path(environ: Mapping[str, str]) -> str:
    """PYTHONPATH with this checkout's package first: children run `python -m zerosweep` from it."""
    parts = [str(SCRIPTS_DIR), *[part for part in environ.get("PYTHONPATH", "").split(os.pathsep) if part]]
    return os.pathsep.join(dict.fromkeys(parts))


def start_child(command: list[str], *, stdout: Any = subprocess.DEVNULL, env: Mapping[str, str] | None = None,
                death_signal: int = signal.SIGTERM) -> subprocess.Popen[bytes]:
    """A child in its own session (a terminal's Ctrl-C reaches only us, we decide the order of shutdown)."""
    # Every child is started before the caller starts any thread, which is what makes preexec_fn safe here.
    return subprocess.Popen(command, stdout=stdout, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                            env=dict(env) if env is not None else None, start_new_session=True,
                            preexec_fn=parent_death_signal(death_signal))  # noqa: PLW1509


def stop_child(process: subprocess.Popen[bytes], sig: int = signal.SIGTERM, timeout: float = STOP_TIMEOUT_S) -> int:
    if process.poll() is None:
        try:
            process.send_signal(sig)
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    return int(process.returncode)


class Shutdown:
    """The first SIGTERM/SIGINT/SIGHUP wins; it is passed on to whatever is running right now."""

    def __init__(self) -> None:
        self.signum: int | None = None
        self.requested_at: float | None = None
        self.targets: list[Callable[[], None]] = []

    def install(self) -> None:
        for sig in HANDLED_SIGNALS:
            signal.signal(sig, self._handle)

    def _handle(self, signum: int, frame: Any) -> None:
        if self.signum is None:
            self.signum = signum
            self.requested_at = time.monotonic()
            print(f"[zerosweep] {signal.Signals(signum).name} received: stopping the run", file=sys.stderr,
                  flush=True)
        for terminate in list(self.targets):
            terminate()

    @property
    def requested(self) -> bool:
        return self.signum is not None

    def overdue(self) -> bool:
        return self.requested_at is not None and time.monotonic() - self.requested_at > TERMINATE_GRACE_S


def signal_group(pid: int, sig: int) -> None:
    try:
        os.killpg(pid, sig)  # children are session (and group) leaders: pgid == pid
    except (ProcessLookupError, PermissionError):
        pass


def signal_process(process: subprocess.Popen[bytes], sig: int) -> None:
    if process.poll() is None:
        try:
            process.send_signal(sig)
        except ProcessLookupError:
            pass


def exit_code_of(returncode: int) -> int:
    """A child killed by signal N reads as 128+N, as a shell reports it."""
    return 128 - returncode if returncode < 0 else returncode


def tee_lines(stream: IO[bytes], log: IO[bytes], prefix: bytes) -> None:
    for line in iter(stream.readline, b""):
        log.write(line)
        log.flush()
        try:
            sys.stdout.buffer.write(prefix + line)
            sys.stdout.buffer.flush()
        except (OSError, ValueError):
            pass  # our stdout may be gone (closed terminal); the log file is what counts


class DescendantTracker:
    """Remembers every process below a root, so none survives it (ranks live in sessions of their own)."""

    def __init__(self, exclude: Iterable[int] = ()) -> None:
        self.known: dict[int, psutil.Process] = {}
        self.exclude = set(exclude)
        self._last_scan = 0.0

    def scan(self, root_pid: int, force: bool = False) -> None:
        if not force and time.monotonic() - self._last_scan < DESCENDANT_SCAN_S:
            return
        self._last_scan = time.monotonic()
        for root in (root_pid, os.getpid()):
            try:
                for child in psutil.Process(root).children(recursive=True):
                    if child.pid not in self.exclude:
                        self.known.setdefault(child.pid, child)
            except psutil.Error:
                continue

    def kill_survivors(self) -> list[int]:
        killed = []
        for process in self.known.values():
            try:
                if process.is_running() and process.status() != psutil.STATUS_ZOMBIE:
                    process.kill()
                    killed.append(process.pid)
            except psutil.Error:
                continue
        for pid in killed:  # reap what became our child (we are a subreaper)
            try:
                os.waitpid(pid, 0)
            except ChildProcessError:
                pass
        return killed
