"""CAM scores of the real-tile runs, at two training budgets.

Usage: CISM_ISAID_ROOT=/path/to/isaid512 python docs/scripts/real_tiles_eval.py [--budget subset|full] METHOD...
after training each method at that budget:
  subset: cism train configs/isaid512.yaml with the overrides of SUBSET and METHODS (below);
          600 tiles, random 256 px crops, 3 epochs (about 9 min per method on 2 cores).
  full:   cism train configs/isaid512.yaml --seg.enabled false --out_dir runs/real (+ METHODS);
          all 2300 train tiles shrunk whole to 384 px (data.crop_mode fit), 1 epoch (about 40 min).

Scored splits: subset: val = first 300 val tiles, threshold chosen on the first 300 train tiles,
and the reverse. full: val = all val tiles with the threshold chosen on the first 300 train tiles
(the reported protocol); also val with the threshold chosen on val itself, the protocol of the
calibration figure of a plain CAM (about 21 mIoU), which is optimistic and shown only beside it.
"""
import argparse
import os

import torch

from cism_lib import pipeline
from cism_lib.cam import make_cams
from cism_lib.config import load_config
from cism_lib.data.isaid import SegFolder
from cism_lib.engine import CKPT_NAME, load_classifier
from cism_lib.metrics import evaluate_cams, write_metrics

ROOT = os.environ["CISM_ISAID_ROOT"]  # the real tiles: never a hard-coded path
SUBSET = {"data.root": ROOT, "data.max_train": 600, "data.crop_size": 256, "data.crop_mode": "crop",
          "train.epochs": 3, "train.lr": 0.005, "train.backbone_lr_mult": 0.1, "seg.enabled": False,
          "data.workers": 0, "out_dir": "runs/real"}
FULL = {"seg.enabled": False, "out_dir": "runs/real"}  # the preset as it is (data.root from the env)
BUDGETS = {"subset": SUBSET, "full": FULL}
# Methods by name. "cism-literal" is the literal reading of Eq. 14-17 (W_c scores the
# class-specific features, Eq. 16 divides by the sum of gamma, L_sl reaches the CAM).
METHODS = {"cam": {"model.method": "cam"}, "cian": {"model.method": "cian"}, "cism": {"model.method": "cism"},
           "cism-literal": {"model.method": "cism", "model.sl_scorer": "cam", "model.sl_pool": "gamma",
                            "model.sl_detach": False}}


def method_config(name, budget="subset"):
    """The run config of a method name of METHODS at a budget of BUDGETS."""
    return load_config("configs/isaid512.yaml", {**BUDGETS[budget], **METHODS[name]})


def score(cfg, rd, rep, rds, sel, sds, stem):
    """CAM metrics of split `rep` with the threshold chosen on `sel`; written as metrics/<stem>.json."""
    m = evaluate_cams(rd / "cams" / rep, rds, sds, cfg.cam.thresholds, select_cam_dir=rd / "cams" / sel,
                      eval_split=f"{rep} ({len(rds)} tiles)", select_split=f"{sel} ({len(sds)} tiles)")
    write_metrics(m, rd / "metrics", stem)
    print(rd.name, f"{rep} <- threshold from {sel}: mIoU {m['miou']:.4f} OA {m['oa']:.4f} "
          f"all-background {m['all_background_miou']:.4f} threshold {m['protocol']['threshold']}", flush=True)
    return m


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("methods", nargs="+", choices=sorted(METHODS))
    ap.add_argument("--budget", choices=sorted(BUDGETS), default="subset")
    args = ap.parse_args(argv)
    torch.set_num_threads(2)
    train = SegFolder(ROOT, "train", max_items=300)
    val = SegFolder(ROOT, "val", max_items=300 if args.budget == "subset" else None)
    for method in args.methods:
        cfg = method_config(method, args.budget)
        rd = pipeline.run_dir(cfg)
        model = load_classifier(cfg, 15, rd / "train" / CKPT_NAME, torch.device("cpu"))
        mean, std = pipeline.normalization(cfg)
        for name, ds in (("train", train), ("val", val)):
            make_cams(model, ds, rd / "cams" / name, cfg.cam, "cpu", progress=False, mean=mean, std=std)
        if args.budget == "subset":
            score(cfg, rd, "val", val, "train", train, "cam_val_subset")
            score(cfg, rd, "train", train, "val", val, "cam_train_subset")
        else:
            score(cfg, rd, "val", val, "train", train, "cam_val_full")
            score(cfg, rd, "val", val, "val", val, "cam_val_full_oracle")


if __name__ == "__main__":
    main()
