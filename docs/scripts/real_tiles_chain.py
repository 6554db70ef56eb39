"""Pseudo-masks (dense CRF) and DeepLab for the real-tile runs of real_tiles_eval.py.

Usage: CISM_ISAID_ROOT=/path/to/isaid512 python docs/scripts/real_tiles_chain.py cam cian cism-literal
       [--unary prob|label] [--no-seg]
after real_tiles_eval.py has written each run's CAMs of the first 300 train / val tiles.
`--unary label` uses IRN's CRF unary (crf.unary label); its outputs get a `_label` suffix.

Per method: the background threshold chosen on val (first 300) for the train CAMs (from
metrics/cam_train_subset.json), CRF pseudo-masks of the first 300 train tiles, scored against
their ground truth; DeepLab-LargeFOV (EfficientNet-Lite0, ImageNet) trained on them with the
run's seg settings at SEG overrides; mIoU on the first 300 val tiles (single scale, no CRF).
"""
import argparse
import json
import os
import sys

import torch

from cism_lib import pipeline
from cism_lib.config import replace
from cism_lib.data.isaid import SegFolder
from cism_lib.metrics import write_metrics

sys.path.insert(0, os.path.dirname(__file__))
from real_tiles_eval import method_config  # noqa: E402  (one budget for both scripts)

ROOT = os.environ["CISM_ISAID_ROOT"]  # the real tiles: never a hard-coded path
SEG = {"seg.crop_size": 256, "seg.batch_size": 8}  # optimizer, lr, epochs: configs/isaid512.yaml


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("methods", nargs="+")
    ap.add_argument("--unary", choices=("prob", "label"), default="prob")
    ap.add_argument("--no-seg", action="store_true", help="pseudo-masks only")
    args = ap.parse_args(argv)
    torch.set_num_threads(2)
    tag = "" if args.unary == "prob" else f"_{args.unary}"
    train = SegFolder(ROOT, "train", max_items=300)
    for method in args.methods:
        cfg = method_config(method)
        rd = pipeline.run_dir(cfg)  # the classifier run (its hash does not include SEG or crf)
        cfg = replace(cfg, **{"crf.unary": args.unary})
        threshold = json.loads((rd / "metrics" / "cam_train_subset.json").read_text())["protocol"]["threshold"]
        out = rd / "pseudo" / f"train_subset{tag}"
        m = pipeline.pseudo_masks_scored(cfg, rd / "cams" / "train", train, out, threshold,
                                         split="train (first 300)", selected_on="val (first 300)", progress=False)
        write_metrics(m, rd / "metrics", f"pseudo_train_subset{tag}")
        print(method, f"pseudo-masks ({args.unary} unary) train(300) mIoU {m['miou']:.4f} OA {m['oa']:.4f} "
              f"thr {threshold}", flush=True)
        if args.no_seg:
            continue
        s = pipeline.segmenter_scored(replace(cfg, **SEG), train, out,
                                      lambda tf: SegFolder(ROOT, "val", max_items=300, transform=tf),
                                      rd / f"seg_subset{tag}", "cpu", split="val (first 300)", progress=False)
        write_metrics(s, rd / "metrics", f"seg_val_subset{tag}")
        print(method, f"DeepLab val(300) mIoU {s['miou']:.4f} OA {s['oa']:.4f}", flush=True)


if __name__ == "__main__":
    main()
