"""The documentation: docs/ builds without a broken link, anchor or navigation entry, the
configuration reference is what the schema generates, and README.md stays a front door."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from tools import config_reference

ROOT = Path(__file__).resolve().parents[1]
README_LINES = 200  # a front door: what this is, the commands, the uses, the layout, links on


def test_docs_build_strict(tmp_path):
    built = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert built.returncode == 0, built.stderr


def test_configuration_reference_is_current():
    committed = (ROOT / config_reference.OUTPUT).read_text()
    assert committed == config_reference.markdown(), (
        f"{config_reference.OUTPUT} is out of date: run `make generate` and commit it"
    )


def test_readme_is_a_front_door():
    readme = (ROOT / "README.md").read_text()
    assert len(readme.splitlines()) <= README_LINES
    linked = re.findall(r"\]\((docs/[^)#]+)", readme)
    assert linked, "README.md links into docs/"
    assert [page for page in linked if not (ROOT / page).is_file()] == []
