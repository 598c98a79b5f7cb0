"""parse-memory: workshop-equal statistics from real and hand-made logs, and precise errors for broken logs.

Expected numbers are computed here with the standard library (statistics.multimode, max, fsum), never
with zerosweep.report.run_summary.memory; tests/fixtures/README.md says which logs come from real runs.
"""

from __future__ import annotations

import json
import math
import shutil
import statistics
from pathlib import Path
from typing import Any

import pytest
from zerosweep import cli
from zerosweep.report.run_summary.logs import LogError
from zerosweep.report.run_summary.memory import summarise_run
from zerosweep.report.study import tables

FIXTURES = Path(__file__).parent / "fixtures"
REAL_RUN = FIXTURES / "real_h100_run"
MULTI_RUN = FIXTURES / "handmade_multinode_run"
OOM_RUN = FIXTURES / "handmade_oom_run"
REAL_LOGS = FIXTURES / "real_logs"


# --- independent expectations (plain Python) -----------------------------------------------------------


def smi_columns(path: Path) -> dict[int, list[int]]:
    """memory.used per GPU index, by splitting the CSV by hand."""
    used: dict[int, list[int]] = {}
    for line in path.read_text().splitlines()[1:]:
        fields = [field.strip() for field in line.split(",")]
        used.setdefault(int(fields[1]), []).append(int(fields[3]))
    return used


def psrecord_real(path: Path) -> list[float]:
    if path.suffix == ".csv":
        return [float(line.split(",")[3]) for line in path.read_text().splitlines()[1:]]
    return [float(line.split()[2]) for line in path.read_text().splitlines() if not line.startswith("#")]


def expected(values: list[float]) -> dict[str, Any]:
    return {
        "peak": max(values),
        "average": math.fsum(values) / len(values),
        "modes": sorted(statistics.multimode(values)),
    }


def gpu_line(stem: str, index: int, values: list[float]) -> str:
    e = expected(values)
    modes = ", ".join(f"{m:.0f}" for m in e["modes"])
    return f"[{stem} - GPU {index}] Peak = {e['peak']:.0f} MiB, Avg = {e['average']:.2f} MiB, Mode = {modes} MiB"


def cpu_lines(values: list[float]) -> list[str]:
    e = expected(values)
    modes = ", ".join(f"{m:.0f}" for m in e["modes"])
    return [f"   Peak =    {e['peak']:.0f} MB", f"   Average = {e['average']:.2f} MB", f"   Mode =    {modes} MB"]


def workshop_printed(name: str) -> list[str]:
    """Lines that the workshop's analyze_memory.py printed for the same logs (see fixtures/README.md)."""
    return [line for line in (FIXTURES / "workshop_output" / f"{name}.txt").read_text().splitlines() if line.strip()]


def copy_run(source: Path, tmp_path: Path) -> Path:
    target = tmp_path / source.name
    shutil.copytree(source, target)
    return target


# --- real single-GPU H100 run ----------------------------------------------------------------------------


def test_real_h100_run_matches_independent_statistics() -> None:
    summary = summarise_run(REAL_RUN)
    log = REAL_RUN / "monitor" / "gpu_memory_log_h100node1.csv"
    used = smi_columns(log)[0]
    e = expected(used)
    (gpu,) = summary["gpu"]["gpus"]
    assert (gpu["host"], gpu["index"], gpu["samples"], gpu["total_mib"]) == ("h100node1", 0, len(used), 81559)
    assert gpu["peak_mib"] == e["peak"] == 30653
    assert gpu["average_mib"] == pytest.approx(e["average"], rel=1e-12)
    assert gpu["modes_mib"] == e["modes"]
    assert gpu["workshop_line"] == gpu_line("gpu_memory_log_h100node1", 0, used)
    # One GPU: the run-level figures are that GPU's.
    assert summary["gpu"]["peak_mib"] == e["peak"]
    assert summary["gpu"]["average_mib"] == pytest.approx(e["average"], rel=1e-12)

    real = psrecord_real(REAL_RUN / "monitor" / "cpu_memory_log_h100node1.txt")
    (node,) = summary["cpu"]["nodes"]
    assert node["peak_mib"] == max(real)
    assert node["average_mib"] == pytest.approx(math.fsum(real) / len(real), rel=1e-12)
    assert node["modes_mib"] == sorted(statistics.multimode(real))
    assert node["workshop_lines"] == cpu_lines(real)


def test_real_h100_run_prints_what_the_workshop_script_printed() -> None:
    summary = summarise_run(REAL_RUN)
    printed = workshop_printed("real_h100_run")
    assert summary["gpu"]["gpus"][0]["workshop_line"] in printed
    cpu = printed[printed.index("CPU Memory Usage") + 1 :]
    assert summary["cpu"]["nodes"][0]["workshop_lines"] == cpu


def test_real_h100_nvml_and_torch_peaks() -> None:
    summary = summarise_run(REAL_RUN)
    rows = [line.split(",") for line in (REAL_RUN / "monitor/nvml_h100node1.csv").read_text().splitlines()[1:]]
    used = [float(row[2]) for row in rows]
    (gpu,) = summary["nvml"]["gpus"]
    assert gpu["samples"] == len(rows)
    assert gpu["peak_mib"] == max(used) == summary["nvml"]["peak_mib"]
    assert gpu["average_mib"] == pytest.approx(math.fsum(used) / len(used), rel=1e-12)
    assert 45 <= gpu["interval_ms"] <= 70  # the sampler asked for 50 ms
    # NVML (v2 memory info, driver-reserved memory excluded) agrees with nvidia-smi's whole-MiB peak.
    assert abs(summary["nvml"]["peak_mib"] - summary["gpu"]["peak_mib"]) < 1
    torch = json.loads((REAL_RUN / "monitor/torch_memory_rank0.json").read_text())
    assert summary["torch"]["max_reserved_mib"] == torch["max_memory_reserved_mib"]
    assert summary["torch"]["max_allocated_mib"] == torch["max_memory_allocated_mib"]


def test_real_h100_metrics_and_spec_copied() -> None:
    summary = summarise_run(REAL_RUN)
    metrics = json.loads((REAL_RUN / "metrics.json").read_text())
    assert summary["status"] == "ok"
    assert summary["run_id"] == "base-g1n1"
    assert summary["label"] == "No DeepSpeed (baseline)"
    assert summary["point"]["world_size"] == 1
    assert summary["setup"]["samples_per_gpu"] == 500
    for key in ("train_loss", "train_samples_per_second", "steady_samples_per_second", "steady_tokens_per_second",
                "steps_per_epoch"):  # fmt: skip
        assert summary["metrics"][key] == metrics[key]
    # metrics.json has no flops_per_token: counted from bloom-560m (559,214,592 parameters), seq 512, 24 x 1024
    assert metrics["flops_per_token"] is None
    assert summary["metrics"]["flops_per_token"] == 6 * 559_214_592 + 12 * 24 * 1024 * 512
    assert summary["setup"]["gpu_name"] == "NVIDIA H100 80GB HBM3"  # from the nvidia-smi log: metrics lack it
    assert [e["epoch"] for e in summary["metrics"]["eval_losses"]] == [1.0, 2.0, 2.93]
    assert summary["warnings"] == []


def test_summary_json_keys() -> None:
    summary = summarise_run(REAL_RUN)
    assert set(summary) == {
        "schema_version", "run_id", "label", "status", "point", "setup", "metrics", "gpu", "nvml", "gpu_clocks",
        "torch", "cpu", "throughput", "energy", "gpu_busy", "warnings", "unusable", "emulated_nodes",
        "gpu_map_source", "job_seconds",
    }  # fmt: skip
    assert summary["throughput"] is None  # recorded before steps.csv existed
    # and before the energy counter was sampled: no window, no figure, each with its reason
    assert (summary["energy"]["steady"], summary["energy"]["training"]) == (None, None)
    assert "no steps.csv" in summary["energy"]["problem"]
    assert summary["gpu_busy"]["busy_fraction"] is None and "no gpu_utilization_pct column" in summary["gpu_busy"]["busy_problem"]
    assert summary["gpu_clocks"] is None  # and before clocks were sampled
    window = {"training_window_modes_mib", "training_window_samples", "training_window_problem"}
    assert set(summary["gpu"]) == {"gpus", "nodes", "gpus_counted", "peak_mib", "peak_min_mib", "average_mib",
                                   "modes_mib", "mode_text", *window}
    assert set(summary["gpu"]["gpus"][0]) == {
        "host", "index", "name", "file", "samples", "total_mib", "peak_mib", "average_mib", "modes_mib",
        "mode_text", "workshop_line",
    }  # fmt: skip
    assert set(summary["cpu"]) == {"nodes", "peak_mib", "average_mib", "modes_mib", "mode_text", *window}
    assert set(summary["nvml"]) == {"gpus", "gpus_counted", "peak_mib", "peak_min_mib"}
    assert set(summary["torch"]) == {"ranks", "max_allocated_mib", "max_reserved_mib", "max_rss_mib"}


# --- real logs in other forms ------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["psrecord_local_plain.txt", "psrecord_local.csv", "psrecord_h100_1s.csv"])
def test_real_psrecord_logs_plain_and_csv(tmp_path: Path, name: str) -> None:
    run = copy_run(REAL_RUN, tmp_path)
    (run / "monitor" / "cpu_memory_log_h100node1.txt").unlink()
    suffix = Path(name).suffix
    shutil.copy(REAL_LOGS / name, run / "monitor" / f"cpu_memory_log_h100node1{suffix}")
    real = psrecord_real(REAL_LOGS / name)
    (node,) = summarise_run(run)["cpu"]["nodes"]
    assert node["format"] == ("csv" if suffix == ".csv" else "plain")
    assert node["samples"] == len(real)
    assert node["peak_mib"] == max(real)
    assert node["average_mib"] == pytest.approx(math.fsum(real) / len(real), rel=1e-12)
    assert node["modes_mib"] == sorted(statistics.multimode(real))
    assert node["workshop_lines"] == cpu_lines(real)


def test_real_1s_nvidia_smi_log_matches_workshop_output(tmp_path: Path) -> None:
    run = copy_run(REAL_RUN, tmp_path)
    (run / "monitor" / "gpu_memory_log_h100node1.csv").unlink()
    shutil.copy(REAL_LOGS / "gpu_memory_log_h100_1s.csv", run / "monitor")
    (run / "monitor" / "cpu_memory_log_h100node1.txt").unlink()
    shutil.copy(REAL_LOGS / "psrecord_local_plain.txt", run / "monitor" / "cpu_memory_log_h100node1.txt")
    summary = summarise_run(run)
    printed = workshop_printed("real_logs_h100_1s_local_psrecord")
    assert summary["gpu"]["gpus"][0]["workshop_line"] in printed
    assert summary["cpu"]["nodes"][0]["workshop_lines"] == printed[printed.index("CPU Memory Usage") + 1 :]


def test_psrecord_csv_ignored_when_plain_log_of_same_host_exists(tmp_path: Path) -> None:
    run = copy_run(REAL_RUN, tmp_path)
    shutil.copy(REAL_LOGS / "psrecord_h100_1s.csv", run / "monitor" / "cpu_memory_log_h100node1.csv")
    summary = summarise_run(run)
    assert [node["file"] for node in summary["cpu"]["nodes"]] == ["cpu_memory_log_h100node1.txt"]
    assert any("cpu_memory_log_h100node1.csv ignored" in warning for warning in summary["warnings"])


# --- hand-made multi-GPU, multi-node run -------------------------------------------------------------------


def test_multi_gpu_multi_node_per_gpu_and_per_node() -> None:
    summary = summarise_run(MULTI_RUN)
    gpus = summary["gpu"]["gpus"]
    assert [(g["host"], g["index"]) for g in gpus] == [("nodeA", 0), ("nodeA", 1), ("nodeB", 0), ("nodeB", 1)]
    all_used: list[int] = []
    per_gpu_average = []
    for host in ("nodeA", "nodeB"):
        log = MULTI_RUN / "monitor" / f"gpu_memory_log_{host}.csv"
        columns = smi_columns(log)
        assert sorted(columns) == [0, 1]  # two GPU indices in one file
        node = next(n for n in summary["gpu"]["nodes"] if n["host"] == host)
        assert node["gpus"] == 2
        assert node["peak_mib"] == max(max(values) for values in columns.values())
        for index, used in columns.items():
            gpu = next(g for g in gpus if (g["host"], g["index"]) == (host, index))
            e = expected(used)
            assert (gpu["peak_mib"], gpu["modes_mib"]) == (e["peak"], e["modes"])
            assert gpu["average_mib"] == pytest.approx(e["average"], rel=1e-12)
            assert gpu["workshop_line"] == gpu_line(log.stem, index, used)
            all_used += used
            per_gpu_average.append(e["average"])
    # Run level: highest GPU peak, mean of per-GPU averages, modes of the pooled samples.
    assert summary["gpu"]["peak_mib"] == max(all_used) == 12100
    assert summary["gpu"]["average_mib"] == pytest.approx(statistics.fmean(per_gpu_average), rel=1e-12)
    assert summary["gpu"]["modes_mib"] == sorted(statistics.multimode(all_used))
    # Ties: every mode is kept, ascending, as pandas' Series.mode gives them.
    assert gpus[0]["modes_mib"] == [0, 9000, 12000]
    assert gpus[0]["mode_text"] == "0, 9000, 12000"


def test_multi_gpu_lines_equal_workshop_script_output() -> None:
    summary = summarise_run(MULTI_RUN)
    printed = workshop_printed("handmade_multinode_run")
    assert [g["workshop_line"] for g in summary["gpu"]["gpus"]] == [line for line in printed if line.startswith("[")]
    node_a = next(n for n in summary["cpu"]["nodes"] if n["host"] == "nodeA")  # the script read nodeA's log
    assert node_a["workshop_lines"] == printed[printed.index("CPU Memory Usage") + 1 :]


def test_multi_node_cpu_nvml_and_torch() -> None:
    summary = summarise_run(MULTI_RUN)
    peaks, averages = [], []
    for host in ("nodeA", "nodeB"):
        real = psrecord_real(MULTI_RUN / "monitor" / f"cpu_memory_log_{host}.txt")
        peaks.append(max(real))
        averages.append(math.fsum(real) / len(real))
    assert summary["cpu"]["peak_mib"] == max(peaks)
    assert summary["cpu"]["average_mib"] == pytest.approx(statistics.fmean(averages), rel=1e-12)
    nvml_peaks = {}
    for host in ("nodeA", "nodeB"):
        for line in (MULTI_RUN / "monitor" / f"nvml_{host}.csv").read_text().splitlines()[1:]:
            _t, index, used, _total = line.split(",")
            key = (host, int(index))
            nvml_peaks[key] = max(nvml_peaks.get(key, 0.0), float(used))
    assert {(g["host"], g["index"]): g["peak_mib"] for g in summary["nvml"]["gpus"]} == nvml_peaks
    assert summary["nvml"]["peak_mib"] == max(nvml_peaks.values()) > summary["gpu"]["peak_mib"]  # a missed spike
    assert [r["rank"] for r in summary["torch"]["ranks"]] == [0, 1, 2, 3]
    assert summary["torch"]["max_reserved_mib"] == 11320.0
    assert summary["torch"]["ranks"][2]["host"] == "nodeB"


def test_more_gpus_in_log_than_requested_is_a_warning(tmp_path: Path) -> None:
    run = copy_run(MULTI_RUN, tmp_path)
    spec = json.loads((run / "run_spec.json").read_text())
    spec["point"].update(gpus_per_node=1, world_size=2)
    (run / "run_spec.json").write_text(json.dumps(spec))
    summary = summarise_run(run)
    assert any("show 4 GPUs on 2 nodes" in warning for warning in summary["warnings"])


# --- OOM ---------------------------------------------------------------------------------------------------


def test_oom_run_keeps_memory_and_nulls_metrics() -> None:
    summary = summarise_run(OOM_RUN)
    assert summary["status"] == "oom"
    assert all(value is None for value in summary["metrics"].values())
    used = smi_columns(OOM_RUN / "monitor" / "gpu_memory_log_gpu07.csv")[0]
    assert summary["gpu"]["peak_mib"] == max(used) == 81003
    assert summary["nvml"] is None  # the sampler left no file; nothing is made up
    assert summary["cpu"]["peak_mib"] == max(psrecord_real(OOM_RUN / "monitor" / "cpu_memory_log_gpu07.txt"))
    printed = workshop_printed("handmade_oom_run")
    assert summary["gpu"]["gpus"][0]["workshop_line"] in printed
    assert summary["warnings"] == []


def test_oom_run_without_any_log(tmp_path: Path) -> None:
    run = copy_run(OOM_RUN, tmp_path)
    shutil.rmtree(run / "monitor")
    summary = summarise_run(run)
    assert (summary["status"], summary["gpu"], summary["cpu"], summary["nvml"]) == ("oom", None, None, None)


def test_finished_cuda_run_without_logs_warns(tmp_path: Path) -> None:
    run = copy_run(REAL_RUN, tmp_path)
    for name in ("gpu_memory_log_h100node1.csv", "nvml_h100node1.csv", "cpu_memory_log_h100node1.txt"):
        (run / "monitor" / name).unlink()
    summary = summarise_run(run)
    assert summary["gpu"] is None and summary["cpu"] is None
    assert len(summary["warnings"]) == 3
    assert any("no nvidia-smi log" in warning for warning in summary["warnings"])


# --- malformed logs: what monitors really leave behind is skipped with a warning naming file and line;
# --- anything else is refused, naming the file and the line ------------------------------------------------


SMI = "gpu_memory_log_h100node1.csv"
NVML = "nvml_h100node1.csv"
CPU = "cpu_memory_log_h100node1.txt"
SMI_HEADER = "timestamp, index, name, memory.used [MiB], memory.total [MiB]\n"
SMI_ROW = "2026/11/24 09:06:35.734, 0, NVIDIA H100 80GB HBM3, 14087, 81559\n"
NVML_HEADER = "timestamp_s,index,memory_used_mib,memory_total_mib\n"
NVML_ROW = "1795511195.909,0,14087.5,81559.0\n"
CPU_HEADER = "# Elapsed time   CPU (%)     Real (MB)   Virtual (MB)\n"
CPU_ROW = "       5.004      137.900      498.227     3754.668\n"

REFUSED = [
    ("truncated row mid-log", SMI, SMI_HEADER + "2026/11/24 09:06:45.736, 0, NVIDIA H1\n" + SMI_ROW, 2,
     "expected 5 fields, found 3 (truncated row?)"),
    ("missing header", SMI, SMI_ROW * 3, 1, "missing or unexpected header"),
    ("too many columns", SMI, SMI_HEADER + SMI_ROW + SMI_ROW.rstrip("\n") + ", 99\n", 3, "expected 5 fields, found 6"),
    ("bad timestamp", SMI, SMI_HEADER + SMI_ROW.replace("2026/11/24", "yesterday"), 2, "timestamp is not a timestamp"),
    ("non-numeric memory", SMI, SMI_HEADER + SMI_ROW + SMI_ROW.replace("14087", "14O87") + SMI_ROW, 3,
     "memory.used is not a non-negative integer: '14O87'"),
    ("NVML non-numeric", NVML, NVML_HEADER + NVML_ROW * 9 + NVML_ROW.replace("14087.5", "abc"), 11,
     "memory_used_mib is not a non-negative number: 'abc'"),
    ("NVML nan", NVML, NVML_HEADER + NVML_ROW + NVML_ROW.replace("14087.5", "nan"), 3, "memory_used_mib is not"),
    ("NVML comment line", NVML, NVML_HEADER + NVML_ROW + "# sampler restarted\n" + NVML_ROW, 3, "expected 4 fields, found 1"),
    ("NVML missing header", NVML, NVML_ROW * 5, 1, "missing or unexpected header"),
    ("NVML wrong columns", NVML, NVML_HEADER + NVML_ROW + "1795511195.959,0,14087.5,81559.0,7\n", 3,
     "expected 4 fields, found 5"),
    ("psrecord non-numeric", CPU, CPU_HEADER + CPU_ROW + CPU_ROW.replace("498.227", "498.2x7"), 3,
     "Real (MB) is not a non-negative number: '498.2x7'"),
    ("psrecord missing header", CPU, CPU_ROW * 2, 1, "missing or unexpected header"),
]  # fmt: skip


@pytest.mark.parametrize(("case", "name", "text", "line", "message"), REFUSED, ids=[case[0] for case in REFUSED])
def test_broken_log_names_file_and_line(
    tmp_path: Path, case: str, name: str, text: str, line: int, message: str
) -> None:
    run = copy_run(REAL_RUN, tmp_path)
    path = run / "monitor" / name
    path.write_text(text)
    with pytest.raises(LogError) as error:
        summarise_run(run)
    assert str(error.value).startswith(f"{path}:{line}: ")
    assert message in str(error.value)
    assert (error.value.path, error.value.line) == (str(path), line)


# (case, log, text, line named, reason, valid samples left)
TOLERATED = [
    ("empty nvidia-smi", SMI, "", 1, "empty log", 0),
    ("nvidia-smi header only", SMI, SMI_HEADER, 2, "no samples after the header", 0),
    ("truncated last row", SMI, SMI_HEADER + SMI_ROW * 2 + "2026/11/24 09:06:45.736, 0, NVIDIA H1", 4,
     "truncated last line (3 of 5 fields)", 2),
    ("[N/A] memory", SMI, SMI_HEADER + SMI_ROW + SMI_ROW.replace("14087", "[N/A]") + SMI_ROW, 3,
     "memory.used is [N/A]", 2),
    ("[Not Supported] total", SMI, SMI_HEADER + SMI_ROW + SMI_ROW.replace("81559", "[Not Supported]"), 3,
     "memory.total is [Not Supported]", 1),
    ("blank line", SMI, SMI_HEADER + SMI_ROW + "\n" + SMI_ROW, 3, "blank line", 2),
    ("empty NVML", NVML, "", 1, "empty log", 0),
    ("NVML truncated", NVML, NVML_HEADER + NVML_ROW * 50 + "1795511198.4,0,140", 52,
     "truncated last line (3 of 4 fields)", 50),
    ("NVML blank line", NVML, NVML_HEADER + NVML_ROW * 2 + "\n" + NVML_ROW, 4, "blank line", 3),
    ("NVML [N/A]", NVML, NVML_HEADER + NVML_ROW * 3 + NVML_ROW.replace("14087.5", "[N/A]"), 5,
     "memory_used_mib is [N/A]", 3),
    ("empty psrecord", CPU, "", 1, "empty log", 0),
    ("psrecord truncated", CPU, CPU_HEADER + CPU_ROW * 3 + "      20.014       99.900", 5,
     "truncated last line (2 of 4 fields)", 3),
    ("psrecord header only", CPU, CPU_HEADER, 2, "no samples after the header", 0),
]  # fmt: skip


def _samples(summary: dict[str, Any], name: str) -> int:
    source = {SMI: ("gpu", "gpus"), NVML: ("nvml", "gpus"), CPU: ("cpu", "nodes")}[name]
    return 0 if summary[source[0]] is None else sum(item["samples"] for item in summary[source[0]][source[1]])


@pytest.mark.parametrize(
    ("case", "name", "text", "line", "message", "left"), TOLERATED, ids=[case[0] for case in TOLERATED]
)
def test_monitor_faults_are_skipped_with_a_warning(
    tmp_path: Path, case: str, name: str, text: str, line: int, message: str, left: int
) -> None:
    run = copy_run(REAL_RUN, tmp_path)
    (run / "monitor" / name).write_text(text)
    summary = summarise_run(run)
    (warning,) = [warning for warning in summary["warnings"] if f"{name}:" in warning]
    assert f"{name}:{line}: {message}" in warning
    assert _samples(summary, name) == left
    assert summary["unusable"] is None  # the other monitors' logs are intact
    if left == 0:  # the source is empty in the record, and the record says which monitor left nothing
        assert any(warning.startswith("no ") and "with a valid sample" in warning for warning in summary["warnings"])


def test_broken_psrecord_csv(tmp_path: Path) -> None:
    run = copy_run(REAL_RUN, tmp_path)
    (run / "monitor" / CPU).unlink()
    path = run / "monitor" / "cpu_memory_log_h100node1.csv"
    lines = (REAL_LOGS / "psrecord_local.csv").read_text().splitlines()
    path.write_text("\n".join(lines[:5] + [lines[5][:12]] + lines[6:8]) + "\n")
    with pytest.raises(LogError, match=r"cpu_memory_log_h100node1\.csv:6: expected 5 fields, found 1"):
        summarise_run(run)
    # The same cut as the log's last line: a monitor killed mid-write; the rows before it count.
    path.write_text("\n".join(lines[:5] + [lines[5][:12]]) + "\n")
    (node,) = summarise_run(run)["cpu"]["nodes"]
    assert node["samples"] == 4 and node["peak_mib"] == max(float(line.split(",")[3]) for line in lines[1:5])


def test_run_with_no_valid_sample_left_is_unusable_not_an_error(tmp_path: Path) -> None:
    run = copy_run(REAL_RUN, tmp_path)
    (run / "monitor" / SMI).write_text(SMI_HEADER + SMI_ROW.replace("14087", "[N/A]"))
    (run / "monitor" / NVML).write_text("")
    (run / "monitor" / CPU).write_text(CPU_HEADER + "      5.0")
    summary = summarise_run(run)
    assert (summary["gpu"], summary["nvml"], summary["cpu"]) == (None, None, None)
    assert summary["unusable"] == "its monitor logs hold no valid sample"
    for warning in (f"{SMI}:2: memory.used is [N/A]", f"{NVML}:1: empty log", f"{CPU}:2: truncated last line"):
        assert any(warning in text for text in summary["warnings"]), warning
    # Its table row says so; the table builds.
    study = {"name": "s", "title": "S", "table": "comparison", "scaling_axis": None, "runs": {"base-g1n1": {}}}
    table = tables.build_table(study, [summary])
    (row,) = table.rows
    assert row["status"] == "unusable" and row["gpu_peak_mib"] is None and row["train_samples_per_second"] is None
    markdown = tables.markdown(table)
    assert "No valid sample in the monitor logs (row kept, numbers empty): base-g1n1." in markdown
    assert f"- base-g1n1: skipped {SMI}:2: memory.used is [N/A]; no valid sample left" in markdown


def test_bad_status_and_bad_json(tmp_path: Path) -> None:
    run = copy_run(OOM_RUN, tmp_path)
    metrics = json.loads((run / "metrics.json").read_text())
    (run / "metrics.json").write_text(json.dumps({**metrics, "status": "failed"}))
    with pytest.raises(LogError, match="status must be one of"):
        summarise_run(run)
    (run / "metrics.json").write_text('{"status": "ok",\n')
    with pytest.raises(LogError, match=r"metrics\.json:2: not valid JSON"):
        summarise_run(run)
    (run / "metrics.json").unlink()
    with pytest.raises(LogError, match=r"metrics\.json: missing"):
        summarise_run(run)


def test_torch_record_in_bytes_only(tmp_path: Path) -> None:
    run = copy_run(REAL_RUN, tmp_path)
    (run / "monitor" / "torch_memory_rank0.json").write_text(
        json.dumps({"rank": 0, "max_memory_allocated": 3 * 2**30, "max_memory_reserved": 4 * 2**30})
    )
    metrics = json.loads((run / "metrics.json").read_text())
    (run / "metrics.json").write_text(json.dumps({**metrics, "torch_memory": []}))
    assert summarise_run(run)["torch"]["max_reserved_mib"] == 4096.0


# --- CLI -------------------------------------------------------------------------------------------------


def test_cli_parse_memory(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "summary.json"
    assert cli.main(["parse-memory", "--run-dir", str(MULTI_RUN), "--out", str(out)]) == 0
    summary = json.loads(out.read_text())
    assert summary["run_id"] == "z2-offcpu-pin-g2n2-xca41c2"
    printed = capsys.readouterr().out
    for line in workshop_printed("handmade_multinode_run"):
        if line.startswith("["):
            assert line in printed
