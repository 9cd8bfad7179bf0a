import json


rule curate:
    """One clean Parquet per snapshot (SQL in workflow_scripts/sql/), with a report of every drop."""
    input:
        raw=f"{DATA}/snapshots/{{date}}/raw",
    output:
        directory(f"{DATA}/snapshots/{{date}}/curated"),
    params:
        settings=lambda wildcards, threads: json.dumps(
            {**config["curate"], "threads": config["curate"]["threads"] or threads}
        ),
    log:
        f"{LOGS}/curate/{{date}}.log",
    conda:
        "../envs/data.yaml"
    threads: 2
    resources:
        mem_mb=1024 + memory_mb(config["curate"]["memory_limit"]),
        runtime=60,
    shell:
        "python -m workflow_scripts.curate --snapshot-dir {input.raw}"
        " --taxonomy {input.raw}/inaturalist-taxonomy.dwca.zip --out {output}"
        " --settings {params.settings:q} > {log} 2>&1"
