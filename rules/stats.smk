rule stats:
    """Figures 2 and 3, the BioTrove column of Tables 2/6 and the long tail, for one snapshot."""
    input:
        curated=rules.curate.output.table,
    output:
        stats=directory(contracts.stats(SNAPSHOT)),
        provenance=provenance(contracts.stats(SNAPSHOT)),
    log:
        f"{LOGS}/stats/{{date}}.log",
    conda:
        "../envs/data.yaml"
    resources:
        mem_mb=2000,
        runtime=30,
    shell:
        "python -m workflow_scripts.stats --curated {input.curated} --out {output.stats} --date {wildcards.date}"
        " --provenance {output.provenance} > {log} 2>&1"
