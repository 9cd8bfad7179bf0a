"""The monthly diff: on the two sample months it finds every planted change, the same bytes on a
rerun, results compared with their intervals, and a clear error for a snapshot without raw
tables."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import duckdb
import pytest

from tests.project_copy import hashes
from workflow_scripts.common import contracts
from workflow_scripts.curate.stage import CurateError
from workflow_scripts.diff import __main__ as diff_cli
from workflow_scripts.diff.data import Month
from workflow_scripts.diff.stage import diff, results_diff


def month(snapshot: Path) -> Month:
    """What the diff reads of a snapshot folder (raw/, curated/, subsets/)."""
    files = contracts.compared_files(str(snapshot))
    return Month(
        snapshot.name,
        Path(files["raw"]),
        Path(files["curated"]),
        Path(files["species"]),
        {
            subset: Path(table)
            for subset, table in contracts.subsets_by_name(files["subsets"]).items()
        },
    )


def month_options(side: str, snapshot: Path, metrics: list[Path]) -> list[str]:
    """One month's options as the diff rule passes them."""
    files = contracts.compared_files(str(snapshot))
    return [
        f"--{side}-date",
        snapshot.name,
        f"--{side}-raw",
        files["raw"],
        f"--{side}-curated",
        files["curated"],
        f"--{side}-species",
        files["species"],
        f"--{side}-subsets",
        *files["subsets"],
        f"--{side}-metrics",
        *map(str, metrics),
    ]


def write_metrics(folder, benchmarks: dict, weighted: float) -> None:
    folder.mkdir(parents=True)
    (folder / "metrics.json").write_text(
        json.dumps({"benchmarks": benchmarks, "weighted_average_top1": weighted})
    )


def scored(top1: float, low: float, high: float) -> dict:
    return {"top1": top1, "top1_ci95": [low, high], "macro_top1": top1}


@pytest.fixture(scope="module")
def evaluations(tmp_path_factory):
    """Each month's metrics.json of one model, `clip`."""
    tmp_path = tmp_path_factory.mktemp("evaluations")
    write_metrics(
        tmp_path / "a" / "clip",
        {"balanced": scored(0.5, 0.45, 0.55), "unseen": scored(0.2, 0.1, 0.3)},
        0.4,
    )
    write_metrics(
        tmp_path / "b" / "clip",
        {
            "balanced": scored(0.7, 0.65, 0.75),
            "unseen": scored(0.25, 0.15, 0.35),
            "lifestages": scored(0.1, 0.05, 0.2),
        },
        0.5,
    )
    return [tmp_path / "a" / "clip" / "metrics.json"], [tmp_path / "b" / "clip" / "metrics.json"]


def parquet(path, sql: str = "SELECT * FROM t") -> list[tuple]:
    con = duckdb.connect()
    con.execute(f"CREATE VIEW t AS SELECT * FROM read_parquet('{path}')")
    return con.execute(sql).fetchall()


@pytest.fixture(scope="module")
def diffed(sample_months, evaluations, tmp_path_factory) -> tuple[dict, Path]:
    """The diff of the two sample months: its report and its folder."""
    out = tmp_path_factory.mktemp("diffed") / "diff"
    report = diff(
        month(sample_months / "2024-08-27"),
        month(sample_months / "2024-09-27"),
        out,
        *evaluations,
        ["clip"],
        store_report(out.parent),
    )
    return report, out


def store_report(folder: Path) -> Path:
    """An image store's report (images/store.py: report) of the later month."""
    size = {"entries": 0, "image_bytes": 0, "packs": 0, "pack_bytes": 0}
    path = folder / "store.report.json"
    path.write_text(
        json.dumps(
            {
                "before": size | {"entries": 20_100, "packs": 2, "pack_bytes": 1_500_000_000},
                "after": size | {"entries": 20_460, "packs": 3, "pack_bytes": 1_530_000_000},
                "month": {"reused": 19_900, "downloaded": 357, "redownloaded": 1},
                "unused": 200,
                "expired": 0,
            }
        )
    )
    return path


def test_the_planted_taxon_swap_is_found(diffed, planted):
    """The old taxon inactive, its observations on a new one."""
    report, _ = diffed
    swap = planted["taxon_swap"]
    assert [key.rsplit(" ", 2)[-2:] for key in report["species"]["added"]] == [
        swap["new_name"].split()
    ]
    assert [key.rsplit(" ", 2)[-2:] for key in report["species"]["removed"]] == [
        swap["old_name"].split()
    ]
    assert report["inactivated_taxa"] == [
        {
            "taxon_id": swap["old_taxon_id"],
            "name": swap["old_name"],
            "rank": "species",
            "replaced_by": [
                {
                    "taxon_id": swap["new_taxon_id"],
                    "name": swap["new_name"],
                    "observations": swap["observations_moved"],
                }
            ],
        }
    ]


def test_the_planted_deletions_and_license_changes_are_found(diffed, planted):
    report, out = diffed
    assert (
        sorted(r[0] for r in parquet(out / "deleted_photos.parquet"))
        == planted["deleted_photo_ids"]
    )
    licenses = {str(r[0]): [r[2], r[3]] for r in parquet(out / "license_changes.parquet")}
    assert licenses == planted["license_changes"]
    assert (
        report["species"]["images_changed"] > 0
    )  # quality grades changed, new observations arrived


def test_only_threshold_crossings_move_photos_between_splits(diffed, planted, sample_months):
    """Split stability: the planted late uploads among the crossings."""
    report, _ = diffed
    stability = report["split_stability"]
    assert stability["photos_in_both"] > 10_000 and 0 < stability["moved"] < 100
    assert set(stability["by_reason"]) <= {
        "species crossed a threshold",
        "capped choice moved as the species changed size",
    }
    late = duckdb.sql(
        f"SELECT DISTINCT taxonomic_name FROM "
        f"'{sample_months / '2024-09-27' / 'curated' / 'curated.parquet'}' "
        f"WHERE taxon_id = {planted['late_upload_species']}"
    ).fetchone()[0]
    assert (late, "species crossed a threshold (unseen -> train)") in {
        (m["species"], m["reason"]) for m in report["moved"]
    }
    assert late in report["benchmarks"]["unseen"]["species_removed"]


def test_balanced_follows_the_species_changes(diffed):
    report, _ = diffed
    assert report["benchmarks"]["balanced"]["species_removed"] == report["species"]["removed"]
    assert report["benchmarks"]["balanced"]["species_added"] == report["species"]["added"]


def test_the_report_names_the_swap_beside_its_plots(diffed, planted):
    _, out = diffed
    text = (out / "report.md").read_text()
    assert planted["taxon_swap"]["new_name"] in text and "| NO |" in text
    assert {p.name for p in out.glob("*.png")} == {"images_per_category.png", "results.png"}


def test_the_report_says_what_the_image_store_reused_and_downloaded(diffed):
    _, out = diffed
    text = (out / "report.md").read_text()
    assert (
        "- Reused from the image store: 19,900; downloaded, new: 357; downloaded again, changed"
        in text
    )
    assert "under the same photo id: rotated, replaced): 1." in text
    assert "and not by this one (deleted, or dropped from the subsets): 200;" in text
    assert "| after | 20460 | 3 | 1.530 |" in text.replace("  ", " ")


def test_the_cli_as_the_rule_runs_it_gives_the_same_bytes(
    diffed, sample_months, evaluations, tmp_path
):
    """Each month's files named, as the diff rule passes them."""
    _, out = diffed
    again = tmp_path / "again"
    assert (
        diff_cli.main(
            [
                *month_options("previous", sample_months / "2024-08-27", evaluations[0]),
                *month_options("current", sample_months / "2024-09-27", evaluations[1]),
                "--current-store-report",
                str(store_report(tmp_path)),
                "--models",
                "clip",
                "--out",
                str(again),
            ]
        )
        == 0
    )
    assert hashes(out) == hashes(again)


def test_results_delta_and_interval_overlap(evaluations):
    rows = {(r["benchmark"], r["metric"]): r for r in results_diff(*evaluations, ["clip"])}
    assert (
        rows["balanced", "top1"]["delta"] == pytest.approx(0.2)
        and rows["balanced", "top1"]["cis_overlap"] is False
    )
    assert rows["unseen", "top1"]["cis_overlap"] is True
    assert (
        rows["lifestages", "top1"]["previous"] is None
        and rows["lifestages", "top1"]["delta"] is None
    )
    assert rows["balanced", "macro_top1"]["cis_overlap"] is None  # no interval for macro accuracy
    assert rows["weighted average", "top1"]["delta"] == pytest.approx(0.1)


def test_snapshot_without_raw_tables_is_named(sample_months, tmp_path):
    broken = tmp_path / "2024-09-27"
    shutil.copytree(sample_months / "2024-09-27", broken)
    (broken / "raw" / "photos.csv").unlink()
    with pytest.raises(CurateError, match=r"2024-09-27/raw: no photos\.csv\.gz or photos\.csv"):
        diff(month(sample_months / "2024-08-27"), month(broken), tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_the_cli_wants_every_subsets_table(tmp_path, capsys):
    options = [
        *month_options("previous", tmp_path / "2024-08-27", []),
        *month_options("current", tmp_path / "2024-09-27", []),
        "--out",
        str(tmp_path / "out"),
    ]
    with pytest.raises(SystemExit):
        diff_cli.main([option for option in options if not option.endswith("unseen.parquet")])
    assert (
        "--previous-subsets: expected the tables of train, balanced, unseen"
        in capsys.readouterr().err
    )
