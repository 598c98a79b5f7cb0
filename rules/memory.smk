# Memory parsing: one run's nvidia-smi, NVML and psrecord logs -> summary.json (never retrains).


rule parse_memory:
    input:
        metrics=f"{RUNS_DIR}/{{run}}/metrics.json",
        monitor=f"{RUNS_DIR}/{{run}}/monitor",
    output:
        f"{RUNS_DIR}/{{run}}/summary.json",
    log:
        "results/logs/parse_memory/{run}.log",
    localrule: True
    conda:
        "../envs/analysis.yaml"
    shell:
        f"{ZEROSWEEP} parse-memory --run-dir {RUNS_DIR}/{{wildcards.run}} --out {{output}} > {{log}} 2>&1"


rule timeline:
    input:
        summary=f"{RUNS_DIR}/{{run}}/summary.json",
        monitor=f"{RUNS_DIR}/{{run}}/monitor",
    output:
        png=report(
            "results/plots/runs/{run}.png",
            category="Memory timelines",
            caption="../report/timeline.rst",
        ),
        svg="results/plots/runs/{run}.svg",
    log:
        "results/logs/timeline/{run}.log",
    localrule: True
    conda:
        "../envs/analysis.yaml"
    shell:
        f"{ZEROSWEEP} timeline --run-dir {RUNS_DIR}/{{wildcards.run}} --out-png {{output.png}} --out-svg {{output.svg}} > {{log}} 2>&1"
