"""`unclip-probe report --out report/`: every probe's figures and tables on a world stack, in one HTML page.

The page is self-contained (figures are inline PNGs), so it can be mailed or
opened from disk. Sizes are the probes' defaults; ``quick`` shrinks them for
tests and smoke runs (the numbers then carry less weight, and the page says so).
"""
from __future__ import annotations

import html
import platform
import time
from pathlib import Path

import torch

from .world import SHAPES, render

STYLE = """body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;color:#222}
table{border-collapse:collapse;font-size:13px}td,th{border:1px solid #ccc;padding:2px 6px;text-align:right}
img{max-width:100%}section{margin:2em 0;border-top:1px solid #ddd}.meta{color:#666;font-size:13px}"""


def _typographic(stack, n: int, n_decode: int):
    import pandas as pd

    from .probes.typographic import set_summary, typographic_attack, uncovered_objects

    scenes = uncovered_objects(n, "star")
    res = typographic_attack(stack.clip, [render(s) for s in scenes], list(SHAPES), "star",
                             true_labels=[s.objects[0].shape for s in scenes], stack=stack, n_decode=n_decode)
    res.extra_tables = {"Over the set (OCA: object classification accuracy; TCR: text capture rate)":
                        pd.DataFrame([set_summary(res)])}
    res.table = res.table.head(12)  # the first rows; the summary above covers the set
    return res


def write_report(folder: str | Path, out: str | Path, quick: bool = False, device: str = "cpu") -> Path:
    """Run every probe on the stack in `folder` and write `out`/index.html; returns its path."""
    from unclip_probe.backends import load_stack
    from .probes import attribute_binding, pca_reconstruction
    from .probes.binding import SETTINGS

    t0 = time.perf_counter()
    stack = load_stack("world", folder, device=device)

    quick_ks = [k for k in (2, 10) if k < stack.clip.embed_dim]
    sizes = ({"pca": dict(n_images=1, n_fit=200, ks=quick_ks), "typo": (10, 1),
              "binding": dict(n_clip=20, n_gen=2, stack_seeds=1, settings=SETTINGS[:3])}
             if quick else {"pca": {}, "typo": (200, 16), "binding": {}})
    sections, seconds = [], {}
    for name, run in (("pca", lambda: pca_reconstruction(stack, **sizes["pca"])),
                      ("typographic", lambda: _typographic(stack, *sizes["typo"])),
                      ("binding", lambda: attribute_binding(stack, **sizes["binding"]))):
        t = time.perf_counter()
        res = run()
        seconds[name] = round(time.perf_counter() - t, 1)
        sections.append(res.to_html().replace("</h2>", f"</h2><p class='meta'>{seconds[name]} s</p>", 1))
    sums = stack.checksums
    head = (f"<h1>unclip-probe report</h1><p class='meta'>stack {html.escape(str(folder))}: "
            + ", ".join(f"{k} {v}" for k, v in sums.items())
            + f"<br>{platform.platform()}, torch {torch.__version__}, {torch.get_num_threads()} threads, device {device}"
            + f"<br>{'QUICK sizes (a smoke run; the numbers carry little weight)' if quick else 'probe defaults'}; "
            + f"total {time.perf_counter() - t0:.0f} s</p>")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    page = out / "index.html"
    page.write_text(f"<!doctype html><html><head><meta charset='utf-8'><title>unclip-probe report</title>"
                    f"<style>{STYLE}</style></head><body>{head}{''.join(sections)}</body></html>\n", encoding="utf-8")
    return page
