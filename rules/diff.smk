rule diff:
    """What changed between two monthly snapshots: species, inactive taxa and their replacements,
    images per category and species, license changes, deleted photos, photos that changed subset or
    split, benchmark membership, and each model x benchmark result with its delta and intervals."""
    input:
        unpack(snapshot_pair),
    output:
        report(
            f"{RESULTS}/diff/{{previous}}_vs_{{current}}/report.md",
            caption="../report/diff.rst",
            category="Snapshot diff",
        ),
        expand(f"{RESULTS}/diff/{{{{previous}}}}_vs_{{{{current}}}}/{{name}}", name=DIFF_FILES),
        figures=[
            report(
                f"{RESULTS}/diff/{{previous}}_vs_{{current}}/{figure}.png",
                caption="../report/diff.rst",
                category="Snapshot diff",
            )
            for figure in ("images_per_category", "results")
        ],
    params:
        previous=f"{DATA}/snapshots/{{previous}}",
        current=f"{DATA}/snapshots/{{current}}",
        evaluations=lambda wildcards: (
            f"--previous-eval {RESULTS}/{wildcards.previous}/eval --current-eval {RESULTS}/{wildcards.current}/eval"
            f" --models {' '.join(shlex.quote(model) for model in EVALUATED)}"
        ),
        out=lambda wildcards, output: str(Path(output[0]).parent),
    log:
        f"{LOGS}/diff/{{previous}}_vs_{{current}}.log",
    conda:
        "../envs/data.yaml"
    resources:
        mem_mb=8000,
        runtime=120,
    shell:
        "python -m workflow_scripts.diff --previous {params.previous} --current {params.current}"
        " {params.evaluations} --out {params.out} > {log} 2>&1"
