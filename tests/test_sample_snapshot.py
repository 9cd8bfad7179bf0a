"""The generated sample: deterministic, bucket-shaped, realistic, with every planted quirk."""

from __future__ import annotations

import csv
import gzip
import hashlib
import io
import tarfile
import zipfile
from pathlib import Path
from urllib.error import HTTPError
from urllib.request import urlopen

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from tests.sample_tables import good_images_per_species, month_tables, read_tsv
from workflow_scripts.common.contracts import (
    SAMPLE_BUCKET,
    SAMPLE_LIFESTAGES,
    SAMPLE_PHOTOS,
    sample_photos_as_of,
)
from workflow_scripts.common.inat_format import LICENSES
from workflow_scripts.images.photo_server import serving
from workflow_scripts.sample.bucket import generate
from workflow_scripts.sample.images import PLACEHOLDER, PLACEHOLDER_SIZE

M1, M2 = "2024-08-27", "2024-09-27"
CATEGORY_IDS = {
    "Aves": "3",
    "Arachnida": "47119",
    "Insecta": "47158",
    "Reptilia": "26036",
    "Mollusca": "47115",
    "Plantae": "47126",
    "Fungi": "47170",
}


@pytest.fixture(scope="module")
def m1(mirror):
    return month_tables(mirror, M1)


@pytest.fixture(scope="module")
def m2(mirror):
    return month_tables(mirror, M2)


def tree_hashes(root: Path) -> dict[str, str]:
    return {
        p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def test_same_seed_gives_identical_bytes(tmp_path):
    generate(tmp_path / "a", {"seed": 7, "scale": 0.05})
    generate(tmp_path / "b", {"seed": 7, "scale": 0.05}, workers=2)  # same bytes however rendered
    assert sorted(p.name for p in (tmp_path / "a").iterdir()) == [
        "bucket",
        "observations-lifestages.csv",
        "planted.json",
    ]
    first = tree_hashes(tmp_path / "a")
    assert first == tree_hashes(tmp_path / "b")
    assert "bucket/photos.tar" in first and not (tmp_path / "a" / "bucket" / "photos").exists()
    generate(tmp_path / "c", {"seed": 8, "scale": 0.05})
    assert tree_hashes(tmp_path / "c")["bucket/photos.csv.gz"] != first["bucket/photos.csv.gz"]


def test_bucket_layout(mirror):
    for table in ("photos", "observations", "taxa", "observers"):
        assert (mirror / f"{table}.csv.gz").is_file()
    bundles = sorted(p.name for p in (mirror / "metadata").iterdir())
    assert bundles == [
        "inaturalist-open-data-20240827.tar.gz",
        "inaturalist-open-data-20240927.tar.gz",
        "inaturalist-open-data-latest.tar.gz",
    ]
    latest = (mirror / "metadata" / "inaturalist-open-data-latest.tar.gz").read_bytes()
    assert latest == (mirror / "metadata" / "inaturalist-open-data-20240927.tar.gz").read_bytes()
    # gzip and tar headers carry no wall-clock time
    assert (mirror / "photos.csv.gz").read_bytes()[4:8] == b"\0\0\0\0"


def test_photos_are_one_pack_served_at_the_bucket_urls(photo_bucket, photos):
    """The photos sit in one tar (DVC tracks one file) in photo_id order, with no time, owner or
    mode of the machine; the local server answers the bucket's URLs from it, and 404 else."""
    with tarfile.open(photo_bucket / SAMPLE_PHOTOS) as tar:
        headers = tar.getmembers()
    assert {(m.mtime, m.uid, m.gid, m.uname, m.gname, m.mode) for m in headers} == {
        (0, 0, 0, "", "", 0o644)
    }
    ids = [int(m.name.split("/")[1]) for m in headers]
    assert ids == sorted(ids) and len(ids) == len(photos) > 20_000
    assert not (photo_bucket / "photos").exists()
    key = next(iter(photos))
    with serving(photo_bucket) as port:
        assert urlopen(f"http://127.0.0.1:{port}/{key}").read() == photos[key]
        assert urlopen(f"http://127.0.0.1:{port}/photos.csv.gz").read() == (
            (photo_bucket / "photos.csv.gz").read_bytes()
        )
        with pytest.raises(HTTPError, match="404"):
            urlopen(f"http://127.0.0.1:{port}/photos/1/none.jpg")


def test_the_sample_without_photos_is_the_sample_but_its_photo_pack(sample, sample_metadata):
    """What the `sample_metadata` fixture stands in for, byte for byte."""
    whole = tree_hashes(sample)
    assert whole.pop(f"{SAMPLE_BUCKET}/{SAMPLE_PHOTOS}")
    assert whole.pop(f"{SAMPLE_BUCKET}/{sample_photos_as_of(M1)}")
    assert tree_hashes(sample_metadata) == whole


def test_a_rotated_and_a_replaced_photo_change_their_files_under_the_same_id(
    photo_bucket, photos, planted, m1, m2
):
    """Month 2 rotates one photo (width and height swap, new bytes) and replaces another by the
    placeholder image (the metadata gives the placeholder's size); the server serves month 1's
    files as of month 1 (its own pack) and month 2's otherwise."""
    rotated, replaced = planted["rotated_photo"], planted["placeholder_photo"]
    sizes = {
        month: frame.set_index("photo_id")[["width", "height"]].astype(int)
        for month, frame in ((M1, m1["photos"]), (M2, m2["photos"]))
    }
    assert tuple(sizes[M2].loc[str(rotated)]) == tuple(sizes[M1].loc[str(rotated)])[::-1]
    assert tuple(sizes[M2].loc[str(replaced)]) == PLACEHOLDER_SIZE
    rotated_key, replaced_key = (f"photos/{photo}/medium.jpg" for photo in (rotated, replaced))
    assert photos[replaced_key] == PLACEHOLDER
    with serving(photo_bucket, as_of=M1) as port:
        before = {
            key: urlopen(f"http://127.0.0.1:{port}/{key}").read()
            for key in (rotated_key, replaced_key)
        }
    assert Image.open(io.BytesIO(before[replaced_key])).format == "JPEG"
    now, then = (
        Image.open(io.BytesIO(data)) for data in (photos[rotated_key], before[rotated_key])
    )
    assert now.size == then.size[::-1] and now.size[0] != now.size[1]
    rotated_back = np.rot90(np.asarray(now.convert("L"), dtype=float), -1)
    before_pixels = np.asarray(then.convert("L"), dtype=float)
    # the same picture, but for JPEG's noise; turned the other way it is another picture
    assert (
        np.abs(rotated_back - before_pixels).mean()
        < 0.2 * np.abs(rotated_back[::-1, ::-1] - before_pixels).mean()
    )


def test_root_tables_are_the_newer_month(mirror, m2):
    for table, frame in m2.items():
        assert read_tsv(gzip.decompress((mirror / f"{table}.csv.gz").read_bytes())).equals(frame)


def test_size_and_long_tail(m1, m2):
    assert len(m1["photos"]) >= 20_000 and len(m2["photos"]) >= 20_000
    counts = good_images_per_species(m1)
    species = m1["taxa"][(m1["taxa"]["rank"] == "species") & (m1["taxa"].active == "true")]
    assert len(species) >= 300
    assert (counts >= 200).sum() >= 5  # a few very common species
    assert ((counts >= 30) & (counts < 200)).sum() >= 100  # Train
    assert ((counts >= 10) & (counts < 30)).sum() >= 50  # Unseen
    assert (counts < 10).sum() >= 30  # too rare for anything


def test_taxonomy_shape(m1):
    taxa = m1["taxa"]
    life = taxa[taxa.taxon_id == "48460"].iloc[0]
    assert (life.ancestry, life["rank"], life.rank_level) == ("", "stateofmatter", "100")
    kingdoms = set(taxa[taxa["rank"] == "kingdom"].name)
    assert {"Animalia", "Plantae", "Fungi"} < kingdoms and len(kingdoms) >= 4
    assert set(CATEGORY_IDS.values()) <= set(taxa.taxon_id)
    ranks = set(taxa["rank"])
    assert {
        "subphylum",
        "superfamily",
        "tribe",
        "subgenus",
        "complex",
        "subspecies",
        "variety",
        "hybrid",
    } <= ranks
    assert (taxa.active == "false").any()
    # intermediate ranks vary by lineage: count the ranks above each species
    rank_of = dict(zip(taxa.taxon_id, taxa["rank"]))
    depths = {
        tuple(rank_of[a] for a in anc.split("/"))
        for anc in taxa[taxa["rank"] == "species"].ancestry
    }
    assert len(depths) >= 10
    for category_id in CATEGORY_IDS.values():  # every category has species
        assert (
            taxa[
                (taxa["rank"] == "species")
                & taxa.ancestry.str.split("/").apply(lambda a, c=category_id: c in a)
            ].shape[0]
            > 5
        )


def test_real_file_quirks(m1, planted):
    photos, obs, taxa, observers = m1["photos"], m1["observations"], m1["taxa"], m1["observers"]
    assert set(photos.license) == set(LICENSES)
    assert set(obs.quality_grade) == {"research", "needs_id", "casual"}
    assert {"jpg", "JPG", "jpeg", "png"} <= set(photos.extension)
    assert (obs.observed_on == "").any()
    by_photo = photos.merge(obs[["observation_uuid", "taxon_id"]], on="observation_uuid")
    duplicated = (
        by_photo[by_photo.photo_id.duplicated(keep=False)].groupby("photo_id").taxon_id.nunique()
    )
    assert (duplicated == 1).sum() >= 5 and (duplicated > 1).sum() >= 5
    assert (
        sorted(duplicated[duplicated == 1].index.astype(int))
        == planted["duplicate_photo_ids_agreeing"]
    )
    assert (
        sorted(duplicated[duplicated > 1].index.astype(int))
        == planted["duplicate_photo_ids_conflicting"]
    )
    orphans = set(photos.observation_uuid) - set(obs.observation_uuid)
    assert len(orphans) == len(planted["orphan_photo_ids"]) == 20
    assert taxa.name.str.contains('"').any() and taxa.name.str.contains("×").any()
    assert (observers.login != "").all() and observers.login.is_unique
    assert observers.name.str.contains("[^\\x00-\\x7f]").any() and (observers.name == "").any()
    assert set(observers.observer_id) == set(obs.observer_id) | set(photos.observer_id)
    assert ((obs.latitude == "") & (obs.longitude == "")).any()
    genus_ids = set(taxa[taxa["rank"] == "genus"].taxon_id)
    assert (obs[obs.quality_grade == "research"].taxon_id.isin(genus_ids)).sum() >= 20
    assert not set(planted["taxon_ids_missing_from_taxa"]) & set(taxa.taxon_id.astype(int))
    assert obs.taxon_id.astype(int).isin(planted["taxon_ids_missing_from_taxa"]).sum() == 5
    assert (obs.anomaly_score != "").mean() > 0.9


def test_month_two_changes(photos, m1, m2, planted):
    swap = planted["taxon_swap"]
    old, new = str(swap["old_taxon_id"]), str(swap["new_taxon_id"])
    active = {m: dict(zip(t["taxa"].taxon_id, t["taxa"].active)) for m, t in ((1, m1), (2, m2))}
    assert active[1][old] == "true" and new not in active[1]
    assert active[2][old] == "false" and active[2][new] == "true"
    assert not (m2["observations"].taxon_id == old).any()
    assert (
        (m2["observations"].taxon_id == new).sum() == (m1["observations"].taxon_id == old).sum() > 0
    )

    new_obs = set(m2["observations"].observation_uuid) - set(m1["observations"].observation_uuid)
    assert new_obs == set(planted["new_observations"])
    grades = m1["observations"].merge(m2["observations"], on="observation_uuid")
    changed = grades[grades.quality_grade_x != grades.quality_grade_y]
    assert len(changed) == 20

    deleted = set(m1["photos"].photo_id) - set(m2["photos"].photo_id)
    assert deleted == {str(p) for p in planted["deleted_photo_ids"]}
    for photo_id in deleted:  # the bucket lost their images too
        assert not any(key.startswith(f"photos/{photo_id}/") for key in photos)
    licences = m1["photos"].merge(m2["photos"], on=["photo_id", "observation_uuid"])
    moved = licences[licences.license_x != licences.license_y]
    assert dict(zip(moved.photo_id, zip(moved.license_x, moved.license_y))) == {
        k: tuple(v) for k, v in planted["license_changes"].items()
    }
    assert len(m2["observers"]) > len(m1["observers"])
    # one species crosses the Train minimum of 30 through late uploads of old photos
    late = str(planted["late_upload_species"])
    before, after = (
        good_images_per_species(m1).get(late, 0),
        good_images_per_species(m2).get(late, 0),
    )
    assert before < 30 <= after


def test_images_exist_and_depend_on_species(photos, m2, planted):
    png_named_jpg = {str(p) for p in planted["photo_ids_png_named_jpg"]}
    rows = m2["photos"].merge(
        m2["observations"][["observation_uuid", "taxon_id"]], on="observation_uuid"
    )
    unique = rows.sort_values("photo_id").drop_duplicates("photo_id")
    sample = pd.concat(
        [unique.head(300), unique[unique.extension.isin(["png", "gif", "JPG", "jpeg"])].head(60)]
    )
    for row in sample.itertuples():
        with Image.open(
            io.BytesIO(photos[f"photos/{row.photo_id}/medium.{row.extension}"])
        ) as image:
            assert max(image.size) == 64
            expected = (
                "PNG"
                if row.photo_id in png_named_jpg
                else {"png": "PNG", "gif": "GIF"}.get(row.extension, "JPEG")
            )
            assert image.format == expected

    def mean_colour(row) -> np.ndarray:
        with Image.open(
            io.BytesIO(photos[f"photos/{row.photo_id}/medium.{row.extension}"])
        ) as image:
            return np.asarray(image.convert("RGB"), dtype=float).mean(axis=(0, 1))

    top = rows.taxon_id.value_counts().index[:8]
    colours = {
        t: np.array([mean_colour(r) for r in rows[rows.taxon_id == t].head(6).itertuples()])
        for t in top
    }
    within = np.mean([np.linalg.norm(c - c.mean(axis=0), axis=1).mean() for c in colours.values()])
    centres = np.array([c.mean(axis=0) for c in colours.values()])
    between = np.mean(
        [np.linalg.norm(a - b) for i, a in enumerate(centres) for b in centres[i + 1 :]]
    )
    assert between > 2 * within


def test_png_content_named_jpg_is_planted(photos, planted):
    for photo_id in planted["photo_ids_png_named_jpg"]:
        with Image.open(io.BytesIO(photos[f"photos/{photo_id}/medium.jpg"])) as image:
            assert image.format == "PNG"


def test_reuploaded_images_are_byte_identical_and_no_others(photos, planted):
    def image(photo_id) -> bytes:
        (data,) = [data for key, data in photos.items() if key.startswith(f"photos/{photo_id}/")]
        return data

    reuploads = planted["reuploaded_images"]
    assert len(reuploads) == 12
    assert all(image(again) == image(original) for again, original in reuploads.items())
    digests = [hashlib.sha256(data).digest() for data in photos.values()]
    assert len(digests) - len(set(digests)) == 12


def test_taxonomy_archive(mirror, m2):
    with zipfile.ZipFile(mirror / "inaturalist-taxonomy.dwca.zip") as archive:
        assert sorted(archive.namelist()) == [
            "VernacularNames-english.csv",
            "VernacularNames-spanish.csv",
            "eml.xml",
            "meta.xml",
            "taxa.csv",
        ]
        taxa = list(csv.DictReader(io.TextIOWrapper(archive.open("taxa.csv"), encoding="utf-8")))
        english = list(
            csv.DictReader(
                io.TextIOWrapper(archive.open("VernacularNames-english.csv"), encoding="utf-8")
            )
        )
        spanish = archive.read("VernacularNames-spanish.csv").decode("utf-8")
    active = set(m2["taxa"][m2["taxa"].active == "true"].taxon_id)
    assert {t["id"] for t in taxa} == active  # the archive holds active taxa only
    per_taxon = {}
    for row in english:
        per_taxon[row["id"]] = per_taxon.get(row["id"], 0) + 1
    assert max(per_taxon.values()) >= 2 and sum(v >= 2 for v in per_taxon.values()) >= 10
    assert any(ord(c) > 127 for c in spanish)
    species = {t["id"]: t for t in taxa if t["taxonRank"] == "species"}
    some = next(iter(species.values()))
    assert some["scientificName"].startswith(some["genus"]) and some["kingdom"]


def test_lifestages_export(sample, photos, planted):
    """A web export, not part of the bucket: beside it."""
    rows = list(csv.DictReader(open(sample / SAMPLE_LIFESTAGES, encoding="utf-8")))
    assert len(rows) == 5 * 4 * 10
    assert {r["Life Stage"] for r in rows} == {"Egg", "Larva", "Pupa", "Adult"}
    assert {int(r["taxon_id"]) for r in rows} == set(planted["lifestage_species"])
    assert all("2024-02-01" <= r["observed_on"] <= "2024-05-20" for r in rows)
    for row in rows[:20]:
        assert row["image_url"].split(".amazonaws.com/", 1)[1] in photos
