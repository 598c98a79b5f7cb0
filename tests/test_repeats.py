"""Repeats: expansion into runs, ids, and the interleaving order (unit level and in Snakemake's real DAG)."""

from __future__ import annotations

import itertools
import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import run_snakemake
from zerosweep.plan.matrix import RUN_ID_PATTERN, build_plan
from zerosweep.plan.repeats import previous_round, repeat_id, round_priority, split_repeat

SINGLE_GPU = ("z0-offnone-nopin-g1n1", "z1-offnone-nopin-g1n1", "z2-offnone-nopin-g1n1", "z3-offnone-nopin-g1n1")


def test_one_repeat_keeps_every_id(config: dict[str, Any]) -> None:
    plain = build_plan(config)
    config["repeats"] = 1
    config["studies"]["zero_stages"]["repeats"] = 1
    same = build_plan(config)
    assert list(same.runs) == list(plain.runs)
    assert all(re.fullmatch(RUN_ID_PATTERN, run_id) for run_id in same.runs)
    assert {round_priority(same, run_id) for run_id in same.runs} == {0}  # dry-run listings stay as they were


def test_repeats_expand_each_point_into_numbered_runs(config: dict[str, Any]) -> None:
    config["build_studies"] = ["zero_stages", "baseline"]
    config["studies"]["zero_stages"]["repeats"] = 3
    plan = build_plan(config)
    assert plan.studies["zero_stages"].run_ids == [f"{run}-r{k}" for k in (1, 2, 3) for run in SINGLE_GPU]
    assert plan.studies["baseline"].run_ids == ["base-g1n1"]  # global repeats 1: its id stays
    for run_id in plan.studies["zero_stages"].run_ids:
        assert re.fullmatch(RUN_ID_PATTERN, run_id), run_id
        assert plan.runs[run_id].run_id == run_id
        base, _ = split_repeat(run_id)
        assert plan.runs[run_id].settings == plan.runs[f"{base}-r1"].settings  # same run, measured again
    assert split_repeat("z2-offcpu-pin-g2n2-xca41c2-r12") == ("z2-offcpu-pin-g2n2-xca41c2", 12)
    assert split_repeat("base-g1n1") == ("base-g1n1", 1)
    assert repeat_id("base-g1n1", 1, 1) == "base-g1n1" and repeat_id("base-g1n1", 2, 2) == "base-g1n1-r2"
    with pytest.raises(ValueError, match="repeat 3 of 2"):
        repeat_id("base-g1n1", 3, 2)


def test_a_run_shared_by_studies_runs_as_often_as_the_most_demanding_one(config: dict[str, Any]) -> None:
    config["repeats"] = 2
    config["studies"]["pin_memory"]["repeats"] = 4  # z2-offcpu-pin-g1n1 is also in multi_gpu_scaling (2)
    plan = build_plan(config)
    assert [f"z2-offcpu-pin-g1n1-r{k}" in plan.runs for k in range(1, 6)] == [True] * 4 + [False]
    assert plan.studies["multi_gpu_scaling"].run_ids[0] == "z2-offcpu-pin-g1n1-r1"
    assert "z2-offcpu-pin-g1n1-r3" not in plan.studies["multi_gpu_scaling"].run_ids
    assert len(plan.studies["pin_memory"].run_ids) == 8


def test_round_k_waits_for_every_run_of_round_k_minus_1_of_its_studies(config: dict[str, Any]) -> None:
    config["build_studies"] = ["zero_stages", "baseline"]
    config["repeats"] = 3
    plan = build_plan(config)
    assert previous_round(plan, "z1-offnone-nopin-g1n1-r1") == []
    assert sorted(previous_round(plan, "z1-offnone-nopin-g1n1-r3")) == sorted(f"{run}-r2" for run in SINGLE_GPU)
    assert previous_round(plan, "base-g1n1-r2") == ["base-g1n1-r1"]


def schedule_one_at_a_time(plan: Any, runs: list[str]) -> list[str]:
    """What Snakemake does with one training slot: among the jobs whose inputs exist, the highest priority."""
    done: list[str] = []
    while len(done) < len(runs):
        ready = [run for run in runs if run not in done and set(previous_round(plan, run)) <= set(done)]
        done.append(max(ready, key=lambda run: round_priority(plan, run)))
    return done


def test_one_at_a_time_no_point_runs_twice_in_a_row(config: dict[str, Any]) -> None:
    config["build_studies"] = ["zero_stages", "baseline", "zero_offload"]
    config["repeats"] = 4
    plan = build_plan(config)
    order = schedule_one_at_a_time(plan, plan.runs_of(config["build_studies"]))
    bases = [split_repeat(run)[0] for run in order]
    assert len(order) == 4 * 8 and all(a != b for a, b in itertools.pairwise(bases)), bases
    assert [split_repeat(run)[1] for run in order] == sorted(split_repeat(run)[1] for run in order)
    # the one-point baseline study too, though nothing in its own study separates its repeats
    assert [i // 8 for i, run in enumerate(order) if run.startswith("base-")] == [0, 1, 2, 3]


def test_snakemake_dag_holds_the_round_barrier(tmp_path: Path) -> None:
    overrides = tmp_path / "repeats.yaml"
    overrides.write_text(yaml.safe_dump({"repeats": 2, "build_studies": ["zero_stages"]}))
    result = run_snakemake("--dag", "dot", "--configfile", "workflow_config.yaml", str(overrides), "--",
                           "results/tables/zero_stages.md")
    assert result.returncode == 0, result.stderr
    labels = dict(re.findall(r'(\d+)\[label = "train\\nrun: ([^"]+)"', result.stdout))
    edges = re.findall(r"(\d+) -> (\d+)", result.stdout)
    waits = {labels[child]: {labels[parent] for parent, c in edges if c == child and parent in labels}
             for child in labels}
    assert sorted(labels.values()) == sorted(f"{run}-r{k}" for run in SINGLE_GPU for k in (1, 2))
    for run in SINGLE_GPU:
        assert waits[f"{run}-r1"] == set()
        assert waits[f"{run}-r2"] == {f"{other}-r1" for other in SINGLE_GPU}
