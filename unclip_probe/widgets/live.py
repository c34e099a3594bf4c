"""What every explorer shares: debounced updates, a status line while sampling, errors shown (docs/design.md §2).

Widgets hold no science: each explorer calls the library (pipeline, probes) and
puts the result on screen. This module keeps the interaction honest:

- updates are debounced: a slider dragged across five stops samples once, for
  the last value (the kernel's event loop runs the update `delay` seconds after
  the last change; with no running loop, as in a test, it runs at once);
- the status label says "sampling ..." while the library works and how long the
  update took after, so a researcher sees the widget is alive;
- an exception is written to an Output widget, never swallowed: ProbeInputError
  as its one sentence, anything else with its type.
"""
from __future__ import annotations

import asyncio
import io
import time
from typing import Callable

import ipywidgets as W
from PIL import Image

from ..errors import ProbeInputError


def png(image: Image.Image, scale: int = 3) -> bytes:
    """PNG bytes of a PIL image, enlarged `scale` times with nearest-neighbour (world images are 32-64 px)."""
    if scale != 1:
        image = image.resize((image.width * scale, image.height * scale), Image.NEAREST)
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return buf.getvalue()


def strip(images: list[Image.Image], size: int = 64) -> Image.Image:
    """Images side by side at one size, 2 px apart."""
    out = Image.new("RGB", (len(images) * (size + 2) - 2, size), (255, 255, 255))
    for i, im in enumerate(images):
        out.paste(im.convert("RGB").resize((size, size), Image.NEAREST), (i * (size + 2), 0))
    return out


def figure_png(fig) -> bytes:
    """A matplotlib figure as PNG bytes (closed after), for an Image widget."""
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
    plt.close(fig)
    return buf.getvalue()


class Live:
    """Runs `update()` debounced, with a status label and an error Output; explorers own one."""

    def __init__(self, update: Callable[[], None], delay: float = 0.15):
        self.update, self.delay = update, delay
        self.status = W.Label("ready")
        self.status.add_class("up-status")
        self.errors = W.Output()
        self.errors.add_class("up-errors")
        self.seconds: float | None = None  # the last update's wall time
        self._pending = None

    def trigger(self, *_change) -> None:
        """Observer for any control: schedule one update after the controls settle."""
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # no event loop (plain Python, tests): update now
            self.run()
            return
        if self._pending is not None:
            self._pending.cancel()
        self._pending = loop.call_later(self.delay, self.run)

    def flush(self) -> None:
        """Run a scheduled update now (a notebook cell that sets a control and then checks the result)."""
        if self._pending is not None:
            self._pending.cancel()
            self.run()

    def run(self) -> None:
        if self._pending is not None:
            self._pending.cancel()
        self._pending = None
        self.errors.outputs = ()  # the last error goes when an update starts
        self.status.value = "sampling ..."
        t = time.perf_counter()
        try:
            self.update()
        except ProbeInputError as err:
            self._show(str(err))
        except Exception as err:  # noqa: BLE001  shown, not swallowed: the researcher must see it
            self._show(f"{type(err).__name__}: {err}")
        else:
            self.seconds = time.perf_counter() - t
            self.status.value = f"ready ({self.seconds:.2f} s)"

    def _show(self, message: str) -> None:
        self.status.value = "error (below)"
        self.errors.append_stdout(message + "\n")
