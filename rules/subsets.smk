checkpoint subsets:
    """BioTrove-Train (with its splits), -Balanced, -Unseen and LifeStages for one snapshot (a
    checkpoint: the image stages' jobs follow its row counts)."""
    input:
        curated=rules.curate.output.table,
        lifestages=local_input(config["subsets"]["lifestages"]["export"]),
    output:
        **{subset: contracts.subset_table(SNAPSHOT, subset) for subset in SUBSETS},
        species=f"{contracts.subsets(SNAPSHOT)}/{contracts.SPECIES_TABLE}",
        report=f"{contracts.subsets(SNAPSHOT)}/{contracts.SUBSETS_REPORT}",
        provenance=provenance(contracts.subsets(SNAPSHOT)),
    log:
        f"{LOGS}/subsets/{{date}}.log",
    conda:
        "../envs/data.yaml"
    resources:
        mem_mb=1024 + memory_mb(config["subsets"]["memory_limit"]),
        runtime=30,
    params:
        out=output_folder,
        settings=Section(config, "subsets"),
    shell:
        "python -m workflow_scripts.subsets --curated {input.curated} --out {params.out} --settings {params.settings:q}"
        " --date {wildcards.date} --provenance {output.provenance} > {log} 2>&1"


rule check_overlap:
    """Fails the pipeline when two subsets or two Train splits share a photo or an observation, or
    an Unseen species is in Train; the report stays in logs/overlap/<date>.json either way.
    """
    input:
        tables=[contracts.subset_table(SNAPSHOT, subset) for subset in SUBSETS],
    output:
        report=contracts.overlap_report(SNAPSHOT),
        provenance=provenance(contracts.overlap_report(SNAPSHOT)),
    log:
        messages=f"{LOGS}/overlap/{{date}}.log",
        report=f"{LOGS}/overlap/{{date}}.json",
    conda:
        "../envs/data.yaml"
    resources:
        mem_mb=2000,
        runtime=10,
    shell:
        "python -m workflow_scripts.subsets.check_overlap --subsets {input.tables} --out {log.report} --date {wildcards.date}"
        " --provenance {output.provenance} > {log.messages} 2>&1 && cp {log.report} {output.report}"


rule subset_tables:
    """The paper's Tables 3 and 7 (CSV, Markdown, LaTeX) and images-per-species plots per subset."""
    input:
        tables=[contracts.subset_table(SNAPSHOT, subset) for subset in SUBSETS],
        report=rules.subsets.output.report,
    output:
        tables=[
            report(
                f"{contracts.subset_tables(RESULTS)}/{table}.csv",
                caption="../report/tables.rst",
                category="Tables",
                subcategory="{date}",
            )
            for table in contracts.SUBSET_TABLES
        ],
        text=[
            f"{contracts.subset_tables(RESULTS)}/{table}{suffix}"
            for table in contracts.SUBSET_TABLES
            for suffix in (".md", ".tex")
        ],
        figures=[
            report(
                f"{contracts.subset_tables(RESULTS)}/{contracts.subset_figure(subset)}",
                caption="../report/figures.rst",
                category="Figures",
                subcategory="{date}",
            )
            for subset in SUBSETS
        ],
        provenance=provenance(contracts.subset_tables(RESULTS)),
    log:
        f"{LOGS}/subset_tables/{{date}}.log",
    conda:
        "../envs/data.yaml"
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        out=output_folder,
    shell:
        "python -m workflow_scripts.subsets.subset_tables --subsets {input.tables} --report {input.report} --out {params.out}"
        " --date {wildcards.date} --provenance {output.provenance} > {log} 2>&1"


rule genus_sampled_long_tail:
    """The genus-sampled subset's long tail and species per genus beside the curated table's (CSV,
    Markdown, LaTeX and a figure)."""
    input:
        curated=rules.curate.output.table,
        subset=contracts.subset_table(SNAPSHOT, contracts.GENUS_SAMPLED),
    output:
        table=report(
            f"{contracts.long_tail(RESULTS)}/{contracts.LONG_TAIL}.csv",
            caption="../report/tables.rst",
            category="Tables",
            subcategory="{date}",
        ),
        text=[
            f"{contracts.long_tail(RESULTS)}/{contracts.LONG_TAIL}{suffix}"
            for suffix in (".md", ".tex")
        ],
        figure=report(
            f"{contracts.long_tail(RESULTS)}/{contracts.LONG_TAIL}.png",
            caption="../report/figures.rst",
            category="Figures",
            subcategory="{date}",
        ),
        provenance=provenance(contracts.long_tail(RESULTS)),
    log:
        f"{LOGS}/genus_sampled_long_tail/{{date}}.log",
    conda:
        "../envs/data.yaml"
    resources:
        mem_mb=2000,
        runtime=30,
    params:
        out=output_folder,
    shell:
        "python -m workflow_scripts.subsets.genus_sampled_long_tail --curated {input.curated} --subset {input.subset}"
        " --out {params.out} --date {wildcards.date} --provenance {output.provenance} > {log} 2>&1"
