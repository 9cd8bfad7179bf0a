"""What changed between two monthly snapshots, in the data (workflow_scripts.diff.data) and in the
results (workflow_scripts.diff.results) and in the image store (its report, when given), written
for people (workflow_scripts.diff.render):
report.md, report.json (the summary), one sorted Parquet per list and two figures."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import duckdb

from workflow_scripts.common import contracts
from workflow_scripts.common.duck import quote
from workflow_scripts.common.files import building, write_json, write_text
from workflow_scripts.diff.data import Month, attach_snapshot, data_diff, load_raw
from workflow_scripts.diff.render import category_figure, render, results_figure
from workflow_scripts.diff.results import results_diff


def diff(
    previous: Month,
    current: Month,
    out: Path,
    previous_metrics: list[Path] = (),
    current_metrics: list[Path] = (),
    models: list[str] = (),
    store_report: Path | None = None,
    earliest_year: int | None = None,
) -> dict:
    """Compare two snapshots (their raw tables, curated tables and subsets) and, for each of
    `models`, its metrics.json in both months; with `store_report` (the image store's report of the
    current snapshot), the images it reused and downloaded. Write the report into the folder
    `out`. The raw tables are read as curation reads them: `earliest_year` is its
    curate.earliest_observation_year (default: the schema's)."""
    months = (previous.date, current.date)
    with building(out) as staging, tempfile.TemporaryDirectory(prefix="diff-") as work:
        work = Path(work)
        raw = {
            side: load_raw(month.raw, month.date, work / f"{side}.duckdb", work, earliest_year)
            for side, month in (("previous", previous), ("current", current))
        }
        con = duckdb.connect(str(work / "diff.duckdb"), config={"preserve_insertion_order": True})
        con.execute(f"ATTACH {quote(work / 'previous.duckdb')} AS prev (READ_ONLY)")
        con.execute(f"ATTACH {quote(work / 'current.duckdb')} AS cur (READ_ONLY)")
        attach_snapshot(con, "previous", previous)
        attach_snapshot(con, "current", current)
        report = {
            "previous": months[0],
            "current": months[1],
            "raw": raw,
            **data_diff(con, staging),
        }
        con.close()
        report["results"] = results_diff(
            list(previous_metrics), list(current_metrics), list(models)
        )
        if store_report:
            report["images"] = json.loads(Path(store_report).read_text())
        write_json(staging / contracts.DIFF_SUMMARY, report)
        write_text(staging / contracts.DIFF_REPORT, render(report))
        categories_png, results_png = contracts.DIFF_FIGURES
        category_figure(report["categories"], months, staging / categories_png)
        results_figure(report["results"], months, staging / results_png)
    return report
