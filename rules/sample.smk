rule sample_snapshot:
    """The embedded default: a deterministic two-month sample in the bucket's layout."""
    output:
        # The mirror folder is written beside this list of its files' sha256 and is not declared:
        # DVC versions the list instead of ~30,000 small files, so a `dvc pull` leaves nothing for
        # Snakemake to redo. After a pull, `snakemake --forcerun sample_snapshot` brings the folder back.
        checksums=f"{mirror_dir(config)}.sha256",
    params:
        mirror=lambda wildcards, output: str(Path(output.checksums).with_suffix("")),
        seed=config["sample"]["seed"],
        months=config["sample"]["months"],
        scale=config["sample"]["scale"],
        image_size=config["sample"]["image_size"],
    log:
        f"{LOGS}/sample_snapshot.log",
    conda:
        "../envs/data.yaml"
    threads: 2
    resources:
        mem_mb=3000,
        runtime=15,
    shell:
        "python -m workflow_scripts.sample_snapshot --out {params.mirror} --checksums {output.checksums}"
        " --seed {params.seed} --months {params.months} --scale {params.scale}"
        " --image-size {params.image_size} --workers {threads} > {log} 2>&1"
