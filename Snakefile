# zerosweep: DeepSpeed ZeRO benchmark matrix as one Snakemake DAG.
#   snakemake -n                           preview every job (dry run)
#   snakemake --cores 4 all                 run locally
#   snakemake --executor slurm all                   submit to SLURM (profiles/default applies by itself)
#   snakemake results/tables/zero_stages.md          rebuild one table
from snakemake.utils import min_version

min_version("9.0")


configfile: "workflow_config.yaml"


include: "rules/common.smk"
include: "rules/ops.smk"
include: "rules/train.smk"
include: "rules/memory.smk"
include: "rules/aggregate.smk"
include: "rules/tune.smk"


rule all:
    input:
        all_outputs(),
    default_target: True


rule matrix:
    """Print the run matrix (run id, studies, GPUs, nodes, ZeRO, offload, pin) without running anything."""
    localrule: True
    log:
        "results/logs/matrix.log",
    run:
        print_matrix(log[0])
