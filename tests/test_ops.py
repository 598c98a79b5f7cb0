"""`zerosweep build-ops` (rule build_ops): DeepSpeed's optimizer ops compiled once, before training."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO
from test_training_run import torch_extensions_dir
from zerosweep.run.ops import ops_for

__all__ = ["torch_extensions_dir"]  # the session's shared extensions dir, as the real runs use it


def point(deepspeed: bool, offload: str = "none") -> dict[str, object]:
    return {"deepspeed": deepspeed, "zero_stage": 2 if deepspeed else None, "offload": offload}


def test_the_plan_decides_which_ops_to_build() -> None:
    assert ops_for([point(False)], "cuda") == []
    assert ops_for([point(True), point(True)], "cuda") == ["fused_adam"]
    assert ops_for([point(True, "cpu"), point(False), point(True)], "cuda") == ["fused_adam", "cpu_adam"]
    assert ops_for([point(True, "cpu"), point(True)], "cpu") == []  # CPU: a recorded no-op


def build_ops(extensions: Path, out: Path, *ops: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "zerosweep", "build-ops", "--device", "cpu", "--extensions-dir",
                           str(extensions), "--ops", *ops, "--out", str(out)], check=False, capture_output=True,
                          text=True, env={**os.environ, "PYTHONPATH": str(REPO / "scripts")}, timeout=1200)


@pytest.mark.slow
def test_build_ops_compiles_cpu_adam_where_the_runs_look_for_it(torch_extensions_dir: Path, tmp_path: Path) -> None:
    result = build_ops(torch_extensions_dir, tmp_path / "ops.json", "cpu_adam")
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    record = json.loads((tmp_path / "ops.json").read_text())
    assert record["device"] == "cpu" and record["torch_extensions_dir"] == str(torch_extensions_dir)
    assert [(op["op"], op["status"]) for op in record["ops"]] == [("cpu_adam", "built")]
    assert (torch_extensions_dir / "cpu_adam" / "cpu_adam.so").is_file()
    built = (torch_extensions_dir / "cpu_adam" / "cpu_adam.so").stat().st_mtime
    again = build_ops(torch_extensions_dir, tmp_path / "again.json", "cpu_adam")  # a second call reuses it
    assert again.returncode == 0 and (torch_extensions_dir / "cpu_adam" / "cpu_adam.so").stat().st_mtime == built
