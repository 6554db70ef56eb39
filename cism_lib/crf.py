"""Dense-CRF refinement of CAMs into pseudo-masks (Krähenbühl & Koltun 2011), with a process pool.

Pseudo-masks are written as palette ('P' mode) PNGs `<out_dir>/<id>.png` whose pixel values are
class ids (0 = background) and whose palette is the dataset's, so they open as colour images.
pydensecrf (PyPI `pydensecrf2`) is imported inside the functions that need it.
"""
from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, as_completed, wait
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from cism_lib.cam import load_cam
from cism_lib.classes import IGNORE_INDEX, ClassSet
from cism_lib.config import CrfConfig
from cism_lib.errors import DataError
from cism_lib.metrics import ConfusionMatrix, with_class_names
from cism_lib.runtime import atomic_path

PROB_CLIP = 1e-5  # the unary is -log(max(p, PROB_CLIP)), as pydensecrf.utils.unary_from_softmax
# The literature's kernel widths (Gaussian sxy 3, bilateral sxy 80) are in pixels of PASCAL VOC
# images (~500 px a side); they are scaled to the image's shorter side. Unscaled, sxy 80 spans
# most of a 192² SynthAerial scene and the bilateral term erased the CAM foreground
# (pseudo-masks 98 % background against 90 % in the ground truth; see docs/results.md).
REF_SIDE = 500.0


def kernel_sxy(cfg: CrfConfig, height: int, width: int) -> tuple[float, float]:
    """(Gaussian sxy, bilateral sxy) in pixels of an image of this size: cfg's values × side / 500."""
    scale = min(height, width) / REF_SIDE
    return cfg.gauss_sxy * scale, cfg.bi_sxy * scale


def dense_crf(image: np.ndarray, probs: np.ndarray, cfg: CrfConfig = CrfConfig()) -> np.ndarray:
    """Refined class probabilities [C,H,W] from probs [C,H,W] and the RGB image uint8 [H,W,3]."""
    import pydensecrf.densecrf as dcrf

    c, h, w = probs.shape
    if image.shape != (h, w, 3):
        raise ValueError(f"image shape {image.shape} does not match probs {probs.shape}")
    crf = dcrf.DenseCRF2D(w, h, c)
    unary = -np.log(np.clip(probs, PROB_CLIP, 1.0)).reshape(c, -1)
    crf.setUnaryEnergy(np.ascontiguousarray(unary, dtype=np.float32))
    gauss_sxy, bi_sxy = kernel_sxy(cfg, h, w)
    crf.addPairwiseGaussian(sxy=gauss_sxy, compat=cfg.gauss_compat)
    crf.addPairwiseBilateral(sxy=bi_sxy, srgb=cfg.bi_srgb,
                             rgbim=np.array(image, dtype=np.uint8, order="C"),  # writable copy
                             compat=cfg.bi_compat)
    q = crf.inference(cfg.iterations)
    return np.asarray(q, dtype=np.float32).reshape(c, h, w)


def present_ids(label: np.ndarray) -> np.ndarray:
    """Class ids of the channels of cam_to_probs: [0 (background), present foreground ids...]."""
    return np.concatenate([[0], np.flatnonzero(np.asarray(label).reshape(-1) > 0) + 1]).astype(np.int64)


def cam_to_probs(cam: np.ndarray, label: np.ndarray, bg_threshold: float | None = None,
                 bg_power: float | None = None) -> np.ndarray:
    """Per-pixel distribution [1+n_present,H,W] over background and the present classes.

    Background score: the constant `bg_threshold` (IRN's conf threshold; the same rule as
    cam.cam_to_labels, so the CRF starts from the threshold chosen by the sweep), or, with
    `bg_power` = alpha, AffinityNet's (1 - max_c cam_c)^alpha. Scores are divided by their sum.
    """
    if (bg_threshold is None) == (bg_power is None):
        raise ValueError("give exactly one of bg_threshold and bg_power")
    fg = cam[present_ids(label)[1:] - 1]
    peak = fg.max(axis=0) if len(fg) else np.zeros(cam.shape[1:], dtype=np.float32)
    bg = np.full_like(peak, bg_threshold) if bg_power is None else (1.0 - peak).clip(0, 1) ** bg_power
    scores = np.concatenate([bg[None], fg]).astype(np.float32)
    return scores / np.maximum(scores.sum(axis=0, keepdims=True), 1e-8)


def label_probs(labels: np.ndarray, n: int, gt_prob: float) -> np.ndarray:
    """IRN's CRF unary (pydensecrf's unary_from_labels): probability gt_prob for each pixel's
    label, the rest shared by the other n - 1 channels. [n,H,W] float32 from labels [H,W]."""
    if n == 1:
        return np.ones((1, *labels.shape), dtype=np.float32)
    probs = np.full((n, *labels.shape), (1.0 - gt_prob) / (n - 1), dtype=np.float32)
    np.put_along_axis(probs, labels[None].astype(np.int64), gt_prob, axis=0)
    return probs


def pseudo_mask(image: np.ndarray, cam: np.ndarray, label: np.ndarray, cfg: CrfConfig,
                bg_threshold: float | None = None, bg_power: float | None = None) -> np.ndarray:
    """Pseudo-mask uint8 [H,W] of class ids: argmax of the (CRF-refined when cfg.enabled) probs.

    With cfg.band = (low, high) other than (1, 1) and a bg_threshold t, IRN's confident labels:
    the mask made at high·t gives the foreground it finds, the mask made at low·t the background
    it still finds, and every other pixel is IGNORE_INDEX (255).
    """
    low, high = cfg.band
    if bg_threshold is not None and (low, high) != (1.0, 1.0):
        confident_fg = _one_mask(image, cam, label, cfg, high * bg_threshold, None)
        loose_fg = _one_mask(image, cam, label, cfg, low * bg_threshold, None)
        out = np.where(confident_fg > 0, confident_fg, np.uint8(IGNORE_INDEX))
        out[(confident_fg == 0) & (loose_fg == 0)] = 0
        return out.astype(np.uint8)
    return _one_mask(image, cam, label, cfg, bg_threshold, bg_power)


def _one_mask(image: np.ndarray, cam: np.ndarray, label: np.ndarray, cfg: CrfConfig,
              bg_threshold: float | None, bg_power: float | None) -> np.ndarray:
    """One CRF (or plain argmax) pseudo-mask at one background score."""
    probs = cam_to_probs(cam, label, bg_threshold, bg_power)
    if cfg.enabled:
        if cfg.unary == "label":
            probs = label_probs(probs.argmax(axis=0), len(probs), cfg.gt_prob)
        probs = dense_crf(image, probs, cfg)
    return present_ids(label)[probs.argmax(axis=0)].astype(np.uint8)


def _palette(classes: ClassSet) -> list[int]:
    """A 256-entry flat PNG palette: the class colours, white for everything else (ignore)."""
    pal = np.full((256, 3), 255, dtype=np.uint8)
    pal[: classes.num_classes] = classes.palette_array
    return pal.reshape(-1).tolist()


def write_index_png(path: str | Path, mask: np.ndarray, palette: list[int]) -> None:
    """Write a uint8 class-id map as a 'P' mode PNG with the given palette, atomically."""
    from PIL import Image

    img = Image.fromarray(np.ascontiguousarray(mask, dtype=np.uint8))
    img.putpalette(palette)  # turns the 'L' image into 'P' with the same pixel values
    with atomic_path(path) as tmp:
        img.save(tmp, format="PNG")


def read_index_png(path: str | Path) -> np.ndarray:
    """Read a class-id PNG (palette or greyscale) as uint8 [H,W]."""
    from PIL import Image

    try:
        with Image.open(path) as img:
            if img.mode not in ("P", "L"):
                raise DataError(f"{path}: expected a palette or greyscale PNG, got mode {img.mode}")
            return np.array(img, dtype=np.uint8)
    except FileNotFoundError:
        raise DataError(f"{path}: pseudo-mask not found (make the pseudo-masks first: cism pseudo CONFIG, "
                        "or cism chain RUN)") from None
    except OSError as e:
        raise DataError(f"{path}: damaged pseudo-mask ({e}); delete it and redo the pseudo-mask "
                        "stage (cism pseudo CONFIG --force, or cism chain RUN --stages pseudo --force): only missing "
                        "masks are made again") from None


@dataclass(frozen=True)
class _Job:
    """Everything a worker process needs to make one pseudo-mask."""

    sample_id: str
    image: np.ndarray
    cam_path: Path
    out_path: Path
    num_fg: int
    palette: list[int]
    cfg: CrfConfig
    bg_threshold: float | None
    bg_power: float | None


def _run_job(job: _Job) -> str:
    """Make and write one pseudo-mask; returns its id."""
    cam, label = load_cam(job.cam_path, job.num_fg)
    if cam.shape[1:] != job.image.shape[:2]:
        raise DataError(f"{job.cam_path}: CAM size {cam.shape[1:]} != image size {job.image.shape[:2]}")
    mask = pseudo_mask(job.image, cam, label, job.cfg, job.bg_threshold, job.bg_power)
    write_index_png(job.out_path, mask, job.palette)
    return job.sample_id


def _map_bounded(fn: Callable[[_Job], str], jobs: Iterable[_Job], workers: int) -> Iterator[str]:
    """fn over jobs in a process pool with at most 2 * workers jobs (and images) in flight."""
    if workers <= 1:
        yield from map(fn, jobs)
        return
    from cism_lib.runtime import process_pool

    with process_pool(workers) as pool:
        pending: set = set()
        for job in jobs:
            if len(pending) >= 2 * workers:
                done, pending = wait(pending, return_when=FIRST_COMPLETED)
                yield from (f.result() for f in done)
            pending.add(pool.submit(fn, job))
        yield from (f.result() for f in as_completed(pending))


def make_pseudo_masks(cam_dir: str | Path, dataset: Any, out_dir: str | Path, cfg: CrfConfig,
                      bg_threshold: float | None, workers: int | None = None, progress: bool = True,
                      skip_done: bool = True, bg_power: float | None = None) -> list[str]:
    """CRF + argmax pseudo-masks `<out_dir>/<id>.png` from `<cam_dir>/<id>.npz`; returns ids written.

    `workers`: processes (None → cfg.workers; 0 → os.cpu_count(); 1 → in this process).
    Existing PNGs are skipped when skip_done, so an interrupted run resumes.
    """
    from cism_lib.runtime import progress_bar

    cam_dir, out = Path(cam_dir), Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    n = workers if workers is not None else cfg.workers
    n = n or os.cpu_count() or 1
    todo = [i for i, s in enumerate(dataset.ids) if not (skip_done and (out / f"{s}.png").exists())]
    palette, num_fg = _palette(dataset.classes), dataset.classes.num_foreground
    jobs = (_Job(dataset.ids[i], dataset.read_image(i), cam_dir / f"{dataset.ids[i]}.npz",
                 out / f"{dataset.ids[i]}.png", num_fg, palette, cfg, bg_threshold, bg_power)
            for i in todo)
    done = set(progress_bar(_map_bounded(_run_job, jobs, n), total=len(todo), desc="pseudo-masks",
                    disable=not progress))
    return [dataset.ids[i] for i in todo if dataset.ids[i] in done]


def score_pseudo_masks(out_dir: str | Path, dataset: Any) -> dict[str, Any]:
    """mIoU/OA of the pseudo-masks in out_dir against the dataset's ground-truth masks.

    Pixels a pseudo-mask leaves uncertain (IGNORE_INDEX, crf.band) are not scored; `coverage` is
    the fraction of the scored ground-truth pixels that the pseudo-masks label.
    """
    cm = ConfusionMatrix(dataset.classes.num_classes)
    labelled = scored = 0
    for i, sid in enumerate(dataset.ids):
        path = Path(out_dir) / f"{sid}.png"
        pred, (_, gt) = read_index_png(path), dataset.read(i)
        if pred.shape != gt.shape:
            raise DataError(f"{path}: pseudo-mask size {pred.shape} != ground-truth size {gt.shape}")
        valid = gt != IGNORE_INDEX
        uncertain = pred == IGNORE_INDEX
        scored += int(valid.sum())
        labelled += int((valid & ~uncertain).sum())
        cm.update(np.where(uncertain, IGNORE_INDEX, gt), np.where(uncertain, 0, pred))
    return {**with_class_names(cm.compute(), dataset.classes.names),
            "coverage": labelled / scored if scored else float("nan")}
