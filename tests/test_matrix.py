"""Matrix expansion: run ids, counts, pruning, deduplication across studies, study overrides."""

from __future__ import annotations

import re
from typing import Any

from zerosweep.plan.matrix import RUN_ID_PATTERN, MatrixPoint, build_plan, matrix_table

EXPECTED_RUNS = {
    "baseline": ["base-g1n1"],
    "zero_stages": ["z0-offnone-nopin-g1n1", "z1-offnone-nopin-g1n1", "z2-offnone-nopin-g1n1", "z3-offnone-nopin-g1n1"],
    "zero_offload": ["z1-offcpu-nopin-g1n1", "z2-offcpu-nopin-g1n1", "z3-offcpu-nopin-g1n1"],
    "pin_memory": ["z2-offcpu-nopin-g1n1", "z2-offcpu-pin-g1n1"],
    "multi_gpu_scaling": ["z2-offcpu-pin-g1n1", "z2-offcpu-pin-g2n1", "z2-offcpu-pin-g4n1", "z2-offcpu-pin-g8n1"],
    "zero_stages_2gpu": [
        "z1-offnone-nopin-g2n1", "z1-offcpu-nopin-g2n1", "z2-offnone-nopin-g2n1",
        "z2-offcpu-nopin-g2n1", "z3-offnone-nopin-g2n1", "z3-offcpu-nopin-g2n1",
    ],
}


def test_shipped_studies_expand_to_the_workshop_runs(config: dict[str, Any]) -> None:
    plan = build_plan(config)
    for study, runs in EXPECTED_RUNS.items():
        assert plan.studies[study].run_ids == runs
    nodes = plan.studies["multi_node_scaling"].run_ids
    assert [re.sub(r"-x[0-9a-f]{6}$", "", run) for run in nodes] == [
        "z2-offcpu-pin-g2n2", "z2-offcpu-pin-g2n4", "z2-offcpu-pin-g2n8",
    ]
    # 23 study rows, 21 distinct runs: shared points run once
    assert sum(len(s.run_ids) for s in plan.studies.values()) == 23
    assert len(plan.runs) == 21
    assert plan.build == [name for name in config["studies"] if config["studies"][name]["table"] != "tune"]


def test_run_ids_match_the_wildcard_constraint_and_are_unambiguous(config: dict[str, Any]) -> None:
    plan = build_plan(config)
    for run_id in plan.runs:
        assert re.fullmatch(RUN_ID_PATTERN, run_id), run_id
    assert not re.fullmatch(RUN_ID_PATTERN, "z2-offcpu-pin-g1n1/summary")
    assert not re.fullmatch(RUN_ID_PATTERN, "z4-offnone-nopin-g1n1")


def test_study_override_gives_its_own_run_and_settings(config: dict[str, Any]) -> None:
    plan = build_plan(config)
    run = plan.runs[plan.studies["multi_node_scaling"].run_ids[0]]
    assert run.settings["data"]["samples_per_gpu"] == 250
    assert plan.runs["z2-offcpu-pin-g2n1"].settings["data"]["samples_per_gpu"] == 500
    assert run.point.world_size == 4


def test_override_equal_to_global_value_keeps_the_shared_run(config: dict[str, Any]) -> None:
    config["studies"]["pin_memory"]["data"] = {"samples_per_gpu": config["data"]["samples_per_gpu"]}
    plan = build_plan(config)
    assert plan.studies["pin_memory"].run_ids == ["z2-offcpu-nopin-g1n1", "z2-offcpu-pin-g1n1"]


def test_spanning_axes_prunes_meaningless_combinations_and_counts_them(config: dict[str, Any]) -> None:
    config["studies"]["everything"] = {
        "table": "comparison",
        "zero_stage": [0, 1, 2, 3],
        "offload": ["none", "cpu"],
        "pin_memory": [False, True],
    }
    plan = build_plan(config)
    study = plan.studies["everything"]
    # of 16 combinations only stage 0 without offload, and stages 1-3 with (none, nopin), (cpu, nopin), (cpu, pin)
    assert len(study.run_ids) == 1 + 3 * 3
    assert len(study.pruned) == 6
    assert any(item.startswith("z0-offcpu-nopin-g1n1 ") for item in study.pruned)
    assert "23 runs in 9 studies; 7 invalid combinations pruned." in matrix_table(plan)  # 9th: the tune study


def test_matrix_table_lists_every_run_with_its_studies(config: dict[str, Any]) -> None:
    text = matrix_table(build_plan(config))
    assert "| z2-offcpu-nopin-g1n1 | zero_offload, pin_memory | 1 | 1 | 1 | 2 | cpu | false | - | 500 |" in text
    assert "| base-g1n1 | baseline | 1 | 1 | 1 | - | - | - | - | 500 |" in text
    assert "21 runs in 8 studies; 1 invalid combinations pruned." in text  # the tune study prunes z0 + offload
    assert "tune study tune_bloom560m: micro-batch search over z0-offnone-nopin-g1n1, z1-offnone" in text


def test_point_labels_follow_the_workshop() -> None:
    assert MatrixPoint(True, 2, "cpu", True, 1, 1).label == "ZeRO Stage 2 + Offloading (pin_memory)"
    assert MatrixPoint(False, None, "none", False, 1, 1).label == "No DeepSpeed (baseline)"


def test_the_optimizer_axis_without_deepspeed_runs_the_trainers_optimizer_once(config: dict[str, Any]) -> None:
    """Without DeepSpeed, optimizer deepspeed means the Trainer's default, torch's fused AdamW: the same run as
    torch_fused, left out (pruned, with why) where the study sweeps both."""
    config["studies"] = {"bare": {"title": "Bare", "table": "comparison", "deepspeed": False,
                                  "optimizer": ["deepspeed", "torch_fused"], "compile": [False, True]}}
    config["build_studies"] = ["bare"]
    study = build_plan(config).studies["bare"]
    assert [dict(point.levers).get("optimizer") for point in study.points] == ["torch_fused", "torch_fused"]
    assert len(study.run_ids) == 2 and len(study.pruned) == 2
    assert all("same run as optimizer torch_fused" in why for why in study.pruned)
    config["studies"]["bare"]["optimizer"] = ["deepspeed"]  # not swept against torch_fused: kept, as the baseline is
    assert len(build_plan(config).studies["bare"].run_ids) == 2
