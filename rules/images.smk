rule download_chunk:
    """One chunk of a subset's images (images.urls_per_job of its rows, once its overlap check has
    passed): those the image store holds from the previous snapshot reused, the others downloaded
    with img2dataset (its retryable failures tried again), checked and packed into the store. A
    temporary folder: deleted once the shards hold its images (snakemake --notemp keeps it).
    """
    input:
        subset=contracts.subset_table(SNAPSHOT, "{subset}"),
        overlap_report=rules.check_overlap.output.report,
        host=local_input((config["images"]["url_rewrite"] or {}).get("to")),
        previous=previous_store_index,
    output:
        temp(directory(contracts.chunk_folder(IMAGES))),
    log:
        f"{LOGS}/download/{{date}}/{{subset}}/{{chunk}}.log",
    conda:
        "../envs/data.yaml"
    threads: config["images"]["processes"]  # img2dataset's processes
    resources:
        mem_mb=config["images"]["mem_mb"],
        runtime=24 * 60,
        downloads=1,  # `snakemake --resources downloads=N`: N jobs at once, the bucket's request rate
    params:
        settings=Section(config, "images"),
        store=STORE,
        previous=previous_index_option,
    shell:
        "python -m workflow_scripts.images.download_chunk --subset {input.subset} --chunk {wildcards.chunk} --out {output}"
        " --store {params.store:q} {params.previous}"
        " --settings {params.settings:q} --date {wildcards.date} > {log} 2>&1"


rule download_report:
    """A subset's downloads put together: the download report (per chunk and in total), the
    failure ledger and the images' perceptual hashes; fails below images.min_success_rate.
    """
    input:
        chunks=downloaded_chunks,
    output:
        report=f"{IMAGES}/{contracts.DOWNLOAD_REPORT}",
        failures=f"{IMAGES}/{contracts.FAILURES}",
        hashes=f"{IMAGES}/{contracts.HASHES}",
        provenance=provenance(IMAGES),
    log:
        f"{LOGS}/download/{{date}}/{{subset}}/report.log",
    conda:
        "../envs/data.yaml"
    resources:
        mem_mb=4000,
        runtime=60,
    params:
        out=output_folder,
        settings=Section(config, "images"),
    shell:
        "python -m workflow_scripts.images.download_report --chunks {input.chunks}"
        " --out {params.out} --settings {params.settings:q} --date {wildcards.date}"
        " --provenance {output.provenance} > {log} 2>&1"


rule store_index:
    """The image store's index after a snapshot: every image its subsets' chunks hold (reused or
    new) and what the store kept from earlier ones (images.store_snapshots), with a report of
    what the snapshot reused, downloaded and dropped, and the store's size before and after.
    """
    input:
        chunks=every_subsets_chunks,
        previous=previous_store_index,
    output:
        index=contracts.store_index(STORE),
        report=contracts.store_report(STORE),
        provenance=provenance(contracts.store_index(STORE)),
    log:
        f"{LOGS}/download/{{date}}/store_index.log",
    conda:
        "../envs/data.yaml"
    resources:
        mem_mb=8000,  # DuckDB: the index, about 150 bytes per image
        runtime=60,
    params:
        settings=Section(config, "images"),
        store=lambda wildcards, output: contracts.store_of_index(output.index),
        previous=previous_index_option,
    shell:
        "python -m workflow_scripts.images.store_index --chunks {input.chunks} --store {params.store:q}"
        " {params.previous} --out {output.index} --report {output.report}"
        " --settings {params.settings:q} --date {wildcards.date}"
        " --provenance {output.provenance} > {log} 2>&1"


rule hash_external_benchmark:
    """The perceptual hashes of an external benchmark's images (config evaluate.external), for the
    near-duplicate check against Train."""
    input:
        metadata=lambda wildcards: config["evaluate"]["external"][wildcards.name][
            "metadata"
        ],
    output:
        contracts.external_hashes(SNAPSHOT),
    log:
        f"{LOGS}/overlap/{{date}}-external-{{name}}.log",
    conda:
        "../envs/data.yaml"
    resources:
        mem_mb=4000,
        runtime=6 * 60,
    params:
        settings=Section(config, "evaluate"),
    shell:
        "python -m workflow_scripts.images.hash_external_benchmark --benchmark {wildcards.name:q} --out {output}"
        " --settings {params.settings:q} > {log} 2>&1"


rule check_image_overlap:
    """The subsets' overlap checks again, exact duplicate images (by sha256) between subsets and inside
    Train, and near duplicates (perceptual hashes within overlap.near_duplicate_threshold) of every
    evaluation set's images in Train, the external benchmarks' too: Train's copies of an evaluation
    image are named for the shards to leave out.
    """
    input:
        tables=[contracts.subset_table(SNAPSHOT, subset) for subset in SUBSETS],
        downloads=expand(
            rules.download_report.output.report, subset=SUBSETS, allow_missing=True
        ),
        hashes=expand(
            rules.download_report.output.hashes, subset=SUBSETS, allow_missing=True
        ),
        external=expand(
            rules.hash_external_benchmark.output[0],
            name=sorted(config["evaluate"]["external"]),
            allow_missing=True,
        ),
        chunks=every_subsets_chunks,
    output:
        report=contracts.image_overlap_report(SNAPSHOT),
        pairs=report(
            f"{contracts.near_duplicates(SNAPSHOT)}.csv",
            caption="../report/near_duplicates.rst",
            category="Overlap checks",
            subcategory="{date}",
        ),
        pairs_md=f"{contracts.near_duplicates(SNAPSHOT)}.md",
        provenance=provenance(contracts.image_overlap_report(SNAPSHOT)),
    log:
        f"{LOGS}/overlap/{{date}}-images.log",
    conda:
        "../envs/data.yaml"
    threads: 8  # faiss's search threads (capped at --cores)
    resources:
        mem_mb=12000,  # an index block of 16.8 M hashes is ~5 GB, 40 M hashes 1.3 GB
        runtime=6 * 60,
    params:
        settings=Section(config, "overlap"),
    shell:
        "OMP_NUM_THREADS={threads} python -m workflow_scripts.images.check_image_overlap --subsets {input.tables}"
        " --downloads {input.downloads}"
        " --external-hashes {input.external} --out {output.report} --pairs {output.pairs}"
        " --settings {params.settings:q}"
        " --date {wildcards.date} --provenance {output.provenance} > {log} 2>&1"


rule shard_order:
    """The order a subset's shards hold its images in, computed once from metadata (temporary)."""
    input:
        subset=contracts.subset_table(SNAPSHOT, "{subset}"),
        download=rules.download_report.output.report,
        chunks=downloaded_chunks,
        image_overlap=rules.check_image_overlap.output.report,
    output:
        temp(contracts.shard_order(IMAGES)),
    log:
        f"{LOGS}/shards/{{date}}/{{subset}}/order.log",
    conda:
        "../envs/data.yaml"
    resources:
        mem_mb=8000,
        runtime=6 * 60,
    params:
        settings=Section(config, "shards"),
        store=STORE,
    shell:
        "python -m workflow_scripts.images.shard_order --subset {input.subset} --download {input.download}"
        " --image-overlap {input.image_overlap} --out {output} --store {params.store:q}"
        " --settings {params.settings:q} --date {wildcards.date} > {log} 2>&1"


rule shard_part:
    """shards.shards_per_job consecutive shards of one shard set of a subset (Train's split, or the
    whole subset; temporary: they join its shards folder)."""
    input:
        order=rules.shard_order.output[0],
        subset=contracts.subset_table(SNAPSHOT, "{subset}"),
        chunks=downloaded_chunks,
    output:
        temp(directory(contracts.shard_part(IMAGES))),
    log:
        f"{LOGS}/shards/{{date}}/{{subset}}/{{shard_set}}-{{part}}.log",
    conda:
        "../envs/data.yaml"
    threads: 8  # worker processes writing shards (capped at --cores); the bytes do not depend on it
    resources:
        mem_mb=8000,
        runtime=12 * 60,
    params:
        settings=Section(config, "shards"),
    shell:
        "python -m workflow_scripts.images.shard_part --order {input.order} --subset {input.subset}"
        " --shard-set {wildcards.shard_set} --part {wildcards.part} --out {output} --processes {threads}"
        " --settings {params.settings:q}"
        " --date {wildcards.date} > {log} 2>&1"


rule shards:
    """Webdataset shards of one subset in semi-global order, with every caption type, from its
    parts, Train's per split; the species mixing per batch of that order against a local shuffle
    (Figure 5c)."""
    input:
        parts=shard_parts,
        order=rules.shard_order.output[0],
        subset=contracts.subset_table(SNAPSHOT, "{subset}"),
        download=rules.download_report.output.report,
        image_overlap=rules.check_image_overlap.output.report,
    output:
        shards=directory(contracts.shards(SNAPSHOT)),
        provenance=provenance(contracts.shards(SNAPSHOT)),
    log:
        f"{LOGS}/shards/{{date}}/{{subset}}.log",
    conda:
        "../envs/data.yaml"
    resources:
        mem_mb=4000,
        runtime=60,
    params:
        settings=Section(config, "shards"),
    shell:
        "python -m workflow_scripts.images.shards --parts {input.parts} --order {input.order}"
        " --subset {input.subset} --download {input.download} --image-overlap {input.image_overlap}"
        " --out {output.shards} --settings {params.settings:q} --date {wildcards.date}"
        " --provenance {output.provenance} > {log} 2>&1"
