"""bf16 vs fp32 parity: the same classifier runs of a profile in both precisions, several seeds.

Usage: python docs/scripts/precision_parity.py [--profile smoke|cpu] [--seeds 0 1] [--methods cam cism]

Each run is `experiments.experiment_config(profile)` (the notebooks' budget) with `train.amp`
true (bf16 + channels_last on a bf16-native CPU) or false (fp32), trained and scored by
`pipeline.run_all(stages=train, cams, eval)` (CAM mIoU on train with the threshold chosen on val,
and the reverse; scale 1 + flip, no CRF). Runs are reused by config hash like every other run.
Prints one line per run, then mean ± std per (method, precision), with the training time.
"""
import argparse
import json

import numpy as np

from cism_lib import experiments, pipeline
from cism_lib.config import replace


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--profile", default="smoke", choices=["smoke", "cpu"])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    ap.add_argument("--methods", nargs="+", default=["cam", "cism"])
    args = ap.parse_args(argv)
    rows = []
    for method in args.methods:
        for amp in (False, True):
            for seed in args.seeds:
                cfg = replace(experiments.experiment_config(args.profile),
                              **{"model.method": method, "train.amp": amp, "train.seed": seed,
                                 "seg.enabled": False})
                rd = pipeline.run_all(cfg, stages=("train", "cams", "eval"), progress=False)
                m = pipeline.read_metrics(rd)
                log = [json.loads(line) for line in (rd / "train" / "log.jsonl").read_text().splitlines()]
                row = {"method": method, "precision": log[-1].get("precision", "fp32"), "seed": seed,
                       "train": 100 * m["cam_miou_train"], "val": 100 * m["cam_miou_val"],
                       "train_s": sum(r["seconds"] for r in log), "run": rd.name}
                rows.append(row)
                print(f"{method:5s} {row['precision']:5s} seed {seed}: CAM mIoU train {row['train']:.1f} "
                      f"val {row['val']:.1f}, training {row['train_s']:.0f} s ({rd.name})", flush=True)
    print(f"\n{args.profile}: mean ± std over seeds {args.seeds}")
    for method in args.methods:
        for prec in ("fp32", "bf16"):
            sel = [r for r in rows if r["method"] == method and r["precision"] == prec]
            if not sel:
                continue
            tr, va, ts = (np.array([r[k] for r in sel]) for k in ("train", "val", "train_s"))
            print(f"| {method} | {prec} | {tr.mean():.1f} ± {tr.std(ddof=1):.1f} | "
                  f"{va.mean():.1f} ± {va.std(ddof=1):.1f} | {ts.mean():.0f} s |")


if __name__ == "__main__":
    main()
