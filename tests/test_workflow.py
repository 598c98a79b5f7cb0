"""The real snakemake CLI on the shipped workflow: dry-run job counts, one-table targets, lint, matrix."""

from __future__ import annotations

import re
import shutil
import sys
from pathlib import Path

import pytest
from conftest import REPO, run_snakemake

sys.path.insert(0, str(Path(__file__).resolve().parent / "slurm"))

from workflow import copy_workflow


def job_counts(output: str) -> dict[str, int]:
    stats = output.split("Job stats:")[1]
    return {rule: int(count) for rule, count in re.findall(r"^(\w+)\s+(\d+)$", stats, re.MULTILINE)}


@pytest.fixture(scope="module")
def checkout(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The shipped workflow as a fresh clone has it: dry runs that count jobs must not see this checkout's results/
    (the CPU demo's, say)."""
    path = tmp_path_factory.mktemp("checkout")
    copy_workflow(path)
    shutil.copy(REPO / "workflow_config.yaml", path)
    return path


def test_dry_run_previews_every_job_of_the_shipped_matrix(checkout: Path) -> None:
    result = run_snakemake("-n", cwd=checkout)
    assert result.returncode == 0, result.stderr
    output = result.stdout + result.stderr
    assert job_counts(output) == {
        "train": 21, "parse_memory": 21, "timeline": 21, "study_table": 7, "study_plots": 7,
        "summary": 1, "all": 1, "build_op": 2, "total": 81,
    }
    assert "zerosweep: 21 runs in 8 studies" in output and "1 invalid combinations pruned" in output  # + tune study
    # each training job shows what it asks of SLURM
    assert re.search(r"run=z2-offcpu-pin-g2n4-x[0-9a-f]{6}\n.*\n\s+resources: .*nodes=4, tasks=4, cpus_per_task=16"
                     r".*slurm_extra=--gpus-per-node=2 --ntasks-per-node=1", output)


def test_one_table_needs_only_its_runs(checkout: Path) -> None:
    result = run_snakemake("-n", "results/tables/pin_memory.md", cwd=checkout)
    assert result.returncode == 0, result.stderr
    counts = job_counts(result.stdout + result.stderr)
    assert counts == {"build_op": 1, "train": 2, "parse_memory": 2, "study_table": 1, "total": 6}  # CPUAdam only


def test_ops_are_built_ahead_for_tune_probes_too(checkout: Path) -> None:
    # A tune study's probes are not matrix runs: their ops were once left to the first probe to compile.
    result = run_snakemake("-n", "-p", "--config", "build_studies=[tune_bloom560m]", cwd=checkout)
    assert result.returncode == 0, result.stderr
    output = result.stdout + result.stderr
    assert job_counts(output)["build_op"] == 2
    for op in ("fused_adam", "cpu_adam"):
        assert f"--ops {op} --out results/cache/ops/{op}.json" in output


def test_lint_is_clean() -> None:
    result = run_snakemake("--lint")
    assert result.returncode == 0
    assert "Congratulations, your workflow is in a good condition!" in result.stdout + result.stderr


def test_matrix_target_prints_the_run_table() -> None:
    result = run_snakemake("--cores", "1", "matrix")
    assert result.returncode == 0, result.stderr
    assert "| z2-offcpu-pin-g1n1 | pin_memory, multi_gpu_scaling | 1 | 1 | 1 | 2 | cpu | true | - | 500 |" in result.stdout
