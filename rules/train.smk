# One training run per matrix point: monitors + torchrun + records, through zerosweep.run.launch.


rule train:
    input:
        unpack(train_inputs),
        ops=train_ops,
        previous_round=train_previous_round,
    output:
        metrics=f"{RUNS_DIR}/{{run}}/metrics.json",
        env=f"{RUNS_DIR}/{{run}}/env.json",
        monitor=directory(f"{RUNS_DIR}/{{run}}/monitor"),
    log:
        "results/logs/train/{run}.log",
    params:
        spec=run_spec_json,
        run_dir=lambda wildcards: f"{RUNS_DIR}/{wildcards.run}",
    conda:
        "../envs/train.yaml"
    threads: train_threads
    priority: train_priority
    resources:  # zerosweep.plan.resources.job_slurm_options, through train_slurm in common.smk
        gpu=train_gpus,
        nodes=train_nodes,
        tasks=train_tasks,
        cpus_per_task=train_cpus,
        mpi=train_mpi,
        mem_mb=train_mem_mb,
        runtime=train_runtime,
        slurm_partition=train_partition,
        slurm_account=train_account,
        slurm_extra=train_slurm_extra,
    shell:
        f"{ZEROSWEEP} launch --spec-json {{params.spec:q}} --run-dir {{params.run_dir}} --cpus-per-task {{resources.cpus_per_task}} > {{log}} 2>&1"
