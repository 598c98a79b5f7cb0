"""The in-process search (tune.search_mode in_process): the probe loop's OOM handling (run/in_process.py) and
which of its outcomes the replay trusts (plan/tune/search.in_process_doubts, with_in_process)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pandas as pd
import pytest
import torch
from test_tune import tune_config
from zerosweep.plan.matrix import build_plan
from zerosweep.plan.tune.search import in_process_doubts, in_process_trusted, replay, with_in_process
from zerosweep.plan.tune.studies import FIT, OOM, build_tune_studies, next_probe
from zerosweep.run.in_process import DeviceMemory, probe_loop


def search_spec(start: int = 1, upper: int = 16, gallop: bool = False, known: Mapping[str, str] | None = None
                ) -> dict[str, Any]:
    return {"start": start, "upper": upper, "gallop": gallop, "known": dict(known or {}), "probe_prefix": "p",
            "steps": 2}


class AllocatorLimit:
    """A stand-in for a GPU's memory, which a CPU cannot run out of in a unit test: each probe really allocates
    `per_sample` bytes a sample on the CPU and raises torch's real OutOfMemoryError, with the CUDA caching
    allocator's message, where a real GPU of `capacity` would. `leak` keeps memory after an OOM (a process that
    did not get it all back)."""

    def __init__(self, capacity: int, per_sample: int = 1024, leak: int = 0) -> None:
        self.capacity, self.per_sample, self.leak, self.held = capacity, per_sample, leak, 0
        self.calls: list[int] = []

    def __call__(self, micro_batch: int) -> list[float]:
        self.calls.append(micro_batch)
        activations = torch.empty(micro_batch * self.per_sample, dtype=torch.uint8)  # a real allocation
        if micro_batch * self.per_sample + self.held > self.capacity:
            self.held += self.leak
            raise torch.OutOfMemoryError(f"CUDA out of memory. Tried to allocate {activations.numel()} bytes")
        return [0.01, 0.01]


def test_the_loop_runs_the_one_search_and_records_each_oom_with_its_evidence() -> None:
    limit = AllocatorLimit(capacity=5 * 1024)
    record = probe_loop(search_spec(), limit, DeviceMemory(cuda=False))
    outcomes: dict[int, str] = {}
    for micro_batch in limit.calls:  # the order is next_probe's
        assert next_probe(outcomes, 1, 16) == micro_batch
        outcomes[micro_batch] = FIT if micro_batch <= 5 else OOM
    assert limit.calls == [1, 2, 4, 8, 6, 5] and record["stopped"] is None
    by_batch = {probe["micro_batch"]: probe for probe in record["probes"]}
    assert by_batch[8]["status"] == OOM and by_batch[8]["outcome"] == "cuda_oom"
    assert by_batch[8]["error_type"] == "OutOfMemoryError" and "Tried to allocate" in by_batch[8]["error"]
    assert by_batch[5]["status"] == FIT and by_batch[5]["step_seconds"] == [0.01, 0.01]
    assert by_batch[5]["run_id"] == "p-b5" and by_batch[5]["allocator_before"]["rss_mib"] > 0
    # every OOM is confirmed by an ordinary run; the fits stand
    assert in_process_doubts(record) == {8: "an OOM in process", 6: "an OOM in process, after 1 earlier OOM(s) in it"}
    assert set(in_process_trusted(record)) == {f"p-b{micro_batch}" for micro_batch in (1, 2, 4, 5)}


def test_even_a_first_oom_at_the_boundary_is_confirmed_and_known_outcomes_are_not_probed_again() -> None:
    limit = AllocatorLimit(capacity=4 * 1024)
    record = probe_loop(search_spec(start=4, gallop=True, known={"4": FIT}), limit, DeviceMemory(cuda=False))
    assert limit.calls == [5]  # the guess (a known screen probe) fit; its neighbour is the first OOM
    # a first OOM can be the process's leftovers too (seen on CPU): an ordinary run confirms it
    assert in_process_doubts(record) == {5: "an OOM in process"} and in_process_trusted(record) == {}


def test_a_failure_that_is_no_oom_fails_the_job_unless_an_oom_came_first() -> None:
    def broken(micro_batch: int) -> list[float]:
        raise ValueError("bad batch")

    with pytest.raises(ValueError, match="bad batch"):
        probe_loop(search_spec(), broken, DeviceMemory(cuda=False))

    def after_oom(micro_batch: int) -> list[float]:
        if micro_batch == 4:
            raise torch.OutOfMemoryError("CUDA out of memory.")
        if micro_batch == 3:
            raise RuntimeError("engine state after the OOM")
        return [0.01]

    record = probe_loop(search_spec(), after_oom, DeviceMemory(cuda=False))
    assert [probe["micro_batch"] for probe in record["probes"]] == [1, 2, 4]
    assert "engine state after the OOM" in record["stopped"]  # the rest of the search: ordinary runs


def test_a_fit_near_the_device_memory_and_an_oom_below_a_fit_are_doubted() -> None:
    def probe(micro_batch: int, status: str, peak: float = 100.0) -> dict[str, Any]:
        return {"run_id": f"p-b{micro_batch}", "micro_batch": micro_batch, "status": status, "peak_mib": peak}

    near = {"known": {}, "device_total_mib": 1000.0, "probes": [probe(1, FIT), probe(2, FIT, 990.0), probe(3, OOM)]}
    assert sorted(in_process_doubts(near)) == [2, 3]  # the fit near the memory, and the OOM as every OOM
    roomy = {**near, "device_total_mib": 2000.0}
    assert in_process_doubts(roomy) == {3: "an OOM in process"}  # (the replay still witnesses its boundary's fit)
    odd = {"known": {}, "device_total_mib": None, "probes": [probe(4, FIT), probe(2, OOM), probe(8, OOM)]}
    assert in_process_doubts(odd) == {2: "ran out of memory below micro-batch 4, which fit",
                                      8: "an OOM in process, after 1 earlier OOM(s) in it"}


def _replay_over(config: dict[str, Any], in_process: list[tuple[int, str]], truth: int) -> tuple[Any, list[int]]:
    """The replay of an in-process search of ZeRO-0 (start 1, up to 16) whose job found `in_process` outcomes,
    where an ordinary run fits up to `truth`: (the replay, the micro-batches it asked ordinary runs for)."""
    config = tune_config(config, search_mode="in_process", start_micro_batch=1, max_micro_batch=16)
    study = build_tune_studies(config, build_plan(config))["tuned"]
    point = "z0-offnone-nopin-g1n1"
    search = study.searches[point]

    def outcome(micro_batch: int, status: str, mode: str) -> dict[str, Any]:
        return {"run_id": search.probe(micro_batch).run_id, "point_id": point, "micro_batch": micro_batch,
                "status": status, "peak_mib": 100.0 * micro_batch, "search_mode": mode}

    record = {"known": {}, "device_total_mib": None,
              "probes": [outcome(micro_batch, status, "in_process") for micro_batch, status in in_process]}
    asked: list[int] = []

    def ordinary_run(run_id: str) -> Mapping[str, Any]:
        micro_batch = int(run_id.rsplit("-b", 1)[1])
        asked.append(micro_batch)
        return outcome(micro_batch, FIT if micro_batch <= truth else OOM, "separate_process")

    lookup = with_in_process(study, lambda wanted: record if wanted == point else {}, ordinary_run)
    return replay(study, point, lookup, lambda: pytest.fail("no model size needed")), asked


def test_the_replay_takes_trusted_in_process_outcomes_and_ordinary_runs_for_the_rest(config: dict[str, Any]) -> None:
    # in process: 1 2 4 fit, 8 OOM, 6 OOM (each OOM confirmed); the truth: 6 fits, 7 does not
    found, asked = _replay_over(config, [(1, FIT), (2, FIT), (4, FIT), (8, OOM), (6, OOM)], truth=6)
    assert found.boundary.max_fit == 6 and found.boundary.first_oom == 7
    # the confirmations (8 does run out, 6 fits), then the search goes on from 6 with ordinary runs
    assert asked == [8, 6, 7]
    assert [probe["search_mode"] for probe in found.probes] == ["in_process"] * 3 + ["separate_process"] * 3


def test_the_boundary_fit_of_a_process_is_witnessed_by_an_ordinary_run_down_to_the_truth(
        config: dict[str, Any]) -> None:
    """CI on CPU: the process fit at its largest micro-batch, where an ordinary run (the measurement) ran out of
    memory, and the search named a boundary no fresh process held. The replay asks an ordinary run for the
    boundary's fit whatever its peak, and goes on below where it runs out, again where the process's next fit
    becomes the boundary."""
    process = [(1, FIT), (2, FIT), (4, FIT), (8, FIT), (16, OOM), (12, FIT), (14, OOM), (13, OOM)]
    found, asked = _replay_over(config, process, truth=12)
    assert (found.boundary.max_fit, found.boundary.first_oom) == (12, 13)
    assert asked == [16, 14, 13, 12]  # the three OOMs, then the fit at the boundary; the fits below stand
    assert {probe["micro_batch"] for probe in found.probes if probe["search_mode"] == "in_process"} == {1, 2, 4, 8}

    # the process was wrong by four: 12 runs out, 10 and 9 too, so its fit at 8 becomes the boundary and is
    # witnessed in turn
    found, asked = _replay_over(config, process, truth=8)
    assert (found.boundary.max_fit, found.boundary.first_oom) == (8, 9)
    assert asked == [16, 14, 13, 12, 10, 9, 8]
    assert {probe["micro_batch"] for probe in found.probes if probe["search_mode"] == "in_process"} == {1, 2, 4}
    assert all(probe["status"] == (FIT if probe["micro_batch"] <= 8 else OOM) for probe in found.probes)


@pytest.mark.parametrize(("start", "gallop", "known"), [(6, True, {"1": FIT}), (1, False, {"8": OOM}),
                                                     (3, True, {"3": FIT, "16": OOM})])
def test_the_job_asks_the_replays_questions_and_answers_known_ones_from_their_records(
        start: int, gallop: bool, known: dict[str, str]) -> None:
    """The replay starts from no outcome and asks for the screen probe like any other (an ordinary run's record):
    the job asks the same questions in the same order, and runs none it has a record for (before, a known
    screen outcome given as a starting point sent the gallop below 1, and the replay ran other probes)."""
    limit = AllocatorLimit(capacity=4 * 1024)
    record = probe_loop(search_spec(start=start, gallop=gallop, known=known), limit, DeviceMemory(cuda=False))
    outcomes: dict[int, str] = {}
    asked = []
    while (micro_batch := next_probe(outcomes, start, 16, gallop)) is not None:
        asked.append(micro_batch)
        outcomes[micro_batch] = known.get(str(micro_batch), FIT if micro_batch <= 4 else OOM)
    assert limit.calls == [micro_batch for micro_batch in asked if str(micro_batch) not in known]
    assert record["stopped"] is None and record["known"] == known


def test_an_in_process_probe_rate_is_the_ordinary_runs_rule() -> None:
    from zerosweep.report.statistics import summarise_step_times
    from zerosweep.report.tune.tune_records import in_process_rate

    seconds = [3.0, 1.2, 1.0, 1.1, 0.9, 1.0, 1.05, 0.95, 1.0, 1.02, 0.98, 1.0]
    rate = in_process_rate({"step_seconds": seconds}, 8, 1, fit=True)
    ordinary = summarise_step_times(range(1, 13), seconds, [8] * 12, [False] * 12, 1)
    assert rate["samples_per_second"] == ordinary.samples_per_second
    assert rate["samples_per_second_low"] == ordinary.samples_per_second_ci_low
    assert rate["samples_per_second"] == pytest.approx(8 / 1.0)  # the slow first steps are warm-up, the median 1.0 s
    assert in_process_rate({"step_seconds": []}, 8, 1, fit=False)["samples_per_second"] is None


def test_the_cost_table_counts_a_measurement_the_search_did_not_pay_for() -> None:
    from zerosweep.report.tune.recommend import cost_table

    def probe(run_id: str, mode: str, seconds: float | None) -> dict[str, Any]:
        return {"run_id": run_id, "search_mode": mode, "device_seconds": seconds, "micro_batch": 4}

    separate = {"label": "A", "point_id": "a", "search_mode": "separate_process", "device_seconds": 30.0,
                "probes_in_process": 0, "probes_separate_process": 1, "probes": [probe("a-b4", "separate_process", 30)]}
    in_process = {"label": "B", "point_id": "b", "search_mode": "in_process", "device_seconds": 12.0,
                  "probes_in_process": 1, "probes_separate_process": 0, "probes": [probe("b-b4", "in_process", None)]}
    measured = {"a": probe("a-b4", "separate_process", 30.0), "b": probe("b-b4", "separate_process", 25.0)}
    table = cost_table([separate, in_process], None, [], measured).set_index("Configuration")
    assert table.loc["A", "Measurement device-seconds"] == 0  # its boundary probe is the measurement
    assert table.loc["B", "Measurement device-seconds"] == 25  # the in-process boundary re-run as an ordinary run
    assert table.loc["total", "Measurement device-seconds"] == 25 and table.loc["total", "Device-seconds"] == 42
    unknown = {"a": measured["a"], "b": probe("b-b4", "separate_process", None)}
    assert pd.isna(cost_table([separate, in_process], None, [], unknown).set_index("Configuration")
                   .loc["total", "Measurement device-seconds"])


@pytest.mark.parametrize("upper", [1, 2, 3, 5, 8, 9, 33, 64, 100, 128])
def test_most_probes_bounds_every_search(upper: int) -> None:
    from zerosweep.plan.tune.studies import most_probes

    def probes(boundary: int, start: int, gallop: bool) -> int:
        outcomes: dict[int, str] = {}
        while (micro_batch := next_probe(outcomes, start, upper, gallop)) is not None:
            outcomes[micro_batch] = FIT if micro_batch <= boundary else OOM
        return len(outcomes)

    worst = max(probes(boundary, start, gallop) for boundary in range(upper + 1) for start in range(1, upper + 1)
                for gallop in (False, True))
    assert worst <= most_probes(upper) <= worst + 3  # a bound, not a gross one


@pytest.mark.parametrize("ordinary_first", [True, False])
def test_a_record_command_takes_the_ordinary_run_where_the_process_also_holds_the_run(ordinary_first: bool) -> None:
    """The search record of a replay that witnessed the process's boundary fit with an ordinary run gets both
    files; the ordinary run's outcome is the one the replay took, whatever the files' order."""
    from zerosweep.report.tune.tune_records import probes_of

    def probe(micro_batch: int, status: str, mode: str) -> dict[str, Any]:
        return {"run_id": f"p-b{micro_batch}", "micro_batch": micro_batch, "status": status, "search_mode": mode}

    record = {"known": {}, "device_total_mib": None,
              "probes": [probe(1, FIT, "in_process"), probe(2, FIT, "in_process"), probe(3, OOM, "in_process")]}
    witnesses = [probe(2, OOM, "separate_process"), probe(3, OOM, "separate_process")]
    records = [*witnesses, record] if ordinary_first else [record, *witnesses]
    found = probes_of(records, ["p-b1", "p-b2", "p-b3"])
    assert [(one["status"], one["search_mode"]) for one in found] == [
        (FIT, "in_process"), (OOM, "separate_process"), (OOM, "separate_process")]
    with pytest.raises(ValueError, match="p-b4"):
        probes_of(records, ["p-b4"])
