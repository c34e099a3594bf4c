"""Time of one update of each widget at its defaults (issue 7: <= 1 s on 2 CPU cores; issue 22: <= 0.4 s;
issue 23: the SAE explorer <= 1 s).

    python benchmarks/bench_widgets.py [--checkpoints checkpoints/world] [--out benchmarks/results/bench_widgets.json]

Each explorer is built on the shipped stack (build time recorded too), then one
typical interaction is made three times with fresh values and the median
update time (Live.seconds: the library call plus drawing) is recorded. Speed is
measured here, never asserted in a test.
"""
from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from pathlib import Path

import torch

from unclip_probe.backends.world.stack import UnCLIP
from unclip_probe.sae import load_sae
from unclip_probe.widgets import BindingExplorer, ManipulationsExplorer, PCAExplorer, SAEExplorer, TypographicExplorer
from unclip_probe.world import render, sample_scenes


def _timed(live, act, values) -> float:
    times = []
    for v in values:
        act(v)
        live.flush()
        times.append(live.seconds)
    return round(statistics.median(times), 3)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--checkpoints", default="checkpoints/world")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out", default="benchmarks/results/bench_widgets.json")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    pipe = UnCLIP.from_pretrained(args.checkpoints, device="cpu")
    rows = {}

    def build(name, make):
        t = time.perf_counter()
        w = make()
        rows[name] = {"build_s": round(time.perf_counter() - t, 2)}
        return w

    w = build("pca", lambda: PCAExplorer(pipe))
    ks = [v for _, v in w.k.options if v != w.k.value][:3]
    rows["pca"]["update_s"] = _timed(w.live, lambda v: setattr(w.k, "value", v), ks)
    rows["pca"]["interaction"] = "k slider to a new k (one 64 px decode)"
    w = build("typographic", lambda: TypographicExplorer(pipe))
    rows["typographic"]["update_s"] = _timed(w.live, lambda v: setattr(w.word, "value", v), ["circle", "cat", "cross"])
    rows["typographic"]["interaction"] = "new attack word (zero-shot before/after, one decoded variation, figure)"
    w = build("binding", lambda: BindingExplorer(pipe))
    rows["binding"]["update_s"] = _timed(w.live, lambda v: (setattr(w.s2, "value", v), w.go.click()),
                                         ["star", "cross", "diamond"])
    rows["binding"]["interaction"] = "decode button (prior + three 32 px decodes + CLIP 2 x 2)"
    w = build("manipulations", lambda: ManipulationsExplorer(pipe))
    rows["manipulations"]["update_s"] = {
        "interpolation_slider": _timed(w.interp_live, lambda v: setattr(w.t, "value", v), [1, 2, 3]),
        "text_diff_slider": _timed(w.diff_live, lambda v: setattr(w.theta, "value", v), [1, 2, 3]),
        "variations_button": _timed(w.var_live, lambda v: w.more.click(), [0, 1, 2])}
    sae_dir = Path(args.checkpoints) / "sae"
    if (sae_dir / "sae.safetensors").is_file():  # the shipped SAE (issue 23), over 300 world scenes as notebook 05
        images = [render(s) for s in sample_scenes(300, seed=7)]
        w = build("sae", lambda: SAEExplorer(pipe, load_sae(sae_dir), images))
        feats = w.features[1:4]
        rows["sae"]["update_s"] = {
            "feature_picker": _timed(w.live, lambda v: setattr(w.feature, "value", v), feats),
            "alpha_slider": _timed(w.live, lambda v: setattr(w.alpha, "value", v), [0.5, 1.5, 2.0])}
        rows["sae"]["interaction"] = "new feature or new alpha (top images, two 64 px decodes)"
    out = {"command": "python benchmarks/bench_widgets.py", "machine": f"{platform.platform()}, "
           f"{torch.get_num_threads()} CPU threads, torch {torch.__version__}", "widgets": rows}
    text = json.dumps(out, indent=2)
    print(text)
    Path(args.out).write_text(text + "\n")


if __name__ == "__main__":
    main()
