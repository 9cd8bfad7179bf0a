"""A subset's downloads put together: the download report (attempted, succeeded and failed by
reason, per chunk and in total; the images reused from the image store, downloaded and
re-downloaded; the placeholders and undecodable images among the failures), the failure ledger
(photo_id, url, reason, attempts of every image not downloaded) and the perceptual hashes of every
image (hashes.parquet: workflow_scripts.images.perceptual). Fails, after writing them, below
`images.min_success_rate`.

    python -m workflow_scripts.images.download_report \\
        --chunks data/snapshots/<date>/images/train/chunks/* \\
        --out data/snapshots/<date>/images/train [--config config.yaml]
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import duckdb

from workflow_scripts.common import cli, contracts
from workflow_scripts.common.config import settings as images_settings
from workflow_scripts.common.duck import quote, write_parquet
from workflow_scripts.common.files import write_json
from workflow_scripts.images.download_chunk import DownloadError, outcomes, summary
from workflow_scripts.images.good_bytes import UNDECODABLE


def download_report(chunks: list[Path], out: Path, settings: dict | None = None) -> dict:
    """The report and the ledger of a subset's chunk folders, written into the folder `out`."""
    settings = images_settings("images", settings)
    con = duckdb.connect()
    outcomes(con, chunks)
    report = summary(con) | {
        "undecodable": con.execute(
            f"SELECT count(*) FROM outcomes WHERE starts_with(reason, {quote(UNDECODABLE)})"
        ).fetchone()[0],
        "chunks": {
            chunk.name: json.loads((chunk / contracts.CHUNK_REPORT).read_text())
            for chunk in sorted(chunks)
        },
    }
    out.mkdir(parents=True, exist_ok=True)
    write_parquet(
        con,
        "SELECT photo_id, url, reason, attempts FROM outcomes WHERE NOT succeeded "
        "ORDER BY photo_id",
        out / contracts.FAILURES,
    )
    write_parquet(
        con,
        "SELECT photo_id, hash, mirrored, quality FROM successes ORDER BY photo_id",
        out / contracts.HASHES,
    )
    write_json(out / contracts.DOWNLOAD_REPORT, report)
    if report["success_rate"] < settings["min_success_rate"]:
        raise DownloadError(
            f"{report['succeeded']} of {report['attempted']} images downloaded "
            f"({report['success_rate']:.1%}), below images.min_success_rate "
            f"({settings['min_success_rate']:.0%}); failures by reason in "
            f"{out / contracts.DOWNLOAD_REPORT}, each in {out / contracts.FAILURES}"
        )
    return report


def main(argv: list[str] | None = None) -> int:
    parser = cli.parser(__spec__.name, __doc__, section="images")
    parser.add_argument(
        "--chunks", type=Path, nargs="+", required=True, help="the subset's chunk folders"
    )
    parser.add_argument("--out", type=Path, required=True, help="the subset's image folder")
    args = parser.parse_args(argv)
    # each chunk's URL list, report and images: img2dataset's own files record times
    inputs = [
        chunk / name
        for chunk in args.chunks
        for name in (contracts.CHUNK_URLS, contracts.CHUNK_REPORT, contracts.CHUNK_IMAGES)
    ]
    with cli.running(args, inputs=inputs) as settings:
        report = download_report(args.chunks, args.out, settings)
    print(
        json.dumps({k: report[k] for k in ("attempted", "succeeded", "failed_by_reason")}),
        file=sys.stderr,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
