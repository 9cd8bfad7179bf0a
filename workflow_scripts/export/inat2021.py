"""Deprecated name of `python -m workflow_scripts.export.inat_export`."""

from workflow_scripts.common.renamed import run_as

if __name__ == "__main__":
    run_as(__spec__.name, "workflow_scripts.export.inat_export")
