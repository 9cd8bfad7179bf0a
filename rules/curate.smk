rule curate:
    """One clean Parquet per snapshot (SQL in workflow_scripts/curate/), with a report of every drop."""
    input:
        raw=contracts.raw(SNAPSHOT),
    output:
        table=f"{contracts.curated(SNAPSHOT)}/{contracts.CURATED_TABLE}",
        report=f"{contracts.curated(SNAPSHOT)}/{contracts.CURATION_REPORT}",
        rejects=f"{contracts.curated(SNAPSHOT)}/{contracts.REJECTS}",
        provenance=provenance(contracts.curated(SNAPSHOT)),
    log:
        f"{LOGS}/curate/{{date}}.log",
    conda:
        "../envs/data.yaml"
    threads: 2
    resources:
        mem_mb=1024 + memory_mb(config["curate"]["memory_limit"]),
        runtime=60,
    params:
        out=output_folder,
        settings=Section(config, "curate"),
    shell:
        "python -m workflow_scripts.curate --raw {input.raw} --out {params.out} --threads {threads}"
        " --settings {params.settings:q} --date {wildcards.date} --provenance {output.provenance} > {log} 2>&1"
