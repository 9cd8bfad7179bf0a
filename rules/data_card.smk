rule data_card:
    """A snapshot's data card: composition, licenses, long tail, years, a world map of observations,
    the rows dropped by reason, known biases, license duties and how to cite."""
    input:
        curated=rules.curate.output.table,
        curation_report=rules.curate.output.report,
        subsets_report=rules.subsets.output.report,
    output:
        card=report(
            f"{contracts.data_card(RESULTS)}/{contracts.DATA_CARD}",
            caption="../report/data_card.rst",
            category="Data cards",
            subcategory="{date}",
        ),
        figures=[
            report(
                f"{contracts.data_card(RESULTS)}/{figure}",
                caption="../report/data_card.rst",
                category="Data cards",
                subcategory="{date}",
            )
            for figure in contracts.DATA_CARD_FIGURES
        ],
        provenance=provenance(contracts.data_card(RESULTS)),
    log:
        f"{LOGS}/data_card/{{date}}.log",
    conda:
        "../envs/data.yaml"
    resources:
        mem_mb=4000,
        runtime=60,
    params:
        out=output_folder,
    shell:
        "python -m workflow_scripts.data_card --curated {input.curated} --curation-report {input.curation_report}"
        " --subsets-report {input.subsets_report} --out {params.out} --date {wildcards.date}"
        " --provenance {output.provenance} > {log} 2>&1"
