rule sample_snapshot:
    """The embedded default: a deterministic two-month sample in the bucket's layout."""
    output:
        mirror=directory(mirror_dir(config)),
        # what DVC tracks instead of the mirror's ~30,000 small files (see dvc.yaml)
        checksums=f"{mirror_dir(config)}.sha256",
    params:
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
        "python -m workflow_scripts.sample_snapshot --out {output.mirror} --checksums {output.checksums}"
        " --seed {params.seed} --months {params.months} --scale {params.scale}"
        " --image-size {params.image_size} --workers {threads} > {log} 2>&1"
