"""Read the generated mirror's tables and Parquet outputs back (for tests and bench/, not pipeline
code)."""

from __future__ import annotations

import csv
import gzip
import io
import tarfile
from pathlib import Path

import duckdb
import pandas as pd


def read_tsv(data: bytes) -> pd.DataFrame:
    """An iNat table as strings: TAB, no quoting, empty stays ''."""
    return pd.read_csv(
        io.BytesIO(data), sep="\t", quoting=csv.QUOTE_NONE, dtype=str, keep_default_na=False
    )


def parquet_rows(path: Path, sql: str = "SELECT * FROM t ORDER BY photo_id") -> list[dict]:
    """A Parquet file's rows as dicts, through `sql` over the view t."""
    con = duckdb.connect()
    con.execute(f"CREATE VIEW t AS SELECT * FROM '{path}'")
    result = con.execute(sql)
    return [dict(zip([d[0] for d in result.description], r)) for r in result.fetchall()]


def bundle_tables(mirror: Path, day: str) -> dict[str, bytes]:
    """The four tables of a month's bundle, as bytes."""
    folder = f"inaturalist-open-data-{day.replace('-', '')}"
    with tarfile.open(mirror / "metadata" / f"{folder}.tar.gz") as tar:
        return {
            t: tar.extractfile(f"{folder}/{t}.csv").read()
            for t in ("photos", "observations", "taxa", "observers")
        }


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


def good_images_per_species(
    tables: dict[str, pd.DataFrame], cutoff: str = "2024-01-27"
) -> pd.Series:
    """Research-grade, CC0/CC-BY/CC-BY-NC photos observed before the cutoff, per species id."""
    obs = tables["observations"]
    obs = obs[
        (obs.quality_grade == "research") & (obs.observed_on != "") & (obs.observed_on < cutoff)
    ]
    photos = tables["photos"]
    photos = photos[photos.license.isin(["CC0", "CC-BY", "CC-BY-NC"])]
    joined = photos.merge(obs, on="observation_uuid")
    joined["species"] = joined.taxon_id.map(species_of(tables["taxa"]))
    return joined.dropna(subset=["species"]).groupby("species").photo_id.nunique()


def tiled_snapshot(base: dict[str, bytes], rows: int, out: Path) -> Path:
    """photos/observations repeated with ids made unique per copy; taxa as they are."""
    if (out / "photos.csv.gz").exists():
        return out
    out.mkdir(parents=True, exist_ok=True)
    photo_lines = base["photos"].decode().splitlines(keepends=True)
    copies = -(-rows // (len(photo_lines) - 1))
    for table in ("photos", "observations"):
        header, *lines = base[table].decode().splitlines(keepends=True)
        with gzip.open(out / f"{table}.csv.gz", "wt", compresslevel=6, encoding="utf-8") as handle:
            handle.write(header)
            written = 0
            for copy in range(copies):
                prefix = f"{copy:08x}"  # a copy's uuids differ in their first 8 hex digits
                for line in lines:
                    if table == "photos" and written >= rows:
                        break
                    fields = line.split("\t")
                    fields[0] = prefix + fields[0][8:]
                    if table == "photos":
                        fields[1] = str(int(fields[1]) + copy * 1_000_000_000)
                        fields[2] = prefix + fields[2][8:]
                        written += 1
                    handle.write("\t".join(fields))
    (out / "taxa.csv.gz").write_bytes(gzip.compress(base["taxa"]))
    return out
