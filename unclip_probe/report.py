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

from . import validate
from .errors import bad_input, one_of
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


def _typographic_on(stack, images: list, labels: list[str], word: str, n_decode: int):
    """The attack on a user's images: zero-shot over their labels before and after, decodes scored by CLIP."""
    import pandas as pd

    from .probes.typographic import set_summary, typographic_attack

    res = typographic_attack(stack.clip, images, labels, word, stack=stack, n_decode=n_decode)
    res.extra_tables = {"Over the set (TCR: text capture rate)": pd.DataFrame([set_summary(res)])}
    res.table = res.table.head(12)
    return res


def write_report(stack, out: str | Path, quick: bool = False, device: str = "cpu", *, images=None,
                 labels: list[str] | None = None, word: str | None = None,
                 benchmarks: dict[str, str | Path] | None = None) -> Path:
    """Run every probe on `stack` (a loaded stack, or a world checkpoint folder) and write
    `out`/index.html; returns its path. images / labels: a user's pictures (a list, or a folder)
    and zero-shot classes for the PCA and typographic probes (default: world scenes and shapes);
    word: the typographic attack's word (default "star" on world scenes, else "ipod", paper Fig. 6);
    benchmarks: {name: folder} of published sets (``unclip_probe.datasets``) to score the stack's
    CLIP on, one section each."""
    from unclip_probe.backends import load_stack
    from .imaging import image_files
    from .probes import attribute_binding, pca_reconstruction
    from .probes.binding import SETTINGS

    validate.output_path(out, "out", folder=True), validate.flag(quick, "quick")  # before any probe runs
    if images is not None:
        images = image_files(images, "images") if isinstance(images, (str, Path)) else validate.images(images, "images")
        if labels is None or len(labels) < 2:
            raise bad_input("labels", "a report on your images needs at least two zero-shot labels, e.g. cat,dog")
        labels = validate.labels(labels, "labels")
    from .datasets import BENCHMARKS, run_benchmark

    benchmarks = dict(benchmarks or {})
    for name, path in benchmarks.items():
        if name not in BENCHMARKS:
            raise bad_input("benchmarks", one_of(name, BENCHMARKS))
        validate.input_folder(path, "benchmarks")
    t0 = time.perf_counter()
    folder = stack if isinstance(stack, (str, Path)) else None
    stack = load_stack("world", folder, device=device) if folder is not None else stack

    quick_ks = [k for k in (2, 10) if k < stack.embed_dim]
    sizes = ({"pca": dict(n_images=1, n_fit=200, ks=quick_ks), "typo": (10, 1),
              "binding": dict(n_clip=20, n_gen=2, stack_seeds=1, settings=SETTINGS[:3])}
             if quick else {"pca": {}, "typo": (200, 16), "binding": {}})
    pca_kw = dict(sizes["pca"])
    if images is not None:  # the user's pictures: PCA fitted on them, decodes scored by zero-shot over labels
        pca_kw.update(images=images[:pca_kw.pop("n_images", 8)], fit_images=images, labels=labels)
        pca_kw.pop("n_fit", None)
        typographic = lambda: _typographic_on(stack, images, labels, word or "ipod", sizes["typo"][1])  # noqa: E731
    else:
        typographic = lambda: _typographic(stack, *sizes["typo"])  # noqa: E731
    sections, seconds = [], {}
    runs = [("pca", lambda: pca_reconstruction(stack, **pca_kw)), ("typographic", typographic),
            ("binding", lambda: attribute_binding(stack, **sizes["binding"]))]
    runs += [(name, lambda name=name, path=path: run_benchmark(name, stack.clip, path, progress=False))
             for name, path in benchmarks.items()]
    for name, run in runs:
        t = time.perf_counter()
        res = run()
        seconds[name] = round(time.perf_counter() - t, 1)
        sections.append(res.to_html().replace("</h2>", f"</h2><p class='meta'>{seconds[name]} s</p>", 1))
    sums = stack.checksums
    head = (f"<h1>unclip-probe report</h1><p class='meta'>stack {html.escape(stack.name)}"
            + (f" ({html.escape(str(folder))})" if folder is not None else "") + ": "
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
