"""One owner of a run's throughput figures (report/run_summary/throughput.run_throughput) and of its peak (report/run_summary/run_peak):
the table row, the tune outcome and `compare` read the same estimator and the same monitor."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
from zerosweep.report.run_summary.run_peak import GPU_MONITORS, NVIDIA_SMI_PEAK, NVML_PEAK, run_peak, shared_peak_source
from zerosweep.report.run_summary.throughput import (
    LAUNCHER_MEAN,
    MEDIAN_STEP,
    peak_notes,
    run_throughput,
    summarise_throughput,
)
from zerosweep.report.study.table_fields import record_fields
from zerosweep.report.tune.tune_records import run_outcome
from zerosweep.run.steps import StepLayout, StepRecord, StepRow

FLOPS_PER_TOKEN = 3_506_282_496.0  # bloom-560m at 512 tokens (tests/test_flops.py)
MAX_LENGTH = 512
MICRO_BATCH = 28


def drifting_run(run_dir: Path) -> dict[str, Any]:
    """A GPU run whose steady steps are mostly 0.35 s but a quarter take 0.50 s: the median step's rate (80
    samples/s) differs from the launcher's mean over the same window (samples / seconds, about 72)."""
    record = StepRecord(layout=StepLayout(MICRO_BATCH, 1, 1, 500), warmup_steps=1, max_length=MAX_LENGTH)
    clock = 1.0e9
    for step in range(1, 22):
        seconds = 2.0 if step == 1 else (0.50 if step % 4 == 0 else 0.35)
        record.rows.append(StepRow(step, clock, clock + seconds, seconds, MICRO_BATCH, MICRO_BATCH * MAX_LENGTH,
                                   False))
        clock += seconds
    record.stop_reason = "max_steps"
    record.write_csv(run_dir / "steps.csv")
    totals = record.totals()
    metrics = {"steady_samples_per_second": totals["steady_samples_per_second"],
               "steady_tokens_per_second": totals["steady_tokens_per_second"],
               "flops_per_token": FLOPS_PER_TOKEN, "world_size": 1, "real_token_fraction": 0.5}
    point = {"deepspeed": True, "zero_stage": 1, "offload": "none", "pin_memory": False, "gpus_per_node": 1,
             "nodes": 1, "world_size": 1}
    return {
        "schema_version": 3, "run_id": "z1-offnone-nopin-g1n1-xabc-b28", "label": "ZeRO Stage 1", "status": "ok",
        "point": point, "metrics": metrics,
        "setup": {"device": "cuda", "gpu_name": "NVIDIA H100 80GB HBM3", "precision": "fp16", "max_length": MAX_LENGTH,
                  "per_device_batch_size": MICRO_BATCH, "gradient_accumulation_steps": 1},
        "gpu": {"peak_mib": 80000.0}, "nvml": {"peak_mib": 80975.0}, "torch": {"max_reserved_mib": 78000.0},
        "cpu": None, "warnings": [], "unusable": None,
        "throughput": summarise_throughput(run_dir, {"stop_reason": "max_steps", "recorded_steps": 21},
                                           warmup_steps=1),
    }


def test_tune_outcome_pairs_tflops_with_the_median_step(tmp_path: Path) -> None:
    """The published tune headline paired the median step's samples/s with TFLOP/s from the launcher's mean
    tokens/s; the outcome's TFLOP/s must be FLOPs per token x tokens at the median step / GPUs."""
    summary = drifting_run(tmp_path)
    median = summary["throughput"]["samples_per_second"]
    mean = summary["metrics"]["steady_samples_per_second"]
    assert median == pytest.approx(MICRO_BATCH / 0.35) and mean < 0.95 * median  # the two estimators differ
    outcome = run_outcome(summary)
    assert outcome["samples_per_second"] == median and outcome["throughput_estimator"] == MEDIAN_STEP
    expected = FLOPS_PER_TOKEN * median * MAX_LENGTH / 1 / 1e12
    assert outcome["tflops_per_gpu"] == pytest.approx(expected, rel=1e-12)
    assert outcome["mfu"] == pytest.approx(expected / 989.4, rel=1e-12)  # H100 SXM, dense fp16


def test_table_row_and_tune_outcome_agree(tmp_path: Path) -> None:
    summary = drifting_run(tmp_path)
    fields = record_fields(summary, "ZeRO Stage 1", None)  # type: ignore[arg-type]
    outcome = run_outcome(summary)
    assert fields["steady_samples_per_second"] == outcome["samples_per_second"]
    assert fields["tflops_per_gpu"] == outcome["tflops_per_gpu"] and fields["mfu"] == outcome["mfu"]
    assert fields["steady_tokens_per_second"] == pytest.approx(outcome["samples_per_second"] * MAX_LENGTH)
    assert fields["steady_real_tokens_per_second"] == pytest.approx(0.5 * fields["steady_tokens_per_second"])


def test_records_without_steps_keep_the_launcher_pair_and_name_it(tmp_path: Path) -> None:
    summary = drifting_run(tmp_path)
    summary["throughput"] = None  # recorded before steps.csv existed
    rate = run_throughput(summary, None)
    assert rate.estimator == LAUNCHER_MEAN and rate.samples_per_second_low is None
    assert rate.samples_per_second == summary["metrics"]["steady_samples_per_second"]
    assert rate.tflops_per_gpu == pytest.approx(FLOPS_PER_TOKEN * summary["metrics"]["steady_tokens_per_second"] / 1e12)
    summary["metrics"] = {}
    assert run_throughput(summary, None).estimator is None


def test_fp32_run_is_judged_against_the_fp32_peak(tmp_path: Path) -> None:
    summary = drifting_run(tmp_path)
    sixteen = run_throughput(summary, None)
    summary["setup"]["precision"] = "fp32"
    single = run_throughput(summary, None)
    assert single.tflops_per_gpu == sixteen.tflops_per_gpu
    assert single.peak_tflops == 66.9 and single.peak_source == "table:NVIDIA H100 80GB HBM3, fp32"
    assert single.mfu == pytest.approx(sixteen.tflops_per_gpu / 66.9)  # type: ignore[operator]


def test_unknown_gpu_has_no_mfu_and_a_note_saying_how_to_set_the_peak(tmp_path: Path) -> None:
    summary = drifting_run(tmp_path)
    summary["setup"]["gpu_name"] = "NVIDIA H200 NVL 2"  # a near miss: no substring guessing
    rate = run_throughput(summary, None)
    assert rate.tflops_per_gpu is not None and rate.mfu is None and rate.peak_tflops is None
    assert rate.peak_note is not None and "NVIDIA H200 NVL 2" in rate.peak_note
    assert "runtime.peak_tflops" in rate.peak_note
    other = copy.deepcopy(summary)
    other["run_id"] = "z2-offnone-nopin-g1n1-xabc-b28"
    assert peak_notes([summary, other], None) == [rate.peak_note]  # one note per GPU model, not per run
    configured = run_throughput(summary, 500.0)
    assert configured.mfu == pytest.approx(rate.tflops_per_gpu / 500.0) and configured.peak_note is None
    assert peak_notes([summary], 500.0) == []


def test_cpu_runs_have_tflops_but_no_mfu_and_no_note(tmp_path: Path) -> None:
    summary = drifting_run(tmp_path)
    summary["setup"].update(device="cpu", gpu_name=None)
    rate = run_throughput(summary, None)
    assert rate.tflops_per_gpu is not None and rate.mfu is None and rate.peak_note is None


# --- the peak ---------------------------------------------------------------------------------------------


def test_run_peak_order_per_device(tmp_path: Path) -> None:
    summary = drifting_run(tmp_path)
    peak = run_peak(summary)
    assert peak is not None and (peak.mib, peak.name) == (80975.0, "nvml.peak_mib")
    summary["nvml"] = None
    assert run_peak(summary).name == "gpu.peak_mib"  # type: ignore[union-attr]
    summary["gpu"] = None
    assert run_peak(summary).name == "torch.max_reserved_mib"  # type: ignore[union-attr]
    assert run_peak(summary, GPU_MONITORS) is None  # the tables' verdicts use the GPU monitors only
    cpu = {"setup": {"device": "cpu"}, "torch": {"max_rss_mib": 3000.0, "max_reserved_mib": None}}
    assert run_peak(cpu).name == "torch.max_rss_mib"  # type: ignore[union-attr]


def test_tune_outcome_peak_is_the_owner_peak(tmp_path: Path) -> None:
    summary = drifting_run(tmp_path)
    summary["nvml"] = None
    outcome = run_outcome(summary)
    assert (outcome["peak_mib"], outcome["peak_source"]) == (80000.0, "gpu.peak_mib")


def test_shared_peak_source_takes_the_first_monitor_every_run_has(tmp_path: Path) -> None:
    full = drifting_run(tmp_path)
    smi_only = {**full, "nvml": None}
    cpu = {**full, "setup": {"device": "cpu"}, "gpu": None, "nvml": None}
    assert shared_peak_source([full, full]) == NVML_PEAK
    assert shared_peak_source([full, smi_only]) == NVIDIA_SMI_PEAK  # mixing NVML and nvidia-smi peaks: no
    assert shared_peak_source([full, cpu]) == NVML_PEAK  # a run without any GPU monitor stays without a figure
    assert shared_peak_source([cpu]) is None and shared_peak_source([]) is None
