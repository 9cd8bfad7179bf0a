rule sample:
    """The embedded default: two months of a generated bucket (tables, bundles, taxonomy archive,
    photos), a web export with life stages, and a list of what was planted in them."""
    output:
        bucket=directory(f"{SAMPLE}/{contracts.SAMPLE_BUCKET}"),
        lifestages=f"{SAMPLE}/{contracts.SAMPLE_LIFESTAGES}",
        planted=f"{SAMPLE}/{contracts.SAMPLE_PLANTED}",
        provenance=provenance(SAMPLE),
    log:
        f"{LOGS}/sample.log",
    conda:
        "../envs/data.yaml"
    threads: 2
    resources:
        mem_mb=3000,
        runtime=15,
    params:
        out=output_folder,
        settings=Section(config, "sample"),
    shell:
        "python -m workflow_scripts.sample --out {params.out} --settings {params.settings:q} --workers {threads}"
        " --provenance {output.provenance} > {log} 2>&1"
