# Tune studies: per matrix point, probe runs find the largest micro-batch that fits, then the boundary is
# measured and every configuration ranked per memory budget (zerosweep.plan.tune.studies, zerosweep.report.tune.recommend).
# Probes and measurements are ordinary runs (rules train and parse_memory); an `oom` probe is an outcome.
# Which probe comes next is decided by replaying the search over the finished checkpoints
# (zerosweep.plan.tune.search.replay, called by the input functions in common.smk).


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
    output:
        md=report("results/tune/{study}/recommendation.md", category="Tuning", subcategory="{study}"),
        csv="results/tune/{study}/recommendation.csv",
        candidates="results/tune/{study}/candidates.csv",
        workshop="results/tune/{study}/workshop_budget.csv",
        memory="results/tune/{study}/memory_model.csv",
        scaling="results/tune/{study}/memory_scaling.csv",
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
        f"{ZEROSWEEP} recommend --study-json {{params.study:q}} --out-dir {{params.out_dir}} --searches {{input.searches}} --measurements {{input.measurements}} > {{log}} 2>&1"
