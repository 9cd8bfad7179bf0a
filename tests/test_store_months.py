"""The image store across two months of a small sample (tests/project_copy.py: small): the newer
month built after the older one, its images taken from the store where the key is the same, gives
the same bytes as the newer month built alone with every image downloaded (conftest: small_build);
and the sample's planted file changes end as the data says."""

from __future__ import annotations

import hashlib
import json
import tarfile
from pathlib import Path

import duckdb
import pytest

from tests.conftest import REPO
from tests.project_copy import MONTH, edit_config, hashes, is_provenance, run, small_project
from workflow_scripts.common import contracts
from workflow_scripts.common.config import settings
from workflow_scripts.common.duck import quote

pytestmark = pytest.mark.slow
EARLIER = "2024-08-27"
STORE = contracts.image_store("data")
# the newer month's shards (and so its overlap checks) and subset tables, and its store index (and
# so the older month's downloads: the index holds what both months stored)
TARGETS = (
    *(
        f"{contracts.shards(contracts.snapshot('data', MONTH), subset)}.provenance.json"
        for subset in contracts.SUBSETS
    ),
    contracts.store_index(STORE, MONTH),
    f"{contracts.subset_tables('results', MONTH)}.provenance.json",
)


@pytest.fixture(scope="module")
def both_months(tmp_path_factory) -> Path:
    """The small project on both sample months: the older month's images downloaded, the newer
    month's built up to its shards, each subset's in one download job and one shard job (the
    outputs compared are the same bytes however they are split: test_download, test_shards)."""
    repo = tmp_path_factory.mktemp("months") / "repo"
    small_project(REPO, repo)

    def both(config: dict) -> None:
        config.update(snapshots=[EARLIER, MONTH])
        config["images"].update(urls_per_job=10_000)
        config["shards"].update(shards_per_job=100)

    edit_config(repo, both)
    run("snakemake", *TARGETS, cwd=repo)
    return repo


def outputs(repo: Path, folder: str) -> dict[str, str]:
    """The files' hashes under `folder`, but provenance (what made them: not versioned bytes)."""
    return {
        name: digest for name, digest in hashes(repo / folder).items() if not is_provenance(name)
    }


def reports(repo: Path) -> dict[str, dict]:
    """Each subset's download report, but what the store and the chunks did."""
    found = {}
    for path in sorted((repo / "data" / "snapshots" / MONTH / "images").glob("*/*.json")):
        report = json.loads(path.read_text())
        found[path.parent.name] = {k: v for k, v in report.items() if k not in ("store", "chunks")}
    return found


def test_the_newer_month_is_the_same_bytes_through_the_store(both_months, small_build):
    alone = small_build[0]
    store = json.loads((both_months / contracts.store_report(STORE, MONTH)).read_text())
    assert store["month"]["reused"] > 0.9 * sum(store["month"].values())
    for folder in (
        f"data/snapshots/{MONTH}/shards",
        f"data/snapshots/{MONTH}/images",
        f"results/{MONTH}/subset_tables",
    ):
        ours, theirs = outputs(both_months, folder), outputs(alone, folder)
        assert ours.keys() == theirs.keys(), folder
        differ = {name for name in ours if ours[name] != theirs[name]}
        assert differ <= {f"{subset}/download_report.json" for subset in reports(alone)}, differ
    assert reports(both_months) == reports(alone)


def served(repo: Path, photo_id: int, earlier: bool) -> bytes:
    """A photo's bytes as the sample's bucket serves them in the older month or the newer."""
    bucket = repo / "data" / "sample" / contracts.SAMPLE_BUCKET
    name = f"photos/{photo_id}/medium.jpg"
    for pack in ([contracts.sample_photos_as_of(EARLIER)] if earlier else []) + [
        contracts.SAMPLE_PHOTOS
    ]:
        with tarfile.open(bucket / pack) as tar:
            if name in tar.getnames():
                return tar.extractfile(name).read()
    raise AssertionError(f"{name} is not in the sample")


def sharded(repo: Path, photo_id: int) -> set[bytes]:
    """The image bytes the newer month's shards (every subset's) hold for a photo."""
    found = set()
    for shard in sorted((repo / "data" / "snapshots" / MONTH / "shards").rglob("*.tar")):
        with tarfile.open(shard) as tar:
            for member in tar.getmembers():
                if member.name.split(".")[0] == str(photo_id) and member.name.endswith(
                    (".jpg", ".png", ".gif")
                ):
                    found.add(tar.extractfile(member).read())
    return found


def stored(repo: Path, photo_id: int) -> list[tuple]:
    """A photo's entries in the newer month's store index: (width, height, sha256, stored)."""
    index = repo / contracts.store_index(STORE, MONTH)
    return duckdb.sql(
        f"SELECT width, height, sha256, stored::VARCHAR FROM read_parquet({quote(index)}) "
        f"WHERE photo_id = {photo_id} ORDER BY stored"
    ).fetchall()


def in_subsets(repo: Path, month: str, photo_ids: list[int]) -> set[int]:
    tables = sorted((repo / "data" / "snapshots" / month / "subsets").glob("*.parquet"))
    listed = ", ".join(quote(table) for table in tables if table.stem in contracts.SUBSETS)
    rows = duckdb.sql(
        f"SELECT DISTINCT photo_id FROM read_parquet([{listed}], union_by_name = true) "
        f"WHERE photo_id IN ({', '.join(map(str, photo_ids))})"
    ).fetchall()
    return {row[0] for row in rows}


@pytest.fixture(scope="module")
def planted(both_months) -> dict:
    return json.loads((both_months / "data" / "sample" / contracts.SAMPLE_PLANTED).read_text())[
        "planted"
    ]


def test_a_rotated_photo_is_downloaded_again_and_sharded_as_it_is_now(both_months, planted):
    rotated = planted["rotated_photo"]
    earlier, now = served(both_months, rotated, True), served(both_months, rotated, False)
    assert earlier != now
    assert sharded(both_months, rotated) == {now}
    store = json.loads((both_months / contracts.store_report(STORE, MONTH)).read_text())
    assert store["month"]["redownloaded"] == 1  # the rotated photo: the placeholder fails
    kept = stored(both_months, rotated)
    assert [(sha, month) for _, _, sha, month in kept] == [
        (hashlib.sha256(earlier).hexdigest(), EARLIER),
        (hashlib.sha256(now).hexdigest(), MONTH),
    ]
    assert kept[0][:2] == kept[1][:2][::-1]  # the key that changed: width and height swapped


def test_a_photo_replaced_by_the_placeholder_is_a_counted_failure(both_months, planted):
    replaced = planted["placeholder_photo"]
    earlier = hashlib.sha256(served(both_months, replaced, True)).hexdigest()
    assert [(sha, month) for _, _, sha, month in stored(both_months, replaced)] == [
        (earlier, EARLIER)  # the older month's file, kept; the placeholder never stored
    ]
    assert not sharded(both_months, replaced)
    images = both_months / "data" / "snapshots" / MONTH / "images"
    failed = {
        folder.name: duckdb.sql(
            f"SELECT reason FROM read_parquet({quote(folder / contracts.FAILURES)}) "
            f"WHERE photo_id = {replaced}"
        ).fetchall()
        for folder in sorted(images.glob("*/"))
    }
    assert any(failed.values()), "the placeholder photo is in no newer subset"
    for subset, reasons in failed.items():
        report = json.loads((images / subset / contracts.DOWNLOAD_REPORT).read_text())
        assert report["placeholder"] == len(reasons), subset
        assert all(reason.startswith("placeholder image (sha256 ") for (reason,) in reasons)


def test_a_photo_whose_license_left_is_in_no_newer_subset(both_months, planted):
    left = [
        int(photo)
        for photo, (_, now) in planted["license_changes"].items()
        if now not in settings("curate")["licenses"]
    ]
    before = in_subsets(both_months, EARLIER, left)
    assert before, "no photo whose license left was in the older month's subsets"
    assert not in_subsets(both_months, MONTH, left)
    store = json.loads((both_months / contracts.store_report(STORE, MONTH)).read_text())
    assert store["unused"] >= len(before)
