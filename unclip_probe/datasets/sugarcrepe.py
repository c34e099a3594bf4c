"""SugarCrepe (Hsieh et al. 2023): seven splits of COCO val2017 images, each with a true caption and
one hard negative made by replacing, swapping or adding an object, attribute or relation.

Layout of the release (``RAIVNLab/sugar-crepe``, its ``data/`` folder) beside the COCO images::

    DIR/add_obj.json add_att.json replace_obj.json replace_att.json replace_rel.json
        swap_obj.json swap_att.json     each {"0": {"filename", "caption", "negative_caption"}, ...}
    IMAGES/000000219578.jpg ...         COCO val2017 (``images=``; default DIR/val2017)

Score (its ``main_eval.py``): per split, the share of items whose image is closer (cosine) to the
caption than to the negative, strictly (a tie is wrong). A missing split file is skipped; an empty
one gives a row with n = 0 and no accuracy. Note: the release's ``swap_obj.json`` lost one item in
November 2023 (245 left); the paper's figures are over 246.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ..errors import bad_input
from .common import ImageRef, Interner, MatchingSet, check_images_exist, folder_of, need_keys, read_json

SPLITS = ("replace_obj", "replace_att", "replace_rel", "swap_obj", "swap_att", "add_obj", "add_att")
LAYOUT = ("a folder with the release's split files (" + ", ".join(f"{s}.json" for s in SPLITS) + "), each mapping "
          "an index to {filename, caption, negative_caption}, and the COCO val2017 images in val2017/ or images=")


def load_sugarcrepe(folder: str | os.PathLike, argument: str = "folder",
                    images: str | os.PathLike | None = None) -> MatchingSet:
    """All split files present in a local SugarCrepe copy, one MatchingSet (groups = split names)."""
    root = folder_of(folder, argument, "SugarCrepe", LAYOUT)
    image_root = Path(images) if images is not None else root / "val2017"
    if not image_root.is_dir():
        raise bad_input("images" if images is not None else argument,
                        f"{str(image_root)!r} is not a folder; SugarCrepe expects the COCO val2017 images there")
    present = [s for s in SPLITS if (root / f"{s}.json").is_file()]
    if not present:
        raise bad_input(argument, f"{str(root)!r} holds none of the split files; SugarCrepe expects {LAYOUT}")
    refs, captions = Interner(), Interner()
    rows_i, rows_c, groups, ids = [], [], [], []
    for split in present:
        path = root / f"{split}.json"
        data = read_json(path, argument, "SugarCrepe", LAYOUT)
        if not isinstance(data, dict):
            raise bad_input(argument, f"{str(path)!r} holds a {type(data).__name__}; SugarCrepe expects an object "
                                      "mapping indices to items")
        for key, item in data.items():
            need_keys(item, ("filename", "caption", "negative_caption"), f"item {key!r} of {str(path)!r}", argument)
            rows_i.append([refs(ImageRef(image_root / item["filename"]))])
            rows_c.append([captions(item["caption"]), captions(item["negative_caption"])])
            groups.append(split)
            ids.append(f"{split}:{key}")
    check_images_exist(refs.values, argument, "SugarCrepe")
    return MatchingSet("sugarcrepe", refs.values, captions.values, np.array(rows_i, int).reshape(-1, 1),
                       np.array(rows_c, int).reshape(-1, 2), groups, ids, answer=0,
                       meta={"splits": present, "missing_splits": [s for s in SPLITS if s not in present]})
