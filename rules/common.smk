# Helpers and input functions shared by all rules. All logic lives in the `zerosweep` package
# (scripts/zerosweep); this file only maps the validated config onto wildcards and resources.
import sys
from pathlib import Path

from snakemake.exceptions import WorkflowError
from snakemake.utils import validate

sys.path.insert(0, str(Path(workflow.basedir) / "scripts"))

from zerosweep.plan.matrix import (  # noqa: E402
    POINT_ID_PATTERN,
    RUN_ID_PATTERN,
    STUDY_PATTERN,
    ConfigError,
    build_plan,
    matrix_table,
)
from zerosweep.plan.tune import boundary, build_tune_studies, find_run, next_probe  # noqa: E402

validate(config, "../schemas/config.schema.yaml")
try:
    PLAN = build_plan(config)
    TUNE = build_tune_studies(config, PLAN)
except ConfigError as error:
    raise WorkflowError(f"workflow config: {error}") from None

RUNS_DIR = "results/runs"
SCRIPTS_DIR = str(Path(workflow.basedir) / "scripts")
# Every job runs the package from this checkout (also on SLURM nodes, which share the filesystem).
# (braces doubled twice: once for this f-string, once for Snakemake's shell formatting)
ZEROSWEEP = f"PYTHONPATH={SCRIPTS_DIR}${{{{PYTHONPATH:+:$PYTHONPATH}}}} python -m zerosweep"


wildcard_constraints:
    run=RUN_ID_PATTERN,
    study=STUDY_PATTERN,
    point=POINT_ID_PATTERN,


def print_matrix(log_path):
    text = matrix_table(PLAN)
    print(text)
    with open(log_path, "w") as handle:
        handle.write(f"{text}\n")


def run_spec(wildcards):
    try:
        return find_run(PLAN, TUNE, wildcards.run)
    except KeyError as error:
        raise WorkflowError(str(error)) from None



def run_spec_json(wildcards):
    return run_spec(wildcards).to_json()


def study_json(wildcards):
    import json

    study = PLAN.studies[wildcards.study]
    return json.dumps(
        {
            "name": study.name,
            "title": study.title,
            "table": study.table,
            "scaling_axis": study.scaling_axis,
            "runs": {run_id: PLAN.runs[run_id].to_dict() for run_id in study.run_ids},
        },
        sort_keys=True,
    )


def study_summaries(wildcards):
    return expand(f"{RUNS_DIR}/{{run}}/summary.json", run=PLAN.studies[wildcards.study].run_ids)


def study_timelines(wildcards):
    return expand("results/plots/runs/{run}.png", run=PLAN.studies[wildcards.study].run_ids)


def table_studies():
    return [name for name in PLAN.build if name not in TUNE]


def built_tables():
    return expand("results/tables/{study}.{ext}", study=table_studies(), ext=("csv", "md"))


def all_outputs():
    return [
        *built_tables(),
        *expand("results/plots/{study}", study=table_studies()),
        *expand("results/plots/runs/{run}.png", run=PLAN.runs_of(table_studies())),
        "results/summary.md",
        *expand("results/tune/{study}/recommendation.md", study=[name for name in PLAN.build if name in TUNE]),
    ]


# --- tune studies: the DAG grows one probe at a time (checkpoint tune_probe) -------------------------


def tune_study_json(wildcards):
    import json

    return json.dumps(TUNE[wildcards.study].to_dict(), sort_keys=True)


def _read_probe(path):
    import json

    with open(path) as handle:
        return json.load(handle)


def _tune_start(study, point):
    """(first micro-batch, gallop): the study's start, or with tune.start_from_model the boundary the memory
    model predicts from the study's first point once that point's search is done (the first point waits)."""
    tune_study = TUNE[study]
    search = tune_study.searches[point]
    first = next(iter(tune_study.searches))
    if not search.tune["start_from_model"] or point == first:
        return search.start, False
    from zerosweep.report.memory_fit import guided_start

    outcomes, files, start, gallop = _tune_probes(study, first)
    found = boundary(outcomes, start, search.upper, gallop)
    reference = {"point_id": first, "probes": [_read_probe(path) for path in files], "max_fit": found.max_fit,
                 "first_oom": found.first_oom}
    guess = guided_start(tune_study.to_dict(), reference, point)
    return (search.start, False) if guess is None else (min(guess, search.upper), True)


def _tune_probes(study, point):
    """Replay the search over the finished probes; asking for an unfinished one schedules it (checkpoint)."""
    search = TUNE[study].searches[point]
    start, gallop = _tune_start(study, point)
    outcomes, files = {}, []
    while (micro_batch := next_probe(outcomes, start, search.upper, gallop)) is not None:
        path = checkpoints.tune_probe.get(run=search.probe(micro_batch).run_id).output[0]
        outcomes[micro_batch] = _read_probe(path)["status"]
        files.append(path)
    return outcomes, files, start, gallop


def tune_search_probes(wildcards):
    return _tune_probes(wildcards.study, wildcards.point)[1]


def tune_search_start(wildcards):
    start, gallop = _tune_start(wildcards.study, wildcards.point)
    return f"--start {start}" + (" --gallop" if gallop else "")


def tune_searches(wildcards):
    return expand("results/tune/{study}/search/{point}.json", study=wildcards.study,
                  point=list(TUNE[wildcards.study].searches))


def tune_measurements(wildcards):
    """Each point's measurement at its largest micro-batch (the boundary probe itself when settings agree)."""
    paths = []
    for point, search in TUNE[wildcards.study].searches.items():
        outcomes, _, start, gallop = _tune_probes(wildcards.study, point)
        best = boundary(outcomes, start, search.upper, gallop).max_fit
        if best:
            paths.append(f"{RUNS_DIR}/{search.measurement(best).run_id}/summary.json")
    return paths


# --- resources of a training job, from its matrix point and the `slurm` section ---------------


def _slurm(key):
    return config["slurm"].get(key) or ""


# How the SLURM executor plugin (2.8) places a job: without an `mpi` resource the rule runs in
# `srun -n1 --nodes=1` on ONE node, whatever `nodes` says. With `mpi` set, the rule's shell runs in the
# batch script on the first node, and the launcher starts one node launcher per node itself
# (`srun --nodes=N --ntasks-per-node=1 ... zerosweep launch-node`). The plugin refuses mpi with tasks=1,
# so 1-node runs leave `mpi` unset (None drops the resource) and keep the plain one-node path.


def train_nodes(wildcards):
    return run_spec(wildcards).point.nodes


def train_mpi(wildcards):
    return "srun" if run_spec(wildcards).point.nodes > 1 else None


def train_runtime(wildcards, attempt):
    """Minutes; a retried job (`retries` in the profile) gets the limit times the attempt number, so a run
    killed at its time limit comes back with more time."""
    return config["slurm"]["time_min"] * attempt


def train_slurm_extra(wildcards):
    point = run_spec(wildcards).point
    # Per node: `gpu`/`gpus` would be job-wide (--gpus), and `gres` with `tasks` makes the plugin add
    # --ntasks-per-gpu. One task per node: the node launcher, which starts torchrun's ranks.
    extra = [f"--gpus-per-node={point.gpus_per_node}", "--ntasks-per-node=1"]
    if _slurm("reservation"):
        extra.append(f"--reservation={_slurm('reservation')}")
    if _slurm("constraint"):
        extra.append(f"--constraint={_slurm('constraint')}")
    return " ".join(extra)


def train_cpus(wildcards):
    return config["slurm"]["cpus_per_task"]


# One preview line per invocation of the main process (not per cluster job re-parsing this file).
if workflow.is_main_process:
    logger.info(
        f"zerosweep: {len(PLAN.runs)} runs in {len(PLAN.studies)} studies "
        f"({', '.join(PLAN.build)} built by `all`); {PLAN.pruned_count} invalid combinations pruned. "
        "`snakemake matrix` prints the run table."
    )
