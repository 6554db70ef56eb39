"""Figure samples: the CAM figures' runs, dataset statistics, MCSG mosaics, CAM / chain examples, inside CISM."""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from cism_lib import pipeline
from cism_lib.classes import ISAID, ClassSet
from cism_lib.config import CrfConfig, RunConfig, load_config
from cism_lib.data.stats import category_histogram, class_image_counts
from cism_lib.errors import ConfigError
from cism_lib.experiments.profiles import data_label, experiment_config, isaid_root, planned_rows, row_config
from cism_lib.experiments.records import read_history
from cism_lib.outputs import ROOT
from cism_lib.pipeline import normalization, open_split, read_metrics, run_all, run_dir
from cism_lib.runfolder import RunFolder

# The CAM figures of the paper as (table, row) pairs: Figure 7 baseline vs CISM, Figure 8 the
# PV/PIE steps of Table 4, Figure 9 the SLSC comparison of Table 6.
FIGURES: dict[str, list[tuple[str, str]]] = {
    "figure7": [("table6", "CIAN"), ("table6", "CISM +SLSC")],
    "figure8": [("table4", "Baseline (CIAN)"), ("table4", "+PV"), ("table4", "+PV+PIE")],
    "figure9": [("table6", "CIAN"), ("table6", "RPNet-like"), ("table6", "CISM"), ("table6", "CISM +SLSC")],
}


def figure_runs(figure: str, profile: str) -> dict[str, RunConfig]:
    """{row label: config (seed 0)} of a CAM figure, limited to the rows the profile's plan runs."""
    out = {}
    for table, label in FIGURES[figure]:
        planned = {r.label: r for r, _ in planned_rows(table, profile)}
        if label in planned:
            out[label] = row_config(planned[label], profile, 0, table=table)
    return out


def dataset_labels(cfg: RunConfig, split: str | None = None, progress: bool = True) -> tuple[np.ndarray, Any]:
    """(image-level labels bool [N, K], class set) of a split (default: the training split)."""
    ds = open_split(cfg, split or cfg.data.train_split, progress=progress)
    return np.asarray(ds.load_labels(progress=progress), dtype=bool), ds.classes


def figure5_labels(profile: str, progress: bool = True) -> dict[str, np.ndarray]:
    """Training labels of SynthAerial and, when CISM_ISAID_ROOT is set, of the real tiles."""
    out = {"SynthAerial": dataset_labels(experiment_config(profile), progress=progress)[0]}
    if isaid_root() is not None:
        out["iSAID tiles"] = dataset_labels(experiment_config(profile, real=True), progress=progress)[0]
    return out


def statistics_tables(labels: Mapping[str, np.ndarray], max_bin: int = 5) -> dict[str, pd.DataFrame]:
    """Category-count histogram and per-class image counts of each dataset, in long form."""
    cats = [category_histogram(lab, max_bin).assign(dataset=n) for n, lab in labels.items()]
    classes = [class_image_counts(lab, ISAID).assign(dataset=n) for n, lab in labels.items()]
    return {"categories": pd.concat(cats, ignore_index=True),
            "classes": pd.concat(classes, ignore_index=True)}


def mcsg_examples(cfg: RunConfig, n: int = 4, seed: int = 0) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """n MCSG mosaics (image, mask, label) of the training split (Figure 6)."""
    from cism_lib.data.mcsg import MCSG

    base = open_split(cfg, cfg.data.train_split)
    mcsg = MCSG(base.labels, max_categories=cfg.data.mcsg_max_categories)
    rng = np.random.default_rng(seed)
    return [mcsg.make(base, rng) for _ in range(n)]


def mcsg_distribution(cfg: RunConfig, n: int = 2000, seed: int = 0,
                      prob: float | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Labels of n training queries without and with MCSG (really stitched), for Figure 6."""
    from cism_lib.data.mcsg import MCSG, mcsg_label_distribution

    base = open_split(cfg, cfg.data.train_split)
    mcsg = MCSG(base.labels, max_categories=cfg.data.mcsg_max_categories, prob=prob,
                batch_size=cfg.train.batch_size)
    before = mcsg_label_distribution(None, base.labels, n, np.random.default_rng(seed))
    after = mcsg_label_distribution(mcsg, base.labels, n, np.random.default_rng(seed))
    return before, after


def train_live(cfg: RunConfig, progress: bool = True) -> Path:
    """Train the classifier of a run with a live loss plot (reuses a finished run); returns its folder.

    Writes the same outputs and stage marker as `pipeline.run_all(cfg, stages=("train",))`.
    """
    from cism_lib.viz import LiveCurves

    rd = pipeline.run_dir(cfg)
    if pipeline.stage_done(rd, "train"):
        return rd
    pipeline.write_run_record(cfg, rd)
    live = LiveCurves(read_history(rd).to_dict("records"))
    pipeline.mark_done(rd, "train", pipeline.stage_train(cfg, rd, progress=progress, on_epoch=live.update))
    live.close()
    return rd


def _image_order(labels: np.ndarray, n: int) -> list[int]:
    """The n images with the most categories (ties by index): the interesting ones to show."""
    counts = np.asarray(labels, dtype=bool).sum(axis=1)
    return [int(i) for i in np.argsort(-counts, kind="stable")[:n]]


def focus_class(label: np.ndarray, gt: np.ndarray) -> int:
    """The class id (1..K) a figure shows for an image: of the classes its image-level label holds,
    the one with the most ground-truth pixels (lowest id on ties); 0 when the label is empty."""
    present = [int(k) + 1 for k in np.flatnonzero(label)]
    if not present:
        return 0
    area = [int(np.sum(gt == k)) for k in present]
    return present[int(np.argmax(area))]


def image_metrics(gt: np.ndarray, pred: np.ndarray, num_classes: int) -> dict[str, Any]:
    """ConfusionMatrix metrics (miou, per-class iou, …) of one image's prediction."""
    from cism_lib.metrics import ConfusionMatrix

    cm = ConfusionMatrix(num_classes)
    cm.update(gt, pred)
    return cm.compute()


def image_iou(gt: np.ndarray, pred: np.ndarray, num_classes: int, class_id: int | None = None) -> float:
    """IoU of one class (or the mIoU over the classes present in gt or pred) on one image."""
    m = image_metrics(gt, pred, num_classes)
    return float(m["iou"][class_id] if class_id is not None else m["miou"])


def _cam_sample(image: np.ndarray, gt: np.ndarray, cams: Mapping[str, tuple[np.ndarray, np.ndarray]],
                thresholds: Mapping[str, float], k: int, classes: ClassSet) -> tuple[dict[str, Any], dict[str, str]]:
    """A figure sample's image, ground truth and each run's CAM of class k (zeros when k is 0), and
    its notes: the classes of the ground truth, and each CAM's IoU of class k on the image after
    thresholding at the run's background threshold (the caller adds its masks, then the notes)."""
    from cism_lib.cam import cam_to_labels
    from cism_lib.viz import cam_title

    sample: dict[str, Any] = {"image": image, "ground truth": gt}
    notes = {"ground truth": ", ".join(classes.abbrev[c] if classes.abbrev else classes.names[c]
                                       for c in sorted({int(v) for v in np.unique(gt)} - {0, 255}))}
    for name, (cam, _) in cams.items():
        title = cam_title(name)
        sample[title] = cam[k - 1] if k else np.zeros(cam.shape[1:], np.float32)
        if k:
            iou = image_iou(gt, cam_to_labels(cam, thresholds[name]), classes.num_classes, k)
            notes[title] = f"{classes.names[k]}: IoU {100 * iou:.1f}"
    return sample, notes


def cam_examples(runs: Mapping[str, RunConfig], split: str = "val", n: int = 4,
                 indices: Sequence[int] | None = None, pseudo_of: str | None = None,
                 crf: CrfConfig | None = None) -> list[dict[str, Any]]:
    """Image, ground truth, each run's CAM and a CRF pseudo-mask for n images (Figures 7-9).

    Each image shows one class, `focus_class` (of its labelled classes the one with the largest
    ground-truth area): every run's CAM of that class, noted with the class's IoU on this image
    after thresholding at the background threshold the run selected on the other split. The
    pseudo-mask is made from the CAMs of `pseudo_of` (default: the last run) with that run's
    threshold and noted with its mIoU on the image. Runs must have finished the cams and eval stages.
    """
    from cism_lib.cam import load_cam
    from cism_lib.crf import pseudo_mask

    first = next(iter(runs.values()))
    ds = open_split(first, split, progress=False)
    k_all = ds.classes.num_classes
    idx = list(indices) if indices is not None else _image_order(ds.labels, n)
    pseudo_of = pseudo_of or list(runs)[-1]
    thresholds = {name: float(read_metrics(run_dir(cfg)).get(f"cam_threshold_{split}", 0.3))
                  for name, cfg in runs.items()}
    samples = []
    for i in idx:
        image, gt = ds.read(i)
        cams = {name: load_cam(RunFolder(run_dir(cfg)).cams(split) / f"{ds.ids[i]}.npz", ds.classes.num_foreground)
                for name, cfg in runs.items()}
        label = cams[pseudo_of][1]
        sample, notes = _cam_sample(image, gt, cams, thresholds, focus_class(label, gt), ds.classes)
        cam, _ = cams[pseudo_of]
        title = f"pseudo-mask ({pseudo_of})"
        # A writable copy: pydensecrf rejects read-only buffers (as ds.read may return).
        sample[title] = pseudo_mask(image.copy(), cam, label, crf or runs[pseudo_of].crf,
                                    bg_threshold=thresholds[pseudo_of])
        notes[title] = f"mIoU {100 * image_iou(gt, sample[title], k_all):.1f}"
        sample["notes"] = notes
        samples.append(sample)
    return samples


def chain_examples(chains: Mapping[str, tuple[RunConfig, Path]], split: str = "val", n: int = 4,
                   indices: Sequence[int] | None = None) -> list[dict[str, Any]]:
    """Image, ground truth, then for each model its CAM, its pseudo-mask (train split only: the
    chain makes masks of training images) and its DeepLab prediction, for n images (the real-tile
    figure). `chains` maps a model name to (its run config, its chain folder) as run_rows records
    them; CAMs are shown and noted as in cam_examples (the focus class of the first model's
    labels), masks and predictions with their mIoU on the image."""
    from cism_lib.cam import load_cam
    from cism_lib.crf import read_index_png
    from cism_lib.data.transforms import normalization_for
    from cism_lib.segment import load_segmenter, predict_segmenter

    first = next(iter(chains.values()))[0]
    ds = open_split(first, split, progress=False)
    k_all = ds.classes.num_classes
    idx = list(indices) if indices is not None else _image_order(ds.labels, n)
    nets = {}
    for name, (_, cd) in chains.items():
        ccfg = load_config(RunFolder(cd).config)  # the chain's whole config (run_chain saves it)
        nets[name] = (load_segmenter(ccfg.seg, k_all, RunFolder(cd).seg_checkpoint),
                      normalization_for(ccfg.seg.backbone), ccfg.train.amp)
    runs = {name: RunFolder(cd).run_of_chain.root for name, (_, cd) in chains.items()}
    thresholds = {name: float(read_metrics(rd).get(f"cam_threshold_{split}", 0.3)) for name, rd in runs.items()}
    samples = []
    for i in idx:
        image, gt = ds.read(i)
        sid = ds.ids[i]
        cams = {name: load_cam(RunFolder(rd).cams(split) / f"{sid}.npz", ds.classes.num_foreground)
                for name, rd in runs.items()}
        k = focus_class(next(iter(cams.values()))[1], gt)
        sample, notes = _cam_sample(image, gt, cams, thresholds, k, ds.classes)
        if split == first.data.train_split:
            for name, (_, cd) in chains.items():
                mask = read_index_png(RunFolder(cd).pseudo() / f"{sid}.png")
                sample[f"{name} pseudo-mask"] = mask
                notes[f"{name} pseudo-mask"] = f"mIoU {100 * image_iou(gt, mask, k_all):.1f}"
        for name, (net, (mean, std), amp) in nets.items():
            pred = predict_segmenter(net, image, mean, std, amp)
            sample[f"{name} DeepLab"] = pred
            notes[f"{name} DeepLab"] = f"mIoU {100 * image_iou(gt, pred, k_all):.1f}"
        sample["notes"] = notes
        samples.append(sample)
    return samples


def chain_figure_runs(runs: pd.DataFrame) -> dict[str, tuple[RunConfig, Path]]:
    """{model: (config, chain folder)} of the seed-0 lines of a Table 1 frame that have a chain."""
    out = {}
    for _, line in runs.iterrows():
        if int(line["seed"]) == 0 and isinstance(line.get("chain_dir"), str):
            cd = ROOT / line["chain_dir"]  # _portable's path: relative to the repository, or absolute
            out[str(line["row"])] = (load_config(RunFolder(ROOT / line["run_dir"]).config), cd)
    return out


def inside_example(cfg: RunConfig, split: str = "val", index_q: int = 0, index_r: int | None = None,
                   progress: bool = True) -> dict[str, Any]:
    """One query/reference pair through a trained CISM run, every step kept (models.inside.trace).

    The run is trained if needed (the train stage only). `index_r` None: the first other image
    of the split whose image-level label shares a class with the query's (the pair sampler's
    rule), or the query itself when none does. Returns the two images, their ground truth (for
    drawing only), their labels with l_co and l_q\\co, and the steps as numpy arrays of the
    pair (batch dimension dropped), with the class names, τ and η of the model.
    """
    import torch

    from cism_lib.cam import normalize_image
    from cism_lib.engine import load_classifier
    from cism_lib.models.inside import pair_labels, trace

    if cfg.model.method != "cism":
        raise ConfigError(f"inside_example needs a CISM run; model.method is {cfg.model.method!r}")
    rd = run_all(cfg, stages=("train",), progress=progress)
    ds = open_split(cfg, split, progress=False)
    labels = np.asarray(ds.labels, dtype=bool)
    if index_r is None:
        shared = [j for j in range(len(ds)) if j != index_q and (labels[j] & labels[index_q]).any()]
        index_r = shared[0] if shared else index_q
    model = load_classifier(cfg, ds.classes.num_foreground, RunFolder(rd).checkpoint, torch.device("cpu"))
    mean, std = normalization(cfg)
    (image_q, gt_q), (image_r, gt_r) = ds.read(index_q), ds.read(index_r)
    steps = trace(model.eval(), normalize_image(image_q, mean, std)[None], normalize_image(image_r, mean, std)[None])
    lab = pair_labels(torch.from_numpy(labels[index_q]), torch.from_numpy(labels[index_r]))
    return {"ids": (ds.ids[index_q], ds.ids[index_r]), "indices": (index_q, index_r),
            "images": (image_q, image_r), "gt": (gt_q, gt_r),
            "labels": {k: v.numpy() for k, v in lab.items()},
            "steps": {k: v[0].float().numpy() for k, v in steps.items()},
            "classes": ds.classes, "tau": model.cam_threshold, "eta": model.eta, "data": data_label(cfg),
            "config": {k: getattr(cfg.model, k) for k in ("sl_scorer", "sl_form", "sl_pool", "pie_pool",
                                                            "pie_norm", "sim_centre", "gamma_axis")}}


def present_classes(cfg: RunConfig, split: str, index: int) -> list[str]:
    """Names of the classes in image `index`'s image-level label (what the explorer offers)."""
    ds = open_split(cfg, split, progress=False)
    return [ds.classes.names[int(k) + 1] for k in np.flatnonzero(ds.labels[index])]


def explore(cfg: RunConfig, split: str, index: int, class_id: int | None, bg_threshold: float,
            crf: CrfConfig) -> dict[str, Any]:
    """One image of a finished run: its CAM of a class, thresholded and CRF masks, and their IoU.

    `class_id` None: the image's `focus_class` (a class its label holds, the largest in area).
    """
    from cism_lib.cam import cam_to_labels, load_cam
    from cism_lib.crf import pseudo_mask

    ds = open_split(cfg, split, progress=False)
    image, gt = ds.read(index)
    cam, label = load_cam(RunFolder(run_dir(cfg)).cams(split) / f"{ds.ids[index]}.npz", ds.classes.num_foreground)
    if class_id is None:
        class_id = focus_class(label, gt) or 1
    masks = {"CAM + threshold": cam_to_labels(cam, bg_threshold),
             "CAM + CRF": pseudo_mask(image.copy(), cam, label, crf, bg_threshold=bg_threshold)}
    ious = {}
    for name, mask in masks.items():
        m = image_metrics(gt, mask, ds.classes.num_classes)
        ious[name] = {"mIoU": m["miou"], "class IoU": m["iou"][class_id]}
    return {"id": ds.ids[index], "image": image, "gt": gt, "cam": cam[class_id - 1],
            "class_id": class_id, "class_name": ds.classes.names[class_id],
            "present": [ds.classes.names[k + 1] for k in np.flatnonzero(label)],
            "masks": masks, "iou": ious, "classes": ds.classes}
