"""The shipped world SAE against the world's ground truth (issue 23, item 4): monosemanticity,
coverage and causal colour steering, beside random and PCA directions.

    python benchmarks/sae_world.py checkpoints/world

Embeds `--n-eval` fresh world scenes (seed `--seed`, never seen in the SAE's training, which used
`unclip-probe embed --images world --seed 0`), scores every SAE feature, every one of as many
random unit directions, and every principal direction (the embedding has D = 128, so PCA has at
most 128 directions, fewer than the SAE's latents) against every oracle attribute value
(probes.sae_ground_truth). Then the causal test, with its alpha chosen by a rule fixed before
the run:

    on calibration scenes (seed --calibration-seed), for each alpha in --alphas, the share of
    decodes that read the target colour along the colour's best feature minus the share along a
    random direction of the same norm; the alpha with the largest gap is kept (the smaller alpha
    on a tie); the target (>= 70 % against <= 10 %) is then judged on fresh scenes (seed
    --confirm-seed) at that alpha only.

Writes benchmarks/results/sae_world.json and the feature figure notebooks/figures/sae_features.png.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path


from unclip_probe.backends import load_stack
from unclip_probe.embed import embed_scenes
from unclip_probe.probes import sae_features
from unclip_probe.probes import sae_ground_truth as gt
from unclip_probe.sae import evaluate_sae, load_sae
from unclip_probe.world import COLORS, SHAPES, render, sample_scenes


def steering_summary(table) -> dict:
    """Mean over colours of each (alpha, direction), plus the per-colour rows."""
    mean = table.groupby(["alpha", "direction"])[["reads_color", "shape_kept"]].mean().reset_index()
    return {"mean_over_colours": json.loads(mean.to_json(orient="records")),
            "per_colour": json.loads(table.to_json(orient="records"))}


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("folder")
    p.add_argument("--sae", default=None, help="the SAE's folder (default: FOLDER/sae)")
    p.add_argument("--n-eval", type=int, default=5000)
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--alphas", type=float, nargs="+", default=[0.5, 0.75, 1.0, 1.5])
    p.add_argument("--n-per-color", type=int, default=20)
    p.add_argument("--calibration-seed", type=int, default=11)
    p.add_argument("--confirm-seed", type=int, default=13)
    p.add_argument("--json", default="benchmarks/results/sae_world.json")
    p.add_argument("--figure", default="notebooks/figures/sae_features.png")
    args = p.parse_args(argv)
    t0 = time.perf_counter()
    stack = load_stack("world", args.folder, device="cpu")
    sae = load_sae(args.sae or Path(args.folder) / "sae")
    scenes = sample_scenes(args.n_eval, seed=args.seed)
    z = embed_scenes(stack, scenes)  # (n_eval, D)
    out: dict = {"command": "python benchmarks/sae_world.py " + " ".join(argv if argv is not None else
                                                                          __import__("sys").argv[1:]),
                 "sae": {"config": {k: getattr(sae.config, k) for k in ("d_in", "n_latents", "k", "aux_k")},
                         **evaluate_sae(sae, z)},
                 "n_eval": args.n_eval, "threshold": gt.THRESHOLD, "seconds": {}}
    auc, alive = gt.sae_scores(sae, z, scenes)
    F = sae.config.n_latents
    out["sae_features"] = gt.summarise(auc, alive)
    rand_auc, rand_alive = gt.direction_scores(gt.random_directions(F, z.shape[1], seed=0), z, scenes)
    out["random_directions"] = gt.summarise(rand_auc, rand_alive)
    pca = gt.pca_directions(z, F)
    pca_auc, pca_alive = gt.direction_scores(pca, z, scenes)
    out["pca_directions"] = {"count": len(pca), **gt.summarise(pca_auc, pca_alive)}
    table = gt.feature_table(auc, alive)
    out["features"] = json.loads(table.reset_index().to_json(orient="records"))
    out["seconds"]["scores"] = round(time.perf_counter() - t0, 1)

    t = time.perf_counter()
    calib = gt.colour_steering(stack, sae, auc, alive, alphas=args.alphas, n_per_color=args.n_per_color,
                               seed=args.calibration_seed)
    mean = calib.groupby(["alpha", "direction"])["reads_color"].mean().unstack()
    gap = (mean["feature"] - mean["random"]).round(6)
    alpha = float(gap[gap == gap.max()].index.min())
    out["steering_calibration"] = {"seed": args.calibration_seed, "gap_by_alpha": gap.to_dict(), "chosen_alpha": alpha,
                                   **steering_summary(calib)}
    confirm = gt.colour_steering(stack, sae, auc, alive, alphas=(alpha,), n_per_color=args.n_per_color,
                                 seed=args.confirm_seed)
    m = confirm.groupby("direction")[["reads_color", "shape_kept"]].mean()
    out["steering_confirm"] = {"seed": args.confirm_seed, "alpha": alpha,
                               "feature_reads_color": float(m.loc["feature", "reads_color"]),
                               "random_reads_color": float(m.loc["random", "reads_color"]),
                               "feature_shape_kept": float(m.loc["feature", "shape_kept"]),
                               "random_shape_kept": float(m.loc["random", "shape_kept"]),
                               "target_met": bool(m.loc["feature", "reads_color"] >= 0.7
                                                  and m.loc["random", "reads_color"] <= 0.1),
                               **steering_summary(confirm)}
    out["seconds"]["steering"] = round(time.perf_counter() - t, 1)

    # The figure: each colour's best feature, then the best feature of three shapes.
    feats = list(dict.fromkeys(list(gt.best_features(auc, alive, "color").values())
                               + list(gt.best_features(auc, alive, "shape").values())[:3]))
    images = [render(s) for s in scenes[:400]]
    res = sae_features(stack, sae, images, features=feats, n_top=5, alphas=(0.0, alpha),
                       image=render(sample_scenes(1, seed=args.confirm_seed + 1)[0]),
                       labels=list(SHAPES) + list(COLORS))
    res.figure().savefig(args.figure, dpi=110, bbox_inches="tight")
    out["figure"] = {"path": args.figure, "features": feats}
    out["seconds"]["total"] = round(time.perf_counter() - t0, 1)
    Path(args.json).write_text(json.dumps(out, indent=2) + "\n")
    s, r, c = out["sae_features"], out["random_directions"], out["pca_directions"]
    print(f"SAE: fvu {out['sae']['fvu']:.3f}, L0 {out['sae']['l0']:.1f}, dead {out['sae']['dead_fraction']:.3f}")
    for name, v in (("SAE", s), ("random", r), ("PCA", c)):
        print(f"{name:7s} monosemanticity {v['monosemanticity']:.3f}  coverage {v['coverage']:.3f}  "
              f"shape+colour coverage {v['coverage_shape_color']:.3f}")
    print("steering", out["steering_confirm"]["feature_reads_color"], "vs", out["steering_confirm"]["random_reads_color"],
          "at alpha", alpha)
    return out


if __name__ == "__main__":
    main()
