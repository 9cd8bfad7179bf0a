import json


rule evaluate:
    """Zero-shot evaluation of one configured model (evaluate.models) on a snapshot's benchmarks:
    cached predictions, metrics with Wilson intervals, levels x name modes, conformal sets."""
    input:
        unpack(evaluation_inputs),
    output:
        directory(f"{RESULTS}/{{date}}/eval/{{model}}"),
    params:
        shards=f"{DATA}/snapshots/{{date}}/shards",
        model=lambda wildcards: evaluated_model(config, wildcards.model, wildcards.date)["model"],
        pretrained=pretrained_option,
        settings=lambda wildcards: json.dumps(config["evaluate"]),
    log:
        f"{LOGS}/evaluate/{{date}}/{{model}}.log",
    threads: config["evaluate"]["threads"]
    conda:
        "../envs/train.yaml"
    resources:
        mem_mb=config["evaluate"]["mem_mb"],
        runtime=config["evaluate"]["runtime"],
        gpu=config["evaluate"]["gpu"],
    shell:
        "OMP_NUM_THREADS={threads} python -m workflow_scripts.evaluate --shards {params.shards}"
        " --model {params.model:q} {params.pretrained} --settings {params.settings:q} --out {output} > {log} 2>&1"


PAPER_TABLES = ["table5_zero_shot", "table8_levels", "table9_top1_top5", "conformal_sets"]


rule paper_tables:
    """Tables 5, 8, 9 and the conformal sets (CSV, Markdown, LaTeX) and their figures, from the
    evaluations' cached metrics; a summary JSON that DVC shows as metrics."""
    input:
        expand(f"{RESULTS}/{{{{date}}}}/eval/{{model}}", model=EVALUATED),
    output:
        csv=[
            report(
                f"{RESULTS}/{{date}}/tables/{table}.csv",
                caption="../report/tables.rst",
                category="Tables",
                subcategory="{date}",
            )
            for table in PAPER_TABLES
        ],
        text=expand(f"{RESULTS}/{{{{date}}}}/tables/{{table}}{{suffix}}", table=PAPER_TABLES, suffix=[".md", ".tex"]),
        figures=[
            report(
                f"{RESULTS}/{{date}}/figures/{figure}.png",
                caption="../report/figures.rst",
                category="Figures",
                subcategory="{date}",
            )
            for figure in ("zero_shot_accuracy", "conformal_set_size")
        ],
        summary=f"{RESULTS}/{{date}}/metrics.json",
    params:
        evaluations=lambda wildcards, input: str(Path(input[0]).parent),
        models=" ".join(shlex.quote(model) for model in EVALUATED),
        tables=f"{RESULTS}/{{date}}/tables",
        figures=f"{RESULTS}/{{date}}/figures",
        config=lambda wildcards: json.dumps(config),  # a function: the JSON's braces are not wildcards
    log:
        f"{LOGS}/paper_tables/{{date}}.log",
    conda:
        "../envs/data.yaml"
    resources:
        mem_mb=2000,
        runtime=10,
    shell:
        "python -m workflow_scripts.paper_tables --eval {params.evaluations} --models {params.models}"
        " --tables {params.tables} --figures {params.figures} --summary {output.summary}"
        " --date {wildcards.date} --config {params.config:q} > {log} 2>&1"
