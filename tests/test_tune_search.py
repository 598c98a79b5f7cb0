"""The replay of a tune study's searches over finished probes (plan.tune.search), as the workflow's input
functions run it, with a dict of probe outcomes in place of the checkpoint."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import pytest
from test_tune import tune_config
from zerosweep.plan.matrix import build_plan
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
