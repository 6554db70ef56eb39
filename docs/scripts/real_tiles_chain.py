"""Pseudo-masks (dense CRF) and DeepLab for the real-tile runs of real_tiles_eval.py.

Usage: CISM_ISAID_ROOT=/path/to/isaid512 python docs/scripts/real_tiles_chain.py cam cian cism
after real_tiles_eval.py has written each run's CAMs of the first 300 train / val tiles.

Per method: the background threshold chosen on val (first 300) for the train CAMs (from
metrics/cam_train_subset.json), CRF pseudo-masks of the first 300 train tiles, scored against
their ground truth; DeepLab-LargeFOV (EfficientNet-Lite0, ImageNet) trained on them with the
run's seg settings at SEG overrides; mIoU on the first 300 val tiles (single scale, no CRF).
"""
import json
import os
import sys

import torch

from cism_lib import pipeline
from cism_lib.config import load_config, replace
from cism_lib.data.isaid import SegFolder
from cism_lib.metrics import write_metrics

sys.path.insert(0, os.path.dirname(__file__))
from real_tiles_eval import SHARED  # noqa: E402  (one budget for both scripts)

ROOT = os.environ["CISM_ISAID_ROOT"]  # the real tiles: never a hard-coded path
SEG = {"seg.crop_size": 256, "seg.epochs": 3, "seg.batch_size": 8}
torch.set_num_threads(2)
train = SegFolder(ROOT, "train", max_items=300)
for method in sys.argv[1:]:
    cfg = load_config("configs/isaid512.yaml", {**SHARED, "model.method": method})
    rd = pipeline.run_dir(cfg)  # the classifier run (its hash does not include SEG)
    threshold = json.loads((rd / "metrics" / "cam_train_subset.json").read_text())["protocol"]["threshold"]
    out = rd / "pseudo" / "train_subset"
    m = pipeline.pseudo_masks_scored(cfg, rd / "cams" / "train", train, out, threshold,
                                     split="train (first 300)", selected_on="val (first 300)", progress=False)
    write_metrics(m, rd / "metrics", "pseudo_train_subset")
    print(method, f"pseudo-masks train(300) mIoU {m['miou']:.4f} OA {m['oa']:.4f} thr {threshold}", flush=True)

    s = pipeline.segmenter_scored(replace(cfg, **SEG), train, out,
                                  lambda tf: SegFolder(ROOT, "val", max_items=300, transform=tf),
                                  rd / "seg_subset", "cpu", split="val (first 300)", progress=False)
    write_metrics(s, rd / "metrics", "seg_val_subset")
    print(method, f"DeepLab val(300) mIoU {s['miou']:.4f} OA {s['oa']:.4f}", flush=True)
