"""Read the generated mirror's tables back (for tests and bench/, not pipeline code)."""

from __future__ import annotations

import csv
import io
import tarfile
from pathlib import Path

import pandas as pd


def read_tsv(data: bytes) -> pd.DataFrame:
    """An iNat table as strings: TAB, no quoting, empty stays ''."""
    return pd.read_csv(io.BytesIO(data), sep="\t", quoting=csv.QUOTE_NONE, dtype=str, keep_default_na=False)


def bundle_tables(mirror: Path, day: str) -> dict[str, bytes]:
    """The four tables of a month's bundle, as bytes."""
    folder = f"inaturalist-open-data-{day.replace('-', '')}"
    with tarfile.open(mirror / "metadata" / f"{folder}.tar.gz") as tar:
        return {t: tar.extractfile(f"{folder}/{t}.csv").read() for t in ("photos", "observations", "taxa", "observers")}


def month_tables(mirror: Path, day: str) -> dict[str, pd.DataFrame]:
    return {table: read_tsv(data) for table, data in bundle_tables(mirror, day).items()}


def species_of(taxa: pd.DataFrame) -> dict[str, str]:
    """taxon_id -> the id of its ancestor-or-self at rank species (infraspecific rolled up)."""
    rank = dict(zip(taxa.taxon_id, taxa["rank"]))
    result = {}
    for taxon_id, ancestry in zip(taxa.taxon_id, taxa.ancestry):
        lineage = ancestry.split("/") + [taxon_id] if ancestry else [taxon_id]
        hits = [t for t in lineage if rank.get(t) == "species"]
        if hits:
            result[taxon_id] = hits[-1]
    return result


def good_images_per_species(tables: dict[str, pd.DataFrame], cutoff: str = "2024-01-27") -> pd.Series:
    """Research-grade, CC0/CC-BY/CC-BY-NC photos observed before the cutoff, per species id."""
    obs = tables["observations"]
    obs = obs[(obs.quality_grade == "research") & (obs.observed_on != "") & (obs.observed_on < cutoff)]
    photos = tables["photos"]
    photos = photos[photos.license.isin(["CC0", "CC-BY", "CC-BY-NC"])]
    joined = photos.merge(obs, on="observation_uuid")
    joined["species"] = joined.taxon_id.map(species_of(tables["taxa"]))
    return joined.dropna(subset=["species"]).groupby("species").photo_id.nunique()
