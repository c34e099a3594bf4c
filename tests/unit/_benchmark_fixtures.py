"""Small copies of the published benchmarks, written in each release's exact layout (the real sets
cannot be downloaded here). Images are world renders, so the world CLIP reads every caption;
the writers take any captions, so a test can add non-ASCII text for an open_clip tokenizer.

Each writer returns the folder a user would pass to the loader.
"""
import json
from pathlib import Path

import pandas as pd

from unclip_probe.probes.binding import binding_scenes, swapped_pair
from unclip_probe.probes.typographic import attack_images
from unclip_probe.world import render, sample_scenes, WorldConfig
from unclip_probe.world.captions import object_phrase


def _save(image, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path)
    return path


def world_pairs(n: int, seed: int = 0, kind: str = "color"):
    """n (image, caption, twin image, twin caption) world pairs: the binding probe's Winoground items."""
    out = []
    for scene in binding_scenes(n, seed):
        cap0, twin, cap1 = swapped_pair(scene, kind)
        out.append((render(scene), cap0, render(twin), cap1))
    return out


def write_winoground(root: Path, items) -> Path:
    """items: (image_0, caption_0, image_1, caption_1, collapsed_tag) -> examples.jsonl + images/*.png."""
    lines = []
    for i, (im0, c0, im1, c1, tag) in enumerate(items):
        for j, im in enumerate((im0, im1)):
            _save(im, root / "images" / f"ex_{i}_img_{j}.png")
        lines.append({"id": i, "image_0": f"ex_{i}_img_0", "image_1": f"ex_{i}_img_1", "caption_0": c0,
                      "caption_1": c1, "tag": tag, "secondary_tag": "", "num_main_preds": 1, "collapsed_tag": tag})
    root.mkdir(parents=True, exist_ok=True)
    (root / "examples.jsonl").write_text("".join(json.dumps(x, ensure_ascii=False) + "\n" for x in lines),
                                         encoding="utf-8")
    return root


def write_vg(root: Path, kind: str, items) -> Path:
    """items: (image, bbox (x, y, w, h), true_caption, false_caption, group) with group a relation name
    (kind "relation") or an attribute pair [a0, a1] ("attribution")."""
    records = []
    for i, (im, (x, y, w, h), true, false, group) in enumerate(items):
        name = f"{2340000 + i}.jpg"
        _save(im, root / "images" / name)
        rec = {"image_id": 2340000 + i, "image_path": name, "bbox_x": x, "bbox_y": y, "bbox_w": w, "bbox_h": h,
               "true_caption": true, "false_caption": false}
        rec["relation_name" if kind == "relation" else "attributes"] = group
        records.append(rec)
    root.mkdir(parents=True, exist_ok=True)
    (root / f"visual_genome_{kind}.json").write_text(json.dumps(records, ensure_ascii=False), encoding="utf-8")
    return root


def write_order(root: Path, name: str, items) -> Path:
    """items: (image, [captions]) -> coco_karpathy_test.json over val2014/ or flickr30k_test.json over
    flickr30k-images/, as the BLIP annotation files ARO's release reads."""
    sub, file = ("val2014", "coco_karpathy_test.json") if name == "coco-order" else \
        ("flickr30k-images", "flickr30k_test.json")
    records = []
    for i, (im, caps) in enumerate(items):
        rel = f"{sub}/COCO_val2014_{i:012d}.jpg" if sub == "val2014" else f"{sub}/{1000 + i}.jpg"
        _save(im, root / rel)
        records.append({"image": rel, "caption": caps})
    root.mkdir(parents=True, exist_ok=True)
    (root / file).write_text(json.dumps(records), encoding="utf-8")
    return root


def write_sugarcrepe(root: Path, splits: dict, images: Path | None = None) -> Path:
    """splits: {split name: [(image, caption, negative_caption)]} -> <split>.json files and val2017/."""
    image_root = images or root / "val2017"
    k = 0
    for split, items in splits.items():
        data = {}
        for i, (im, cap, neg) in enumerate(items):
            name = f"{139 + k:012d}.jpg"
            k += 1
            _save(im, image_root / name)
            data[str(i)] = {"filename": name, "caption": cap, "negative_caption": neg}
        root.mkdir(parents=True, exist_ok=True)
        (root / f"{split}.json").write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")
    return root


def write_named(root: Path, items) -> Path:
    """items: (image, label, word) -> files label=<label>_text=<word>.png (RTA-100's and PAINT's names)."""
    for im, label, word in items:
        _save(im, root / f"label={label}_text={word}.png")
    return root


def write_scam(root: Path, items) -> Path:
    """items: (image, type, object_label, attack_word) -> data/train-00000-of-00001.parquet with the
    columns of the Hugging Face dataset BLISS-e-V/SCAM (image as {bytes, path})."""
    import io

    rows = []
    for i, (im, kind, label, word) in enumerate(items):
        buf = io.BytesIO()
        im.save(buf, format="PNG")
        rows.append({"image": {"bytes": buf.getvalue(), "path": f"{kind}_img_{i:04d}.png"}, "type": kind,
                     "object_label": label, "attack_word": word, "postit_area_pct": 9.5, "id": f"{kind}_img_{i:04d}"})
    (root / "data").mkdir(parents=True, exist_ok=True)
    pd.DataFrame(rows).to_parquet(root / "data" / "train-00000-of-00001.parquet")
    return root


def world_objects(n: int, seed: int = 0):
    """n single-object world scenes (no note): (image, shape)."""
    scenes = sample_scenes(n, seed=seed, config=WorldConfig(max_objects=1, note_prob=0.0))
    return [(render(s), s.objects[0].shape) for s in scenes]


def attacked(image, word: str):
    """The image with a note saying `word` (the typographic probe's note)."""
    return attack_images([image], word)[0]


def phrase(obj) -> str:
    return object_phrase(obj, size=False)
