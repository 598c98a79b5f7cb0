"""A results directory that cannot take the outputs (full, read-only, unwritable) is named before any job starts,
through the real `snakemake` run (not a dry run: the check runs when execution starts)."""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO
from zerosweep.plan.workspace import UnusableResults, check_results_dir

sys.path.insert(0, str(Path(__file__).resolve().parent / "slurm"))

from workflow import make_workdir

STUDIES = {"faults_baseline": {"table": "baseline", "deepspeed": False, "title": "Baseline"}}
ROOT = os.geteuid() == 0


def test_results_dir_check_names_the_directory(tmp_path: Path) -> None:
    check_results_dir(tmp_path / "results")  # created, writable, space left
    assert not list((tmp_path / "results").iterdir())  # the probe is gone
    with pytest.raises(UnusableResults, match=rf"results directory {tmp_path}/results: only .* MiB free"):
        check_results_dir(tmp_path / "results", min_free_mib=10**12)
    (tmp_path / "file").write_text("not a directory")
    with pytest.raises(UnusableResults, match=rf"results directory {tmp_path}/file/results: cannot write"):
        check_results_dir(tmp_path / "file" / "results")


def _snakemake_with_results(workdir: Path, mount: str | None) -> subprocess.CompletedProcess[str]:
    """`snakemake --cores 1 <table>` in workdir, its results/ replaced by `mount` (tmpfs options) in a private mount
    namespace (root), or made read-only by permissions (other users)."""
    results = workdir / "results"
    results.mkdir(exist_ok=True)
    command = [sys.executable, "-m", "snakemake", "results/tables/faults_baseline.csv", "--snakefile",
               str(REPO / "Snakefile"), "--cores", "1", "--configfile", str(workdir / "overlay.yaml")]
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    if mount is not None:
        script = f"mount -t tmpfs -o {mount} zerosweep-test {shlex.quote(str(results))} && exec {shlex.join(command)}"
        command = ["unshare", "--mount", "--propagation", "private", "sh", "-c", script]
    return subprocess.run(command, cwd=workdir, env=env, capture_output=True, text=True, timeout=300, check=False)


CASES = [("full", "size=1m", "only 1.0 MiB free on its filesystem"),
         ("read-only", "ro", "cannot write to it (it is on a read-only filesystem)")] if ROOT else [
         ("unwritable", None, "cannot write to it (no permission to write there)")]


@pytest.mark.parametrize("what, mount, expected", CASES, ids=[case[0] for case in CASES])
def test_snakemake_names_an_unusable_results_dir_before_any_job(tmp_path: Path, what: str, mount: str | None,
                                                                expected: str) -> None:
    if ROOT and shutil.which("unshare") is None:
        pytest.skip("needs unshare (util-linux) to mount a small results/ privately")
    workdir = make_workdir(tmp_path / "wd", STUDIES, tmp_path / "torch_extensions").path
    if mount is None:
        (workdir / "results").mkdir()
        (workdir / "results").chmod(0o500)
    result = _snakemake_with_results(workdir, mount)
    output = result.stdout + result.stderr
    assert result.returncode != 0, output[-3000:]
    assert f"results directory {workdir}/results: {expected}" in output, output[-3000:]
    assert "rule train:" not in output and "localrule" not in output  # no job started
