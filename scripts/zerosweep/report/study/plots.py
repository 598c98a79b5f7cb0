"""`plots` (one study's figures) and `timeline` (one run's memory over time), as PNG and SVG.

Study figures read the same rows as the study's table (tables.build_table), selected by field id, so a bar
and its table cell can never disagree. Sized and lettered for a 16:9 slide; matplotlib runs headless (Agg).
"""

from __future__ import annotations

import argparse
import json
import textwrap
from collections.abc import Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ... import records as f
from ...jsonio import read_json
from ..run_summary import logs
from ..run_summary.memory import summarise_cpu
from . import labels
from . import tables as aggregate
from .derived import WEAK_SCALING_HOLDS

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

SLIDE = (12.0, 6.75)  # inches, 16:9
MAX_LINE_POINTS = 2000  # NVML at 50 ms for an hour is 72k points a GPU: bin it, keeping each bin's maximum
COLORS = {
    "peak": "#1f77b4",
    "exact": "#d62728",
    "average": "#7f7f7f",
    "train": "#2ca02c",
    "steady": "#9467bd",
    "ideal": "#000000",
}


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plt.rcParams.update(
        {
            "font.size": 13,
            "axes.titlesize": 15,
            "axes.labelsize": 14,
            "legend.fontsize": 12,
            "svg.hashsalt": "zerosweep",
        }
    )
    return plt


def save(fig: Figure, png: Path, svg: Path) -> None:
    png.parent.mkdir(parents=True, exist_ok=True)
    svg.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(png, dpi=150, bbox_inches="tight")
    fig.savefig(svg, bbox_inches="tight", metadata={"Date": None})  # no date: same data, same file
    import matplotlib.pyplot as plt

    plt.close(fig)


def _wrap(label: str, width: int = 18) -> str:
    return "\n".join(textwrap.wrap(label, width)) or label


def error_bars(rows: list[dict[str, Any]], column: str, scale: float = 1.0) -> list[list[float]] | None:
    """matplotlib's yerr (distances below and above each point, times `scale`) from the ends of the row's interval
    (labels.INTERVALS: the steady figure's 95 % CI or min-max over repeats); None without any."""
    if column not in labels.INTERVALS:
        return None
    spec = labels.INTERVALS[column]
    below, above = [], []
    for row in rows:
        value, low, high = row.get(column), row.get(spec.low), row.get(spec.high)
        if all(isinstance(x, (int, float)) for x in (value, low, high)):
            below.append(scale * (float(value) - float(low)))  # type: ignore[arg-type]
            above.append(scale * (float(high) - float(value)))  # type: ignore[arg-type]
        else:
            below.append(0.0)
            above.append(0.0)
    return [below, above] if any(below) or any(above) else None


def bar_label(row: Mapping[str, Any], column: str, unit_fmt: str) -> str:
    """A bar's figure; with its interval's ends on a second line where the row has one ('54.1\n[53.3, 58.4]')."""
    if column not in labels.INTERVALS:
        return unit_fmt.format(row[column])
    return labels.with_interval(row, column).replace(" [", "\n[", 1)


def _bars(ax: Axes, rows: list[dict[str, Any]], series: list[tuple[str, str, str]], unit_fmt: str) -> None:
    """Grouped bars, one group per configuration; an OOM configuration gets a label instead of bars; a steady
    figure with an interval gets its error bar."""
    import numpy as np

    positions = np.arange(len(rows))
    width = 0.8 / max(len(series), 1)
    for offset, (column, legend, color) in enumerate(series):
        xs = positions - 0.4 + width * (offset + 0.5)
        values = [row.get(column) for row in rows]
        heights = [v if isinstance(v, (int, float)) else 0.0 for v in values]
        yerr = error_bars(rows, column)
        bars = ax.bar(xs, heights, width, label=legend, color=color, yerr=yerr, capsize=4)
        tops = heights if yerr is None else [height + up for height, up in zip(heights, yerr[1])]
        for bar, top, row in zip(bars, tops, rows):
            if isinstance(row.get(column), (int, float)):  # above the error bar, which would cross the text
                ax.annotate(bar_label(row, column, unit_fmt), (bar.get_x() + bar.get_width() / 2, top),
                            ha="center", va="bottom", fontsize=9, xytext=(0, 2), textcoords="offset points")
    for position, row in zip(positions, rows):
        if row[f.STATUS] != "ok":
            ax.annotate(
                row[f.STATUS].upper(),
                (position, 0),
                ha="center",
                va="bottom",
                fontsize=14,
                color="#d62728",
                fontweight="bold",
                xytext=(0, 4),
                textcoords="offset points",
            )
    ax.set_xticks(positions, [_wrap(row["_label"]) for row in rows])
    ax.margins(y=0.15)
    ax.grid(axis="y", alpha=0.3)
    ax.set_axisbelow(True)


def _heading(table: aggregate.Table) -> str:
    """A plot's title: the table's, with the model its runs trained."""
    return f"{table.title} [{aggregate.models_text(row.get(f.MODEL) for row in table.rows)}]"


def _emulated_note(table: aggregate.Table) -> str:
    """Scaling plots show GPU counts, not labels: say where the nodes were emulated."""
    emulated = [row[f.WORLD_SIZE] for row in table.rows if row.get(f.EMULATED_NODES)]
    return f"\n(nodes {aggregate.EMULATED} at {', '.join(map(str, emulated))} GPUs)" if emulated else ""


def _rows(table: aggregate.Table) -> list[dict[str, Any]]:
    return [{**row, "_label": str(row[f.CONFIG])} for row in table.rows]


def plot_memory_bars(table: aggregate.Table, out_dir: Path) -> None:
    plt = _pyplot()
    rows = _rows(table)
    fig, ax = plt.subplots(figsize=SLIDE)
    _bars(
        ax,
        rows,
        [
            (f.GPU_PEAK_MIB, "peak (nvidia-smi, 5 s)", COLORS["peak"]),
            (f.NVML_PEAK_MIB, "exact peak (NVML)", COLORS["exact"]),
            (f.GPU_AVERAGE_MIB, "average (nvidia-smi)", COLORS["average"]),
        ],
        "{:.0f}",
    )
    ax.set_ylabel("GPU memory per GPU (MiB)")
    ax.set_title(f"{_heading(table)}: GPU memory")
    _legend_above_bars(ax)
    save(fig, out_dir / "memory.png", out_dir / "memory.svg")


def _legend_above_bars(ax: Any) -> None:
    """Headroom over the tallest bar so the legend never hides a bar or its label."""
    bottom, top = ax.get_ylim()
    ax.set_ylim(bottom, top * 1.3)
    ax.legend(loc="upper right", ncol=3)


def plot_throughput_bars(table: aggregate.Table, out_dir: Path) -> None:
    plt = _pyplot()
    rows = _rows(table)
    fig, ax = plt.subplots(figsize=SLIDE)
    series = [
        (f.STEADY_SAMPLES_PER_SECOND, "steady state (after warm-up)", COLORS["steady"]),
        (f.TRAIN_SAMPLES_PER_SECOND, "Trainer (whole run)", COLORS["train"]),
    ]
    if table.kind == "baseline":
        series = series[1:]  # the workshop's evaluation summary has no steady-state column
    _bars(ax, rows, series, "{:.1f}")
    ax.set_ylabel("training samples / s")
    ax.set_title(f"{_heading(table)}: throughput")
    _legend_above_bars(ax)
    save(fig, out_dir / "throughput.png", out_dir / "throughput.svg")


def plot_eval_loss(table: aggregate.Table, summaries: Sequence[f.RunRecord], out_dir: Path) -> bool:
    curves = [(s["label"], s["metrics"].get("eval_losses") or []) for s in summaries if s["status"] == "ok"]
    curves = [(label, losses) for label, losses in curves if losses]
    if not curves:
        return False
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=SLIDE)
    for label, losses in curves:
        ax.plot([item["epoch"] for item in losses], [item["eval_loss"] for item in losses], marker="o", label=label)
    ax.set_xlabel("epoch")
    ax.set_ylabel("eval loss")
    ax.set_title(f"{_heading(table)}: evaluation loss")
    ax.grid(alpha=0.3)
    ax.legend()
    save(fig, out_dir / "eval_loss.png", out_dir / "eval_loss.svg")
    return True


def plot_scaling(table: aggregate.Table, out_dir: Path) -> None:
    """Throughput and efficiency against GPUs, each with its ideal line; then memory per GPU against GPUs."""
    plt = _pyplot()
    rows = [row for row in table.rows if row[f.STATUS] == "ok"]
    failed = [row for row in table.rows if row[f.STATUS] != "ok"]
    gpus = f.WORLD_SIZE
    fig, (left, right) = plt.subplots(1, 2, figsize=SLIDE)
    for column, legend, color in (
        (f.TRAIN_SAMPLES_PER_SECOND, "Trainer", COLORS["train"]),
        (f.STEADY_SAMPLES_PER_SECOND, "steady state", COLORS["steady"]),
    ):
        measured = [row for row in rows if row[column] is not None]
        points = [(row[gpus], row[column]) for row in measured]
        if points:
            left.errorbar(*zip(*points), yerr=error_bars(measured, column), marker="o", color=color, label=legend,
                          capsize=4)
            gpus0, rate0 = points[0]
            xs = [gpus for gpus, _ in points]
            left.plot(
                xs,
                [rate0 * gpus / gpus0 for gpus in xs],
                linestyle="--",
                color=color,
                alpha=0.6,
                label=f"ideal ({legend})",
            )
    for column, legend, color in (
        (f.WEAK_SCALING_EFFICIENCY, "Trainer", COLORS["train"]),
        (f.STEADY_WEAK_SCALING_EFFICIENCY, "steady state", COLORS["steady"]),
    ):
        measured = [row for row in rows if row[column] is not None]
        points = [(row[gpus], 100 * row[column]) for row in measured]
        if points:  # error bars: the efficiency interval's ends (steady figures with repeats at both ends)
            right.errorbar(*zip(*points), yerr=error_bars(measured, column, scale=100.0), marker="o", color=color,
                           label=legend, capsize=4)
    all_gpus = sorted({row[gpus] for row in table.rows})
    right.plot(all_gpus, [100] * len(all_gpus), linestyle="--", color=COLORS["ideal"], label="ideal")
    right.axhline(
        100 * WEAK_SCALING_HOLDS,
        color="#aaaaaa",
        linestyle=":",
        label=f"{100 * WEAK_SCALING_HOLDS:.0f} %",
    )
    for row in failed:
        for ax in (left, right):
            ax.annotate(f"{row[f.STATUS].upper()}", (row[gpus], 0), color="#d62728", fontweight="bold", ha="center",
                        xycoords=("data", "axes fraction"), xytext=(0, 6), textcoords="offset points")
    left.set_ylabel("training samples / s (all GPUs)")
    left.set_ylim(bottom=0)
    right.set_ylabel("weak-scaling efficiency (%)")
    right.set_ylim(bottom=0)
    for ax in (left, right):
        ax.set_xlabel("GPUs")
        ax.set_xticks(all_gpus)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=10)
    fig.suptitle(_heading(table) + _emulated_note(table))
    save(fig, out_dir / "scaling.png", out_dir / "scaling.svg")

    fig, ax = plt.subplots(figsize=SLIDE)
    for column, legend, color in (
        (f.GPU_PEAK_MIB, "peak (nvidia-smi)", COLORS["peak"]),
        (f.NVML_PEAK_MIB, "exact peak (NVML)", COLORS["exact"]),
        (f.GPU_AVERAGE_MIB, "average (nvidia-smi)", COLORS["average"]),
    ):
        points = [(row[gpus], row[column]) for row in rows if row[column] is not None]
        if points:
            ax.plot(*zip(*points), marker="o", color=color, label=legend)
    ax.set_xlabel("GPUs")
    ax.set_xticks(all_gpus)
    ax.set_ylabel("GPU memory per GPU (MiB)")
    ax.set_ylim(bottom=0)
    ax.set_title(f"{_heading(table)}: memory per GPU (constant under ideal weak scaling){_emulated_note(table)}")
    ax.grid(alpha=0.3)
    ax.legend()
    save(fig, out_dir / "memory.png", out_dir / "memory.svg")


def study_plots(study: Mapping[str, Any], summaries: Sequence[f.RunRecord], out_dir: Path) -> list[Path]:
    table = aggregate.build_table(study, summaries)
    out_dir.mkdir(parents=True, exist_ok=True)
    if table.kind == "scaling":
        plot_scaling(table, out_dir)
    else:
        plot_memory_bars(table, out_dir)
        plot_throughput_bars(table, out_dir)
        if table.kind == "baseline":
            plot_eval_loss(table, aggregate.match_study(study, summaries), out_dir)
    return sorted(out_dir.iterdir())


# --- timeline ------------------------------------------------------------------------------------


def _binned_max(times: Any, values: Any) -> tuple[Any, Any]:
    import numpy as np

    if len(times) <= MAX_LINE_POINTS:
        return times, values
    edges = np.linspace(0, len(times), MAX_LINE_POINTS + 1).astype(int)
    return times[edges[:-1]], np.maximum.reduceat(values, edges[:-1])


def timeline_series(run_dir: Path) -> dict[str, list[tuple[str, Any, Any]]]:
    """(label, seconds, MiB) per GPU and source, and per node for CPU; each clock starts at its source's first sample."""
    import numpy as np

    monitor = run_dir / "monitor"
    series: dict[str, list[tuple[str, Any, Any]]] = {"nvidia-smi": [], "nvml": [], "cpu": []}
    smi: list[tuple[str, int, list[datetime], list[int]]] = []
    for path, match in logs.matching_logs(monitor, logs.GPU_LOG):
        rows = logs.read_log(path, logs.NVIDIA_SMI).rows
        for index in sorted({values[1] for _line, values in rows}):
            picked = [values for _line, values in rows if values[1] == index]
            smi.append((logs.host_of(match), index, [logs.smi_time(v[0]) for v in picked], [v[3] for v in picked]))
    if smi:
        smi_start = min(times[0] for _h, _i, times, _v in smi)  # hosts share one origin: NTP-synced clocks
        for host, index, times, used in smi:
            seconds = np.array([(t - smi_start).total_seconds() for t in times])
            series["nvidia-smi"].append((f"{host} GPU {index}", seconds, np.array(used, dtype=float)))
    nvml = [
        (path, match, data)
        for path, match in logs.matching_logs(monitor, logs.NVML_LOG)
        if (data := logs.read_nvml_log(path)[0]).size  # a log with no valid sample draws nothing
    ]
    if nvml:
        nvml_start = min(float(data[:, 0].min()) for _p, _m, data in nvml)
        for _path, match, data in nvml:
            for index in np.unique(data[:, 1]).astype(int):
                rows = data[data[:, 1] == index]
                times, used = _binned_max(rows[:, 0] - nvml_start, rows[:, 2])
                series["nvml"].append((f"{logs.host_of(match)} GPU {index}", times, used))
    warnings: list[str] = []
    cpu = summarise_cpu(monitor, warnings)
    for node in cpu["nodes"] if cpu else []:
        path = monitor / node["file"]
        fmt, real = logs.psrecord_format(path)
        rows = logs.read_log(path, fmt).rows
        series["cpu"].append((node["host"], np.array([v[0] for _l, v in rows]), np.array([v[real] for _l, v in rows])))
    return series


def plot_timeline(run_dir: Path, png: Path, svg: Path) -> None:
    plt = _pyplot()
    summary_path = run_dir / "summary.json"
    summary = read_json(summary_path) if summary_path.exists() else None
    run_id = summary["run_id"] if summary else run_dir.name
    title = f"{run_id}: {summary['label']} ({summary['status']})" if summary else run_id
    series = timeline_series(run_dir)
    fig, (gpu_ax, cpu_ax) = plt.subplots(2, 1, figsize=SLIDE, sharex=True, height_ratios=(3, 2))
    colors = plt.get_cmap("tab10" if max(len(series["nvidia-smi"]), len(series["nvml"])) <= 10 else "tab20")
    gpu_labels = sorted({label for label, _t, _v in series["nvidia-smi"] + series["nvml"]})
    color_of = {label: colors(i % colors.N) for i, label in enumerate(gpu_labels)}
    for label, times, used in series["nvml"]:
        gpu_ax.plot(times, used, linewidth=1.0, color=color_of[label], alpha=0.8, label=f"{label} NVML")
    for label, times, used in series["nvidia-smi"]:
        gpu_ax.plot(
            times, used, linestyle="none", marker="o", markersize=5, color=color_of[label], label=f"{label} nvidia-smi"
        )
    for i, (host, times, real) in enumerate(series["cpu"]):
        cpu_ax.plot(times, real, marker=".", color=colors(i % colors.N), label=f"{host} psrecord")
    for ax, what, unit in ((gpu_ax, "GPU memory", "MiB"), (cpu_ax, "CPU memory (Real)", "MiB")):
        ax.set_ylabel(f"{what} ({unit})")
        ax.grid(alpha=0.3)
        handles, labels = ax.get_legend_handles_labels()
        if handles:
            ax.legend(handles[:12], labels[:12], fontsize=9, loc="upper left", ncol=2 if len(handles) > 4 else 1)
        else:
            ax.text(0.5, 0.5, f"no {what} log", transform=ax.transAxes, ha="center", va="center", color="#7f7f7f")
    cpu_ax.set_xlabel("seconds since each monitor's first sample")
    gpu_ax.set_title(title)
    save(fig, png, svg)


def add_arguments(parser: argparse.ArgumentParser, command: str) -> None:
    if command == "plots":
        parser.add_argument(
            "--study-json", required=True, help="the study as JSON: name, title, table, scaling_axis, peak_tflops, runs"
        )
        parser.add_argument("--out-dir", type=Path, required=True)
        parser.add_argument("summaries", type=Path, nargs="+", help="summary.json of every run of the study")
    else:
        parser.add_argument("--run-dir", type=Path, required=True, help="results/runs/<run>")
        parser.add_argument("--out-png", type=Path, required=True)
        parser.add_argument("--out-svg", type=Path, required=True)


def run(args: argparse.Namespace) -> int:
    if args.command == "plots":
        study = json.loads(args.study_json)
        for path in study_plots(study, aggregate.load_summaries(args.summaries), args.out_dir):
            print(path)
        return 0
    plot_timeline(args.run_dir, args.out_png, args.out_svg)
    print(args.out_png, args.out_svg)
    return 0
