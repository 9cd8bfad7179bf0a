import json


rule subsets:
    """BioTrove-Train (with its splits), -Balanced, -Unseen and LifeStages for one snapshot."""
    input:
        curated=f"{DATA}/snapshots/{{date}}/curated",
        # the sample's export lives in the generated mirror; a real one is a file of its own
        lifestages=sample_mirror_input(config) or LIFESTAGES_EXPORT or [],
    output:
        directory(f"{DATA}/snapshots/{{date}}/subsets"),
    params:
        settings=json.dumps(config["subsets"]),
        lifestages=f"--lifestages {LIFESTAGES_EXPORT}" if LIFESTAGES_EXPORT else "",
    log:
        f"{LOGS}/subsets/{{date}}.log",
    conda:
        "../envs/data.yaml"
    resources:
        mem_mb=1024 + memory_mb(config["subsets"]["memory_limit"]),
        runtime=30,
    shell:
        "python -m workflow_scripts.subsets --curated {input.curated}/curated.parquet --out {output}"
        " --settings {params.settings:q} {params.lifestages} > {log} 2>&1"


rule check_overlap:
    """Fails the pipeline when two subsets or two Train splits share a photo or an observation, or
    an Unseen species is in Train; the report stays in logs/overlap/<date>.json either way."""
    input:
        f"{DATA}/snapshots/{{date}}/subsets",
    output:
        f"{DATA}/snapshots/{{date}}/overlap_report.json",
    log:
        messages=f"{LOGS}/overlap/{{date}}.log",
        report=f"{LOGS}/overlap/{{date}}.json",
    conda:
        "../envs/data.yaml"
    resources:
        mem_mb=2000,
        runtime=10,
    shell:
        "python -m workflow_scripts.overlap --subsets {input} --out {log.report} > {log.messages} 2>&1"
        " && cp {log.report} {output}"


rule subset_tables:
    """The paper's Tables 3 and 7 (CSV, Markdown, LaTeX) and images-per-species plots per subset."""
    input:
        f"{DATA}/snapshots/{{date}}/subsets",
    output:
        csv=[
            report(
                f"{RESULTS}/{{date}}/tables/{table}.csv",
                caption="../report/tables.rst",
                category="Tables",
                subcategory="{date}",
            )
            for table in ("table3_train_unique_taxa", "table7_balanced_species")
        ],
        text=multiext(f"{RESULTS}/{{date}}/tables/table3_train_unique_taxa", ".md", ".tex")
        + multiext(f"{RESULTS}/{{date}}/tables/table7_balanced_species", ".md", ".tex"),
        figures=[
            report(
                f"{RESULTS}/{{date}}/figures/subset_distribution_{subset}.png",
                caption="../report/figures.rst",
                category="Figures",
                subcategory="{date}",
            )
            for subset in ("train", "balanced", "unseen", "lifestages")
        ],
    params:
        tables=f"{RESULTS}/{{date}}/tables",
        figures=f"{RESULTS}/{{date}}/figures",
        config=lambda wildcards: json.dumps(config),  # a function: the JSON's braces are not wildcards
    log:
        f"{LOGS}/subset_tables/{{date}}.log",
    conda:
        "../envs/data.yaml"
    resources:
        mem_mb=2000,
        runtime=10,
    shell:
        "python -m workflow_scripts.subset_tables --subsets {input} --tables {params.tables}"
        " --figures {params.figures} --date {wildcards.date} --config {params.config:q} > {log} 2>&1"
