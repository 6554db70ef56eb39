"""CAM scores of the real-tile runs on a common subset: train = first 300 tiles, val = first 300.

Usage: CISM_ISAID_ROOT=/path/to/isaid512 python docs/scripts/real_tiles_eval.py cam cian cism-literal
after `cism train configs/isaid512.yaml` with the overrides of SHARED and METHODS (below) for each.
"""
import os
import sys

import torch

from cism_lib import pipeline
from cism_lib.cam import make_cams
from cism_lib.config import load_config
from cism_lib.data.isaid import SegFolder
from cism_lib.engine import CKPT_NAME, load_classifier
from cism_lib.metrics import evaluate_cams, write_metrics

ROOT = os.environ["CISM_ISAID_ROOT"]  # the real tiles: never a hard-coded path
SHARED = {"data.root": ROOT, "data.max_train": 600, "data.crop_size": 256, "data.crop_mode": "crop", "train.epochs": 3,
          "train.lr": 0.005, "train.backbone_lr_mult": 0.1, "seg.enabled": False,
          "data.workers": 0, "out_dir": "runs/real"}
# Methods by name. "cism-literal" is the session-2 CISM run: the literal reading of Eq. 14-17
# (W_c scores the class-specific features, Eq. 16 divides by the sum of gamma, L_sl reaches the CAM).
METHODS = {"cam": {"model.method": "cam"}, "cian": {"model.method": "cian"}, "cism": {"model.method": "cism"},
           "cism-literal": {"model.method": "cism", "model.sl_scorer": "cam", "model.sl_pool": "gamma",
                            "model.sl_detach": False}}


def method_config(name):
    """The run config of a method name of METHODS at the SHARED budget."""
    return load_config("configs/isaid512.yaml", {**SHARED, **METHODS[name]})


def main(methods):
    torch.set_num_threads(2)
    train, val = SegFolder(ROOT, "train", max_items=300), SegFolder(ROOT, "val", max_items=300)
    for method in methods:
        cfg = method_config(method)
        rd = pipeline.run_dir(cfg)
        model = load_classifier(cfg, 15, rd / "train" / CKPT_NAME, torch.device("cpu"))
        mean, std = pipeline.normalization(cfg)
        for name, ds in (("train", train), ("val", val)):
            make_cams(model, ds, rd / "cams" / name, cfg.cam, "cpu", progress=False, mean=mean, std=std)
        for (rep, rds), (sel, sds) in ((("val", val), ("train", train)), (("train", train), ("val", val))):
            m = evaluate_cams(rd / "cams" / rep, rds, sds, cfg.cam.thresholds, select_cam_dir=rd / "cams" / sel,
                              eval_split=f"{rep} (first {len(rds)})", select_split=f"{sel} (first {len(sds)})")
            write_metrics(m, rd / "metrics", f"cam_{rep}_subset")
            print(method, rep, f"mIoU {m['miou']:.4f} OA {m['oa']:.4f} all-background {m['all_background_miou']:.4f}"
                  f" threshold {m['protocol']['threshold']}", flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
