"""The caption types the paper trains on (the authors' code, as in BioCLIP).

A sample's species is its `species` binomial (infraspecific taxa are rolled up into it by the
subsets), so "scientific" is that binomial and the epithet its last word. Ranks missing from a
lineage are left out of the taxonomic strings. A missing common name falls back to the
scientific name, then to the taxonomic string.
"""

from __future__ import annotations

from workflow_scripts.common.taxonomy import ABOVE_SPECIES

CAPTION_TYPES = (
    "com",
    "common_name",
    "sci",
    "scientific_name",
    "sci_com",
    "taxon",
    "taxonomic_name",
    "taxonTag",
    "taxon_com",
    "taxonTag_com",
)


def species_names(row: dict) -> dict[str, str]:
    """A row's species as its scientific name, its taxonomic string (ranks and epithet) and its
    common name (the scientific name when it has none)."""
    scientific = row["species"] or row["scientific_name"]
    taxonomic = " ".join(
        [row[rank] for rank in ABOVE_SPECIES if row.get(rank)] + [scientific.split()[-1]]
    )
    return {
        "scientific": scientific,
        "taxonomic": taxonomic,
        "common": row.get("common_name") or scientific,
    }


def captions(row: dict) -> dict[str, str]:
    """Every caption type for one curated row (a mapping with the curated taxonomy columns)."""
    names = species_names(row)
    scientific, taxonomic, common = names["scientific"], names["taxonomic"], names["common"]
    epithet = scientific.split()[-1]
    tagged = " ".join(
        [f"{rank} {row[rank]}" for rank in ABOVE_SPECIES if row.get(rank)] + [f"species {epithet}"]
    )
    return {
        "com": f"a photo of {common}.",
        "common_name": f"{common}.",
        "sci": f"a photo of {scientific}.",
        "scientific_name": f"{scientific}.",
        "sci_com": f"a photo of {scientific} with common name {common}.",
        "taxon": f"a photo of {taxonomic}.",
        "taxonomic_name": f"{taxonomic}.",
        "taxonTag": f"a photo of {tagged}.",
        "taxon_com": f"a photo of {taxonomic} with common name {common}.",
        "taxonTag_com": f"a photo of {tagged} with common name {common}.",
    }
