"""`summary`: answer the workshop's quiz questions from the built tables, in sentences with numbers.

Reads only the tables' CSVs (the Markdown files give the titles), so it runs on whatever subset of studies
was built; a question whose kind of table is missing is skipped, and the answer says so.
"""

from __future__ import annotations

import argparse
import csv
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .tables import WEAK_SCALING_HOLDS

# Relative change under which a memory figure counts as stable across a scaling study.
STABLE = 0.05


@dataclass
class Built:
    study: str
    title: str
    kind: str
    rows: list[dict[str, Any]]


def _number(text: str) -> Any:
    if text == "":
        return None
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return {"true": True, "false": False}.get(text, text)


def table_kind(header: Sequence[str]) -> str | None:
    if "Weak-Scaling Efficiency" in header:
        return "scaling"
    if "Final Train Loss" in header:
        return "baseline"
    if "Peak GPU Memory Used (MiB)" in header:
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
        with open(path, newline="", encoding="utf-8") as handle:
            reader = csv.DictReader(handle)
            rows = [{key: _number(value) for key, value in row.items()} for row in reader]
            kind = table_kind(reader.fieldnames or [])
        if kind is None:
            raise ValueError(f"{path}: not a zerosweep table (unknown columns {reader.fieldnames})")
        tables.append(Built(path.stem, titles.get(path.stem, path.stem), kind, rows))
    return tables


def _mib(value: float) -> str:
    return f"{value:,.0f} MiB"


def _pct(fraction: float, sign: bool = False) -> str:
    return f"{100 * fraction:{'+' if sign else ''}.1f} %"


def _change(old: float, new: float) -> str:
    return _pct((new - old) / old, sign=True)


def _ok(rows: list[dict[str, Any]], column: str) -> list[dict[str, Any]]:
    return [row for row in rows if row["Status"] == "ok" and isinstance(row.get(column), (int, float))]


def _skip(what: str) -> list[str]:
    return [f"Skipped: no {what} was built in this run of the workflow."]


def _oom_note(rows: list[dict[str, Any]]) -> str:
    oom = [row["DeepSpeed Config"] for row in rows if row["Status"] == "oom"]
    return f" Ran out of GPU memory: {', '.join(oom)}." if oom else ""


# --- questions -----------------------------------------------------------------------------------


def lowest_peak(tables: list[Built]) -> list[str]:
    # Only tables that compare stages answer this (the pin_memory study, say, holds one stage).
    comparisons = [t for t in tables if t.kind == "comparison" and len({row["ZeRO Stage"] for row in t.rows}) > 1]
    if not comparisons:
        return _skip("table comparing ZeRO stages")
    answers = []
    for table in comparisons:
        rows = _ok(table.rows, "Peak GPU Memory Used (MiB)")
        if not rows:
            finished = any(row.get("Status") == "ok" for row in table.rows)
            reason = ("its runs recorded no GPU memory (no GPU monitor: CPU runs)" if finished
                      else "no configuration finished, so none has a peak")
            answers.append(f"*{table.title}*: {reason}.{_oom_note(table.rows)}")
            continue
        rows.sort(key=lambda row: row["Peak GPU Memory Used (MiB)"])
        low, high = rows[0], rows[-1]
        peak = low["Peak GPU Memory Used (MiB)"]
        exact = low.get("Exact Peak GPU Memory (MiB)")
        text = (
            f"*{table.title}*: **{low['DeepSpeed Config']}** had the lowest peak GPU memory, {_mib(peak)} (nvidia-smi"
        )
        text += f"; exact NVML peak {_mib(exact)})" if isinstance(exact, (int, float)) else ")"
        if high is not low:
            top = high["Peak GPU Memory Used (MiB)"]
            text += f", {_pct((top - peak) / top)} below the highest, {high['DeepSpeed Config']} ({_mib(top)})"
        ordered = " < ".join(f"{row['DeepSpeed Config']} ({row['Peak GPU Memory Used (MiB)']:.0f})" for row in rows)
        answers.append(f"{text}. From lowest to highest: {ordered}.{_oom_note(table.rows)}")
    return answers


def _comparison_rows(tables: list[Built]) -> list[dict[str, Any]]:
    seen: dict[str, dict[str, Any]] = {}
    for table in tables:
        if table.kind == "comparison":
            for row in table.rows:
                seen.setdefault(row["Run"], row)
    return list(seen.values())


def _shape(row: dict[str, Any]) -> str:
    gpus = row["World Size"]
    return f"{gpus} GPU{'s' * (gpus > 1)}" + (f" on {row['Nodes']} nodes" if row["Nodes"] > 1 else "")


def _pair_sentence(subject: str, before: dict[str, Any], after: dict[str, Any], change: str) -> str:
    if after["Status"] != "ok" or before["Status"] != "ok":
        failed = after if after["Status"] != "ok" else before
        return f"{subject}: {failed['DeepSpeed Config']} ran out of memory ({failed['Status']}), no comparison."
    parts = []
    rate = "Train Samples/Second"
    if isinstance(before.get(rate), (int, float)) and isinstance(after.get(rate), (int, float)):
        parts.append(
            f"throughput went from {before[rate]:.2f} to {after[rate]:.2f} samples/s ({_change(before[rate], after[rate])})"
        )
    runtime = "Train Runtime (s)"
    if isinstance(before.get(runtime), (int, float)) and isinstance(after.get(runtime), (int, float)):
        parts.append(
            f"train runtime from {before[runtime]:.1f} s to {after[runtime]:.1f} s ({_change(before[runtime], after[runtime])})"
        )
    for column, what in (
        ("Peak GPU Memory Used (MiB)", "peak GPU memory"),
        ("Peak CPU Memory Used (MiB)", "peak CPU memory"),
    ):
        if isinstance(before.get(column), (int, float)) and isinstance(after.get(column), (int, float)):
            parts.append(
                f"{what} from {_mib(before[column])} to {_mib(after[column])} ({_change(before[column], after[column])})"
            )
    if not parts:
        return f"{subject}: both runs finished but recorded no comparable numbers."
    return f"{subject}: {change} {'; '.join(parts)}."


def offload_effect(tables: list[Built]) -> list[str]:
    rows = _comparison_rows(tables)
    if not rows:
        return _skip("ZeRO comparison table")
    pairs = []
    for on in sorted(
        (r for r in rows if r["Offload"] == "cpu" and r["Pin Memory"] is False),
        key=lambda r: (r["World Size"], r["ZeRO Stage"]),
    ):
        off = next(
            (
                r
                for r in rows
                if r["Offload"] == "none"
                and r["ZeRO Stage"] == on["ZeRO Stage"]
                and r["GPUs per Node"] == on["GPUs per Node"]
                and r["Nodes"] == on["Nodes"]
            ),
            None,
        )
        if off is not None:
            pairs.append((off, on))
    if not pairs:
        return ["Skipped: no built table has the same ZeRO stage and GPU count both with and without CPU offload."]
    answers = [
        _pair_sentence(f"ZeRO Stage {on['ZeRO Stage']} on {_shape(on)}", off, on, "with CPU offload,")
        for off, on in pairs
    ]
    rate = "Train Samples/Second"
    measured = [(off[rate], on[rate]) for off, on in pairs if _ok([off, on], rate) == [off, on]]
    if measured:
        slower = sum(after < before for before, after in measured)
        answers.append(f"Overall, CPU offload lowered throughput in {slower} of {len(measured)} stage/GPU-count pairs.")
    return answers


def pin_memory_effect(tables: list[Built]) -> list[str]:
    rows = _comparison_rows(tables)
    if not rows:
        return _skip("ZeRO comparison table")
    answers = []
    for pinned in (r for r in rows if r["Offload"] == "cpu" and r["Pin Memory"] is True):
        plain = next(
            (
                r
                for r in rows
                if r["Offload"] == "cpu"
                and r["Pin Memory"] is False
                and r["ZeRO Stage"] == pinned["ZeRO Stage"]
                and r["GPUs per Node"] == pinned["GPUs per Node"]
                and r["Nodes"] == pinned["Nodes"]
            ),
            None,
        )
        if plain is not None:
            answers.append(
                _pair_sentence(
                    f"ZeRO Stage {pinned['ZeRO Stage']} + CPU offload on {_shape(pinned)}",
                    plain,
                    pinned,
                    "with pin_memory,",
                )
            )
    return answers or ["Skipped: no built table has an offloaded run both with and without pin_memory."]


def _trend(first: float, last: float) -> str:
    change = (last - first) / first
    if abs(change) <= STABLE:
        return f"stays stable ({_change(first, last)}, within ±{100 * STABLE:.0f} %)"
    return f"{'increases' if change > 0 else 'decreases'} ({_change(first, last)})"


def weak_scaling(tables: list[Built]) -> list[str]:
    scaling = [t for t in tables if t.kind == "scaling"]
    if not scaling:
        return _skip("scaling table")
    answers = []
    for table in scaling:
        rows = _ok(table.rows, "Train Samples/sec")
        if len(rows) < 2:
            answers.append(f"*{table.title}*: fewer than two configurations finished; nothing to compare.")
            continue
        rows.sort(key=lambda row: row["GPUs"])
        first, last = rows[0], rows[-1]
        efficiency = last["Weak-Scaling Efficiency"]
        verdict = "holds" if efficiency >= WEAK_SCALING_HOLDS else "does not hold"
        text = (
            f"*{table.title}*: from {first['GPUs']} to {last['GPUs']} GPUs, Train Samples/sec went from "
            f"{first['Train Samples/sec']:.2f} to {last['Train Samples/sec']:.2f}, a {last['Speed-up']:.2f}× speed-up "
            f"for {last['GPUs'] / first['GPUs']:.0f}× the GPUs: weak-scaling efficiency {_pct(efficiency)}"
        )
        steady = last.get("Steady Weak-Scaling Efficiency")
        if isinstance(steady, (int, float)):
            text += f" ({_pct(steady)} in the steady state)"
        text += f", so weak scaling **{verdict}** (threshold {100 * WEAK_SCALING_HOLDS:.0f} %)"
        per_gpu = [f"{row['GPUs']}: {row['Train Samples/sec'] / row['GPUs']:.2f}" for row in rows]
        text += f". Samples/s per GPU: {', '.join(per_gpu)}."
        peaks = [
            row["Peak GPU Memory (MiB)"] for row in rows if isinstance(row.get("Peak GPU Memory (MiB)"), (int, float))
        ]
        if peaks:
            text += (
                f" Peak GPU memory per GPU ranges {_mib(min(peaks))}–{_mib(max(peaks))}"
                f" and {_trend(peaks[0], peaks[-1])} from the smallest to the largest configuration."
            )
        averages = [
            row["Average GPU Memory (MiB)"]
            for row in rows
            if isinstance(row.get("Average GPU Memory (MiB)"), (int, float))
        ]
        if averages:
            text += f" Average GPU memory {_trend(averages[0], averages[-1])}."
        failed = [
            f"{row['GPUs']} GPU{'s' * (row['GPUs'] > 1)} ({row['Status']})"
            for row in table.rows
            if row["Status"] != "ok"
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
            if row["Status"] != "ok":
                answers.append(f"*{table.title}*: {row['Configuration']} did not finish ({row['Status']}).")
                continue
            parts = [
                f"final train loss {row['Final Train Loss']:.4f}" if row.get("Final Train Loss") is not None else None,
                f"final eval loss {row['Eval Loss (Final)']:.4f}" if row.get("Eval Loss (Final)") is not None else None,
                f"{row['Train Samples/sec']:.2f} train samples/s" if row.get("Train Samples/sec") is not None else None,
                f"GPU peak {_mib(row['GPU Peak Usage (MiB)'])}"
                if row.get("GPU Peak Usage (MiB)") is not None
                else None,
                f"CPU peak {row['CPU Peak Usage (MB)']:,.0f} MB"
                if row.get("CPU Peak Usage (MB)") is not None
                else None,
            ]
            answers.append(f"*{table.title}*: {row['Configuration']}: " + ", ".join(p for p in parts if p) + ".")
    return answers


QUESTIONS = (
    ("Baseline without DeepSpeed", baseline),
    ("1. Which ZeRO stage gave the lowest peak GPU memory?", lowest_peak),
    ("2. How do runtime and throughput change when CPU offloading is enabled?", offload_effect),
    ("3. What does pin_memory change with CPU offload?", pin_memory_effect),
    ("4. Does weak scaling hold (throughput per GPU and memory per GPU as GPUs are added)?", weak_scaling),
)


def render(tables: list[Built]) -> str:
    lines = ["# DeepSpeed ZeRO benchmark: the workshop's questions, answered from the data", ""]
    built = ", ".join(f"`{t.study}` ({t.kind})" for t in tables) or "none"
    lines += [f"Tables read: {built}.", ""]
    for heading, answer in QUESTIONS:
        lines += [f"## {heading}", ""] + [f"- {sentence}" for sentence in answer(tables)] + [""]
    return "\n".join(lines)


def add_arguments(parser: argparse.ArgumentParser, command: str) -> None:
    parser.add_argument("--out", type=Path, required=True, help="results/summary.md")
    parser.add_argument("tables", type=Path, nargs="*", help="the built tables (.csv, with their .md for titles)")


def run(args: argparse.Namespace) -> int:
    text = render(load_tables(args.tables))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text, encoding="utf-8")
    print(text)
    return 0
