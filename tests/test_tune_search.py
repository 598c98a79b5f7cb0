"""The replay of a tune study's searches over finished probes (plan.tune.search), as the workflow's input
functions run it, with a dict of probe outcomes in place of the checkpoint."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import pytest
from test_tune import tune_config
from zerosweep.plan.matrix import ConfigError, build_plan
from zerosweep.plan.tune.memory_model import MemoryModel, ModelSize
from zerosweep.plan.tune.search import guided_start, measurement_runs, replay
from zerosweep.plan.tune.studies import FIT, OOM, TuneStudy, build_tune_studies, next_probe

SIZE = ModelSize(n_params=559_214_592, largest_layer_params=256_901_120)  # bloom-560m
FIRST, OFFLOAD = "z0-offnone-nopin-g1n1", "z2-offcpu-nopin-g1n1"


def never() -> ModelSize:
    raise AssertionError("the model's size is needed only for a guessed start")


def study_of(config: dict[str, Any], **tune: Any) -> TuneStudy:
    config = tune_config(config, **tune)
    config["runtime"]["device"] = "cuda"
    return build_tune_studies(config, build_plan(config))["tuned"]


def outcomes_for(study: TuneStudy, peak: Callable[[str, int], float], capacity_mib: float) -> dict[str, Mapping[str, Any]]:
    """Every probe the study could ask for, by run id: ok while its peak stays within the capacity."""
    table: dict[str, Mapping[str, Any]] = {}
    for point, search in study.searches.items():
        for micro_batch in range(1, search.upper + 1):
            run_id = search.probe(micro_batch).run_id
            mib = peak(point, micro_batch)
            table[run_id] = {"run_id": run_id, "point_id": point, "micro_batch": micro_batch,
                             "status": FIT if mib <= capacity_mib else OOM, "peak_mib": mib}
    return table


def linear(model: MemoryModel, fixed: float, per_sample: float) -> Callable[[str, int], float]:
    return lambda point, micro_batch: model.states_mib(point) + fixed + per_sample * micro_batch


def test_replay_follows_the_search_and_asks_for_each_unfinished_probe_in_turn(config: dict[str, Any]) -> None:
    study = study_of(config)  # start 2, upper 64, doubling
    peak = linear(MemoryModel(study.to_dict(), SIZE, []), 3000, 2500)
    table = outcomes_for(study, peak, capacity_mib=80_000)
    search = study.searches[FIRST]
    expected_order: list[int] = []
    oracle: dict[int, str] = {}
    while (micro_batch := next_probe(oracle, 2, 64)) is not None:
        expected_order.append(micro_batch)
        oracle[micro_batch] = str(table[search.probe(micro_batch).run_id]["status"])

    # finished probes one by one: each replay stops at (asks for) exactly the next probe of the search
    finished: dict[str, Mapping[str, Any]] = {}
    for micro_batch in expected_order:
        wanted = search.probe(micro_batch).run_id
        with pytest.raises(KeyError, match=wanted):
            replay(study, FIRST, finished.__getitem__, never)
        finished[wanted] = table[wanted]
    done = replay(study, FIRST, finished.__getitem__, never)
    assert [int(probe["micro_batch"]) for probe in done.probes] == expected_order
    assert done.run_ids == [search.probe(mb).run_id for mb in expected_order]
    assert (done.start, done.gallop) == (2, False)
    true_max = max(mb for mb in range(1, 65) if peak(FIRST, mb) <= 80_000)
    assert done.boundary.max_fit == true_max and done.boundary.first_oom == true_max + 1


def test_a_model_guided_start_waits_for_the_first_point_then_gallops_from_its_guess(config: dict[str, Any]) -> None:
    study = study_of(config, start_from_model=True)
    model = MemoryModel(study.to_dict(), SIZE, [])
    peak = linear(model, 3000, 2500)  # every point's true line: the guess is right
    table = outcomes_for(study, peak, capacity_mib=80_000)
    first = replay(study, FIRST, table.__getitem__, never)  # the first point never guesses
    assert not first.gallop
    # while the first point's search is unfinished, the other points' replays ask for its next probe
    partial = {run_id: table[run_id] for run_id in first.run_ids[:2]}
    with pytest.raises(KeyError, match=first.run_ids[2]):
        replay(study, OFFLOAD, partial.__getitem__, lambda: SIZE)

    guided = replay(study, OFFLOAD, table.__getitem__, lambda: SIZE)
    guess = guided_start(study.to_dict(), SIZE, first, OFFLOAD)
    assert guess is not None and (guided.start, guided.gallop) == (guess, True)
    true_max = max(mb for mb in range(1, 65) if peak(OFFLOAD, mb) <= 80_000)
    assert guided.boundary.max_fit == true_max
    # the first point's boundary probe sits halfway below its first OOM; the guess is right or one short
    assert true_max - guess in (0, 1) and len(guided.probes) <= 3
    # measurement runs at each point's boundary, replayed the same way
    assert measurement_runs(study, table.__getitem__, lambda: SIZE) == [
        search.measurement(replay(study, point, table.__getitem__, lambda: SIZE).boundary.max_fit).run_id
        for point, search in study.searches.items()]


def test_nothing_fits_gives_no_measurement_and_a_foreign_outcome_is_refused(config: dict[str, Any]) -> None:
    study = study_of(config)
    table = outcomes_for(study, lambda point, micro_batch: 1e9, capacity_mib=80_000)
    assert replay(study, FIRST, table.__getitem__, never).boundary.max_fit == 0
    assert measurement_runs(study, table.__getitem__, never) == []
    search = study.searches[FIRST]
    swapped = {**table, search.probe(2).run_id: table[search.probe(4).run_id]}
    with pytest.raises(ValueError, match=f"probe {search.probe(2).run_id}: its outcome is of run"):
        replay(study, FIRST, swapped.__getitem__, never)


# --- screening and budget searches ------------------------------------------------------------------------


def with_speed(table: dict[str, Mapping[str, Any]], speed: Callable[[str, int], float]) -> dict[str, Mapping[str, Any]]:
    """The probe outcomes with samples/s (None where out of memory), as tune-probe records them."""
    return {run_id: {**outcome, "label": outcome["point_id"],
                     "samples_per_second": speed(str(outcome["point_id"]), int(outcome["micro_batch"]))
                     if outcome["status"] == FIT else None}
            for run_id, outcome in table.items()}


SPEED = {"z0-offnone-nopin-g1n1": 50.0, "z2-offnone-nopin-g1n1": 60.0, "z2-offcpu-nopin-g1n1": 20.0}


def test_the_screen_ranks_every_point_and_only_the_fastest_are_searched_from_its_probe(config: dict[str, Any]) -> None:
    from zerosweep.plan.tune.search import screen, screen_run_ids
    from zerosweep.report.tune.tune_records import screen_record

    study = study_of(config, screen_micro_batch=8, screen_keep=2)
    model = MemoryModel(study.to_dict(), SIZE, [])
    # z0 runs out of memory at the screen's micro-batch 8 (a larger per-sample memory), the others fit
    per_sample = {"z0-offnone-nopin-g1n1": 20_000.0, "z2-offnone-nopin-g1n1": 2500.0, "z2-offcpu-nopin-g1n1": 2500.0}
    table = with_speed(outcomes_for(study, lambda p, mb: model.states_mib(p) + 3000 + per_sample[p] * mb, 80_000),
                       lambda point, mb: SPEED[point] * (1 + mb / 100))
    assert screen_run_ids(study) == [search.probe(8).run_id for search in study.searches.values()]
    found = screen(study, table.__getitem__)
    # fastest first; the point out of memory at the screen last
    assert found.ranking == ("z2-offnone-nopin-g1n1", "z2-offcpu-nopin-g1n1", "z0-offnone-nopin-g1n1")
    assert found.kept == ("z2-offnone-nopin-g1n1", "z2-offcpu-nopin-g1n1") and found.rank("z0-offnone-nopin-g1n1") == 3
    # the record the workflow writes ranks the same way
    record = screen_record(study.to_dict(), found.probes)
    assert record["kept"] == list(found.kept) and record["ranking"] == list(found.ranking)
    # a searched point starts at the screen's micro-batch: its first probe is the screen probe, not another run
    searched = replay(study, "z2-offnone-nopin-g1n1", table.__getitem__, never)
    assert searched.run_ids[0] == study.searches["z2-offnone-nopin-g1n1"].probe(8).run_id
    assert searched.boundary.max_fit == max(mb for mb in range(1, 65)
                                            if model.states_mib("z2-offnone-nopin-g1n1") + 3000 + 2500 * mb <= 80_000)
    # measurements only for the searched points
    measured = measurement_runs(study, table.__getitem__, never)
    assert len(measured) == 2 and not any(run.startswith("z0-") for run in measured)
    # with one point kept, the out-of-memory point is not searched; with all kept, it is searched downward
    assert screen(study_of(config, screen_micro_batch=8, screen_keep=1), table.__getitem__).kept == (
        "z2-offnone-nopin-g1n1",)
    every = study_of(config, screen_micro_batch=8, screen_keep=3)
    assert replay(every, "z0-offnone-nopin-g1n1", table.__getitem__, never).boundary.first_oom is not None
    # the reference (the study's first point) is searched first whatever its rank, then the fastest
    judged = study_of(config, screen_micro_batch=8, screen_keep=1, screen_reference=True)
    assert screen(judged, table.__getitem__).kept == ("z0-offnone-nopin-g1n1", "z2-offnone-nopin-g1n1")
    assert screen_record(judged.to_dict(), found.probes)["kept"] == ["z0-offnone-nopin-g1n1", "z2-offnone-nopin-g1n1"]


@pytest.mark.parametrize("mode", ["exact", "first_fit"])
def test_a_budget_search_finds_the_fastest_configurations_largest_micro_batch_within_the_budget(
        config: dict[str, Any], mode: str) -> None:
    from zerosweep.plan.tune.search import budget_search
    from zerosweep.report.tune.tune_records import budget_record

    study = study_of(config, fill_budgets=mode, start_from_model=True)
    model = MemoryModel(study.to_dict(), SIZE, [])
    # a little curvature: the line fitted to the search's probes is off near a small budget
    peak = lambda point, mb: model.states_mib(point) + 3000 + 2500 * mb + 15 * mb * mb
    table = with_speed(outcomes_for(study, peak, capacity_mib=80_000), lambda point, mb: SPEED[point])
    fastest = "z2-offnone-nopin-g1n1"
    for budget_gib in (24.0, 40.0):
        found = budget_search(study, budget_gib, table.__getitem__, lambda: SIZE)
        true_max = max(mb for mb in range(1, 65) if peak(fastest, mb) <= budget_gib * 1024)
        assert found.point_id == fastest and found.start is not None
        if mode == "exact":
            assert found.max_within == true_max and found.exact
        else:  # the first probe within the budget ends it: a measured run that fits, maybe not the largest
            assert 1 <= found.max_within <= true_max and len([p for p in found.probes
                                                              if peak(fastest, p["micro_batch"]) <= budget_gib * 1024]) == 1
        # every probe is the point's ordinary probe (a micro-batch its search probed costs no run)
        assert found.run_ids == [study.searches[fastest].probe(int(p["micro_batch"])).run_id for p in found.probes]
        record = budget_record(study.to_dict(), found.to_dict(), found.probes)
        assert (record["max_within"], record["exact"], record["point_id"]) == (found.max_within, found.exact, fastest)
    # a budget the boundary itself fits needs no probe beyond it
    roomy = budget_search(study, 100.0, table.__getitem__, lambda: SIZE)
    assert roomy.start is None and roomy.exact and len(roomy.probes) == 1
    # a budget below the model states of every configuration: none chosen, said why
    tiny = budget_search(study, 1.0, table.__getitem__, lambda: SIZE)
    assert tiny.point_id is None and "no searched configuration" in tiny.basis and tiny.probes == ()


def test_screen_and_budget_settings_are_checked_by_name(config: dict[str, Any]) -> None:
    with pytest.raises(ConfigError, match="tune.max_micro_batch .64. is below tune.screen_micro_batch .128."):
        study_of(config, screen_micro_batch=128)
    with pytest.raises(ConfigError, match="tune.fill_budgets 'some'"):
        study_of(config, fill_budgets="some")


def test_a_guided_start_uses_the_targets_own_screen_probe_for_its_per_sample_memory(config: dict[str, Any]) -> None:
    # the reference (z0, searched first) needs 2500 MiB a sample, z2 a third of it (as torch.compile gives):
    # guessed from the reference's line alone z2's start is far too low (seen on an H200: 49 for a boundary of
    # 77); with its screen probe the memory model's line through it puts the start at z2's true boundary
    from zerosweep.plan.tune.search import search_start

    study = study_of(config, screen_micro_batch=8, screen_keep=1, screen_reference=True, start_from_model=True)
    model = MemoryModel(study.to_dict(), SIZE, [])
    per_sample = {"z0-offnone-nopin-g1n1": 2500.0, "z2-offnone-nopin-g1n1": 800.0, "z2-offcpu-nopin-g1n1": 2500.0}
    peak = lambda point, mb: model.states_mib(point) + 3000 + per_sample[point] * mb
    table = with_speed(outcomes_for(study, peak, capacity_mib=60_000), lambda point, mb: SPEED[point])
    start, gallop = search_start(study, "z2-offnone-nopin-g1n1", table.__getitem__, lambda: SIZE)
    true_max = max(mb for mb in range(1, 65) if peak("z2-offnone-nopin-g1n1", mb) <= 60_000)
    assert gallop and abs(start - true_max) <= 1, (start, true_max)
    reference = replay(study, "z0-offnone-nopin-g1n1", table.__getitem__, never)
    alone = guided_start(study.to_dict(), SIZE, reference, "z2-offnone-nopin-g1n1")
    assert alone is not None and alone < true_max - 10  # the reference's line with z2's states: far too low
