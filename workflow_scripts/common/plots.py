"""Figures: matplotlib without a display, saved so that a rerun writes the same bytes."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

PNG = {
    "dpi": 120,
    "format": "png",
    "metadata": {"Software": None},
}  # no version string: same bytes across reruns


def save(fig: plt.Figure, path: Path) -> None:
    """Write the figure via a temporary name (`path` is whole or absent) and free it."""
    temporary = path.with_name(path.name + ".tmp")
    fig.savefig(temporary, **PNG)
    plt.close(fig)
    temporary.replace(path)
