# Aggregation: one table and one set of plots per study, and the answers to the workshop's questions.


rule study_table:
    input:
        study_summaries,
    output:
        csv=report(
            "results/tables/{study}.csv",
            category="Tables",
            subcategory="{study}",
            caption="../report/table.rst",
        ),
        md="results/tables/{study}.md",
    params:
        study=study_json,
    log:
        "results/logs/tables/{study}.log",
    localrule: True
    conda:
        "../envs/analysis.yaml"
    shell:
        f"{ZEROSWEEP} table --study-json {{params.study:q}} --out-csv {{output.csv}} --out-md {{output.md}} {{input}} > {{log}} 2>&1"


rule study_plots:
    input:
        study_summaries,
    output:
        report(
            directory("results/plots/{study}"),
            patterns=["{name}.png"],
            category="Plots",
            subcategory="{study}",
            caption="../report/plots.rst",
        ),
    params:
        study=study_json,
    log:
        "results/logs/plots/{study}.log",
    localrule: True
    conda:
        "../envs/analysis.yaml"
    shell:
        f"{ZEROSWEEP} plots --study-json {{params.study:q}} --out-dir {{output}} {{input}} > {{log}} 2>&1"


rule summary:
    input:
        tables=built_tables(),
        recommendations=built_recommendations(),
    output:
        report("results/summary.md", category="Summary", caption="../report/summary.rst"),
    log:
        "results/logs/summary.log",
    localrule: True
    conda:
        "../envs/analysis.yaml"
    shell:
        f"{ZEROSWEEP} summary --out {{output}} {{input.tables}} --recommendations {{input.recommendations}} > {{log}} 2>&1"
