"""The monitors' log grammar: nvidia-smi's CSV, the NVML sampler's CSV and psrecord's plain and CSV logs.

Tolerant where monitors are known to fail, strict elsewhere. Skipped, each with a warning naming the file
and line: a value nvidia-smi could not read (`[N/A]`, `[Not Supported]`, any bracketed placeholder), a blank
line, a truncated last line (a monitor killed mid-write), an empty log or one with only its header (killed
before its first sample). Anything else that does not fit the format (no header, a wrong field count or an
unreadable value in the middle of the log) raises LogError with `file:line:`: a wrong file, never a silent
zero.
"""

from __future__ import annotations

import io
import math
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ...jsonio import RecordError
from ...run.monitors import NVML_ACTIVITY_FIELDS, NVML_HEADER, NVML_MEMORY_FIELDS, RAPL_FIELDS, RAPL_HEADER

if TYPE_CHECKING:
    import numpy as np

LogError = RecordError  # a log that cannot be trusted: the same `file:line: problem` error as a bad record
NVIDIA_SMI_TIME_FORMAT = "%Y/%m/%d %H:%M:%S.%f"
# Checked by shape only: strptime on every row was a fifth of the parse time; the timeline converts.
_NVIDIA_SMI_TIME = re.compile(r"\d{4}/\d{2}/\d{2} \d{2}:\d{2}:\d{2}\.\d{3}")
# nvidia-smi's "no value": [N/A], [Not Supported], [Unknown Error], [GPU is lost], ...
_PLACEHOLDER = re.compile(r"\[[A-Za-z][A-Za-z /]*\]")
SKIPPED_SHOWN = 3  # skipped lines named per log in a warning; the rest are counted


@dataclass(frozen=True)
class Column:
    name: str
    kind: str  # "int", "float", "time" (nvidia-smi timestamp), "text", or "optional" (a float or empty: NaN)


@dataclass(frozen=True)
class LogFormat:
    """One monitor's text format: how to recognise its header and split and type its rows."""

    description: str
    header_hint: str
    columns: tuple[Column, ...]
    separator: str | None  # None: runs of whitespace (psrecord's plain log)
    header_ok: Callable[[list[str]], bool]
    comment: str | None = None


@dataclass
class ParsedLog:
    """A log's valid rows as (line number, typed values), and what was skipped, as (line number, reason)."""

    path: Path
    rows: list[tuple[int, list[Any]]] = field(default_factory=list)
    skipped: list[tuple[int, str]] = field(default_factory=list)

    def warnings(self) -> list[str]:
        """One warning for the run's record, or none: the first skipped lines by number, then a count."""
        if not self.skipped:
            return []
        shown = "; ".join(f"{self.path.name}:{line}: {reason}" for line, reason in self.skipped[:SKIPPED_SHOWN])
        more = len(self.skipped) - SKIPPED_SHOWN
        tail = f" (and {more} more line{'s' * (more > 1)} of {self.path.name})" if more > 0 else ""
        left = f"{len(self.rows)} valid sample{'s' * (len(self.rows) != 1)} left" if self.rows else "no valid sample left"
        return [f"skipped {shown}{tail}; {left}"]


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
    header_hint=",".join(NVML_MEMORY_FIELDS),
    columns=(
        Column("timestamp_s", "float"),
        Column("index", "int"),
        Column("memory_used_mib", "float"),
        Column("memory_total_mib", "float"),
    ),
    separator=",",
    header_ok=lambda f: _norm(f) == list(NVML_MEMORY_FIELDS),
)
# The sampler's log since it also reads the energy counter and utilisation: the same memory columns, then those
# two, empty where the GPU or driver has no value (run/monitors.ActivityCells).
NVML_ACTIVITY = LogFormat(
    description="NVML sampler with energy and utilisation",
    header_hint=NVML_HEADER,
    columns=NVML.columns + tuple(Column(name, "optional") for name in NVML_ACTIVITY_FIELDS),
    separator=",",
    header_ok=lambda f: _norm(f) == list(NVML_MEMORY_FIELDS + NVML_ACTIVITY_FIELDS),
)
RAPL = LogFormat(
    description="RAPL sampler (run/monitors.RaplSampler)",
    header_hint=RAPL_HEADER,
    columns=(
        Column("timestamp_s", "float"),
        Column("zone", "text"),
        Column("name", "text"),
        Column("energy_uj", "int"),
        Column("max_energy_range_uj", "int"),
    ),
    separator=",",
    header_ok=lambda f: _norm(f) == list(RAPL_FIELDS),
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


def _nvml_format(path: Path) -> LogFormat:
    """The NVML sampler's format of a log: with the energy and utilisation columns, or the older one without
    (whose header check names what a log with neither header should start with)."""
    with open(path, encoding="utf-8", errors="replace") as handle:
        first = handle.readline()
    return NVML_ACTIVITY if NVML_ACTIVITY.header_ok(_split(first.rstrip("\n"), NVML_ACTIVITY)) else NVML


def read_nvml_log(path: Path) -> tuple[np.ndarray, ParsedLog | None, LogFormat]:
    """An NVML sampler's log in its own format (_nvml_format) as _read_numeric_log reads it, and that format: every
    reader of these logs comes through here, so none can expect the other header."""
    fmt = _nvml_format(path)
    data, log = _read_numeric_log(path, fmt)
    return data, log, fmt


def psrecord_format(path: Path) -> tuple[LogFormat, int]:
    """The psrecord format of a log (plain unless .csv, optional I/O columns) and its Real-memory column."""
    with open(path, encoding="utf-8", errors="replace") as handle:
        first = handle.readline()
    io = "read" in first.lower()
    if path.suffix == ".csv":
        return _psrecord_csv(io), 3  # elapsed_time,nproc,cpu,mem_real,...
    return _psrecord_plain(io), 2  # the workshop reads the third whitespace column


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
    if column.kind == "optional" and not value:
        return math.nan
    if column.kind == "int":
        number: float = int(value)
    else:
        number = float(value)
        if not math.isfinite(number):
            raise ValueError(value)
    if number < 0 and column.name not in ("timestamp_s",):
        raise ValueError(value)
    return number


def _expected(column: Column) -> str:
    return {"int": "a non-negative integer", "float": "a non-negative number",
            "optional": "a non-negative number or empty"}.get(
        column.kind, "a timestamp like '2026/11/24 09:12:01.123'"
    )


def read_log(path: Path, fmt: LogFormat) -> ParsedLog:
    """Every valid data row of a log, and the lines skipped (see the module's docstring for which)."""
    try:
        text = path.read_text(encoding="utf-8", errors="strict")
    except UnicodeDecodeError as error:
        raise LogError(path, None, f"not a text log ({error.reason})") from None
    log = ParsedLog(path)
    lines = text.splitlines()
    if not text.strip():
        log.skipped.append((1, f"empty log (no {fmt.description} header, no sample)"))
        return log
    if not fmt.header_ok(_split(lines[0], fmt)):
        raise LogError(
            path,
            1,
            f"missing or unexpected header: expected '{fmt.header_hint}' ({fmt.description}), found {lines[0]!r}",
        )
    last = max(number for number, line in enumerate(lines, start=1) if line.strip())
    unterminated = not text.endswith("\n")
    width = len(fmt.columns)
    for number, line in enumerate(lines[1:], start=2):
        if not line.strip():
            if number < last:  # blank lines after the last sample are the file's end, not a fault
                log.skipped.append((number, "blank line"))
            continue
        if fmt.comment and line.lstrip().startswith(fmt.comment):
            continue
        fields = _split(line, fmt)
        truncated = number == last and (len(fields) < width or unterminated)
        if len(fields) != width:
            if truncated:
                log.skipped.append((number, f"truncated last line ({len(fields)} of {width} fields): {line!r}"))
                continue
            hint = " (truncated row?)" if len(fields) < width else ""
            raise LogError(path, number, f"expected {width} fields, found {len(fields)}{hint}: {line!r}")
        values: list[Any] = []
        for text_value, column in zip(fields, fmt.columns):
            try:
                values.append(_convert(text_value, column))
            except ValueError:
                value = text_value.strip()
                if _PLACEHOLDER.fullmatch(value):
                    log.skipped.append((number, f"{column.name} is {value}"))
                elif truncated:
                    log.skipped.append((number, f"truncated last line: {line!r}"))
                else:
                    raise LogError(path, number, f"{column.name} is not {_expected(column)}: {value!r}") from None
                break
        else:
            log.rows.append((number, values))
    if not log.rows and not log.skipped:
        log.skipped.append((len(lines) + 1, "no samples after the header (the monitor stopped before its first?)"))
    return log


def _optional_cell(text: str | bytes) -> float:
    return float(text) if text.strip() else math.nan


def _read_numeric_log(path: Path, fmt: LogFormat) -> tuple[np.ndarray, ParsedLog | None]:
    """All-numeric log (NVML) as a float array (an empty optional cell: NaN): numpy's C reader first; the line
    reader when that fails, to skip what may be skipped (returned) or name the offending line."""
    import numpy as np

    optional = [i for i, column in enumerate(fmt.columns) if column.kind == "optional"]
    required = [i for i in range(len(fmt.columns)) if i not in optional]
    try:
        raw = path.read_bytes()
        first = raw[: raw.find(b"\n")].decode("utf-8")
        if fmt.header_ok(_split(first, fmt)):
            try:
                data = np.loadtxt(io.BytesIO(raw), delimiter=fmt.separator, skiprows=1, ndmin=2, dtype=np.float64,
                                  comments=None)
            except ValueError:
                if not optional:
                    raise
                # empty optional cells: the same reader with a converter on those columns (2.5x slower)
                data = np.loadtxt(io.BytesIO(raw), delimiter=fmt.separator, skiprows=1, ndmin=2, dtype=np.float64,
                                  comments=None, converters=dict.fromkeys(optional, _optional_cell))
            if (
                # one row per line: loadtxt passes over blank lines, which the line reader reports
                0 < data.shape[0] == raw.count(b"\n") - 1
                and data.shape[1] == len(fmt.columns)
                and np.isfinite(data[:, required]).all()
                and (data[:, required[1:]] >= 0).all()
                and not (data[:, optional] < 0).any()
                and not np.isinf(data[:, optional]).any()
                and (data[:, 1] == np.round(data[:, 1])).all()
            ):
                return data, None
    except (ValueError, UnicodeDecodeError):
        pass
    log = read_log(path, fmt)
    data = np.array([values for _line, values in log.rows], dtype=np.float64).reshape(-1, len(fmt.columns))
    return data, log


# --- which file is which monitor's ----------------------------------------------------------------------

GPU_LOG = re.compile(r"gpu_memory_log(?:_(?P<host>.+))?\.csv")
NVML_LOG = re.compile(r"nvml(?:_(?P<host>.+))?\.csv")
CLOCKS_LOG = re.compile(r"gpu_clocks(?:_(?P<host>.+))?\.csv")
RAPL_LOG = re.compile(r"rapl(?:_(?P<host>.+))?\.csv")
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
