"""`table`: one study's summary.json files -> results/tables/<study>.csv and .md.

Three layouts, chosen by the study's `table` key: `comparison` (the workshop's ZeRO comparison table),
`scaling` (its weak-scaling tables, with speed-up and efficiency) and `baseline` (its evaluation summary).
The CSV keeps full precision and a few machine-readable columns (stage, offload, ...) that
`summary` reads; the Markdown rounds like the workshop's script and leaves those columns out.
Runs that ran out of memory keep their row, with status `oom` and every number empty.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .memory import SCHEMA_VERSION

TABLE_KINDS = ("comparison", "scaling", "baseline")
# Weak scaling counts as holding at or above this per-GPU efficiency (stated in the notes and summary).
WEAK_SCALING_HOLDS = 0.9
MAX_MODES_SHOWN = 4


@dataclass(frozen=True)
class Col:
    """A table column: its header, how to read it from a summary, and its Markdown format."""

    name: str
    get: Callable[[dict[str, Any]], Any]
    fmt: str = "text"  # text | int | mib | avg | rate | loss | tflops | pct | ratio | modes
    numeric: bool = True  # emptied in OOM rows
    markdown: bool = True


@dataclass
class Table:
    study: str
    title: str
    kind: str
    columns: list[Col]
    rows: list[dict[str, Any]]
    notes: list[str] = field(default_factory=list)

    @property
    def header(self) -> list[str]:
        return [col.name for col in self.columns]


# --- reading summaries ---------------------------------------------------------------------------


def _dig(data: dict[str, Any] | None, *keys: str) -> Any:
    for key in keys:
        if data is None:
            return None
        data = data.get(key)
    return data


def load_summaries(paths: Sequence[Path]) -> list[dict[str, Any]]:
    summaries = []
    for path in paths:
        with open(path, encoding="utf-8") as handle:
            summary = json.load(handle)
        if summary.get("schema_version") != SCHEMA_VERSION:
            raise ValueError(
                f"{path}: summary schema_version {summary.get('schema_version')!r}, expected {SCHEMA_VERSION}: rerun parse-memory"
            )
        summaries.append(summary)
    return summaries


def match_study(study: dict[str, Any], summaries: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The study's runs, each exactly once; a missing or foreign summary is an error, not a short table."""
    wanted = set(study["runs"])
    by_id: dict[str, dict[str, Any]] = {}
    for summary in summaries:
        run_id = summary["run_id"]
        if run_id not in wanted:
            raise ValueError(f"study '{study['name']}': summary for run '{run_id}' does not belong to it")
        if run_id in by_id:
            raise ValueError(f"study '{study['name']}': run '{run_id}' given twice")
        by_id[run_id] = summary
    missing = sorted(wanted - set(by_id))
    if missing:
        raise ValueError(f"study '{study['name']}': no summary.json for run(s) {', '.join(missing)}")
    return list(by_id.values())


def point_key(summary: dict[str, Any]) -> tuple[Any, ...]:
    point = summary["point"]
    stage = -1 if point["zero_stage"] is None else point["zero_stage"]
    return (
        point["deepspeed"],
        stage,
        point["offload"] != "none",
        point["pin_memory"],
        point["world_size"],
        point["nodes"],
        summary["run_id"],
    )


# --- column sets ---------------------------------------------------------------------------------


def m(name: str) -> Callable[[dict[str, Any]], Any]:
    return lambda s: _dig(s, "metrics", name)


def _eval_loss_at(epoch: int) -> Callable[[dict[str, Any]], Any]:
    """Eval loss of the evaluation closest to `epoch` (the Trainer logs 0.99 or 1.0), within a quarter epoch."""

    def get(summary: dict[str, Any]) -> Any:
        losses = _dig(summary, "metrics", "eval_losses") or []
        near = [item for item in losses if item["epoch"] is not None and abs(item["epoch"] - epoch) <= 0.25]
        return min(near, key=lambda item: abs(item["epoch"] - epoch))["eval_loss"] if near else None

    return get


def _config_label(summary: dict[str, Any]) -> str:
    return str(summary["label"])


STATUS = Col("Status", lambda s: s["status"], numeric=False)
RUN = Col("Run", lambda s: s["run_id"], numeric=False)
MACHINE_COLUMNS = [
    Col("ZeRO Stage", lambda s: s["point"]["zero_stage"], numeric=False, markdown=False),
    Col("Offload", lambda s: s["point"]["offload"] if s["point"]["deepspeed"] else None, numeric=False, markdown=False),
    Col(
        "Pin Memory",
        lambda s: s["point"]["pin_memory"] if s["point"]["deepspeed"] else None,
        numeric=False,
        markdown=False,
    ),
    Col("GPUs per Node", lambda s: s["point"]["gpus_per_node"], numeric=False, markdown=False),
    Col("Nodes", lambda s: s["point"]["nodes"], numeric=False, markdown=False),
    Col("World Size", lambda s: s["point"]["world_size"], numeric=False, markdown=False),
]

COMPARISON = [
    Col("DeepSpeed Config", _config_label, numeric=False),
    Col("Peak GPU Memory Used (MiB)", lambda s: _dig(s, "gpu", "peak_mib"), "mib"),
    Col("Average GPU Memory Used (MiB)", lambda s: _dig(s, "gpu", "average_mib"), "avg"),
    # psrecord's "MB" is rss / 1024**2, so the workshop's MiB header is right for these numbers.
    Col("Peak CPU Memory Used (MiB)", lambda s: _dig(s, "cpu", "peak_mb"), "mib"),
    Col("Average CPU Memory Used (MiB)", lambda s: _dig(s, "cpu", "average_mb"), "avg"),
    Col("Train Samples/Second", m("train_samples_per_second"), "rate"),
    Col("Exact Peak GPU Memory (MiB)", lambda s: _dig(s, "nvml", "peak_mib"), "mib"),
    Col("Torch Peak Reserved (MiB)", lambda s: _dig(s, "torch", "max_reserved_mib"), "mib"),
    Col("Steady Samples/Second", m("steady_samples_per_second"), "rate"),
    Col("Tokens/Second", m("steady_tokens_per_second"), "int"),
    Col("TFLOP/s per GPU", m("tflops_per_gpu"), "tflops"),
    Col("MFU", m("mfu"), "pct"),
    Col("Train Runtime (s)", m("train_runtime"), "rate"),
    STATUS,
    RUN,
    *MACHINE_COLUMNS,
]

BASELINE = [
    Col("Configuration", _config_label, numeric=False),
    Col("Final Train Loss", m("train_loss"), "loss"),
    Col("Eval Loss (Epoch 1)", _eval_loss_at(1), "loss"),
    Col("Eval Loss (Epoch 2)", _eval_loss_at(2), "loss"),
    Col("Eval Loss (Final)", m("eval_loss"), "loss"),
    Col("Train Samples/sec", m("train_samples_per_second"), "rate"),
    Col("Eval Samples/sec", m("eval_samples_per_second"), "rate"),
    Col("Steps per Epoch", m("steps_per_epoch"), "int"),
    Col("GPU Peak Usage (MiB)", lambda s: _dig(s, "gpu", "peak_mib"), "mib"),
    Col("GPU Average Usage (MiB)", lambda s: _dig(s, "gpu", "average_mib"), "avg"),
    Col("GPU Mode Usage (MiB)", lambda s: _dig(s, "gpu", "modes_mib"), "modes"),
    Col("Exact Peak GPU Memory (MiB)", lambda s: _dig(s, "nvml", "peak_mib"), "mib"),
    Col("CPU Peak Usage (MB)", lambda s: _dig(s, "cpu", "peak_mb"), "mib"),
    Col("CPU Average Usage (MB)", lambda s: _dig(s, "cpu", "average_mb"), "avg"),
    Col("CPU Mode Usage (MB)", lambda s: _dig(s, "cpu", "modes_mb"), "modes"),
    STATUS,
    RUN,
    *MACHINE_COLUMNS,
]
# The workshop's evaluation summary groups its metrics; the transposed Markdown keeps those groups.
BASELINE_CATEGORIES = {
    **{col.name: "Training Metrics" for col in BASELINE[1:8]},
    **{col.name: "GPU Memory" for col in BASELINE[8:12]},
    **{col.name: "CPU Memory" for col in BASELINE[12:15]},
    "Status": "Run",
}


def _scaling_columns() -> list[Col]:
    return [
        Col("DeepSpeed Config", _config_label, numeric=False),
        Col("GPUs", lambda s: s["point"]["world_size"], numeric=False),
        Col("GPUs per Node", lambda s: s["point"]["gpus_per_node"], numeric=False),
        Col("Nodes", lambda s: s["point"]["nodes"], numeric=False),
        Col("Train Samples/sec", m("train_samples_per_second"), "rate"),
        Col("Train Loss", m("train_loss"), "loss"),
        Col("Peak GPU Memory (MiB)", lambda s: _dig(s, "gpu", "peak_mib"), "mib"),
        Col("Average GPU Memory (MiB)", lambda s: _dig(s, "gpu", "average_mib"), "avg"),
        Col("Mode GPU Memory (MiB)", lambda s: _dig(s, "gpu", "modes_mib"), "modes"),
        Col("Speed-up", lambda s: s.get("_speedup"), "ratio"),
        Col("Weak-Scaling Efficiency", lambda s: s.get("_efficiency"), "pct"),
        Col("Exact Peak GPU Memory (MiB)", lambda s: _dig(s, "nvml", "peak_mib"), "mib"),
        Col("Steady Samples/sec", m("steady_samples_per_second"), "rate"),
        Col("Steady Weak-Scaling Efficiency", lambda s: s.get("_steady_efficiency"), "pct"),
        STATUS,
        RUN,
        *[col for col in MACHINE_COLUMNS if col.name in ("ZeRO Stage", "Offload", "Pin Memory", "World Size")],
    ]


def _usable(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and value > 0


def add_scaling(summaries: list[dict[str, Any]]) -> list[str]:
    """Speed-up and weak-scaling efficiency against the smallest configuration that finished.

    speed-up = throughput / throughput_ref; efficiency = (throughput / GPUs) / (throughput_ref / GPUs_ref),
    i.e. per-GPU throughput relative to the reference; 100 % is perfect weak scaling.
    """
    notes: list[str] = []
    for key, out in (("train_samples_per_second", "_efficiency"), ("steady_samples_per_second", "_steady_efficiency")):
        finished = [s for s in summaries if s["status"] == "ok" and _usable(s["metrics"][key])]
        if not finished:
            notes.append(f"No finished run has {key}: its efficiency is empty.")
            continue
        ref = min(finished, key=lambda s: (s["point"]["world_size"], s["point"]["nodes"]))
        ref_rate, ref_gpus = ref["metrics"][key], ref["point"]["world_size"]
        for summary in finished:
            speedup = summary["metrics"][key] / ref_rate
            if key == "train_samples_per_second":
                summary["_speedup"] = speedup
            summary[out] = speedup * ref_gpus / summary["point"]["world_size"]
        if key == "train_samples_per_second":
            smallest = min(s["point"]["world_size"] for s in summaries)
            if ref["point"]["world_size"] != smallest:
                notes.append(f"The smallest configuration did not finish; {ref['run_id']} is the reference.")
            notes.append(
                f"Speed-up and efficiency are against {ref['run_id']} ({ref_gpus} GPU{'s' * (ref_gpus > 1)}): "
                "efficiency = per-GPU Train Samples/sec relative to the reference's (weak scaling: 100 % is ideal; "
                f"we call it holding at >= {100 * WEAK_SCALING_HOLDS:.0f} %)."
            )
    return notes


# --- building ------------------------------------------------------------------------------------


def build_table(study: dict[str, Any], summaries: list[dict[str, Any]]) -> Table:
    kind = study["table"]
    if kind not in TABLE_KINDS:
        raise ValueError(f"study '{study['name']}': unknown table kind {kind!r} (known: {', '.join(TABLE_KINDS)})")
    runs = [dict(summary) for summary in match_study(study, summaries)]  # copies: scaling adds private keys
    notes: list[str] = []
    if kind == "scaling":
        axis = study.get("scaling_axis") or "world_size"
        runs.sort(key=lambda s: (s["point"].get(axis, 0), s["point"]["world_size"], s["run_id"]))
        notes += add_scaling(runs)
        columns = _scaling_columns()
    else:
        runs.sort(key=point_key)
        columns = COMPARISON if kind == "comparison" else BASELINE
        shapes = {(s["point"]["gpus_per_node"], s["point"]["nodes"]) for s in runs}
        if len(shapes) > 1:  # the workshop's labels name no GPU count; a mixed study needs it
            for summary in runs:
                p = summary["point"]
                summary["label"] = f"{summary['label']}, {p['world_size']} GPU{'s' * (p['world_size'] > 1)}" + (
                    f" on {p['nodes']} nodes" if p["nodes"] > 1 else ""
                )
    rows = []
    for summary in runs:
        row = {}
        for col in columns:
            value = col.get(summary)
            row[col.name] = None if (col.numeric and summary["status"] != "ok") else value
        rows.append(row)
    oom = [summary["run_id"] for summary in runs if summary["status"] == "oom"]
    if oom:
        notes.append(f"Out of memory (row kept, numbers empty): {', '.join(oom)}.")
    notes += _definition_notes(kind)
    for summary in runs:
        notes += [f"{summary['run_id']}: {warning}" for warning in summary.get("warnings", [])]
    return Table(
        study=study["name"],
        title=study.get("title") or study["name"],
        kind=kind,
        columns=columns,
        rows=rows,
        notes=notes,
    )


def _definition_notes(kind: str) -> list[str]:
    notes = [
        (
            "GPU memory from nvidia-smi (5 s samples): peak = the highest GPU's maximum; average = mean of the "
            "per-GPU averages; mode = most frequent value(s) over all GPUs' samples (all ties listed)."
        ),
        "Exact peak: maximum of the fast NVML samples (catches spikes between nvidia-smi samples).",
    ]
    if kind != "scaling":
        notes.append(
            "CPU memory from psrecord's Real column (process tree, per node): peak = the fullest node's; "
            "average = mean of the node averages."
        )
    return notes


# --- writing -------------------------------------------------------------------------------------


def csv_value(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, list):
        return ", ".join(f"{item:.0f}" for item in value)  # the workshop's rendering of the modes
    if isinstance(value, bool):
        return str(value).lower()
    return value


def md_value(value: Any, fmt: str) -> str:
    if value is None or value == "":
        return "–"
    if fmt == "text" or isinstance(value, (str, bool)):
        return str(value).lower() if isinstance(value, bool) else str(value)
    if fmt == "modes":
        shown = ", ".join(f"{item:.0f}" for item in value[:MAX_MODES_SHOWN])
        return shown + (f" … ({len(value)} modes)" if len(value) > MAX_MODES_SHOWN else "")
    formats = {
        "int": "{:.0f}",
        "mib": "{:.0f}",
        "avg": "{:.2f}",
        "rate": "{:.2f}",
        "loss": "{:.4f}",
        "tflops": "{:.1f}",
    }
    if fmt == "pct":
        return f"{100 * value:.1f} %"
    if fmt == "ratio":
        return f"{value:.2f}×"
    return formats.get(fmt, "{}").format(value)


def write_csv(table: Table, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(table.header)
        for row in table.rows:
            writer.writerow([csv_value(row[name]) for name in table.header])


def _md_table(header: list[str], body: list[list[str]]) -> list[str]:
    def cells(items: list[str]) -> str:
        return "| " + " | ".join(item.replace("|", "\\|") for item in items) + " |"

    return [cells(header), "|" + "|".join("---" for _ in header) + "|", *(cells(row) for row in body)]


def markdown(table: Table) -> str:
    shown = [col for col in table.columns if col.markdown]
    lines = [f"# {table.title}", "", f"Study `{table.study}`, {table.kind} table, {len(table.rows)} run(s).", ""]
    if table.kind == "baseline":
        # The workshop's evaluation summary is one metric per line: keep that shape, one column per run.
        body = []
        previous = ""
        for col in shown:
            if col.name in ("Configuration", "Run"):
                continue
            category = BASELINE_CATEGORIES.get(col.name, "")
            body.append(
                [
                    category if category != previous else "",
                    col.name,
                    *(md_value(row[col.name], col.fmt) for row in table.rows),
                ]
            )
            previous = category
        lines += _md_table(["Category", "Metric", *(row["Configuration"] for row in table.rows)], body)
        lines += ["", "Runs: " + ", ".join(f"`{row['Run']}`" for row in table.rows)]
    else:
        body = [[md_value(row[col.name], col.fmt) for col in shown] for row in table.rows]
        lines += _md_table([col.name for col in shown], body)
    if table.notes:
        lines += ["", "Notes:", ""] + [f"- {note}" for note in table.notes]
    return "\n".join(lines) + "\n"


def write_markdown(table: Table, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(markdown(table), encoding="utf-8")


def add_arguments(parser: argparse.ArgumentParser, command: str) -> None:
    parser.add_argument("--study-json", required=True, help="the study as JSON: name, title, table, scaling_axis, runs")
    parser.add_argument("--out-csv", type=Path, required=True)
    parser.add_argument("--out-md", type=Path, required=True)
    parser.add_argument("summaries", type=Path, nargs="+", help="summary.json of every run of the study")


def run(args: argparse.Namespace) -> int:
    study = json.loads(args.study_json)
    table = build_table(study, load_summaries(args.summaries))
    write_csv(table, args.out_csv)
    write_markdown(table, args.out_md)
    print(f"{table.study}: {len(table.rows)} rows -> {args.out_csv}, {args.out_md}")
    return 0
