import json


rule train:
    """One CLIP recipe on a snapshot's Train shards with open_clip_train; resources from the recipe
    (profiles/slurm/ maps them to sbatch flags)."""
    input:
        shards=f"{DATA}/snapshots/{{date}}/shards/train",
    output:
        checkpoint=f"{MODELS}/{{date}}/{{recipe}}/checkpoint.pt",
        argv=f"{MODELS}/{{date}}/{{recipe}}/argv.json",
        metrics=f"{MODELS}/{{date}}/{{recipe}}/metrics.json",
    params:
        launcher=lambda wildcards: train_launcher(recipe(wildcards)),
        settings=json.dumps(config["train"]),
    log:
        f"{LOGS}/train/{{date}}/{{recipe}}.log",
    threads: lambda wildcards: recipe(wildcards)["threads"]
    conda:
        "../envs/train.yaml"
    resources:
        mem_mb=lambda wildcards: recipe(wildcards)["mem_mb"],
        runtime=lambda wildcards: recipe(wildcards)["runtime"],
        gpu=lambda wildcards: recipe(wildcards)["gpu"],
        cpus_per_gpu=lambda wildcards: recipe(wildcards)["cpus_per_gpu"],
        nodes=lambda wildcards: recipe(wildcards)["nodes"],
        tasks=lambda wildcards: recipe(wildcards)["nodes"] * max(1, recipe(wildcards)["gpu"]),
    shell:
        "OMP_NUM_THREADS={threads} {params.launcher} -m workflow_scripts.train --shards {input.shards}"
        " --out $(dirname {output.checkpoint}) --recipe {wildcards.recipe} --settings {params.settings:q}"
        " --threads {threads} > {log} 2>&1"
