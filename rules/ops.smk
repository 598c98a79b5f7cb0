# DeepSpeed's optimizer ops (FusedAdam, CPUAdam), each JIT-compiled once before any training job that loads it,
# so that no run's timings or CPU peak include the compiler (zerosweep.run.ops). On CPU no run waits for one.
# One file per op, named by the op: a matrix that needs another op asks for another file, and no parameter of
# this rule changes with the matrix (a rerun of an op that runs depend on through ancient() would otherwise
# hide their own missing outputs from Snakemake 9's scheduling: it would build the op and stop).


rule build_op:
    output:
        f"{OPS_DIR}/{{op}}.json",
    log:
        "results/logs/build_op/{op}.log",
    params:
        extensions=config["runtime"]["torch_extensions_dir"],
    conda:
        "../envs/train.yaml"
    threads: op_slurm().cpus_per_task
    resources:  # zerosweep.plan.resources.job_slurm_options, through op_slurm in common.smk
        cpus_per_task=op_slurm().cpus_per_task,
        mem_mb=op_slurm().mem_mb,
        runtime=ops_runtime,
        slurm_partition=op_slurm().partition,
        slurm_account=op_slurm().account,
        slurm_extra=ops_slurm_extra,
    shell:
        f"{ZEROSWEEP} build-ops --device cuda --extensions-dir {{params.extensions}} --ops {{wildcards.op}} --out {{output}} > {{log}} 2>&1"
