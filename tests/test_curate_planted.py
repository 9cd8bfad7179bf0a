"""Rows that parse but lie, planted into the sample's newer month (several of each kind, chosen from
the data with a fixed seed): every one is refused with its file and line, its photos are counted
under a reason, every other curated row is the clean run's, and the counts balance."""

from __future__ import annotations

import gzip
import random
import re
import subprocess
from pathlib import Path

import pytest

from tests.sample_tables import bundle_tables, parquet_rows
from workflow_scripts.common.contracts import TAXONOMY_ARCHIVE
from workflow_scripts.common.inat_format import COLUMNS, CONTROL, STRAY_CR
from workflow_scripts.curate.stage import CurateError, curate

MONTH = "2024-09-27"
TABLES = ("photos", "observations", "taxa")


@pytest.fixture(scope="module")
def tables(mirror) -> dict[str, list[bytes]]:
    """The month's tables as lines, each with its line end (the header first)."""
    found = bundle_tables(mirror, MONTH)
    return {table: found[table].splitlines(keepends=True) for table in TABLES}


def curated(tables: dict[str, list[bytes]], folder: Path, mirror: Path) -> tuple:
    """Curate the tables (gzipped, as fetched): the report, the rows by photo_id and rejects.csv's
    rows (file, line, reason)."""
    raw = folder / "raw"
    raw.mkdir(parents=True)
    for table, lines in tables.items():
        (raw / f"{table}.csv.gz").write_bytes(gzip.compress(b"".join(lines), mtime=0))
    report = curate(raw, folder / "out", snapshot=MONTH, taxonomy=mirror / TAXONOMY_ARCHIVE)
    rows = {row["photo_id"]: row for row in parquet_rows(folder / "out" / "curated.parquet")}
    rejects = (folder / "out" / "rejects.csv").read_text(encoding="utf-8").splitlines()[1:]
    return report, rows, [tuple(reject.split("\t")) for reject in rejects]


@pytest.fixture(scope="module")
def clean(tables, mirror, tmp_path_factory) -> tuple:
    return curated(tables, tmp_path_factory.mktemp("clean"), mirror)


def fields(line: bytes) -> list[bytes]:
    return line.rstrip(b"\r\n").split(b"\t")


def joined(values: list[bytes]) -> bytes:
    return b"\t".join(values) + b"\n"


def column(table: str, name: str) -> int:
    return COLUMNS[table].index(name)


class Month:
    """The tables to plant into, and what the clean run kept, to choose from."""

    def __init__(self, tables: dict[str, list[bytes]], clean: tuple):
        self.tables = {table: list(lines) for table, lines in tables.items()}
        self.kept = clean[1]
        self.rng = random.Random(31)
        photo_rows = [fields(line) for line in tables["photos"][1:]]
        self.uses = {}  # photo_id -> how many photo rows name it
        self.photos_of = {}  # observation_uuid -> its photo_ids
        for row in photo_rows:
            photo_id, observation = int(row[1]), row[2].decode()
            self.uses[photo_id] = self.uses.get(photo_id, 0) + 1
            self.photos_of.setdefault(observation, []).append(photo_id)
        self.ancestry = {int(f[0]): f[1].decode() for f in map(fields, tables["taxa"][1:])}

    def line_of(self, table: str, key: bytes, at: int = 0) -> int:
        """The line number (from 1) of the row whose column `at` is `key`."""
        return next(
            n for n, line in enumerate(self.tables[table], 1) if n > 1 and fields(line)[at] == key
        )

    def whole_observations(self, count: int) -> list[str]:
        """Observations all of whose photos the clean run kept under them, each photo in no other
        observation."""
        whole = sorted(
            uuid
            for uuid, photo_ids in self.photos_of.items()
            if all(
                self.uses[p] == 1 and p in self.kept and self.kept[p]["observation_uuid"] == uuid
                for p in photo_ids
            )
        )
        return self.rng.sample(whole, count)

    def descendants(self, taxon_id: int) -> set[int]:
        return {taxon_id} | {
            t for t, ancestry in self.ancestry.items() if str(taxon_id) in ancestry.split("/")
        }

    def kept_leaf_taxa(self, count: int, exclude: set[int] = frozenset()) -> list[int]:
        """Taxa with curated photos that are no other taxon's ancestor."""
        ancestors = {
            int(a) for ancestry in self.ancestry.values() if ancestry for a in ancestry.split("/")
        }
        leaves = sorted({r["taxon_id"] for r in self.kept.values()} - ancestors - set(exclude))
        return self.rng.sample(leaves, count)

    def photos_under(self, taxa: set[int]) -> set[int]:
        return {p for p, row in self.kept.items() if row["taxon_id"] in taxa}

    def row(self, table: str, line: int) -> list[bytes]:
        return fields(self.tables[table][line - 1])

    def put(self, table: str, line: int, values: list[bytes] | bytes) -> None:
        """Replace a line with these fields (joined, LF-ended), or with these bytes."""
        self.tables[table][line - 1] = values if isinstance(values, bytes) else joined(values)


def check(clean: tuple, planted: tuple, tables: dict, affected: set[int], rejected: set) -> dict:
    """The planted run against the clean one: the same rows but the affected photos', the rejected
    lines exactly, every count balanced. Returns how each drop reason's count moved."""
    report, rows, rejects = planted
    assert rows == {p: row for p, row in clean[1].items() if p not in affected}
    assert {(file, int(line)) for file, line, _ in rejects} == rejected
    assert report["photos_in"] == report["photos_out"] + sum(report["dropped"].values())
    for table in TABLES:
        lines = len(tables[table]) - 1
        assert report["rows_read"][table] + report["rejected_rows"][table] == lines, table
    for row in rows.values():
        for value in row.values():
            assert not (isinstance(value, str) and re.search(CONTROL, value)), row
    reasons = set(report["dropped"]) | set(clean[0]["dropped"])
    moved = {r: report["dropped"].get(r, 0) - clean[0]["dropped"].get(r, 0) for r in reasons}
    return {reason: change for reason, change in moved.items() if change}


def test_names_with_control_characters_or_bytes_not_utf8(tables, clean, mirror, tmp_path):
    month = Month(tables, clean)
    taxa = month.kept_leaf_taxa(4)
    planted = [b"\x1b[31m", b"\x00", "\u0085".encode(), b"\xff"]  # escape, NUL, C1, not UTF-8
    rejected = set()
    for taxon, inserted in zip(taxa, planted):
        line = month.line_of("taxa", str(taxon).encode())
        row, name = month.row("taxa", line), column("taxa", "name")
        row[name] = row[name][:3] + inserted + row[name][3:]
        month.put("taxa", line, row)
        rejected.add(("taxa.csv.gz", line))
    result = curated(month.tables, tmp_path, mirror)
    moved = check(clean, result, month.tables, month.photos_under(set(taxa)), rejected)
    assert set(moved) <= {"taxon_rejected", "license", "kingdom"} and moved["taxon_rejected"] > 0
    reasons = sorted(reason for _, _, reason in result[2])
    assert reasons[-1] == "not valid UTF-8"
    assert all(
        r.endswith("is not a valid name: at most 500 characters, none a control one")
        for r in reasons[:-1]
    )
    assert all("\ufffd" in r for r in reasons[:-1])  # the control character, shown harmless


def test_a_row_with_a_field_too_many_is_refused_and_one_trailing_empty_field_is_read(
    tables, clean, mirror, tmp_path
):
    """A field inserted in the middle is refused with the field count. Where the row's last value
    is empty, the shifted row looks like one with a trailing empty field, which is read by its first
    columns: it is then refused by the first shifted value that breaks its column's rule."""
    month = Month(tables, clean)
    last = column("observations", "anomaly_score")
    chosen = month.whole_observations(200)
    scored = [
        u
        for u in chosen
        if month.row("observations", month.line_of("observations", u.encode()))[last]
    ]
    unscored = [u for u in chosen if u not in scored]
    shifted, trailing = scored[:2] + unscored[:1], scored[2:4]
    rejected, affected = set(), set()
    for uuid in shifted:
        line = month.line_of("observations", uuid.encode())
        row = month.row("observations", line)
        month.put("observations", line, row[:4] + [b"7"] + row[4:])  # 10 fields
        rejected.add(("observations.csv.gz", line))
        affected.update(month.photos_of[uuid])
    for uuid in trailing:
        line = month.line_of("observations", uuid.encode())
        month.put("observations", line, [*month.row("observations", line), b""])
    photo_id = month.photos_of[shifted[0]][0]
    line = month.line_of("photos", str(photo_id).encode(), at=1)
    row = month.row("photos", line)
    month.put("photos", line, row[:5] + [b"jpg"] + row[5:])  # also in photos
    rejected.add(("photos.csv.gz", line))
    report, rows, rejects = result = curated(month.tables, tmp_path, mirror)
    moved = check(clean, result, month.tables, affected, rejected)
    assert moved == {"observation_rejected": len(affected) - 1, "unparseable_row": 1}
    assert sorted(reason for _, _, reason in rejects) == [
        "10 fields, expected 9",
        "10 fields, expected 9",
        "10 fields, expected 9",
        "quality_grade='{}' is not a valid quality_grade: research, needs_id, casual".format(
            fields(tables["observations"][month.line_of("observations", unscored[0].encode()) - 1])[
                column("observations", "taxon_id")
            ].decode()
        ),
    ]
    assert report["extra_field_rows"] == {"observations": 3, "photos": 0, "taxa": 0}


def test_rows_of_one_key_that_differ_are_both_refused(tables, clean, mirror, tmp_path):
    month = Month(tables, clean)
    rejected = set()
    leaves = month.kept_leaf_taxa(2)
    genus = next(  # a genus with curated photos, so that a conflict reaches its species' photos
        t
        for t in sorted(month.ancestry)
        if fields(month.tables["taxa"][month.line_of("taxa", str(t).encode()) - 1])[3] == b"genus"
        and month.photos_under(month.descendants(t))
        and not month.descendants(t) & set(leaves)
    )
    conflicting_taxa = set(leaves) | {genus}
    for taxon in sorted(conflicting_taxa):
        line = month.line_of("taxa", str(taxon).encode())
        row = fields(month.tables["taxa"][line - 1])
        other = row[:4] + [row[4] + b" sp. nov."] + row[5:]  # another name
        month.tables["taxa"].append(joined(other))
        rejected |= {("taxa.csv.gz", line), ("taxa.csv.gz", len(month.tables["taxa"]))}
    observations = month.whole_observations(2)
    for uuid in observations:  # the same observation again, with another taxon
        line = month.line_of("observations", uuid.encode())
        row = fields(month.tables["observations"][line - 1])
        row[column("observations", "taxon_id")] = str(leaves[0]).encode()
        month.tables["observations"].append(joined(row))
        rejected |= {
            ("observations.csv.gz", line),
            ("observations.csv.gz", len(month.tables["observations"])),
        }
    photo_id = month.photos_of[month.whole_observations(1)[0]][0]
    line = month.line_of("photos", str(photo_id).encode(), at=1)
    row = fields(month.tables["photos"][line - 1])
    row[column("photos", "width")] = str(int(row[column("photos", "width")]) + 1).encode()
    month.tables["photos"].append(joined(row))  # the same photo file, another width
    rejected |= {("photos.csv.gz", line), ("photos.csv.gz", len(month.tables["photos"]))}
    (again,) = month.kept_leaf_taxa(1, exclude=conflicting_taxa)  # the same row twice: counted
    month.tables["taxa"].append(
        month.tables["taxa"][month.line_of("taxa", str(again).encode()) - 1]
    )
    affected = (
        month.photos_under(set().union(*(month.descendants(t) for t in conflicting_taxa)))
        | {p for uuid in observations for p in month.photos_of[uuid]}
        | {photo_id}
    )
    report, rows, rejects = result = curated(month.tables, tmp_path, mirror)
    moved = check(clean, result, month.tables, affected, rejected)
    assert moved["conflicting_observation"] == sum(len(month.photos_of[u]) for u in observations)
    assert moved["conflicting_photo"] == 2 and moved["conflicting_taxon"] > 0
    assert report["conflicting_keys"] == {"taxa": 3, "observations": 2, "photos": 1}
    assert report["duplicate_taxon_ids"] == 1
    assert all(
        re.fullmatch(r"\w+=[0-9a-f-]+ has rows that differ, on lines \d+, \d+", r)
        for _, _, r in rejects
    )


def test_implausible_days_coordinates_and_sizes_are_refused(tables, clean, mirror, tmp_path):
    month = Month(tables, clean)
    observed, latitude, longitude = (
        column("observations", c) for c in ("observed_on", "latitude", "longitude")
    )
    chosen = [
        uuid
        for uuid in month.whole_observations(40)
        if month.row("observations", month.line_of("observations", uuid.encode()))[latitude]
    ][:6]  # with a location
    planted = {  # observation -> its change, and whether it is refused
        chosen[0]: ({observed: b"2024-09-29"}, True),  # after the snapshot's day plus one
        chosen[1]: ({observed: b"2031-01-01"}, True),
        chosen[2]: ({observed: b"1066-10-14"}, True),  # before curate.earliest_observation_year
        chosen[3]: ({longitude: b""}, True),  # a latitude without a longitude
        chosen[4]: ({observed: b"2024-09-28"}, False),  # the last day a time zone allows
    }
    rejected, affected = set(), set()
    for uuid, (change, refused) in planted.items():
        line = month.line_of("observations", uuid.encode())
        row = month.row("observations", line)
        month.put("observations", line, [change.get(i, value) for i, value in enumerate(row)])
        affected.update(month.photos_of[uuid])
        if refused:
            rejected.add(("observations.csv.gz", line))
    photo_id = month.photos_of[chosen[5]][0]
    line = month.line_of("photos", str(photo_id).encode(), at=1)
    row = month.row("photos", line)
    row[column("photos", "width")] = b"0"
    month.put("photos", line, row)
    rejected.add(("photos.csv.gz", line))
    affected.add(photo_id)
    report, rows, rejects = curated(month.tables, tmp_path, mirror)
    kept_on_last_day = set(month.photos_of[chosen[4]])  # kept, with its new day
    others = {p: row for p, row in rows.items() if p not in kept_on_last_day}
    moved = check(clean, (report, others, rejects), month.tables, affected, rejected)
    assert moved == {
        "observation_rejected": len(affected - kept_on_last_day) - 1,
        "invalid_width": 1,
    }
    assert all(rows[p]["observed_on"].isoformat() == "2024-09-28" for p in kept_on_last_day)
    text = "\n".join(reason for _, _, reason in rejects)
    assert (
        "observed_on='2031-01-01' is not a valid observed_on: not before 1800-01-01, nor after "
        "the snapshot's day plus one (2024-09-28)" in text
    )
    assert "observed_on='1066-10-14'" in text and "both or neither" in text
    assert "width='0' is not a valid width: from 1 to" in text


def test_a_stray_carriage_return_refuses_its_row_and_the_month_goes_on(
    tables, clean, mirror, tmp_path
):
    month = Month(tables, clean)
    chosen = month.whole_observations(4)
    rejected, affected = set(), set()
    for uuid in chosen[:2]:  # CRLF on a few lines
        line = month.line_of("observations", uuid.encode())
        month.put("observations", line, b"\t".join(month.row("observations", line)) + b"\r\n")
        rejected.add(("observations.csv.gz", line))
        affected.update(month.photos_of[uuid])
    for uuid in chosen[2:]:  # a CR inside a field
        photo_id = month.photos_of[uuid][0]
        line = month.line_of("photos", str(photo_id).encode(), at=1)
        row, license_ = month.row("photos", line), column("photos", "license")
        row[license_] = row[license_][:3] + b"\r" + row[license_][3:]
        month.put("photos", line, row)
        rejected.add(("photos.csv.gz", line))
        affected.add(photo_id)
    report, rows, rejects = result = curated(month.tables, tmp_path, mirror)
    moved = check(clean, result, month.tables, affected, rejected)
    assert moved == {"observation_rejected": len(affected) - 2, "unparseable_row": 2}
    assert {reason for _, _, reason in rejects} == {STRAY_CR}


@pytest.mark.parametrize(
    "fault, message",
    [
        ("empty_gz", "taxa.csv.gz: empty file (0 bytes, not even a header line): fetch it again"),
        ("header_only", "observations.csv.gz: a header line and no rows: fetch it again"),
        ("plain_named_gz", "photos.csv.gz: named .gz but not gzip-compressed: fetch it again, or"),
    ],
)
def test_an_empty_or_misnamed_file_is_named_with_a_fix_that_works(
    tables, mirror, tmp_path, fault, message
):
    raw = tmp_path / "raw"
    raw.mkdir()
    for table, lines in tables.items():
        (raw / f"{table}.csv.gz").write_bytes(gzip.compress(b"".join(lines), mtime=0))
    target = {"empty_gz": "taxa", "header_only": "observations", "plain_named_gz": "photos"}[fault]
    path = raw / f"{target}.csv.gz"
    path.write_bytes(
        {
            "empty_gz": b"",
            "header_only": gzip.compress(tables[target][0]),
            "plain_named_gz": b"".join(tables[target]),
        }[fault]
    )
    with pytest.raises(CurateError) as error:
        curate(raw, tmp_path / "out", snapshot=MONTH, taxonomy=mirror / TAXONOMY_ARCHIVE)
    assert f"{raw}/{message}" in str(error.value)
    assert "/tmp/" not in str(error.value).replace(str(tmp_path), "")  # no internal file named
    if fault == "plain_named_gz":  # the fix the message gives
        fix = re.search(r"\((mv .*)\)", str(error.value)).group(1)
        subprocess.run(fix, shell=True, cwd=raw, check=True)
        assert (
            curate(raw, tmp_path / "out", snapshot=MONTH, taxonomy=mirror / TAXONOMY_ARCHIVE)[
                "photos_out"
            ]
            > 0
        )
