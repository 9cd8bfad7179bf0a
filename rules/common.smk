from snakemake.utils import validate

from workflow_scripts.config import fetch_options, memory_mb, mirror_dir, snapshot_specs, source_location


validate(config, "../workflow_scripts/schemas/config.schema.yaml")

DATA = config["data_root"]
LOGS = config["logs_root"]
# {date: "YYYY-MM-DD" or "latest"}: what fetch is asked for to produce each dated snapshot
SNAPSHOTS = snapshot_specs(config)


wildcard_constraints:
    date=r"\d{4}-\d{2}-\d{2}",
