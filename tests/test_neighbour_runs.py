"""Other zerosweep runs on the same host during a run (run.environment.NeighbourRuns -> env.json
other_zerosweep_runs), with real second processes; and the op cache key a real run uses."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from test_training_run import (
    TRAINING_STARTED_MARKER,
    launch,
    launcher_command,
    launcher_env,
    make_spec,
    read,
    results_dir,
    torch_extensions_dir,
)
from zerosweep.plan.matrix import MatrixPoint
from zerosweep.run.environment import NeighbourRuns, run_of_command_line
from zerosweep.run.ops import op_cache_dir

__all__ = ["results_dir", "torch_extensions_dir"]  # session fixtures shared with test_training_run's real runs


def test_a_run_is_named_by_its_command_line() -> None:
    launch_line = [sys.executable, "-m", "zerosweep", "launch", "--spec-json", "{}", "--run-dir", "results/runs/a"]
    assert run_of_command_line(launch_line, "/work/wf") == ("launch", Path("/work/wf/results/runs/a"))
    node = ["python", "-m", "zerosweep", "launch-node", "--run-dir=/abs/runs/b/", "--nnodes", "2"]
    assert run_of_command_line(node, None) == ("launch-node", Path("/abs/runs/b"))
    torchrun = ["python", "-m", "torch.distributed.run", "--nnodes=1", "-m", "zerosweep", "train", "--run-dir",
                "/abs/runs/c", "--cache-dir", "/abs/cache"]
    assert run_of_command_line(torchrun, None) == ("train", Path("/abs/runs/c"))
    assert run_of_command_line(["/venv/bin/zerosweep", "launch", "--run-dir", "/r/d"], None) == ("launch", Path("/r/d"))
    assert run_of_command_line(["python", "-m", "zerosweep", "summarize", "--run-dir", "/r/d"], None) is None
    assert run_of_command_line(["python", "-m", "zerosweep", "launch", "--run-dir", "rel"], None) is None  # no cwd
    assert run_of_command_line(["vim", "zerosweep", "launch"], "/") is None


def _sleeper(argv: list[str], cwd: Path, env: dict[str, str]) -> subprocess.Popen[bytes]:
    """A real process with a zerosweep run's command line (python ignores what follows -c CODE)."""
    return subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)", *argv], cwd=cwd,
                            env={**os.environ, **env}, start_new_session=True)


def test_a_second_process_on_the_host_is_recorded(tmp_path: Path) -> None:
    own = tmp_path / "results" / "runs" / "mine"
    other = _sleeper(["-m", "zerosweep", "launch-node", "--run-dir", "results/runs/theirs"], tmp_path,
                     {"SLURM_JOB_ID": "4242"})
    same = _sleeper(["-m", "zerosweep", "launch-node", "--run-dir", str(own)], tmp_path, {})
    try:
        time.sleep(0.5)
        neighbours = NeighbourRuns(own)
        neighbours.scan()
        neighbours.scan()
        record = neighbours.record()
    finally:
        for process in (other, same):
            process.send_signal(signal.SIGTERM)
            process.wait(timeout=10)
    theirs = [run for run in record["runs"] if run["run_dir"] == str(tmp_path / "results" / "runs" / "theirs")]
    assert len(theirs) == 1, record
    (run,) = theirs
    assert run["run_id"] == "theirs" and run["pids"] == [other.pid] and run["commands"] == ["launch-node"]
    assert run["slurm_job_id"] == "4242" and run["host"] == record["host"] and record["scans"] == 2
    assert not any(same.pid in entry["pids"] for entry in record["runs"])  # this run's own processes


@pytest.mark.slow
def test_env_json_names_a_run_that_trained_beside_it(results_dir: Path, torch_extensions_dir: Path) -> None:
    """Two real CPU runs at once on this host: the second one's env.json names the first (run id, its launcher's
    pid); and its ranks looked for compiled ops where `zerosweep build-ops` puts them on this host."""
    long_spec = make_spec(MatrixPoint(False, None, "none", False, 1, 1), torch_extensions_dir,
                          {"training": {"max_steps": 100000}, "data": {"samples_per_gpu": 100000}})
    long_spec["run_id"] = "base-g1n1-x0000aa"
    long_dir = results_dir / "runs" / long_spec["run_id"]
    other = subprocess.Popen(launcher_command(long_spec, long_dir), env=launcher_env(), stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.monotonic() + 300
        log = long_dir / "train.log"
        while not (log.exists() and TRAINING_STARTED_MARKER in log.read_text(errors="replace")):
            assert other.poll() is None, "the first run ended before training started"
            assert time.monotonic() < deadline, "the first run did not start training"
            time.sleep(0.5)
        spec = make_spec(MatrixPoint(False, None, "none", False, 1, 1), torch_extensions_dir)
        spec["run_id"] = "base-g1n1-x0000ab"
        result, run_dir = launch(spec, results_dir)
        assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    finally:
        other.send_signal(signal.SIGTERM)
        other.wait(timeout=90)
    env = read(run_dir / "env.json")
    seen = {run["run_id"]: run for run in env["other_zerosweep_runs"]}
    assert long_spec["run_id"] in seen, env["other_zerosweep_runs"]
    assert other.pid in seen[long_spec["run_id"]]["pids"] and "launch" in seen[long_spec["run_id"]]["commands"]
    assert env["nodes"][0]["other_runs_scans"] >= 2  # at the start and at the end
    keyed = op_cache_dir(torch_extensions_dir, "cpu", None, None)
    assert env["environment_variables"]["TORCH_EXTENSIONS_DIR"] == str(keyed)
    status = json.loads((run_dir / "status.json").read_text(encoding="utf-8"))
    assert status["nodes"][0]["torch_extensions_dir"] == str(keyed)
