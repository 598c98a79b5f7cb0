"""`parse-memory`: one run's monitor logs and records -> `summary.json`, the only file tables read.

Statistics follow the workshop's analyze_memory.py so the numbers match what it prints for the same logs:
per GPU index per nvidia-smi file, peak = max, average = arithmetic mean, modes = every most frequent value
in ascending order (pandas' `Series.mode`); CPU memory is psrecord's "Real (MB)" column with the same three.
They are computed with numpy (the same reductions; numpy imports in a quarter of pandas' time, paid by every
Snakemake job).

Logs are checked row by row: an empty, truncated or malformed log raises `LogError` naming the file and the
line, never a silent zero.
"""

from __future__ import annotations

import argparse
import json
import math
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..jsonio import write_json
from .throughput import summarise_throughput

if TYPE_CHECKING:
    import numpy as np

SCHEMA_VERSION = 1
STATUSES = ("ok", "oom")
NVIDIA_SMI_TIME_FORMAT = "%Y/%m/%d %H:%M:%S.%f"
# Checked by shape only: strptime on every row was a fifth of the parse time; the timeline converts.
_NVIDIA_SMI_TIME = re.compile(r"\d{4}/\d{2}/\d{2} \d{2}:\d{2}:\d{2}\.\d{3}")

# Our metric name -> the key the training side writes in metrics.json. A rename there is one line here.
METRIC_KEYS: dict[str, str] = {
    "train_loss": "train_loss",
    "eval_loss": "eval_loss",  # final evaluation
    "eval_losses": "eval_losses",  # per evaluation: [{"epoch": 1.0, "eval_loss": 1.29}, ...]
    "train_samples_per_second": "train_samples_per_second",
    "eval_samples_per_second": "eval_samples_per_second",
    "steps_per_epoch": "steps_per_epoch",
    "train_runtime": "train_runtime",
    "steady_samples_per_second": "steady_samples_per_second",
    "steady_tokens_per_second": "steady_tokens_per_second",
    "tflops_per_gpu": "tflops_per_gpu",
    "mfu": "mfu",
    "world_size": "world_size",
}
# Where per-rank torch.cuda peaks may also be listed in metrics.json.
TORCH_MEMORY_KEY = "torch_memory"


class LogError(ValueError):
    """A record that cannot be trusted; the message starts with `file:line:` like a compiler's."""

    def __init__(self, path: Path | str, line: int | None, problem: str) -> None:
        where = f"{path}:{line}" if line is not None else str(path)
        super().__init__(f"{where}: {problem}")
        self.path = str(path)
        self.line = line


# --- log formats --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Column:
    name: str
    kind: str  # "int", "float", "time" (nvidia-smi timestamp) or "text"


@dataclass(frozen=True)
class LogFormat:
    """One monitor's text format: how to recognise its header and split and type its rows."""

    description: str
    header_hint: str
    columns: tuple[Column, ...]
    separator: str | None  # None: runs of whitespace (psrecord's plain log)
    header_ok: Callable[[list[str]], bool]
    comment: str | None = None


def _norm(fields: Iterable[str]) -> list[str]:
    return [field.strip().lower() for field in fields]


NVIDIA_SMI = LogFormat(
    description="nvidia-smi --query-gpu=timestamp,index,name,memory.used,memory.total --format=csv,nounits",
    header_hint="timestamp, index, name, memory.used [MiB], memory.total [MiB]",
    columns=(
        Column("timestamp", "time"),
        Column("index", "int"),
        Column("name", "text"),
        Column("memory.used", "int"),
        Column("memory.total", "int"),
    ),
    separator=",",
    header_ok=lambda f: _norm(f) == ["timestamp", "index", "name", "memory.used [mib]", "memory.total [mib]"],
)
NVML = LogFormat(
    description="NVML sampler",
    header_hint="timestamp_s,index,memory_used_mib,memory_total_mib",
    columns=(
        Column("timestamp_s", "float"),
        Column("index", "int"),
        Column("memory_used_mib", "float"),
        Column("memory_total_mib", "float"),
    ),
    separator=",",
    header_ok=lambda f: _norm(f) == ["timestamp_s", "index", "memory_used_mib", "memory_total_mib"],
)
_PSRECORD_PLAIN = ("Elapsed time", "CPU (%)", "Real (MB)", "Virtual (MB)")
_PSRECORD_IO = ("Read count", "Write count", "Read bytes", "Write bytes")


def _psrecord_plain(io: bool) -> LogFormat:
    names = _PSRECORD_PLAIN + (_PSRECORD_IO if io else ())

    def header_ok(fields: list[str]) -> bool:
        # The header is one '#' line with centred multi-word titles: compare it squeezed.
        text = " ".join(" ".join(fields).split())
        return text == "# " + " ".join(names)

    return LogFormat(
        description="psrecord --log (plain)",
        header_hint="# Elapsed time   CPU (%)     Real (MB)   Virtual (MB)",
        columns=tuple(Column(name, "float") for name in names),
        separator=None,
        header_ok=header_ok,
        comment="#",
    )


def _psrecord_csv(io: bool) -> LogFormat:
    names: tuple[str, ...] = ("elapsed_time", "nproc", "cpu", "mem_real", "mem_virtual")
    names += ("read_count", "write_count", "read_bytes", "write_bytes") if io else ()
    return LogFormat(
        description="psrecord --log-format csv",
        header_hint=",".join(names),
        columns=tuple(Column(name, "float") for name in names),
        separator=",",
        header_ok=lambda f: _norm(f) == list(names),
    )


def smi_time(text: str) -> datetime:
    """An nvidia-smi timestamp (local time of the node) as a datetime."""
    return datetime.strptime(text, NVIDIA_SMI_TIME_FORMAT)


def _split(line: str, fmt: LogFormat) -> list[str]:
    return line.split(fmt.separator) if fmt.separator else line.split()


def _convert(text: str, column: Column) -> Any:
    value = text.strip()
    if column.kind == "text":
        return value
    if column.kind == "time":
        if not _NVIDIA_SMI_TIME.fullmatch(value):
            raise ValueError(value)
        return value
    if column.kind == "int":
        number: float = int(value)
    else:
        number = float(value)
        if not math.isfinite(number):
            raise ValueError(value)
    if number < 0 and column.name not in ("timestamp_s",):
        raise ValueError(value)
    return number


def read_log(path: Path, fmt: LogFormat) -> tuple[list[str], list[tuple[int, list[Any]]]]:
    """Every data row of a log as (line number, typed values); raises LogError at the first bad line."""
    try:
        text = path.read_text(encoding="utf-8", errors="strict")
    except UnicodeDecodeError as error:
        raise LogError(path, None, f"not a text log ({error.reason})") from None
    lines = text.splitlines()
    if not lines or not text.strip():
        raise LogError(path, 1, f"empty log: expected the {fmt.description} header '{fmt.header_hint}'")
    header = _split(lines[0], fmt)
    if not fmt.header_ok(header):
        raise LogError(
            path,
            1,
            f"missing or unexpected header: expected '{fmt.header_hint}' ({fmt.description}), found {lines[0]!r}",
        )
    width = len(fmt.columns)
    rows: list[tuple[int, list[Any]]] = []
    for number, line in enumerate(lines[1:], start=2):
        if not line.strip() or (fmt.comment and line.lstrip().startswith(fmt.comment)):
            continue
        fields = _split(line, fmt)
        if len(fields) != width:
            hint = " (truncated row?)" if len(fields) < width else ""
            raise LogError(path, number, f"expected {width} fields, found {len(fields)}{hint}: {line!r}")
        values = []
        for field, column in zip(fields, fmt.columns):
            try:
                values.append(_convert(field, column))
            except ValueError:
                expected = {"int": "a non-negative integer", "float": "a non-negative number"}.get(
                    column.kind, "a timestamp like '2026/11/24 09:12:01.123'"
                )
                raise LogError(path, number, f"{column.name} is not {expected}: {field.strip()!r}") from None
        rows.append((number, values))
    if not rows:
        raise LogError(
            path, len(lines) + 1, "no samples after the header (the monitor stopped before its first sample?)"
        )
    return header, rows


def read_numeric_log(path: Path, fmt: LogFormat) -> np.ndarray:
    """All-numeric log (NVML) as a float array: numpy's C reader first, the line checker to explain a failure."""
    import numpy as np

    try:
        with open(path, encoding="utf-8") as handle:
            first = handle.readline()
        if fmt.header_ok(_split(first.rstrip("\n"), fmt)):
            with open(path, encoding="utf-8") as handle:
                data = np.loadtxt(handle, delimiter=fmt.separator, skiprows=1, ndmin=2, dtype=np.float64, comments=None)
            if (
                data.shape[0] > 0
                and data.shape[1] == len(fmt.columns)
                and np.isfinite(data).all()
                and (data[:, 1:] >= 0).all()
                and (data[:, 1] == np.round(data[:, 1])).all()
            ):
                return data
    except (ValueError, UnicodeDecodeError):
        pass
    # Slow path: find and name the offending line; if it finds nothing the fast reader was too strict.
    _header, rows = read_log(path, fmt)
    return np.array([values for _line, values in rows], dtype=np.float64, ndmin=2)


def psrecord_format(path: Path) -> tuple[LogFormat, int]:
    """The psrecord format of a log (plain unless .csv, optional I/O columns) and its Real-memory column."""
    with open(path, encoding="utf-8", errors="replace") as handle:
        first = handle.readline()
    io = "read" in first.lower()
    if path.suffix == ".csv":
        return _psrecord_csv(io), 3  # elapsed_time,nproc,cpu,mem_real,...
    return _psrecord_plain(io), 2  # the workshop reads the third whitespace column


# --- statistics ---------------------------------------------------------------------------------


def memory_stats(values: Sequence[float] | np.ndarray) -> dict[str, Any]:
    """peak, average and all modes with pandas' semantics: modes are every value of the top count, ascending."""
    import numpy as np

    array = np.asarray(values)
    uniques, counts = np.unique(array, return_counts=True)
    modes = uniques[counts == counts.max()]
    return {
        "peak": array.max().item(),
        "average": float(array.mean()),
        "modes": [mode.item() for mode in modes],
    }


def mode_text(modes: Sequence[float]) -> str:
    """The workshop's rendering of the modes: whole numbers joined by ', '."""
    return ", ".join(f"{mode:.0f}" for mode in modes)


def workshop_gpu_line(stem: str, index: int, stats: dict[str, Any]) -> str:
    return (
        f"[{stem} - GPU {index}] Peak = {stats['peak']:.0f} MiB, Avg = {stats['average']:.2f} MiB, "
        f"Mode = {mode_text(stats['modes'])} MiB"
    )


def workshop_cpu_lines(stats: dict[str, Any]) -> list[str]:
    return [
        f"   Peak =    {stats['peak']:.0f} MB",
        f"   Average = {stats['average']:.2f} MB",
        f"   Mode =    {mode_text(stats['modes'])} MB",
    ]


def _mean(values: Iterable[float]) -> float:
    items = list(values)
    return math.fsum(items) / len(items)


# --- per-source summaries -----------------------------------------------------------------------

GPU_LOG = re.compile(r"gpu_memory_log(?:_(?P<host>.+))?\.csv")
NVML_LOG = re.compile(r"nvml(?:_(?P<host>.+))?\.csv")
CPU_LOG = re.compile(r"cpu_memory_log(?:_(?P<host>.+))?\.(?P<ext>txt|csv)")
TORCH_LOG = re.compile(r"torch_memory_rank(?P<rank>\d+)\.json")


def matching_logs(monitor: Path, pattern: re.Pattern[str]) -> list[tuple[Path, re.Match[str]]]:
    if not monitor.is_dir():
        return []
    found = []
    for path in sorted(monitor.iterdir()):
        match = pattern.fullmatch(path.name)
        if match and path.is_file():
            found.append((path, match))
    return found


def host_of(match: re.Match[str]) -> str:
    return match.group("host") or "localhost"


def summarise_gpu(monitor: Path) -> dict[str, Any] | None:
    """nvidia-smi logs: per GPU (host, index), per node (file) and for the run."""
    files = matching_logs(monitor, GPU_LOG)
    if not files:
        return None
    gpus: list[dict[str, Any]] = []
    nodes: list[dict[str, Any]] = []
    pooled: list[int] = []
    for path, match in files:
        _header, rows = read_log(path, NVIDIA_SMI)
        by_index: dict[int, list[list[Any]]] = {}
        for _line, values in rows:
            by_index.setdefault(values[1], []).append(values)
        node_gpus = []
        for index in sorted(by_index):
            samples = by_index[index]
            used = [sample[3] for sample in samples]
            stats = memory_stats(used)
            node_gpus.append(
                {
                    "host": host_of(match),
                    "index": index,
                    "name": samples[0][2],
                    "file": path.name,
                    "samples": len(used),
                    "total_mib": samples[0][4],
                    "peak_mib": stats["peak"],
                    "average_mib": stats["average"],
                    "modes_mib": stats["modes"],
                    "mode_text": mode_text(stats["modes"]),
                    "workshop_line": workshop_gpu_line(path.stem, index, stats),
                }
            )
            pooled.extend(used)
        gpus.extend(node_gpus)
        nodes.append(
            {
                "host": host_of(match),
                "file": path.name,
                "gpus": len(node_gpus),
                "samples": sum(gpu["samples"] for gpu in node_gpus),
                "peak_mib": max(gpu["peak_mib"] for gpu in node_gpus),
                "average_mib": _mean(gpu["average_mib"] for gpu in node_gpus),
            }
        )
    run_stats = memory_stats(pooled)
    return {
        "gpus": gpus,
        "nodes": nodes,
        # Run level: the highest GPU's peak; the mean of the per-GPU averages (each GPU weighs the same,
        # whatever its sample count); the modes of all GPUs' samples pooled.
        "peak_mib": max(gpu["peak_mib"] for gpu in gpus),
        "average_mib": _mean(gpu["average_mib"] for gpu in gpus),
        "modes_mib": run_stats["modes"],
        "mode_text": mode_text(run_stats["modes"]),
    }


def summarise_nvml(monitor: Path) -> dict[str, Any] | None:
    """Fast NVML samples: the exact peak the 5 s nvidia-smi log can miss."""
    import numpy as np

    files = matching_logs(monitor, NVML_LOG)
    if not files:
        return None
    gpus: list[dict[str, Any]] = []
    for path, match in files:
        data = read_numeric_log(path, NVML)
        indices = data[:, 1].astype(np.int64)
        for index in np.unique(indices):
            rows = data[indices == index]
            steps = np.diff(rows[:, 0])
            gpus.append(
                {
                    "host": host_of(match),
                    "index": int(index),
                    "file": path.name,
                    "samples": int(rows.shape[0]),
                    "interval_ms": float(np.median(steps) * 1000.0) if steps.size else None,
                    "peak_mib": float(rows[:, 2].max()),
                    "average_mib": float(rows[:, 2].mean()),
                }
            )
    return {"gpus": gpus, "peak_mib": max(gpu["peak_mib"] for gpu in gpus)}


def _torch_entry(entry: dict[str, Any], source: str) -> dict[str, Any]:
    """One rank's torch.cuda peaks; accepts MiB keys or torch's raw byte counts."""

    def mib(name: str) -> float | None:
        if entry.get(f"{name}_mib") is not None:
            return float(entry[f"{name}_mib"])
        for raw in (f"{name}_bytes", name):  # torch.cuda.max_memory_* return bytes
            if entry.get(raw) is not None:
                return float(entry[raw]) / 2**20
        return None

    if "rank" not in entry:
        raise LogError(source, None, f"torch memory record without 'rank': {entry}")
    return {
        "rank": int(entry["rank"]),
        "host": entry.get("node_tag") or entry.get("host"),
        "max_allocated_mib": mib("max_memory_allocated"),
        "max_reserved_mib": mib("max_memory_reserved"),
        "max_rss_mib": None if entry.get("max_rss_mib") is None else float(entry["max_rss_mib"]),
    }


def summarise_torch(monitor: Path, metrics: dict[str, Any], metrics_path: Path) -> dict[str, Any] | None:
    ranks: dict[int, dict[str, Any]] = {}
    for entry in metrics.get(TORCH_MEMORY_KEY) or []:
        record = _torch_entry(entry, str(metrics_path))
        ranks[record["rank"]] = record
    for path, _match in matching_logs(monitor, TORCH_LOG):
        record = _torch_entry(_load_json(path), str(path))
        ranks[record["rank"]] = record  # the per-rank file is written last: it wins
    if not ranks:
        return None
    ordered = [ranks[rank] for rank in sorted(ranks)]

    def top(key: str) -> float | None:
        values = [record[key] for record in ordered if record[key] is not None]
        return max(values) if values else None

    return {
        "ranks": ordered,
        "max_allocated_mib": top("max_allocated_mib"),
        "max_reserved_mib": top("max_reserved_mib"),
        "max_rss_mib": top("max_rss_mib"),
    }


def summarise_cpu(monitor: Path, warnings: list[str]) -> dict[str, Any] | None:
    """psrecord logs, one per node; the plain form (the workshop's) wins over a CSV of the same host."""
    chosen: dict[str, Path] = {}
    for path, match in matching_logs(monitor, CPU_LOG):
        host = host_of(match)
        if host in chosen:
            keep, drop = (chosen[host], path) if chosen[host].suffix == ".txt" else (path, chosen[host])
            warnings.append(f"{drop.name} ignored: {keep.name} logs the same host")
            chosen[host] = keep
        else:
            chosen[host] = path
    if not chosen:
        return None
    nodes: list[dict[str, Any]] = []
    pooled: list[float] = []
    for host in sorted(chosen):
        path = chosen[host]
        fmt, real_column = psrecord_format(path)
        _header, rows = read_log(path, fmt)
        real = [values[real_column] for _line, values in rows]
        stats = memory_stats(real)
        pooled.extend(real)
        nodes.append(
            {
                "host": host,
                "file": path.name,
                "format": "csv" if path.suffix == ".csv" else "plain",
                "samples": len(real),
                "peak_mb": stats["peak"],
                "average_mb": stats["average"],
                "modes_mb": stats["modes"],
                "mode_text": mode_text(stats["modes"]),
                "workshop_lines": workshop_cpu_lines(stats),
            }
        )
    run_stats = memory_stats(pooled)
    return {
        "nodes": nodes,
        # Run level: the fullest node's peak (what must fit in one node's RAM); mean of the node averages.
        "peak_mb": max(node["peak_mb"] for node in nodes),
        "average_mb": _mean(node["average_mb"] for node in nodes),
        "modes_mb": run_stats["modes"],
        "mode_text": mode_text(run_stats["modes"]),
    }


# --- the run ------------------------------------------------------------------------------------


def _load_json(path: Path) -> dict[str, Any]:
    try:
        with open(path, encoding="utf-8") as handle:
            data = json.load(handle)
    except FileNotFoundError:
        raise LogError(path, None, "missing (the training job writes it)") from None
    except json.JSONDecodeError as error:
        raise LogError(path, error.lineno, f"not valid JSON: {error.msg}") from None
    if not isinstance(data, dict):
        raise LogError(path, 1, "expected a JSON object")
    return data


def metric(metrics: dict[str, Any], name: str) -> Any:
    """A metric by our name, through METRIC_KEYS; None when the training side did not record it."""
    return metrics.get(METRIC_KEYS[name])


def extract_metrics(metrics: dict[str, Any], status: str, warnings: list[str]) -> dict[str, Any]:
    if status != "ok":
        return {name: None for name in METRIC_KEYS}
    values = {name: metric(metrics, name) for name in METRIC_KEYS}
    missing = [METRIC_KEYS[name] for name, value in values.items() if value is None]
    if missing:
        warnings.append(f"metrics.json lacks {', '.join(missing)}: shown empty")
    losses = values["eval_losses"]
    if losses is not None:
        values["eval_losses"] = [
            {
                "epoch": None if item.get("epoch") is None else float(item["epoch"]),
                "eval_loss": float(item["eval_loss"]),
            }
            for item in losses
        ]
        if values["eval_loss"] is None and losses:
            values["eval_loss"] = values["eval_losses"][-1]["eval_loss"]
    return values


def _setup(spec: dict[str, Any]) -> dict[str, Any]:
    data, training = spec.get("data", {}), spec.get("training", {})
    return {
        "device": spec.get("runtime", {}).get("device"),
        "model": spec.get("model", {}).get("name"),
        "samples_per_gpu": data.get("samples_per_gpu"),
        "eval_samples": data.get("eval_samples"),
        "max_length": data.get("max_length"),
        "epochs": training.get("epochs"),
        "per_device_batch_size": training.get("per_device_batch_size"),
        "gradient_accumulation_steps": training.get("gradient_accumulation_steps"),
        "precision": training.get("precision"),
    }


def _label(point: dict[str, Any]) -> str:
    from ..plan.matrix import MatrixPoint

    fields = {key: point[key] for key in ("deepspeed", "zero_stage", "offload", "pin_memory", "gpus_per_node", "nodes")}
    return MatrixPoint(**fields).label


def summarise_run(run_dir: Path) -> dict[str, Any]:
    """Everything the tables need about one run, from its records and monitor logs."""
    spec = _load_json(run_dir / "run_spec.json")
    metrics_path = run_dir / "metrics.json"
    metrics = _load_json(metrics_path)
    status = metrics.get("status")
    if status not in STATUSES:
        raise LogError(metrics_path, None, f"status must be one of {list(STATUSES)}, found {status!r}")
    monitor = run_dir / "monitor"
    warnings: list[str] = []
    point = spec["point"]
    gpu = summarise_gpu(monitor)
    cpu = summarise_cpu(monitor, warnings)
    device = spec.get("runtime", {}).get("device")
    nvml = summarise_nvml(monitor)
    # A missing log is the launcher's recorded decision (monitor unavailable): empty cells and a warning in
    # the table notes. A log that exists but is broken raised LogError above.
    if status == "ok" and device == "cuda":
        if gpu is None:
            warnings.append("no nvidia-smi log (gpu_memory_log_<host>.csv): GPU memory left empty")
        if nvml is None:
            warnings.append("no NVML log (nvml_<host>.csv): exact peak left empty")
    if status == "ok" and cpu is None:
        warnings.append("no psrecord log (cpu_memory_log_<host>.txt): CPU memory left empty")
    if gpu is not None:
        seen = {(g["host"], g["index"]) for g in gpu["gpus"]}
        if len(gpu["nodes"]) != point["nodes"] or any(n["gpus"] != point["gpus_per_node"] for n in gpu["nodes"]):
            warnings.append(
                f"nvidia-smi logs show {len(seen)} GPUs on {len(gpu['nodes'])} nodes; "
                f"the run asked for {point['gpus_per_node']} per node on {point['nodes']}"
            )
    return {
        "schema_version": SCHEMA_VERSION,
        "run_id": spec["run_id"],
        "label": _label(point),
        "status": status,
        "point": point,
        "setup": _setup(spec),
        "metrics": extract_metrics(metrics, status, warnings),
        "gpu": gpu,
        "nvml": nvml,
        "torch": summarise_torch(monitor, metrics, metrics_path),
        "cpu": cpu,
        # steady throughput with its interval, from steps.csv (report/throughput.py); None without one
        "throughput": summarise_throughput(run_dir, metrics, int(spec.get("training", {}).get("warmup_steps", 0)))
        if status == "ok" else None,
        "warnings": warnings,
    }


def workshop_report(summary: dict[str, Any]) -> str:
    """The memory part of the run as the workshop's script prints it, for the job log."""
    lines = []
    if summary["gpu"]:
        lines += ["", "GPU Memory Usage"] + [gpu["workshop_line"] for gpu in summary["gpu"]["gpus"]]
    for node in (summary["cpu"] or {}).get("nodes", []):
        lines += ["", f"CPU Memory Usage ({node['file']})"] + node["workshop_lines"]
    return "\n".join(lines)


def add_arguments(parser: argparse.ArgumentParser, command: str) -> None:
    parser.add_argument("--run-dir", type=Path, required=True, help="results/runs/<run>")
    parser.add_argument("--out", type=Path, required=True, help="summary.json to write")


def run(args: argparse.Namespace) -> int:
    summary = summarise_run(args.run_dir)
    # No indentation: 5x faster with json's C encoder; `python -m json.tool` pretty-prints.
    write_json(args.out, summary, indent=None)
    print(f"{summary['run_id']}: status {summary['status']}")
    print(workshop_report(summary))
    for warning in summary["warnings"]:
        print(f"warning: {warning}")
    return 0
