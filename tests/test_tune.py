"""The micro-batch search (exhaustively, against every true maximum) and the tune study's runs."""

from __future__ import annotations

import copy
import re
from typing import Any

import pytest
from zerosweep.plan.matrix import RUN_ID_PATTERN, ConfigError, build_plan
from zerosweep.plan.tune import FIT, OOM, boundary, build_tune_studies, find_run, next_probe


def search(true_max: int, start: int, upper: int) -> tuple[dict[int, str], list[int]]:
    """Run the search against an oracle: micro-batch b fits iff b <= true_max."""
    outcomes: dict[int, str] = {}
    order: list[int] = []
    while (micro_batch := next_probe(outcomes, start, upper)) is not None:
        assert micro_batch not in outcomes, f"probed {micro_batch} twice"
        assert 1 <= micro_batch <= upper
        order.append(micro_batch)
        outcomes[micro_batch] = FIT if micro_batch <= true_max else OOM
        assert len(order) <= 64
    return outcomes, order


@pytest.mark.parametrize(("start", "upper"), [(1, 1), (1, 2), (1, 7), (1, 64), (1, 100), (3, 100), (4, 37),
                                              (8, 8), (5, 129)])
def test_boundary_is_exact_for_every_true_maximum(start: int, upper: int) -> None:
    for true_max in range(upper + 6):
        outcomes, order = search(true_max, start, upper)
        found = boundary(outcomes, start, upper)
        expected = min(true_max, upper)
        assert found.max_fit == expected, (true_max, order)
        assert found.consistent
        # exact by witness: the boundary itself was run and fit, the next one was run and did not
        if expected > 0:
            assert outcomes[expected] == FIT
        if true_max < upper:
            assert outcomes[expected + 1] == OOM and found.first_oom == expected + 1 and not found.capped
        else:  # never skip the upper bound: it was probed, and the result says the search was capped
            assert outcomes[upper] == FIT and found.capped and found.first_oom is None
        # logarithmic: doubling up to the first OOM, then bisection
        assert len(order) <= 2 * (upper.bit_length() + 1), (true_max, order)


def test_growth_doubles_then_bisects() -> None:
    _, order = search(true_max=37, start=1, upper=256)
    assert order == [1, 2, 4, 8, 16, 32, 64, 48, 40, 36, 38, 37]
    _, order = search(true_max=300, start=1, upper=100)
    assert order == [1, 2, 4, 8, 16, 32, 64, 100]  # the clamp probes the upper bound itself


def test_unfinished_search_has_no_boundary_and_contradictions_are_reported() -> None:
    assert boundary({1: FIT, 2: FIT}, 1, 64).max_fit is None
    found = boundary({1: FIT, 2: OOM, 4: FIT}, 1, 64)
    assert found.max_fit == 1 and not found.consistent
    with pytest.raises(ValueError, match="outcome 'failed'"):
        next_probe({1: "failed"}, 1, 64)
    with pytest.raises(ValueError, match="start=9, upper=8"):
        next_probe({}, 9, 8)


# --- the study's runs --------------------------------------------------------------------------------

TUNE_STUDY: dict[str, Any] = {
    "table": "tune", "zero_stage": [0, 2], "offload": ["none", "cpu"],
    "training": {"gradient_accumulation_steps": 1},
    "tune": {"start_micro_batch": 2, "max_micro_batch": 64, "probe_steps": 3, "measure_steps": 8,
             "global_batch_size": 32, "host_memory_cap_mib": 900},
}


def tune_config(config: dict[str, Any], **tune: Any) -> dict[str, Any]:
    config = copy.deepcopy(config)
    study = copy.deepcopy(TUNE_STUDY)
    study["tune"].update(tune)
    config["studies"] = {"zero_stages": config["studies"]["zero_stages"], "tuned": study}
    config["build_studies"] = ["zero_stages", "tuned"]
    return config


def test_tune_study_makes_probe_and_measurement_runs(config: dict[str, Any]) -> None:
    config = tune_config(config)
    plan = build_plan(config)
    assert plan.studies["tuned"].run_ids == [] and "tuned" in plan.build
    studies = build_tune_studies(config, plan)
    # z0 with CPU offload is pruned, as in any study
    assert list(studies["tuned"].searches) == ["z0-offnone-nopin-g1n1", "z2-offnone-nopin-g1n1", "z2-offcpu-nopin-g1n1"]
    search = studies["tuned"].searches["z2-offcpu-nopin-g1n1"]
    probe, measurement = search.probe(16), search.measurement(16)
    for spec in (probe, measurement):
        assert re.fullmatch(RUN_ID_PATTERN, spec.run_id) and spec.run_id.endswith("-b16")
        assert spec.settings["training"]["per_device_batch_size"] == 16
        assert spec.settings["runtime"]["memory_headroom_mib"] == 900
        assert find_run(plan, studies, spec.run_id) == spec
    assert probe.run_id != measurement.run_id
    assert probe.settings["training"]["max_steps"] == 3 and measurement.settings["training"]["max_steps"] == 8
    assert measurement.settings["training"]["gradient_accumulation_steps"] == 2  # 16 x 2 = global 32
    assert probe.settings["data"]["samples_per_gpu"] == config["data"]["samples_per_gpu"]  # 500 >= 16 x 3
    assert search.probe(256).settings["data"]["samples_per_gpu"] == 256 * 3  # one pass covers the steps
    # the id hash ignores the micro-batch, so probes of one point differ only in -b
    assert search.probe(3).run_id.rsplit("-b", 1)[0] == probe.run_id.rsplit("-b", 1)[0]
    # the shared runs are still found, an unknown id is refused by name
    assert find_run(plan, studies, "z0-offnone-nopin-g1n1").run_id == "z0-offnone-nopin-g1n1"
    with pytest.raises(KeyError, match="z1-offnone-nopin-g1n1-b4"):
        find_run(plan, studies, "z1-offnone-nopin-g1n1-b4")


def test_measurement_with_the_probe_settings_is_the_probe(config: dict[str, Any]) -> None:
    config = tune_config(config, measure_steps=None, global_batch_size=None)
    plan = build_plan(config)
    search = build_tune_studies(config, plan)["tuned"].searches["z2-offnone-nopin-g1n1"]
    assert search.measurement(8) == search.probe(8)


def test_bad_tune_settings_are_refused_by_name(config: dict[str, Any]) -> None:
    bad = tune_config(config, start_micro_batch=8, max_micro_batch=4)
    with pytest.raises(ConfigError, match="study 'tuned': tune.max_micro_batch"):
        build_tune_studies(bad, build_plan(bad))
    misplaced = copy.deepcopy(config)
    misplaced["studies"]["zero_stages"]["tune"] = {"max_micro_batch": 4}
    with pytest.raises(ConfigError, match="study 'zero_stages': key 'tune'"):
        build_tune_studies(misplaced, build_plan(misplaced))
