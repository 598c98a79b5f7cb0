"""What reruns training: a report-only setting (runtime.peak_tflops) re-aggregates without retraining; an edit of
the DeepSpeed template retrains. One real CPU run in a copy of the workflow, then Snakemake's own dry runs."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from test_workflow import job_counts

sys.path.insert(0, str(Path(__file__).resolve().parent / "slurm"))

from workflow import make_clone

STUDY = {"zero1": {"table": "comparison", "zero_stage": [1], "title": "ZeRO-1"}}
TARGET = "results/tables/zero1.csv"


def _snakemake(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    return subprocess.run([sys.executable, "-m", "snakemake", TARGET, "--cores", "2", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=900, check=False)


@pytest.mark.slow
def test_report_settings_retrain_nothing_and_the_template_retrains(tmp_path: Path) -> None:
    extensions = Path(os.environ.get("ZEROSWEEP_TEST_TORCH_EXTENSIONS",
                                     Path(__file__).resolve().parents[1] / "results" / "cache" / "torch_extensions"))
    clone = make_clone(tmp_path / "wf", STUDY, extensions.resolve(), overrides={"slurm": {"cpus_per_gpu": 1}})
    first = _snakemake(clone.path)
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]

    config_file = clone.path / "workflow_config.yaml"
    config = yaml.safe_load(config_file.read_text(encoding="utf-8"))
    config["runtime"]["peak_tflops"] = 123.0
    config_file.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
    after_peak = _snakemake(clone.path, "-n")
    assert after_peak.returncode == 0, after_peak.stderr[-3000:]
    counts = job_counts(after_peak.stdout + after_peak.stderr)
    assert "train" not in counts and counts.get("study_table") == 1, counts  # the table only: MFU changes

    template = clone.path / "scripts" / "zerosweep" / "plan" / "ds_template.json"
    # an edit (Snakemake compares small inputs by checksum, so a touch alone would not count)
    template.write_text(template.read_text(encoding="utf-8") + "\n", encoding="utf-8")
    later = time.time() + 60  # and newer than the run's records (copytree kept the checkout's old mtime)
    os.utime(template, (later, later))
    after_template = _snakemake(clone.path, "-n")
    assert after_template.returncode == 0, after_template.stderr[-3000:]
    assert job_counts(after_template.stdout + after_template.stderr).get("train") == 1
