"""Write a table as CSV, Markdown and LaTeX, deterministically, with a provenance footer: the
snapshot date, a hash of the whole configuration, the code revision (a hash of the pipeline's
code, so that it is the same for every run of the same code, committed or not) and a checksum
of each input file the table was computed from."""

from __future__ import annotations

import hashlib
import json
from fractions import Fraction
from pathlib import Path

import pandas as pd

from workflow_scripts.files import write_text

ROOT = Path(__file__).resolve().parent.parent
CODE = ("Snakefile", "envs", "rules", "workflow_scripts")
ROUNDING = "Numbers are rounded half up from the exact counts."


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def code_revision(root: Path = ROOT) -> str:
    """sha256 over the pipeline's code files (names and bytes), caches left out."""
    digest = hashlib.sha256()
    for top in CODE:
        paths = [root / top] if (root / top).is_file() else sorted((root / top).rglob("*"))
        for path in paths:
            if path.is_file() and "__pycache__" not in path.parts and path.suffix != ".pyc":
                digest.update(f"{path.relative_to(root).as_posix()}\n".encode() + path.read_bytes())
    return digest.hexdigest()


def provenance(date: str, config: dict, inputs: list[Path]) -> list[str]:
    """The footer lines: what a reader needs to know which run made the table."""
    config_hash = hashlib.sha256(json.dumps(config, sort_keys=True).encode()).hexdigest()
    lines = [f"snapshot: {date}", f"config sha256: {config_hash[:16]}",
             f"code revision (sha256 of {', '.join(CODE)}): {code_revision()[:16]}"]
    return lines + [f"input {path.parent.name}/{path.name} sha256: {sha256(path)[:16]}" for path in inputs]


def half_up(value: Fraction | float, places: int) -> str:
    """`value` rounded half up to `places` decimals (floats taken as their shortest decimal)."""
    exact = Fraction(repr(value)) if isinstance(value, float) else Fraction(value)
    units = (exact * 10 ** places + Fraction(1, 2)).__floor__()
    sign, units = ("-" if units < 0 else ""), abs(units)
    whole, part = divmod(units, 10 ** places)
    return f"{sign}{whole}" + (f".{part:0{places}d}" if places else "")


def markdown(frame: pd.DataFrame, caption: str = "", footer: list[str] = ()) -> str:
    def cell(value) -> str:
        return "" if pd.isna(value) else str(value).replace("|", "\\|")

    lines = ["| " + " | ".join(map(str, frame.columns)) + " |",
             "|" + "|".join("---:" if pd.api.types.is_numeric_dtype(frame[c]) else "---" for c in frame.columns) + "|"]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in frame.itertuples(index=False)]
    tail = ("\n\n" + "\n".join(f"<sub>{cell(line)}</sub><br>" for line in footer)) if footer else ""
    return (f"{caption}\n\n" if caption else "") + "\n".join(lines) + tail + "\n"


LATEX_SPECIAL = {c: "\\" + c for c in "&%$#_{}"} | {"~": r"\textasciitilde{}", "^": r"\textasciicircum{}",
                                                   "\\": r"\textbackslash{}"}


def latex(frame: pd.DataFrame, caption: str = "", footer: list[str] = ()) -> str:
    """A booktabs tabular in a table float (numbers right-aligned), the footer in small type."""
    def cell(value) -> str:
        return "" if pd.isna(value) else "".join(LATEX_SPECIAL.get(c, c) for c in str(value)).replace("±", r"$\pm$")

    align = "".join("r" if pd.api.types.is_numeric_dtype(frame[c]) else "l" for c in frame.columns)
    lines = ["\\begin{table}[t]", "\\centering"]
    if caption:
        lines.append(f"\\caption{{{cell(caption)}}}")
    lines += [f"\\begin{{tabular}}{{{align}}}", "\\toprule", " & ".join(cell(c) for c in frame.columns) + " \\\\",
              "\\midrule"]
    lines += [" & ".join(cell(v) for v in row) + " \\\\" for row in frame.itertuples(index=False)]
    lines += ["\\bottomrule", "\\end{tabular}"]
    if footer:
        lines.append("\\par\\smallskip{\\tiny " + " \\\\\n".join(cell(line) for line in footer) + "\\par}")
    lines.append("\\end{table}")
    return "\n".join(lines) + "\n"


def write_table(frame: pd.DataFrame, stem: Path, caption: str = "", footer: list[str] = (), tex: bool = False) -> None:
    """stem.csv (footer as trailing '# ' lines), stem.md (and stem.tex), via temporary names."""
    texts = [(".csv", frame.to_csv(index=False, lineterminator="\n") + "".join(f"# {line}\n" for line in footer)),
             (".md", markdown(frame, caption, footer))]
    if tex:
        texts.append((".tex", latex(frame, caption, footer)))
    for suffix, text in texts:
        write_text(stem.with_suffix(suffix), text)
