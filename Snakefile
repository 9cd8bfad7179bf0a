# BioTrove from iNaturalist Open Data. One rules/<stage>.smk per stage, each running
# `python -m workflow_scripts.<stage>`; folder and file names come from
# workflow_scripts/common/contracts.py. Targets: `all` (default), or any output path.
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
include: "rules/export.smk"
include: "rules/data_card.smk"
include: "rules/diff.smk"


localrules:
    all,


rule all:
    input:
        final_outputs,
