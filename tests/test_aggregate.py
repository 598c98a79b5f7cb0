"""table and summary: hand-written summary.json sets -> CSV/Markdown tables -> the workshop's answers."""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from zerosweep import cli
from zerosweep.plan.matrix import MatrixPoint
from zerosweep.records import SCHEMA_VERSION
from zerosweep.report.run_summary.memory import summarise_run
from zerosweep.report.study import labels
from zerosweep.report.study import tables as aggregate
from zerosweep.report.study.table_fields import eval_loss_at
from zerosweep.report.summary import answers as summary

FIXTURES = Path(__file__).parent / "fixtures"


def point(stage: int | None, offload: str = "none", pin: bool = False, gpn: int = 1, nodes: int = 1) -> dict[str, Any]:
    return {
        "deepspeed": stage is not None,
        "zero_stage": stage,
        "offload": offload,
        "pin_memory": pin,
        "gpus_per_node": gpn,
        "nodes": nodes,
        "world_size": gpn * nodes,
    }


def run_id(p: dict[str, Any]) -> str:
    fields = {key: value for key, value in p.items() if key != "world_size"}
    return MatrixPoint(**fields).point_id


def make_summary(p: dict[str, Any], status: str = "ok", **numbers: Any) -> dict[str, Any]:
    """One summary.json as parse-memory writes it, with the numbers a test names (others null)."""
    n = {
        "peak": None, "avg": None, "modes": None, "cpu_peak": None, "cpu_avg": None, "cpu_modes": None,
        "exact": None, "reserved": None, "rate": None, "steady": None, "tokens": None, "flops_per_token": None,
        "runtime": None, "loss": None, "eval_loss": None, "eval_losses": None, "eval_rate": None, "steps": None,
        "device": "cuda", "gpu_name": "NVIDIA H100 80GB HBM3", "unusable": None, "real": None,
    }  # fmt: skip
    n.update(numbers)
    fields = {key: value for key, value in p.items() if key != "world_size"}
    metrics = {
        "train_loss": n["loss"], "eval_loss": n["eval_loss"], "eval_losses": n["eval_losses"],
        "train_samples_per_second": n["rate"], "eval_samples_per_second": n["eval_rate"], "steps_per_epoch": n["steps"],
        "train_runtime": n["runtime"], "steady_samples_per_second": n["steady"],
        "steady_tokens_per_second": n["tokens"], "flops_per_token": n["flops_per_token"],
        "world_size": p["world_size"], "real_token_fraction": n["real"],
    }  # fmt: skip
    if status != "ok":
        metrics = dict.fromkeys(metrics)
    return {
        "schema_version": SCHEMA_VERSION,
        "run_id": run_id(p),
        "label": MatrixPoint(**fields).label,
        "status": status,
        "point": p,
        "setup": {"device": n["device"], "gpu_name": n["gpu_name"], "precision": n.get("precision", "fp16"),
                  "samples_per_gpu": 500, "model": n.get("model", "bloom-560m (random init)")},
        "metrics": metrics,
        # the tables show the modes over the training window (the whole log's stay in modes_mib)
        "gpu": None if n["peak"] is None else {"peak_mib": n["peak"], "average_mib": n["avg"], "modes_mib": n["modes"],
                                               "training_window_modes_mib": n["modes"],
                                               "peak_min_mib": n.get("peak_min", n["peak"])},
        "nvml": None if n["exact"] is None else {"peak_mib": n["exact"]},
        "torch": None if n["reserved"] is None else {"max_reserved_mib": n["reserved"]},
        "cpu": None
        if n["cpu_peak"] is None
        else {"peak_mib": n["cpu_peak"], "average_mib": n["cpu_avg"], "modes_mib": n["cpu_modes"],
              "training_window_modes_mib": n["cpu_modes"]},
        "warnings": [],
        "unusable": n["unusable"],
    }


# The configured dense peak the tables divide by for MFU (runtime.peak_tflops, a param of the table rule).
PEAK_TFLOPS = 1000.0


def study(
    name: str, kind: str, summaries: list[dict[str, Any]], axis: str | None = None, peak: float | None = PEAK_TFLOPS
) -> dict[str, Any]:
    return {
        "name": name,
        "title": f"Title of {name}",
        "table": kind,
        "scaling_axis": axis,
        "peak_tflops": peak,
        "runs": {s["run_id"]: {"point": s["point"]} for s in summaries},
    }


# The hand-written sets: the workshop's three kinds of table.
STAGES = [
    make_summary(point(0), peak=21658, avg=18683.53, exact=21901.5, reserved=20480.0, cpu_peak=3892.1, cpu_avg=2276.06,
                 rate=11.26, steady=12.5, tokens=6400.0, flops_per_token=6265625000.0, runtime=133.2, real=0.25),
    make_summary(point(1), peak=19001, avg=16000.25, exact=19100.0, cpu_peak=3950.0, cpu_avg=2300.0, rate=11.0,
                 steady=12.0, runtime=136.4),
    make_summary(point(2), peak=17500, avg=15000.0, exact=17700.0, cpu_peak=4010.5, cpu_avg=2350.0, rate=10.8,
                 steady=11.7, runtime=139.0),
    make_summary(point(3), peak=16250, avg=14000.0, exact=16400.0, cpu_peak=4100.0, cpu_avg=2400.0, rate=9.5,
                 steady=10.1, runtime=158.0),
]  # fmt: skip
OFFLOAD = [
    make_summary(point(1, "cpu"), peak=12000, avg=10000.0, cpu_peak=9000.0, cpu_avg=7000.0, rate=5.5, runtime=273.0),
    make_summary(point(2, "cpu"), peak=10000, avg=9000.0, cpu_peak=9500.0, cpu_avg=7200.0, rate=5.0, runtime=300.0),
    make_summary(point(3, "cpu"), status="oom", peak=81003, cpu_peak=9900.0),
]
PIN = [
    OFFLOAD[1],
    make_summary(
        point(2, "cpu", True), peak=10010, avg=9005.0, cpu_peak=10500.0, cpu_avg=7600.0, rate=6.0, runtime=250.0
    ),
]
SCALING = [
    make_summary(point(2, "cpu", True, gpn=g), peak=10000 + g, avg=9000.0 + g, modes=[9000 + g], exact=10400.0 + g,
                 rate=rate, steady=steady, loss=0.7 + g / 100)
    for g, rate, steady in ((1, 10.0, 11.0), (2, 19.0, 21.0), (4, 36.0, 42.0), (8, 64.0, 80.0))
]  # fmt: skip
BASELINE = [
    make_summary(point(None), peak=21658, avg=18683.53, modes=[21658], exact=21700.0, cpu_peak=3892.0,
                 cpu_avg=2276.06, cpu_modes=[2145.125, 2177.5], rate=11.26, eval_rate=39.46, steps=31, loss=0.7039,
                 eval_loss=1.2871, eval_losses=[{"epoch": 0.99, "eval_loss": 1.2965}, {"epoch": 1.98, "eval_loss": 1.279},
                                                {"epoch": 2.93, "eval_loss": 1.2871}])
]  # fmt: skip


def read_csv(path: Path) -> tuple[list[str], list[dict[str, str]]]:
    with open(path, newline="") as handle:
        reader = csv.DictReader(handle)
        return list(reader.fieldnames or []), list(reader)


def write_table(
    tmp_path: Path, name: str, kind: str, summaries: list[dict[str, Any]], axis: str | None = None, **extra: Any
) -> Path:
    table = aggregate.build_table(study(name, kind, summaries, axis, **extra), summaries)
    aggregate.write_csv(table, tmp_path / f"{name}.csv")
    aggregate.write_markdown(table, tmp_path / f"{name}.md")
    return tmp_path / f"{name}.csv"


# --- comparison --------------------------------------------------------------------------------------------

# Energy over the steady steps and the GPUs' busy fraction: CSV only, last in every kind
ENERGY_COLUMNS = [
    "gpu_energy_j", "gpu_mean_power_w", "gpu_j_per_sample", "gpu_j_per_token", "gpu_energy_problem",
    "gpu_power_integral_j", "cpu_package_energy_j", "training_gpu_energy_j", "gpu_busy_fraction", "host_bound",
]  # fmt: skip
# The Markdown's columns first (the compact table), then the CSV's further ones: the CSV keeps every field.
COMPARISON_COLUMNS = [
    "config", "gpu_peak_mib", "gpu_average_mib", "gpu_modes_mib", "cpu_peak_mib", "cpu_average_mib",
    "cpu_modes_mib", "train_samples_per_second", "steady_samples_per_second", "repeats", "throughput_verdict",
    "memory_verdict",
    "gpu_peak_min_mib", "nvml_peak_mib", "torch_max_reserved_mib", "steady_tokens_per_second",
    "steady_real_tokens_per_second", "tflops_per_gpu", "mfu", "train_runtime", "first_step_seconds", "gpus_counted",
    "status", "run_id", "model", "zero_stage", "offload", "pin_memory", "gpus_per_node", "nodes", "world_size",
    "emulated_nodes", "compile", "precision", "optimizer", "gradient_checkpointing", "loss", "attention",
    "steady_samples_per_second_low", "steady_samples_per_second_high", "steady_spread", "hit_cap",
    "warmup_never_settled", "runs", "run_samples_per_second", "run_samples_estimator", "run_peak_mib",
    "run_peak_source", "throughput_ratio", "throughput_ratio_low", "throughput_ratio_high", "throughput_p",
    "memory_ratio", "memory_ratio_low", "memory_ratio_high", "memory_p", *ENERGY_COLUMNS,
]  # fmt: skip


def test_comparison_table_columns_rows_and_oom(tmp_path: Path) -> None:
    runs = STAGES + OFFLOAD
    header, rows = read_csv(write_table(tmp_path, "zero", "comparison", list(reversed(runs))))
    assert header == COMPARISON_COLUMNS
    assert [row["config"] for row in rows] == [
        "ZeRO Stage 0", "ZeRO Stage 1", "ZeRO Stage 1 + Offloading", "ZeRO Stage 2", "ZeRO Stage 2 + Offloading",
        "ZeRO Stage 3", "ZeRO Stage 3 + Offloading",
    ]  # fmt: skip
    first = rows[0]
    assert first["gpu_peak_mib"] == "21658"
    assert float(first["gpu_average_mib"]) == 18683.53
    assert float(first["nvml_peak_mib"]) == 21901.5
    assert float(first["tflops_per_gpu"]) == 40.1
    assert float(first["mfu"]) == 40.1 / PEAK_TFLOPS
    assert (first["status"], first["run_id"], first["zero_stage"], first["offload"]) == (
        "ok",
        "z0-offnone-nopin-g1n1",
        "0",
        "none",
    )
    oom = rows[-1]
    assert (oom["status"], oom["run_id"]) == ("oom", "z3-offcpu-nopin-g1n1")
    # The OOM row keeps its identity but no number, though its summary had a GPU peak.
    numeric = [column for column in COMPARISON_COLUMNS[1:21] if column != "repeats"]
    assert all(oom[column] == "" for column in numeric) and oom["repeats"] == "0"
    md = (tmp_path / "zero.md").read_text()
    assert md.startswith("# Title of zero\n")
    assert "Study `zero`, comparison table, 7 run(s); model: bloom-560m (random init).\n" in md
    assert {row["model"] for row in rows} == {"bloom-560m (random init)"}
    # the workshop's columns, steady samples/s (no per-step record: no interval), N and the verdicts
    assert "| ZeRO Stage 0 | 21658 | 18683.53 | – | 3892 | 2276.06 | – | 11.26 | 12.5 | 1 | reference | reference |" in md
    assert "| ZeRO Stage 3 + Offloading | – | – | – | – | – | – | – | oom | 0 | – | – |" in md  # its status says why
    assert "Out of memory (row kept, numbers empty): z3-offcpu-nopin-g1n1." in md
    assert "Runs, in table order: `z0-offnone-nopin-g1n1`, `z1-offnone-nopin-g1n1`, `z1-offcpu-nopin-g1n1`," in md


def test_comparison_labels_name_gpu_count_when_study_mixes_them() -> None:
    runs = [make_summary(point(1)), make_summary(point(1, gpn=2))]
    table = aggregate.build_table(study("mix", "comparison", runs), runs)
    assert [row["config"] for row in table.rows] == ["ZeRO Stage 1, 1 GPU", "ZeRO Stage 1, 2 GPUs"]


# --- scaling -----------------------------------------------------------------------------------------------

SCALING_COLUMNS = [
    "config", "world_size", "steady_samples_per_second", "repeats", "steady_speedup",
    "steady_weak_scaling_efficiency", "gpu_peak_mib", "gpu_average_mib", "gpu_modes_mib", "cpu_peak_mib",
    "cpu_average_mib", "cpu_modes_mib",
    "gpus_per_node", "nodes", "train_samples_per_second", "speedup", "weak_scaling_efficiency", "train_loss",
    "first_step_seconds", "gpu_peak_min_mib", "nvml_peak_mib", "gpus_counted", "status", "run_id", "model",
    "zero_stage", "offload", "pin_memory", "emulated_nodes", "compile", "precision", "optimizer",
    "gradient_checkpointing", "loss", "attention", "steady_samples_per_second_low", "steady_samples_per_second_high", "steady_spread",
    "hit_cap", "warmup_never_settled", "runs", "run_samples_per_second", "run_samples_estimator", "run_peak_mib",
    "run_peak_source",
    "steady_weak_scaling_efficiency_low", "steady_weak_scaling_efficiency_high", *ENERGY_COLUMNS,
]  # fmt: skip


def test_scaling_speedup_and_efficiency(tmp_path: Path) -> None:
    header, rows = read_csv(write_table(tmp_path, "weak", "scaling", SCALING[::-1], "gpus_per_node"))
    assert header == SCALING_COLUMNS
    assert [row["world_size"] for row in rows] == ["1", "2", "4", "8"]
    # speed-up = rate / rate(1 GPU); efficiency = (rate / GPUs) / (rate(1) / 1)
    expected = {"1": (1.0, 1.0, 1.0), "2": (1.9, 0.95, 21 / 22), "4": (3.6, 0.9, 42 / 44), "8": (6.4, 0.8, 80 / 88)}
    for row in rows:
        speedup, efficiency, steady = expected[row["world_size"]]
        assert float(row["speedup"]) == pytest.approx(speedup)
        assert float(row["weak_scaling_efficiency"]) == pytest.approx(efficiency)
        assert float(row["steady_weak_scaling_efficiency"]) == pytest.approx(steady)
        assert float(row["steady_speedup"]) == pytest.approx(steady * int(row["world_size"]))
        assert row["steady_weak_scaling_efficiency_low"] == ""  # single runs: no interval (run-to-run drift)
    assert rows[3]["gpu_modes_mib"] == "9008"
    md = (tmp_path / "weak.md").read_text()
    assert "| 7.27× | 90.9 % |" in md and "| 6.40× | 80.0 % |" not in md  # the Trainer's figures: CSV only
    assert "Speed-up and efficiency are against z2-offcpu-pin-g1n1 (1 GPU)" in md


def test_scaling_with_oom_reference_uses_smallest_finished() -> None:
    runs = [make_summary(point(2, "cpu", True, gpn=1), status="oom"), *SCALING[1:]]
    table = aggregate.build_table(study("weak", "scaling", runs, "gpus_per_node"), runs)
    by_gpus = {row["world_size"]: row for row in table.rows}
    assert by_gpus[1]["status"] == "oom" and by_gpus[1]["speedup"] is None
    assert by_gpus[2]["speedup"] == pytest.approx(1.0)
    assert by_gpus[8]["weak_scaling_efficiency"] == pytest.approx((64 / 8) / (19 / 2))
    assert any("smallest configuration did not finish" in note for note in table.notes)


def test_scaling_shows_cpu_memory_per_node_and_steady_figures_first() -> None:
    runs = [make_summary(point(2, "cpu", True, gpn=g), cpu_peak=30000.0 + g, cpu_avg=20000.0 + g, steady=10.0 * g,
                         rate=9.0 * g) for g in (1, 2)]
    table = aggregate.build_table(study("weak", "scaling", runs, "gpus_per_node"), runs)
    assert [row["cpu_peak_mib"] for row in table.rows] == [30001.0, 30002.0]
    assert [row["cpu_average_mib"] for row in table.rows] == [20001.0, 20002.0]
    header = aggregate.markdown(table).splitlines()[4]
    assert "Peak CPU Memory per Node (MiB)" in header and "Average CPU Memory per Node (MiB)" in header
    assert header.index("Steady Samples/sec") < header.index("Steady Speed-up")
    assert "Trainer" not in header  # the Trainer's whole-run figures are secondary: in the CSV
    assert [row["train_samples_per_second"] for row in table.rows] == [9.0, 18.0]


def test_eval_loss_of_epoch_1_is_the_epoch_end_evaluation_only() -> None:
    losses = [{"epoch": 0.77, "eval_loss": 3.0}, {"epoch": 1.54, "eval_loss": 2.0}]
    assert eval_loss_at(losses, 1, 31) is None  # 0.77 used to be taken for epoch 1
    assert eval_loss_at(losses, 2, 31) is None
    # 31 whole steps of 31.25: the epoch-end evaluation logs 0.99 (31 / 31.25 rounded), still epoch 1's
    assert eval_loss_at([{"epoch": 0.99, "eval_loss": 1.5}, {"epoch": 1.99, "eval_loss": 1.4}], 1, 31.25) == 1.5
    assert eval_loss_at([{"epoch": 0.99, "eval_loss": 1.5}], 1, None) is None  # nothing says it ended
    assert eval_loss_at([{"epoch": 1.0, "eval_loss": 1.2}, {"epoch": 2.0, "eval_loss": 1.1}], 2, 31) == 1.1
    run = make_summary(point(None), rate=1.0, steps=31, eval_losses=losses)
    row = aggregate.build_table(study("b", "baseline", [run]), [run]).rows[0]
    assert row["eval_loss_epoch1"] is None and row["eval_loss_epoch2"] is None


def test_padding_is_named_and_real_tokens_sit_beside() -> None:
    table = aggregate.build_table(study("zero", "comparison", STAGES), STAGES)
    by_run = {row["run_id"]: row for row in table.rows}
    assert by_run["z0-offnone-nopin-g1n1"]["steady_real_tokens_per_second"] == pytest.approx(6400.0 * 0.25)
    assert by_run["z1-offnone-nopin-g1n1"]["steady_real_tokens_per_second"] is None  # no fraction recorded
    text = aggregate.markdown(table)
    pointer = next(line for line in text.splitlines() if line.startswith("`zero.csv` has every field"))
    assert "Tokens/Second (incl. padding)" in pointer and "MFU (incl. padding)" in pointer
    assert pointer.index("Tokens/Second (incl. padding)") < pointer.index("Real Tokens/Second (no padding)")
    assert "count padding" in text and "Real Tokens/Second (no padding) (CSV `steady_real_tokens_per_second`)" in text


# --- baseline ----------------------------------------------------------------------------------------------

BASELINE_COLUMNS = [
    "config", "train_loss", "eval_loss_epoch1", "eval_loss_epoch2", "eval_loss",
    "train_samples_per_second", "eval_samples_per_second", "steps_per_epoch", "gpu_peak_mib", "gpu_average_mib",
    "gpu_modes_mib", "nvml_peak_mib", "cpu_peak_mib", "cpu_average_mib",
    "cpu_modes_mib", "status", "run_id", "model", "zero_stage", "offload", "pin_memory", "gpus_per_node", "nodes",
    "world_size", "emulated_nodes", "compile", "precision", "optimizer", "gradient_checkpointing", "loss",
    "attention", *ENERGY_COLUMNS,
]  # fmt: skip


def test_baseline_evaluation_summary(tmp_path: Path) -> None:
    header, rows = read_csv(write_table(tmp_path, "baseline", "baseline", BASELINE))
    assert header == BASELINE_COLUMNS
    (row,) = rows
    assert (row["train_loss"], row["eval_loss_epoch1"], row["eval_loss_epoch2"]) == (
        "0.7039",
        "1.2965",
        "1.279",
    )
    assert (row["eval_loss"], row["steps_per_epoch"], row["eval_samples_per_second"]) == ("1.2871", "31", "39.46")
    assert row["cpu_modes_mib"] == "2145, 2178"  # the workshop's rendering: every mode, whole numbers
    md = (tmp_path / "baseline.md").read_text()
    assert "| Training Metrics | Final Train Loss | 0.7039 |" in md
    assert "| GPU Memory | GPU Peak Usage (MiB) | 21658 |" in md
    assert "| CPU Memory | CPU Peak Usage (MiB) | 3892 |" in md
    assert "|  | CPU Mode Usage (training window) (MiB) | 2145, 2178 |" in md


def test_markdown_caps_long_mode_lists() -> None:
    assert aggregate.md_value(list(range(10)), "gpu_modes_mib") == "0, 1, 2, 3 … (10 modes)"


# --- study matching ----------------------------------------------------------------------------------------


def test_missing_foreign_and_duplicate_summaries_are_errors() -> None:
    spec = study("zero", "comparison", STAGES)
    with pytest.raises(ValueError, match="no summary.json for run"):
        aggregate.build_table(spec, STAGES[:2])
    with pytest.raises(ValueError, match="does not belong to it"):
        aggregate.build_table(spec, STAGES + OFFLOAD[:1])
    with pytest.raises(ValueError, match="given twice"):
        aggregate.build_table(spec, STAGES + STAGES[:1])
    with pytest.raises(ValueError, match="unknown table kind"):
        aggregate.build_table({**spec, "table": "pie"}, STAGES)


def test_cli_table_from_parsed_fixture_runs(tmp_path: Path) -> None:
    paths = []
    specs = {}
    for name in ("real_h100_run", "handmade_multinode_run", "handmade_oom_run"):
        parsed = summarise_run(FIXTURES / name)
        specs[parsed["run_id"]] = json.loads((FIXTURES / name / "run_spec.json").read_text())
        path = tmp_path / f"{name}.json"
        path.write_text(json.dumps(parsed))
        paths.append(str(path))
    spec = json.dumps(
        {"name": "mixed", "title": "Fixtures", "table": "comparison", "scaling_axis": None, "runs": specs}
    )
    out_csv, out_md = tmp_path / "t.csv", tmp_path / "t.md"
    assert cli.main(["table", "--study-json", spec, "--out-csv", str(out_csv), "--out-md", str(out_md), *paths]) == 0
    _header, rows = read_csv(out_csv)
    by_run = {row["run_id"]: row for row in rows}
    assert by_run["base-g1n1"]["gpu_peak_mib"] == "30653"
    assert by_run["z0-offnone-nopin-g1n1"]["status"] == "oom"
    assert by_run["z2-offcpu-pin-g2n2-xca41c2"]["nvml_peak_mib"] == "12740.5"


def test_old_schema_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "summary.json"
    path.write_text(json.dumps({**STAGES[0], "schema_version": 0}))
    with pytest.raises(ValueError, match="rerun parse-memory"):
        aggregate.load_summaries([path])


# --- summary.md --------------------------------------------------------------------------------------------


def build_all(tmp_path: Path) -> list[Path]:
    paths = []
    for name, kind, runs, axis in (
        ("baseline", "baseline", BASELINE, None),
        ("zero_stages", "comparison", STAGES, None),
        ("zero_offload", "comparison", OFFLOAD, None),
        ("pin_memory", "comparison", PIN, None),
        ("multi_gpu_scaling", "scaling", SCALING, "gpus_per_node"),
    ):
        paths += [write_table(tmp_path, name, kind, runs, axis), tmp_path / f"{name}.md"]
    return paths


def test_summary_answers_every_question(tmp_path: Path) -> None:
    out = tmp_path / "summary.md"
    assert cli.main(["summary", "--out", str(out), *map(str, build_all(tmp_path))]) == 0
    text = out.read_text()
    assert (
        "*Title of zero_stages*: **ZeRO Stage 3** had the lowest peak GPU memory, 16,250 MiB (nvidia-smi; "
        "exact NVML peak 16,400 MiB), 25.0 % below the highest, ZeRO Stage 0 (21,658 MiB)."
    ) in text
    assert "ZeRO Stage 1 + Offloading (12000) < ZeRO Stage 2 + Offloading (10000)" not in text  # sorted ascending
    assert "ZeRO Stage 2 + Offloading (10000) < ZeRO Stage 1 + Offloading (12000)" in text
    assert "Ran out of GPU memory: ZeRO Stage 3 + Offloading." in text
    # Offload: stage 1 11.0 -> 5.5 samples/s is -50 %, runtime 136.4 -> 273.0 s.
    assert ("ZeRO Stage 1 on 1 GPU: with CPU offload, the Trainer's whole-run throughput went from 11.00 to 5.50 "
            "samples/s (-50.0 %): throughput difference untested (no run-level samples/s on both rows to test)") in text
    assert "train runtime from 136.4 s to 273.0 s (+100.1 %)" in text
    assert "ZeRO Stage 3 on 1 GPU: ZeRO Stage 3 + Offloading ran out of memory (oom), no comparison." in text
    # No run-level samples/s and no reference pair: no claim of slower, though the numbers fell by half.
    assert "Overall: no pair's difference was tested" in text and "lowered throughput" not in text
    assert "**slower**" not in text and "**faster**" not in text
    # pin_memory: 5.0 -> 6.0 samples/s.
    assert ("with pin_memory, the Trainer's whole-run throughput went from 5.00 to 6.00 samples/s (+20.0 %): "
            "throughput difference untested (the table's test, named in its notes)") in text
    # Weak scaling from the steady figures (primary): 80 samples/s on 8 GPUs against 11 on 1: 7.27x, 90.9 % ->
    # holds; the Trainer's whole run (64 against 10: 80 %) is the secondary figure.
    assert ("steady samples/s went from 11.00 to 80.00, a 7.27× speed-up for 8× the GPUs: weak-scaling efficiency "
            "90.9 % (80.0 % over the Trainer's whole run)") in text
    # One run per row: the threshold's answer is given, flagged as from single runs, not in bold.
    assert ("90.9 % (80.0 % over the Trainer's whole run): by the 90 % threshold weak scaling holds, from single "
            "runs (run-to-run drift is not in this figure") in text and "weak scaling **" not in text
    assert "Peak GPU memory per GPU ranges 10,001 MiB–10,008 MiB and stays stable (+0.1 %, within ±5 %)" in text
    assert "*Title of baseline*: No DeepSpeed (baseline): final train loss 0.7039, final eval loss 1.2871" in text


def test_summary_skips_questions_without_tables(tmp_path: Path) -> None:
    paths = [write_table(tmp_path, "zero_stages", "comparison", STAGES), tmp_path / "zero_stages.md"]
    text = summary.render(summary.load_tables(paths))
    assert "Skipped: no scaling table was built in this run of the workflow." in text
    assert "Skipped: no baseline table was built in this run of the workflow." in text
    assert "Skipped: no built table has the same ZeRO stage and GPU count both with and without CPU offload." in text
    assert "**ZeRO Stage 3** had the lowest peak GPU memory" in text
    empty = summary.render([])
    assert empty.count("Skipped:") == 5


def test_lowest_peak_only_for_tables_comparing_stages(tmp_path: Path) -> None:
    paths = [write_table(tmp_path, "pin_memory", "comparison", PIN), tmp_path / "pin_memory.md"]
    assert summary.lowest_peak(summary.load_tables(paths)) == [
        "Skipped: no table comparing ZeRO stages was built in this run of the workflow."
    ]


def test_summary_weak_scaling_holds(tmp_path: Path) -> None:
    runs = [
        make_summary(point(2, "cpu", True, gpn=1, nodes=n), peak=10000, avg=9000.0 + 100 * n, rate=rate)
        for n, rate in ((2, 40.0), (4, 78.0), (8, 150.0))
    ]
    for run in runs:  # world sizes 2, 4, 8 across nodes
        run["point"]["gpus_per_node"] = 1
    paths = [write_table(tmp_path, "nodes", "scaling", runs, "nodes")]
    text = summary.render(summary.load_tables(paths))
    assert "weak-scaling efficiency 93.8 %" in text and "weak scaling holds, from single runs" in text
    assert "Average GPU memory increases (+6.5 %)" in text


def _scaling_with_repeats(tmp_path: Path, small: tuple[float, ...], large: tuple[float, ...]) -> tuple[str, dict[str, str]]:
    """A 2-GPU and an 8-GPU point with one repeat per rate; the summary's text and the 8-GPU CSV row."""
    points = [point(2, "cpu", True, gpn=1, nodes=n) for n in (2, 8)]
    for p in points:
        p["gpus_per_node"] = 1
    runs = [repeat(p, k, rate, 10000.0) for p, rates in zip(points, (small, large)) for k, rate in enumerate(rates, 1)]
    paths = [write_table(tmp_path, "nodes", "scaling", runs, "nodes")]
    _, rows = read_csv(paths[0])
    return summary.render(summary.load_tables(paths)), rows[-1]


@pytest.mark.parametrize(("large", "verdict"), [
    ((158.0, 160.0, 162.0), "so weak scaling **holds** (95 % interval"),  # 100 %, tight
    ((100.0, 101.0, 99.0), "so weak scaling **does not hold** (95 % interval"),  # 62.5 %
    ((150.0, 120.0, 180.0), "spans the 90 % threshold, so whether weak scaling holds is within the noise"),
])
def test_weak_scaling_answer_with_repeats_comes_from_the_efficiency_interval(tmp_path: Path, large: tuple[float, ...],
                                                                             verdict: str) -> None:
    text, row = _scaling_with_repeats(tmp_path, (40.0, 40.4, 39.6), large)
    assert verdict in text and "from single runs" not in text
    # the interval is the throughput ratio's (Welch on log run medians) x 2/8 GPUs
    from zerosweep.report.statistics import verdict_from_runs
    ratio = verdict_from_runs([r * 1.02 for r in large], [r * 1.02 for r in (40.0, 40.4, 39.6)])
    assert float(row["steady_weak_scaling_efficiency_low"]) == pytest.approx(ratio.ratio_low / 4, rel=0.02)
    assert float(row["steady_weak_scaling_efficiency_high"]) == pytest.approx(ratio.ratio_high / 4, rel=0.02)
    assert float(row["steady_weak_scaling_efficiency_low"]) <= float(row["steady_weak_scaling_efficiency"]) \
        <= float(row["steady_weak_scaling_efficiency_high"])
    # the Markdown shows the efficiency with its interval's ends, as percentages
    low, mid, high = (100 * float(row[f"steady_weak_scaling_efficiency{end}"]) for end in ("_low", "", "_high"))
    assert f"| {mid:.1f} % [{low:.1f} %, {high:.1f} %] |" in (tmp_path / "nodes.md").read_text()


def test_lowest_peak_says_when_finished_runs_had_no_gpu_monitor(tmp_path: Path) -> None:
    cpu_runs = [make_summary(point(stage), cpu_peak=800.0, cpu_avg=700.0, rate=80.0) for stage in (0, 1)]
    paths = [write_table(tmp_path, "zero_stages", "comparison", cpu_runs), tmp_path / "zero_stages.md"]
    assert summary.lowest_peak(summary.load_tables(paths)) == [
        "*Title of zero_stages*: its runs recorded no GPU memory (no GPU monitor: CPU runs)."
    ]


# --- field ids, not display labels -----------------------------------------------------------------------


def test_answers_do_not_change_when_display_labels_are_renamed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    before_dir, after_dir = tmp_path / "before", tmp_path / "after"
    before = summary.render(summary.load_tables(build_all(before_dir)))
    monkeypatch.setattr(labels, "LABELS", {field: f"Renamed {text}" for field, text in labels.LABELS.items()})
    monkeypatch.setattr(
        labels,
        "KIND_LABELS",
        {kind: {field: f"Renamed {text}" for field, text in names.items()} for kind, names in labels.KIND_LABELS.items()},
    )
    after = summary.render(summary.load_tables(build_all(after_dir)))
    # The renaming took effect where labels live (the Markdown), and nowhere else.
    assert "| Renamed DeepSpeed Config |" in (after_dir / "zero_stages.md").read_text()
    assert "Renamed" not in (before_dir / "zero_stages.md").read_text()
    assert (after_dir / "zero_stages.csv").read_text() == (before_dir / "zero_stages.csv").read_text()
    assert after.replace(str(after_dir), "") == before.replace(str(before_dir), "")
    assert "**ZeRO Stage 3** had the lowest peak GPU memory" in after


def test_csv_loads_with_plain_pandas(tmp_path: Path) -> None:
    path = write_table(tmp_path, "zero", "comparison", STAGES + OFFLOAD)
    frame = pd.read_csv(path)
    assert list(frame.columns) == COMPARISON_COLUMNS
    assert frame["gpu_peak_mib"].max() == 21658 and frame["gpu_peak_mib"].isna().sum() == 1  # the OOM row
    assert frame.loc[frame["status"] == "ok", "train_samples_per_second"].sum() == pytest.approx(
        11.26 + 11.0 + 10.8 + 9.5 + 5.5 + 5.0
    )
    typed = aggregate.read_table(path)
    assert str(typed["zero_stage"].dtype) == "Int64" and typed["zero_stage"].tolist() == [0, 1, 1, 2, 2, 3, 3]


def test_mfu_follows_peak_tflops_without_new_records(tmp_path: Path) -> None:
    runs = STAGES[:1]
    first = aggregate.build_table(study("zero", "comparison", runs, peak=1000.0), runs).rows[0]
    halved = aggregate.build_table(study("zero", "comparison", runs, peak=500.0), runs).rows[0]
    looked_up = aggregate.build_table(study("zero", "comparison", runs, peak=None), runs).rows[0]
    assert first["tflops_per_gpu"] == halved["tflops_per_gpu"] == looked_up["tflops_per_gpu"] == 40.1
    assert (first["mfu"], halved["mfu"]) == (40.1 / 1000.0, 40.1 / 500.0)
    assert looked_up["mfu"] == 40.1 / 989.4  # H100 SXM's dense fp16 peak, from the GPU's name
    cpu = [make_summary(point(0), device="cpu", gpu_name=None, tokens=6400.0, flops_per_token=6265625000.0)]
    (row,) = aggregate.build_table(study("zero", "comparison", cpu, peak=1000.0), cpu).rows
    assert row["tflops_per_gpu"] == 40.1 and row["mfu"] is None  # no tensor-core peak on a CPU
    md = aggregate.markdown(aggregate.build_table(study("zero", "comparison", runs, peak=500.0), runs))
    assert "runtime.peak_tflops = 500" in md and "MFU empty for" not in md
    assert "the dense peak for the run's precision (fp16/bf16 tensor; fp32 without TF32)" in md


def test_a_gpu_without_a_peak_gets_the_note_that_says_how_to_set_one() -> None:
    runs = [make_summary(point(0), gpu_name="NVIDIA H200 NVL Prototype", tokens=6400.0, flops_per_token=6265625000.0),
            make_summary(point(1), gpu_name="NVIDIA H200 NVL Prototype", tokens=6000.0, flops_per_token=6265625000.0)]
    table = aggregate.build_table(study("zero", "comparison", runs, peak=None), runs)
    assert [row["mfu"] for row in table.rows] == [None, None] and table.rows[0]["tflops_per_gpu"] == 40.1
    notes = [note for note in table.notes if note.startswith("MFU empty for")]
    assert notes == [("MFU empty for NVIDIA H200 NVL Prototype at fp16: GPU model 'NVIDIA H200 NVL Prototype' is not "
                      "in the peak table (exact NVML names). Set runtime.peak_tflops to the GPU's dense peak in "
                      "TFLOP/s for that precision (a report setting: the tables re-aggregate without retraining).")]
    configured = aggregate.build_table(study("zero", "comparison", runs, peak=500.0), runs)
    assert not any(note.startswith("MFU empty for") for note in configured.notes)


def test_unusable_run_keeps_its_row_and_says_so(tmp_path: Path) -> None:
    runs = [
        STAGES[0],
        {
            **make_summary(point(1), rate=11.0, unusable="its monitor logs hold no valid sample"),
            "warnings": ["skipped gpu_memory_log_a.csv:1: empty log"],
        },
    ]
    _header, rows = read_csv(write_table(tmp_path, "zero", "comparison", runs))
    assert [(row["run_id"], row["status"]) for row in rows] == [
        ("z0-offnone-nopin-g1n1", "ok"),
        ("z1-offnone-nopin-g1n1", "unusable"),
    ]
    assert rows[1]["train_samples_per_second"] == "" and rows[1]["zero_stage"] == "1"
    md = (tmp_path / "zero.md").read_text()
    assert "No valid sample in the monitor logs (row kept, numbers empty): z1-offnone-nopin-g1n1." in md
    assert "- z1-offnone-nopin-g1n1: skipped gpu_memory_log_a.csv:1: empty log" in md
    text = summary.render(summary.load_tables([tmp_path / "zero.csv", tmp_path / "zero.md"]))
    assert "**ZeRO Stage 0** had the lowest peak GPU memory" in text


# --- repeats, intervals and verdicts (issue 12) ---------------------------------------------------------------


def repeat(p: dict[str, Any], k: int, rate: float, peak: float, *, cap: bool = False, wobble: float = 0.01,
           status: str = "ok") -> dict[str, Any]:
    """Repeat k of point p: 100 steady steps of 16 samples around `rate` samples/s (a fixed ±wobble pattern), its
    `throughput` section computed by the real statistics code, and a GPU peak."""
    from zerosweep.report.statistics import summarise_step_times

    seconds = [16 / rate * (1 + wobble * ((i * 7) % 5 - 2) / 2) for i in range(100)]  # >= 90: an interval
    stats = summarise_step_times(list(range(1, 101)), seconds, [16] * 100, [False] * 100, 0)
    summary = make_summary(p, status=status, peak=peak, exact=peak + 0.5, rate=rate * 0.9, steady=rate * 1.02,
                           tokens=rate * 1.02 * 512, flops_per_token=6e9, real=0.5)
    summary["run_id"] = f"{run_id(p)}-r{k}"
    summary["throughput"] = {**stats.record(), "hit_cap": cap, "stop_reason": "cap_steps" if cap else "width"}
    return summary


REFERENCE_RUNS = [repeat(point(0), k, rate, peak) for k, (rate, peak) in
                  enumerate([(40.0, 20000), (40.6, 20010), (39.5, 19990)], 1)]
FASTER_RUNS = [repeat(point(1), k, rate, peak) for k, (rate, peak) in
               enumerate([(46.0, 24000), (46.5, 24020), (45.6, 23990)], 1)]
SAME_RUNS = [repeat(point(2), k, rate, peak, cap=k == 2) for k, (rate, peak) in
             enumerate([(40.4, 20005), (39.3, 19995), (40.9, 20000)], 1)]


def test_repeats_make_one_row_per_point_with_median_min_max_and_n(tmp_path: Path) -> None:
    runs = REFERENCE_RUNS + FASTER_RUNS + SAME_RUNS
    header, rows = read_csv(write_table(tmp_path, "zero", "comparison", runs[::-1]))
    assert header == COMPARISON_COLUMNS
    assert [row["run_id"] for row in rows] == ["z0-offnone-nopin-g1n1", "z1-offnone-nopin-g1n1",
                                               "z2-offnone-nopin-g1n1"]
    assert [row["repeats"] for row in rows] == ["3", "3", "3"]
    assert rows[0]["runs"].split() == sorted(run["run_id"] for run in REFERENCE_RUNS)
    medians = sorted(run["throughput"]["samples_per_second"] for run in FASTER_RUNS)
    assert float(rows[1]["steady_samples_per_second"]) == pytest.approx(medians[1])
    assert float(rows[1]["steady_samples_per_second_low"]) == pytest.approx(medians[0])
    assert float(rows[1]["steady_samples_per_second_high"]) == pytest.approx(medians[2])
    assert rows[1]["steady_spread"] == "min-max"
    # tokens/s follow the step medians (same tokens per sample), not the launcher's whole-window figure
    assert float(rows[1]["steady_tokens_per_second"]) == pytest.approx(medians[1] * 512)
    assert float(rows[1]["gpu_peak_mib"]) == 24000  # median of the repeats' peaks
    md = (tmp_path / "zero.md").read_text()
    assert f"| {medians[1]:.1f} [{medians[0]:.1f}, {medians[2]:.1f}] | 3 |" in md  # the min-max's own ends
    assert "±" not in md
    assert [row["hit_cap"] for row in rows] == ["False", "False", "True"]
    assert " † |" in md and "† stopped at the step or time cap" in md and "z2-offnone-nopin-g1n1" in md


def test_verdicts_against_the_reference_row_name_the_test() -> None:
    runs = REFERENCE_RUNS + FASTER_RUNS + SAME_RUNS
    table = aggregate.build_table(study("zero", "comparison", runs), runs)
    rows = {row["run_id"]: row for row in table.rows}
    reference, faster, same = (rows[f"z{s}-offnone-nopin-g1n1"] for s in (0, 1, 2))
    assert reference["throughput_verdict"] == reference["memory_verdict"] == "reference"
    assert faster["throughput_verdict"] == "faster" and faster["memory_verdict"] == "more memory"
    assert faster["throughput_ratio_low"] > 1 and faster["throughput_p"] < 0.05
    assert faster["memory_ratio"] == pytest.approx(24000.5 / 20000.5, rel=1e-3)  # NVML peaks: all runs have one
    assert same["throughput_verdict"] == "within noise" and same["memory_verdict"] == "within noise"
    assert same["throughput_ratio_low"] < 1 < same["throughput_ratio_high"]
    text = aggregate.markdown(table)
    change = 100 * (faster["throughput_ratio"] - 1)
    assert f"| faster +{change:.1f} % | more memory +{100 * (faster['memory_ratio'] - 1):.1f} % |" in text
    assert "| within noise | within noise |" in text  # no change shown where the interval holds none
    assert "Welch t on log run medians" in text and "exact peak (NVML)" in text
    assert "Verdicts against the reference row ZeRO Stage 0 (`z0-offnone-nopin-g1n1`" in text


def markdown_header(text: str) -> list[str]:
    """The cells of a Markdown table's header line (the first line that starts with '|')."""
    line = next(line for line in text.splitlines() if line.startswith("|"))
    return [cell.strip() for cell in line.strip("|").split("|")]


# The compact tables: the workshop's columns (config, GPU and CPU peak / average / modes, the Trainer's samples/s),
# steady samples/s with its interval, N and the verdicts; scaling: GPUs, speed-up and efficiency, the memory.
COMPARISON_MARKDOWN = ["config", "gpu_peak_mib", "gpu_average_mib", "gpu_modes_mib", "cpu_peak_mib", "cpu_average_mib",
                       "cpu_modes_mib", "train_samples_per_second", "steady_samples_per_second", "repeats",
                       "throughput_verdict", "memory_verdict"]
SCALING_MARKDOWN = ["config", "world_size", "steady_samples_per_second", "repeats", "steady_speedup",
                    "steady_weak_scaling_efficiency", "gpu_peak_mib", "gpu_average_mib", "gpu_modes_mib",
                    "cpu_peak_mib", "cpu_average_mib", "cpu_modes_mib"]


@pytest.mark.parametrize(("kind", "runs", "axis", "markdown_ids", "csv_ids"), [
    ("comparison", REFERENCE_RUNS + FASTER_RUNS + OFFLOAD, None, COMPARISON_MARKDOWN, COMPARISON_COLUMNS),
    ("scaling", SCALING, "gpus_per_node", SCALING_MARKDOWN, SCALING_COLUMNS),
])
def test_markdown_shows_the_compact_columns_and_the_csv_keeps_every_one(
        tmp_path: Path, kind: str, runs: list[dict[str, Any]], axis: str | None, markdown_ids: list[str],
        csv_ids: list[str]) -> None:
    csv_header, _rows = read_csv(write_table(tmp_path, kind, kind, runs, axis))
    header = markdown_header((tmp_path / f"{kind}.md").read_text())
    assert header == [labels.label(name, kind) for name in markdown_ids]
    assert csv_header == csv_ids and set(markdown_ids) < set(csv_header)
    assert len(header) == 12 and len(csv_header) > 35  # was 21 Markdown columns for a comparison
    assert "Status" not in header and "Run" not in header and "MFU (incl. padding)" not in header


def test_verdict_cells_are_short_and_name_the_change_only_where_one_was_found() -> None:
    assert aggregate.verdict_cell("faster", 1.123) == "faster +12.3 %"
    assert aggregate.verdict_cell("less memory", 0.9) == "less memory -10.0 %"
    assert aggregate.verdict_cell("within noise", 1.02) == "within noise"  # its interval holds no change
    assert aggregate.verdict_cell("untested", 1.15) == "+15.0 % (untested)"
    assert aggregate.verdict_cell("untested", None) == "untested"
    assert aggregate.verdict_cell("reference", 1.0) == "reference"
    assert aggregate.verdict_cell(None, None) == "–"


def drifting(p: dict[str, Any], k: int, settles: bool) -> dict[str, Any]:
    """Repeat k of p whose 62 steps settle near 0.5 s after two slow ones, or slow down every step (never settle)."""
    import numpy as np
    from zerosweep.report.statistics import summarise_step_times

    seconds = np.linspace(0.5, 1.5, 62) if not settles else np.concatenate(
        [[3.0, 2.0], 0.5 * (1 + 0.01 * k + 0.01 * np.sin(np.arange(60)))])
    stats = summarise_step_times(np.arange(1, 63), seconds, [16] * 62, [False] * 62, 1)
    summary = make_summary(p, peak=20000.0, steady=16 / float(np.median(seconds)))
    summary["run_id"] = f"{run_id(p)}-r{k}"
    summary["throughput"] = {**stats.record(), "hit_cap": False, "stop_reason": "epochs"}
    return summary


def test_a_row_whose_warm_up_never_settled_is_marked_double_dagger_with_its_note() -> None:
    runs = [drifting(point(0), k, settles=True) for k in (1, 2)] + [drifting(point(1), 1, settles=False),
                                                                     drifting(point(1), 2, settles=True)]
    assert [run["throughput"]["warmup_settled"] for run in runs] == [True, True, False, True]
    table = aggregate.build_table(study("zero", "comparison", runs), runs)
    settled, unsettled = table.rows
    assert (settled["warmup_never_settled"], unsettled["warmup_never_settled"]) == (False, True)
    text = aggregate.markdown(table)
    lines = {line.split(" | ")[0]: line for line in text.splitlines() if line.startswith("| ZeRO")}
    assert f"| {labels.with_interval(unsettled, 'steady_samples_per_second')} ‡ |" in lines["| ZeRO Stage 1"]
    assert "‡" not in lines["| ZeRO Stage 0"]
    note = next(line for line in text.splitlines() if line.startswith("- ‡ "))
    assert "never settled" in note and note.endswith(": z1-offnone-nopin-g1n1.") and "z0-offnone" not in note


def test_single_runs_get_a_ratio_with_a_within_run_interval_but_no_verdict() -> None:
    single = [{**run, "run_id": run_id(run["point"])} for run in (REFERENCE_RUNS[0], FASTER_RUNS[0])]
    table = aggregate.build_table(study("zero", "comparison", single), single)
    reference, faster = table.rows
    assert faster["throughput_verdict"] == "untested"  # one run a side cannot show run-to-run drift
    assert faster["throughput_ratio_low"] < faster["throughput_ratio"] < faster["throughput_ratio_high"]
    assert faster["throughput_ratio"] > 1 and faster["throughput_p"] is None
    assert faster["memory_verdict"] == "untested"  # one peak each: no test of memory
    assert reference["steady_spread"] == "95 % CI" and reference["repeats"] == 1
    ci = REFERENCE_RUNS[0]["throughput"]
    assert (reference["steady_samples_per_second_low"], reference["steady_samples_per_second_high"]) == (
        ci["samples_per_second_ci_low"], ci["samples_per_second_ci_high"])
    assert "no verdict without >= 2 runs per row" in aggregate.markdown(table)


def test_records_without_steps_keep_the_old_steady_figure_without_interval() -> None:
    table = aggregate.build_table(study("zero", "comparison", STAGES), STAGES)
    row = table.rows[0]
    assert row["steady_samples_per_second"] == 12.5 and row["steady_samples_per_second_low"] is None
    assert row["steady_spread"] is None and row["hit_cap"] is None
    assert "| 12.5 | 1 |" in aggregate.markdown(table)  # no interval where nothing measured the spread
    assert table.rows[1]["throughput_verdict"] == "untested"  # one launcher figure each: nothing to test


def test_a_repeat_that_ran_out_of_memory_is_left_out_of_its_row() -> None:
    runs = REFERENCE_RUNS[:2] + [repeat(point(0), 3, 10.0, 1.0, status="oom")]
    table = aggregate.build_table(study("zero", "comparison", runs), runs)
    (row,) = table.rows
    assert row["status"] == "ok" and row["repeats"] == 2
    assert any("left out of their row: z0-offnone-nopin-g1n1-r3 (oom)" in note for note in table.notes)


def _pin_pair(tmp_path: Path, pinned_rates: list[float], pinned_peaks: list[float]) -> str:
    plain = [repeat(point(2, "cpu", False), k, rate, peak) for k, (rate, peak) in
             enumerate([(20.0, 9000), (20.3, 9010), (19.8, 8995)], 1)]
    pinned = [repeat(point(2, "cpu", True), k, rate, peak) for k, (rate, peak) in
              enumerate(zip(pinned_rates, pinned_peaks), 1)]
    paths = [write_table(tmp_path, "pin_memory", "comparison", plain + pinned), tmp_path / "pin_memory.md"]
    return summary.render(summary.load_tables(paths))


def test_summary_says_faster_only_with_a_verdict_and_its_interval(tmp_path: Path) -> None:
    text = _pin_pair(tmp_path / "a", [24.0, 24.4, 23.7], [9500, 9510, 9490])
    sentence = next(line for line in text.splitlines() if "with pin_memory" in line)
    assert re.search(r"steady throughput went from 20\.0 \[19\.\d, 20\.\d\] to 24\.0 \[23\.\d, 24\.\d\] samples/s",
                     sentence), sentence
    assert "±" not in sentence and "95 % CI" not in sentence
    # the change with its interval's ends, then the ratio and the test (the pin_memory table's own verdict)
    assert re.search(r": \*\*faster\*\*: \+20\.0 % \[\+\d+\.\d %, \+\d+\.\d %\] \(ratio to the reference row of table "
                     r"`pin_memory`; the table's test, named in its notes, p = ", sentence), sentence
    assert re.search(r"\*\*more memory\*\*: \+5\.\d % \[\+5\.\d %, \+5\.\d %\] \(", sentence), sentence


def test_summary_says_within_the_noise_where_the_test_finds_nothing(tmp_path: Path) -> None:
    text = _pin_pair(tmp_path / "b", [20.2, 19.7, 20.4], [9005, 8990, 9012])
    sentence = next(line for line in text.splitlines() if "with pin_memory" in line)
    assert "throughput within the noise: " in sentence and "memory within the noise: " in sentence
    assert "faster" not in sentence and "slower" not in sentence and "more memory" not in sentence


def test_summary_links_each_tune_studys_recommendation(tmp_path: Path) -> None:
    tune = tmp_path / "results" / "tune"
    recs = []
    for name in ("tune_h100", "tune_cpu"):
        (tune / name).mkdir(parents=True)
        recs.append(tune / name / "recommendation.md")
        recs[-1].write_text("# rec\n")
    out = tmp_path / "results" / "summary.md"
    tables = [write_table(tmp_path, "zero_stages", "comparison", STAGES)]
    assert cli.main(["summary", "--out", str(out), *map(str, tables), "--recommendations", *map(str, recs)]) == 0
    text = out.read_text()
    assert "- Tune study `tune_cpu`: [recommendation](tune/tune_cpu/recommendation.md)" in text
    assert "- Tune study `tune_h100`: [recommendation](tune/tune_h100/recommendation.md)" in text
    assert cli.main(["summary", "--out", str(out), *map(str, tables)]) == 0
    assert "Tune study" not in out.read_text()
