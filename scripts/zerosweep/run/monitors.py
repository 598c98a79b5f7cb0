"""Per-node memory monitors, in the formats people already read.

- `gpu_memory_log_<tag>.csv`: nvidia-smi exactly as the workshop ran it (coarse, every gpu_interval_s).
- `nvml_<tag>.csv`: this module's NVML sampler (`zerosweep nvml-sampler`), every nvml_interval_ms, which
  catches the short peaks nvidia-smi's 5 s interval misses.
- `gpu_clocks_<tag>.csv`: the same sampler, every CLOCK_EVERY-th sample: SM clock, power, temperature and
  NVML's clock event (throttle) reasons, so a run's throughput drift can be tied to the GPU's clock or not.
- `cpu_memory_log_<tag>.txt`: psrecord on torchrun with its children (host RAM, CPU offload shows here).
Where nvidia-smi or NVML is missing the monitor is skipped and the reason recorded; no file is faked.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..units import MIB
from .processes import python_path, start_child, stop_child

NVML_HEADER = "timestamp_s,index,memory_used_mib,memory_total_mib"
NVIDIA_SMI_QUERY = "timestamp,index,name,memory.used,memory.total"
CLOCK_FIELDS: tuple[str, ...] = ("timestamp_s", "index", "sm_clock_mhz", "power_w", "temperature_c",
                                 "clock_event_reasons")
CLOCKS_HEADER = ",".join(CLOCK_FIELDS)
CLOCK_EVERY = 10  # clocks move slowly and cost 4 NVML calls: every 10th memory sample (500 ms at 50 ms)

# --- availability ---------------------------------------------------------------------------------


def nvidia_smi_available() -> tuple[bool, str]:
    executable = shutil.which("nvidia-smi")
    if executable is None:
        return False, "nvidia-smi not found on PATH"
    try:
        probe = subprocess.run([executable, "-L"], check=False, capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as error:
        return False, f"nvidia-smi -L failed: {error}"
    if probe.returncode != 0 or not probe.stdout.strip():
        return False, f"nvidia-smi -L exited {probe.returncode}: {(probe.stderr or probe.stdout).strip()[:200]}"
    return True, ""


def nvml_available() -> tuple[bool, str]:
    try:
        import pynvml
    except ImportError as error:
        return False, f"nvidia-ml-py missing: {error}"
    try:
        pynvml.nvmlInit()
        try:
            count = pynvml.nvmlDeviceGetCount()
        finally:
            pynvml.nvmlShutdown()
    except pynvml.NVMLError as error:
        return False, f"NVML unavailable: {error}"
    if count == 0:
        return False, "NVML sees no GPU"
    return True, ""


def psrecord_executable() -> str | None:
    beside_python = Path(sys.executable).parent / "psrecord"
    if beside_python.is_file():
        return str(beside_python)
    return shutil.which("psrecord")


# --- the node's monitors ------------------------------------------------------------------------------


@dataclass
class Monitor:
    name: str
    file: str | None = None  # relative to the run dir
    status: str = "skipped"  # running -> ok | failed; or skipped
    reason: str | None = None
    exit_code: int | None = None
    started_s: float | None = None  # unix time; psrecord's elapsed clock counts from (just after) it
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    def record(self) -> dict[str, Any]:
        return {"status": self.status, "file": self.file, "reason": self.reason, "exit_code": self.exit_code,
                "started_s": self.started_s}


class NodeMonitors:
    """Start GPU monitors before torchrun and psrecord on torchrun; stop all of them on every way out."""

    def __init__(self, run_dir: Path, tag: str, monitor_config: Mapping[str, Any], device: str,
                 gpu_uuids: Sequence[str] = ()) -> None:
        self.run_dir = run_dir
        # Only the GPUs this node's ranks use: the host's other GPUs belong to other runs (or nobody).
        self.gpu_uuids = list(gpu_uuids)
        self.monitor_dir = run_dir / "monitor"
        self.monitor_dir.mkdir(parents=True, exist_ok=True)
        self.tag = tag
        self.config = monitor_config
        self.device = device
        self.monitors = {name: Monitor(name) for name in ("nvidia_smi", "nvml", "psrecord")}
        self._files = contextlib.ExitStack()  # the monitors' output files, closed by stop()

    def _open(self, monitor: Monitor, filename: str) -> Any:
        monitor.file = f"monitor/{filename}"
        return self._files.enter_context(open(self.run_dir / monitor.file, "wb"))

    def start_gpu(self) -> None:
        smi, nvml = self.monitors["nvidia_smi"], self.monitors["nvml"]
        if self.device != "cuda":
            smi.reason = nvml.reason = f"runtime.device is {self.device}"
            return
        if not self.gpu_uuids:
            smi.reason = nvml.reason = "no GPU assigned to this node's ranks"
            return
        selected = ",".join(self.gpu_uuids)
        ok, why = nvidia_smi_available()
        if ok:
            command = ["nvidia-smi", f"--query-gpu={NVIDIA_SMI_QUERY}", "--format=csv,nounits",
                       "-i", selected, "-l", str(self.config["gpu_interval_s"])]
            smi.process = start_child(command, stdout=self._open(smi, f"gpu_memory_log_{self.tag}.csv"))
            smi.status = "running"
        else:
            smi.reason = why
        ok, why = nvml_available()
        if ok:
            out = self.run_dir / f"monitor/nvml_{self.tag}.csv"
            nvml.file = f"monitor/nvml_{self.tag}.csv"
            command = [sys.executable, "-m", "zerosweep", "nvml-sampler", "--out", str(out),
                       "--clocks-out", str(self.run_dir / f"monitor/gpu_clocks_{self.tag}.csv"),
                       "--interval-ms", str(self.config["nvml_interval_ms"]), "--uuids", selected]
            nvml.process = start_child(command, stdout=sys.stderr.fileno(),
                                       env={**os.environ, "PYTHONPATH": python_path(os.environ)})
            nvml.status = "running"
        else:
            nvml.reason = why

    def start_cpu(self, pid: int) -> None:
        monitor = self.monitors["psrecord"]
        executable = psrecord_executable()
        if executable is None:
            monitor.reason = "psrecord not installed"
            return
        monitor.file = f"monitor/cpu_memory_log_{self.tag}.txt"
        command = [executable, str(pid), "--include-children", "--interval", str(self.config["cpu_interval_s"]),
                   "--log", str(self.run_dir / monitor.file)]
        monitor.started_s = time.time()  # places its samples in the run's training window (report)
        monitor.process = start_child(command)  # its chatter ("Attaching to process") is not worth a log
        monitor.status = "running"

    def pids(self) -> set[int]:
        return {m.process.pid for m in self.monitors.values() if m.process is not None}

    def stop(self) -> dict[str, dict[str, Any]]:
        for monitor in self.monitors.values():
            if monitor.process is None:
                continue
            # psrecord closes its log cleanly on SIGINT (KeyboardInterrupt); the others on SIGTERM.
            sig = signal.SIGINT if monitor.name == "psrecord" else signal.SIGTERM
            already_done = monitor.process.poll() is not None
            code = stop_child(monitor.process, sig)
            monitor.exit_code = code
            # Stopped by us (or psrecord ending with torchrun) is the normal end of a monitor.
            monitor.status = "ok" if code == 0 or (not already_done and code in (-sig, 128 + sig)) else "failed"
            if monitor.status == "failed":
                monitor.reason = f"exited {code}"
        self._files.close()
        return {name: monitor.record() for name, monitor in self.monitors.items()}


# --- `zerosweep nvml-sampler` ---------------------------------------------------------------------


def _clock_line(pynvml: Any, reasons: Any, device: Any, now: float, index: int) -> str:
    sm_mhz = pynvml.nvmlDeviceGetClockInfo(device, pynvml.NVML_CLOCK_SM)
    power_w = pynvml.nvmlDeviceGetPowerUsage(device) / 1000.0
    temperature_c = pynvml.nvmlDeviceGetTemperature(device, pynvml.NVML_TEMPERATURE_GPU)
    return f"{now:.3f},{index},{sm_mhz},{power_w:.1f},{temperature_c},{reasons(device)}\n"


def sample_nvml(out: Path, interval_ms: int, duration_s: float | None, stop: threading.Event,
                uuids: Sequence[str] | None = None, clocks_out: Path | None = None) -> int:
    """Every `interval_ms`, memory used per GPU (the GPUs named by UUID, or all), with NVML's index; with
    `clocks_out`, every CLOCK_EVERY-th sample also the GPUs' clocks (CLOCKS_HEADER)."""
    import pynvml

    pynvml.nvmlInit()
    try:
        if uuids:
            handles = [pynvml.nvmlDeviceGetHandleByUUID(uuid.encode()) for uuid in uuids]
        else:
            handles = [pynvml.nvmlDeviceGetHandleByIndex(i) for i in range(pynvml.nvmlDeviceGetCount())]
        indices = [pynvml.nvmlDeviceGetIndex(handle) for handle in handles]
        interval = interval_ms / 1000.0
        started = time.monotonic()
        with contextlib.ExitStack() as files:
            handle = files.enter_context(open(out, "w", encoding="utf-8"))
            handle.write(NVML_HEADER + "\n")
            handle.flush()
            clocks = reasons = None
            if clocks_out is not None:
                # Renamed from "throttle reasons" in newer NVML; the bit mask is the same.
                reasons = getattr(pynvml, "nvmlDeviceGetCurrentClocksEventReasons", None) or \
                    pynvml.nvmlDeviceGetCurrentClocksThrottleReasons
                clocks = files.enter_context(open(clocks_out, "w", encoding="utf-8"))
                clocks.write(CLOCKS_HEADER + "\n")
            sample = 0
            while not stop.is_set():
                tick = time.monotonic()
                now = time.time()
                lines = []
                for index, device in zip(indices, handles):
                    # v2 "used" matches nvidia-smi's memory.used; v1 also counts memory the driver reserves
                    # (measured on an H100: +480 MiB idle, so every peak read 480 MiB high)
                    info = pynvml.nvmlDeviceGetMemoryInfo(device, version=pynvml.nvmlMemory_v2)
                    lines.append(f"{now:.3f},{index},{info.used / MIB:.2f},{info.total / MIB:.2f}\n")
                handle.write("".join(lines))
                handle.flush()  # a killed sampler still leaves every sample taken so far
                if clocks is not None and sample % CLOCK_EVERY == 0:
                    clocks.write("".join(_clock_line(pynvml, reasons, device, now, index)
                                         for index, device in zip(indices, handles)))
                    clocks.flush()
                sample += 1
                if duration_s is not None and tick - started >= duration_s:
                    break
                stop.wait(max(0.0, interval - (time.monotonic() - tick)))
    finally:
        pynvml.nvmlShutdown()
    return 0


def add_arguments(parser: argparse.ArgumentParser, command: str) -> None:
    parser.add_argument("--out", type=Path, required=True, help="CSV to write (" + NVML_HEADER + ")")
    parser.add_argument("--interval-ms", type=int, default=50, help="sampling interval, at most 100 ms")
    parser.add_argument("--duration-s", type=float, default=None, help="stop after this long (default: on SIGTERM)")
    parser.add_argument("--uuids", default=None, help="comma-separated GPU UUIDs to sample (default: every GPU)")
    parser.add_argument("--clocks-out", type=Path, default=None,
                        help="also write clocks, power, temperature and clock event reasons (" + CLOCKS_HEADER + ")")


def run(args: argparse.Namespace) -> int:
    if not 1 <= args.interval_ms <= 100:
        raise SystemExit("nvml-sampler: --interval-ms must be between 1 and 100")
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    uuids = [uuid for uuid in (args.uuids or "").split(",") if uuid]
    return sample_nvml(args.out, args.interval_ms, args.duration_s, stop, uuids, args.clocks_out)
