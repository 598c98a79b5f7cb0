"""Run-level memory modes over the training window (report/run_summary/training_window.py), the workshop's whole-log
printout unchanged beside them.

A synthetic run on the real H100 run's records: idle samples before and after training outnumber the busy
ones, so the whole log's mode is the idle value and the training window's the busy one. The node's clock is
UTC+05:30, so nvidia-smi's local timestamps are 5.5 h off the steps' unix seconds.
"""

from __future__ import annotations

import datetime as dt
import itertools
import json
import shutil
from pathlib import Path

import pytest
from zerosweep import records as f
from zerosweep.report.run_summary.memory import summarise_run
from zerosweep.report.study import labels
from zerosweep.report.study.table_fields import record_fields

REAL_RUN = Path(__file__).parent / "fixtures" / "real_h100_run"
TAG = "h100node1"
ZONE = dt.timezone(dt.timedelta(hours=5, minutes=30))
FIRST_SAMPLE = dt.datetime(2026, 11, 24, 9, 6, 35, tzinfo=ZONE)  # node-local time of nvidia-smi's first sample
T0 = FIRST_SAMPLE.timestamp()
STARTED_AT = (FIRST_SAMPLE - dt.timedelta(seconds=3)).astimezone(dt.timezone.utc).isoformat(timespec="seconds")
WINDOW = (T0 + 14.5, T0 + 30.5)  # the first step's start and the last step's end (unix seconds)

IDLE_GPU, BUSY_GPU = 4, 21419
SMI_OFFSETS = range(0, 60, 5)  # 12 samples; 15, 20, 25 and 30 s lie in the window
IDLE_CPU, BUSY_CPU = 24.0, 2451.5
PSRECORD_STARTED = T0 + 2.0
PSRECORD_ELAPSED = range(0, 50, 5)  # 10 samples; at 2 + 15, 20 and 25 s in the window


def in_window(unix_s: float) -> bool:
    return WINDOW[0] <= unix_s <= WINDOW[1]


def smi_log() -> str:
    rows = []
    for offset in SMI_OFFSETS:
        local = (FIRST_SAMPLE + dt.timedelta(seconds=offset)).strftime("%Y/%m/%d %H:%M:%S.000")
        used = BUSY_GPU if in_window(T0 + offset) else IDLE_GPU
        rows.append(f"{local}, 0, NVIDIA H100 80GB HBM3, {used}, 81559\n")
    return "timestamp, index, name, memory.used [MiB], memory.total [MiB]\n" + "".join(rows)


def psrecord_log() -> str:
    rows = [f"{elapsed:12.3f} {50.0:12.3f} {BUSY_CPU if in_window(PSRECORD_STARTED + elapsed) else IDLE_CPU:12.3f} "
            f"{3000.0:12.3f}\n" for elapsed in PSRECORD_ELAPSED]
    return "# Elapsed time   CPU (%)     Real (MB)   Virtual (MB)\n" + "".join(rows)


def steps_csv(shift_s: float = 0.0) -> str:
    edges = [shift_s + WINDOW[0] + i * (WINDOW[1] - WINDOW[0]) / 4 for i in range(5)]
    rows = [f"{i + 1},{start},{end},{end - start},4,2048,0\n" for i, (start, end) in
            enumerate(itertools.pairwise(edges))]
    return "step,wall_start,wall_end,seconds,samples,tokens,eval_gap\n" + "".join(rows)


def node_record(psrecord_started: float | None) -> dict[str, object]:
    psrecord = {"status": "ok", "file": f"monitor/cpu_memory_log_{TAG}.txt", "reason": None, "exit_code": 0}
    if psrecord_started is not None:
        psrecord["started_s"] = psrecord_started
    return {"node_rank": 0, "tag": TAG, "started_at": STARTED_AT, "monitors": {"psrecord": psrecord}}


@pytest.fixture
def run(tmp_path: Path) -> Path:
    run = tmp_path / REAL_RUN.name
    shutil.copytree(REAL_RUN, run)
    (run / "monitor" / f"gpu_memory_log_{TAG}.csv").write_text(smi_log())
    (run / "monitor" / f"cpu_memory_log_{TAG}.txt").write_text(psrecord_log())
    (run / "steps.csv").write_text(steps_csv())
    (run / "records").mkdir()
    (run / "records" / "node0.json").write_text(json.dumps(node_record(PSRECORD_STARTED)))
    return run


def test_fixture_has_more_idle_than_busy_samples() -> None:
    busy_gpu = sum(in_window(T0 + offset) for offset in SMI_OFFSETS)
    busy_cpu = sum(in_window(PSRECORD_STARTED + elapsed) for elapsed in PSRECORD_ELAPSED)
    assert (busy_gpu, len(SMI_OFFSETS) - busy_gpu) == (4, 8)
    assert (busy_cpu, len(PSRECORD_ELAPSED) - busy_cpu) == (3, 7)


def test_gpu_mode_over_the_training_window_whole_log_printout_unchanged(run: Path) -> None:
    gpu = summarise_run(run)["gpu"]
    assert gpu is not None
    assert (gpu["training_window_modes_mib"], gpu["training_window_samples"]) == ([BUSY_GPU], 4)
    assert gpu["training_window_problem"] is None
    # The workshop's analyze_memory.py output, over the whole log: the idle value wins there.
    assert gpu["gpus"][0]["workshop_line"] == (
        f"[gpu_memory_log_{TAG} - GPU 0] Peak = 21419 MiB, Avg = 7142.33 MiB, Mode = 4 MiB")
    assert (gpu["gpus"][0]["modes_mib"], gpu["gpus"][0]["mode_text"]) == ([IDLE_GPU], "4")
    assert (gpu["modes_mib"], gpu["mode_text"]) == ([IDLE_GPU], "4")


def test_cpu_mode_over_the_training_window_whole_log_printout_unchanged(run: Path) -> None:
    cpu = summarise_run(run)["cpu"]
    assert cpu is not None
    assert (cpu["training_window_modes_mib"], cpu["training_window_samples"]) == ([BUSY_CPU], 3)
    assert cpu["training_window_problem"] is None
    (node,) = cpu["nodes"]
    assert node["workshop_lines"] == ["   Peak =    2452 MB", "   Average = 752.25 MB", "   Mode =    24 MB"]
    assert (node["modes_mib"], node["mode_text"]) == ([IDLE_CPU], "24")
    assert cpu["modes_mib"] == [IDLE_CPU]


def test_tables_show_the_training_window_modes_labelled_so(run: Path) -> None:
    fields = record_fields(summarise_run(run), "baseline", None)
    assert (fields[f.GPU_MODES_MIB], fields[f.CPU_MODES_MIB]) == ([BUSY_GPU], [BUSY_CPU])
    for kind in ("baseline", "comparison", "scaling"):
        assert "(training window)" in labels.label(f.GPU_MODES_MIB, kind)
        assert "(training window)" in labels.label(f.CPU_MODES_MIB, kind)


def test_run_that_stopped_before_training_has_no_window_modes(run: Path) -> None:
    (run / "steps.csv").unlink()
    summary = summarise_run(run)
    for section in (summary["gpu"], summary["cpu"]):
        assert section is not None
        assert (section["training_window_modes_mib"], section["training_window_samples"]) == (None, 0)
        assert "no steps.csv" in str(section["training_window_problem"])
    assert summary["gpu"]["gpus"][0]["workshop_line"].endswith("Mode = 4 MiB")  # the printout stays
    fields = record_fields(summary, "baseline", None)
    assert (fields[f.GPU_MODES_MIB], fields[f.CPU_MODES_MIB]) == (None, None)  # no silent whole-log fallback


def test_record_without_psrecord_start_has_no_cpu_window(run: Path) -> None:
    (run / "records" / "node0.json").write_text(json.dumps(node_record(None)))
    summary = summarise_run(run)
    assert summary["cpu"] is not None and summary["cpu"]["training_window_modes_mib"] is None
    assert "started_s" in str(summary["cpu"]["training_window_problem"])
    assert summary["gpu"] is not None and summary["gpu"]["training_window_modes_mib"] == [BUSY_GPU]


def test_without_node_record_nvidia_smi_clock_cannot_be_placed(run: Path) -> None:
    shutil.rmtree(run / "records")
    gpu = summarise_run(run)["gpu"]
    assert gpu is not None and gpu["training_window_modes_mib"] is None
    assert f"tag '{TAG}'" in str(gpu["training_window_problem"])


def test_no_sample_inside_the_window_is_said(run: Path) -> None:
    (run / "steps.csv").write_text(steps_csv(shift_s=3600.0))  # e.g. read in the wrong zone: an hour off
    gpu = summarise_run(run)["gpu"]
    assert gpu is not None and gpu["training_window_modes_mib"] is None
    assert "no nvidia-smi (h100node1) sample inside the training window" == gpu["training_window_problem"]
