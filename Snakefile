# BioTrove from iNaturalist Open Data. One rules/<stage>.smk per stage; the work itself is
# done by `python -m workflow_scripts.<stage>`. Targets: `all` (default), or any output path.
from snakemake.utils import min_version

min_version("9.0")


configfile: "config.yaml"


report: "report/workflow.rst"


include: "rules/common.smk"
include: "rules/sample.smk"
include: "rules/fetch.smk"
include: "rules/curate.smk"
include: "rules/stats.smk"
include: "rules/subsets.smk"
include: "rules/images.smk"
include: "rules/train.smk"
include: "rules/evaluate.smk"
include: "rules/diff.smk"


localrules:
    all,


rule all:
    input:
        expand(f"{DATA}/snapshots/{{date}}/stats", date=SNAPSHOTS),
        expand(f"{DATA}/snapshots/{{date}}/overlap_report.json", date=SNAPSHOTS),
        expand(f"{RESULTS}/{{date}}/tables/table7_balanced_species.md", date=SNAPSHOTS),
        expand(f"{DATA}/snapshots/{{date}}/shards/{{subset}}", date=SNAPSHOTS, subset=config["images"]["subsets"]),
        expand(f"{MODELS}/{{date}}/{{recipe}}/checkpoint.pt", date=SNAPSHOTS, recipe=config["train"]["run"]),
        expand(f"{RESULTS}/{{date}}/metrics.json", date=SNAPSHOTS),
        # each snapshot against the one before it
        [f"{RESULTS}/diff/{a}_vs_{b}/report.md" for a, b in zip(sorted(SNAPSHOTS), sorted(SNAPSHOTS)[1:])],
