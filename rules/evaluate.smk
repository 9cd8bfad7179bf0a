rule evaluate:
    """Zero-shot evaluation of one configured model (evaluate.models) on a snapshot's benchmarks:
    cached predictions, metrics with Wilson intervals, levels x name modes, conformal sets.
    """
    input:
        unpack(benchmark_shards),
    output:
        metrics=f"{contracts.evaluation(RESULTS)}/{contracts.METRICS}",
        predictions=[
            f"{contracts.evaluation(RESULTS)}/{contracts.predictions(name)}"
            for name in contracts.benchmark_names(config["evaluate"])
        ],
        levels=f"{contracts.evaluation(RESULTS)}/{contracts.levels(config['evaluate']['levels_benchmark'])}",
        provenance=provenance(contracts.evaluation(RESULTS)),
    log:
        f"{LOGS}/evaluate/{{date}}/{{model}}.log",
    conda:
        "../envs/train.yaml"
    threads: config["evaluate"]["threads"] + config["evaluate"]["workers"]  # torch's, and the decoding workers
    resources:
        mem_mb=config["evaluate"]["mem_mb"],
        runtime=config["evaluate"]["runtime"],
        gpu=config["evaluate"]["gpu"],
    params:
        torch_threads=config["evaluate"]["threads"],
        out=output_folder,
        model=lambda wildcards: evaluated(wildcards)["model"],
        pretrained=pretrained_option,
        settings=Section(config, "evaluate"),
    shell:
        "OMP_NUM_THREADS={params.torch_threads} python -m workflow_scripts.evaluate --shards {input.shards}"
        " --tables {input.tables} --model {params.model:q} {params.pretrained} --settings {params.settings:q}"
        " --out {params.out} --date {wildcards.date} --provenance {output.provenance} > {log} 2>&1"


rule paper_tables:
    """Tables 5, 8, 9 and the conformal sets (CSV, Markdown, LaTeX) and their figures, from the
    evaluations' cached metrics; a summary JSON that DVC shows as metrics."""
    input:
        metrics=expand(
            rules.evaluate.output.metrics, model=EVALUATED, allow_missing=True
        ),
    output:
        tables=[
            report(
                f"{contracts.paper_tables(RESULTS)}/{table}.csv",
                caption="../report/tables.rst",
                category="Tables",
                subcategory="{date}",
            )
            for table in contracts.PAPER_TABLES
        ],
        text=[
            f"{contracts.paper_tables(RESULTS)}/{table}{suffix}"
            for table in contracts.PAPER_TABLES
            for suffix in (".md", ".tex")
        ],
        figures=[
            report(
                f"{contracts.paper_tables(RESULTS)}/{figure}",
                caption="../report/figures.rst",
                category="Figures",
                subcategory="{date}",
            )
            for figure in contracts.PAPER_FIGURES
        ],
        summary=f"{contracts.paper_tables(RESULTS)}/{contracts.METRICS}",
        provenance=provenance(contracts.paper_tables(RESULTS)),
    log:
        f"{LOGS}/paper_tables/{{date}}.log",
    conda:
        "../envs/data.yaml"
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        models=" ".join(shlex.quote(model) for model in EVALUATED),
        out=output_folder,
        settings=Section(config, "evaluate"),
    shell:
        "python -m workflow_scripts.evaluate.paper_tables --metrics {input.metrics} --models {params.models}"
        " --out {params.out} --settings {params.settings:q} --date {wildcards.date}"
        " --provenance {output.provenance} > {log} 2>&1"


rule shot_bands:
    """Top-1 per model and benchmark over classes grouped by their number of Train images (bands in
    config evaluate.shot_bands; species absent from Train their own band): table and figure.
    """
    input:
        predictions=[  # per model in order, its benchmarks' in order
            predictions
            for model in EVALUATED
            for predictions in expand(
                rules.evaluate.output.predictions, model=model, allow_missing=True
            )
        ],
        train=contracts.subset_table(SNAPSHOT, "train"),
        tables=[
            contracts.subset_table(SNAPSHOT, name)
            for name in config["evaluate"]["benchmarks"]
        ],
        external=[spec["metadata"] for spec in config["evaluate"]["external"].values()],
    output:
        table=report(
            f"{contracts.shot_bands(RESULTS)}/{contracts.SHOT_BANDS}.csv",
            caption="../report/shot_bands.rst",
            category="Tables",
            subcategory="{date}",
        ),
        text=[
            f"{contracts.shot_bands(RESULTS)}/{contracts.SHOT_BANDS}{suffix}"
            for suffix in (".md", ".tex")
        ],
        figure=report(
            f"{contracts.shot_bands(RESULTS)}/{contracts.SHOT_BANDS}.png",
            caption="../report/shot_bands.rst",
            category="Figures",
            subcategory="{date}",
        ),
        provenance=provenance(contracts.shot_bands(RESULTS)),
    log:
        f"{LOGS}/shot_bands/{{date}}.log",
    conda:
        "../envs/data.yaml"
    resources:
        mem_mb=4000,
        runtime=30,
    params:
        models=" ".join(shlex.quote(model) for model in EVALUATED),
        out=output_folder,
        settings=Section(config, "evaluate"),
    shell:
        "python -m workflow_scripts.evaluate.shot_bands --train {input.train} --tables {input.tables}"
        " --predictions {input.predictions} --models {params.models} --out {params.out}"
        " --settings {params.settings:q} --date {wildcards.date} --provenance {output.provenance} > {log} 2>&1"
