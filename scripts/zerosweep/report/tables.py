"""`table`: one study's run records (summary.json) -> results/tables/<study>.csv and .md, through pandas.

Three layouts, chosen by the study's `table` key: `comparison` (the workshop's ZeRO comparison table),
`scaling` (its weak-scaling tables, with speed-up and efficiency) and `baseline` (its evaluation summary).
The CSV's headers are the field ids of `zerosweep.records` (`pandas.read_csv` gives usable columns, full
precision, plus machine-readable columns such as zero_stage and offload); the Markdown shows the labels of
`labels` and rounds like the workshop's script. Rows of runs that ran out of memory, or whose logs held no
valid sample, keep their identity with every number empty.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .. import records as f
from ..jsonio import read_json
from . import derived, labels
from .table_fields import row_status
from .table_rows import add_efficiency_intervals, add_verdicts, group_repeats, hit_cap_note, point_row, spread_note
from .workshop import mode_text

if TYPE_CHECKING:
    import pandas as pd

TABLE_KINDS = ("comparison", "scaling", "baseline")
MAX_MODES_SHOWN = 4
MODES = (f.GPU_MODES_MIB, f.CPU_MODES_MIB)
MACHINE = [f.ZERO_STAGE, f.OFFLOAD, f.PIN_MEMORY, f.GPUS_PER_NODE, f.NODES, f.WORLD_SIZE, f.EMULATED_NODES]
EMULATED = "emulated on one host"
# CSV only: the interval and the run ids behind a row, and each verdict's numbers (Markdown folds them in).
THROUGHPUT_DETAIL = [f.STEADY_SAMPLES_PER_SECOND_LOW, f.STEADY_SAMPLES_PER_SECOND_HIGH, f.STEADY_SPREAD, f.HIT_CAP,
                     f.WARMUP_NEVER_SETTLED, f.RUNS, f.RUN_SAMPLES_PER_SECOND, f.RUN_PEAK_MIB]
VERDICT_DETAIL = [f.THROUGHPUT_RATIO, f.THROUGHPUT_RATIO_LOW, f.THROUGHPUT_RATIO_HIGH, f.THROUGHPUT_P,
                  f.MEMORY_RATIO, f.MEMORY_RATIO_LOW, f.MEMORY_RATIO_HIGH, f.MEMORY_P]
# Per kind: the columns of the CSV in order, and those the Markdown leaves out (machine-readable only).
COLUMNS: dict[str, list[str]] = {
    "comparison": [
        f.CONFIG, f.GPU_PEAK_MIB, f.GPU_PEAK_MIN_MIB, f.GPU_AVERAGE_MIB, f.CPU_PEAK_MIB, f.CPU_AVERAGE_MIB,
        f.TRAIN_SAMPLES_PER_SECOND, f.NVML_PEAK_MIB, f.TORCH_MAX_RESERVED_MIB, f.STEADY_SAMPLES_PER_SECOND,
        f.STEADY_TOKENS_PER_SECOND, f.STEADY_REAL_TOKENS_PER_SECOND, f.TFLOPS_PER_GPU, f.MFU, f.TRAIN_RUNTIME,
        f.REPEATS, f.THROUGHPUT_VERDICT, f.MEMORY_VERDICT, f.GPUS_COUNTED, f.STATUS, f.RUN_ID, *MACHINE,
        *THROUGHPUT_DETAIL, *VERDICT_DETAIL,
    ],
    "baseline": [
        f.CONFIG, f.TRAIN_LOSS, f.EVAL_LOSS_EPOCH1, f.EVAL_LOSS_EPOCH2, f.EVAL_LOSS, f.TRAIN_SAMPLES_PER_SECOND,
        f.EVAL_SAMPLES_PER_SECOND, f.STEPS_PER_EPOCH, f.GPU_PEAK_MIB, f.GPU_AVERAGE_MIB, f.GPU_MODES_MIB,
        f.NVML_PEAK_MIB, f.CPU_PEAK_MIB, f.CPU_AVERAGE_MIB, f.CPU_MODES_MIB, f.STATUS, f.RUN_ID, *MACHINE,
    ],
    "scaling": [
        f.CONFIG, f.WORLD_SIZE, f.GPUS_PER_NODE, f.NODES, f.STEADY_SAMPLES_PER_SECOND, f.REPEATS, f.STEADY_SPEEDUP,
        f.STEADY_WEAK_SCALING_EFFICIENCY, f.TRAIN_LOSS, f.GPU_PEAK_MIB, f.GPU_PEAK_MIN_MIB, f.GPU_AVERAGE_MIB,
        f.GPU_MODES_MIB, f.NVML_PEAK_MIB, f.CPU_PEAK_MIB, f.CPU_AVERAGE_MIB, f.TRAIN_SAMPLES_PER_SECOND, f.SPEEDUP,
        f.WEAK_SCALING_EFFICIENCY, f.STATUS, f.RUN_ID, f.ZERO_STAGE, f.OFFLOAD, f.PIN_MEMORY, f.GPUS_COUNTED,
        f.EMULATED_NODES, *THROUGHPUT_DETAIL, f.STEADY_WEAK_SCALING_EFFICIENCY_LOW,
        f.STEADY_WEAK_SCALING_EFFICIENCY_HIGH,
    ],
}  # fmt: skip
HIDDEN: dict[str, set[str]] = {
    "comparison": {*MACHINE, *THROUGHPUT_DETAIL, *VERDICT_DETAIL},
    "baseline": set(MACHINE),
    "scaling": {f.ZERO_STAGE, f.OFFLOAD, f.PIN_MEMORY, f.EMULATED_NODES, *THROUGHPUT_DETAIL,
                f.STEADY_WEAK_SCALING_EFFICIENCY_LOW, f.STEADY_WEAK_SCALING_EFFICIENCY_HIGH},
}


@dataclass
class Table:
    study: str
    title: str
    kind: str
    frame: pd.DataFrame  # columns: field ids; cells: the records' values (object dtype, None when empty)
    notes: list[str] = field(default_factory=list)

    @property
    def rows(self) -> list[dict[str, Any]]:
        return self.frame.to_dict("records")  # type: ignore[return-value]


# --- reading records -----------------------------------------------------------------------------


def load_summaries(paths: Sequence[Path]) -> list[f.RunRecord]:
    summaries = []
    for path in paths:
        summary = read_json(path, what="parse-memory writes it")
        if summary.get("schema_version") != f.SCHEMA_VERSION:
            raise ValueError(
                f"{path}: summary schema_version {summary.get('schema_version')!r}, expected {f.SCHEMA_VERSION}: rerun parse-memory"
            )
        summaries.append(summary)
    return summaries  # type: ignore[return-value]


def match_study(study: Mapping[str, Any], summaries: Sequence[f.RunRecord]) -> list[f.RunRecord]:
    """The study's runs, each exactly once; a missing or foreign summary is an error, not a short table."""
    wanted = set(study["runs"])
    by_id: dict[str, f.RunRecord] = {}
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


def point_key(summary: Mapping[str, Any]) -> tuple[Any, ...]:
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


# --- building ------------------------------------------------------------------------------------


def _labels(kind: str, runs: list[f.RunRecord]) -> list[str]:
    """The workshop's configuration labels; a study mixing GPU counts needs them named."""
    shapes = {(s["point"]["gpus_per_node"], s["point"]["nodes"]) for s in runs}
    if kind == "scaling" or len(shapes) <= 1:
        return [s["label"] + (f" ({EMULATED})" if s.get("emulated_nodes") else "") for s in runs]
    named = []
    for summary in runs:
        p = summary["point"]
        nodes = f" on {p['nodes']} nodes" if p["nodes"] > 1 else ""
        named.append(
            f"{summary['label']}, {p['world_size']} GPU{'s' * (p['world_size'] > 1)}"
            + (f"{nodes} ({EMULATED})" if summary.get("emulated_nodes") else nodes)
        )
    return named


def build_table(study: Mapping[str, Any], summaries: Sequence[f.RunRecord]) -> Table:
    import pandas as pd

    kind = study["table"]
    if kind not in TABLE_KINDS:
        raise ValueError(f"study '{study['name']}': unknown table kind {kind!r} (known: {', '.join(TABLE_KINDS)})")
    runs = match_study(study, summaries)
    if kind == "scaling":
        axis = study.get("scaling_axis") or "world_size"
        runs.sort(key=lambda s: (s["point"].get(axis, 0), s["point"]["world_size"], s["run_id"]))
    else:
        runs.sort(key=point_key)
    peak_tflops = study.get("peak_tflops")
    groups = group_repeats(runs)
    rows = [point_row(group, label, peak_tflops)
            for group, label in zip(groups, _labels(kind, [group.runs[0] for group in groups]))]
    notes: list[str] = []
    if kind == "comparison":
        notes += add_verdicts(rows, groups)
    # object dtype: each cell keeps its record's Python value, so the CSV writes 21658 as 21658, not 21658.0
    frame = pd.DataFrame(rows, dtype=object)
    if kind == "scaling":
        notes += derived.add_scaling(frame) + add_efficiency_intervals(frame, groups)
    frame = frame[COLUMNS[kind]]
    if kind != "baseline":
        notes += spread_note(rows) + hit_cap_note(rows)
    for status, what in (("oom", "Out of memory"), ("unusable", "No valid sample in the monitor logs")):
        ids = [group.point_id for group in groups if not group.finished and row_status(group.runs[0]) == status]
        if ids:
            notes.append(f"{what} (row kept, numbers empty): {', '.join(ids)}.")
    left_out = [f"{run['run_id']} ({row_status(run)})" for group in groups if group.finished
                for run in group.runs if row_status(run) != "ok"]
    if left_out:
        notes.append(f"Repeats that did not finish, left out of their row: {', '.join(left_out)}.")
    emulated = [run["run_id"] for run in runs if run.get("emulated_nodes")]
    if emulated:
        notes.append(f"Nodes {EMULATED} (one launcher per node on the same machine, each with its own GPUs; "
                     f"inter-node traffic never left the host): {', '.join(emulated)}.")
    notes += _definition_notes(kind, peak_tflops)
    for run in runs:
        notes += [f"{run['run_id']}: {warning}" for warning in run.get("warnings", [])]
    return Table(study=study["name"], title=study.get("title") or study["name"], kind=kind, frame=frame, notes=notes)


def _definition_notes(kind: str, peak_tflops: float | None) -> list[str]:
    notes = [
        (
            "GPU memory from nvidia-smi (5 s samples) of the run's own GPUs only (each once; other GPUs the logs "
            "hold are left out): peak = the highest GPU's maximum; lowest GPU's peak = the smallest per-GPU "
            "maximum (peak minus it is the spread over GPUs: unbalanced sharding); average = mean of the "
            "per-GPU averages; mode = most frequent value(s) over the run's GPUs' samples (all ties listed)."
        ),
        "Exact peak: maximum of the fast NVML samples (catches spikes between nvidia-smi samples).",
    ]
    notes.append(
        "CPU memory from psrecord's Real column (process tree, per node): peak = the fullest node's; "
        "average = mean of the node averages."
    )
    if kind == "comparison":
        peak = f"runtime.peak_tflops = {peak_tflops:g}" if peak_tflops else "looked up by GPU name"
        notes.append(
            "TFLOP/s per GPU = training FLOPs per token (6·N + 12·L·d·s) × steady tokens/s / GPUs; "
            f"MFU = that / the GPU's dense fp16/bf16 peak ({peak}; empty on CPU). Tokens/s, TFLOP/s and MFU "
            "count padding (every sample is max_length tokens); Real Tokens/s = steady tokens/s × the run's "
            "real (non-padding) token fraction (empty where the record lacks it)."
        )
    if kind == "baseline":
        notes.append("Eval Loss (Epoch N): the evaluation at the end of epoch N only (empty if none was there).")
    return notes


# --- writing -------------------------------------------------------------------------------------


def md_value(value: Any, name: str) -> str:
    if value is None or value == "":
        return "–"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, str):
        return value
    if name in MODES:
        shown = mode_text(value[:MAX_MODES_SHOWN])
        return shown + (f" … ({len(value)} modes)" if len(value) > MAX_MODES_SHOWN else "")
    fmt = labels.FORMATS.get(name)
    if fmt == "percent":
        return f"{100 * value:.1f} %"
    return fmt.format(value) if fmt else str(value)


def md_cell(row: Mapping[str, Any], name: str) -> str:
    """A Markdown cell with its row: steady samples/s as '42.7 ± 1.3' (and † where a run hit the cap); a
    verdict with its difference, e.g. 'faster (+12.3 %)'."""
    value = row.get(name)
    if name == f.STEADY_SAMPLES_PER_SECOND and value is not None:
        low, high = row.get(f.STEADY_SAMPLES_PER_SECOND_LOW), row.get(f.STEADY_SAMPLES_PER_SECOND_HIGH)
        text = md_value(value, name) if low is None or high is None else f"{value:.1f} ± {(high - low) / 2:.1f}"
        return text + (" †" if row.get(f.HIT_CAP) else "")
    ratio = {f.THROUGHPUT_VERDICT: f.THROUGHPUT_RATIO, f.MEMORY_VERDICT: f.MEMORY_RATIO}.get(name)
    if ratio is not None and value is not None and row.get(ratio) is not None:
        return f"{value} ({100 * (row[ratio] - 1):+.1f} %)"
    return md_value(value, name)


def csv_frame(table: Table) -> pd.DataFrame:
    """The table as written to CSV: the modes in the workshop's rendering ("2145, 2178"), the rest as is."""
    frame = table.frame.copy()
    for name in MODES:
        if name in frame:
            frame[name] = frame[name].map(lambda modes: None if modes is None else mode_text(modes))
    return frame


def write_csv(table: Table, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    csv_frame(table).to_csv(path, index=False)


def read_table(path: Path) -> pd.DataFrame:
    """A table's CSV back as typed columns (nullable: an empty cell stays missing)."""
    import pandas as pd

    header = pd.read_csv(path, nrows=0).columns.tolist()
    return pd.read_csv(path, dtype=f.table_dtypes(header))  # type: ignore[arg-type]


def _markdown_table(frame: pd.DataFrame) -> str:
    # Unpadded cells: one line per row that diffs cleanly; tabulate formats, we only give it strings.
    return str(frame.to_markdown(index=False, tablefmt="pipe", stralign=None, numalign=None, disable_numparse=True))


def markdown(table: Table) -> str:
    import pandas as pd

    frame = table.frame
    shown = [name for name in frame.columns if name not in HIDDEN[table.kind]]
    lines = [f"# {table.title}", "", f"Study `{table.study}`, {table.kind} table, {len(frame)} run(s).", ""]
    if table.kind == "baseline":
        # The workshop's evaluation summary is one metric per line: keep that shape, one column per run.
        body = []
        previous = ""
        for name in shown:
            if name in (f.CONFIG, f.RUN_ID):
                continue
            category = labels.BASELINE_CATEGORIES.get(name, "")
            body.append(
                [
                    category if category != previous else "",
                    labels.label(name, table.kind),
                    *(md_value(value, name) for value in frame[name]),
                ]
            )
            previous = category
        transposed = pd.DataFrame(body, columns=["Category", "Metric", *frame[f.CONFIG]])
        lines += [_markdown_table(transposed), "", "Runs: " + ", ".join(f"`{run}`" for run in frame[f.RUN_ID])]
    else:
        rows = table.rows
        display = pd.DataFrame({labels.label(name, table.kind): [md_cell(row, name) for row in rows] for name in shown})
        lines.append(_markdown_table(display))
    if table.notes:
        lines += ["", "Notes:", ""] + [f"- {note}" for note in table.notes]
    return "\n".join(lines) + "\n"


def write_markdown(table: Table, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(markdown(table), encoding="utf-8")


def add_arguments(parser: argparse.ArgumentParser, command: str) -> None:
    parser.add_argument(
        "--study-json", required=True, help="the study as JSON: name, title, table, scaling_axis, peak_tflops, runs"
    )
    parser.add_argument("--out-csv", type=Path, required=True)
    parser.add_argument("--out-md", type=Path, required=True)
    parser.add_argument("summaries", type=Path, nargs="+", help="summary.json of every run of the study")


def run(args: argparse.Namespace) -> int:
    study = json.loads(args.study_json)
    table = build_table(study, load_summaries(args.summaries))
    write_csv(table, args.out_csv)
    write_markdown(table, args.out_md)
    print(f"{table.study}: {len(table.frame)} rows -> {args.out_csv}, {args.out_md}")
    return 0
