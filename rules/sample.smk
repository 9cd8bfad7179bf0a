rule sample_snapshot:
    """The embedded default: a deterministic two-month sample in the bucket's layout."""
    output:
        directory(mirror_dir(config)),
    params:
        seed=config["sample"]["seed"],
        months=config["sample"]["months"],
        scale=config["sample"]["scale"],
        image_size=config["sample"]["image_size"],
    log:
        f"{LOGS}/sample_snapshot.log",
    conda:
        "../envs/data.yaml"
    resources:
        mem_mb=3000,
        runtime=15,
    shell:
        "python -m workflow_scripts.sample_snapshot --out {output} --seed {params.seed}"
        " --months {params.months} --scale {params.scale} --image-size {params.image_size}"
        " > {log} 2>&1"
