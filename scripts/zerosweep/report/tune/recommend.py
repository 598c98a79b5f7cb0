"""`recommend`: a tune study's answer. For each memory budget, the configuration and micro-batch with the highest
measured throughput whose measured peak fits, and the one with the least GPU energy per sample; each
configuration's exact largest micro-batch and its
measurement; the memory each configuration needs at the workshop's micro-batch (measured, or predicted and
labelled so); the memory model's prediction beside every measured peak; the throughput-memory Pareto plot.

Writes <out-dir>/recommendation.md (all sections) and one CSV per section (pandas).
"""

from __future__ import annotations

import argparse
import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from ...jsonio import read_json
from ...plan.models import model_label
from ...plan.tune.memory_model import relative_error
from ...plan.tune.search import within_budget
from ...plan.tune.studies import IN_PROCESS, SEPARATE_PROCESS
from . import pareto_plot
from .memory_fit import MemoryModel, headline
from .tune_records import run_outcome

GIB = 1024.0  # MiB per GiB
GPU_MEMORY = "the GPU's memory"


def _gib(mib: float | None) -> float | None:
    return None if mib is None else mib / GIB


def _percent(fraction: float | None) -> float | None:
    return None if fraction is None else 100.0 * fraction


def gpu_memory_gib(runs: Sequence[Mapping[str, Any]]) -> float | None:
    """The smallest GPU memory the runs' GPUs report (nvidia-smi memory.total), in GiB rounded down to 0.1 (so
    that what fits the budget fits the GPU); None without a GPU record (CPU ranks, older outcomes)."""
    totals = [float(total) for run in runs if (total := run.get("gpu_total_mib")) is not None]
    return math.floor(10 * min(totals) / GIB) / 10 if totals else None


def study_budgets(configured_gib: Sequence[float], runs: Sequence[Mapping[str, Any]]) -> dict[float, str]:
    """The budgets, each with what it is: the configured ones (""), and the GPU's own memory where it is larger
    than them all (what the whole GPU allows: the recommendation for running on this GPU alone)."""
    budgets = {float(budget): "" for budget in configured_gib}
    gpu = gpu_memory_gib(runs)
    if gpu is not None and gpu > max(budgets):
        budgets[gpu] = GPU_MEMORY
    return budgets


def budget_text(gib: float, source: str = "") -> str:
    """'80 GiB', '140.4 GiB (the GPU's memory)'."""
    return f"{gib:g} GiB" + (f" ({source})" if source else "")


def screen_columns(screen: Mapping[str, Any] | None, point: str) -> dict[str, Any]:
    """A point's screen probe: its rank and samples/s at the screen micro-batch (none without screening)."""
    if not screen:
        return {}
    probe = next(probe for probe in screen["probes"] if probe["point_id"] == point)
    return {"Screen rank": screen["ranking"].index(point) + 1,
            f"Screen samples/s (micro-batch {screen['micro_batch']})": probe["samples_per_second"]
            if probe["status"] == "ok" else None}


def screened_out_rows(screen: Mapping[str, Any] | None) -> list[dict[str, Any]]:
    """The points the screen left unsearched, with why."""
    if not screen:
        return []
    rows = []
    for probe in screen["probes"]:
        if probe["point_id"] in screen["kept"]:
            continue
        outcome = "ran out of memory" if probe["status"] == "oom" else "slower"
        rows.append({"Configuration": probe["label"], "Point": probe["point_id"],
                     "Boundary": f"not searched: {outcome} at the screen's micro-batch {screen['micro_batch']} "
                                 f"(the {screen['keep']} fastest are searched{screen_note_reference(screen)})",
                     "Probes": 1, "Status": "screened out", **screen_columns(screen, probe["point_id"])})
    return rows


def candidates_table(searches: Sequence[Mapping[str, Any]], measured: Mapping[str, Mapping[str, Any]],
                     model: MemoryModel, screen: Mapping[str, Any] | None = None) -> pd.DataFrame:
    rows = []
    for search in searches:
        run = measured.get(search["point_id"])
        predicted = model.predict(search["point_id"], search["max_fit"]) if search["max_fit"] else None
        peak = run["peak_mib"] if run else None
        rows.append({
            "Configuration": search["label"], "Point": search["point_id"],
            "Largest micro-batch": search["max_fit"],
            "Boundary": ("search cap: may fit more" if search["capped"] else
                         f"exact ({search['first_oom']} ran out of memory)") + ("" if search["consistent"] else
                                                                              "; outcomes not monotone"),
            "Probes": len(search["probes"]), "Found by": search.get("boundary_found_by"),
            "Measured run": run["run_id"] if run else None,
            "Status": run["status"] if run else ("nothing fits" if search["max_fit"] == 0 else "missing"),
            "Gradient accumulation": run["gradient_accumulation_steps"] if run else None,
            "Global batch": run["global_batch_size"] if run else None,
            "Samples/s": run["samples_per_second"] if run else None,
            "Samples/s low": run["samples_per_second_low"] if run else None,
            "Samples/s high": run["samples_per_second_high"] if run else None,
            "TFLOP/s per GPU": run["tflops_per_gpu"] if run else None,
            "MFU (%)": _percent(run["mfu"]) if run else None,
            "Peak (GiB)": _gib(peak), "Fitted peak (GiB)": _gib(predicted),  # in sample: the boundary probe is in the fit
            "Fit error (%)": None if peak is None else _percent(relative_error(predicted, peak)),
            **screen_columns(screen, search["point_id"]),
        })
    searched = pd.DataFrame(rows).sort_values("Samples/s", ascending=False, na_position="last")
    table = pd.concat([searched, pd.DataFrame(screened_out_rows(screen))], ignore_index=True)
    counts = [column for column in ("Largest micro-batch", "Probes", "Gradient accumulation", "Global batch",
                                    "Screen rank") if column in table]
    return table.astype({column: "Int64" for column in counts})  # counts stay integers beside empty cells


def measurement_seconds(search: Mapping[str, Any], measurement: Mapping[str, Any] | None) -> float | None:
    """The device-seconds of a configuration's measurement run that its search did not already pay: 0 where the
    measurement is the search's own ordinary boundary probe (tune.measure_steps null, separate-process); the
    ordinary run's where an in-process probe or other settings stand beside it (0 without a measurement: nothing
    fit); None where its time is unknown."""
    if measurement is None:
        return 0.0
    ordinary = {probe["run_id"] for probe in search["probes"] if probe.get("search_mode") != IN_PROCESS}
    if measurement["run_id"] in ordinary:
        return 0.0
    seconds = measurement.get("device_seconds")
    return None if seconds is None else float(seconds)


def cost_table(searches: Sequence[Mapping[str, Any]], screen: Mapping[str, Any] | None,
               budgets: Sequence[Mapping[str, Any]],
               measured: Mapping[str, Mapping[str, Any]] | None = None) -> pd.DataFrame:
    """What the search cost: per searched configuration its mode, which mode witnessed its boundary, its probes
    and device-seconds (job wall time x GPUs, or ranks on CPU; tune_records.search_cost); the screen probes of the
    configurations it left out and the budget searches' own probes; the total. Measurements apart, in a column of
    their own (`measured`: each point's measurement run): an in-process search's boundary is re-run as an ordinary
    run even where the separate-process search's boundary probe is its measurement, and the comparison shows it."""
    measured = measured or {}
    searched = {probe["run_id"] for search in searches for probe in search["probes"]}
    rows = [{"Configuration": search["label"], "Point": search["point_id"], "Search mode": search.get("search_mode"),
             "Boundary found by": search.get("boundary_found_by"),
             "Confirmed by an ordinary run": "; ".join(f"{mb}: {why}" for mb, why in
                                                       (search.get("in_process_doubts") or {}).items()) or None,
             "In-process probes": search.get("probes_in_process"),
             "Ordinary probes": search.get("probes_separate_process"),
             "Device-seconds": search.get("device_seconds"),
             "Measurement device-seconds": measurement_seconds(search, measured.get(search["point_id"]))}
            for search in searches]
    extra = [probe for probe in [*(screen or {}).get("probes", []),
                                 *(probe for budget in budgets for probe in budget["probes"])]
             if probe["run_id"] not in searched and probe.get("search_mode") != IN_PROCESS]
    extra = list({probe["run_id"]: probe for probe in extra}.values())
    if extra:
        rows.append({"Configuration": "screen and budget probes outside the searches", "Point": None,
                     "Search mode": SEPARATE_PROCESS, "Ordinary probes": len(extra), "In-process probes": 0,
                     "Device-seconds": None if any(probe.get("device_seconds") is None for probe in extra)
                     else sum(float(probe["device_seconds"]) for probe in extra)})
    table = pd.DataFrame(rows)
    if table.empty:
        return table
    seconds = table["Device-seconds"]
    total = {"Configuration": "total", "In-process probes": table["In-process probes"].sum(),
             "Ordinary probes": table["Ordinary probes"].sum(),
             "Device-seconds": None if seconds.isna().any() else float(seconds.sum()),
             "Measurement device-seconds": None if table["Measurement device-seconds"].isna().any()
             else float(table["Measurement device-seconds"].sum())}
    table = pd.concat([table, pd.DataFrame([total])], ignore_index=True)
    return table.astype({"In-process probes": "Int64", "Ordinary probes": "Int64"})


def screen_note_reference(screen: Mapping[str, Any]) -> str:
    return f", and the reference {screen['reference']}" if screen.get("reference") else ""


def screen_note(screen: Mapping[str, Any] | None) -> str:
    if not screen:
        return ""
    return (f" Screened first: every configuration probed at micro-batch {screen['micro_batch']}, the "
            f"{screen['keep']} fastest{screen_note_reference(screen)} searched (tune.screen_micro_batch, screen_keep, screen_reference).")


def budget_search_table(budgets: Sequence[Mapping[str, Any]]) -> pd.DataFrame:
    """Each budget search: the configuration, how far it got and how it was chosen."""
    return pd.DataFrame([{
        "Budget (GiB)": budget["budget_gib"], "Configuration": budget["label"] or "none",
        "Largest micro-batch within the budget": budget["max_within"],
        "Exact": "yes" if budget["exact"] else "no (the next micro-batch was not probed)",
        "Probes": ", ".join(f"{probe['micro_batch']} {'within' if within_budget(probe, budget['budget_gib']) else 'over'}"
                            for probe in budget["probes"]),
        "Basis": budget["basis"]} for budget in budgets])


def fitting_runs(runs: Sequence[Mapping[str, Any]], budget_gib: float) -> list[Mapping[str, Any]]:
    """The measured runs a budget holds: finished, with a steady throughput, their measured peak within it."""
    return [run for run in runs if run["status"] == "ok" and run["peak_mib"] is not None
            and run["samples_per_second"] is not None and run["peak_mib"] <= budget_gib * GIB]


def most_efficient(runs: Sequence[Mapping[str, Any]]) -> Mapping[str, Any] | None:
    """The run with the least GPU energy per sample over its steady steps (report/run_summary/energy.run_energy);
    None where no run has that figure (CPU ranks, GPUs without NVML's energy counter)."""
    measured = [run for run in runs if run.get("gpu_j_per_sample") is not None]
    return min(measured, key=lambda run: float(run["gpu_j_per_sample"])) if measured else None


def budget_table(runs: Sequence[Mapping[str, Any]], budgets_gib: Sequence[float],
                 sources: Mapping[float, str] | None = None) -> pd.DataFrame:
    """Per budget: the fastest measured run whose measured peak fits it (every measured configuration, lever
    points among them), with its energy per sample. `sources`: what a budget is, where it is not a configured one
    (study_budgets)."""
    rows = []
    for budget in sorted(budgets_gib):
        named = {"Budget": budget_text(budget, (sources or {}).get(budget, "")), "Budget (GiB)": budget}
        fitting = fitting_runs(runs, budget)
        if not fitting:
            rows.append({**named, "Configuration": "nothing measured fits"})
            continue
        best = max(fitting, key=lambda run: run["samples_per_second"])
        rows.append({
            **named, "Configuration": best["label"], "Micro-batch": best["micro_batch"],
            "Gradient accumulation": best["gradient_accumulation_steps"], "Run": best["run_id"],
            "Peak (GiB)": _gib(best["peak_mib"]), "Samples/s": best["samples_per_second"],
            "Samples/s low": best["samples_per_second_low"], "Samples/s high": best["samples_per_second_high"],
            "TFLOP/s per GPU": best["tflops_per_gpu"], "MFU (%)": _percent(best["mfu"]),
            "J/sample": best.get("gpu_j_per_sample"),
        })
    return pd.DataFrame(rows)


def efficiency_table(runs: Sequence[Mapping[str, Any]], budgets_gib: Sequence[float],
                     sources: Mapping[float, str] | None = None) -> pd.DataFrame:
    """Per budget: the most energy-efficient measured run whose measured peak fits it (most_efficient), beside the
    fastest of budget_table."""
    rows = []
    for budget in sorted(budgets_gib):
        named = {"Budget": budget_text(budget, (sources or {}).get(budget, "")), "Budget (GiB)": budget}
        best = most_efficient(fitting_runs(runs, budget))
        if best is None:
            rows.append({**named, "Configuration": "no measured run that fits has an energy figure"})
            continue
        rows.append({
            **named, "Configuration": best["label"], "Micro-batch": best["micro_batch"],
            "Gradient accumulation": best["gradient_accumulation_steps"], "Run": best["run_id"],
            "Peak (GiB)": _gib(best["peak_mib"]), "J/sample": best["gpu_j_per_sample"],
            "GPU power (W)": best.get("gpu_mean_power_w"), "Samples/s": best["samples_per_second"],
            "Samples/s low": best["samples_per_second_low"], "Samples/s high": best["samples_per_second_high"],
        })
    return pd.DataFrame(rows)


def workshop_table(searches: Sequence[Mapping[str, Any]], model: MemoryModel, micro_batch: int,
                   budgets_gib: Sequence[float]) -> pd.DataFrame:
    """Which budget each configuration needs at the workshop's micro-batch: a probe's peak where one ran there."""
    rows = []
    for search in searches:
        ran = next((probe for probe in search["probes"] if probe["micro_batch"] == micro_batch), None)
        if ran is not None and ran["status"] == "ok" and ran["peak_mib"] is not None:
            peak, basis = ran["peak_mib"], f"measured ({ran['run_id']})"
        elif ran is not None and ran["status"] == "oom":
            peak, basis = None, f"ran out of memory ({ran['run_id']})"
        elif search["first_oom"] is not None and micro_batch > search["first_oom"]:
            peak, basis = None, f"out of memory (micro-batch {search['first_oom']} already ran out)"
        else:
            peak = model.predict(search["point_id"], micro_batch)
            basis = "predicted (memory model)" if peak is not None else "no data"
        needed = next((budget for budget in sorted(budgets_gib) if peak is not None and peak <= budget * GIB), None)
        rows.append({"Configuration": search["label"], "Point": search["point_id"], "Micro-batch": micro_batch,
                     "Peak (GiB)": _gib(peak), "Basis": basis,
                     "Smallest budget that holds it (GiB)": needed})
    return pd.DataFrame(rows)


def memory_table(probes: Sequence[Mapping[str, Any]], model: MemoryModel) -> pd.DataFrame:
    """Every probe that fit: predicted by the model refitted without it (left out, the test), then the in-sample
    fit it took part in."""
    rows = []
    for probe in probes:
        if probe["status"] != "ok" or probe["peak_mib"] is None:
            continue
        measured = float(probe["peak_mib"])
        fit = model.fits.get(probe["point_id"])
        fitted = model.predict(probe["point_id"], probe["micro_batch"])
        left_out = model.left_out(probe, probes)
        rows.append({
            "Run": probe["run_id"], "Configuration": probe["label"], "Micro-batch": probe["micro_batch"],
            "Model states, ZeRO paper (MiB)": model.states_mib(probe["point_id"], "zero_paper"),
            "Model states, DeepSpeed (MiB)": model.states_mib(probe["point_id"], "deepspeed"),
            "Measured peak (MiB)": measured,
            "Left-out prediction (MiB)": left_out.predicted_mib,
            "Left-out error (%)": _percent(relative_error(left_out.predicted_mib, measured)),
            "Left-out fit from": left_out.source or "no fit (the others fit at fewer than two micro-batches)",
            "Fixed (MiB)": fit.fixed_mib if fit else None, "Per sample (MiB)": fit.per_sample_mib if fit else None,
            "Fit from": fit.source if fit else "no fit (fewer than two micro-batches fit)",
            "Fitted peak (MiB)": fitted,
            "Fit error (%)": _percent(relative_error(fitted, measured)),
        })
    return pd.DataFrame(rows)


def scaling_table(searches: Sequence[Mapping[str, Any]], model: MemoryModel, budgets_gib: Sequence[float],
                  worlds: Sequence[tuple[int, int]], sources: Mapping[float, str] | None = None) -> pd.DataFrame:
    """Predicted largest micro-batch per budget at GPU counts that were not run (labelled a prediction)."""
    rows = []
    for search in searches:
        fit = model.fits.get(search["point_id"])
        if fit is None or fit.per_sample_mib <= 0:
            continue
        for gpus, nodes in worlds:
            states = model.states_mib(search["point_id"], world=(gpus, nodes))
            row: dict[str, Any] = {"Configuration": search["label"], "GPUs": gpus * nodes,
                                   "Model states (MiB, predicted)": states}
            for budget in sorted(budgets_gib):
                within = budget_text(budget, (sources or {}).get(budget, ""))
                row[f"Micro-batch within {within} (predicted)"] = fit.largest_micro_batch(states, budget * GIB)
            rows.append(row)
    return pd.DataFrame(rows)


def _cell(value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):  # an empty cell
        return ""
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() and abs(value) >= 1 else f"{value:.2f}"
    return str(value)


def markdown_table(frame: pd.DataFrame) -> str:
    """Samples/s with its interval in one cell ("low-high" in brackets; CSV keeps separate columns)."""
    if frame.empty:
        return "(no rows)"
    shown = frame.copy()
    if "Budget" in shown:  # the budget in words ('140.4 GiB (the GPU's memory)'); the CSV also keeps the number
        shown = shown.drop(columns=["Budget (GiB)"])
    if "Samples/s low" in shown:
        shown["Samples/s"] = [_cell(value) + (f" ({_cell(low)}-{_cell(high)})" if _cell(low) and _cell(high) else "")
                              for value, low, high in zip(shown["Samples/s"], shown["Samples/s low"],
                                                          shown["Samples/s high"])]
        shown = shown.drop(columns=["Samples/s low", "Samples/s high"])
    body = shown.astype(object).map(_cell)
    return str(body.to_markdown(index=False, disable_numparse=True))


def markdown(title: str, model: str, sections: Sequence[tuple[str, str, pd.DataFrame]], plot_name: str) -> str:
    lines = [f"# {title}", "", f"Model: {model}.", ""]
    for heading, note, frame in sections:
        lines += [f"## {heading}", ""] + ([note, ""] if note else []) + [markdown_table(frame), ""]
    lines += ["## Throughput vs peak memory", "", f"![throughput vs peak memory]({plot_name})", ""]
    return "\n".join(lines)


def _unique_runs(runs: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    return list({run["run_id"]: run for run in runs}.values())


def recommend(study: Mapping[str, Any], searches: Sequence[Mapping[str, Any]],
              measurements: Sequence[Mapping[str, Any]], out_dir: Path, screen: Mapping[str, Any] | None = None,
              budgets: Sequence[Mapping[str, Any]] = ()) -> dict[str, pd.DataFrame]:
    """screen: the tune-screen record (a screening study); budgets: tune-budget records (tune.fill_budgets)."""
    tune = study["tune"]
    probes = _unique_runs([probe for search in searches for probe in search["probes"]]
                          + [probe for budget in budgets for probe in budget["probes"]]
                          + list((screen or {}).get("probes", [])))
    model = MemoryModel(study, probes)
    measured: dict[str, Mapping[str, Any]] = {}
    for search in searches:  # the measurement at the boundary; the boundary probe when they are the same run
        matches = [run for run in measurements
                   if run["point_id"] == search["point_id"] and run["micro_batch"] == search["max_fit"]]
        if matches:
            measured[search["point_id"]] = matches[0]
    # a measurement that is the boundary probe's ordinary run stands for that probe (an in-process probe has the
    # same run id)
    all_runs = _unique_runs([*probes, *measured.values()])
    sources = study_budgets(tune["budgets_gib"], all_runs)
    budget_list = list(sources)
    unit = "GPU" if study["settings"]["runtime"]["device"] == "cuda" else "CPU rank (host memory)"
    tables = {
        "recommendation": budget_table(all_runs, budget_list, sources),
        "energy_efficiency": efficiency_table(all_runs, budget_list, sources),
        "candidates": candidates_table(searches, measured, model, screen),
        "workshop_budget": workshop_table(searches, model, int(tune["workshop_micro_batch"]), budget_list),
        "memory_model": memory_table(probes, model),
        "memory_scaling": scaling_table(searches, model, budget_list, [(2, 1), (4, 1), (8, 1)], sources),
        "budget_searches": budget_search_table(budgets),
        "search_cost": cost_table(searches, screen, budgets, measured),
    }
    out_dir.mkdir(parents=True, exist_ok=True)
    for name, frame in tables.items():
        frame.to_csv(out_dir / f"{name}.csv", index=False)
    sections = [
        ("Recommendation per memory budget",
         (f"The fastest measured run whose measured peak per {unit} fits each budget (probes and measurements; "
         "short runs, steady samples/s). Budgets: tune.budgets_gib, and the GPU's own memory (nvidia-smi "
         "memory.total, rounded down to 0.1 GiB) where it is larger than them all. J/sample: the GPUs' energy "
         "(NVML's total-energy counter) over the run's steady steps per sample trained in them."),
         tables["recommendation"]),
        ("Most energy-efficient run per memory budget",
         (f"The measured run with the least GPU energy per sample (J/sample, as above) whose measured peak per {unit} "
          "fits each budget; empty where no run that fits has an energy figure (CPU ranks, a GPU or driver without "
          "NVML's energy counter)."), tables["energy_efficiency"]),
        ("Largest micro-batch per configuration",
         ("Found by probing (doubling to the first OOM, or stepping from the memory model's guess, then bisection); "
          "measured at that micro-batch." + screen_note(screen)),
         tables["candidates"]),
        (f"Memory needed at the workshop's micro-batch ({tune['workshop_micro_batch']})", "", tables["workshop_budget"]),
        ("Memory model: predicted vs measured peak",
         (headline(model, probes) + "\n\nPeak = model states (DeepSpeed's accounting) + fixed + per sample x "
          "micro-batch, the line fitted by least squares to the configuration's probes (pooled over all points' "
          "probes where a configuration fit at fewer than two micro-batches). Left out: the same rule refitted "
          "without the probe, then asked for it (the test). Fit: the line the probe itself helped fit (in sample; "
          "a line through two probes matches both exactly)."), tables["memory_model"]),
        ("Cost of the search",
         (f"tune.search_mode {tune['search_mode']}. Device-seconds: each job's wall time x its "
          f"{'GPUs' if unit == 'GPU' else 'ranks'} (an in-process job once for all its probes). Measurement "
          "device-seconds: the measurement run's, where the search did not already pay for it (0: the boundary "
          "probe is the measurement). "
          "Boundary found by: the mode of the probes that witness it (its largest fit and its first OOM); an "
          "in-process outcome in doubt is confirmed by an ordinary run."), tables["search_cost"]),
        ("Predictions for GPU counts not run",
         ("Model states sharded over the new world size; activations per sample unchanged (data parallel). "
         "Predictions, not measurements."), tables["memory_scaling"]),
    ]
    if budgets:
        sections.insert(1, ("Budget searches", (
            f"tune.fill_budgets {tune['fill_budgets']}: per budget, the fastest searched configuration the memory "
            "model predicts to fit, probed from its predicted largest micro-batch within the budget; a probe is "
            "within the budget when its measured peak is. Its runs are in the recommendation above."),
            tables["budget_searches"]))
    text = markdown(study["title"], model_label(study["settings"]["model"]), sections, "pareto.png")
    (out_dir / "recommendation.md").write_text(text, encoding="utf-8")
    pareto_plot.plot(all_runs, out_dir / "pareto.png", out_dir / "pareto.svg", unit)
    return tables


def add_arguments(parser: argparse.ArgumentParser, command: str) -> None:
    parser.add_argument("--study-json", required=True, help="the tune study (rules/common.smk: tune_study_json)")
    parser.add_argument("--out-dir", type=Path, required=True)
    parser.add_argument("--searches", type=Path, nargs="+", required=True, help="tune-search records")
    parser.add_argument("--measurements", type=Path, nargs="*", default=[], help="measurement runs' summary.json")
    parser.add_argument("--screen", type=Path, nargs="*", default=[], help="the tune-screen record (a screening study)")
    parser.add_argument("--budgets", type=Path, nargs="*", default=[], help="tune-budget records (tune.fill_budgets)")


def run(args: argparse.Namespace) -> int:
    study = json.loads(args.study_json)
    searches = [read_json(path) for path in args.searches]
    measurements = [run_outcome(read_json(path)) for path in args.measurements]
    screen = read_json(args.screen[0]) if args.screen else None
    budgets = [read_json(path) for path in args.budgets]
    tables = recommend(study, searches, measurements, args.out_dir, screen, budgets)
    print(tables["recommendation"].to_string(index=False))
    return 0
