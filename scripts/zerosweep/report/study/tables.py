"""`table`: one study's run records (summary.json) -> results/tables/<study>.csv and .md, through pandas.

Three layouts, chosen by the study's `table` key: `comparison` (the workshop's ZeRO comparison table),
`scaling` (its weak-scaling tables, with speed-up and efficiency) and `baseline` (its evaluation summary).
The CSV's headers are the field ids of `zerosweep.records` (`pandas.read_csv` gives usable columns, full
precision, plus machine-readable columns such as zero_stage and offload): every field of a row. The Markdown is
compact (MARKDOWN per kind: the workshop's columns, steady samples/s with its interval, N and the verdicts), with
the labels of `labels`, rounded like the workshop's script. Rows of runs that ran out of memory, or whose logs held no
valid sample, keep their identity with every number empty.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ... import records as f
from ...jsonio import read_json
from ..interval_text import change_interval_text
from ..run_summary.throughput import peak_notes
from ..run_summary.workshop import mode_text
from . import derived, labels
from .table_fields import LEVER_FIELDS, is_compiled, lever_rank, row_status, run_levers
from .table_rows import (
    REFERENCE,
    add_efficiency_intervals,
    add_verdicts,
    group_repeats,
    hit_cap_note,
    host_bound_note,
    point_row,
    spread_note,
    warmup_never_settled_note,
)

if TYPE_CHECKING:
    import pandas as pd

TABLE_KINDS = ("comparison", "scaling", "baseline")
MAX_MODES_SHOWN = 4
MODES = (f.GPU_MODES_MIB, f.CPU_MODES_MIB)
MACHINE = [f.MODEL, f.ZERO_STAGE, f.OFFLOAD, f.PIN_MEMORY, f.GPUS_PER_NODE, f.NODES, f.WORLD_SIZE, f.EMULATED_NODES]
EMULATED = "emulated on one host"
# CSV only: the interval and the run ids behind a row, and each verdict's numbers (Markdown folds them in).
THROUGHPUT_DETAIL = [f.STEADY_SAMPLES_PER_SECOND_LOW, f.STEADY_SAMPLES_PER_SECOND_HIGH, f.STEADY_SPREAD, f.HIT_CAP,
                     f.WARMUP_NEVER_SETTLED, f.RUNS, f.RUN_SAMPLES_PER_SECOND, f.RUN_SAMPLES_ESTIMATOR,
                     f.RUN_PEAK_MIB, f.RUN_PEAK_SOURCE]
VERDICT_DETAIL = [f.THROUGHPUT_RATIO, f.THROUGHPUT_RATIO_LOW, f.THROUGHPUT_RATIO_HIGH, f.THROUGHPUT_P,
                  f.MEMORY_RATIO, f.MEMORY_RATIO_LOW, f.MEMORY_RATIO_HIGH, f.MEMORY_P]
# CSV only (the Markdown may show J/sample: markdown_columns): energy over the steady steps, the GPUs' busy fraction
ENERGY = [f.GPU_ENERGY_J, f.GPU_MEAN_POWER_W, f.GPU_J_PER_SAMPLE, f.GPU_J_PER_TOKEN, f.GPU_ENERGY_PROBLEM,
          f.GPU_POWER_INTEGRAL_J, f.CPU_PACKAGE_ENERGY_J, f.TRAINING_GPU_ENERGY_J, f.GPU_BUSY_FRACTION, f.HOST_BOUND]
# The workshop's memory columns (its analyze_memory.py printout: peak, average and mode, GPU then CPU).
WORKSHOP_MEMORY = [f.GPU_PEAK_MIB, f.GPU_AVERAGE_MIB, f.GPU_MODES_MIB, f.CPU_PEAK_MIB, f.CPU_AVERAGE_MIB,
                   f.CPU_MODES_MIB]
# Per kind, the Markdown's columns in order: the workshop's, then steady samples/s with its interval, N and the
# verdicts (scaling: speed-up and efficiency). The CSV has these, then CSV_ONLY's: every field of the row.
MARKDOWN: dict[str, list[str]] = {
    "comparison": [f.CONFIG, *WORKSHOP_MEMORY, f.TRAIN_SAMPLES_PER_SECOND, f.STEADY_SAMPLES_PER_SECOND, f.REPEATS,
                   f.THROUGHPUT_VERDICT, f.MEMORY_VERDICT],
    "baseline": [f.CONFIG, f.TRAIN_LOSS, f.EVAL_LOSS_EPOCH1, f.EVAL_LOSS_EPOCH2, f.EVAL_LOSS,
                 f.TRAIN_SAMPLES_PER_SECOND, f.EVAL_SAMPLES_PER_SECOND, f.STEPS_PER_EPOCH, f.GPU_PEAK_MIB,
                 f.GPU_AVERAGE_MIB, f.GPU_MODES_MIB, f.NVML_PEAK_MIB, f.CPU_PEAK_MIB, f.CPU_AVERAGE_MIB,
                 f.CPU_MODES_MIB, f.STATUS, f.RUN_ID],
    "scaling": [f.CONFIG, f.WORLD_SIZE, f.STEADY_SAMPLES_PER_SECOND, f.REPEATS, f.STEADY_SPEEDUP,
                f.STEADY_WEAK_SCALING_EFFICIENCY, *WORKSHOP_MEMORY],
}
CSV_ONLY: dict[str, list[str]] = {
    "comparison": [f.GPU_PEAK_MIN_MIB, f.NVML_PEAK_MIB, f.TORCH_MAX_RESERVED_MIB, f.STEADY_TOKENS_PER_SECOND,
                   f.STEADY_REAL_TOKENS_PER_SECOND, f.TFLOPS_PER_GPU, f.MFU, f.TRAIN_RUNTIME, f.FIRST_STEP_SECONDS,
                   f.GPUS_COUNTED, f.STATUS, f.RUN_ID, *MACHINE, *LEVER_FIELDS, *THROUGHPUT_DETAIL, *VERDICT_DETAIL,
                   *ENERGY],
    "baseline": [*MACHINE, *LEVER_FIELDS, *ENERGY],
    "scaling": [f.GPUS_PER_NODE, f.NODES, f.TRAIN_SAMPLES_PER_SECOND, f.SPEEDUP, f.WEAK_SCALING_EFFICIENCY,
                f.TRAIN_LOSS, f.FIRST_STEP_SECONDS, f.GPU_PEAK_MIN_MIB, f.NVML_PEAK_MIB, f.GPUS_COUNTED, f.STATUS,
                f.RUN_ID, f.MODEL, f.ZERO_STAGE, f.OFFLOAD, f.PIN_MEMORY, f.EMULATED_NODES, *LEVER_FIELDS, *THROUGHPUT_DETAIL,
                f.STEADY_WEAK_SCALING_EFFICIENCY_LOW, f.STEADY_WEAK_SCALING_EFFICIENCY_HIGH, *ENERGY],
}  # fmt: skip
COLUMNS: dict[str, list[str]] = {kind: MARKDOWN[kind] + CSV_ONLY[kind] for kind in TABLE_KINDS}
HIDDEN: dict[str, set[str]] = {kind: set(CSV_ONLY[kind]) for kind in TABLE_KINDS}  # in the CSV only
# A verdict cell's change comes from its ratio (CSV); marks after steady samples/s, with the row field each flags.
VERDICT_RATIOS = {f.THROUGHPUT_VERDICT: f.THROUGHPUT_RATIO, f.MEMORY_VERDICT: f.MEMORY_RATIO}
STEADY_MARKS = ((f.HIT_CAP, "†"), (f.WARMUP_NEVER_SETTLED, "‡"), (f.HOST_BOUND, "§"))
# CSV-only fields the Markdown's pointer to the CSV sums up in words rather than listing each.
CSV_DETAIL = {*MACHINE, *LEVER_FIELDS, *THROUGHPUT_DETAIL, *VERDICT_DETAIL, f.STEADY_WEAK_SCALING_EFFICIENCY_LOW,
              f.STEADY_WEAK_SCALING_EFFICIENCY_HIGH, f.STATUS, f.RUN_ID, *ENERGY}
EMPTY = "–"


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
        *_lever_order(summary),
        summary["run_id"],
    )


def _lever_order(summary: Mapping[str, Any]) -> tuple[int, ...]:
    """The run's levers in registry order, each as its value's place in the lever's display order (not compiled
    before compiled, fp16 before bf16), so that a point's lever rows follow it in a stable order."""
    values = run_levers(summary)
    return tuple(lever_rank(name, values[name]) for name in LEVER_FIELDS)


def markdown_columns(kind: str, rows: Sequence[Mapping[str, Any]]) -> list[str]:
    """The Markdown's columns: MARKDOWN's, and the first step's seconds (the compile cost) after N when a row of
    the table was compiled."""
    shown = list(MARKDOWN[kind])
    if kind != "baseline" and any(is_compiled(row) for row in rows):
        shown.insert(shown.index(f.REPEATS) + 1, f.FIRST_STEP_SECONDS)
    if kind != "baseline" and any(row.get(f.GPU_J_PER_SAMPLE) is not None for row in rows):
        shown.insert(shown.index(f.REPEATS) + 1 + (f.FIRST_STEP_SECONDS in shown), f.GPU_J_PER_SAMPLE)
    return shown


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
        notes += spread_note(rows) + hit_cap_note(rows) + warmup_never_settled_note(rows) + host_bound_note(rows)
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
    if f.FIRST_STEP_SECONDS in markdown_columns(kind, rows):
        notes.append(f"{labels.label(f.FIRST_STEP_SECONDS, kind)}: seconds of optimizer step 1 (median over the "
                     "repeats): torch.compile compiles there, so it holds the compile cost; the warm-up rule keeps it "
                     "out of the steady figure.")
    if f.GPU_J_PER_SAMPLE in markdown_columns(kind, rows):
        notes.append(energy_note(rows, kind))
    if kind == "comparison":  # MFU is a comparison column (CSV): say where it is empty for want of a peak
        notes += peak_notes([run for group in groups for run in group.finished], peak_tflops)
    for run in runs:
        notes += [f"{run['run_id']}: {warning}" for warning in run.get("warnings", [])]
    return Table(study=study["name"], title=study.get("title") or study["name"], kind=kind, frame=frame, notes=notes)


def energy_note(rows: Sequence[Mapping[str, Any]], kind: str) -> str:
    """What the J/sample column is, and why it is empty where it is (each reason once, with its rows)."""
    empty: dict[str, list[str]] = {}
    for row in rows:
        if row.get(f.GPU_J_PER_SAMPLE) is None and row.get(f.STATUS) == "ok":
            empty.setdefault(str(row.get(f.GPU_ENERGY_PROBLEM)), []).append(str(row[f.RUN_ID]))
    why = "".join(f" Empty for {', '.join(ids)}: {reason}." for reason, ids in empty.items())
    return (f"{labels.label(f.GPU_J_PER_SAMPLE, kind)}: the NVML total-energy counter's rise over the steady steps "
            "(the run's GPUs together) / the samples of those steps, median over repeats; power, J/token, the power "
            "integral (a cross-check), the training window's energy and RAPL CPU package energy are in the CSV "
            f"({f.GPU_MEAN_POWER_W}, {f.GPU_J_PER_TOKEN}, {f.GPU_POWER_INTEGRAL_J}, {f.TRAINING_GPU_ENERGY_J}, "
            f"{f.CPU_PACKAGE_ENERGY_J}).{why}")


def _where(name: str, kind: str) -> str:
    """How a note names a field: by its label where the Markdown shows it, else as a CSV column."""
    return labels.label(name, kind) if name in MARKDOWN[kind] else f"{labels.label(name, kind)} (CSV `{name}`)"


def _definition_notes(kind: str, peak_tflops: float | None) -> list[str]:
    lowest = (f" {_where(f.GPU_PEAK_MIN_MIB, kind)} = the smallest per-GPU maximum (peak minus it is the spread "
              "over GPUs: unbalanced sharding)." if f.GPU_PEAK_MIN_MIB in COLUMNS[kind] else "")
    notes = [
        ("GPU memory from nvidia-smi (5 s samples) of the run's own GPUs only (each once; other GPUs the logs hold "
         "are left out): peak = the highest GPU's maximum; average = mean of the per-GPU averages; mode = the most "
         "frequent value(s) over the training window (steps.csv's first step to its last; empty without one), "
         f"all ties listed.{lowest}"),
        (f"{_where(f.NVML_PEAK_MIB, kind)}: maximum of the fast NVML samples (catches spikes between nvidia-smi "
         "samples)."),
        ("CPU memory from psrecord's Real column (process tree, per node): peak = the fullest node's; average = "
         "mean of the node averages; mode = the most frequent value(s) over the training window."),
    ]
    if kind == "comparison":
        peak = (f"runtime.peak_tflops = {peak_tflops:g}" if peak_tflops
                else "looked up by the GPU's exact model name, zerosweep.run.flops")
        notes.append(
            f"{_where(f.TFLOPS_PER_GPU, kind)} = training FLOPs per token (6·N + 12·L·d·s) × steady tokens/s / GPUs; "
            f"{_where(f.MFU, kind)} = that / the dense peak for the run's precision (fp16/bf16 tensor; fp32 without "
            f"TF32) ({peak}; empty on CPU). Tokens/s, TFLOP/s and MFU count padding (every sample is max_length "
            f"tokens); {_where(f.STEADY_REAL_TOKENS_PER_SECOND, kind)} = steady tokens/s × the run's real "
            "(non-padding) token fraction (empty where the record lacks it)."
        )
    if kind == "baseline":
        notes.append("Eval Loss (Epoch N): the evaluation at the end of epoch N only (empty if none was there).")
    return notes


# --- writing -------------------------------------------------------------------------------------


def md_value(value: Any, name: str) -> str:
    if value is None or value == "":
        return EMPTY
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
    """A Markdown cell with its row: steady samples/s as '54.1 [53.3, 58.4]' (with † where a run hit the cap, ‡
    where a run's warm-up never settled, § where the row is host-bound, the status where the row did not finish),
    an efficiency with its
    interval, a verdict as verdict_cell writes it."""
    value = row.get(name)
    if name == f.STEADY_SAMPLES_PER_SECOND and value is None and row.get(f.STATUS) not in (None, "ok"):
        return str(row[f.STATUS])  # the row's one word on why its numbers are empty
    if name in labels.INTERVALS and value is not None:
        marks = [mark for flag, mark in STEADY_MARKS if row.get(flag)] if name == f.STEADY_SAMPLES_PER_SECOND else []
        return " ".join([labels.with_interval(row, name), *marks])
    if name in VERDICT_RATIOS:
        return verdict_cell(value, row.get(VERDICT_RATIOS[name]))
    return md_value(value, name)


def verdict_cell(verdict: str | None, ratio: float | None) -> str:
    """A verdict short enough for a table cell: 'faster +12.3 %'; 'within noise' without the change (its interval
    holds 0); an untested ratio as '+15.0 % (untested)'. The interval, p-value and test are in the CSV and notes."""
    if verdict is None:
        return EMPTY
    if ratio is None or verdict in (REFERENCE, "within noise"):
        return verdict
    change = change_interval_text(ratio)
    return f"{change} (untested)" if verdict == "untested" else f"{verdict} {change}"


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


def csv_pointer(study: str, kind: str, shown: Sequence[str] = ()) -> str:
    """The line under a Markdown table that says what else its CSV holds (the columns the Markdown, showing
    `shown` beyond MARKDOWN's, leaves out)."""
    extra = [labels.label(name, kind) for name in CSV_ONLY[kind] if name not in CSV_DETAIL and name not in shown]
    detail = ["each row's status and run ids"] if f.STATUS in CSV_ONLY[kind] else []
    if f.STEADY_SAMPLES_PER_SECOND_LOW in CSV_ONLY[kind]:
        detail.append("interval ends and run-level values")
    if f.THROUGHPUT_RATIO in CSV_ONLY[kind]:
        detail.append("verdict ratios with their intervals and p-values")
    detail.append("energy (J, mean power, J/sample, J/token, power integral, RAPL) and the GPUs' busy fraction")
    detail.append("the point and its speed levers as machine-readable fields")
    return (f"`{study}.csv` has every field, headed by field ids; beyond the columns here: "
            + "".join(f"{label}, " for label in extra) + ", ".join(detail) + ".")


def models_text(models: Iterable[Any]) -> str:
    """The models a table's rows ran, in row order ("unrecorded" for records from before setup.model said it)."""
    named = [str(model) for model in dict.fromkeys(models) if isinstance(model, str) and model]
    return ", ".join(named) or "unrecorded"


def markdown(table: Table) -> str:
    import pandas as pd

    frame = table.frame
    shown = markdown_columns(table.kind, table.rows)
    intro = f"Study `{table.study}`, {table.kind} table, {len(frame)} run(s); model: {models_text(frame[f.MODEL])}."
    lines = [f"# {table.title}", "", intro, ""]
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
        lines.append(_markdown_table(pd.DataFrame(body, columns=["Category", "Metric", *frame[f.CONFIG]])))
    else:
        rows = table.rows
        display = pd.DataFrame({labels.label(name, table.kind): [md_cell(row, name) for row in rows] for name in shown})
        lines.append(_markdown_table(display))
    lines += ["", "Runs, in table order: " + ", ".join(f"`{run}`" for run in frame[f.RUN_ID]) + ".", "",
              csv_pointer(table.study, table.kind, shown)]
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
