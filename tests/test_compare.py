"""`python -m zerosweep compare A B` on two generated result sets with known differences."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import REPO
from zerosweep.report.run_summary.throughput import summarise_throughput
from zerosweep.run.steps import StepLayout, StepRecord, StepRow


def write_run(results: Path, run_id: str, step_seconds: float, peak_mib: float, seed: int, steps: int = 102) -> None:
    """A run directory as the pipeline leaves it: steps.csv (the training side's writer) and summary.json with
    its throughput section (the report's summariser). 102 steps: 99 steady ones, >= 90 for an interval."""
    run_dir = results / "runs" / run_id
    run_dir.mkdir(parents=True)
    rng = np.random.default_rng(seed)
    record = StepRecord(layout=StepLayout(4, 4, 1, 500), warmup_steps=2, max_length=512)
    clock = 1.0e9
    for step in range(1, steps + 1):
        seconds = (3.0 if step <= 2 else step_seconds) * float(rng.lognormal(0, 0.01))
        record.rows.append(StepRow(step, clock, clock + seconds, seconds, 16, 16 * 512, step == 15))
        clock += seconds
    record.write_csv(run_dir / "steps.csv")
    metrics = {"stop_reason": "max_steps", "recorded_steps": steps}
    (run_dir / "summary.json").write_text(json.dumps(
        {"run_id": run_id, "status": "ok", "label": run_id.split("-")[0], "nvml": {"peak_mib": peak_mib},
         "throughput": summarise_throughput(run_dir, metrics, warmup_steps=2)}))


def compare(a: Path, b: Path, out: Path) -> tuple[subprocess.CompletedProcess[str], pd.DataFrame | None]:
    result = subprocess.run([sys.executable, "-m", "zerosweep", "compare", str(a), str(b),
                             "--out-csv", str(out / "c.csv"), "--out-md", str(out / "c.md")],
                            env={**os.environ, "PYTHONPATH": str(REPO / "scripts")},
                            capture_output=True, text=True, check=False, timeout=120)
    frame = pd.read_csv(out / "c.csv") if (out / "c.csv").is_file() else None
    return result, frame


def test_compare_single_runs(tmp_path: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    write_run(a, "z0-offnone-nopin-g1n1", 0.40, 23000, 1)
    write_run(b, "z0-offnone-nopin-g1n1", 0.32, 23000, 2)  # B 25 % faster
    write_run(a, "z1-offnone-nopin-g1n1", 0.43, 24000, 3)
    write_run(b, "z1-offnone-nopin-g1n1", 0.43, 24000, 4)  # same
    write_run(a, "z2-offnone-nopin-g1n1", 0.60, 22000, 5)  # only in A: left out
    result, frame = compare(a, b, tmp_path)
    assert result.returncode == 0, result.stderr
    assert frame is not None and list(frame["run"]) == ["z0-offnone-nopin-g1n1", "z1-offnone-nopin-g1n1"]
    z0, z1 = frame.iloc[0], frame.iloc[1]
    # One run a side: the ratio with its within-run interval, but no verdict (run-to-run drift is unseen).
    assert z0["verdict"] == "untested" and z0["ratio B/A"] == pytest.approx(1.25, rel=0.02)
    assert z0["ratio low"] < 1.25 < z0["ratio high"] and z0["ratio low"] > 1
    assert z0["A samples/s"] == pytest.approx(16 / 0.40, rel=0.02) and z0["A low"] < z0["A samples/s"] < z0["A high"]
    assert z1["verdict"] == "untested" and "no verdict without >= 2 runs" in z1["test"]
    assert z1["ratio B/A"] == pytest.approx(1.0, rel=0.02)
    assert z1["memory verdict"] == "untested"  # one peak per side: no spread to test against
    markdown = (tmp_path / "c.md").read_text()
    assert "| z0-offnone-nopin-g1n1 | z0 |" in markdown and "untested" in markdown


def test_compare_groups_repeats_and_tests_their_medians(tmp_path: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    for k, (slow, fast) in enumerate(((0.40, 0.30), (0.41, 0.31), (0.39, 0.29)), start=1):
        write_run(a, f"z3-offnone-nopin-g1n1-r{k}", slow, 25000 + k, 10 + k)
        write_run(b, f"z3-offnone-nopin-g1n1-r{k}", fast, 20000 + k, 20 + k)
    result, frame = compare(a, b, tmp_path)
    assert result.returncode == 0, result.stderr
    assert frame is not None and len(frame) == 1
    row = frame.iloc[0]
    assert row["run"] == "z3-offnone-nopin-g1n1" and row["A runs"] == 3 and row["B runs"] == 3
    assert "Welch" in row["test"] and row["verdict"] == "faster"
    assert row["A samples/s"] == pytest.approx(16 / 0.40, rel=0.02)  # median of the three run medians
    assert row["memory verdict"] == "less memory" and row["memory ratio B/A"] == pytest.approx(0.8, rel=0.01)


def write_failed(results: Path, run_id: str, status: str) -> None:
    """A run that did not finish as parse-memory records it: its status, no throughput section."""
    run_dir = results / "runs" / run_id
    run_dir.mkdir(parents=True)
    (run_dir / "summary.json").write_text(json.dumps(
        {"run_id": run_id, "status": status, "label": run_id.split("-")[0], "nvml": {"peak_mib": 81000.0},
         "throughput": None}))


def test_compare_keeps_runs_that_did_not_finish_with_their_status(tmp_path: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    write_run(a, "z0-offnone-nopin-g1n1", 0.40, 23000, 1)
    write_run(b, "z0-offnone-nopin-g1n1", 0.32, 23000, 2)
    write_run(a, "z3-offnone-nopin-g1n1", 0.60, 20000, 3)
    write_failed(b, "z3-offnone-nopin-g1n1", "oom")  # B ran out of memory where A fit
    write_failed(a, "z1-offcpu-nopin-g1n1", "oom")
    write_failed(b, "z1-offcpu-nopin-g1n1", "oom")
    for k, status in ((1, None), (2, "oom")):  # repeats: one finished, one did not
        run_id = f"z2-offnone-nopin-g1n1-r{k}"
        write_run(a, run_id, 0.50, 21000, 10 + k)
        if status is None:
            write_run(b, run_id, 0.50, 21000, 20 + k)
        else:
            write_failed(b, run_id, status)
    result, frame = compare(a, b, tmp_path)
    assert result.returncode == 0, result.stderr
    assert frame is not None
    rows = {row["run"]: row for _, row in frame.iterrows()}
    assert set(rows) == {"z0-offnone-nopin-g1n1", "z3-offnone-nopin-g1n1", "z1-offcpu-nopin-g1n1",
                         "z2-offnone-nopin-g1n1"}
    z3 = rows["z3-offnone-nopin-g1n1"]
    assert (z3["A status"], z3["B status"]) == ("ok", "oom")
    assert z3["A samples/s"] == pytest.approx(16 / 0.60, rel=0.02) and pd.isna(z3["B samples/s"])
    # an OOM's peak is what it held before the failed allocation: no figure of the configuration
    assert pd.isna(z3["B peak MiB"]) and pd.isna(z3["ratio B/A"]) and pd.isna(z3["verdict"])
    both = rows["z1-offcpu-nopin-g1n1"]
    assert (both["A status"], both["B status"]) == ("oom", "oom") and pd.isna(both["A samples/s"])
    mixed = rows["z2-offnone-nopin-g1n1"]
    assert mixed["B status"] == "ok 1, oom 1" and mixed["B runs"] == 2
    assert mixed["B samples/s"] == pytest.approx(16 / 0.50, rel=0.02)  # from the finished repeat only
    assert rows["z0-offnone-nopin-g1n1"]["ratio B/A"] == pytest.approx(1.25, rel=0.02)
    markdown = (tmp_path / "c.md").read_text()
    assert "| z3-offnone-nopin-g1n1 | z3 | ok |" in markdown and "| oom |" in markdown


def test_compare_names_the_directory_without_runs(tmp_path: Path) -> None:
    write_run(tmp_path / "a", "base-g1n1", 0.4, 1000, 1)
    (tmp_path / "empty").mkdir()
    result, frame = compare(tmp_path / "a", tmp_path / "empty", tmp_path)
    assert result.returncode != 0 and frame is None
    assert "empty: no runs/ directory" in result.stderr
