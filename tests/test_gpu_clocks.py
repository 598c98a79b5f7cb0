"""GPU clocks over a run's training steps (report/run_summary/gpu_clocks.py), from clock logs in the sampler's format."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from zerosweep.report.run_summary.gpu_clocks import step_clocks, summarise_clocks
from zerosweep.report.run_summary.memory import summarise_run
from zerosweep.run.monitors import CLOCKS_HEADER

REAL_RUN = Path(__file__).parent / "fixtures" / "real_h100_run"

STEPS = """step,wall_start,wall_end,seconds,samples,tokens,eval_gap
1,100.0,101.0,1.0,4,2048,0
2,101.0,101.5,0.5,4,2048,0
3,101.5,102.0,0.5,4,2048,0
4,102.0,102.5,0.5,4,2048,0
"""
# Outside the steps (before 100 and after 102.5) the GPU idles at a low clock; inside, one sample is held down
# by the software power cap (0x4) and one by an idle GPU (0x1, not a slowdown).
CLOCKS = CLOCKS_HEADER + """
99.0,0,345,70.0,30,1
100.2,0,1980,400.5,41,0
100.7,0,1980,410.0,42,0
101.2,0,1755,699.0,44,4
101.7,0,1980,380.0,45,1
102.2,0,1980,390.0,45,0
103.0,0,345,71.0,40,1
103.5,0,19"""  # the sampler was killed mid-line


def run_dir(tmp_path: Path) -> Path:
    run = tmp_path / "run"
    (run / "monitor").mkdir(parents=True)
    (run / "steps.csv").write_text(STEPS)
    (run / "monitor" / "gpu_clocks_vm.csv").write_text(CLOCKS)
    return run


def test_clocks_over_the_training_steps_only(tmp_path: Path) -> None:
    warnings: list[str] = []
    clocks = summarise_clocks(run_dir(tmp_path), warnings)
    assert clocks is not None and warnings == []
    assert clocks["window"] == "training steps"
    (gpu,) = clocks["gpus"]
    assert (gpu["host"], gpu["index"], gpu["samples"]) == ("vm", 0, 5)  # the idle 345 MHz samples are outside
    assert gpu["sm_clock_mhz_median"] == 1980.0 and gpu["sm_clock_mhz_min"] == 1755.0
    assert gpu["power_w_median"] == 400.5 and gpu["temperature_c_max"] == 45.0
    assert gpu["clock_event_reasons"] == {"sw_power_cap": 0.2}  # 1 of 5 samples; GPU idle is not a slowdown
    assert clocks["throttled"] == ["sw_power_cap"]


def test_whole_log_without_steps_and_bad_header_is_a_warning(tmp_path: Path) -> None:
    run = run_dir(tmp_path)
    (run / "steps.csv").unlink()
    clocks = summarise_clocks(run, [])
    assert clocks is not None and clocks["window"] == "whole log"
    assert clocks["gpus"][0]["samples"] == 7 and clocks["sm_clock_mhz_min"] == 345.0
    (run / "monitor" / "gpu_clocks_vm.csv").write_text("time,gpu,clock\n1,0,1980\n")
    warnings: list[str] = []
    assert summarise_clocks(run, warnings) is None
    assert len(warnings) == 1 and "gpu_clocks_vm.csv" in warnings[0] and "expected" in warnings[0]


def test_each_step_gets_its_nearest_clock_sample(tmp_path: Path) -> None:
    steps = step_clocks(run_dir(tmp_path))
    assert steps["sm_clock_mhz"].tolist() == [1980.0, 1755.0, 1980.0, 1980.0]
    assert steps["clock_event_reasons"].tolist() == [0, 4, 1, 0]


def test_summary_json_carries_the_clocks(tmp_path: Path) -> None:
    run = tmp_path / REAL_RUN.name
    shutil.copytree(REAL_RUN, run)
    (run / "monitor" / "gpu_clocks_vm.csv").write_text(CLOCKS)
    summary = summarise_run(run)
    assert summary["gpu_clocks"] is not None
    # The real run has no steps.csv: the whole log counts.
    assert summary["gpu_clocks"]["window"] == "whole log"
    assert summary["gpu_clocks"]["sm_clock_mhz_median"] == pytest.approx(1980.0)
