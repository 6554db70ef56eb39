"""Dataset statistics: categories per image (the paper's Figure 5) and per-class image counts."""
from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from cism_lib.classes import ClassSet

# Figure 5 of the paper, as stated in its text (section 3.3), not measured from the plot:
# "PASCAL VOC2012 contains 64% single-category scenes, whereas RS datasets contain fewer than
# 30% single-category scenes [...] in the PASCAL VOC2012 dataset [...] less than 10% of the
# samples are from three or more categories [...] In the iSAID dataset, 63% of the samples
# contain targets from 2-3 categories, and samples with more than 4 categories account for 9%."
# "fewer than 30%" is recorded as 0.29 and "less than 10%" as 0.10 (upper bounds).
# Keys are category-count ranges "lo-hi" or "lo+" (inclusive).
PAPER_FIGURE5: dict[str, dict[str, float]] = {
    "isaid": {"1": 0.29, "2-3": 0.63, "4+": 0.09},
    "voc": {"1": 0.64, "3+": 0.10},
}


def categories_per_image(labels: np.ndarray) -> np.ndarray:
    """Number of distinct foreground classes in each image, int [N]."""
    labels = np.asarray(labels)
    if labels.ndim != 2:
        raise ValueError(f"labels must be [N, K], got shape {labels.shape}")
    return labels.astype(bool).sum(axis=1)


def category_histogram(labels: np.ndarray, max_bin: int = 5) -> pd.DataFrame:
    """Images per number of categories: rows '0', '1', ..., '<max_bin>+' (Figure 5)."""
    n = np.minimum(categories_per_image(labels), max_bin)
    counts = np.bincount(n, minlength=max_bin + 1)
    names = [str(i) for i in range(max_bin)] + [f"{max_bin}+"]
    total = max(len(n), 1)
    return pd.DataFrame({"n_categories": names, "images": counts.astype(int),
                         "fraction": counts / total})


def category_fraction(labels: np.ndarray, key: str) -> float:
    """Fraction of images whose category count is in a range key such as '1', '2-3' or '4+'."""
    n = categories_per_image(labels)
    if key.endswith("+"):
        hit = n >= int(key[:-1])
    else:
        lo, _, hi = key.partition("-")
        hit = (n >= int(lo)) & (n <= int(hi or lo))
    return float(hit.mean()) if len(n) else 0.0


def class_image_counts(labels: np.ndarray, classes: ClassSet) -> pd.DataFrame:
    """Images containing each foreground class: class_id, name, images, fraction."""
    labels = np.asarray(labels).astype(bool)
    if labels.ndim != 2 or labels.shape[1] != classes.num_foreground:
        raise ValueError(f"labels must be [N, {classes.num_foreground}] for {classes.name}, "
                         f"got shape {labels.shape}")
    counts = labels.sum(axis=0).astype(int)
    return pd.DataFrame({"class_id": np.arange(1, classes.num_classes),
                         "name": list(classes.names[1:]), "images": counts,
                         "fraction": counts / max(len(labels), 1)})


def dataset_stats(ds: Any) -> dict[str, pd.DataFrame]:
    """{'categories': category_histogram, 'classes': class_image_counts} of a dataset's labels."""
    return {"categories": category_histogram(ds.labels),
            "classes": class_image_counts(ds.labels, ds.classes)}


def ascii_bars(names: list[str], values: list[float], counts: list[int], width: int = 40) -> str:
    """One '#' bar per row, scaled so the largest value fills `width`."""
    top = max(max(values, default=0.0), 1e-12)
    pad = max((len(n) for n in names), default=1)
    return "\n".join(f"{n:>{pad}} | {'#' * round(width * v / top):<{width}} {100 * v:5.1f}%  ({c})"
                     for n, v, c in zip(names, values, counts))


def format_stats(stats: dict[str, pd.DataFrame], title: str = "", labels: np.ndarray | None = None,
                 paper: str | None = None, width: int = 40) -> str:
    """Text report for `cism data stats`: per-class table, category histogram, paper comparison."""
    lines = [title, "=" * len(title)] if title else []
    classes = stats["classes"].copy()
    classes["fraction"] = (100 * classes["fraction"]).map("{:.1f}%".format)
    lines += ["Images per class", classes.to_string(index=False), ""]
    cats = stats["categories"]
    total = int(cats["images"].sum())
    lines += [f"Categories per image ({total} images)",
              ascii_bars(list(cats["n_categories"]), list(cats["fraction"]), list(cats["images"]),
                         width)]
    if paper is not None and labels is not None:
        lines += ["", f"Compared with the paper's Figure 5 ({paper}):"]
        for key, ref in PAPER_FIGURE5[paper].items():
            lines.append(f"  {key:>4} categories: {100 * category_fraction(labels, key):5.1f}%  "
                         f"(paper {100 * ref:.0f}%)")
    return "\n".join(lines)
