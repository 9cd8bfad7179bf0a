rule train:
    """One CLIP recipe on a snapshot's Train shards with open_clip_train; resources from the recipe
    (profiles/slurm/ maps them to sbatch flags)."""
    input:
        shards=contracts.shards(SNAPSHOT, "train"),
    output:
        checkpoint=f"{contracts.model(MODELS)}/{contracts.CHECKPOINT}",
        argv=f"{contracts.model(MODELS)}/{contracts.TRAIN_ARGV}",
        metrics=f"{contracts.model(MODELS)}/{contracts.METRICS}",
        provenance=provenance(contracts.model(MODELS)),
    log:
        f"{LOGS}/train/{{date}}/{{recipe}}.log",
    conda:
        "../envs/train.yaml"
    threads: lambda wildcards: recipe(wildcards)["threads"]
    resources:
        mem_mb=lambda wildcards: recipe(wildcards)["mem_mb"],
        runtime=lambda wildcards: recipe(wildcards)["runtime"],
        gpu=lambda wildcards: recipe(wildcards)["gpu"],
        cpus_per_gpu=lambda wildcards: recipe(wildcards)["cpus_per_gpu"],
        nodes=lambda wildcards: recipe(wildcards)["nodes"],
        tasks=lambda wildcards: recipe(wildcards)["nodes"]
        * max(1, recipe(wildcards)["gpu"]),
    params:
        out=output_folder,
        launcher=lambda wildcards: train_launcher(recipe(wildcards)),
        settings=Section(config, "train"),
    shell:
        "OMP_NUM_THREADS={threads} {params.launcher} -m workflow_scripts.train --shards {input.shards}"
        " --out {params.out} --recipe {wildcards.recipe} --settings {params.settings:q} --threads {threads}"
        " --date {wildcards.date} --provenance {output.provenance} > {log} 2>&1"
