"""The format checks pass on real iNaturalist files and on ours, and catch planted faults."""

from __future__ import annotations

import csv
import gzip
import io
import tarfile
import zipfile

import pytest

from tests.conftest import REAL
from workflow_scripts.common.inat_format import check_table_file, main

REAL_OPEN_DATA = sorted((REAL / "inat-open-data-2022-06").glob("*.csv.gz")) + sorted(
    (REAL / "inat-open-data-pyinat").glob("*.csv")
)


def test_real_fixtures_are_present():
    assert len(REAL_OPEN_DATA) == 8, (
        f"expected the real samples in {REAL} (tests/fixtures/real, committed with "
        "the code: see its README.md)"
    )


# The pyinat extract's two observation rows with a ninth, non-empty field (a date after an empty
# observed_on): the only real rows with an extra field we have, so never read by position.
REAL_REFUSED = {
    "inat-open-data-pyinat/observations.csv": [
        f"{REAL}/inat-open-data-pyinat/observations.csv: line {line}: 9 fields, expected 8"
        for line in (27, 28)
    ]
}


@pytest.mark.parametrize("path", REAL_OPEN_DATA, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_real_files_conform(path):
    result = check_table_file(path)
    assert result.errors == REAL_REFUSED.get(f"{path.parent.name}/{path.name}", [])
    assert result.rows > 20


def test_one_extra_trailing_empty_field_is_counted_not_an_error(tmp_path):
    path = tmp_path / "taxa.csv"
    path.write_text(
        "taxon_id\tancestry\trank_level\trank\tname\tactive\n"
        "48460\t\t100\tstateofmatter\tLife\ttrue\t\n"
        "1\t48460\t70\tkingdom\tAnimalia\ttrue\t\t\n"
    )
    result = check_table_file(path)
    assert result.extra_field_rows == 1
    assert result.errors == [f"{path}: line 3: 8 fields, expected 6"]


def test_generated_files_pass_the_same_checks(mirror, tmp_path):
    for path in sorted(mirror.glob("*.csv.gz")):
        assert check_table_file(path).errors == [], path
    with tarfile.open(mirror / "metadata" / "inaturalist-open-data-20240827.tar.gz") as tar:
        tar.extractall(tmp_path, filter="data")
    for path in sorted(tmp_path.rglob("*.csv")):
        result = check_table_file(path)
        assert result.errors == [] and result.extra_field_rows == 0, path


def test_generated_headers_match_real_ones(mirror):
    for table in ("photos", "taxa", "observers"):
        real = gzip.open(REAL / "inat-open-data-2022-06" / f"{table}.csv.gz", "rt").readline()
        ours = gzip.open(mirror / f"{table}.csv.gz", "rt").readline()
        assert ours == real
    real_obs = gzip.open(REAL / "inat-open-data-2022-06" / "observations.csv.gz", "rt").readline()
    ours_obs = gzip.open(mirror / "observations.csv.gz", "rt").readline()
    assert (
        ours_obs == real_obs.rstrip("\n") + "\tanomaly_score\n"
    )  # the current schema adds one column


def test_generated_taxonomy_archive_reads_like_the_real_one(mirror):
    with zipfile.ZipFile(mirror / "inaturalist-taxonomy.dwca.zip") as archive:
        for name in ("taxa.csv", "VernacularNames-english.csv"):
            real = (REAL / "inat-taxonomy-dwca-pyinat" / name).read_text(encoding="utf-8")
            ours = archive.read(name).decode("utf-8")
            assert ours.splitlines()[0] == real.splitlines()[0]
            for text in (real, ours):
                rows = list(csv.reader(io.StringIO(text)))
                assert len({len(r) for r in rows}) == 1  # every row parses to the header's width
            # the empty locality/countryCode fields are quoted as in the real export
            if name.startswith("Vernacular"):
                assert ',"","",' in real.splitlines()[1] and ',"","",' in ours.splitlines()[1]


@pytest.mark.parametrize(
    "content, message",
    [
        ("", "empty file"),
        (
            "photo_uuid\tphoto_id\textension\n",
            "line 1: header is not the photos schema: missing columns",
        ),
        (
            "taxon_id\tancestry\trank_level\trank\tname\tactive\n1\t48460\t70\tkingdom\tAnimalia\n",
            "line 2: 5 fields, expected 6",
        ),
        (
            "taxon_id\tancestry\trank_level\trank\tname\tactive\n1\t48460\t70\tkingdom\tAnimalia\tyes\n",
            "line 2: active='yes'",
        ),
        (
            "taxon_id\tancestry\trank_level\trank\tname\tactive\n1\t48460\\1\t70\tkingdom\tAnimalia\ttrue\n",
            "line 2: ancestry=",
        ),
        (
            "taxon_id\tancestry\trank_level\trank\tname\tactive\n1\t48460\t70\tkingdom\tAnimalia\ttrue",
            "line 2: no line terminator",
        ),
        # a re-saved file: its form is named with what to do, not reported as "missing columns"
        ("\ufefftaxon_id\tancestry\trank_level\trank\tname\tactive\n", "byte-order mark"),
        ("taxon_id\tancestry\trank_level\trank\tname\tactive\r\n", "Windows (CRLF) line endings"),
        ("taxon_id,ancestry,rank_level,rank,name,active\n", "comma-separated"),
        # values DuckDB would cast loosely
        (
            "taxon_id\tancestry\trank_level\trank\tname\tactive\n2.5\t48460\t70\tkingdom\tAnimalia\ttrue\n",
            "line 2: taxon_id='2.5'",
        ),
        (
            "taxon_id\tancestry\trank_level\trank\tname\tactive\n2\t48460\tnan\tkingdom\tAnimalia\ttrue\n",
            "line 2: rank_level='nan'",
        ),
    ],
)
def test_planted_faults_are_named_with_file_and_line(tmp_path, content, message):
    name = "photos.csv" if content.startswith("photo") else "taxa.csv"
    path = tmp_path / name
    path.write_text(content, encoding="utf-8")
    errors = check_table_file(path).errors
    assert errors and str(path) in errors[0] and message in errors[0]


def test_cli_exit_code(tmp_path, capsys):
    good = REAL / "inat-open-data-2022-06" / "taxa.csv.gz"
    bad = tmp_path / "taxa.csv"
    bad.write_text("taxon_id\tancestry\n", encoding="utf-8")
    assert main([str(good)]) == 0
    assert main([str(good), str(bad)]) == 1
