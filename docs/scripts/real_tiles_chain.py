"""Pseudo-masks (dense CRF) and DeepLab for the real-tile runs of real_tiles_eval.py.

Usage: CISM_ISAID_ROOT=/path/to/isaid512 python docs/scripts/real_tiles_chain.py cam cian cism-literal
       [--budget subset|full] [--unary prob|label] [--no-seg]
after real_tiles_eval.py (same --budget) has written each run's CAMs of the first 300 train tiles.
`--unary label` uses IRN's CRF unary (crf.unary label); its outputs get a `_label` suffix.

Per method: CRF pseudo-masks of the first 300 train tiles, scored against their ground truth;
DeepLab-LargeFOV (EfficientNet-Lite0, ImageNet) trained on them with the run's seg settings at
SEG overrides; mIoU on val (single scale, no CRF): the first 300 val tiles (subset) or all of
them (full). Background threshold of the pseudo-masks: subset: chosen on val (first 300), from
metrics/cam_train_subset.json; full: chosen on the 300 train tiles themselves (from
metrics/cam_val_full.json), so that val, where DeepLab is scored, never picks anything.
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
    ap.add_argument("--budget", choices=("subset", "full"), default="subset")
    ap.add_argument("--unary", choices=("prob", "label"), default="prob")
    ap.add_argument("--no-seg", action="store_true", help="pseudo-masks only")
    args = ap.parse_args(argv)
    torch.set_num_threads(2)
    tag = "" if args.unary == "prob" else f"_{args.unary}"
    train = SegFolder(ROOT, "train", max_items=300)
    n_val = 300 if args.budget == "subset" else None
    for method in args.methods:
        cfg = method_config(method, args.budget)
        rd = pipeline.run_dir(cfg)  # the classifier run (its hash does not include SEG or crf)
        cfg = replace(cfg, **{"crf.unary": args.unary})
        source, selected_on = (("cam_train_subset", "val (first 300)") if args.budget == "subset"
                               else ("cam_val_full", "train (first 300, the scored split itself)"))
        threshold = json.loads((rd / "metrics" / f"{source}.json").read_text())["protocol"]["threshold"]
        out = rd / "pseudo" / f"train_subset{tag}"
        m = pipeline.pseudo_masks_scored(cfg, rd / "cams" / "train", train, out, threshold,
                                         split="train (first 300)", selected_on=selected_on, progress=False)
        write_metrics(m, rd / "metrics", f"pseudo_train_subset{tag}")
        print(method, f"pseudo-masks ({args.unary} unary) train(300) mIoU {m['miou']:.4f} OA {m['oa']:.4f} "
              f"thr {threshold}", flush=True)
        if args.no_seg:
            continue
        s = pipeline.segmenter_scored(replace(cfg, **SEG), train, out,
                                      lambda tf: SegFolder(ROOT, "val", max_items=n_val, transform=tf),
                                      rd / f"seg_subset{tag}", "cpu", progress=False,
                                      split="val (first 300)" if n_val else "val (all tiles)")
        write_metrics(s, rd / "metrics", f"seg_val_subset{tag}")
        print(method, f"DeepLab val mIoU {s['miou']:.4f} OA {s['oa']:.4f}", flush=True)


if __name__ == "__main__":
    main()
