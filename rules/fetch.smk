checkpoint latest_snapshot:
    """The date `latest` stands for now, asked of the source when the workflow runs (temporary: asked
    again by the next run)."""
    input:
        source=local_input(config["fetch"]["source"]),
    output:
        temp(f"{DATA}/snapshots/{contracts.LATEST}"),
    log:
        f"{LOGS}/fetch/latest.log",
    conda:
        "../envs/data.yaml"
    resources:
        mem_mb=1000,
        runtime=10,
    params:
        settings=Section(config, "fetch"),
    shell:
        "python -m workflow_scripts.fetch.latest_snapshot --snapshot latest --out {output} --settings {params.settings:q}"
        " > {log} 2>&1"


rule fetch:
    """One monthly snapshot + the taxonomy DwC-A, verified, with manifest.json."""
    input:
        source=local_input(config["fetch"]["source"]),
        latest=latest_resolution,
    output:
        raw=directory(contracts.raw(SNAPSHOT)),
        provenance=provenance(contracts.raw(SNAPSHOT)),
    log:
        f"{LOGS}/fetch/{{date}}.log",
    conda:
        "../envs/data.yaml"
    resources:
        mem_mb=1000,
        runtime=600,
    params:
        snapshot=snapshot_spec,
        settings=Section(config, "fetch"),
    shell:
        "python -m workflow_scripts.fetch --snapshot {params.snapshot} --expect-date {wildcards.date} --out {output.raw}"
        " --settings {params.settings:q} --date {wildcards.date} --provenance {output.provenance} > {log} 2>&1"
