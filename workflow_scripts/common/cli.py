"""The command line every stage shares: its settings (one config section with the schema's
defaults filled in), its provenance (written beside its outputs when it succeeds) and errors that
end it with a message naming the cause instead of a traceback.

    parser = cli.parser(__spec__.name, __doc__, section="curate")
    parser.add_argument(...)
    args = parser.parse_args(argv)
    with cli.running(args, inputs=[args.raw]) as settings:
        ...
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
from pathlib import Path

from workflow_scripts.common import config, provenance


class StageError(Exception):
    """Input or settings a stage cannot work with; the message names the cause and what to do."""


def parser(module: str, doc: str | None, section: str | None = None) -> argparse.ArgumentParser:
    """An argument parser for `python -m <module>`; with a config section, --settings and
    --config."""
    module = module.removesuffix(".__main__")
    result = argparse.ArgumentParser(
        prog=f"python -m {module}",
        description=doc,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    if section:
        result.add_argument(
            "--settings",
            type=json.loads,
            default={},
            help=f"config.yaml's `{section}` section as JSON (what the rule passes); the schema "
            "fills in what it leaves out",
        )
        result.add_argument(
            "--config",
            type=Path,
            help=f"a config.yaml whose `{section}` section to use (--settings goes on top)",
        )
    result.add_argument(
        "--provenance", type=Path, help="where to write the run's provenance (beside its outputs)"
    )
    result.add_argument("--date", help="the snapshot's date, for the provenance")
    result.set_defaults(module=module, section=section)
    return result


def settings(args: argparse.Namespace) -> dict | None:
    """The stage's config section: --config's, then --settings on top, then the schema's
    defaults."""
    if not args.section:
        return None
    given = config.load_config(args.config).get(args.section, {}) if args.config else {}
    return config.settings(args.section, {**given, **args.settings})


@contextlib.contextmanager
def running(args: argparse.Namespace, inputs: list[Path], recorded: dict | None = None):
    """Run a stage's work inside: yields its settings; a StageError ends the process with its
    message (exit status 1); on success, the provenance is written if asked for. `recorded`:
    settings to record when they are not a config section (or more than one)."""
    values = settings(args)
    try:
        yield values
    except StageError as exc:
        print(f"{args.module.rpartition('.')[2]} failed: {exc}", file=sys.stderr)
        raise SystemExit(1) from None
    if args.provenance:
        provenance.write(
            args.provenance,
            args.module,
            recorded if recorded is not None else values,
            [Path(p) for p in inputs if p],
            args.date,
        )
