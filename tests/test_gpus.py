"""Which GPUs a run uses and owns: node GPUs, the local GPU lease, the rank -> GPU map, and the parser's view of
the real 2 x H200 records in tests/fixtures/h200x2-records."""

from __future__ import annotations

import json
import multiprocessing
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from conftest import REPO, run_snakemake
from zerosweep.plan.matrix import MatrixPoint
from zerosweep.report.run_summary.gpus import run_gpus
from zerosweep.run.gpus import GpuLease, TooFewGpus, node_gpus, rank_gpu_map, resolve

H200X2 = REPO / "tests" / "fixtures" / "h200x2-records"
INVENTORY = [
    {"index": 0, "uuid": "GPU-aaaa-0", "name": "H200"},
    {"index": 1, "uuid": "GPU-bbbb-1", "name": "H200"},
    {"index": 2, "uuid": "GPU-cccc-2", "name": "H200"},
]


def test_node_gpus_are_the_first_visible_ones_in_order() -> None:
    assert [gpu["index"] for gpu in node_gpus("2,0", 2, INVENTORY)] == [2, 0]
    assert [gpu["uuid"] for gpu in node_gpus("GPU-bbbb-1", 1, INVENTORY)] == ["GPU-bbbb-1"]
    assert [gpu["index"] for gpu in node_gpus(None, 2, INVENTORY)] == [0, 1]  # unset: the host's, in order
    assert [gpu["index"] for gpu in resolve(["GPU-cccc"], INVENTORY)] == [2]  # a UUID prefix, as CUDA allows


def test_node_gpus_refuse_what_the_node_cannot_give() -> None:
    with pytest.raises(TooFewGpus, match=r"2 rank\(s\) on this node need 2 GPU\(s\), 1 visible \(1\)"):
        node_gpus("1", 2, INVENTORY)
    with pytest.raises(ValueError, match=r"entry '7' matches no GPU of this host"):
        node_gpus("7", 1, INVENTORY)


def _hold(lock_dir: str, candidates: list[str], queue: Any, release: Any) -> None:
    lease = GpuLease(Path(lock_dir))
    queue.put(lease.acquire(1, candidates, run_id="other"))
    release.wait(60)
    lease.release()


def test_lease_gives_concurrent_runs_disjoint_gpus_and_waits_for_a_free_one(tmp_path: Path) -> None:
    context = multiprocessing.get_context("spawn")
    queue, release = context.Queue(), context.Event()
    other = context.Process(target=_hold, args=(str(tmp_path), ["0", "1"], queue, release))
    other.start()
    try:
        held_by_other = queue.get(timeout=60)
        mine = GpuLease(tmp_path)
        assert mine.acquire(1, ["0", "1"], run_id="mine") == [g for g in ["0", "1"] if g not in held_by_other]
        with pytest.raises(TimeoutError, match="2 GPU"):
            GpuLease(tmp_path).acquire(2, ["0", "1"], run_id="third", wait=False)
        mine.release()
    finally:
        release.set()
        other.join(30)
    with pytest.raises(TooFewGpus, match=r"needs 4 GPU\(s\); this host has 2 \(0,1 visible\)"):
        GpuLease(tmp_path).acquire(4, ["0", "1"], run_id="big")


def test_a_run_needing_more_gpus_than_the_host_has_fails_before_launching(tmp_path: Path) -> None:
    """This machine has no GPU: a cuda run must fail at once, naming the run, its need and the host's count."""
    spec = json.loads(json.dumps({
        "run_id": "z2-offnone-nopin-g2n1",
        "point": {**MatrixPoint(True, 2, "none", False, 2, 1).__dict__, "world_size": 2},
        **{key: value for key, value in json.loads((REPO / "tests" / "fixtures" / "real_h100_run" /
                                                     "run_spec.json").read_text()).items()
           if key in ("model", "data", "training", "monitor", "runtime")},
    }))
    spec["runtime"]["torch_extensions_dir"] = str(tmp_path / "ext")
    run_dir = tmp_path / "runs" / spec["run_id"]
    result = subprocess.run([sys.executable, "-m", "zerosweep", "launch", "--spec-json", json.dumps(spec),
                             "--run-dir", str(run_dir)], capture_output=True, text=True, timeout=120, check=False,
                            env={**os.environ, "PYTHONPATH": str(REPO / "scripts")})
    assert result.returncode == 1, result.stdout + result.stderr
    status = json.loads((run_dir / "status.json").read_text())
    assert status["status"] == "failed" and status["outcome"] == "config"
    assert re.fullmatch(r"run z2-offnone-nopin-g2n1: needs 2 GPU\(s\); this host has 0 \(none visible\)",
                        status["error"]), status["error"]
    assert "train.log" not in os.listdir(run_dir)  # nothing was started
    assert (tmp_path / "failed" / spec["run_id"]).is_dir()


def test_gpu_resource_books_each_runs_gpus_capped_at_the_hosts() -> None:
    result = run_snakemake("results/tables/zero_stages_2gpu.md", "results/tables/zero_stages.md", "-n",
                           "--forceall", "--resources", "gpu=2")
    assert result.returncode == 0, result.stderr
    booked = re.findall(r"run=(\S+)\n.*\n\s+resources: .*?gpu=(\d+)", result.stdout + result.stderr)
    assert booked and all(int(gpus) == int(re.search(r"-g(\d+)n", run).group(1)) for run, gpus in booked), booked
    result = run_snakemake("results/tables/zero_stages_2gpu.md", "-n", "--forceall", "--resources", "gpu=1")
    booked = re.findall(r"resources: .*?gpu=(\d+)", result.stdout + result.stderr)
    assert booked and set(booked) == {"1"}, booked  # capped: never more than the scheduler can give


def test_rank_gpu_map_of_the_real_emulated_two_node_run() -> None:
    """On 2 emulated nodes the rendezvous put rank 0 on node 1 (GPU 1): only the UUID says so."""
    run = H200X2 / "runs" / "z2-offnone-nopin-g1n2"
    ranks = [json.loads(path.read_text()) for path in sorted((run / "monitor").glob("torch_memory_rank*.json"))]
    nodes = json.loads((run / "env.json").read_text())["nodes"]
    mapped = {entry["rank"]: (entry["node_tag"], entry["gpu_index"]) for entry in rank_gpu_map(ranks, nodes)}
    assert mapped == {0: ("vm-node1", 1), 1: ("vm-node0", 0)}
    gpus = run_gpus(run)
    assert gpus is not None and gpus.emulated_nodes
    assert gpus.by_tag == {"vm-node0": frozenset({0}), "vm-node1": frozenset({1})}


def test_one_gpu_run_on_a_two_gpu_host_owns_only_gpu_0() -> None:
    gpus = run_gpus(H200X2 / "runs" / "z2-offnone-nopin-g1n1")
    assert gpus is not None and not gpus.emulated_nodes
    assert gpus.keeps("vm", 0) and not gpus.keeps("vm", 1)


# --- the parser keeps the run's own GPUs only -----------------------------------------------------------

HANDMADE = REPO / "tests" / "fixtures" / "handmade_gpus"


def _smi_samples(path: Path) -> dict[int, list[int]]:
    """Independent reading of an nvidia-smi CSV (csv module, not the parser): index -> memory.used samples."""
    import csv

    by_index: dict[int, list[int]] = {}
    with path.open(newline="") as handle:
        for row in csv.DictReader(handle, skipinitialspace=True):
            by_index.setdefault(int(row["index"]), []).append(int(row["memory.used [MiB]"]))
    return by_index


def test_one_gpu_run_counts_gpu_0_only_and_its_average_is_gpu_0s() -> None:
    from zerosweep.report.run_summary.memory import summarise_run

    run = H200X2 / "runs" / "z2-offnone-nopin-g1n1"
    samples = _smi_samples(run / "monitor" / "gpu_memory_log_vm.csv")
    assert set(samples) == {0, 1}  # the log holds both GPUs of the host: the filter has something to drop
    record = summarise_run(run)
    gpu = record["gpu"]
    assert gpu is not None and gpu["gpus_counted"] == 1 and [g["index"] for g in gpu["gpus"]] == [0]
    assert gpu["average_mib"] == pytest.approx(sum(samples[0]) / len(samples[0]), rel=1e-12)
    assert gpu["average_mib"] != pytest.approx(sum(samples[1]) / len(samples[1]))  # GPU 1 would differ
    assert gpu["peak_mib"] == gpu["peak_min_mib"] == max(samples[0])
    assert record["nvml"] is not None and [g["index"] for g in record["nvml"]["gpus"]] == [0]
    assert not record["emulated_nodes"]
    assert any("samples of GPU 1 left out" in warning for warning in record["warnings"])


def test_emulated_two_node_run_counts_two_gpus_one_per_node_and_says_so() -> None:
    from zerosweep.report.run_summary.memory import summarise_run
    from zerosweep.report.study.tables import build_table, markdown

    run = H200X2 / "runs" / "z2-offnone-nopin-g1n2"
    record = summarise_run(run)
    gpu, nvml = record["gpu"], record["nvml"]
    assert gpu is not None and nvml is not None
    assert gpu["gpus_counted"] == nvml["gpus_counted"] == 2
    assert sorted((g["host"], g["index"]) for g in gpu["gpus"]) == [("vm-node0", 0), ("vm-node1", 1)]
    assert [node["gpus"] for node in gpu["nodes"]] == [1, 1]
    assert record["emulated_nodes"] and not any("nvidia-smi logs show" in w for w in record["warnings"])
    one = summarise_run(H200X2 / "runs" / "z2-offnone-nopin-g1n1")
    study = {"name": "emulated_nodes", "table": "comparison", "runs": [one["run_id"], record["run_id"]]}
    table = build_table(study, [one, record])
    configs = dict(zip(table.frame["run_id"], table.frame["config"]))
    assert configs["z2-offnone-nopin-g1n2"].endswith("2 GPUs on 2 nodes (emulated on one host)")
    assert "emulated" not in configs["z2-offnone-nopin-g1n1"]
    text = markdown(table)
    assert "Nodes emulated on one host" in text and "z2-offnone-nopin-g1n2" in text
    assert list(table.frame["gpus_counted"]) == [1, 2]


def test_hand_made_4_gpus_on_a_shared_host_ignore_the_other_jobs_gpus() -> None:
    from zerosweep.report.run_summary.memory import summarise_run

    run = HANDMADE / "g4_shared_host"
    samples = _smi_samples(run / "monitor" / "gpu_memory_log_host8.csv")
    own = [2, 3, 4, 5]
    record = summarise_run(run)
    gpu = record["gpu"]
    assert gpu is not None and gpu["gpus_counted"] == 4 and [g["index"] for g in gpu["gpus"]] == own
    assert max(max(values) for values in samples.values()) > gpu["peak_mib"]  # another job's memory, left out
    assert gpu["peak_mib"] == max(max(samples[i]) for i in own)
    assert gpu["peak_min_mib"] == min(max(samples[i]) for i in own) < gpu["peak_mib"]  # unbalanced: visible
    assert gpu["average_mib"] == pytest.approx(sum(sum(samples[i]) / len(samples[i]) for i in own) / 4)
    assert record["nvml"] is not None and record["nvml"]["peak_mib"] == pytest.approx(gpu["peak_mib"] + 0.5)
    assert not record["emulated_nodes"]


def test_hand_made_8_gpus_on_2_emulated_nodes_count_each_gpu_once() -> None:
    from zerosweep.report.run_summary.memory import summarise_run
    from zerosweep.report.study.tables import build_table

    run = HANDMADE / "g8_two_nodes"
    record = summarise_run(run)
    gpu = record["gpu"]
    assert gpu is not None and gpu["gpus_counted"] == 8 and record["nvml"]["gpus_counted"] == 8
    assert {(g["host"], g["index"]) for g in gpu["gpus"]} == {
        *(("host8-node0", i) for i in range(4)), *(("host8-node1", i) for i in range(4, 8))}
    node1 = _smi_samples(run / "monitor" / "gpu_memory_log_host8-node1.csv")
    node0 = _smi_samples(run / "monitor" / "gpu_memory_log_host8-node0.csv")
    assert gpu["peak_mib"] == max(node1[7]) and gpu["peak_min_mib"] == max(node0[0])
    assert record["emulated_nodes"]
    study = {"name": "scale", "table": "scaling", "runs": [record["run_id"]]}
    row = build_table(study, [record]).rows[0]
    assert row["emulated_nodes"] is True and "emulated on one host" in row["config"]
    assert row["gpu_peak_min_mib"] == gpu["peak_min_mib"]


def test_a_gpu_logged_by_two_files_of_one_host_counts_once(tmp_path: Path) -> None:
    """Emulated nodes whose map names the same GPU on both (or two unrestricted logs) must not double-count."""
    import shutil

    from zerosweep.report.run_summary.memory import summarise_run

    run = tmp_path / "run"
    shutil.copytree(HANDMADE / "g8_two_nodes", run)
    env = json.loads((run / "env.json").read_text())
    for entry in env["rank_gpus"]:
        if entry["node_tag"] == "host8-node1":
            entry["gpu_index"] -= 4  # node1's ranks now claim node0's GPUs 0-3
    (run / "env.json").write_text(json.dumps(env))
    record = summarise_run(run)
    assert record["gpu"] is not None and record["gpu"]["gpus_counted"] == 4
    assert any("counted once" in warning for warning in record["warnings"])
