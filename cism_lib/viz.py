"""Figures of the paper (5-9) and training curves, as matplotlib Figures written deterministically.

Every function builds a `matplotlib.figure.Figure` directly (no pyplot state, works under the Agg
backend and headless); `save_figure` writes PNGs (JPEGs for panels of images and CAMs) with a
fixed dpi and no software/time metadata, so the same inputs give the same bytes. Longer than ~500
lines because every figure of the notebooks is drawn here, one function each, over the shared
`save_figure` and panel helpers.
"""
from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from cism_lib.classes import ISAID, ClassSet
from cism_lib.outputs import output_dir

DPI = 100
# Photo-like panels (tiles, CAM heatmaps) are ~1 MB as PNG; as JPEG at this quality ~4x smaller,
# with text and legend colours still clean.
JPEG_QUALITY = 80
CAM_CMAP = "jet"


class NotebookFigure(Figure):
    """A Figure that shows itself as a PNG in Jupyter without pyplot or an inline backend."""

    photo: bool = False  # panels of images or CAMs: save_figure writes them as JPEG

    def _repr_png_(self) -> bytes:
        """The figure as PNG bytes (what save_figure writes)."""
        buf = io.BytesIO()
        write_png(self, buf)
        return buf.getvalue()


def write_png(fig: Figure, target: Any) -> None:
    """The one PNG setting of every figure: fixed dpi, no software/time metadata (stable bytes)."""
    fig.savefig(target, format="png", dpi=DPI, metadata={"Software": None})


def write_jpeg(fig: Figure, target: Any) -> None:
    """The JPEG setting of photo-like figures: fixed dpi and quality (stable bytes)."""
    fig.savefig(target, format="jpeg", dpi=DPI, pil_kwargs={"quality": JPEG_QUALITY, "optimize": True})


def _figure(ncols: int, nrows: int = 1, size: float = 3.0, height: float | None = None,
            photo: bool = False) -> tuple[Figure, np.ndarray]:
    """A Figure with an [nrows, ncols] array of axes; `photo` marks panels of images to save as JPEG."""
    fig = NotebookFigure(figsize=(size * ncols, (height or size) * nrows), dpi=DPI, layout="constrained")
    fig.photo = photo
    axes = fig.subplots(nrows, ncols, squeeze=False)
    return fig, axes


def save_figure(fig: Figure, name: str, profile: str) -> Path:
    """Write figures/[<profile>/]<name>.png, or <name>.jpg for a photo-like figure; returns the path."""
    from cism_lib.runtime import atomic_path

    photo = getattr(fig, "photo", False)
    path = output_dir("figures", profile) / f"{name}{'.jpg' if photo else '.png'}"
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        (write_jpeg if photo else write_png)(fig, tmp)
    path.with_suffix(".png" if photo else ".jpg").unlink(missing_ok=True)  # a copy in the other format
    return path


# ----------------------------------------------------------------------------- overlays
# Kelly's 20 colours of maximum contrast (white and black left out): distinct for iSAID's 15 and
# VOC's 20 foreground classes.
KELLY = ("#F3C300", "#875692", "#F38400", "#A1CAF1", "#BE0032", "#C2B280", "#848482", "#008856", "#E68FAC",
         "#0067A5", "#F99379", "#654522", "#B3446C", "#882D17", "#8DB600", "#604E97", "#E25822", "#2B3D26",
         "#F6A600", "#DCD300")  # the last two are close to the first yellow: used by VOC only


def display_palette(classes: ClassSet = ISAID) -> np.ndarray:
    """uint8 [num_classes, 3]: distinct colours for figures (background black).

    The official iSAID palette (navy, teal and blues) makes ship, small vehicle, tennis court and
    swimming pool look alike on screen; figures use Kelly's colours of maximum contrast instead.
    Mask files keep the official palette (classes.index_to_rgb).
    """
    if classes.num_classes - 1 > len(KELLY):
        raise ValueError(f"display_palette: {classes.num_classes - 1} classes, only {len(KELLY)} colours")
    pal = np.zeros((classes.num_classes, 3), dtype=np.uint8)
    for k, hexcode in enumerate(KELLY[:classes.num_classes - 1], start=1):
        pal[k] = [int(hexcode[i:i + 2], 16) for i in (1, 3, 5)]
    return pal


def mask_overlay(image: np.ndarray, mask: np.ndarray, classes: ClassSet = ISAID,
                 alpha: float = 0.6) -> np.ndarray:
    """uint8 [H,W,3]: the image with display-palette class colours blended in (background and
    ignored pixels left as they are)."""
    pal = display_palette(classes).astype(np.float32)
    fg = ((mask > 0) & (mask < classes.num_classes))
    colour = pal[np.where(fg, mask, 0)]
    out = np.where(fg[..., None], (1 - alpha) * image + alpha * colour, image)
    return out.clip(0, 255).astype(np.uint8)


def cam_heatmap(image: np.ndarray, cam: np.ndarray, alpha: float = 0.5) -> np.ndarray:
    """uint8 [H,W,3]: the image blended with a jet colour map of a CAM (max over classes if [K,H,W])."""
    from matplotlib import colormaps

    heat = cam.max(axis=0) if cam.ndim == 3 else cam
    rgb = colormaps[CAM_CMAP](np.clip(heat, 0, 1))[..., :3] * 255
    return ((1 - alpha) * image + alpha * rgb).clip(0, 255).astype(np.uint8)


def _panel_image(image: np.ndarray, value: np.ndarray, classes: ClassSet) -> np.ndarray:
    """Render one panel: an RGB image as is, a float CAM as a heatmap, a 2-D id map as an overlay."""
    if value.ndim == 3 and value.shape[-1] == 3 and value.dtype == np.uint8:
        return value
    if np.issubdtype(value.dtype, np.floating):
        return cam_heatmap(image, value)
    return mask_overlay(image, value, classes)


def cam_title(model: str) -> str:
    """The panel title of a model's CAM: 'CISM CAM', and the plain CAM model's just 'CAM'."""
    return model if model.split()[-1] == "CAM" else f"{model} CAM"


def cam_panel(samples: Sequence[Mapping[str, Any]], classes: ClassSet = ISAID,
              columns: Sequence[str] | None = None, size: float = 2.2) -> Figure:
    """One row per sample: image, ground truth, CAMs (heatmaps) and masks (palette overlays).

    Each sample maps a column title to an array: uint8 [H,W,3] image, float [K,H,W] or [H,W]
    CAM, or uint8 [H,W] class-id mask; "image" is required (the background of the overlays).
    An optional "notes" entry maps column titles to a line shown under that panel's title
    (e.g. the class a CAM shows and its IoU on this image). A legend of the classes in the masks
    and a colour bar of the CAM values come with the figure.
    """
    columns = list(columns or [k for k in samples[0] if k != "notes"])
    fig, axes = _figure(len(columns), len(samples), size, photo=True)
    any_cam = False
    for r, sample in enumerate(samples):
        notes = sample.get("notes", {})
        for c, title in enumerate(columns):
            ax = axes[r, c]
            value = sample[title]
            any_cam |= bool(np.issubdtype(value.dtype, np.floating))
            ax.imshow(_panel_image(sample["image"], value, classes), interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            lines = ([title] if r == 0 else []) + ([notes[title]] if title in notes else [])
            if lines:
                ax.set_title("\n".join(lines), fontsize=8)
    if any_cam:
        cam_colorbar(fig, axes)
    _legend(fig, samples, classes)
    return fig


def cam_colorbar(fig: Figure, axes: Any, label: str = "CAM (normalised to [0, 1])") -> None:
    """A colour bar of the CAM colour map beside `axes`."""
    from matplotlib import colormaps
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import Normalize

    mappable = ScalarMappable(norm=Normalize(0, 1), cmap=colormaps[CAM_CMAP])
    cbar = fig.colorbar(mappable, ax=np.asarray(axes).ravel().tolist(), shrink=0.6, pad=0.01, aspect=30)
    cbar.set_label(label, fontsize=8)
    cbar.ax.tick_params(labelsize=7)


def _legend(fig: Figure, samples: Sequence[Mapping[str, Any]], classes: ClassSet) -> None:
    """A legend of the classes that occur in any mask of the samples (display palette)."""
    ids: set[int] = set()
    for s in samples:
        for key, v in s.items():
            if key != "image" and isinstance(v, np.ndarray) and v.ndim == 2 and v.dtype == np.uint8:
                ids |= {int(k) for k in np.unique(v) if 0 < k < classes.num_classes}
    class_legend(fig, ids, classes)


def class_legend(fig: Figure, ids: Any, classes: ClassSet = ISAID) -> None:
    """A legend under the figure: the display colour and name of each class id in `ids`."""
    from matplotlib.patches import Patch

    pal = display_palette(classes)
    handles = [Patch(color=pal[k] / 255, label=classes.names[k]) for k in sorted(ids) if 0 < k < classes.num_classes]
    if handles:
        fig.legend(handles=handles, loc="outside lower center", ncol=min(6, len(handles)), fontsize=8)


# ----------------------------------------------------------------------------- data figures
def _range_fraction(labels: np.ndarray, key: str) -> float:
    """Fraction of images whose category count falls in a Figure-5 range key ('1', '2-3', '4+')."""
    from cism_lib.data.stats import category_fraction

    return category_fraction(labels, key)


def figure5(labels: Mapping[str, np.ndarray], paper: Mapping[str, Mapping[str, float]] | None = None,
            max_bin: int = 5) -> Figure:
    """Figure 5: share of images per number of categories, ours beside the paper's iSAID and VOC.

    Left: the histogram of each dataset. Right: the ranges the paper states ('1', '2-3', '4+'
    for iSAID; '1', '3+' for VOC), ours measured and the paper's as stated.
    """
    from cism_lib.data.stats import PAPER_FIGURE5, category_histogram

    paper = PAPER_FIGURE5 if paper is None else paper
    fig, axes = _figure(2, 1, 4.2, 3.2)
    ax = axes[0, 0]
    width = 0.8 / max(len(labels), 1)
    for j, (name, lab) in enumerate(labels.items()):
        h = category_histogram(lab, max_bin)
        x = np.arange(len(h)) + (j - (len(labels) - 1) / 2) * width
        ax.bar(x, 100 * h["fraction"], width, label=f"{name} (n={len(lab)})")
    ax.set_xticks(np.arange(max_bin + 1), [str(i) for i in range(max_bin)] + [f"{max_bin}+"])
    ax.set_xlabel("categories per image")
    ax.set_ylabel("% of images")
    ax.legend(fontsize=8)
    ax.set_title("ours", fontsize=10)
    _figure5_ranges(axes[0, 1], labels, paper)
    return fig


def _figure5_ranges(ax: Any, labels: Mapping[str, np.ndarray], paper: Mapping[str, Mapping[str, float]]) -> None:
    """Grouped bars over the paper's ranges: each of our datasets and the paper's values."""
    keys = list(dict.fromkeys(k for ref in paper.values() for k in ref))
    series = {name: [100 * _range_fraction(lab, k) for k in keys] for name, lab in labels.items()}
    for name, ref in paper.items():
        series[f"paper {name}"] = [100 * ref[k] if k in ref else np.nan for k in keys]
    width = 0.8 / max(len(series), 1)
    for j, (name, values) in enumerate(series.items()):
        x = np.arange(len(keys)) + (j - (len(series) - 1) / 2) * width
        ax.bar(x, values, width, label=name, hatch="//" if name.startswith("paper") else None)
    ax.set_xticks(np.arange(len(keys)), keys)
    ax.set_xlabel("categories per image (ranges stated in the paper)")
    ax.set_ylabel("% of images")
    ax.legend(fontsize=8)
    ax.set_title("paper's Figure 5 (as stated in its text) vs ours", fontsize=10)


def class_counts_figure(counts: pd.DataFrame) -> Figure:
    """Images per class (horizontal bars), one colour per dataset (long frame from statistics_tables)."""
    fig, axes = _figure(1, 1, 7.0, 4.0)
    ax = axes[0, 0]
    names = list(dict.fromkeys(counts["name"]))
    datasets = list(dict.fromkeys(counts["dataset"]))
    height = 0.8 / max(len(datasets), 1)
    for j, d in enumerate(datasets):
        sub = counts[counts["dataset"] == d].set_index("name").reindex(names)
        y = np.arange(len(names)) + (j - (len(datasets) - 1) / 2) * height
        ax.barh(y, 100 * sub["fraction"], height, label=d)
    ax.set_yticks(np.arange(len(names)), names, fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel("% of images containing the class")
    ax.legend(fontsize=8)
    return fig


def figure6_mosaics(mosaics: Sequence[tuple[np.ndarray, np.ndarray, np.ndarray]], classes: ClassSet = ISAID,
                    before: np.ndarray | None = None, after: np.ndarray | None = None,
                    max_bin: int = 5) -> Figure:
    """Figure 6: MCSG mosaics (image over mask) and, given label arrays, categories per image before/after."""
    from cism_lib.data.stats import category_histogram

    extra = int(before is not None and after is not None)
    fig, axes = _figure(len(mosaics) + extra, 2, 2.4, photo=True)
    for j, (image, mask, label) in enumerate(mosaics):
        axes[0, j].imshow(image)
        axes[1, j].imshow(mask_overlay(image, mask, classes), interpolation="nearest")
        axes[0, j].set_title(f"mosaic {j + 1}: {int(np.sum(label))} classes", fontsize=9)
        for ax in axes[:, j]:
            ax.set_xticks([])
            ax.set_yticks([])
    if extra:
        gs = axes[0, -1].get_subplotspec().get_gridspec()
        for ax in axes[:, -1]:
            ax.remove()
        ax = fig.add_subplot(gs[:, -1])
        hb, ha = category_histogram(before, max_bin), category_histogram(after, max_bin)
        x = np.arange(len(hb))
        ax.bar(x - 0.2, 100 * hb["fraction"], 0.4, label="before MCSG")
        ax.bar(x + 0.2, 100 * ha["fraction"], 0.4, label="with MCSG")
        ax.set_xticks(x, list(hb["n_categories"]))
        ax.set_xlabel("categories per training query")
        ax.set_ylabel("% of queries")
        ax.legend(fontsize=8)
    class_legend(fig, {int(k) for _, m, _ in mosaics for k in np.unique(m)}, classes)
    return fig


# ----------------------------------------------------------------------------- curves and tables
def training_curves(histories: Mapping[str, pd.DataFrame] | pd.DataFrame,
                    keys: Sequence[str] | None = None) -> Figure:
    """Loss terms per epoch (one panel per term), one line per run."""
    if isinstance(histories, pd.DataFrame):
        histories = {"run": histories}
    histories = {n: pd.DataFrame(h) for n, h in histories.items()}
    if keys is None:
        cols = [c for h in histories.values() for c in h.columns]
        keys = [c for c in dict.fromkeys(cols) if c in ("total", "ml", "sl", "csm", "nsc")]
    keys = list(keys) or ["total"]
    fig, axes = _figure(len(keys), 1, 3.0, 2.6)
    for ax, key in zip(axes[0], keys):
        for name, h in histories.items():
            if key in h.columns and len(h):
                ax.plot(h["epoch"] + 1 if "epoch" in h.columns else np.arange(1, len(h) + 1),
                        h[key], marker="o", label=name)
        ax.set_title(key, fontsize=10)
        ax.set_xlabel("epoch")
    if len(histories) > 1:
        axes[0, 0].legend(fontsize=8)
    return fig


def learning_curves(curves: Mapping[str, Sequence[pd.DataFrame]], metric: str = "cam_miou_val",
                    paper: Mapping[str, float] | None = None, ylabel: str = "val mIoU (%)") -> Figure:
    """`metric` (a fraction) against epoch, one line per method: the mean over its seeds' curves
    (pipeline.score_curve tables), their min-max as a band where there are several; the paper's
    figures (percent) as dashed horizontal marks."""
    fig, axes = _figure(1, 1, 5.0, 3.4)
    ax = axes[0, 0]
    for i, (label, tables) in enumerate(curves.items()):
        colour = f"C{i}"
        wide = pd.concat([t.set_index("epoch")[metric].rename(n) for n, t in enumerate(tables)], axis=1) * 100
        mean = wide.mean(axis=1)
        counts = wide.notna().sum(axis=1)
        seeds, fewest = int(counts.max()), int(counts.min())
        # a seed still training has fewer epochs: the legend says how many seeds each point averages
        n = f"{seeds} seed{'s' if seeds > 1 else ''}" if fewest == seeds else f"{fewest}-{seeds} seeds by epoch"
        ax.plot(mean.index, mean, marker="o", color=colour, label=f"{label} ({n})")
        if seeds > 1:
            ax.fill_between(wide.index, wide.min(axis=1), wide.max(axis=1), color=colour, alpha=0.2, linewidth=0)
    for i, (label, value) in enumerate((paper or {}).items()):
        ax.axhline(value, color=f"C{len(curves) + i}", linestyle="--", linewidth=1)
        ax.annotate(f"paper: {label} {value:.1f}", (1.0, value), xycoords=("axes fraction", "data"),
                    ha="right", va="bottom", fontsize=8)
    ax.set_xlabel("epoch")
    ax.set_ylabel(ylabel)
    ax.xaxis.get_major_locator().set_params(integer=True)
    ax.legend(fontsize=8, loc="best")  # the least-covered corner: curves rise, the paper's marks sit high
    return fig


class LiveCurves:
    """Training curves that redraw in the notebook after each epoch (a no-op outside IPython)."""

    def __init__(self, history: Sequence[Mapping[str, Any]] = ()) -> None:
        self.history = [dict(h) for h in history]
        self.handle = None
        try:
            from IPython import get_ipython
            from IPython.display import display

            if get_ipython() is not None:
                self.handle = display(training_curves(pd.DataFrame(self.history or [{"epoch": 0}])),
                                      display_id=True)
        except ImportError:
            pass

    def update(self, record: Mapping[str, Any]) -> None:
        """Add one epoch's record and redraw."""
        self.history.append(dict(record))
        if self.handle is not None:
            self.handle.update(training_curves(pd.DataFrame(self.history)))

    def close(self) -> None:
        """Nothing to release (kept for symmetry with progress bars)."""


def comparison_bars(table: pd.DataFrame, metric: str = "mIoU") -> Figure:
    """Paper vs ours (with std error bars) per row of a compare() frame."""
    fig, axes = _figure(1, 1, max(4.0, 1.1 * len(table)), 3.0)
    ax = axes[0, 0]
    x = np.arange(len(table))
    ax.bar(x - 0.2, table[f"paper {metric}"], 0.4, label="paper (iSAID)", hatch="//")
    ran = sorted(set(map(str, table["data"])) - {"not run"})
    ax.bar(x + 0.2, table[f"ours {metric}"], 0.4, yerr=table[f"ours {metric} std"].fillna(0),
           label=f"ours ({', '.join(ran) or 'not run'})")
    ax.set_xticks(x, list(table["row"]), rotation=20, fontsize=8)
    ax.set_ylabel(f"{metric} (%)")
    fig.legend(loc="outside lower center", ncol=2, fontsize=8)
    return fig


def per_class_bars(table1: pd.DataFrame) -> Figure:
    """Table 1 as bars: our per-class IoU of each model (solid) with the paper's as black ticks."""
    meta = {"model", "source", "data", "protocol", "n_seeds"}
    classes = [c for c in table1.columns if c not in meta]
    ours = table1[table1["source"] == "ours"].set_index("model")
    paper = table1[table1["source"] == "paper"].set_index("model")
    models = [m for m in ours.index if ours.loc[m, classes].notna().any()]
    fig, axes = _figure(1, 1, 11.0, 3.4)
    ax = axes[0, 0]
    width = 0.8 / max(len(models), 1)
    x = np.arange(len(classes))
    for j, m in enumerate(models):
        pos = x + (j - (len(models) - 1) / 2) * width
        ax.bar(pos, ours.loc[m, classes].astype(float), width, label=f"{m} (ours)")
        if m in paper.index:
            ax.scatter(pos, paper.loc[m, classes].astype(float), marker="_", s=120, color="black",
                       label="paper" if j == len(models) - 1 else None, zorder=3)
    ax.set_xticks(x, classes, fontsize=8)
    ax.set_ylabel("IoU (%)")
    data = sorted(set(map(str, ours["data"])) - {"not run"})
    ax.set_title(f"per-class CAM IoU, ours on {', '.join(data) or 'nothing'}; paper on iSAID", fontsize=9)
    ax.legend(fontsize=8, ncol=len(models) + 1)
    return fig


# ----------------------------------------------------------------------------- inside CISM
def _over(ax: Any, image: np.ndarray, value: np.ndarray, title: str, cmap: str = CAM_CMAP,
          vmin: float = 0.0, vmax: float = 1.0) -> Any:
    """A low-resolution map drawn (bilinear) over an image; returns the AxesImage of the map."""
    h, w = image.shape[:2]
    ax.imshow(image, extent=(0, w, h, 0))
    shown = ax.imshow(value, extent=(0, w, h, 0), cmap=cmap, vmin=vmin, vmax=vmax, alpha=0.55,
                      interpolation="bilinear")
    ax.set_title(title, fontsize=8)
    ax.set_xticks([])
    ax.set_yticks([])
    return shown


def _pair_classes(ex: Mapping[str, Any], limit: int = 4) -> list[int]:
    """Indices (0..K-1) of the classes in l_q ∪ l_r, common ones first, at most `limit`."""
    lab = ex["labels"]
    common = [int(k) for k in np.flatnonzero(lab["l_co"])]
    rest = [int(k) for k in np.flatnonzero(lab["l_q"] | lab["l_r"]) if k not in common]
    return (common + rest)[:limit]


def _name(ex: Mapping[str, Any], k: int) -> str:
    """The name of foreground class index k (0-based)."""
    return ex["classes"].names[k + 1]


def inside_cams(ex: Mapping[str, Any]) -> Figure:
    """Eq. 12-13: the normalised CAMs M_k of query (top) and reference (bottom), classes of the pair."""
    ks = _pair_classes(ex)
    fig, axes = _figure(2 + len(ks), 2, 2.3, photo=True)
    for row, s in enumerate("qr"):
        image, gt = ex["images"][row], ex["gt"][row]
        for ax, (title, img) in zip(axes[row, :2], [(f"{'query' if s == 'q' else 'reference'} {ex['ids'][row]}",
                                                      image), ("ground truth (not used)",
                                                               mask_overlay(image, gt, ex["classes"]))]):
            ax.imshow(img)
            ax.set_title(title, fontsize=8)
            ax.set_xticks([])
            ax.set_yticks([])
        for j, k in enumerate(ks):
            present = "in label" if ex["labels"][f"l_{s}"][k] else "not in label"
            _over(axes[row, 2 + j], image, ex["steps"][f"M_{s}"][k], f"M: {_name(ex, k)} ({present})")
    cam_colorbar(fig, axes, "M (Eq. 13)")
    class_legend(fig, {int(v) for g in ex["gt"] for v in np.unique(g)}, ex["classes"])
    return fig


def _pca_rgb(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The first three principal components of two [D,h,w] maps (fitted on both) as RGB in [0, 1]."""
    d = a.shape[0]
    flat = np.concatenate([a.reshape(d, -1), b.reshape(d, -1)], 1).T
    flat = flat - flat.mean(0)
    _, _, vt = np.linalg.svd(flat, full_matrices=False)
    comp = flat @ vt[:3].T
    comp = (comp - comp.min(0)) / np.maximum(comp.max(0) - comp.min(0), 1e-8)
    n = a.shape[1] * a.shape[2]
    return comp[:n].reshape(*a.shape[1:], 3), comp[n:].reshape(*b.shape[1:], 3)


def inside_prototypes(ex: Mapping[str, Any]) -> Figure:
    """Eq. 1-5: the prototype maps F_c (3 principal components as colour), their value range, and
    the confident regions R_k = M_k > τ that masked average pooling averages F_c over."""
    st, ks = ex["steps"], _pair_classes(ex)
    rgb = _pca_rgb(st["F_c_q"], st["F_c_r"])
    fig, axes = _figure(2 + len(ks), 2, 2.3, photo=True)
    for row, s in enumerate("qr"):
        image = ex["images"][row]
        h, w = image.shape[:2]
        axes[row, 0].imshow(rgb[row], extent=(0, w, h, 0), interpolation="nearest")
        axes[row, 0].set_title("F_c, 3 principal comps", fontsize=8)
        f = st[f"F_c_{s}"]
        axes[row, 1].hist(f.ravel(), bins=40, range=(0, 1), color="grey")
        axes[row, 1].set_title(f"F_c values: {f.min():.2f}–{f.max():.2f}", fontsize=8)
        axes[row, 1].tick_params(labelsize=6)
        for j, k in enumerate(ks):
            area = 100 * st[f"R_{s}"][k].mean()
            _over(axes[row, 2 + j], image, st[f"R_{s}"][k] * st[f"gate_{s}"][0],
                  f"R·Γ: {_name(ex, k)} ({area:.0f}% of pixels)", cmap="Greens")
        for ax in axes[row, :1]:
            ax.set_xticks([])
            ax.set_yticks([])
    return fig


def inside_matching(ex: Mapping[str, Any]) -> Figure:
    """Eq. 7: the matching maps A_q (over the query) and A_r (over the reference)."""
    st = ex["steps"]
    fig, axes = _figure(2, 1, 3.0, photo=True)
    for j, s in enumerate("qr"):
        _over(axes[0, j], ex["images"][j], st[f"A_{s}"], f"A_{s} ({'query' if s == 'q' else 'reference'})")
    cam_colorbar(fig, axes, "A (Eq. 7), min-max normalised" if ex["config"]["pie_norm"] == "minmax" else "A (Eq. 7)")
    return fig


def inside_similarity(ex: Mapping[str, Any]) -> Figure:
    """Eq. 14: the similarity S_k = ReLU(cos(P'_k, F_c)) of the query and its product with M_k."""
    st, ks = ex["steps"], _pair_classes(ex)
    fig, axes = _figure(len(ks), 2, 2.3, photo=True)
    image = ex["images"][0]
    for j, k in enumerate(ks):
        sim = st["S_q"][k]
        _over(axes[0, j], image, sim, f"S: {_name(ex, k)} ({sim.min():.2f}–{sim.max():.2f})")
        _over(axes[1, j], image, st["mask_q"][k], f"M ⊙ S: {_name(ex, k)}")
    cam_colorbar(fig, axes, "value")
    return fig


def inside_scores(ex: Mapping[str, Any]) -> Figure:
    """Eq. 17, 21, 23-27: Z̃ of the query against l_q, y_co against l_co, y_q\\co against l_q\\co."""
    st, lab, names = ex["steps"], ex["labels"], ex["classes"].abbrev[1:] or ex["classes"].names[1:]
    sl = st["sl_q"]
    diag = np.diagonal(sl) if sl.ndim == 2 else sl
    panels = [("Z̃ (Eq. 17), diagonal", diag, lab["l_q"])]
    if "y_co" in st:
        panels.append(("y_co (Eq. 23)", st["y_co"], lab["l_co"]))
    if "y_q_nc" in st:
        panels.append(("y_q\\co (Eq. 25)", st["y_q_nc"], lab["l_q_nc"]))
    fig, axes = _figure(len(panels), 1, 4.0, 2.8)
    x = np.arange(len(diag))
    for ax, (title, score, target) in zip(axes[0], panels):
        ax.bar(x, score, color=np.where(target, "tab:green", "tab:grey"))
        ax.axhline(0, color="black", lw=0.6)
        ax.set_xticks(x, names, rotation=90, fontsize=7)
        ax.set_title(f"{title}: green = label 1", fontsize=9)
    return fig


def explore_panel(result: Mapping[str, Any]) -> Figure:
    """Image, ground truth, the chosen class's CAM and both masks of `experiments.explore`, with IoUs."""
    classes = result["classes"]
    image = result["image"]
    fig, axes = _figure(3 + len(result["masks"]), 1, 2.6, photo=True)
    panels = [("image", image), ("ground truth", mask_overlay(image, result["gt"], classes)),
              (f"CAM: {result['class_name']}", cam_heatmap(image, result["cam"]))]
    for name, mask in result["masks"].items():
        iou = result["iou"][name]
        panels.append((f"{name}\nmIoU {100 * iou['mIoU']:.1f}, {result['class_name']} "
                       f"{100 * iou['class IoU']:.1f}", mask_overlay(image, mask, classes)))
    for ax, (title, img) in zip(axes[0], panels):
        ax.imshow(img, interpolation="nearest")
        ax.set_title(title, fontsize=8)
        ax.set_xticks([])
        ax.set_yticks([])
    cam_colorbar(fig, axes[0, 2])
    class_legend(fig, {int(k) for m in [result["gt"], *result["masks"].values()] for k in np.unique(m)}, classes)
    return fig


__all__ = ["save_figure", "display_palette", "class_legend", "cam_colorbar", "mask_overlay", "cam_heatmap",
           "cam_panel", "figure5", "class_counts_figure",
           "figure6_mosaics", "training_curves", "LiveCurves", "comparison_bars", "per_class_bars", "explore_panel",
           "inside_cams", "inside_prototypes", "inside_matching", "inside_similarity", "inside_scores"]
