import json


rule download:
    """One subset's images with img2dataset, and a report of every failure (fails below
    images.min_success_rate). For the sample, the mirror is served locally while it runs."""
    input:
        subsets=f"{DATA}/snapshots/{{date}}/subsets",
        mirror=sample_mirror_input(config),
    output:
        report=f"{DATA}/snapshots/{{date}}/images/{{subset}}/download_report.json",
    params:
        folder=f"{DATA}/snapshots/{{date}}/images/{{subset}}",
        settings=lambda wildcards: json.dumps(config["images"]),  # a function: "{port}" is no wildcard
        serve=f"--serve {mirror_dir(config)}" if uses_sample(config) else "",
    log:
        f"{LOGS}/download/{{date}}/{{subset}}.log",
    conda:
        "../envs/data.yaml"
    resources:
        mem_mb=4000,
        runtime=24 * 60,
    shell:
        "python -m workflow_scripts.download --subset {input.subsets}/{wildcards.subset}.parquet"
        " --out {params.folder} --settings {params.settings:q} {params.serve} > {log} 2>&1"


rule check_image_overlap:
    """The subsets' leak checks again, and exact duplicate images (by sha256) between subsets and
    inside Train: Train's copies of an evaluation image are named for the shards to leave out."""
    input:
        subsets=f"{DATA}/snapshots/{{date}}/subsets",
        downloads=expand(f"{DATA}/snapshots/{{{{date}}}}/images/{{subset}}/download_report.json", subset=SUBSETS),
    output:
        f"{DATA}/snapshots/{{date}}/images/overlap_report.json",
    log:
        f"{LOGS}/overlap/{{date}}-images.log",
    conda:
        "../envs/data.yaml"
    resources:
        mem_mb=4000,
        runtime=60,
    shell:
        "python -m workflow_scripts.overlap --subsets {input.subsets} --images $(dirname {output})"
        " --out {output} > {log} 2>&1"


rule shards:
    """Webdataset shards of one subset in semi-global order, with every caption type; the species
    mixing per batch of that order against a local shuffle (Figure 5c)."""
    input:
        subsets=f"{DATA}/snapshots/{{date}}/subsets",
        download=f"{DATA}/snapshots/{{date}}/images/{{subset}}/download_report.json",
        image_overlap=f"{DATA}/snapshots/{{date}}/images/overlap_report.json",
    output:
        directory(f"{DATA}/snapshots/{{date}}/shards/{{subset}}"),
    params:
        settings=json.dumps(config["shards"]),
    log:
        f"{LOGS}/shards/{{date}}/{{subset}}.log",
    threads: 8  # worker processes writing shards (capped at --cores); the bytes do not depend on it
    conda:
        "../envs/data.yaml"
    resources:
        mem_mb=8000,
        runtime=12 * 60,
    shell:
        "python -m workflow_scripts.shards --subset {input.subsets}/{wildcards.subset}.parquet"
        " --images $(dirname {input.download}) --image-overlap {input.image_overlap} --out {output}"
        " --settings {params.settings:q} --processes {threads} > {log} 2>&1"
