rule clip_benchmark_export:
    """One evaluation benchmark in clip_benchmark's webdataset layout: the images, class names and
    prompts our evaluation uses, and a manifest of photo_id -> class."""
    input:
        unpack(exported_benchmark),
    output:
        export=directory(contracts.clip_benchmark_export(SNAPSHOT)),
        provenance=provenance(contracts.clip_benchmark_export(SNAPSHOT)),
    log:
        f"{LOGS}/clip_benchmark_export/{{date}}/{{benchmark}}.log",
    conda:
        "../envs/train.yaml"
    resources:
        mem_mb=2000,
        runtime=120,
    params:
        settings=Section(config, "export"),
        external=Section(config, "evaluate", "external"),
    shell:
        "python -m workflow_scripts.export.clip_benchmark_export --benchmark {wildcards.benchmark}"
        " --shards {input.shards} --tables {input.tables}"
        " --settings {params.settings:q} --external {params.external:q} --out {output.export}"
        " --date {wildcards.date} --provenance {output.provenance} > {log} 2>&1"


rule inat_export:
    """One subset in the iNaturalist 2021 competition format: a COCO-style JSON per set (Train: its
    splits) and the images under the format's folder layout."""
    input:
        shards=rules.shards.output.shards,
        table=contracts.subset_table(SNAPSHOT, "{subset}"),
    output:
        export=directory(contracts.inat_export(SNAPSHOT)),
        provenance=provenance(contracts.inat_export(SNAPSHOT)),
    log:
        f"{LOGS}/inat_export/{{date}}/{{subset}}.log",
    conda:
        "../envs/data.yaml"
    resources:
        mem_mb=4000,
        runtime=600,
    params:
        subsets=Section(config, "subsets"),
    shell:
        "python -m workflow_scripts.export.inat_export --shards {input.shards} --table {input.table} --subset {wildcards.subset}"
        " --subsets {params.subsets:q} --out {output.export} --date {wildcards.date}"
        " --provenance {output.provenance} > {log} 2>&1"
