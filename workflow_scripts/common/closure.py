"""What code a stage runs, read statically from the source: the modules of this package it imports
(the import closure, lazy imports included), the data files they name (SQL, the config schema,
model configs) and the third-party distributions they import.

The DVC generator makes the closure a stage's dependencies, provenance hashes it and the conda
environments are derived from its imports, so all three agree by construction. A data file
belongs to a module when the module names it, as a string, by its path relative to the module's
own folder ("curate.sql", "schemas"): a folder brings every file in it.
"""

from __future__ import annotations

import ast
import hashlib
import sys
from functools import cache
from importlib import metadata
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent
ROOT = PACKAGE.parent
NAME = PACKAGE.name


def module_path(module: str) -> Path | None:
    """The source file of a module of this package (a package's __init__.py), or None."""
    base = ROOT.joinpath(*module.split("."))
    for path in (base.with_suffix(".py"), base / "__init__.py"):
        if path.is_file():
            return path
    return None


@cache
def _parsed(path: Path) -> ast.Module:
    return ast.parse(path.read_text(encoding="utf-8"), str(path))


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported(path: Path) -> tuple[set[str], set[str]]:
    """(modules of this package, top-level names of other modules) that the file imports."""
    ours, others = set(), set()
    package = (
        _module_name(path) if path.name == "__init__.py" else _module_name(path).rpartition(".")[0]
    )
    for node in ast.walk(_parsed(path)):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: from the package, node.level - 1 packages up
                parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(parts + ([base] if base else []))
            names = [base] + [f"{base}.{alias.name}" for alias in node.names]
        else:
            continue
        for name in names:
            if name.split(".")[0] != NAME:
                others.add(name.split(".")[0])
            elif module_path(name):
                ours.add(name)
    return ours, {name for name in others if name and name not in sys.stdlib_module_names}


def _with_parents(module: str) -> list[str]:
    """Importing a.b.c runs a/__init__.py and a/b/__init__.py first."""
    parts = module.split(".")
    return [".".join(parts[:n]) for n in range(1, len(parts) + 1)]


def module_closure(entry_points: list[str]) -> list[Path]:
    """The source files `python -m <entry point>` runs for each entry point (a package's
    __main__.py too), and everything of this package they import, sorted."""
    pending = [name for entry in entry_points for name in _with_parents(entry)]
    pending += [f"{entry}.__main__" for entry in entry_points if module_path(f"{entry}.__main__")]
    files: set[Path] = set()
    while pending:
        path = module_path(pending.pop())
        if path is None or path in files:
            continue
        files.add(path)
        pending += [name for module in imported(path)[0] for name in _with_parents(module)]
    return sorted(files)


def data_files(modules: list[Path]) -> list[Path]:
    """The non-Python files the modules name (see the module docstring), sorted."""
    found: set[Path] = set()
    for path in modules:
        for node in ast.walk(_parsed(path)):
            if (
                isinstance(node, ast.Constant)
                and isinstance(node.value, str)
                and node.value
                and "\n" not in node.value
            ):
                try:
                    target = (path.parent / node.value).resolve()
                    is_file, is_dir = target.is_file(), target.is_dir()
                except (OSError, ValueError):  # not a path at all (an SQL statement, a message)
                    continue
                if not target.is_relative_to(path.parent) or target == path.parent:
                    # absolute paths, "..", "." and the like name no data file of the module
                    continue
                if is_file and target.suffix != ".py":
                    found.add(target)
                elif is_dir:
                    found.update(
                        p
                        for p in target.rglob("*")
                        if p.is_file()
                        and p.suffix not in (".py", ".pyc")
                        and "__pycache__" not in p.parts
                    )
    return sorted(found)


def code_files(entry_points: list[str]) -> list[Path]:
    """Everything a stage's code is made of: its modules and their data files."""
    modules = module_closure(entry_points)
    return modules + data_files(modules)


def third_party(entry_points: list[str]) -> set[str]:
    """Top-level names of the modules from outside this package and the standard library."""
    return set().union(*(imported(path)[1] for path in module_closure(entry_points)))


@cache
def _providers() -> dict[str, list[str]]:
    """importlib's map of top-level names to distributions, read once per process: it parses every
    installed distribution's metadata (about a second each time)."""
    return metadata.packages_distributions()


def distribution(top_level: str) -> str:
    """The installed distribution that provides an importable top-level name."""
    providers = _providers().get(top_level)
    if not providers:
        raise LookupError(
            f"no installed distribution provides the module {top_level!r}: install the project "
            "(make install) or add it to pyproject.toml"
        )
    return providers[0]


def versions(entry_points: list[str]) -> dict[str, str]:
    """Python's version and that of every third-party distribution the code imports."""
    found = {distribution(name) for name in third_party(entry_points)}
    return {
        "python": sys.version.split()[0],
        **{name: metadata.version(name) for name in sorted(found)},
    }


def digest(files: list[Path]) -> str:
    """sha256 over the files' paths (relative to the project) and bytes."""
    total = hashlib.sha256()
    for path in files:
        total.update(f"{path.relative_to(ROOT).as_posix()}\n".encode() + path.read_bytes())
    return total.hexdigest()
