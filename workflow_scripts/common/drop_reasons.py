"""Why curation drops a photo row: every reason curation gives (curation_report.json's `dropped`)
with its meaning, which the data card shows. The reasons are decided by curate/curate.sql (one per
row, the first that applies) and, for a photo row that breaks the file format, by the loader
(common/raw_tables.py: `unparseable_row`, `invalid_<column>` for its first bad column, or
`conflicting_photo`); a test keeps this list and theirs equal.
"""

from __future__ import annotations

from workflow_scripts.common import inat_format

DECIDED = {  # curate.sql's reasons, in the order it checks them
    "conflicting_observation": "its observation has two rows that differ in observations.csv",
    "observation_rejected": "its observation's row failed the format check",
    "observation_missing": "its observation is not in observations.csv",
    "quality_grade": "not research grade",
    "no_taxon": "its observation has no taxon",
    "conflicting_taxon": "its taxon, or an ancestor, has two rows that differ in taxa.csv",
    "taxon_rejected": "its taxon's row failed the format check",
    "taxon_missing_from_taxa": "its taxon is not in taxa.csv",
    "taxon_inactive": "its taxon is no longer active",
    "ancestor_rejected": "an ancestor of its taxon failed the format check",
    "kingdom": "outside Animalia, Plantae and Fungi",
    "license": "a license curation does not keep (config curate)",
    "conflicting_labels": "one photo in observations of different taxa",
    "duplicate_photo": "the same photo again, under another observation of the same taxon",
}
UNPARSEABLE = "unparseable_row"
CONFLICTING_PHOTO = "conflicting_photo"


def invalid(column: str) -> str:
    """The reason of a row rejected for its first column that breaks a format rule."""
    return f"invalid_{column}"


MEANINGS = {
    **DECIDED,
    UNPARSEABLE: "its row in photos.csv could not be parsed (rejects.csv: its line)",
    CONFLICTING_PHOTO: "photos.csv has rows of this photo that differ in its file (rejects.csv)",
    **{
        invalid(column): f"its row in photos.csv has an invalid {column} (rejects.csv: its line)"
        for column in inat_format.COLUMNS["photos"]
        if column in inat_format.SYNTAX or column in inat_format.VALUE_RULES
    },
}


def meaning(reason: str) -> str | None:
    """What a drop reason means; None for a reason this version does not know."""
    return MEANINGS.get(reason)
