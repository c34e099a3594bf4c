"""What every probe returns: a table, a figure, the images, and HTML for the report (issue 6)."""
from __future__ import annotations

import base64
import io
from dataclasses import dataclass, field
from typing import Callable

import pandas as pd
from PIL import Image


def image_list(images) -> list:
    """`images` as a list, refused when empty (every probe that takes a user's images says so the same way)."""
    from ..errors import bad_input

    images = list(images)
    if not images:
        raise bad_input("images", "expected at least one image, got an empty list")
    return images


@dataclass
class ProbeResult:
    """table: the probe's numbers; images: the pictures it made (PIL); figure(): a matplotlib figure
    drawn from both; to_html(): a self-contained section (figure as an inline PNG, then the table)."""

    title: str
    table: pd.DataFrame
    images: list[Image.Image] = field(default_factory=list)
    draw: Callable | None = field(default=None, repr=False)  # (result) -> matplotlib Figure
    meta: dict = field(default_factory=dict)
    extra_tables: dict[str, pd.DataFrame] = field(default_factory=dict)  # titled tables after the main one

    def figure(self):
        if self.draw is None:
            raise ValueError(f"{self.title}: this probe has no figure")
        return self.draw(self)

    def to_html(self) -> str:
        parts = [f"<section><h2>{self.title}</h2>"]
        if self.draw is not None:
            import matplotlib.pyplot as plt

            fig = self.figure()
            buf = io.BytesIO()
            fig.savefig(buf, format="png", dpi=100, bbox_inches="tight")
            plt.close(fig)
            png = base64.b64encode(buf.getvalue()).decode("ascii")
            parts.append(f'<img alt="{self.title}" src="data:image/png;base64,{png}">')
        parts.append(self.table.to_html(float_format=lambda v: f"{v:.3f}"))
        for name, table in self.extra_tables.items():
            parts.append(f"<h3>{name}</h3>")
            parts.append(table.to_html(float_format=lambda v: f"{v:.3f}"))
        return "\n".join(parts) + "</section>"
