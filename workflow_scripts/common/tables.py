"""Write a table as CSV, Markdown and LaTeX, deterministically: its bytes depend only on its data
(what made it is in the provenance beside its folder, workflow_scripts.common.provenance)."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import pandas as pd

from workflow_scripts.common.files import write_text

ROUNDING = "Numbers are rounded half up from the exact counts."


def half_up(value: Fraction | float, places: int) -> str:
    """`value` rounded half up to `places` decimals (floats taken as their shortest decimal)."""
    exact = Fraction(repr(value)) if isinstance(value, float) else Fraction(value)
    units = (exact * 10**places + Fraction(1, 2)).__floor__()
    sign, units = ("-" if units < 0 else ""), abs(units)
    whole, part = divmod(units, 10**places)
    return f"{sign}{whole}" + (f".{part:0{places}d}" if places else "")


def percent_with_interval(hits: int, trials: int, interval: tuple[float, float]) -> str:
    """'62.5 ± 14.37': hits/trials in percent (1 decimal) ± half the width of its interval (a
    fraction; 2 decimals), both rounded half up from exact values."""
    low, high = interval
    half_width = Fraction(repr(high)) * 50 - Fraction(repr(low)) * 50
    return f"{half_up(Fraction(100 * hits, trials), 1)} ± {half_up(half_width, 2)}"


def markdown(frame: pd.DataFrame, caption: str = "") -> str:
    def cell(value) -> str:
        return "" if pd.isna(value) else str(value).replace("|", "\\|")

    lines = [
        "| " + " | ".join(map(str, frame.columns)) + " |",
        "|"
        + "|".join(
            "---:" if pd.api.types.is_numeric_dtype(frame[c]) else "---" for c in frame.columns
        )
        + "|",
    ]
    lines += [
        "| " + " | ".join(cell(v) for v in row) + " |" for row in frame.itertuples(index=False)
    ]
    return (f"{caption}\n\n" if caption else "") + "\n".join(lines) + "\n"


LATEX_SPECIAL = {c: "\\" + c for c in "&%$#_{}"} | {
    "~": r"\textasciitilde{}",
    "^": r"\textasciicircum{}",
    "\\": r"\textbackslash{}",
}


def latex(frame: pd.DataFrame, caption: str = "") -> str:
    """A booktabs tabular in a table float (numbers right-aligned)."""

    def cell(value) -> str:
        return (
            ""
            if pd.isna(value)
            else "".join(LATEX_SPECIAL.get(c, c) for c in str(value)).replace("±", r"$\pm$")
        )

    align = "".join("r" if pd.api.types.is_numeric_dtype(frame[c]) else "l" for c in frame.columns)
    lines = ["\\begin{table}[t]", "\\centering"]
    if caption:
        lines.append(f"\\caption{{{cell(caption)}}}")
    lines += [
        f"\\begin{{tabular}}{{{align}}}",
        "\\toprule",
        " & ".join(cell(c) for c in frame.columns) + " \\\\",
        "\\midrule",
    ]
    lines += [" & ".join(cell(v) for v in row) + " \\\\" for row in frame.itertuples(index=False)]
    lines += ["\\bottomrule", "\\end{tabular}", "\\end{table}"]
    return "\n".join(lines) + "\n"


def write_table(frame: pd.DataFrame, stem: Path, caption: str = "", tex: bool = False) -> None:
    """stem.csv, stem.md (and stem.tex), via temporary names."""
    texts = [
        (".csv", frame.to_csv(index=False, lineterminator="\n")),
        (".md", markdown(frame, caption)),
    ]
    if tex:
        texts.append((".tex", latex(frame, caption)))
    for suffix, text in texts:
        write_text(stem.with_suffix(suffix), text)
