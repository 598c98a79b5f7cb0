"""`summary`: answer the workshop's quiz questions from the built tables, in sentences with numbers.

Reads only the tables' CSVs, by field id (`zerosweep.records`), never through a display label; the Markdown
files give the titles. It runs on whatever subset of studies was built; a question whose kind of table is
missing is skipped, and the answer says so.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ... import records as f
from ...plan import levers
from ..run_summary.throughput import RUN_VALUES
from ..statistics import Verdict, verdict_from_runs
from ..study.derived import WEAK_SCALING_HOLDS
from ..study.table_fields import LEVER_FIELDS, lever_rank
from ..study.table_rows import MEMORY_WORDS, REFERENCE, VERDICT_FIELDS
from ..study.tables import models_text, read_table
from .answer_phrases import fmt_change, fmt_mib, fmt_pct, is_number, recommendations, steady_text, verdict_phrase

# Relative change under which a memory figure counts as stable across a scaling study.
STABLE = 0.05


@dataclass
class Built:
    study: str
    title: str
    kind: str
    rows: list[dict[str, Any]]


def table_kind(header: Sequence[str]) -> str | None:
    if f.WEAK_SCALING_EFFICIENCY in header:
        return "scaling"
    if f.EVAL_LOSS_EPOCH1 in header:
        return "baseline"
    if f.TFLOPS_PER_GPU in header:
        return "comparison"
    return None


def load_tables(paths: Sequence[Path]) -> list[Built]:
    titles = {}
    for path in paths:
        if path.suffix == ".md":
            first = path.read_text(encoding="utf-8").splitlines()[:1]
            if first and first[0].startswith("# "):
                titles[path.stem] = first[0][2:].strip()
    tables = []
    for path in sorted(p for p in paths if p.suffix == ".csv"):
        frame = read_table(path)
        kind = table_kind(list(frame.columns))
        if kind is None:
            raise ValueError(f"{path}: not a zerosweep table (unknown columns {list(frame.columns)})")
        rows = frame.astype(object).where(frame.notna(), None).to_dict("records")
        tables.append(Built(path.stem, titles.get(path.stem, path.stem), kind, rows))  # type: ignore[arg-type]
    return tables


def _ok(rows: list[dict[str, Any]], column: str) -> list[dict[str, Any]]:
    return [row for row in rows if row[f.STATUS] == "ok" and isinstance(row.get(column), (int, float))]


def _skip(what: str) -> list[str]:
    return [f"Skipped: no {what} was built in this run of the workflow."]


def _oom_note(rows: list[dict[str, Any]]) -> str:
    oom = [row[f.CONFIG] for row in rows if row[f.STATUS] == "oom"]
    return f" Ran out of GPU memory: {', '.join(oom)}." if oom else ""


# --- questions -----------------------------------------------------------------------------------


def lowest_peak(tables: list[Built]) -> list[str]:
    # Only tables that compare stages answer this (the pin_memory study, say, holds one stage).
    comparisons = [t for t in tables if t.kind == "comparison" and len({row[f.ZERO_STAGE] for row in t.rows}) > 1]
    if not comparisons:
        return _skip("table comparing ZeRO stages")
    answers = []
    for table in comparisons:
        rows = _ok(table.rows, f.GPU_PEAK_MIB)
        if not rows:
            finished = any(row.get(f.STATUS) == "ok" for row in table.rows)
            reason = ("its runs recorded no GPU memory (no GPU monitor: CPU runs)" if finished
                      else "no configuration finished, so none has a peak")
            answers.append(f"*{table.title}*: {reason}.{_oom_note(table.rows)}")
            continue
        rows.sort(key=lambda row: row[f.GPU_PEAK_MIB])
        low, high = rows[0], rows[-1]
        peak = low[f.GPU_PEAK_MIB]
        exact = low.get(f.NVML_PEAK_MIB)
        text = (
            f"*{table.title}*: **{low[f.CONFIG]}** had the lowest peak GPU memory, {fmt_mib(peak)} (nvidia-smi"
        )
        text += f"; exact NVML peak {fmt_mib(exact)})" if isinstance(exact, (int, float)) else ")"
        if high is not low:
            top = high[f.GPU_PEAK_MIB]
            text += f", {fmt_pct((top - peak) / top)} below the highest, {high[f.CONFIG]} ({fmt_mib(top)})"
        ordered = " < ".join(f"{row[f.CONFIG]} ({row[f.GPU_PEAK_MIB]:.0f})" for row in rows)
        answers.append(f"{text}. From lowest to highest: {ordered}.{_oom_note(table.rows)}")
    return answers


def _comparison_rows(tables: list[Built]) -> list[dict[str, Any]]:
    """Every point of the comparison tables once (the first table's copy); which table's verdict a pair gets is
    pair_verdict's decision, from every table that holds the point (`_same_point`), not from this copy."""
    seen: dict[str, dict[str, Any]] = {}
    for table in tables:
        if table.kind == "comparison":
            for row in table.rows:
                seen.setdefault(row[f.RUN_ID], row)
    return list(seen.values())


# --- the verdict between two rows ------------------------------------------------------------------------


@dataclass(frozen=True)
class PairVerdict:
    """`after` against `before`: `table` is the study whose own verdict columns are quoted (`before` is its
    reference row), None where the pair was tested here from the rows' runs."""

    table: str | None
    throughput: Verdict | None
    memory: Verdict | None


def _same_point(a: dict[str, Any], b: dict[str, Any]) -> bool:
    # Studies share their runs (one directory per run id), so a point's row in two tables holds the same runs.
    return bool(a[f.RUN_ID] == b[f.RUN_ID] and a.get(f.RUNS) == b.get(f.RUNS))


def _row_in(table: Built, row: dict[str, Any]) -> dict[str, Any] | None:
    return next((mine for mine in table.rows if _same_point(mine, row)), None)


def run_values(cell: Any) -> list[float] | None:
    """A row's run-level cell (f.RUN_SAMPLES_PER_SECOND, f.RUN_PEAK_MIB: space-separated numbers) as numbers."""
    if is_number(cell):
        return [float(cell)]
    if not isinstance(cell, str) or not cell.strip():
        return None
    return [float(value) for value in cell.split()]


def _table_verdict(table: Built, reference: dict[str, Any], row: dict[str, Any], what: str) -> Verdict | None:
    """The verdict columns of `row` in `table`, measured against that table's reference row."""
    verdict, ratio, low, high, p = (row.get(name) for name in VERDICT_FIELDS[what])
    if verdict is None:
        return None
    ratio, low, high, p = (float(value) if is_number(value) else None for value in (ratio, low, high, p))
    # An untested row with an interval is a single run's: the table's within-run bootstrap (report/statistics).
    within_run = verdict == "untested" and low is not None
    estimator = f"ratio to the reference row of table `{table.study}`" + (
        ", a within-run interval" if within_run else "")
    return Verdict(str(verdict), ratio, low, high, p, test="the table's test, named in its notes",
                   n_row=_repeats(row), n_reference=_repeats(reference), estimator=estimator)


def _tested_from_runs(before: dict[str, Any], after: dict[str, Any], column: str, kind: str,
                      words: tuple[str, str], values: str) -> Verdict | None:
    """Welch on the two rows' run-level values in `column`, when `kind` (their estimator or monitor) is the same
    on both: values of two tables may be measured differently, and a test of unlike things would mean nothing."""
    mine, theirs = run_values(after.get(column)), run_values(before.get(column))
    if mine is None or theirs is None:
        return None
    if after.get(kind) != before.get(kind):
        return Verdict("untested", None, None, None, None, f"{values} measured differently: {before.get(kind)} vs "
                       f"{after.get(kind)}", len(mine), len(theirs), "none")
    return verdict_from_runs(mine, theirs, words=words, values=values)


def pair_verdict(before: dict[str, Any], after: dict[str, Any], tables: Sequence[Built]) -> PairVerdict:
    """The verdict on `after` against `before`. A table's verdict of a row holds against that table's reference
    row only, so it is quoted where one comparison table holds both rows with `before` as its reference; any
    other pair (across tables, or neither row the reference) is tested here from the rows' run-level values
    (Welch's t on the logs: statistics.verdict_from_runs)."""
    for table in tables:
        if table.kind != "comparison":
            continue
        reference, row = _row_in(table, before), _row_in(table, after)
        if reference is not None and row is not None and reference.get(f.THROUGHPUT_VERDICT) == REFERENCE:
            return PairVerdict(table.study, _table_verdict(table, reference, row, "throughput"),
                               _table_verdict(table, reference, row, "memory"))
    return PairVerdict(
        None,
        _tested_from_runs(before, after, f.RUN_SAMPLES_PER_SECOND, f.RUN_SAMPLES_ESTIMATOR, ("faster", "slower"),
                          RUN_VALUES.get(after.get(f.RUN_SAMPLES_ESTIMATOR) or "", "runs' steady samples/s")),
        _tested_from_runs(before, after, f.RUN_PEAK_MIB, f.RUN_PEAK_SOURCE, MEMORY_WORDS, "run peaks"),
    )


def _shape(row: dict[str, Any]) -> str:
    gpus = row[f.WORLD_SIZE]
    return f"{gpus} GPU{'s' * (gpus > 1)}" + (f" on {row[f.NODES]} nodes" if row[f.NODES] > 1 else "")


def _pair_sentence(subject: str, before: dict[str, Any], after: dict[str, Any], change: str,
                   verdict: PairVerdict) -> str:
    if after[f.STATUS] != "ok" or before[f.STATUS] != "ok":
        failed = after if after[f.STATUS] != "ok" else before
        what = "ran out of memory" if failed[f.STATUS] == "oom" else "left no valid sample"
        return f"{subject}: {failed[f.CONFIG]} {what} ({failed[f.STATUS]}), no comparison."
    parts = []
    tested = [verdict_phrase(verdict.throughput, "throughput")
              or "throughput difference untested (no run-level samples/s on both rows to test)"]
    tested += [phrase for phrase in [verdict_phrase(verdict.memory, "memory")] if phrase]
    verdicts = ": " + ", ".join(tested)
    steady = f.STEADY_SAMPLES_PER_SECOND
    if is_number(before.get(steady)) and is_number(after.get(steady)):
        parts.append(f"steady throughput went from {steady_text(before)} to {steady_text(after)} samples/s "
                     f"({fmt_change(before[steady], after[steady])}){verdicts}")
        verdicts = ""
    rate = f.TRAIN_SAMPLES_PER_SECOND
    if isinstance(before.get(rate), (int, float)) and isinstance(after.get(rate), (int, float)):
        parts.append(
            f"the Trainer's whole-run throughput went from {before[rate]:.2f} to {after[rate]:.2f} samples/s "
            f"({fmt_change(before[rate], after[rate])}){verdicts}"
        )
    runtime = f.TRAIN_RUNTIME
    if isinstance(before.get(runtime), (int, float)) and isinstance(after.get(runtime), (int, float)):
        parts.append(
            f"train runtime from {before[runtime]:.1f} s to {after[runtime]:.1f} s ({fmt_change(before[runtime], after[runtime])})"
        )
    for column, what in (
        (f.GPU_PEAK_MIB, "peak GPU memory"),
        (f.CPU_PEAK_MIB, "peak CPU memory"),
    ):
        if isinstance(before.get(column), (int, float)) and isinstance(after.get(column), (int, float)):
            parts.append(
                f"{what} from {fmt_mib(before[column])} to {fmt_mib(after[column])} ({fmt_change(before[column], after[column])})"
            )
    if not parts:
        return f"{subject}: both runs finished but recorded no comparable numbers."
    return f"{subject}: {change + ' ' if change else ''}{'; '.join(parts)}."


def offload_effect(tables: list[Built]) -> list[str]:
    rows = _comparison_rows(tables)
    if not rows:
        return _skip("ZeRO comparison table")
    pairs = []
    for on in sorted(
        (r for r in rows if r[f.OFFLOAD] == "cpu" and r[f.PIN_MEMORY] is False),
        key=lambda r: (r[f.WORLD_SIZE], r[f.ZERO_STAGE]),
    ):
        off = next(
            (
                r
                for r in rows
                if r[f.OFFLOAD] == "none"
                and r[f.ZERO_STAGE] == on[f.ZERO_STAGE]
                and r[f.GPUS_PER_NODE] == on[f.GPUS_PER_NODE]
                and r[f.NODES] == on[f.NODES]
            ),
            None,
        )
        if off is not None:
            pairs.append((off, on))
    if not pairs:
        return ["Skipped: no built table has the same ZeRO stage and GPU count both with and without CPU offload."]
    verdicts = [pair_verdict(off, on, tables) for off, on in pairs]
    answers = [
        _pair_sentence(f"ZeRO Stage {on[f.ZERO_STAGE]} on {_shape(on)}", off, on, "with CPU offload,", verdict)
        for (off, on), verdict in zip(pairs, verdicts)
    ]
    tested = [verdict.throughput.verdict for (off, on), verdict in zip(pairs, verdicts)
              if verdict.throughput is not None and off[f.STATUS] == on[f.STATUS] == "ok"]
    if tested:
        counts = {verdict: tested.count(verdict) for verdict in ("slower", "faster", "within noise", "untested")}
        answers.append(
            f"Overall, of {len(tested)} pair(s) tested against the no-offload row: CPU offload was slower beyond the "
            f"noise in {counts['slower']}, faster in {counts['faster']}, within the noise in "
            f"{counts['within noise']}, untested in {counts['untested']}."
        )
    else:
        answers.append("Overall: no pair's difference was tested (no pair has run-level figures or a table verdict "
                       "against its no-offload row), so no claim of faster or slower is made.")
    return answers


def pin_memory_effect(tables: list[Built]) -> list[str]:
    rows = _comparison_rows(tables)
    if not rows:
        return _skip("ZeRO comparison table")
    answers = []
    for pinned in (r for r in rows if r[f.OFFLOAD] == "cpu" and r[f.PIN_MEMORY] is True):
        plain = next(
            (
                r
                for r in rows
                if r[f.OFFLOAD] == "cpu"
                and r[f.PIN_MEMORY] is False
                and r[f.ZERO_STAGE] == pinned[f.ZERO_STAGE]
                and r[f.GPUS_PER_NODE] == pinned[f.GPUS_PER_NODE]
                and r[f.NODES] == pinned[f.NODES]
            ),
            None,
        )
        if plain is not None:
            answers.append(
                _pair_sentence(
                    f"ZeRO Stage {pinned[f.ZERO_STAGE]} + CPU offload on {_shape(pinned)}",
                    plain,
                    pinned,
                    "with pin_memory,",
                    pair_verdict(plain, pinned, tables),
                )
            )
    return answers or ["Skipped: no built table has an offloaded run both with and without pin_memory."]


def _trend(first: float, last: float) -> str:
    change = (last - first) / first
    if abs(change) <= STABLE:
        return f"stays stable ({fmt_change(first, last)}, within ±{100 * STABLE:.0f} %)"
    return f"{'increases' if change > 0 else 'decreases'} ({fmt_change(first, last)})"


def _repeats(row: dict[str, Any]) -> int:
    value = row.get(f.REPEATS)
    return int(value) if is_number(value) else 1


def weak_scaling(tables: list[Built]) -> list[str]:
    scaling = [t for t in tables if t.kind == "scaling"]
    if not scaling:
        return _skip("scaling table")
    answers = []
    for table in scaling:
        # Steady throughput is the primary figure (no compilation, no evaluation); the Trainer's whole-run one
        # stands in for records without it.
        steady = len(_ok(table.rows, f.STEADY_SAMPLES_PER_SECOND)) >= 2
        rate, speedup, eff, other = (
            (f.STEADY_SAMPLES_PER_SECOND, f.STEADY_SPEEDUP, f.STEADY_WEAK_SCALING_EFFICIENCY, f.WEAK_SCALING_EFFICIENCY)
            if steady else
            (f.TRAIN_SAMPLES_PER_SECOND, f.SPEEDUP, f.WEAK_SCALING_EFFICIENCY, f.STEADY_WEAK_SCALING_EFFICIENCY))
        rows = _ok(table.rows, rate)
        if len(rows) < 2:
            answers.append(f"*{table.title}*: fewer than two configurations finished; nothing to compare.")
            continue
        rows.sort(key=lambda row: row[f.WORLD_SIZE])
        first, last = rows[0], rows[-1]
        efficiency = last[eff]
        verdict = "holds" if efficiency >= WEAK_SCALING_HOLDS else "does not hold"
        name = "steady samples/s" if steady else "Train Samples/sec (the Trainer's whole run)"
        low, high = (steady_text(first), steady_text(last)) if steady else (f"{first[rate]:.2f}", f"{last[rate]:.2f}")
        text = (
            f"*{table.title}*: from {first[f.WORLD_SIZE]} to {last[f.WORLD_SIZE]} GPUs, {name} went from "
            f"{low} to {high}, a {last[speedup]:.2f}× speed-up "
            f"for {last[f.WORLD_SIZE] / first[f.WORLD_SIZE]:.0f}× the GPUs: weak-scaling efficiency {fmt_pct(efficiency)}"
        )
        secondary = last.get(other)
        if isinstance(secondary, (int, float)):
            where = "over the Trainer's whole run" if steady else "in the steady state"
            text += f" ({fmt_pct(secondary)} {where})"
        eff_low = last.get(f.STEADY_WEAK_SCALING_EFFICIENCY_LOW)
        eff_high = last.get(f.STEADY_WEAK_SCALING_EFFICIENCY_HIGH)
        threshold = f"{100 * WEAK_SCALING_HOLDS:.0f} %"
        if steady and isinstance(eff_low, (int, float)) and isinstance(eff_high, (int, float)):
            interval = f"95 % interval {fmt_pct(eff_low)}–{fmt_pct(eff_high)}"
            if eff_low >= WEAK_SCALING_HOLDS:
                text += f", so weak scaling **holds** ({interval}, above the {threshold} threshold)"
            elif eff_high < WEAK_SCALING_HOLDS:
                text += f", so weak scaling **does not hold** ({interval}, below the {threshold} threshold)"
            else:
                text += (f": its {interval} spans the {threshold} threshold, so whether weak scaling holds is within "
                         "the noise (more repeats narrow it)")
        elif all(_repeats(row) >= 2 for row in (first, last)):
            text += f", so weak scaling **{verdict}** (threshold {threshold})"
        else:  # one run at either end: its drift from run to run is not in the figure (report/statistics)
            text += (f": by the {threshold} threshold weak scaling {verdict}, from single runs "
                     "(run-to-run drift is not in this figure; `repeats: 2` or more for a firm answer)")
        per_gpu = [f"{row[f.WORLD_SIZE]}: {row[rate] / row[f.WORLD_SIZE]:.2f}" for row in rows]
        text += f". Samples/s per GPU: {', '.join(per_gpu)}."
        peaks = [
            row[f.GPU_PEAK_MIB] for row in rows if isinstance(row.get(f.GPU_PEAK_MIB), (int, float))
        ]
        if peaks:
            text += (
                f" Peak GPU memory per GPU ranges {fmt_mib(min(peaks))}–{fmt_mib(max(peaks))}"
                f" and {_trend(peaks[0], peaks[-1])} from the smallest to the largest configuration."
            )
        averages = [
            row[f.GPU_AVERAGE_MIB]
            for row in rows
            if isinstance(row.get(f.GPU_AVERAGE_MIB), (int, float))
        ]
        if averages:
            text += f" Average GPU memory {_trend(averages[0], averages[-1])}."
        failed = [
            f"{row[f.WORLD_SIZE]} GPU{'s' * (row[f.WORLD_SIZE] > 1)} ({row[f.STATUS]})"
            for row in table.rows
            if row[f.STATUS] != "ok"
        ]
        if failed:
            text += f" Did not finish: {', '.join(failed)}."
        answers.append(text)
    return answers


def baseline(tables: list[Built]) -> list[str]:
    found = [t for t in tables if t.kind == "baseline"]
    if not found:
        return _skip("baseline table")
    answers = []
    for table in found:
        for row in table.rows:
            if row[f.STATUS] != "ok":
                answers.append(f"*{table.title}*: {row[f.CONFIG]} did not finish ({row[f.STATUS]}).")
                continue
            parts = [
                f"final train loss {row[f.TRAIN_LOSS]:.4f}" if row.get(f.TRAIN_LOSS) is not None else None,
                f"final eval loss {row[f.EVAL_LOSS]:.4f}" if row.get(f.EVAL_LOSS) is not None else None,
                f"{row[f.TRAIN_SAMPLES_PER_SECOND]:.2f} train samples/s" if row.get(f.TRAIN_SAMPLES_PER_SECOND) is not None else None,
                f"GPU peak {fmt_mib(row[f.GPU_PEAK_MIB])}"
                if row.get(f.GPU_PEAK_MIB) is not None
                else None,
                f"CPU peak {fmt_mib(row[f.CPU_PEAK_MIB])}"
                if row.get(f.CPU_PEAK_MIB) is not None
                else None,
            ]
            answers.append(f"*{table.title}*: {row[f.CONFIG]}: " + ", ".join(p for p in parts if p) + ".")
    return answers


# The identity columns two rows of a lever pair share (with every other lever): the same matrix point otherwise.
POINT_COLUMNS = (f.ZERO_STAGE, f.OFFLOAD, f.PIN_MEMORY, f.GPUS_PER_NODE, f.NODES, f.EMULATED_NODES)


def lever_pairs(table: Built, name: str) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """Every pair of the table's rows that differ only in lever `name`, as (before, after) in the lever's display
    order (not compiled before compiled, fp16 before bf16)."""
    others = [column for column in (*POINT_COLUMNS, *LEVER_FIELDS) if column != name]
    # rows with every lever known (a table written before the levers existed has them empty)
    rows = [row for row in table.rows if all(levers.LEVERS[lever].allows(row.get(lever)) for lever in LEVER_FIELDS)]
    pairs = []
    for i, first in enumerate(rows):
        for second in rows[i + 1:]:
            if first[name] == second[name] or any(first.get(c) != second.get(c) for c in others):
                continue
            pairs.append((first, second) if lever_rank(name, first[name]) < lever_rank(name, second[name])
                         else (second, first))
    return pairs


def _lever_context(row: dict[str, Any], name: str) -> str:
    """The row's configuration label without lever `name`'s own label: what the pair has in common."""
    own = set(levers.LEVERS[name].labels.values())
    return ", ".join(part for part in str(row[f.CONFIG]).split(", ") if part not in own)


def speed_levers(tables: list[Built]) -> list[str]:
    """Per lever (registry order), every pair of rows of one comparison table that differ only in that lever: the
    change in throughput and memory with pair_verdict's verdict; none without such a pair."""
    answers: list[str] = []
    seen: set[tuple[str, str]] = set()
    for name, lever in levers.LEVERS.items():
        for table in (t for t in tables if t.kind == "comparison"):
            for before, after in lever_pairs(table, name):
                if (key := (before[f.RUN_ID], after[f.RUN_ID])) in seen:  # the same pair in another table
                    continue
                seen.add(key)
                subject = (f"*{table.title}*, {lever.labels[after[name]]} vs {lever.labels[before[name]]} "
                           f"({_lever_context(before, name)})")
                text = _pair_sentence(subject, before, after, "", pair_verdict(before, after, tables))
                first = f.FIRST_STEP_SECONDS
                if is_number(before.get(first)) and is_number(after.get(first)):
                    text += f" First optimizer step: {before[first]:.1f} s -> {after[first]:.1f} s."
                answers.append(text)
    return answers


QUESTIONS = (
    ("Baseline without DeepSpeed", baseline),
    ("1. Which ZeRO stage gave the lowest peak GPU memory?", lowest_peak),
    ("2. How do runtime and throughput change when CPU offloading is enabled?", offload_effect),
    ("3. What does pin_memory change with CPU offload?", pin_memory_effect),
    ("4. Does weak scaling hold (throughput per GPU and memory per GPU as GPUs are added)?", weak_scaling),
)


def render(tables: list[Built], tuned: Sequence[Path] = (), out: Path | None = None) -> str:
    lines = ["# DeepSpeed ZeRO benchmark: the workshop's questions, answered from the data", ""]
    built = ", ".join(f"`{t.study}` ({t.kind}; model: {models_text(row.get(f.MODEL) for row in t.rows)})"
                      for t in tables) or "none"
    lines += [f"Tables read: {built}.", ""]
    lines += [
        ("Faster, slower, more or less memory are said only where a test found a difference beyond the noise, "
         "with the difference, its 95 % interval and the test: a table's own verdict where the pair's first row is "
         "that table's reference row (the table's notes name its test), else a test of the pair from its runs "
         "(Welch's t on the log run medians or run peaks, >= 2 runs a side); otherwise the difference is within "
         "the noise or untested."),
        "",
    ]
    for heading, answer in QUESTIONS:
        lines += [f"## {heading}", ""] + [f"- {sentence}" for sentence in answer(tables)] + [""]
    levers_answers = speed_levers(tables)
    if levers_answers:
        lines += ["## Speed levers", "", "Pairs of rows of one table that differ in one lever only.", "",
                  *[f"- {sentence}" for sentence in levers_answers], ""]
    if tuned:
        lines += ["## Micro-batch recommendations (tune studies)", "", *recommendations(tuned, out), ""]
    return "\n".join(lines)


def add_arguments(parser: argparse.ArgumentParser, command: str) -> None:
    parser.add_argument("--out", type=Path, required=True, help="results/summary.md")
    parser.add_argument("tables", type=Path, nargs="*", help="the built tables (.csv, with their .md for titles)")
    parser.add_argument("--recommendations", type=Path, nargs="*", default=[],
                        help="results/tune/<study>/recommendation.md of each built tune study (linked)")


def run(args: argparse.Namespace) -> int:
    text = render(load_tables(args.tables), args.recommendations, args.out)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text, encoding="utf-8")
    print(text)
    return 0
