"""Write a table as CSV and Markdown, deterministically (later: LaTeX, provenance footers)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd


def markdown(frame: pd.DataFrame, caption: str = "") -> str:
    def cell(value) -> str:
        return "" if pd.isna(value) else str(value).replace("|", "\\|")

    lines = ["| " + " | ".join(map(str, frame.columns)) + " |",
             "|" + "|".join("---:" if pd.api.types.is_numeric_dtype(frame[c]) else "---" for c in frame.columns) + "|"]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in frame.itertuples(index=False)]
    return (f"{caption}\n\n" if caption else "") + "\n".join(lines) + "\n"


def write_table(frame: pd.DataFrame, stem: Path, caption: str = "") -> None:
    """stem.csv and stem.md, written via temporary names."""
    for suffix, text in ((".csv", frame.to_csv(index=False, lineterminator="\n")), (".md", markdown(frame, caption))):
        target = stem.with_suffix(suffix)
        tmp = target.with_name(target.name + ".tmp")
        tmp.write_text(text, encoding="utf-8")
        tmp.replace(target)
