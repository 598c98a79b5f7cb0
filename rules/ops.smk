# DeepSpeed's optimizer ops (FusedAdam, CPUAdam), JIT-compiled once before any training job, so that no run's
# timings or CPU peak include the compiler (zerosweep.run.ops). On CPU a local no-op that records so.

if config["runtime"]["device"] == "cuda":

    rule build_ops:
        output:
            OPS_DONE,
        log:
            "results/logs/build_ops.log",
        params:
            ops=ops_needed,
            extensions=config["runtime"]["torch_extensions_dir"],
        conda:
            "../envs/train.yaml"
        threads: config["slurm"]["cpus_per_gpu"]
        resources:
            cpus_per_task=config["slurm"]["cpus_per_gpu"],
            mem_mb=config["slurm"]["mem_mb_per_node"],
            runtime=train_runtime,
            slurm_partition=_slurm("partition"),
            slurm_account=_slurm("account"),
            slurm_extra=ops_slurm_extra,
        shell:
            f"{ZEROSWEEP} build-ops --device cuda --extensions-dir {{params.extensions}} --ops {{params.ops}} --out {{output}} > {{log}} 2>&1"

else:

    rule build_ops:
        output:
            OPS_DONE,
        log:
            "results/logs/build_ops.log",
        params:
            ops=ops_needed,
            extensions=config["runtime"]["torch_extensions_dir"],
        localrule: True
        conda:
            "../envs/train.yaml"
        shell:
            f"{ZEROSWEEP} build-ops --device cpu --extensions-dir {{params.extensions}} --ops {{params.ops}} --out {{output}} > {{log}} 2>&1"
