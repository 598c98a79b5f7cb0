"""DeepSpeed config rendering: one template, ZeRO section from the matrix point, Trainer values "auto"."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO
from zerosweep.cli import main
from zerosweep.plan.dsconfig import NAMED_CONFIGS, render, render_named
from zerosweep.plan.matrix import MatrixPoint


@pytest.mark.parametrize("name", sorted(NAMED_CONFIGS))
def test_renderer_produces_each_named_workshop_config(name: str) -> None:
    with open(REPO / "ds_configs" / f"{name}.json", encoding="utf-8") as handle:
        assert render_named(name) == json.load(handle)


def test_every_workshop_config_is_shipped() -> None:
    shipped = {path.stem for path in (REPO / "ds_configs").glob("*.json")}
    assert shipped == set(NAMED_CONFIGS) == {
        "zero0", "zero1", "zero1_cpu_offload", "zero2", "zero2_cpu_offload",
        "zero2_cpu_offload_pinned_memory", "zero3", "zero3_cpu_offload",
    }


def test_trainer_owned_values_stay_auto() -> None:
    config = render(MatrixPoint(True, 2, "cpu", True, 4, 2))
    assert config["train_batch_size"] == config["train_micro_batch_size_per_gpu"] == "auto"
    assert config["gradient_accumulation_steps"] == config["gradient_clipping"] == "auto"
    assert set(config["optimizer"]["params"].values()) == {"auto"}
    assert config["fp16"]["enabled"] == config["bf16"]["enabled"] == "auto"


def test_zero_sections() -> None:
    assert render(MatrixPoint(True, 1, "none", False, 1, 1))["zero_optimization"] == {"stage": 1}
    stage2 = render(MatrixPoint(True, 2, "cpu", True, 1, 1))["zero_optimization"]
    assert stage2 == {"stage": 2, "offload_optimizer": {"device": "cpu", "pin_memory": True}}
    stage3 = render(MatrixPoint(True, 3, "cpu", False, 1, 1))["zero_optimization"]
    # stage 3 offloads parameters as well as optimizer state, as the workshop does
    assert stage3["offload_param"] == stage3["offload_optimizer"] == {"device": "cpu", "pin_memory": False}


def test_baseline_has_no_deepspeed_config() -> None:
    with pytest.raises(ValueError, match="base-g1n1: the no-DeepSpeed baseline"):
        render(MatrixPoint(False, None, "none", False, 1, 1))


@pytest.mark.slow
def test_installed_package_renders_from_its_packaged_template(tmp_path: Path) -> None:
    # A non-editable install has no repository around it: the template must travel as package data.
    source = tmp_path / "source"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, source / name)
    shutil.copytree(REPO / "scripts", source / "scripts", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    target = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
                    "--target", str(target), str(source)], check=True, capture_output=True, text=True)
    shutil.rmtree(source)  # nothing may be read from the tree it was built from
    probe = ("import json, sys; from zerosweep.plan import dsconfig; "
             "assert dsconfig.__file__.startswith(sys.argv[1]), dsconfig.__file__; "
             "print(json.dumps(dsconfig.render_named('zero2')))")
    result = subprocess.run([sys.executable, "-c", probe, str(target)], check=False, capture_output=True, text=True,
                            cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(target)})
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == render_named("zero2")


def test_ds_configs_command_writes_where_asked(tmp_path: Path) -> None:
    assert main(["ds-configs", "--out-dir", str(tmp_path / "named")]) == 0
    assert sorted(path.stem for path in (tmp_path / "named").glob("*.json")) == sorted(NAMED_CONFIGS)
