# Tune studies: per matrix point, probe runs find the largest micro-batch that fits, then the boundary is
# measured and every configuration ranked per memory budget (zerosweep.plan.tune.studies, zerosweep.report.tune.recommend).
# Probes and measurements are ordinary runs (rules train and parse_memory); an `oom` probe is an outcome.
# Which probe comes next is decided by replaying the search over the finished checkpoints
# (zerosweep.plan.tune.search.replay, called by the input functions in common.smk). A screening study first
# probes every point at one micro-batch (checkpoint tune_screen) and searches only the fastest; budget searches
# (tune.fill_budgets) then find a measured run within each budget (zerosweep.plan.tune.search.budget_search).


checkpoint tune_probe:
    input:
        f"{RUNS_DIR}/{{run}}/summary.json",
    output:
        "results/tune/probes/{run}.json",
    log:
        "results/logs/tune/probes/{run}.log",
    localrule: True
    conda:
        "../envs/analysis.yaml"
    shell:
        f"{ZEROSWEEP} tune-probe --summary {{input}} --out {{output}} > {{log}} 2>&1"


# tune.search_mode in_process: one job per searched point probes its micro-batches in one process
# (zerosweep.run.in_process); the replay reads its record where an outcome stands and runs ordinary probes for
# the rest (zerosweep.plan.tune.search.with_in_process).
rule tune_in_process_run:
    input:
        unpack(train_inputs),
        ops=train_ops,
        known=tune_in_process_inputs,
    output:
        metrics=f"{RUNS_DIR}/in_process-{{study}}-{{point}}/metrics.json",
        monitor=directory(f"{RUNS_DIR}/in_process-{{study}}-{{point}}/monitor"),
    log:
        "results/logs/tune/{study}/in_process/{point}.log",
    params:
        spec=tune_in_process_spec,
        run_dir=lambda wildcards: f"{RUNS_DIR}/in_process-{wildcards.study}-{wildcards.point}",
    conda:
        "../envs/train.yaml"
    threads: train_threads
    resources:  # as a training job of the point (common.smk: run_spec, train_slurm)
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


checkpoint tune_in_process:
    input:
        f"{RUNS_DIR}/in_process-{{study}}-{{point}}/metrics.json",
    output:
        "results/tune/{study}/in_process/{point}.json",
    log:
        "results/logs/tune/{study}/in_process/{point}.record.log",
    localrule: True
    conda:
        "../envs/analysis.yaml"
    shell:
        f"{ZEROSWEEP} tune-in-process --run-dir {RUNS_DIR}/in_process-{{wildcards.study}}-{{wildcards.point}} --out {{output}} > {{log}} 2>&1"


checkpoint tune_screen:
    input:
        tune_screen_probes,
    output:
        "results/tune/{study}/screen.json",
    params:
        study=tune_study_json,
    log:
        "results/logs/tune/{study}/screen.log",
    localrule: True
    conda:
        "../envs/analysis.yaml"
    shell:
        f"{ZEROSWEEP} tune-screen --study-json {{params.study:q}} --out {{output}} {{input}} > {{log}} 2>&1"


rule tune_budget:
    input:
        tune_budget_probes,
    output:
        "results/tune/{study}/budget/{budget}.json",
    params:
        study=tune_study_json,
        search=tune_budget_json,
        run_ids=tune_budget_run_ids,
    log:
        "results/logs/tune/{study}/budget/{budget}.log",
    localrule: True
    conda:
        "../envs/analysis.yaml"
    shell:
        f"{ZEROSWEEP} tune-budget --study-json {{params.study:q}} --search-json {{params.search:q}} --run-ids={{params.run_ids}} --out {{output}} {{input}} > {{log}} 2>&1"


rule tune_search:
    input:
        tune_search_probes,
    output:
        "results/tune/{study}/search/{point}.json",
    params:
        study=tune_study_json,
        start=tune_search_start,
    log:
        "results/logs/tune/{study}/search/{point}.log",
    localrule: True
    conda:
        "../envs/analysis.yaml"
    shell:
        f"{ZEROSWEEP} tune-search --study-json {{params.study:q}} --point {{wildcards.point}} {{params.start}} --out {{output}} {{input}} > {{log}} 2>&1"


rule tune_recommendation:
    input:
        searches=tune_searches,
        measurements=tune_measurements,
        screen=tune_screens,
        budgets=tune_budgets,
    output:
        md=report("results/tune/{study}/recommendation.md", category="Tuning", subcategory="{study}"),
        csv="results/tune/{study}/recommendation.csv",
        candidates="results/tune/{study}/candidates.csv",
        workshop="results/tune/{study}/workshop_budget.csv",
        memory="results/tune/{study}/memory_model.csv",
        scaling="results/tune/{study}/memory_scaling.csv",
        budgets="results/tune/{study}/budget_searches.csv",
        energy="results/tune/{study}/energy_efficiency.csv",
        cost="results/tune/{study}/search_cost.csv",
        png=report("results/tune/{study}/pareto.png", category="Tuning", subcategory="{study}"),
        svg="results/tune/{study}/pareto.svg",
    params:
        study=tune_study_json,
        out_dir=lambda wildcards: f"results/tune/{wildcards.study}",
    log:
        "results/logs/tune/{study}/recommendation.log",
    localrule: True
    conda:
        "../envs/analysis.yaml"
    shell:
        f"{ZEROSWEEP} recommend --study-json {{params.study:q}} --out-dir {{params.out_dir}} --searches {{input.searches}} --measurements {{input.measurements}} --screen {{input.screen}} --budgets {{input.budgets}} > {{log}} 2>&1"
