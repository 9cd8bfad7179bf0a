from pathlib import Path


rule fetch:
    """One monthly snapshot + the taxonomy DwC-A, verified, with manifest.json."""
    input:
        # the generated mirror when fetching from the sample; nothing for S3 or a user's folder
        mirror=sample_mirror_input(config),
    output:
        directory(f"{DATA}/snapshots/{{date}}/raw"),
    params:
        source=lambda wildcards: source_location(config),
        spec=lambda wildcards: SNAPSHOTS.get(wildcards.date, wildcards.date),
        snapshots_dir=lambda wildcards, output: Path(output[0]).parent.parent,
        options=" ".join(fetch_options(config)),
    log:
        f"{LOGS}/fetch/{{date}}.log",
    conda:
        "../envs/data.yaml"
    resources:
        mem_mb=1000,
        runtime=600,
    shell:
        "python -m workflow_scripts.fetch --source {params.source} --snapshot {params.spec}"
        " --expect-date {wildcards.date} --snapshots-dir {params.snapshots_dir} {params.options}"
        " > {log} 2>&1"
