"""Per-class IoU and error shares of scored runs, from the confusion matrices their metrics keep.

Usage: python docs/scripts/error_shares.py RUN [RUN ...] [--split val]

For each run folder, each scored epoch (its learning-curve snapshots `curve/epoch_<N>/` and the
run's own last epoch) gives one column per class: IoU / false-positive share / false-negative
share in percent (`metrics.ConfusionMatrix.compute`: the three add to 100 for every class),
computed again from `metrics/cam_<split>.json` (`metrics.stored_metrics`). No CAM is made or scored again.
"""
import argparse
from pathlib import Path

import pandas as pd

from cism_lib.metrics import stored_metrics
from cism_lib.runfolder import RunFolder, train_history


def scored_epochs(rd: Path, split: str) -> dict[int, Path]:
    """{epoch: its metrics file} of every scored epoch of the run."""
    folder = RunFolder(rd)
    files = {int(p.parent.parent.name.removeprefix("epoch_")): p
             for p in sorted(folder.root.glob(f"curve/epoch_*/metrics/cam_{split}.json"))}
    last = folder.metrics(f"cam_{split}")
    if last.is_file():
        files[len(train_history(rd))] = last
    return dict(sorted(files.items()))


def shares_table(path: Path) -> pd.DataFrame:
    """One line per class: IoU, false-positive and false-negative share, in percent."""
    m = stored_metrics(path)
    return pd.DataFrame({"iou": m["iou"], "fp": m["fp"], "fn": m["fn"]}, index=m["class_names"]).mul(100).round(1)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run", nargs="+", type=Path)
    ap.add_argument("--split", default="val")
    args = ap.parse_args(argv)
    columns = {}
    for rd in args.run:
        for epoch, path in scored_epochs(rd, args.split).items():
            t = shares_table(path)
            columns[f"{rd.name} e{epoch}"] = t["iou"].map("{:.1f}".format) + " / " + t["fp"].map(
                "{:.0f}".format) + " / " + t["fn"].map("{:.0f}".format)
    if not columns:
        raise SystemExit(f"no scored epoch with metrics/cam_{args.split}.json under {', '.join(map(str, args.run))}")
    print(f"IoU / false-positive share / false-negative share (%), split {args.split}")
    print(pd.DataFrame(columns).to_string())


if __name__ == "__main__":
    main()
