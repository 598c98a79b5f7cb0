"""`snakemake --executor slurm` against a real SLURM 22.05 cluster on this machine (tests/slurm/cluster.py: slurmctld
plus four slurmd nodes n1..n4, 8 fake GPUs each, partition `debug`).

Every job goes through sbatch with the workflow profile Snakemake loads by itself (profiles/default) and the train
rule's resources; the ranks train bloom-tiny on CPU over gloo. Workflows (marked slurm and slow):
  1. four runs (1 node x 1 GPU, 1 node x 2 GPUs, 2 nodes x 2 GPUs, 4 nodes x 1 GPU), Snakemake SIGKILLed after one
     run finished while another ran, then the documented recovery (scripts/slurm_recover.sh) and a rerun: no job
     left behind, only the missing runs submitted again, the finished run's files byte-identical, and every run's
     records show where its ranks ran; tables and plots are built;
  2. a job cancelled by `scancel`, a job killed at its time limit and a 2-node job whose second node is set DOWN
     are all retried (the profile's `retries: 1`), with twice the time limit; the killed attempts' records are
     kept under results/failed/, and each run completes once;
  3. `snakemake --executor slurm ...` exactly as typed in a clone: workflow 1 on the cluster without slurmdbd
     (where a status check that cannot work is refused at once, before any submission), and one table on a
     second cluster with slurmdbd.
Needs root (daemons, namespaces); 6 min 42 s on a busy 2-core machine. What the workflow hands SLURM is checked
without a cluster in tests/test_slurm_offline.py.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent / "slurm"))

import cluster as test_cluster
from workflow import (
    Workdir,
    as_typed,
    client_env,
    finished_train_runs,
    make_clone,
    make_workdir,
    read_json,
    run_snakemake,
    seed_torch_extensions,
    squeue,
    start_snakemake,
    stop_snakemake,
    submissions,
    train_submissions,
    tree_hashes,
    wait_for,
    workflow_jobs,
)

TRAINING_STARTED = "[zerosweep] training started"  # zerosweep.run.train.TRAINING_STARTED_MARKER
NODES = ("n1", "n2", "n3", "n4")
ACTIVE_STATES = {"PENDING", "RUNNING", "CONFIGURING", "COMPLETING", "SUSPENDED"}


def _free_base_port(start: int, avoid: tuple[int, ...] = ()) -> int:
    """A base port whose whole block (ctld, dbd, mariadb, slurmds) is free: a cluster left over from an earlier
    session or started by hand (default 17817) keeps its ports."""
    for base in range(start, start + 2000, 50):
        ports = [base, base + 1, base + 2, *[base + 10 + i for i in range(1, len(NODES) + 1)]]
        if base not in avoid and all(test_cluster._port_free(port) for port in ports):
            return base
    raise RuntimeError(f"no free port block from {start}")


@pytest.fixture(scope="session")
def slurm(tmp_path_factory: pytest.TempPathFactory) -> Any:
    if os.geteuid() != 0:
        pytest.skip("the local SLURM cluster needs root (munge, slurmctld, slurmd in namespaces)")
    state = tmp_path_factory.mktemp("slurm")
    info = test_cluster.start(state, nodes=len(NODES), base_port=_free_base_port(18900))
    yield info
    test_cluster.stop(state)


@pytest.fixture(scope="session")
def extensions_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return seed_torch_extensions(tmp_path_factory.mktemp("torch_extensions"))


@pytest.fixture(scope="session")
def env(slurm: Any) -> dict[str, str]:
    return client_env(slurm.slurm_conf)


def _latest_states(env: dict[str, str], jobs: dict[str, list[str]]) -> dict[str, str]:
    """Run id -> SLURM state of its latest job."""
    latest = {run: ids[-1] for run, ids in jobs.items()}
    states = squeue(env, latest.values())
    return {run: states.get(job, {}).get("state", "UNKNOWN") for run, job in latest.items()}


def _read_csv(path: Path) -> list[dict[str, str]]:
    import csv

    with open(path, encoding="utf-8", newline="") as handle:
        return list(csv.DictReader(handle))


def _assert_records(workdir: Workdir, run_id: str, nodes: int, gpus_per_node: int, slurm_job: str) -> None:
    """The run's own records: where its ranks ran, as which node rank, in which world, in which SLURM job."""
    run_dir = workdir.run_dir(run_id)
    status = read_json(run_dir / "status.json")
    metrics = read_json(run_dir / "metrics.json")
    env_record = read_json(run_dir / "env.json")
    world = nodes * gpus_per_node
    assert status["status"] == "ok" and metrics["status"] == "ok", (run_id, status["error"])
    assert status["launch_mode"] == ("srun" if nodes > 1 else "single-node"), run_id
    assert status["node_exit_codes"] == [0], run_id  # single-node: the node itself; else one srun for all
    assert (metrics["nodes"], metrics["gpus_per_node"], metrics["world_size"]) == (nodes, gpus_per_node, world)
    assert metrics["node_ranks"] == list(range(nodes)), run_id
    assert metrics["optimizer_steps"] == 3 and metrics["train_runtime"] > 0, run_id
    # node launchers: one per node, each on its own host, node rank = SLURM node id
    node_records = sorted(status["nodes"], key=lambda node: node["node_rank"])
    hosts = [node["host"] for node in node_records]
    assert [node["node_rank"] for node in node_records] == list(range(nodes)), run_id
    assert len(set(hosts)) == nodes and set(hosts) <= set(NODES), (run_id, hosts)
    assert all(node["status"] == "ok" and node["gpus_per_node"] == gpus_per_node for node in node_records)
    assert env_record["hosts"] == hosts and env_record["launch_mode"] == status["launch_mode"]
    for node in env_record["nodes"]:
        assert node["slurm"]["job_id"] == slurm_job, (run_id, node["slurm"])
        assert node["slurm"]["node_id"] == str(node["node_rank"] if nodes > 1 else 0), (run_id, node["slurm"])
        assert node["slurm"]["job_nodelist"], run_id
    # ranks: torch's view (rank, node rank, host) from every rank's memory record
    ranks = sorted(metrics["torch_memory"], key=lambda record: record["rank"])
    assert [record["rank"] for record in ranks] == list(range(world)), run_id
    assert all(record["world_size"] == world for record in ranks), run_id
    for record in ranks:
        # torchrun numbers ranks node by node (group rank = its node's place in the rendezvous) ...
        assert (record["group_rank"], record["local_rank"]) == divmod(record["rank"], gpus_per_node), record
        # ... and each rank ran on the host of the node launcher that started it
        assert record["host"] == hosts[record["node_rank"]], (run_id, record)
    per_node = [sum(record["node_rank"] == node for record in ranks) for node in range(nodes)]
    assert per_node == [gpus_per_node] * nodes, (run_id, per_node)
    # the fake GPUs SLURM gave each node (--gpus-per-node), as the node launcher saw them
    for node in node_records:
        visible = node["environment_variables"].get("CUDA_VISIBLE_DEVICES", "")
        assert len([device for device in visible.split(",") if device]) == gpus_per_node, (run_id, visible)
    # one log per node: train.log (node 0), train_<host>.log for the others
    assert sorted(status["logs"]) == sorted(
        ["train.log", *[f"train_{host}.log" for host in hosts[1:]], *(["srun.log"] if nodes > 1 else [])])


# --- 1 + 3: the matrix through sbatch; interrupted and resumed --------------------------------------------

# Four runs, (nodes, GPUs per node): 1 x 1, 1 x 2, 2 x 2 (the shipped multi-node shape: 2 GPUs per node) and
# 4 x 1; three studies share them (a run needed by several studies runs once).
E2E_STUDIES = {
    "slurm_ranks": {"title": "SLURM test: ranks on one node", "table": "scaling", "scaling_axis": "gpus_per_node",
                    "zero_stage": [2], "gpus_per_node": [1, 2]},
    "slurm_nodes": {"title": "SLURM test: nodes, 1 GPU each", "table": "scaling", "scaling_axis": "nodes",
                    "zero_stage": [2], "nodes": [1, 4]},
    "slurm_nodes_2gpu": {"title": "SLURM test: nodes, 2 GPUs each", "table": "scaling", "scaling_axis": "nodes",
                         "zero_stage": [2], "gpus_per_node": [2], "nodes": [1, 2]},
}
E2E_SHAPES = {"z2-offnone-nopin-g1n1": (1, 1), "z2-offnone-nopin-g2n1": (1, 2), "z2-offnone-nopin-g2n2": (2, 2),
              "z2-offnone-nopin-g1n4": (4, 1)}
E2E_TABLES = {"slurm_ranks": ["z2-offnone-nopin-g1n1", "z2-offnone-nopin-g2n1"],
              "slurm_nodes": ["z2-offnone-nopin-g1n1", "z2-offnone-nopin-g1n4"],
              "slurm_nodes_2gpu": ["z2-offnone-nopin-g2n1", "z2-offnone-nopin-g2n2"]}


@pytest.mark.slurm
@pytest.mark.slow
def test_matrix_through_sbatch_killed_and_recovered(tmp_path: Path, env: dict[str, str],
                                                     extensions_dir: Path) -> None:
    """In a clone, as a user types it (issue 16's cluster: no slurmdbd): a status check that cannot work is refused
    at once; the matrix is submitted, Snakemake SIGKILLed, recovered with scripts/slurm_recover.sh, and finished
    by `snakemake --executor slurm all`."""
    workdir = make_clone(tmp_path / "clone", E2E_STUDIES, extensions_dir)
    assert {study: workdir.study_runs(study) for study in E2E_STUDIES} == E2E_TABLES

    started = time.monotonic()
    code, refused = run_snakemake(workdir, env, tmp_path / "refused.log", limit_s=120, command=as_typed(
        "--executor", "slurm", "--slurm-status-command", "sacct", "all"))
    assert code != 0 and time.monotonic() - started < 120, refused[-3000:]
    assert "cannot track jobs on this cluster: --slurm-status-command sacct" in refused, refused[-3000:]
    assert "AccountingStorageType=accounting_storage/none" in refused
    assert not submissions(refused) and not workflow_jobs(env, workdir)

    # First invocation: SIGKILL it (a lost login node) once a run has finished and another one is training. One
    # job at a time makes that moment certain (together, the four runs share the 2 cores and end within seconds).
    first_log = tmp_path / "first.log"
    process = start_snakemake(workdir, env, first_log, command=as_typed(
        "--executor", "slurm", "--jobs", "1", "--slurm-init-seconds-before-status-checks", "1", "all"))
    try:
        def killable() -> tuple[set[str], list[str]] | None:
            text = first_log.read_text(encoding="utf-8", errors="replace")
            finished = finished_train_runs(text)
            if not finished:
                return None
            if finished == set(E2E_SHAPES):
                raise AssertionError("every run finished before Snakemake could be killed")
            states = _latest_states(env, train_submissions(text))
            running = [run for run, state in states.items() if state == "RUNNING" and run not in finished
                       and (workdir.run_dir(run) / "train.log").exists()]
            return (finished, running) if running else None

        finished, running = wait_for(killable, 600, "a finished run and a running one", process=process)
    finally:
        process.kill()  # SIGKILL: Snakemake cancels nothing
        process.wait()
    first = first_log.read_text(encoding="utf-8", errors="replace")
    first_jobs = train_submissions(first)
    finished = finished_train_runs(first)  # also those seen finishing between the check and the signal
    orphans = {job: state for job, state in workflow_jobs(env, workdir).items() if state in ACTIVE_STATES}
    assert orphans, "the killed Snakemake's running job should still be in the queue"

    # The documented recovery: cancel this workflow's jobs, wait for them to leave the queue, unlock.
    recover = subprocess.run(["bash", "scripts/slurm_recover.sh"], cwd=workdir.path, env=env, capture_output=True,
                             text=True, timeout=400, check=False)
    assert recover.returncode == 0, recover.stdout + recover.stderr
    assert all(job in recover.stdout for job in orphans), recover.stdout
    states = _latest_states(env, first_jobs)
    assert not set(workflow_jobs(env, workdir).values()) & ACTIVE_STATES, "a job was left behind"
    cancelled = {run for run, state in states.items() if state == "CANCELLED"}
    assert cancelled and cancelled >= set(running) - finished, (states, running, finished)
    for run in cancelled:
        kept = sorted((workdir.results / "failed" / run).glob("*/status.json"))
        assert kept and read_json(kept[-1])["status"] == "interrupted", (run, kept)
    # The ops were built before any job (seed_torch_extensions): the cancelled job held no FileBaton lock.
    assert list(extensions_dir.glob("*/*/build.ninja")) and not list(extensions_dir.glob("*/*/lock"))
    before = {run: tree_hashes(workdir.run_dir(run)) for run in finished}
    assert all("metrics.json" in files and "status.json" in files for files in before.values()), before

    # Second invocation: only what is missing runs; finished runs are not touched.
    code, second = run_snakemake(workdir, env, tmp_path / "second.log", limit_s=900,
                                 command=as_typed("--executor", "slurm", "all"))
    assert code == 0, second[-5000:]
    assert "Using workflow specific profile profiles/default" in second
    assert "Provided remote nodes: 50" in second  # the profile's job limit, set for --executor slurm only
    second_jobs = train_submissions(second)
    completed = {run for run, state in states.items() if state == "COMPLETED"}  # finished but maybe not seen
    assert not set(second_jobs) & finished, (second_jobs, finished)
    assert set(second_jobs) >= set(E2E_SHAPES) - completed, (second_jobs, states)
    assert all(len(ids) == 1 for ids in second_jobs.values()), second_jobs  # no retries needed
    for run, files in before.items():
        after = tree_hashes(workdir.run_dir(run))
        assert {name: after.get(name) for name in files} == files, run
        assert set(after) - set(files) <= {"summary.json"}, (run, set(after) - set(files))

    # Every run's records: ranks spread over the nodes SLURM gave the job.
    for run, (nodes, gpus) in E2E_SHAPES.items():
        job = (second_jobs.get(run) or first_jobs[run])[-1]
        _assert_records(workdir, run, nodes, gpus, job)
    four = read_json(workdir.run_dir("z2-offnone-nopin-g1n4") / "env.json")
    assert sorted(four["hosts"]) == list(NODES)
    # what SLURM allocated to each job: as many nodes as the run has
    last_job = {run: (second_jobs.get(run) or first_jobs[run])[-1] for run in E2E_SHAPES}
    allocated = squeue(env, last_job.values())
    assert allocated[last_job["z2-offnone-nopin-g1n4"]]["nodes"] == "n[1-4]", allocated
    assert allocated[last_job["z2-offnone-nopin-g2n2"]]["nodes"] in ("n[1-2]", "n[2-3]", "n[3-4]"), allocated
    assert all(allocated[last_job[run]]["nodes"] in NODES for run in ("z2-offnone-nopin-g1n1", "z2-offnone-nopin-g2n1"))

    # Tables, plots and the summary, with one ok row per run.
    results = workdir.results
    for study, runs in E2E_TABLES.items():
        rows = _read_csv(results / "tables" / f"{study}.csv")
        assert [row["run_id"] for row in rows] == runs, rows
        assert all(row["status"] == "ok" for row in rows), rows
        assert [int(row["world_size"]) for row in rows] == [E2E_SHAPES[run][0] * E2E_SHAPES[run][1] for run in runs]
        markdown = (results / "tables" / f"{study}.md").read_text(encoding="utf-8")
        assert "Runs, in table order: " + ", ".join(f"`{run}`" for run in runs) + "." in markdown, markdown
        assert "| oom |" not in markdown and "| crash |" not in markdown  # a row that did not finish shows its status
        assert sorted(path.name for path in (results / "plots" / study).glob("*.png")), study
    assert [row["nodes"] for row in _read_csv(results / "tables" / "slurm_nodes.csv")] == ["1", "4"]
    assert [row["nodes"] for row in _read_csv(results / "tables" / "slurm_nodes_2gpu.csv")] == ["1", "2"]
    assert [row["gpus_per_node"] for row in _read_csv(results / "tables" / "slurm_ranks.csv")] == ["1", "2"]
    for run in E2E_SHAPES:
        assert (results / "plots" / "runs" / f"{run}.png").stat().st_size > 0
    assert (results / "summary.md").stat().st_size > 0
    # The SLURM logs of successful jobs are removed (slurm-keep-successful-logs: false), failed ones kept.
    logs = {item.slurm_jobid: Path(item.log) for item in submissions(first + second)}
    assert not any(logs[ids[-1]].exists() for ids in second_jobs.values())
    assert all(logs[first_jobs[run][-1]].exists() for run in cancelled)


# --- 2: scancel and the time limit -------------------------------------------------------------------------


def _squad_file(path: Path, records: int) -> None:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))
    from zerosweep.run.data import synthetic_squad

    path.write_text(json.dumps(synthetic_squad(0, "train", records)), encoding="utf-8")


def _hostnames(env: dict[str, str], nodelist: str) -> list[str]:
    result = subprocess.run(["scontrol", "show", "hostnames", nodelist], env=env, capture_output=True, text=True,
                            timeout=30, check=True)
    return result.stdout.split()


@pytest.mark.slurm
@pytest.mark.slow
def test_cancelled_timed_out_and_node_failed_jobs_are_retried(tmp_path: Path, env: dict[str, str],
                                                               extensions_dir: Path) -> None:
    # The timed-out run reads its data from a FIFO that nobody writes: its first attempt hangs (as a stuck
    # collective would) until SLURM kills it at the time limit; then the FIFO is replaced by a real file, so the
    # retry, with twice the time, completes. The 2-node run loses its second node (set DOWN) once node
    # launchers run on both nodes (their ranks wait on a FIFO of their own, so the moment is certain); its
    # retry reads a real file.
    fifo, node_fifo = tmp_path / "hang.json", tmp_path / "hang_node.json"
    os.mkfifo(fifo)
    os.mkfifo(node_fifo)
    studies = {
        "slurm_cancel": {"title": "SLURM test: scancel", "table": "comparison", "zero_stage": [2],
                         "training": {"max_steps": 60}},
        "slurm_timeout": {"title": "SLURM test: time limit", "table": "comparison", "zero_stage": [2],
                          "data": {"source": "file", "path": str(fifo)}},
        "slurm_node_down": {"title": "SLURM test: node down", "table": "comparison", "zero_stage": [2],
                            "nodes": [2], "data": {"source": "file", "path": str(node_fifo)}},
    }
    workdir = make_workdir(tmp_path / "wd", studies, extensions_dir, {"slurm": {"time_min": 1}})
    (cancel_run,) = workdir.study_runs("slurm_cancel")
    (timeout_run,) = workdir.study_runs("slurm_timeout")
    (down_run,) = workdir.study_runs("slurm_node_down")
    log = tmp_path / "retries.log"
    process = start_snakemake(workdir, env, log)
    deadline = time.monotonic() + 600
    cancelled: str | None = None
    swapped: set[str] = set()
    downed: str | None = None  # the node set DOWN

    def swap(path: Path) -> None:
        ready = tmp_path / f"{path.stem}.ready.json"
        _squad_file(ready, 32)  # enough for 2 ranks x 8 train + 4 eval
        os.replace(ready, path)  # the retry reads a real file
        swapped.add(path.name)

    try:
        while process.poll() is None and time.monotonic() < deadline:
            jobs = train_submissions(log.read_text(encoding="utf-8", errors="replace"))
            train_log = workdir.run_dir(cancel_run) / "train.log"
            if (cancelled is None and cancel_run in jobs and train_log.exists()
                    and TRAINING_STARTED in train_log.read_text(encoding="utf-8", errors="replace")):
                cancelled = jobs[cancel_run][0]
                subprocess.run(["scancel", cancelled], env=env, check=True, timeout=30)
            first_timeout_job = jobs.get(timeout_run, [None])[0]
            if (fifo.name not in swapped and first_timeout_job is not None
                    and squeue(env, [first_timeout_job]).get(first_timeout_job, {}).get("state") == "TIMEOUT"):
                swap(fifo)
            first_down_job = jobs.get(down_run, [None])[0]
            if first_down_job is not None:
                state = squeue(env, [first_down_job]).get(first_down_job, {})
                if (downed is None and state.get("state") == "RUNNING"
                        and list(workdir.run_dir(down_run).glob("train_*.log"))):
                    host = _hostnames(env, state["nodes"])[-1]
                    # only the 2-node run may lose it (the other runs are 1-node; SLURM fills n1 first)
                    others = squeue(env, [job for run, ids in jobs.items() if run != down_run for job in ids])
                    if not any(info["state"] in ACTIVE_STATES and host in _hostnames(env, info["nodes"])
                               for info in others.values() if info["nodes"]):
                        downed = host
                        subprocess.run(["scontrol", "update", f"nodename={host}", "state=down",
                                        "reason=zerosweep-test"], env=env, check=True, timeout=30)
                if node_fifo.name not in swapped and state.get("state") == "NODE_FAIL":
                    swap(node_fifo)
            try:
                process.wait(timeout=0.5)
            except subprocess.TimeoutExpired:
                pass
    finally:
        stop_snakemake(process)
        if downed is not None:  # ReturnToService=2 brings it back when slurmd re-registers; make sure
            subprocess.run(["scontrol", "update", f"nodename={downed}", "state=resume"], env=env, check=False,
                           capture_output=True, timeout=30)
    text = log.read_text(encoding="utf-8", errors="replace")
    assert process.returncode == 0, text[-5000:]
    assert cancelled is not None and downed is not None and swapped == {fifo.name, node_fifo.name}, (
        cancelled, downed, swapped)
    jobs = train_submissions(text)
    assert all(len(jobs[run]) == 2 for run in (cancel_run, timeout_run, down_run)), jobs
    assert jobs[cancel_run][0] == cancelled
    states = squeue(env, [job for run in (cancel_run, timeout_run, down_run) for job in jobs[run]])
    for run, failure in ((cancel_run, "CANCELLED"), (timeout_run, "TIMEOUT"), (down_run, "NODE_FAIL")):
        first, retry = (states[job] for job in jobs[run])
        assert (first["state"], retry["state"]) == (failure, "COMPLETED"), (run, first, retry)
        # the retry got twice the time limit (runtime = slurm.time_min x attempt)
        assert (first["time_limit"], retry["time_limit"]) == ("1:00", "2:00"), (run, first, retry)
        # the launcher of the killed attempt got SIGTERM and kept its records
        kept = sorted((workdir.results / "failed" / run).glob("*/status.json"))
        assert len(kept) == 1 and read_json(kept[0])["status"] == "interrupted", (run, kept)
        assert read_json(workdir.run_dir(run) / "metrics.json")["status"] == "ok"
        assert read_json(workdir.run_dir(run) / "status.json")["status"] == "ok"
    for run, failure in ((cancel_run, "CANCELLED"), (timeout_run, "TIMEOUT")):
        assert f"SLURM-job '{jobs[run][0]}' failed, SLURM status is: '{failure}'" in text
    assert f"SLURM-job '{jobs[down_run][0]}' failed due to a node failure" in text
    assert downed in _hostnames(env, states[jobs[down_run][0]]["nodes"])
    timed_out_log = next(item.log for item in submissions(text) if item.slurm_jobid == jobs[timeout_run][0])
    assert "DUE TO TIME LIMIT" in Path(timed_out_log).read_text(encoding="utf-8", errors="replace")
    for study, run in (("slurm_cancel", cancel_run), ("slurm_timeout", timeout_run), ("slurm_node_down", down_run)):
        rows = _read_csv(workdir.results / "tables" / f"{study}.csv")
        assert [(row["run_id"], row["status"]) for row in rows] == [(run, "ok")]  # finished once: one row


# --- `snakemake --executor slurm <target>` exactly as typed, in a clone, with and without slurmdbd ----------

TYPED_STUDY = {"slurm_typed": {"title": "SLURM test: as typed", "table": "comparison", "zero_stage": [2],
                               "gpus_per_node": [2]}}
TYPED_TARGET = "results/tables/slurm_typed.md"


def _run_as_typed(tmp_path: Path, env: dict[str, str], extensions_dir: Path) -> tuple[Workdir, str, str]:
    """`snakemake --executor slurm <table>` in a clone: no profile, no --jobs, no status command named."""
    # slurm.exclusive as shipped (true): the test settings turn it off so that their jobs share nodes
    workdir = make_clone(tmp_path / "clone", TYPED_STUDY, extensions_dir, {"slurm": {"exclusive": True}})
    (run,) = workdir.study_runs("slurm_typed")
    code, text = run_snakemake(workdir, env, tmp_path / "typed.log", limit_s=600,
                               command=as_typed("--executor", "slurm", TYPED_TARGET))
    assert code == 0, text[-5000:]
    assert "Using workflow specific profile profiles/default" in text
    assert "Provided remote nodes: 50" in text  # the profile's job limit, only for --executor slurm
    (job,) = train_submissions(text)[run]
    rows = _read_csv(workdir.results / "tables" / "slurm_typed.csv")
    assert [(row["run_id"], row["status"]) for row in rows] == [(run, "ok")]
    return workdir, run, job


@pytest.mark.slurm
@pytest.mark.slow
def test_executor_slurm_as_typed_with_slurmdbd(tmp_path: Path, slurm: Any, extensions_dir: Path) -> None:
    """With slurmdbd, the same command: a second cluster, with accounting, beside the first; sacct has the job."""
    state = tmp_path / "acct"
    info = test_cluster.start(state, nodes=len(NODES), accounting=True,
                              base_port=_free_base_port(slurm.base_port + 100, (slurm.base_port,)))
    try:
        acct_env = client_env(info.slurm_conf)
        _, _, job = _run_as_typed(tmp_path, acct_env, extensions_dir)
        sacct = subprocess.run(["sacct", "-j", job, "-X", "-n", "-P", "-o",
                                "JobID,State,ReqTRES,AllocTRES,Account"],
                               env=acct_env, capture_output=True, text=True, timeout=30, check=True).stdout
        job_id, job_state, requested, allocated, account = sacct.strip().splitlines()[0].split("|")
        assert (job_id, job_state, account) == (job, "COMPLETED", "zerosweep"), sacct
        assert "gres/gpu=2" in requested, requested  # the run's two GPUs ...
        # ... on a node of its own (--exclusive, the shipped default): SLURM allocates all of the node's GPUs
        assert f"gres/gpu={info.gpus_per_node}" in allocated and "node=1" in allocated, allocated
    finally:
        test_cluster.stop(state)
