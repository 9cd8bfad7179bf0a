rule diff:
    """What changed between two monthly snapshots: species, inactive taxa and their replacements,
    images per category and species, license changes, deleted photos, photos that changed subset or
    split, benchmark membership, each model x benchmark result with its delta and intervals, and the
    images the later snapshot reused from the image store or downloaded.
    """
    input:
        unpack(compared_inputs),
        current_store_report=contracts.store_report(STORE, "{current}"),
    output:
        report=report(
            f"{contracts.diff(RESULTS)}/{contracts.DIFF_REPORT}",
            caption="../report/diff.rst",
            category="Snapshot diff",
        ),
        summary=f"{contracts.diff(RESULTS)}/{contracts.DIFF_SUMMARY}",
        lists=[
            f"{contracts.diff(RESULTS)}/{name}.parquet"
            for name in contracts.DIFF_LISTS
        ],
        figures=[
            report(
                f"{contracts.diff(RESULTS)}/{figure}",
                caption="../report/diff.rst",
                category="Snapshot diff",
            )
            for figure in contracts.DIFF_FIGURES
        ],
        provenance=provenance(contracts.diff(RESULTS)),
    log:
        f"{LOGS}/diff/{{previous}}_vs_{{current}}.log",
    conda:
        "../envs/data.yaml"
    resources:
        mem_mb=8000,
        runtime=120,
    params:
        models=" ".join(shlex.quote(model) for model in EVALUATED),
        out=output_folder,
        settings=Section(config, "curate"),  # the raw tables read as curation reads them
    shell:
        "python -m workflow_scripts.diff --previous-date {wildcards.previous} --previous-raw {input.previous_raw}"
        " --previous-curated {input.previous_curated} --previous-species {input.previous_species}"
        " --previous-subsets {input.previous_subsets} --previous-metrics {input.previous_metrics}"
        " --current-date {wildcards.current} --current-raw {input.current_raw}"
        " --current-curated {input.current_curated} --current-species {input.current_species}"
        " --current-subsets {input.current_subsets} --current-metrics {input.current_metrics}"
        " --current-store-report {input.current_store_report}"
        " --models {params.models} --out {params.out} --settings {params.settings:q}"
        " --provenance {output.provenance} > {log} 2>&1"
