rule download:
    """One subset's images with img2dataset, once its leak check has passed, and a report of every
    failure (fails below images.min_success_rate)."""
    input:
        subset=contracts.subset_table(SNAPSHOT, "{subset}"),
        leak_check=rules.check_overlap.output.report,
        host=local_input((config["images"]["url_rewrite"] or {}).get("to")),
    output:
        report=f"{contracts.images(SNAPSHOT)}/{contracts.DOWNLOAD_REPORT}",
        provenance=provenance(contracts.images(SNAPSHOT)),
    log:
        f"{LOGS}/download/{{date}}/{{subset}}.log",
    conda:
        "../envs/data.yaml"
    resources:
        mem_mb=4000,
        runtime=24 * 60,
    params:
        out=output_folder,
        settings=Section(config, "images"),
    shell:
        "python -m workflow_scripts.images.download --subset {input.subset} --out {params.out}"
        " --settings {params.settings:q} --date {wildcards.date} --provenance {output.provenance} > {log} 2>&1"


rule check_image_overlap:
    """The subsets' leak checks again, and exact duplicate images (by sha256) between subsets and
    inside Train: Train's copies of an evaluation image are named for the shards to leave out.
    """
    input:
        tables=[contracts.subset_table(SNAPSHOT, subset) for subset in SUBSETS],
        downloads=expand(
            rules.download.output.report, subset=SUBSETS, allow_missing=True
        ),
    output:
        report=contracts.image_leak_report(SNAPSHOT),
        provenance=provenance(contracts.image_leak_report(SNAPSHOT)),
    log:
        f"{LOGS}/overlap/{{date}}-images.log",
    conda:
        "../envs/data.yaml"
    resources:
        mem_mb=4000,
        runtime=60,
    shell:
        "python -m workflow_scripts.images.duplicates --subsets {input.tables} --downloads {input.downloads}"
        " --out {output.report} --date {wildcards.date} --provenance {output.provenance} > {log} 2>&1"


rule shards:
    """Webdataset shards of one subset in semi-global order, with every caption type; the species
    mixing per batch of that order against a local shuffle (Figure 5c)."""
    input:
        subset=contracts.subset_table(SNAPSHOT, "{subset}"),
        download=rules.download.output.report,
        image_overlap=rules.check_image_overlap.output.report,
    output:
        shards=directory(contracts.shards(SNAPSHOT)),
        provenance=provenance(contracts.shards(SNAPSHOT)),
    log:
        f"{LOGS}/shards/{{date}}/{{subset}}.log",
    conda:
        "../envs/data.yaml"
    threads: 8  # worker processes writing shards (capped at --cores); the bytes do not depend on it
    resources:
        mem_mb=8000,
        runtime=12 * 60,
    params:
        settings=Section(config, "shards"),
    shell:
        "python -m workflow_scripts.images.shards --subset {input.subset} --download {input.download}"
        " --image-overlap {input.image_overlap} --out {output.shards} --settings {params.settings:q}"
        " --processes {threads} --date {wildcards.date} --provenance {output.provenance} > {log} 2>&1"
