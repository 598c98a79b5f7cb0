"""Energy per run and the GPUs' busy fraction (report/run_summary/energy.py, gpu_busy.py) from recorded sampler
output in the samplers' formats (tests/fixtures/handmade_energy, written by its make.py), and the NVML sampler's
energy and utilisation cells against a stand-in for pynvml (the real calls run on a GPU host)."""

from __future__ import annotations

import dataclasses
import shutil
import sys
import threading
import types
from pathlib import Path
from typing import Any

import pytest
from zerosweep.report.run_summary.energy import run_energy, summarise_energy
from zerosweep.report.run_summary.gpu_activity import run_activity
from zerosweep.report.run_summary.gpu_busy import HOST_BOUND_BELOW, MIN_BUSY_WINDOW_S, summarise_busy
from zerosweep.report.run_summary.gpu_memory import summarise_nvml
from zerosweep.report.run_summary.logs import NVML_ACTIVITY, read_nvml_log
from zerosweep.report.run_summary.training_window import step_spans
from zerosweep.run import monitors

FIXTURE = Path(__file__).parent / "fixtures" / "handmade_energy"
WARMUP_STEPS = 2  # steps 1-2 are warm-up; step 6 holds an evaluation: steady = steps 3, 4, 5, 7, 8
# By hand from the fixture's description (make.py's docstring): 5 steady seconds of 8 samples x 512 tokens each
STEADY_S, STEADY_SAMPLES, STEADY_TOKENS = 5.0, 40, 20480
TRAINING_S, TRAINING_SAMPLES, TRAINING_TOKENS = 9.0, 64, 32768  # t = 1000 to 1009, 8 steps


def run_dir(tmp_path: Path, **variants: str) -> Path:
    """The fixture run, with monitor files replaced by variants (monitor name -> variant file name)."""
    run = tmp_path / "run"
    shutil.copytree(FIXTURE / "run", run)
    for name, variant in variants.items():
        shutil.copy(FIXTURE / "variants" / variant, run / "monitor" / name)
    return run


def energy_of(run: Path, expected_gpus: int | None = 2) -> dict[str, Any]:
    steady, training = step_spans(run, WARMUP_STEPS)
    return dict(summarise_energy(run, run_activity(run), steady, training, None, expected_gpus))


def test_steady_and_training_energy_from_the_counter_per_gpu_node_and_run(tmp_path: Path) -> None:
    energy = energy_of(run_dir(tmp_path))
    steady, training = energy["steady"], energy["training"]
    assert (steady["seconds"], steady["samples"], steady["tokens"]) == (STEADY_S, STEADY_SAMPLES, STEADY_TOKENS)
    assert (training["seconds"], training["samples"], training["tokens"]) == (TRAINING_S, TRAINING_SAMPLES,
                                                                              TRAINING_TOKENS)
    # GPU 0 at 300 W and GPU 1 at 200 W over the 5 steady seconds; the evaluation step's 2 s are left out
    assert {gpu["index"]: gpu["energy_j"] for gpu in steady["gpus"]} == {0: pytest.approx(1500.0),
                                                                        1: pytest.approx(1000.0)}
    assert steady["gpu_energy_j"] == pytest.approx(2500.0) and steady["gpu_energy_problem"] is None
    assert steady["gpu_mean_power_w"] == pytest.approx(500.0)
    assert steady["gpu_j_per_sample"] == pytest.approx(2500.0 / 40)
    assert steady["gpu_j_per_token"] == pytest.approx(2500.0 / 20480)
    # per node: each emulated node has one of the GPUs
    assert {node["host"]: (node["gpus"], node["energy_j"]) for node in steady["nodes"]} == {
        "nodeA": (1, pytest.approx(1500.0)), "nodeB": (1, pytest.approx(1000.0))}
    # the training window: 9 s, the idle 100 W of GPU 0 before and after it left out
    assert training["gpu_energy_j"] == pytest.approx(300.0 * 9 + 200.0 * 9)
    assert training["gpu_j_per_sample"] == pytest.approx(4500.0 / 64)


def test_power_integral_is_beside_the_counter_not_in_its_place(tmp_path: Path) -> None:
    energy = energy_of(run_dir(tmp_path))
    # the clocks log reads GPU 0 at 310 W: the trapezoid gives 310 x 5 + 200 x 5, the counter stays 2500
    assert energy["steady"]["power_integral_j"] == pytest.approx(310.0 * 5 + 200.0 * 5)
    assert energy["training"]["power_integral_j"] == pytest.approx(310.0 * 9 + 200.0 * 9)
    assert energy["steady"]["gpu_energy_j"] == pytest.approx(2500.0)
    assert "power integral" in energy["power_integral"] and "cross-check" in energy["power_integral"]


def test_rapl_packages_unwrapped_and_the_shared_host_counted_once(tmp_path: Path) -> None:
    energy = energy_of(run_dir(tmp_path))
    # package-0 (100 W) wraps between t = 1002 and 1003, package-1 draws 50 W; both nodes read one host
    assert energy["steady"]["cpu_package_energy_j"] == pytest.approx(150.0 * 5)
    assert energy["training"]["cpu_package_energy_j"] == pytest.approx(150.0 * 9)
    assert energy["steady"]["cpu_package_problem"] is None
    nodes = {node["host"]: node["cpu_package_energy_j"] for node in energy["steady"]["nodes"]}
    assert nodes["nodeA"] == pytest.approx(750.0) and nodes["nodeB"] is None  # nodeB's log: the same host's


def test_a_counter_that_falls_inside_the_window_gives_no_figure_and_says_why(tmp_path: Path) -> None:
    run = run_dir(tmp_path, **{"nvml_nodeA.csv": "nvml_nodeA_counter_reset.csv",
                               "nvml_nodeB.csv": "nvml_nodeB_counter_reset.csv"})
    energy = energy_of(run)
    steady = energy["steady"]
    gpus = {gpu["index"]: gpu for gpu in steady["gpus"]}
    # GPU 0 restarted from 0 at t = 1003.25 (inside the steady steps): 7001000000 mJ at 1003.0, 75000 at 1003.5
    assert gpus[0]["energy_j"] is None and "fell by 7000925.000 J at 1003.500" in gpus[0]["problem"]
    assert energy["training"]["gpus"][0]["energy_j"] is None
    # GPU 1 restarted before the training window: its rise inside the windows is whole
    assert gpus[1]["energy_j"] == pytest.approx(1000.0) and gpus[1]["problem"] is None
    assert energy["training"]["gpus"][1]["energy_j"] == pytest.approx(1800.0)
    # the run's total would be part of the run: empty, with GPU 0's reason; never negative
    assert steady["gpu_energy_j"] is None and steady["gpu_j_per_sample"] is None
    assert "counter reset or wrap" in steady["gpu_energy_problem"]
    assert steady["power_integral_j"] == pytest.approx(2550.0)  # the cross-check does not use the counter


def test_a_missing_counter_gives_empty_figures_with_the_samplers_reason(tmp_path: Path) -> None:
    run = run_dir(tmp_path, **{"nvml_nodeB.csv": "nvml_nodeB_no_counter.csv",
                               "nvml_nodeB.missing.json": "nvml_nodeB_no_counter.missing.json"})
    steady = energy_of(run)["steady"]
    gpus = {gpu["index"]: gpu for gpu in steady["gpus"]}
    assert gpus[0]["energy_j"] == pytest.approx(1500.0)
    assert gpus[1]["energy_j"] is None and gpus[1]["problem"] == (
        "nvml_nodeB.csv: no energy_mj value for GPU 1 (NVML: Not Supported)")
    assert steady["gpu_energy_j"] is None and steady["gpu_energy_problem"] == gpus[1]["problem"]
    # the same file's utilisation is there: the busy fraction does not need the counter
    busy = busy_of(run)
    assert busy["busy_fraction"] == pytest.approx((1.0 + 0.7) / 2)


def test_old_logs_without_the_new_columns_still_read_and_say_why_there_is_no_energy(tmp_path: Path) -> None:
    run = run_dir(tmp_path, **{"nvml_nodeA.csv": "nvml_nodeA_old_format.csv"})
    warnings: list[str] = []
    nvml = summarise_nvml(run / "monitor", warnings)
    assert nvml is not None and {gpu["index"]: gpu["peak_mib"] for gpu in nvml["gpus"]} == {0: 20000.0, 1: 20000.0}
    steady = energy_of(run)["steady"]
    problem = {gpu["index"]: gpu["problem"] for gpu in steady["gpus"]}[0]
    assert problem is not None and "nvml_nodeA.csv has no energy_mj column" in problem
    assert steady["gpu_energy_j"] is None and steady["gpu_energy_problem"] == problem
    assert busy_of(run)["busy_fraction"] is None


def test_a_killed_samplers_partial_last_line_is_skipped(tmp_path: Path) -> None:
    run = run_dir(tmp_path)
    path = run / "monitor" / "nvml_nodeA.csv"
    assert not path.read_text().endswith("\n")  # the fixture ends mid-line
    data, log, fmt = read_nvml_log(path)
    assert fmt is NVML_ACTIVITY and data.shape == (23, 6)  # 23 whole samples, the 24th skipped
    assert log is not None and "truncated last line" in log.warnings()[0]
    warnings: list[str] = []
    summarise_nvml(run / "monitor", warnings)
    assert any("nvml_nodeA.csv:25: truncated last line" in warning for warning in warnings)


def test_a_sampler_that_stopped_before_the_window_ended_gives_no_figure(tmp_path: Path) -> None:
    run = run_dir(tmp_path)
    path = run / "monitor" / "nvml_nodeB.csv"
    lines = path.read_text().splitlines(keepends=True)
    path.write_text("".join(line for line in lines if not line[0].isdigit() or float(line.split(",")[0]) < 1008.6))
    steady = energy_of(run)["steady"]
    problem = {gpu["index"]: gpu["problem"] for gpu in steady["gpus"]}[1]
    assert problem == ("GPU 1 of nodeB: samples from 999.000 to 1008.500 do not cover the steady steps "
                       "(1002.000 to 1009.000)")
    assert steady["gpu_energy_j"] is None


def test_a_total_over_fewer_gpus_than_the_run_has_is_not_the_runs(tmp_path: Path) -> None:
    run = run_dir(tmp_path)
    (run / "monitor" / "nvml_nodeB.csv").unlink()
    steady = energy_of(run)["steady"]  # GPU 1 is still in its clocks log
    assert steady["gpu_energy_j"] is None
    assert steady["gpu_energy_problem"] == "no NVML sample of GPU 1 of nodeB (nvml_nodeB.csv)"
    (run / "monitor" / "gpu_clocks_nodeB.csv").unlink()
    steady = energy_of(run)["steady"]  # no trace of GPU 1 at all: the run's GPU count says it is missing
    assert steady["gpu_energy_j"] is None and steady["gpu_energy_problem"] == "NVML energy for 1 of the run's 2 GPUs"
    assert energy_of(run, expected_gpus=1)["steady"]["gpu_energy_j"] == pytest.approx(1500.0)


# --- busy fraction ------------------------------------------------------------------------------------------


def busy_of(run: Path) -> dict[str, Any]:
    steady, _training = step_spans(run, WARMUP_STEPS)
    return dict(summarise_busy(run_activity(run), steady, 2))


def test_busy_fraction_over_the_steady_steps_and_the_host_bound_mark(tmp_path: Path) -> None:
    busy = busy_of(run_dir(tmp_path))
    gpus = {gpu["index"]: gpu for gpu in busy["gpus"]}
    # 7 samples in steps 3-5 (1002.0 ... 1005.0) and 5 in steps 7-8 (1007.0 ... 1009.0) per GPU; GPU 0's idle
    # evaluation (0 %) lies outside them
    assert (gpus[0]["samples"], gpus[1]["samples"]) == (12, 12) and busy["samples"] == 24
    assert gpus[0]["busy_fraction"] == pytest.approx(1.0) and gpus[1]["busy_fraction"] == pytest.approx(0.7)
    assert busy["busy_fraction"] == pytest.approx(0.85)
    assert HOST_BOUND_BELOW == 0.90 and busy["host_bound"] is True and busy["host_bound_below"] == HOST_BOUND_BELOW
    assert "utilisation" in busy["method"] and "steady steps" in busy["method"]


def test_steady_steps_too_short_for_a_busy_fraction(tmp_path: Path) -> None:
    """Under MIN_BUSY_WINDOW_S of steady steps the utilisation readings are too few to judge: no fraction, no
    mark, and the reason names the window (the fixture's 5 s pass; its first two steady steps alone do not)."""
    run = run_dir(tmp_path)
    steady, _training = step_spans(run, WARMUP_STEPS)
    assert steady is not None and steady.seconds >= MIN_BUSY_WINDOW_S
    short = dataclasses.replace(steady, starts=steady.starts[:2], ends=steady.ends[:2])
    busy = dict(summarise_busy(run_activity(run), short, 2))
    assert short.seconds < MIN_BUSY_WINDOW_S and busy["busy_fraction"] is None and busy["host_bound"] is None
    assert busy["busy_problem"].startswith(f"steady steps of {short.seconds:.1f} s, under the 5 s")


def test_no_steady_step_no_busy_fraction(tmp_path: Path) -> None:
    run = run_dir(tmp_path)
    busy = dict(summarise_busy(run_activity(run), None, 2))
    assert busy["busy_fraction"] is None and busy["host_bound"] is None
    assert busy["busy_problem"] == "no steady step (steps.csv)"


# --- what tables read ---------------------------------------------------------------------------------------


def test_run_energy_reads_the_steady_figures_and_says_why_where_a_record_has_none(tmp_path: Path) -> None:
    record = {"energy": energy_of(run_dir(tmp_path))}
    figures = run_energy(record)
    assert figures.gpu_j_per_sample == pytest.approx(62.5) and figures.training_gpu_energy_j == pytest.approx(4500.0)
    assert figures.cpu_package_energy_j == pytest.approx(750.0) and figures.problem is None
    older = run_energy({})
    assert older.gpu_j_per_sample is None and older.problem is not None and "predates" in older.problem


# --- the sampler's cells, against a stand-in for pynvml ----------------------------------------------------------


class FakeNvmlError(Exception):
    def __init__(self, value: int) -> None:
        super().__init__("Not Supported" if value == 3 else "Unknown Error")
        self.value = value


def fake_pynvml(energy: dict[int, list[int] | None]) -> types.ModuleType:
    """pynvml with two GPUs: GPU 0's counter reads the given values in turn; GPU 1's is not supported."""
    module = types.ModuleType("pynvml")
    calls: dict[str, int] = {}
    module.NVMLError = FakeNvmlError  # type: ignore[attr-defined]
    module.NVML_ERROR_NOT_SUPPORTED = 3  # type: ignore[attr-defined]
    module.nvmlMemory_v2 = 2  # type: ignore[attr-defined]
    module.nvmlInit = module.nvmlShutdown = lambda: None  # type: ignore[attr-defined]
    module.nvmlDeviceGetCount = lambda: 2  # type: ignore[attr-defined]
    module.nvmlDeviceGetHandleByIndex = lambda index: index  # type: ignore[attr-defined]
    module.nvmlDeviceGetIndex = lambda handle: handle  # type: ignore[attr-defined]
    module.nvmlDeviceGetMemoryInfo = lambda handle, version: types.SimpleNamespace(  # type: ignore[attr-defined]
        used=1024 * 1024 * 100, total=1024 * 1024 * 1000)
    module.nvmlDeviceGetUtilizationRates = lambda handle: types.SimpleNamespace(gpu=40 + handle)  # type: ignore[attr-defined]

    def total_energy(handle: int) -> int:
        readings = energy[handle]
        calls[f"energy{handle}"] = calls.get(f"energy{handle}", 0) + 1
        if readings is None:
            raise FakeNvmlError(3)
        return readings.pop(0)

    module.nvmlDeviceGetTotalEnergyConsumption = total_energy  # type: ignore[attr-defined]
    module.calls = calls  # type: ignore[attr-defined]
    return module


def test_sampler_writes_the_counter_and_utilisation_and_an_empty_cell_with_its_reason_once(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    fake = fake_pynvml({0: [5000, 5100, 5200], 1: None})
    monkeypatch.setitem(sys.modules, "pynvml", fake)
    out = tmp_path / "nvml_vm.csv"
    stop = threading.Event()
    # three samples: the third wait stops the loop
    calls = {"n": 0}
    real_wait = stop.wait

    def counted_wait(timeout: float | None = None) -> bool:
        calls["n"] += 1
        if calls["n"] == 3:
            stop.set()
        return real_wait(0)

    monkeypatch.setattr(stop, "wait", counted_wait)
    assert monitors.sample_nvml(out, 1, None, stop) == 0
    lines = out.read_text().splitlines()
    assert lines[0] == monitors.NVML_HEADER
    assert lines[1].endswith(",0,100.00,1000.00,5000,40") and lines[2].endswith(",1,100.00,1000.00,,41")
    assert [line.split(",")[4] for line in lines[1:]] == ["5000", "", "5100", "", "5200", ""]
    assert fake.calls["energy1"] == 1  # not supported: asked once, never again  # type: ignore[attr-defined]
    assert capsys.readouterr().err.count("GPU 1: energy_mj left empty: NVML: Not Supported") == 1
    assert monitors.missing_path(out).name == "nvml_vm.missing.json"
    assert (tmp_path / "nvml_vm.missing.json").read_text().count("Not Supported") == 1
    # and the report reads it back: GPU 1's reason is the sampler's
    run = tmp_path / "run"
    (run / "monitor").mkdir(parents=True)
    shutil.copy(out, run / "monitor" / out.name)
    shutil.copy(tmp_path / "nvml_vm.missing.json", run / "monitor")
    activity = run_activity(run)
    reason = "nvml_vm.csv: no energy_mj value for GPU 1 (NVML: Not Supported)"
    assert [gpu.problem for gpu in activity.energy] == [None, reason]
    assert activity.energy[0].values.tolist() == [5000.0, 5100.0, 5200.0]


def test_rapl_zones_are_found_and_unreadable_ones_refused_with_a_reason(tmp_path: Path) -> None:
    for zone, name in (("intel-rapl:0", "package-0"), ("intel-rapl:0:0", "dram"), ("intel-rapl-mmio:0", "package-0")):
        (tmp_path / zone).mkdir()
        (tmp_path / zone / "name").write_text(name + "\n")
        (tmp_path / zone / "energy_uj").write_text("123\n")
        (tmp_path / zone / "max_energy_range_uj").write_text("262143328850\n")
    packages, why = monitors.rapl_packages(tmp_path)
    assert [zone.name for zone in packages] == ["intel-rapl:0"] and why == ""  # subzones and mmio left out
    (tmp_path / "intel-rapl:0" / "energy_uj").write_text("")  # as a root-only file reads to this user: nothing
    packages, why = monitors.rapl_packages(tmp_path)
    assert packages == [] and "energy_uj is not readable by this user" in why
    assert "no RAPL package zone" in monitors.rapl_packages(tmp_path / "absent")[1]


# --- tables, the tune recommendation, compare --------------------------------------------------------------


def with_activity(summary: dict[str, Any], j_per_sample: float | None, busy: float | None,
                  problem: str | None = None) -> dict[str, Any]:
    """A summary (test_aggregate.make_summary) with the steady energy and busy sections parse-memory writes."""
    steady = {"gpu_j_per_sample": j_per_sample, "gpu_energy_j": None if j_per_sample is None else 40 * j_per_sample,
              "gpu_energy_problem": problem}
    return {**summary, "energy": {"steady": steady, "training": None, "problem": None},
            "gpu_busy": {"busy_fraction": busy, "busy_problem": None if busy is not None else "none here"}}


def test_tables_show_j_per_sample_and_mark_host_bound_rows_with_the_threshold() -> None:
    from test_aggregate import make_summary, point, study
    from zerosweep.report.study import tables

    runs = [with_activity(make_summary(point(0), steady=12.5), 62.5, 0.85),
            with_activity(make_summary(point(1), steady=12.0), None, 0.95, "NVML: Not Supported")]
    table = tables.build_table(study("zero", "comparison", runs), runs)
    by_run = {row["run_id"]: row for row in table.rows}
    assert by_run["z0-offnone-nopin-g1n1"]["gpu_j_per_sample"] == 62.5
    assert by_run["z0-offnone-nopin-g1n1"]["host_bound"] is True and by_run["z1-offnone-nopin-g1n1"]["host_bound"] is False
    text = tables.markdown(table)
    header = text.splitlines()[4]
    assert "GPU Energy per Sample (J)" in header and header.index("| N |") < header.index("GPU Energy per Sample")
    assert "| 12.5 § | 1 | 62.50 |" in text and "| 12.0 | 1 | – |" in text  # the mark on the host-bound row only
    footnote = next(line for line in text.splitlines() if line.startswith("- § host-bound"))
    assert f"less than {100 * HOST_BOUND_BELOW:.0f} %" in footnote and footnote.endswith("z0-offnone-nopin-g1n1.")
    assert "Empty for z1-offnone-nopin-g1n1: NVML: Not Supported." in text
    # without an energy figure in any row, no J/sample column
    plain = [make_summary(point(0), steady=12.5), make_summary(point(1), steady=12.0)]
    assert "Energy per Sample" not in tables.markdown(tables.build_table(study("z", "comparison", plain), plain))


def test_a_rows_host_bound_mark_is_its_median_busy_fractions() -> None:
    from test_aggregate import make_summary, point, study
    from zerosweep.report.study import tables

    base = make_summary(point(0), steady=12.5)
    runs = [with_activity({**base, "run_id": f"{base['run_id']}-r{k}"}, 60.0, busy)
            for k, busy in enumerate((0.85, 0.93, 0.97), start=1)]
    (row,) = tables.build_table(study("zero", "comparison", runs), runs).rows
    assert row["gpu_busy_fraction"] == pytest.approx(0.93) and row["host_bound"] is False  # one run below: not the row


def test_recommendation_puts_the_most_energy_efficient_run_beside_the_fastest() -> None:
    from zerosweep.report.tune.recommend import budget_table, efficiency_table, most_efficient

    def run(run_id: str, peak_gib: float, speed: float, j_per_sample: float | None) -> dict[str, Any]:
        return {"run_id": run_id, "label": run_id, "status": "ok", "micro_batch": 1, "gradient_accumulation_steps": 1,
                "peak_mib": peak_gib * 1024, "samples_per_second": speed, "samples_per_second_low": None,
                "samples_per_second_high": None, "tflops_per_gpu": None, "mfu": None, "gpu_j_per_sample": j_per_sample,
                "gpu_mean_power_w": None}

    runs = [run("small", 10, 5, 40.0), run("mid", 20, 9, 30.0), run("big", 40, 12, 35.0), run("cpu", 5, 1, None)]
    assert most_efficient(runs) == runs[1] and most_efficient([runs[3]]) is None
    fastest = budget_table(runs, [8, 24, 80]).set_index("Budget (GiB)")
    efficient = efficiency_table(runs, [8, 24, 80]).set_index("Budget (GiB)")
    assert fastest.loc[80.0, "Run"] == "big" and fastest.loc[80.0, "J/sample"] == 35.0
    assert efficient.loc[80.0, "Run"] == "mid" and efficient.loc[80.0, "J/sample"] == 30.0  # fits, fewer J/sample
    assert efficient.loc[24.0, "Run"] == "mid"
    assert efficient.loc[8.0, "Configuration"] == "no measured run that fits has an energy figure"  # only "cpu" fits


def test_compare_gives_j_per_sample_and_its_ratio_where_both_sides_have_it(tmp_path: Path) -> None:
    import json

    from test_compare import write_run
    from zerosweep.report.study.compare import compare_results

    a, b = tmp_path / "a", tmp_path / "b"
    for results, seed, energies in ((a, 1, {"z0-offnone-nopin-g1n1": 60.0, "z1-offnone-nopin-g1n1": None}),
                                    (b, 2, {"z0-offnone-nopin-g1n1": 45.0, "z1-offnone-nopin-g1n1": 50.0})):
        for run_id, j_per_sample in energies.items():
            write_run(results, run_id, 0.4, 23000, seed)
            path = results / "runs" / run_id / "summary.json"
            path.write_text(json.dumps(with_activity(json.loads(path.read_text()), j_per_sample, 0.9)))
    frame = compare_results(a, b).set_index("run")
    assert frame.loc["z0-offnone-nopin-g1n1", "A J/sample"] == 60.0
    assert frame.loc["z0-offnone-nopin-g1n1", "J/sample ratio B/A"] == pytest.approx(0.75)
    assert frame.loc["z1-offnone-nopin-g1n1", "B J/sample"] == 50.0
    assert pd_isna(frame.loc["z1-offnone-nopin-g1n1", "J/sample ratio B/A"])  # A has none: no ratio


def pd_isna(value: Any) -> bool:
    import pandas as pd

    return bool(pd.isna(value))


def test_rapl_sampler_writes_what_the_report_reads(tmp_path: Path) -> None:
    import time

    from zerosweep.report.run_summary.energy import rapl_series

    root = tmp_path / "powercap"
    for zone, name in (("intel-rapl:0", "package-0"), ("intel-rapl:1", "package-1")):
        (root / zone).mkdir(parents=True)
        (root / zone / "name").write_text(name + "\n")
        (root / zone / "energy_uj").write_text("1000000\n")
        (root / zone / "max_energy_range_uj").write_text("262143328850\n")
    packages, _why = monitors.rapl_packages(root)
    out = tmp_path / "rapl_vm.csv"
    sampler = monitors.RaplSampler(out, packages, interval_s=0.01)
    sampler.start()
    time.sleep(0.05)
    for zone in packages:  # 3 J more on each package before the last sample
        (zone / "energy_uj").write_text("4000000\n")
    sampler.stop()
    lines = out.read_text().splitlines()
    assert lines[0] == monitors.RAPL_HEADER and len(lines) >= 5 and (len(lines) - 1) % 2 == 0
    assert lines[-1].endswith(",intel-rapl:1,package-1,4000000,262143328850")  # stop() takes one last sample
    series = rapl_series(out, "vm")
    assert series.problem is None and series.joules[-1] == pytest.approx(6.0)  # both packages, 3 J each
