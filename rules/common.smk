# Helpers and input functions shared by all rules. All logic lives in the `zerosweep` package
# (scripts/zerosweep); this file only maps the validated config onto wildcards and resources.
import sys
from pathlib import Path

from snakemake.exceptions import WorkflowError

sys.path.insert(0, str(Path(workflow.basedir) / "scripts"))

from zerosweep.plan.checks import check_config  # noqa: E402
from zerosweep.plan.matrix import (  # noqa: E402
    POINT_ID_PATTERN,
    RUN_ID_PATTERN,
    STUDY_PATTERN,
    ConfigError,
    build_plan,
    matrix_table,
)
from zerosweep.plan.models import architecture_file, is_architecture_path  # noqa: E402
from zerosweep.plan.repeats import previous_round, round_priority  # noqa: E402
from zerosweep.plan.resources import job_slurm_options, slurm_exclusive  # noqa: E402
from zerosweep.plan.tracking import UntrackableCluster, check_slurm_tracking  # noqa: E402
from zerosweep.plan.tune.studies import (  # noqa: E402
    IN_PROCESS,
    IN_PROCESS_SEARCH,
    build_tune_studies,
    find_run,
    most_probes,
)
from zerosweep.plan.tune.search import (  # noqa: E402
    budget_search,
    budgets_to_fill,
    in_process_known,
    measurement_runs,
    replay,
    screen,
    screen_run_ids,
    search_start,
    with_in_process,
)
from zerosweep.plan.workspace import UnusableResults, check_results_dir  # noqa: E402
from zerosweep.run.ops import OP_BUILDERS, ops_for  # noqa: E402

try:  # schema, then settings that contradict each other, then the matrix: before anything is scheduled
    check_config(config, Path(workflow.basedir) / "schemas" / "config.schema.yaml")
    PLAN = build_plan(config)
    TUNE = build_tune_studies(config, PLAN)
except ConfigError as error:
    raise WorkflowError(f"workflow config: {error}") from None

RUNS_DIR = "results/runs"
OPS_DIR = "results/cache/ops"
SCRIPTS_DIR = str(Path(workflow.basedir) / "scripts")
# Every job runs the package from this checkout (also on SLURM nodes, which share the filesystem).
# (braces doubled twice: once for this f-string, once for Snakemake's shell formatting)
ZEROSWEEP = f"PYTHONPATH={SCRIPTS_DIR}${{{{PYTHONPATH:+:$PYTHONPATH}}}} python -m zerosweep"


wildcard_constraints:
    run=RUN_ID_PATTERN,
    study=STUDY_PATTERN,
    point=POINT_ID_PATTERN,
    budget=r"\d+(\.\d+)?",
    op="|".join(OP_BUILDERS),


def print_matrix(log_path):
    text = matrix_table(PLAN)
    print(text)
    with open(log_path, "w") as handle:
        handle.write(f"{text}\n")


def run_spec(wildcards):
    if not hasattr(wildcards, "run"):  # a tune point's in-process search job: the point's probe settings
        search = TUNE[wildcards.study].searches[wildcards.point]
        return search.probe(search.start)
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
            # MFU is derived when the table is built: a new peak rebuilds tables and plots, never a training run
            "peak_tflops": config["runtime"].get("peak_tflops"),
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


def built_recommendations():
    return expand("results/tune/{study}/recommendation.md", study=[name for name in PLAN.build if name in TUNE])


def all_outputs():
    return [
        *built_tables(),
        *expand("results/plots/{study}", study=table_studies()),
        *expand("results/plots/runs/{run}.png", run=PLAN.runs_of(table_studies())),
        "results/summary.md",
        *built_recommendations(),
    ]


# --- tune studies: the DAG grows one probe at a time (checkpoint tune_probe) -------------------------


def tune_study_json(wildcards):
    import json

    return json.dumps(TUNE[wildcards.study].to_dict(), sort_keys=True)


def _probe_file(run_id):
    """An unfinished probe raises IncompleteCheckpointException here and so gets scheduled."""
    return checkpoints.tune_probe.get(run=run_id).output[0]


def _probe_outcome(run_id):
    from zerosweep.jsonio import read_json

    return read_json(Path(_probe_file(run_id)), what="the tune_probe rule writes it")


def _in_process_file(study, point):
    """A point's in-process search record (tune.search_mode in_process): its job is scheduled until it exists."""
    return checkpoints.tune_in_process.get(study=study, point=point).output[0]


def _study_outcome(study):
    """The probe outcomes a study's searches read: ordinary probes, or with tune.search_mode in_process the
    point's in-process record where its outcome stands (zerosweep.plan.tune.search.with_in_process)."""
    from zerosweep.jsonio import read_json

    def in_process(point):
        return read_json(Path(_in_process_file(study, point)), what="the tune_in_process rule writes it")

    return with_in_process(TUNE[study], in_process, _probe_outcome)


def _files_of(study, probes):
    """The files holding the probes: an in-process probe's is its point's record."""
    return sorted({_in_process_file(study, probe["point_id"]) if probe.get("search_mode") == IN_PROCESS
                   else _probe_file(probe["run_id"]) for probe in probes})


def _model_size(study):
    def size():  # only when a start is guessed: a pretrained model's config may be a download
        from zerosweep.plan.models import model_size

        return model_size(TUNE[study].to_dict()["settings"]["model"])

    return size


def _tune_replay(wildcards):
    return replay(TUNE[wildcards.study], wildcards.point, _study_outcome(wildcards.study),
                  _model_size(wildcards.study))


def tune_search_probes(wildcards):
    """The files of the probes the search took; with tune.search_mode in_process the point's in-process record
    too, whether or not an outcome of it stood (its job is part of the search's cost)."""
    files = _files_of(wildcards.study, _tune_replay(wildcards).probes)
    if TUNE[wildcards.study].tune["search_mode"] == IN_PROCESS:
        files = sorted({*files, _in_process_file(wildcards.study, wildcards.point)})
    return files


def _params_after_checkpoints(func):
    """A params function that replays probes: where a probe is not finished yet, a placeholder. Snakemake
    evaluates params while it updates checkpoint dependencies, and may then know more finished probes than the
    job's input function did (a WorkflowError, "Rule parameter depends on checkpoint", on an H200); the job
    cannot run before its inputs are finished, and is re-created with the real value once they are."""
    from snakemake.common.tbdstring import TBDString
    from snakemake.exceptions import IncompleteCheckpointException

    def params(wildcards):
        try:
            return func(wildcards)
        except IncompleteCheckpointException:
            return TBDString()

    return params


@_params_after_checkpoints
def tune_search_start(wildcards):
    found = _tune_replay(wildcards)
    return f"--start {found.start}" + (" --gallop" if found.gallop else "") + f" --run-ids {','.join(found.run_ids)}"


def _in_process_job(wildcards):
    """The spec of a point's in-process search job: it starts where the replay starts, from its screen probe."""
    study = TUNE[wildcards.study]
    outcome = _study_outcome(wildcards.study)
    start, gallop = search_start(study, wildcards.point, outcome, _model_size(wildcards.study))
    known = in_process_known(study, wildcards.point, outcome)
    return study.searches[wildcards.point].in_process(start, gallop, known)


def tune_in_process_inputs(wildcards):
    """What the job starts from: the point's screen probe (and, through the start, the first point's search)."""
    job = _in_process_job(wildcards)
    search = TUNE[wildcards.study].searches[wildcards.point]
    return [_probe_file(search.probe(int(micro_batch)).run_id) for micro_batch in job[IN_PROCESS_SEARCH]["known"]]


@_params_after_checkpoints
def tune_in_process_spec(wildcards):
    import json

    return json.dumps(_in_process_job(wildcards), sort_keys=True)


def tune_screen_probes(wildcards):
    """Every point's screen probe, as plain files: they run side by side (not one checkpoint at a time)."""
    return [f"results/tune/probes/{run_id}.json" for run_id in screen_run_ids(TUNE[wildcards.study])]


def tune_screens(wildcards):
    return (f"results/tune/{wildcards.study}/screen.json",) if screen_run_ids(TUNE[wildcards.study]) else ()


def tune_searches(wildcards):
    """The searched points' records: all points, or the screen's fastest (once the screen has run)."""
    study = TUNE[wildcards.study]
    if screen_run_ids(study):
        checkpoints.tune_screen.get(study=wildcards.study)
    kept = screen(study, _study_outcome(wildcards.study)).kept
    return expand("results/tune/{study}/search/{point}.json", study=wildcards.study, point=kept)


def tune_budgets(wildcards):
    study = TUNE[wildcards.study]
    return expand("results/tune/{study}/budget/{budget}.json", study=wildcards.study,
                  budget=[f"{budget:g}" for budget in budgets_to_fill(study)])


def _budget_search(wildcards):
    return budget_search(TUNE[wildcards.study], float(wildcards.budget), _study_outcome(wildcards.study),
                         _model_size(wildcards.study))


def tune_budget_probes(wildcards):
    return _files_of(wildcards.study, _budget_search(wildcards).probes)


@_params_after_checkpoints
def tune_budget_json(wildcards):
    import json

    return json.dumps(_budget_search(wildcards).to_dict(), sort_keys=True)


@_params_after_checkpoints
def tune_budget_run_ids(wildcards):
    return ",".join(_budget_search(wildcards).run_ids)


def tune_measurements(wildcards):
    """Each point's measurement at its largest micro-batch (the boundary probe itself when settings agree)."""
    runs = measurement_runs(TUNE[wildcards.study], _study_outcome(wildcards.study), _model_size(wildcards.study))
    return [f"{RUNS_DIR}/{run_id}/summary.json" for run_id in runs]


# --- resources of a training job, from its matrix point and the `slurm` section ---------------
# One owner: zerosweep.plan.resources.job_slurm_options (placement, quoting, --exclusive); these only pick
# the field each resource of the rule reads.


def train_slurm(wildcards, attempt=1):
    point = run_spec(wildcards).point
    # a point's in-process search job holds as many runs as its search may ask for
    runs = 1 if hasattr(wildcards, "run") else most_probes(TUNE[wildcards.study].searches[wildcards.point].upper)
    return job_slurm_options(config["slurm"], gpus_per_node=point.gpus_per_node, nodes=point.nodes,
                             exclusive=slurm_exclusive(config["slurm"]), attempt=attempt, runs=runs)


def train_nodes(wildcards):
    return train_slurm(wildcards).nodes


def train_tasks(wildcards):
    return train_slurm(wildcards).tasks


def train_mpi(wildcards):
    return train_slurm(wildcards).mpi


def train_runtime(wildcards, attempt):
    """Minutes: slurm.time_min x the attempt number (`retries` in the profile)."""
    return train_slurm(wildcards, attempt).runtime_min


def train_mem_mb(wildcards):
    return train_slurm(wildcards).mem_mb


def train_partition(wildcards):
    return train_slurm(wildcards).partition


def train_account(wildcards):
    return train_slurm(wildcards).account


def train_slurm_extra(wildcards):
    return train_slurm(wildcards).slurm_extra


def train_cpus(wildcards):
    """CPUs of each node's task: `slurm.cpus_per_gpu` for each of the node's ranks (each rank's OMP threads)."""
    return train_slurm(wildcards).cpus_per_task


def train_threads(wildcards):
    """Cores the local scheduler books: every node's task, since emulated nodes share this host."""
    return train_cpus(wildcards) * (1 if workflow.non_local_exec else run_spec(wildcards).point.nodes)


def host_gpu_count():
    """GPUs NVML sees on this host (0 without a driver): the default `gpu` resource of local runs."""
    from zerosweep.run.environment import gpu_inventory

    return len(gpu_inventory().get("gpus", []))


def train_gpus(wildcards):
    """The GPUs a run books from the local scheduler's `gpu` resource, so that runs started together never
    outnumber the host's GPUs (which GPUs: the launcher's lease). Capped at what is available: a run that needs
    more fails in its launcher with a message naming the run, and the rest of the matrix goes on. Under SLURM
    the allocation (--gpus-per-node) does this; the plugin would turn `gpu` into a job-wide --gpus."""
    spec = run_spec(wildcards)
    if workflow.non_local_exec or spec.settings["runtime"]["device"] != "cuda":
        return 0
    return min(spec.point.world_size, LOCAL_GPUS)


def train_inputs(wildcards):
    """Files whose edit changes what a run trains: the DeepSpeed template and the model architecture."""
    spec = run_spec(wildcards)
    architecture = spec.settings["model"]["architecture"]
    inputs = {"architecture": str(architecture_file(architecture)) if is_architecture_path(architecture)  # a user's
              else f"{SCRIPTS_DIR}/zerosweep/run/architectures/{architecture}.json"}  # config.json, ~ expanded
    if spec.point.deepspeed:
        inputs["ds_template"] = f"{SCRIPTS_DIR}/zerosweep/plan/ds_template.json"  # package data (dsconfig.TEMPLATE)
    return inputs


# GPUs the local scheduler may hand out at once: --resources gpu=N, else every GPU of this host.
if "gpu" not in workflow.global_resources:
    workflow.global_resources["gpu"] = host_gpu_count()
LOCAL_GPUS = workflow.global_resources["gpu"].value


# --- repeats and compiled ops: what a training job waits for ----------------------------------


def train_previous_round(wildcards):
    """Repeat k of a run starts after every run of round k-1 (zerosweep.plan.repeats)."""
    return expand(f"{RUNS_DIR}/{{run}}/metrics.json", run=previous_round(PLAN, wildcards.run))


def train_priority(wildcards):
    return round_priority(PLAN, wildcards.run)


def train_ops(wildcards):
    """The compiled op the run's optimizer loads (none on CPU). ancient: rebuilding an op does not make finished
    runs stale."""
    ops = ops_for([run_spec(wildcards).to_dict()["point"]], config["runtime"]["device"])
    return [ancient(f"{OPS_DIR}/{op}.json") for op in ops]


def op_slurm(attempt=1):
    """The op build: one GPU (the compile probes its architecture) on one node, not exclusive (a minute of
    compiling measures nothing; holding a whole node for it would only delay the runs waiting on it)."""
    return job_slurm_options(config["slurm"], gpus_per_node=1, nodes=1, exclusive=False, attempt=attempt)


def ops_runtime(wildcards, attempt):
    return op_slurm(attempt).runtime_min


def ops_slurm_extra(wildcards):
    return op_slurm().slurm_extra


# Before the first job starts: a results directory that cannot take the outputs (read-only, unwritable, full),
# and a SLURM cluster whose finished jobs Snakemake could not see end (it would wait forever), are named at once.
onstart:
    try:
        check_results_dir(Path("results"))
        if workflow.executor_plugin is not None and workflow.executor_plugin.name == "slurm":
            settings = workflow.executor_settings
            check_slurm_tracking(settings.status_command, settings.init_seconds_before_status_checks)
    except (UnusableResults, UntrackableCluster) as error:
        raise WorkflowError(str(error)) from None


# One preview line per invocation of the main process (not per cluster job re-parsing this file).
if workflow.is_main_process:
    logger.info(
        f"zerosweep: {len(PLAN.runs)} runs in {len(PLAN.studies)} studies "
        f"({', '.join(PLAN.build)} built by `all`); {PLAN.pruned_count} invalid combinations pruned. "
        "`snakemake matrix` prints the run table."
    )
