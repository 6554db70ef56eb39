"""Confusion-matrix metrics (mIoU, OA, the error shares) and the honest background-threshold
protocol for CAMs.

Metrics are fractions in [0, 1]. A class that appears in neither the ground truth nor the
predictions of the whole evaluated set has IoU NaN and is left out of the mIoU (and of mAcc when
absent from the ground truth); a class predicted but absent from the ground truth has IoU 0 and
counts. This matches the usual `nanmean` convention of the torchvision references and mmseg.

The error shares split what each class's IoU misses: of the union of its ground truth and its
prediction, the false-positive share `fp` (predicted c, truly another class) and the
false-negative share `fn` (truly c, predicted another), so that IoU + fp + fn = 1 for every class
and mIoU + mFP + mFN = 1 over the classes the mIoU counts. A CAM that spreads over background
raises fp; one that covers only an object's most telling part raises fn: which of the two a
method trades is what a mIoU alone cannot say.
"""
from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from cism_lib.cam import load_cam
from cism_lib.runtime import write_json_atomic, write_text_atomic
from cism_lib.classes import IGNORE_INDEX
from cism_lib.errors import DataError

if TYPE_CHECKING:
    import pandas as pd


class ConfusionMatrix:
    """Bincount confusion matrix, rows = ground truth, columns = prediction."""

    def __init__(self, num_classes: int, ignore_index: int = IGNORE_INDEX) -> None:
        self.num_classes = num_classes
        self.ignore_index = ignore_index
        self.mat: torch.Tensor | None = None

    @classmethod
    def of(cls, confusion: Sequence[Sequence[int]], ignore_index: int = IGNORE_INDEX) -> ConfusionMatrix:
        """The matrix of stored counts (a `compute()["confusion"]`), to compute its metrics again."""
        cm = cls(len(confusion), ignore_index)
        cm.mat = torch.as_tensor(confusion, dtype=torch.int64)
        return cm

    def update(self, gt: np.ndarray | torch.Tensor, pred: np.ndarray | torch.Tensor) -> None:
        """Add the pixels of one or more label maps; gt == ignore_index pixels are skipped."""
        gt_t, pred_t = torch.as_tensor(gt), torch.as_tensor(pred)
        if gt_t.shape != pred_t.shape:
            raise ValueError(f"gt shape {tuple(gt_t.shape)} != prediction shape {tuple(pred_t.shape)}")
        n = self.num_classes
        gt_t, pred_t = gt_t.reshape(-1).long(), pred_t.to(gt_t.device).reshape(-1).long()
        keep = (gt_t != self.ignore_index) & (gt_t >= 0) & (gt_t < n)
        gt_t, pred_t = gt_t[keep], pred_t[keep]
        if pred_t.numel() and (pred_t.min() < 0 or pred_t.max() >= n):
            raise ValueError(f"predictions must lie in [0, {n}), got {pred_t.min()}..{pred_t.max()}")
        counts = torch.bincount(gt_t * n + pred_t, minlength=n * n).reshape(n, n)
        self.mat = counts if self.mat is None else self.mat + counts.to(self.mat.device)

    def reset(self) -> None:
        """Forget every update."""
        self.mat = None

    def reduce_from_all_processes(self) -> None:
        """Sum the matrix over torch.distributed processes (no-op when not initialised)."""
        if self.mat is None:
            self.mat = torch.zeros(self.num_classes, self.num_classes, dtype=torch.int64)
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            torch.distributed.barrier()
            torch.distributed.all_reduce(self.mat)

    def compute(self) -> dict[str, Any]:
        """mIoU, per-class IoU, overall accuracy (OA), mean class accuracy, the error shares (per-class
        `fp` and `fn` and their means `mfp` and `mfn`, module docstring) and the matrix."""
        n = self.num_classes
        mat = torch.zeros(n, n, dtype=torch.int64) if self.mat is None else self.mat.cpu()
        h = mat.double()
        diag, gt_sum, pred_sum = h.diag(), h.sum(1), h.sum(0)
        union = gt_sum + pred_sum - diag

        def share(x: torch.Tensor) -> torch.Tensor:  # a share of each class's union (NaN without one)
            return torch.where(union > 0, x / union.clamp(min=1), torch.full_like(diag, math.nan))

        iou, fp, fn = share(diag), share(pred_sum - diag), share(gt_sum - diag)
        acc = torch.where(gt_sum > 0, diag / gt_sum.clamp(min=1), torch.full_like(diag, math.nan))
        total = h.sum().item()
        return {
            "miou": _nanmean(iou), "iou": iou.tolist(),
            "oa": diag.sum().item() / total if total else math.nan,
            "macc": _nanmean(acc), "acc": acc.tolist(),
            "mfp": _nanmean(fp), "fp": fp.tolist(), "mfn": _nanmean(fn), "fn": fn.tolist(),
            "confusion": mat.tolist(),
        }


def _nanmean(x: torch.Tensor) -> float:
    """Mean over the non-NaN entries (NaN when there are none)."""
    ok = ~torch.isnan(x)
    return x[ok].mean().item() if ok.any() else math.nan


def with_class_names(metrics: dict[str, Any], names: Sequence[str]) -> dict[str, Any]:
    """Add `class_names` and `iou_by_class` ({name: IoU}) to a ConfusionMatrix.compute() dict."""
    return {**metrics, "class_names": list(names),
            "iou_by_class": dict(zip(names, metrics["iou"]))}


def stored_metrics(path: str | Path) -> dict[str, Any]:
    """The metrics of a scoring file (`write_metrics`'s JSON) computed again from the confusion
    matrix it keeps, with its class names: every figure of `compute`, files scored before it
    gave them included, without making or scoring a CAM again."""
    stored = json.loads(Path(path).read_text())
    m = ConfusionMatrix.of(stored["confusion"]).compute()
    return with_class_names(m, stored.get("class_names") or [str(k) for k in range(len(m["iou"]))])


def _cam_predictions(cam_dir: Path, dataset: Any, i: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(gt mask, best foreground class id map, its CAM score) for image i."""
    cam, _ = load_cam(cam_dir / f"{dataset.ids[i]}.npz", dataset.classes.num_foreground)
    gt = dataset.read_mask(i)  # scoring: the mask alone, the image is not decoded
    if cam.shape[1:] != gt.shape:
        raise DataError(f"{cam_dir / dataset.ids[i]}.npz: CAM size {cam.shape[1:]} != mask size {gt.shape}")
    best = cam.argmax(axis=0) + 1 if cam.shape[0] else np.zeros(gt.shape, dtype=np.int64)
    score = cam.max(axis=0) if cam.shape[0] else np.zeros(gt.shape, dtype=np.float32)
    return gt, best, score


def _sweep_matrices(cam_dir: str | Path, dataset: Any,
                    thresholds: Sequence[float]) -> list[ConfusionMatrix]:
    """One confusion matrix per background threshold over every image of the dataset.

    One pass per image for all thresholds: each pixel is counted once in a histogram over
    (number of thresholds below its score, gt, best class); the matrix of threshold t_j takes the
    pixels with more than j thresholds below their score (score > t_j, the rule of
    cam.cam_to_labels) at their best class and the rest at background. Integer counts, so the
    matrices equal those of one `ConfusionMatrix.update` per threshold (tests/test_cam_metrics.py).
    """
    n, m = dataset.classes.num_classes, len(thresholds)
    order = np.argsort(np.asarray(thresholds, dtype=np.float64), kind="stable")
    hist = np.zeros((m + 1) * n * n, dtype=np.int64)
    for i in range(len(dataset)):
        gt, best, score = _cam_predictions(Path(cam_dir), dataset, i)
        gt = gt.reshape(-1).astype(np.int64)
        keep = (gt != IGNORE_INDEX) & (gt >= 0) & (gt < n)
        # thresholds in the score's dtype: `score > t` compares in float32 when the CAM is float32
        below = np.searchsorted(np.asarray(thresholds, dtype=score.dtype)[order], score.reshape(-1)[keep])
        hist += np.bincount((below * n + gt[keep]) * n + best.reshape(-1)[keep], minlength=hist.size)
    counts = hist.reshape(m + 1, n, n)
    above = np.cumsum(counts[::-1], axis=0)[::-1]  # above[j] = pixels with >= j thresholds below
    cms = [ConfusionMatrix(n) for _ in thresholds]
    for j, k in enumerate(order):
        mat = above[j + 1].copy()  # score > t_j: the best class
        mat[:, 0] += (above[0] - above[j + 1]).sum(axis=1)  # the rest: background
        cms[k].mat = torch.from_numpy(mat)
    return cms


def sweep_threshold(cam_dir: str | Path, dataset: Any, thresholds: Sequence[float]) -> "pd.DataFrame":
    """mIoU, OA and mAcc of the CAM label maps for each background threshold."""
    import pandas as pd

    rows = []
    for t, cm in zip(thresholds, _sweep_matrices(cam_dir, dataset, thresholds)):
        m = cm.compute()
        rows.append({"threshold": float(t), "miou": m["miou"], "oa": m["oa"], "macc": m["macc"]})
    return pd.DataFrame(rows, columns=["threshold", "miou", "oa", "macc"])


def _split_name(dataset: Any) -> str:
    """A dataset's split name for protocol records."""
    return str(getattr(dataset, "split", None) or type(dataset).__name__)


def _cam_meta(cam_dir: Path) -> dict[str, Any]:
    """scales/flip recorded by cam.make_cams (None when unknown)."""
    path = cam_dir / "cam_meta.json"
    meta = json.loads(path.read_text()) if path.is_file() else {}
    return {"scales": meta.get("scales"), "flip": meta.get("flip")}


def evaluate_cams(cam_dir: str | Path, dataset_eval: Any, dataset_select: Any,
                  thresholds: Sequence[float], select_cam_dir: str | Path | None = None,
                  eval_split: str | None = None, select_split: str | None = None) -> dict[str, Any]:
    """Pick the background threshold by the sweep on `dataset_select`, then score `dataset_eval` with it.

    The threshold never sees the reported split (unless the caller passes the same split twice,
    which the `protocol` record then shows). CAMs of the selection split are read from
    `select_cam_dir` (default: `cam_dir`).
    """
    sweep = sweep_threshold(select_cam_dir or cam_dir, dataset_select, thresholds)
    t = float(sweep["threshold"].iloc[int(sweep["miou"].fillna(-1).to_numpy().argmax())])
    cm, all_bg = _sweep_matrices(cam_dir, dataset_eval, [t, math.inf])
    metrics = with_class_names(cm.compute(), dataset_eval.classes.names)
    # The chance line every CAM score should clear: predicting background everywhere.
    metrics["all_background_miou"] = all_bg.compute()["miou"]
    protocol = {"threshold_selected_on": select_split or _split_name(dataset_select),
                "threshold": t, "reported_split": eval_split or _split_name(dataset_eval),
                "images_reported": len(dataset_eval), "images_selected_on": len(dataset_select),
                **_cam_meta(Path(cam_dir)), "crf": False}
    return {"protocol": protocol, **metrics, "sweep": sweep.to_dict(orient="records")}


def write_metrics(metrics: dict[str, Any], out_dir: str | Path, stem: str) -> tuple[Path, Path]:
    """Write `<stem>.json` (everything, NaN → null) and `<stem>_per_class.csv`; returns both paths."""
    import pandas as pd

    out = Path(out_dir)
    iou = metrics["iou"]
    names = metrics.get("class_names") or [str(k) for k in range(len(iou))]
    table = pd.DataFrame({"class_id": range(len(iou)), "class": names, "iou": iou})
    for key in ("acc", "fp", "fn"):
        if key in metrics:
            table[key] = metrics[key]
    json_path, csv_path = out / f"{stem}.json", out / f"{stem}_per_class.csv"
    write_json_atomic(json_path, metrics)
    write_text_atomic(csv_path, table.to_csv(index=False))
    return json_path, csv_path
