"""Shared fixtures: the repository, the shipped config, and a runner for the real snakemake CLI."""

from __future__ import annotations

import copy
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "scripts"))


def shipped_config() -> dict[str, Any]:
    with open(REPO / "workflow_config.yaml", encoding="utf-8") as handle:
        return yaml.safe_load(handle)


@pytest.fixture
def config() -> dict[str, Any]:
    return copy.deepcopy(shipped_config())


def run_snakemake(*args: str, cwd: Path = REPO, timeout: int = 600) -> subprocess.CompletedProcess[str]:
    """The real snakemake CLI of this interpreter, from the repository (so the default profile applies).
    The jobs' `python` is this interpreter too: its bin directory goes first on PATH."""
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    return subprocess.run(
        [sys.executable, "-m", "snakemake", "--snakefile", str(REPO / "Snakefile"), *args],
        check=False,  # callers assert on the return code and the output
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
    )
