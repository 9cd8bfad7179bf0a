"""Generate the embedded default: two months of iNaturalist Open Data in the bucket's layout.

    python -m workflow_scripts.sample --out data/sample [--settings '{"scale": 2}']

writes into OUT, exactly as iNaturalist publishes them (TAB, no quoting, header, empty = null):
  bucket/photos.csv.gz observations.csv.gz taxa.csv.gz observers.csv.gz   (the newer month)
  bucket/metadata/inaturalist-open-data-YYYYMMDD.tar.gz   (one per month, + -latest)
  bucket/inaturalist-taxonomy.dwca.zip                    (taxa + vernacular names)
  bucket/photos.tar   (small species-specific images, named photos/{photo_id}/medium.{ext}:
                      one file for DVC; served at those URLs by images.photo_server)
  observations-lifestages.csv     (a web export with a Life Stage column: not in the bucket)
  planted.json                    (what the generator planted, for tests)
The settings are config.yaml's `sample` section. Same settings, same bytes.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from workflow_scripts.common import cli
from workflow_scripts.sample.bucket import generate


def main(argv: list[str] | None = None) -> int:
    parser = cli.parser(__spec__.name, __doc__, section="sample")
    parser.add_argument(
        "--out", type=Path, required=True, help="folder to write (replaced if present)"
    )
    parser.add_argument("--no-images", action="store_true", help="tables only (benchmarks)")
    parser.add_argument(
        "--workers", type=int, default=os.cpu_count() or 1, help="processes rendering images"
    )
    args = parser.parse_args(argv)
    with cli.running(args, inputs=[]) as settings:
        summary = generate(args.out, settings, not args.no_images, args.workers)
    print(
        f"wrote {args.out}: photo rows per month {summary['photos_rows']}, "
        f"{sum(len(v) for v in summary['species'].values())} species",
        file=sys.stderr,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
