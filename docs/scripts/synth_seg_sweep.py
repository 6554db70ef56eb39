"""DeepLab schedules and the CRF unary on one classifier run's pseudo-masks (docs/results.md, diagnosis).

Usage: python docs/scripts/synth_seg_sweep.py adam3_3e-4 adam6_3e-4 crf_label ...
after `cism run configs/cpu.yaml --seg.enabled false --train.lr 0.005 --train.backbone_lr_mult 0.1
--model.method cian` (the run whose CAMs and pseudo-masks are reused). Outputs in runs/sweeps/<name>.
"""
import json
import sys
import time
from pathlib import Path

import torch

from cism_lib import pipeline
from cism_lib.config import load_config
from cism_lib.crf import make_pseudo_masks, score_pseudo_masks

RUN = {"seg.enabled": False, "train.lr": 0.005, "train.backbone_lr_mult": 0.1, "model.method": "cian"}
SEG = {"seg.enabled": True, "seg.epochs": 3}  # the session-2 cpu schedule, SGD lr 1e-3
VARIANTS = {
    "sgd3": {**SEG, "seg.optimizer": "sgd", "seg.lr": 1e-3},
    "adam3_1e-4": {**SEG, "seg.optimizer": "adam", "seg.lr": 1e-4},
    "adam3_3e-4": {**SEG, "seg.optimizer": "adam", "seg.lr": 3e-4},
    "adam3_1e-3": {**SEG, "seg.optimizer": "adam", "seg.lr": 1e-3},
    "adam6_3e-4": {**SEG, "seg.optimizer": "adam", "seg.lr": 3e-4, "seg.epochs": 6},
    "crf_label": {"crf.unary": "label"},
}


def main(names):
    torch.set_num_threads(2)
    rd = pipeline.run_dir(load_config("configs/cpu.yaml", RUN))
    threshold = json.loads((rd / "metrics.json").read_text())["cam_threshold_train"]
    for name in names:
        cfg = load_config("configs/cpu.yaml", {**RUN, **VARIANTS[name]})
        out, start = Path("runs/sweeps") / name, time.time()
        train = pipeline.open_split(cfg, "train", progress=False)
        if name.startswith("crf_"):
            make_pseudo_masks(rd / "cams" / "train", train, out, cfg.crf, threshold, progress=False)
            m = score_pseudo_masks(out, train)
        else:
            m = pipeline.segmenter_scored(cfg, train, rd / "pseudo" / "train",
                                          lambda tf, cfg=cfg: pipeline.open_split(cfg, "val", transform=tf, progress=False),
                                          out, "cpu", "val", progress=False)
        print(name, f"mIoU {m['miou']:.4f} OA {m['oa']:.4f} ({time.time() - start:.0f} s, {rd})", flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
