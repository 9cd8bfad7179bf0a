"""What changed between two monthly snapshots, in the data and in the results (see
workflow_scripts.diff.stage).

    python -m workflow_scripts.diff --previous-date <A> --previous-raw data/snapshots/<A>/raw \\
        --previous-curated data/snapshots/<A>/curated/curated.parquet \\
        --previous-species data/snapshots/<A>/subsets/species.parquet \\
        --previous-subsets \\
            data/snapshots/<A>/subsets/{train,balanced,unseen,lifestages,genus_sampled}.parquet \\
        --previous-metrics results/<A>/eval/*/metrics.json \\
        --current-date <B> --current-raw data/snapshots/<B>/raw ... (the same for <B>) \\
        [--current-store-report data/store/index/<B>.report.json] \\
        --models tiny-cpu random-init --out results/diff/<A>_vs_<B> [--settings '{...}']

Each month: its date, its raw tables' folder (the fetched tables), its curated table, its species
table (subsets/species.parquet), every subset's table and each model's metrics.json (in --models'
order); the raw tables are read as curation reads them (--settings: config.yaml's curate section);
with --current-store-report, what the later snapshot reused and downloaded from the image
store. Writes report.md and report.json (the summary), one sorted Parquet per list
(species_images, inactivated_taxa, deleted_photos, license_changes, moved, benchmark_species) and
two figures: images per category and each model's top-1 on each benchmark, before and after.
"""

from __future__ import annotations

import sys
from pathlib import Path

from workflow_scripts.common import cli, contracts
from workflow_scripts.diff.data import Month
from workflow_scripts.diff.stage import diff


def month(parser, args, side: str) -> Month:
    """One side's files as given (--<side>-date, -raw, -curated, -species, -subsets)."""
    given = vars(args)
    try:
        subsets = contracts.subsets_by_name(given[f"{side}_subsets"])
    except ValueError as exc:
        parser.error(f"--{side}-subsets: {exc}")
    return Month(
        given[f"{side}_date"],
        given[f"{side}_raw"],
        given[f"{side}_curated"],
        given[f"{side}_species"],
        {subset: Path(table) for subset, table in subsets.items()},
    )


def main(argv: list[str] | None = None) -> int:
    parser = cli.parser(__spec__.name, __doc__, "curate")
    for side, when in (("previous", "earlier"), ("current", "later")):
        parser.add_argument(f"--{side}-date", required=True, help=f"the {when} snapshot's date")
        parser.add_argument(
            f"--{side}-raw",
            type=Path,
            required=True,
            help=f"the {when} snapshot's raw tables' folder (raw/)",
        )
        parser.add_argument(
            f"--{side}-curated",
            type=Path,
            required=True,
            help=f"the {when} snapshot's curated table (curated/{contracts.CURATED_TABLE})",
        )
        parser.add_argument(
            f"--{side}-species",
            type=Path,
            required=True,
            help=f"the {when} snapshot's species table (subsets/{contracts.SPECIES_TABLE})",
        )
        parser.add_argument(
            f"--{side}-subsets",
            type=Path,
            nargs="+",
            required=True,
            help=f"the {when} snapshot's subsets' tables (subsets/<subset>.parquet), every one",
        )
        parser.add_argument(
            f"--{side}-metrics",
            type=Path,
            nargs="*",
            default=[],
            help=f"each model's metrics.json, {when}",
        )
    parser.add_argument(
        "--current-store-report",
        type=Path,
        help="what the later snapshot did to the image store (data/store/index/<date>.report.json)",
    )
    parser.add_argument(
        "--models", nargs="*", default=[], help="the evaluated models, in the metrics' order"
    )
    parser.add_argument("--out", type=Path, required=True, help="the folder to write")
    args = parser.parse_args(argv)
    previous, current = month(parser, args, "previous"), month(parser, args, "current")
    inputs = [*previous.files(), *current.files(), *args.previous_metrics, *args.current_metrics]
    store = [args.current_store_report] if args.current_store_report else []
    with cli.running(args, inputs=inputs + store, recorded={"models": args.models}) as settings:
        report = diff(
            previous,
            current,
            args.out,
            args.previous_metrics,
            args.current_metrics,
            args.models,
            args.current_store_report,
            settings["earliest_observation_year"],
        )
    species, moves = report["species"], report["split_stability"]["by_reason"]
    if moves.get("unexplained"):
        print(
            f"WARNING: {moves['unexplained']} photos changed subset or split for no known reason "
            f"(a bug): see moved.parquet",
            file=sys.stderr,
        )
    print(
        f"{report['previous']} -> {report['current']}: species +{len(species['added'])} "
        f"-{len(species['removed'])}, {report['deleted_photos']['photos']} deleted photos, "
        f"{report['license_changes']['photos']} license changes, "
        f"{report['split_stability']['moved']} photos moved; {args.out / 'report.md'}",
        file=sys.stderr,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
