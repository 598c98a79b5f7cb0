"""One small study set through the real Snakemake CLI with the local executor, on CPU: training runs,
memory parsing, tables, plots, the summary and the HTML report, checked by content."""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path

import pytest
from conftest import run_snakemake
from test_workflow import job_counts

sys.path.insert(0, str(Path(__file__).resolve().parent / "slurm"))

from workflow import make_workdir

STUDIES = {
    "baseline": {"table": "baseline", "deepspeed": False, "title": "Baseline"},
    "pin_memory": {"table": "comparison", "zero_stage": [2], "offload": ["cpu"], "pin_memory": [False, True],
                   "title": "Pin memory"},
}


@pytest.mark.slow
def test_local_study_set_produces_tables_plots_summary_and_report(tmp_path: Path) -> None:
    workdir = make_workdir(tmp_path / "wd", STUDIES, tmp_path / "torch_extensions",
                           overrides={"slurm": {"cpus_per_gpu": 1}})
    args = ("--cores", "2", "--configfile", str(workdir.overlay_file))
    result = run_snakemake("all", *args, cwd=workdir.path, timeout=1200)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    results = workdir.results

    with open(results / "tables" / "pin_memory.csv", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    assert [row["run_id"] for row in rows] == ["z2-offcpu-nopin-g1n1", "z2-offcpu-pin-g1n1"]
    assert [row["config"] for row in rows] == [
        "ZeRO Stage 2 + Offloading", "ZeRO Stage 2 + Offloading (pin_memory)"]
    for row in rows:
        assert row["status"] == "ok"
        assert float(row["train_samples_per_second"]) > 0 and float(row["steady_samples_per_second"]) > 0
        assert float(row["cpu_peak_mib"]) >= float(row["cpu_average_mib"]) > 0
        assert row["gpu_peak_mib"] == ""  # CPU run: no GPU monitor, no invented zero
        # one run per point; its steady figure is the median step's from steps.csv (summary.json `throughput`);
        # 3 steps with 1 of warm-up leave too few steady steps for an interval or a test: none is invented
        record = json.loads((results / "runs" / row["run_id"] / "summary.json").read_text())
        assert float(row["steady_samples_per_second"]) == pytest.approx(record["throughput"]["samples_per_second"])
        assert row["repeats"] == "1" and row["runs"] == row["run_id"]
        assert record["throughput"]["steady_steps"] < 6 and row["steady_spread"] == ""
        assert row["steady_samples_per_second_low"] == ""
    assert rows[0]["throughput_verdict"] == "reference"
    assert rows[1]["throughput_verdict"] == "untested"  # one run a side: no verdict
    assert rows[1]["memory_verdict"] == ""  # CPU runs: no GPU peak to test
    markdown = (results / "tables" / "pin_memory.md").read_text(encoding="utf-8")
    assert "| DeepSpeed Config | Peak GPU Memory Used (MiB) |" in markdown and "z2-offcpu-pin-g1n1" in markdown

    baseline = (results / "tables" / "baseline.md").read_text(encoding="utf-8")
    for metric in ("Final Train Loss", "Eval Loss (Final)", "Train Samples/sec", "Steps per Epoch",
                   "CPU Peak Usage (MiB)"):
        assert metric in baseline

    # the table's CPU peak is the psrecord log's Real maximum of that run
    log = results / "runs" / "z2-offcpu-pin-g1n1" / "monitor"
    psrecord = next(log.glob("cpu_memory_log_*.txt"))
    real = [float(line.split()[2]) for line in psrecord.read_text().splitlines() if line and not line.startswith("#")]
    assert float(rows[1]["cpu_peak_mib"]) == pytest.approx(max(real), abs=1)

    for study in STUDIES:
        for plot in ("memory.png", "throughput.png"):
            assert (results / "plots" / study / plot).stat().st_size > 10_000
    for run in ("base-g1n1", "z2-offcpu-nopin-g1n1", "z2-offcpu-pin-g1n1"):
        assert (results / "plots" / "runs" / f"{run}.png").stat().st_size > 10_000
        assert json.loads((results / "runs" / run / "summary.json").read_text())["status"] == "ok"

    summary = (results / "summary.md").read_text(encoding="utf-8")
    assert "with pin_memory, steady throughput went from" in summary
    assert "Verdicts against the reference row" in markdown and "throughput difference untested" in summary

    # a finished workflow has nothing left to do: no run is trained twice
    again = run_snakemake("-n", "all", *args, cwd=workdir.path)
    assert "Nothing to be done" in again.stdout + again.stderr
    # the same results/ under a GPU config (a user's next step after the CPU demo): every run is scheduled with the
    # op it loads. A shared ops file whose parameters changed once made Snakemake build the ops and stop there.
    on_gpu = run_snakemake("-n", "all", *args, "--config", "runtime={device: cuda}", cwd=workdir.path)
    assert on_gpu.returncode == 0, on_gpu.stderr[-2000:]
    counts = job_counts(on_gpu.stdout + on_gpu.stderr)
    assert counts["build_op"] == 1 and counts["train"] == 3 and counts["all"] == 1, counts

    report = run_snakemake("--report", str(results / "report.html"), *args, cwd=workdir.path)
    assert report.returncode == 0, report.stderr[-2000:]
    html = (results / "report.html").read_text(encoding="utf-8", errors="replace")
    assert "pin_memory.csv" in html and "memory.png" in html
