"""What changed between two monthly snapshots, in the data and in the results (see
workflow_scripts.diff.stage).

    python -m workflow_scripts.diff --previous data/snapshots/<A> --current data/snapshots/<B> \\
        --previous-metrics results/<A>/eval/*/metrics.json --current-metrics results/<B>/eval/*/metrics.json \\
        --models tiny-cpu random-init --out results/diff/<A>_vs_<B>

Each snapshot folder holds raw/ (the fetched tables), curated/ and subsets/. Writes report.md and
report.json (the summary), one sorted Parquet per list (species_images, inactivated_taxa,
deleted_photos, license_changes, moved, benchmark_species) and two figures: images per category
and each model's top-1 on each benchmark, before and after.
"""

from __future__ import annotations

import sys
from pathlib import Path

from workflow_scripts.common import cli, contracts
from workflow_scripts.diff.stage import diff


def main(argv: list[str] | None = None) -> int:
    parser = cli.parser(__spec__.name, __doc__)
    parser.add_argument("--previous", type=Path, required=True, help="the earlier snapshot's folder")
    parser.add_argument("--current", type=Path, required=True, help="the later snapshot's folder")
    parser.add_argument("--previous-metrics", type=Path, nargs="*", default=[],
                        help="each model's metrics.json, earlier")
    parser.add_argument("--current-metrics", type=Path, nargs="*", default=[], help="each model's metrics.json, later")
    parser.add_argument("--models", nargs="*", default=[], help="the evaluated models, in the metrics' order")
    parser.add_argument("--out", type=Path, required=True, help="the folder to write")
    args = parser.parse_args(argv)
    inputs = [path for snapshot in (args.previous, args.current)
              for path in contracts.compared_files(str(snapshot)).values()]
    inputs += [*args.previous_metrics, *args.current_metrics]
    with cli.running(args, inputs=inputs, recorded={"models": args.models}):
        report = diff(args.previous, args.current, args.out, args.previous_metrics, args.current_metrics, args.models)
    species, moves = report["species"], report["split_stability"]["by_reason"]
    if moves.get("unexplained"):
        print(f"WARNING: {moves['unexplained']} photos changed subset or split for no known reason (a bug): "
              f"see moved.parquet", file=sys.stderr)
    print(f"{report['previous']} -> {report['current']}: species +{len(species['added'])} -{len(species['removed'])}, "
          f"{report['deleted_photos']['photos']} deleted photos, {report['license_changes']['photos']} license "
          f"changes, {report['split_stability']['moved']} photos moved; {args.out / 'report.md'}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
