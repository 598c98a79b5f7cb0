"""Per-node memory monitors, in the formats people already read.

- `gpu_memory_log_<tag>.csv`: nvidia-smi exactly as the workshop ran it (coarse, every gpu_interval_s).
- `nvml_<tag>.csv`: this module's NVML sampler (`zerosweep nvml-sampler`), every nvml_interval_ms, which
  catches the short peaks nvidia-smi's 5 s interval misses; with each memory sample, the GPU's total-energy
  counter (mJ since the driver loaded) and its utilisation (% of NVML's last sample period in which a kernel
  ran), appended as the last columns so that the memory columns read as before. A GPU or driver without one
  of them leaves its cells empty and says why once (stderr and `nvml_<tag>.missing.json`).
- `gpu_clocks_<tag>.csv`: the same sampler, every CLOCK_EVERY-th sample: SM clock, power, temperature and
  NVML's clock event (throttle) reasons, so a run's throughput drift can be tied to the GPU's clock or not.
- `cpu_memory_log_<tag>.txt`: psrecord on torchrun with its children (host RAM, CPU offload shows here).
- `rapl_<tag>.csv`: the host's CPU package energy counters (RAPL, /sys/class/powercap), every RAPL_INTERVAL_S
  from torchrun's start, where the host lets this user read them.
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

from ..jsonio import write_json
from ..units import MIB
from .processes import python_path, start_child, stop_child

NVML_MEMORY_FIELDS: tuple[str, ...] = ("timestamp_s", "index", "memory_used_mib", "memory_total_mib")
# Appended after the memory columns (older logs end before them): the energy counter and the utilisation
NVML_ACTIVITY_FIELDS: tuple[str, ...] = ("energy_mj", "gpu_utilization_pct")
NVML_HEADER = ",".join(NVML_MEMORY_FIELDS + NVML_ACTIVITY_FIELDS)
NVML_MISSING_SUFFIX = ".missing.json"  # nvml_<tag>.missing.json: why a GPU's activity cells are empty
NVIDIA_SMI_QUERY = "timestamp,index,name,memory.used,memory.total"
CLOCK_FIELDS: tuple[str, ...] = ("timestamp_s", "index", "sm_clock_mhz", "power_w", "temperature_c",
                                 "clock_event_reasons")
CLOCKS_HEADER = ",".join(CLOCK_FIELDS)
CLOCK_EVERY = 10  # clocks move slowly and cost 4 NVML calls: every 10th memory sample (500 ms at 50 ms)
RAPL_ROOT = Path("/sys/class/powercap")
RAPL_FIELDS: tuple[str, ...] = ("timestamp_s", "zone", "name", "energy_uj", "max_energy_range_uj")
RAPL_HEADER = ",".join(RAPL_FIELDS)
# A package counter wraps after max_energy_range_uj (about 262 kJ: 12 min at 350 W); a sample a second never
# misses a wrap and places a window's ends within a second.
RAPL_INTERVAL_S = 1.0

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


def rapl_packages(root: Path = RAPL_ROOT) -> tuple[list[Path], str]:
    """The host's top-level RAPL package zones (intel-rapl:<N> named package-<N>; AMD's kernel driver uses the
    same names) whose energy counter this user can read, or why there are none."""
    zones = sorted(path for path in root.glob("intel-rapl:*") if path.name.count(":") == 1)
    packages = [zone for zone in zones if _read_text(zone / "name").startswith("package")]
    if not packages:
        return [], f"no RAPL package zone under {root} (intel-rapl:<N> named package-<N>)"
    unreadable = [zone for zone in packages if not _readable_counter(zone)]
    if unreadable:
        return [], (f"{unreadable[0] / 'energy_uj'} is not readable by this user (RAPL counters are often "
                    "root-only)")
    return packages, ""


def _read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="ascii").strip()
    except OSError:
        return ""


def _readable_counter(zone: Path) -> bool:
    return all(_read_text(zone / name).isdigit() for name in ("energy_uj", "max_energy_range_uj"))


class RaplSampler:
    """Reads the packages' RAPL counters every RAPL_INTERVAL_S into a CSV (RAPL_HEADER), from a thread: started
    after the node's last child process (a thread must not run while preexec_fn forks), stopped by stop()."""

    def __init__(self, out: Path, packages: list[Path], interval_s: float = RAPL_INTERVAL_S) -> None:
        self.out, self.packages, self.interval_s = out, packages, interval_s
        self.names = {zone: _read_text(zone / "name") for zone in packages}
        self.ranges = {zone: _read_text(zone / "max_energy_range_uj") for zone in packages}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, name="rapl-sampler", daemon=True)
        self.error: str | None = None

    def start(self) -> None:
        self._thread.start()

    def _sample(self) -> None:
        try:
            with open(self.out, "w", encoding="utf-8") as handle:
                handle.write(RAPL_HEADER + "\n")
                while True:
                    stopping = self._stop.is_set()  # after stop(): one more sample, the window's end
                    now = time.time()
                    readings = [_read_text(zone / "energy_uj") for zone in self.packages]
                    if all(reading.isdigit() for reading in readings):  # a failed read: no sample, not a hole
                        handle.write("".join(f"{now:.3f},{zone.name},{self.names[zone]},{reading},{self.ranges[zone]}\n"
                                             for zone, reading in zip(self.packages, readings)))
                        handle.flush()
                    if stopping:
                        break
                    self._stop.wait(self.interval_s)
        except OSError as error:  # a full disk: the run goes on without CPU energy
            self.error = f"RAPL sampler stopped: {error}"

    def stop(self) -> None:
        """The thread takes one last sample and ends."""
        self._stop.set()
        self._thread.join(timeout=10)


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
        self.monitors = {name: Monitor(name) for name in ("nvidia_smi", "nvml", "psrecord", "rapl")}
        self._files = contextlib.ExitStack()  # the monitors' output files, closed by stop()
        self._rapl: RaplSampler | None = None

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

    def start_rapl(self) -> None:
        """The CPU packages' energy counters, from a thread: call it after the node's last child is started."""
        monitor = self.monitors["rapl"]
        packages, why = rapl_packages()
        if not packages:
            monitor.reason = why
            return
        monitor.file = f"monitor/rapl_{self.tag}.csv"
        self._rapl = RaplSampler(self.run_dir / monitor.file, packages)
        monitor.started_s = time.time()
        self._rapl.start()
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
        if self._rapl is not None:
            self._rapl.stop()
            rapl = self.monitors["rapl"]
            rapl.status, rapl.reason = ("failed", self._rapl.error) if self._rapl.error else ("ok", None)
        self._files.close()
        return {name: monitor.record() for name, monitor in self.monitors.items()}


# --- `zerosweep nvml-sampler` ---------------------------------------------------------------------


def _clock_line(pynvml: Any, reasons: Any, device: Any, now: float, index: int) -> str:
    sm_mhz = pynvml.nvmlDeviceGetClockInfo(device, pynvml.NVML_CLOCK_SM)
    power_w = pynvml.nvmlDeviceGetPowerUsage(device) / 1000.0
    temperature_c = pynvml.nvmlDeviceGetTemperature(device, pynvml.NVML_TEMPERATURE_GPU)
    return f"{now:.3f},{index},{sm_mhz},{power_w:.1f},{temperature_c},{reasons(device)}\n"


def missing_path(out: Path) -> Path:
    """Where the sampler says why a GPU's activity cells are empty: nvml_<tag>.missing.json beside the log."""
    return out.with_name(out.stem + NVML_MISSING_SUFFIX)


class ActivityCells:
    """The NVML_ACTIVITY_FIELDS cells of one GPU's sample: the total-energy counter (mJ since the driver loaded;
    Volta and newer) and utilisation.gpu (% of NVML's last sample period, 1/6 s to 1 s by product, in which a
    kernel ran). What a GPU or driver cannot give is an empty cell, its reason said once per GPU and field on
    stderr and in `missing_out` ({field: {index: reason}}); a field NVML calls not supported is not asked again."""

    def __init__(self, pynvml: Any, missing_out: Path) -> None:
        self.pynvml, self.missing_out = pynvml, missing_out
        self.reads: dict[str, Any] = {
            "energy_mj": pynvml.nvmlDeviceGetTotalEnergyConsumption,
            "gpu_utilization_pct": lambda device: pynvml.nvmlDeviceGetUtilizationRates(device).gpu,
        }
        assert tuple(self.reads) == NVML_ACTIVITY_FIELDS
        self.reasons: dict[str, dict[str, str]] = {}
        self.unsupported: set[tuple[str, int]] = set()
        missing_out.unlink(missing_ok=True)  # a standalone sampler rewriting an old log: no stale reasons

    def cells(self, device: Any, index: int) -> str:
        values = []
        for name, read in self.reads.items():
            if (name, index) in self.unsupported:
                values.append("")
                continue
            try:
                values.append(str(int(read(device))))
            except self.pynvml.NVMLError as error:
                values.append("")
                if getattr(error, "value", None) == self.pynvml.NVML_ERROR_NOT_SUPPORTED:
                    self.unsupported.add((name, index))
                self._note(name, index, f"NVML: {error}")
        return ",".join(values)

    def _note(self, name: str, index: int, reason: str) -> None:
        known = self.reasons.setdefault(name, {})
        if str(index) in known:
            return
        known[str(index)] = reason
        print(f"[zerosweep] nvml-sampler: GPU {index}: {name} left empty: {reason}", file=sys.stderr, flush=True)
        write_json(self.missing_out, self.reasons)


def sample_nvml(out: Path, interval_ms: int, duration_s: float | None, stop: threading.Event,
                uuids: Sequence[str] | None = None, clocks_out: Path | None = None) -> int:
    """Every `interval_ms`, memory used per GPU (the GPUs named by UUID, or all), with NVML's index, and the
    GPU's energy counter and utilisation (ActivityCells); with `clocks_out`, every CLOCK_EVERY-th sample also the
    GPUs' clocks (CLOCKS_HEADER)."""
    import pynvml

    pynvml.nvmlInit()
    try:
        if uuids:
            handles = [pynvml.nvmlDeviceGetHandleByUUID(uuid.encode()) for uuid in uuids]
        else:
            handles = [pynvml.nvmlDeviceGetHandleByIndex(i) for i in range(pynvml.nvmlDeviceGetCount())]
        indices = [pynvml.nvmlDeviceGetIndex(handle) for handle in handles]
        interval = interval_ms / 1000.0
        activity = ActivityCells(pynvml, missing_path(out))
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
                    lines.append(f"{now:.3f},{index},{info.used / MIB:.2f},{info.total / MIB:.2f},"
                                 f"{activity.cells(device, index)}\n")
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
    ok, why = nvml_available()  # run standalone, say why in one line (the node checks before it starts us)
    if not ok:
        raise SystemExit(f"nvml-sampler: {why}")
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    uuids = [uuid for uuid in (args.uuids or "").split(",") if uuid]
    return sample_nvml(args.out, args.interval_ms, args.duration_s, stop, uuids, args.clocks_out)
