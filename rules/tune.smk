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
    log:
        "results/logs/tune/{study}/budget/{budget}.log",
    localrule: True
    conda:
        "../envs/analysis.yaml"
    shell:
        f"{ZEROSWEEP} tune-budget --study-json {{params.study:q}} --search-json {{params.search:q}} --out {{output}} {{input}} > {{log}} 2>&1"


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
