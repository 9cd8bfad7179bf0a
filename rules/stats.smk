rule stats:
    """Figures 2 and 3, the BioTrove column of Tables 2/6 and the long tail, for one snapshot."""
    input:
        curated=f"{DATA}/snapshots/{{date}}/curated",
    output:
        directory(f"{DATA}/snapshots/{{date}}/stats"),
    log:
        f"{LOGS}/stats/{{date}}.log",
    conda:
        "../envs/data.yaml"
    resources:
        mem_mb=2000,
        runtime=30,
    shell:
        "python -m workflow_scripts.stats --curated {input.curated}/curated.parquet --out {output} > {log} 2>&1"
