"""The old `python -m` names of renamed stage modules. Each old name is a module of two lines that
calls `run_as` with its new name: it warns, then runs the new module as `python -m` would, so that
scripts written against the old names keep working until they are removed (CHANGELOG.md lists
the renames)."""

from __future__ import annotations

import runpy
import warnings


def run_as(old: str, new: str) -> None:
    """Run module `new` as the program, after a FutureWarning that `old` is its deprecated name."""
    warnings.warn(
        f"python -m {old} is deprecated: use python -m {new}", FutureWarning, stacklevel=2
    )
    runpy.run_module(new, run_name="__main__", alter_sys=True)
