"""The WSSS chain as stages: train → CAMs → eval CAMs → CRF pseudo-masks → segmentation; run records.

Longer than ~500 lines because a run's stages and a trained run's chain (the same stages after
the classifier, with other CRF / DeepLab values) share their stage functions and their one loop
(`_run_stages`); where outputs lie and what names a folder is runfolder.py's.
"""
from __future__ import annotations

import contextlib
import json
import os
import time
from collections.abc import Callable, Collection, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cism_lib.config import RunConfig, key_under, replace, save_config, to_dict
from cism_lib.errors import ConfigError
from cism_lib.runfolder import (CHAIN_IGNORED, CHAIN_KEYS, ISAID_ENV, RunFolder, chain_dir, given_root,
                                mark_done, precision, pseudo_identity, read_metrics, run_device, run_dir,
                                scalar_metrics, stage_done, train_history, update_metrics)
from cism_lib.runtime import write_json_atomic

if TYPE_CHECKING:
    import pandas as pd

STAGES = ("train", "cams", "eval", "pseudo", "segment")


# ----------------------------------------------------------------------------- data
def data_root(cfg: RunConfig, progress: bool = True) -> Path:
    """The dataset folder; SynthAerial is generated on first use."""
    d = cfg.data
    if d.dataset == "synthetic":
        from cism_lib.data import synthetic

        root = Path(d.root) if d.root else synthetic.default_root(d.synth_size, d.synth_seed,
                                                                   d.synth_train, d.synth_val)
        return synthetic.generate(root, d.synth_train, d.synth_val, d.synth_size, d.synth_seed,
                                  progress=progress)
    root = given_root(d)
    if not root:
        hint = f" or set the {ISAID_ENV} environment variable" if d.dataset == "isaid" else ""
        raise ConfigError(f"data.root is not set for dataset {d.dataset!r}: pass --data.root DIR{hint}")
    return Path(root)


def open_split(cfg: RunConfig, split: str, transform: Any = None, progress: bool = True):
    """Open one split of the configured dataset (following the dataset protocol of docs/design.md)."""
    d = cfg.data
    root = data_root(cfg, progress)
    limit = d.max_train if split == d.train_split else d.max_val
    if d.dataset == "voc":
        from cism_lib.data.voc import VOCFolder

        ds = VOCFolder(root, split, transform=transform, min_pixels=d.min_pixels,
                       skip_bad=d.skip_bad, max_items=limit)
    else:
        from cism_lib.data.isaid import SegFolder

        ds = SegFolder(root, split, layout=d.layout, transform=transform, min_pixels=d.min_pixels,
                       skip_bad=d.skip_bad, max_items=limit)
    if not progress:  # the labels now, without the bar their first use would show
        ds.load_labels(progress=False)
    return ds


def cam_split(cfg: RunConfig, split: str, transform: Any = None, progress: bool = True):
    """A split as the stages after training see it: the train split cut to its first
    `cam.max_train` images when that is set (CAMs, threshold, pseudo-masks, DeepLab), else whole."""
    n = cfg.cam.max_train
    if n is not None and split == cfg.data.train_split:
        limit = n if cfg.data.max_train is None else min(n, cfg.data.max_train)
        cfg = replace(cfg, **{"data.max_train": limit})
    return open_split(cfg, split, transform=transform, progress=progress)


def normalization(cfg: RunConfig):
    """Mean and std of the classifier's backbone."""
    from cism_lib.data.transforms import normalization_for

    return normalization_for(cfg.model.backbone)


def pair_dataset(cfg: RunConfig, progress: bool = True):
    """The training pairs (with MCSG mosaics when data.mcsg is on)."""
    from cism_lib.data.pairs import PairDataset
    from cism_lib.data.transforms import TrainTransform

    d = cfg.data
    mean, std = normalization(cfg)
    base = open_split(cfg, d.train_split, progress=progress)
    tf = TrainTransform(d.crop_size, scale_range=d.scale_range, color_jitter=d.color_jitter,
                        mean=mean, std=std, mode=d.crop_mode)
    mcsg = None
    if d.mcsg:
        from cism_lib.data.mcsg import MCSG

        mcsg = MCSG(base.labels, max_categories=d.mcsg_max_categories, prob=d.mcsg_prob,
                    batch_size=cfg.train.batch_size)  # per process under DDP
    return PairDataset(base, tf, seed=cfg.train.seed, mcsg=mcsg, sampling=d.pair_sampling)


# ----------------------------------------------------------------------------- run records
def write_run_record(cfg: RunConfig, rd: Path) -> None:
    """config.yaml and versions.json (with the thread count and precision policy) beside the outputs."""
    from cism_lib.runtime import setup_cpu, versions

    setup_cpu(cfg.threads)
    rd.mkdir(parents=True, exist_ok=True)
    folder = RunFolder(rd)
    save_config(cfg, folder.config)
    write_json_atomic(folder.versions, {**versions(), **precision(cfg).record(),
                                             "depthwise_grad": cfg.train.depthwise_grad,
                                             "fused_optimizer": cfg.train.fused_optimizer})


def pending_stages(cfg: RunConfig, rd: Path, stages: Sequence[str] = STAGES, force: bool = False) -> list[str]:
    """The stages of `stages` that `run_all` runs for this config in its folder rd, in pipeline
    order: those not done yet (all with `force`), and `segment` only when the config enables it."""
    return [s for s in STAGES if s in stages and not (s == "segment" and not cfg.seg.enabled)
            and (force or not stage_done(rd, s))]


# An unseeded draw of a later stage (stage_segment's DeepLab head) takes torch's generator as the
# stages before it left it; each stage keeps that state beside its marker, and a stage run in a
# later process (after a kill or Ctrl-C) starts from it, so resuming gives the uninterrupted numbers.
def _keep_generator(rd: Path, stage: str) -> None:
    """Save torch's generator state as `stage` leaves it (`stages/<stage>.rng.pt`)."""
    import torch

    from cism_lib.runtime import atomic_path

    with atomic_path(RunFolder(rd).generator(stage)) as tmp:
        torch.save(torch.get_rng_state(), tmp)


def _resume_generator(rd: Path, stage: str) -> None:
    """Set torch's generator to the state the last finished stage before `stage` kept (runs made
    before stages kept it: left as it is)."""
    import torch

    for before in reversed(STAGES[:STAGES.index(stage)]):
        path = RunFolder(rd).generator(before)
        if path.is_file():
            torch.set_rng_state(torch.load(path, weights_only=True))
            return


def stage_seconds(rd: Path) -> dict[str, float]:
    """Wall time of each finished stage of a run (from its markers; stages of older runs that
    did not record it are left out)."""
    out = {}
    for stage in STAGES:
        path = RunFolder(rd).stage(stage)
        if path.exists():
            seconds = json.loads(path.read_text()).get("seconds")
            if seconds is not None:
                out[stage] = float(seconds)
    return out


# ----------------------------------------------------------------------------- stages
def num_foreground(cfg: RunConfig) -> int:
    """Foreground classes of the configured dataset."""
    from cism_lib.classes import ISAID, VOC

    return (VOC if cfg.data.dataset == "voc" else ISAID).num_foreground


def stage_train(cfg: RunConfig, rd: Path, resume: bool = True, progress: bool = True,
                on_epoch: Callable[[dict], None] | None = None) -> dict[str, Any]:
    """Train the classifier on pairs; checkpoint and log in `<run>/train/`.

    `on_epoch` is called with each epoch's log record (the notebooks' live curves).
    """
    from cism_lib.engine import train_classifier
    from cism_lib.runtime import setup_cpu

    setup_cpu(cfg.threads)
    pairs = pair_dataset(cfg, progress)
    before_last = {e for e in cfg.train.curve_epochs if e < cfg.train.epochs}  # the last: the eval stage's
    if before_last:  # a snapshot whose scoring an interruption cut short: its point lands before more training
        score_curve(cfg, rd, progress=progress, score=before_last)

    def after_epoch(record: dict) -> None:
        if record["epoch"] + 1 in before_last:  # score the snapshot now, on this core
            score_curve(cfg, rd, progress=progress, score=before_last)
        if on_epoch:
            on_epoch(record)

    _, history = train_classifier(cfg, pairs, num_foreground(cfg), RunFolder(rd).train, resume=resume,
                                  progress=progress, on_epoch=after_epoch)
    return {"epochs": len(history), "final_loss": history[-1]["total"] if history else None,
            "images_per_s": history[-1]["images_per_s"] if history else None}


def _eval_splits(cfg: RunConfig) -> tuple[str, str]:
    """The (train, val) split names of the run."""
    return cfg.data.train_split, cfg.data.val_split


def stage_cams(cfg: RunConfig, rd: Path, progress: bool = True) -> dict[str, Any]:
    """Multi-scale CAMs of the train and val splits into `<run>/cams/<split>/`."""
    folder = RunFolder(rd)
    made = _make_split_cams(cfg, folder.checkpoint, folder.cams(), progress)
    return {"written": {split: written for split, (_, written) in made.items()}}


def _make_split_cams(cfg: RunConfig, checkpoint: Path, cam_root: Path, progress: bool,
                     splits: Sequence[str] | None = None, source: str | None = None) -> dict[str, tuple[int, int]]:
    """CAMs of the classifier in `checkpoint` (from W_c, or from `source`: CISMNet.cam_source) for
    each split (default: train and val, as the stages after training see them) into
    `cam_root/<split>/`, files already there kept; {split: (images, files written)}."""
    from cism_lib.cam import make_cams
    from cism_lib.engine import load_classifier
    from cism_lib.runtime import setup_cpu

    setup_cpu(cfg.threads)  # the threads and allocator of the run, also outside run_all (cism curve, rescore)
    device = run_device(cfg)
    model = load_classifier(cfg, num_foreground(cfg), checkpoint, device)
    if source is not None:
        model.cam_source = source
    mean, std = normalization(cfg)
    made = {}
    for split in splits or _eval_splits(cfg):
        ds = cam_split(cfg, split, progress=progress)
        written = make_cams(model, ds, cam_root / split, cfg.cam, device, progress=progress, mean=mean, std=std,
                            amp=cfg.train.amp)
        made[split] = (len(ds), len(written))
    return made


def stage_eval(cfg: RunConfig, rd: Path, progress: bool = True) -> dict[str, Any]:
    """CAM mIoU/OA of each split with the background threshold chosen on the other split."""
    summary = _score_split_cams(cfg, RunFolder(rd), progress)
    update_metrics(rd, **summary)
    return summary


def _score_split_cams(cfg: RunConfig, folder: RunFolder, progress: bool, source: str | None = None,
                      protocol: dict[str, Any] | None = None) -> dict[str, Any]:
    """Each split's CAMs in the folder (from W_c, or from `source`) scored with the threshold
    chosen on the other split; per-class metrics into `metrics/cam[_<source>]_<split>.json`
    (their protocol with `protocol` added), the summary returned."""
    from cism_lib.metrics import evaluate_cams, write_metrics

    train, val = _eval_splits(cfg)
    ds = {s: cam_split(cfg, s, progress=progress) for s in (train, val)}
    stem = "cam" if source is None else f"cam_{source}"
    summary = {}
    for report, select in ((train, val), (val, train)):
        m = evaluate_cams(folder.cams(report, source), ds[report], ds[select], cfg.cam.thresholds,
                          select_cam_dir=folder.cams(select, source), eval_split=report, select_split=select)
        m["protocol"].update(protocol or {})
        write_metrics(m, folder.metrics(), f"{stem}_{report}")
        summary[f"cam_miou_{report}"], summary[f"cam_oa_{report}"] = m["miou"], m["oa"]
        summary[f"cam_threshold_{report}"] = m["protocol"]["threshold"]
        summary[f"all_background_miou_{report}"] = m["all_background_miou"]
    return summary


def score_curve(cfg: RunConfig, rd: Path, progress: bool = True,
                score: Collection[int] | None = None) -> pd.DataFrame:
    """The learning curve of a run, one line per scored epoch with its scores, error shares,
    per-class val IoU and mean losses.

    A kept snapshot `train/epoch_<N>.pt` of an epoch in `score` (None: every epoch) that is not
    scored yet gets its CAMs and scores in `curve/epoch_<N>/` under the run's protocol (each
    split scored with the threshold chosen on the other); its CAM files are removed once scored.
    The last epoch's weights are the run's own: once its eval stage is done, its figures are
    that epoch's (no second scoring).
    """
    import shutil

    import pandas as pd
    import torch

    folder = RunFolder(rd)
    history = {r["epoch"] + 1: r for r in train_history(rd)}
    rows = []
    for epoch in sorted(history):
        out, snap = folder.curve(epoch), folder.snapshot(epoch)
        if epoch == cfg.train.epochs and stage_done(rd, "eval"):
            scores = {k: v for k, v in scalar_metrics(rd).items() if k.startswith(("cam_", "all_background"))}
            scored = folder
        elif out.metrics_file.is_file():
            scores, scored = scalar_metrics(out.root), out
        elif snap.is_file() and (score is None or epoch in score):
            with torch.random.fork_rng(devices=[]):  # scoring leaves training's generator as it was
                _make_split_cams(cfg, snap, out.cams(), progress)
            scores, scored = update_metrics(out.root, **_score_split_cams(cfg, out, progress)), out
            shutil.rmtree(out.cams())
        else:
            continue
        shares, per_class = _confusion_columns(scored, _eval_splits(cfg))
        losses = {k: history[epoch][k] for k in ("total", "ml", "sl", "csm", "nsc") if k in history[epoch]}
        rows.append({"epoch": epoch, "steps": history[epoch]["steps"], **scores, **shares,
                     **{f"loss_{k}": v for k, v in losses.items()}, **per_class})
    return pd.DataFrame(rows)


def _confusion_columns(folder: RunFolder, splits: tuple[str, str]) -> tuple[dict[str, float], dict[str, float]]:
    """From the confusion matrices the CAM scores in `folder` keep: each split's mean false-positive
    and false-negative shares (metrics module docstring), and the reported (second) split's
    per-class IoU (`cam_iou_<split>_<class>`)."""
    from cism_lib.metrics import stored_metrics

    shares, per_class = {}, {}
    for split in splits:
        path = folder.metrics(f"cam_{split}")
        if path.is_file():
            m = stored_metrics(path)
            shares[f"cam_fp_{split}"], shares[f"cam_fn_{split}"] = m["mfp"], m["mfn"]
            if split == splits[1]:
                per_class = {f"cam_iou_{split}_{name}": v for name, v in m["iou_by_class"].items()}
    return shares, per_class


def curve_label(cfg: RunConfig) -> str:
    """A learning curve's name: the method, and each of the anchors' training practices it uses
    (the CISM issue's study compares them), so that curves of different practices never pool."""
    t = cfg.train
    practices = [f"aux losses from epoch {t.aux_from_epoch}" if t.aux_from_epoch > 1 else "",
                 "class-first pairs" if cfg.data.pair_sampling == "class" else "",
                 f"frozen stem + {t.frozen_stages} stages" if t.frozen_stages else "",
                 "frozen BN" if t.freeze_bn else ""]
    return ", ".join([cfg.model.method.upper(), *filter(None, practices)])


def _line_head(cfg: RunConfig, rd: Path, source: str | None = None) -> dict[str, Any]:
    """What every results line of a run starts with: the run, its curve label, seed and length,
    the scoring protocol (with the CAM source where it is not W_c's own), and the machine and
    precision it ran with."""
    versions = RunFolder(rd).versions
    record = json.loads(versions.read_text()) if versions.is_file() else {}
    train, val = _eval_splits(cfg)
    return {"run": rd.name, "method": curve_label(cfg), "seed": cfg.train.seed, "epochs": cfg.train.epochs,
            "train_images": cfg.data.max_train, "threshold_images": cfg.cam.max_train,
            "protocol": f"{val} scored with the threshold chosen on {train} and vice versa; "
                        f"{f'CAM source {source}, ' if source else ''}scales "
                        f"{'/'.join(map(str, cfg.cam.scales))}{' + flip' if cfg.cam.flip else ''}, no CRF",
            "precision": record.get("precision"), "threads": record.get("torch_threads"), "cpu": record.get("cpu")}


def curve_lines(cfg: RunConfig, rd: Path, table: pd.DataFrame) -> pd.DataFrame:
    """A score_curve table as results lines, each headed by the run's _line_head."""
    head = _line_head(cfg, rd)
    return table.assign(**head)[list(head) + list(table.columns)]


def curves_of_lines(lines: pd.DataFrame) -> dict[str, list[pd.DataFrame]]:
    """Curve lines (curve_lines, e.g. a curve_runs.csv) as viz.learning_curves wants them: one
    curve per run, grouped by method and schedule length (the poly decay spans the schedule, so
    epoch 1 of a 2-epoch and of an 8-epoch run are different points), in the lines' order."""
    curves: dict[str, list[pd.DataFrame]] = {}
    for (method, epochs, _), run in lines.groupby(["method", "epochs", "run"], sort=False):
        curves.setdefault(f"{method}, {int(epochs)}-epoch schedule", []).append(run.sort_values("epoch"))
    return curves


def cam_variant(source: str, scales: Sequence[float] | None = None) -> str:
    """A rescoring's name: the CAM source (CISMNet.cam_source), and the test-time scales where
    they are not the run's own (`classifier_scales0.5-0.75-1`)."""
    return source if scales is None else f"{source}_scales{'-'.join(f'{float(s):g}' for s in scales)}"


def _rescored(cfg: RunConfig, scales: Sequence[float] | None) -> RunConfig:
    """The run's config with other test-time scales (None: its own)."""
    return cfg if scales is None else replace(cfg, **{"cam.scales": tuple(float(s) for s in scales)})


def score_cam_sources(cfg: RunConfig, rd: Path, sources: Sequence[str] = ("slsc", "product"),
                      progress: bool = True, scales: Sequence[float] | None = None,
                      keep_cams: bool = True) -> dict[str, Any]:
    """A trained run's CAMs made another way than its own, under the run's protocol otherwise.

    Each source (CISMNet.cam_source: other weights than W_c, hypothesis 1 of the CISM issue, or
    the class-specific weighting of Eq. 14) at the run's test-time scales, or at `scales`: CAMs
    of both splits into `<run>/cams_<variant>/` (removed once scored unless `keep_cams`), each
    split scored with the threshold chosen on the other, metrics/cam_<variant>_<split>.json
    (variant: cam_variant). Returns {f"cam_<score>_<split>_<variant>": ...} for mIoU, OA and
    the threshold. The weights are the run's last epoch's; nothing is retrained.
    """
    import shutil

    folder = RunFolder(rd)
    scored = _rescored(cfg, scales)
    summary: dict[str, Any] = {}
    for source in sources:
        variant = cam_variant(source, scales)
        if variant == "classifier":
            raise ConfigError("the run's own CAMs (source classifier at the run's scales) are scored by its "
                              "eval stage; give another source or --scales")
        if not folder.metrics(f"cam_{variant}_{_eval_splits(cfg)[1]}").is_file():
            _make_split_cams(scored, folder.checkpoint, folder.cams(source=variant), progress, source=source)
            _score_split_cams(scored, folder, progress, source=variant,
                              protocol={"cam_source": source, "weights": "the run's last epoch"})
        if not keep_cams and folder.cams(source=variant).is_dir():
            shutil.rmtree(folder.cams(source=variant))
        for split in _eval_splits(cfg):
            m = json.loads(folder.metrics(f"cam_{variant}_{split}").read_text())
            summary.update({f"cam_miou_{split}_{variant}": m["miou"], f"cam_oa_{split}_{variant}": m["oa"],
                            f"cam_threshold_{split}_{variant}": m["protocol"]["threshold"]})
    return summary


def rescore_lines(cfg: RunConfig, rd: Path, summary: dict[str, Any], sources: Sequence[str],
                  scales: Sequence[float] | None = None) -> pd.DataFrame:
    """A score_cam_sources summary as results lines, one per source, headed by the run's
    _line_head with the protocol of the rescoring (its source and scales)."""
    import pandas as pd

    scored = _rescored(cfg, scales)
    rows = []
    for source in sources:
        variant = cam_variant(source, scales)
        scores = {f"cam_{what}_{split}": summary[f"cam_{what}_{split}_{variant}"]
                  for split in _eval_splits(cfg) for what in ("miou", "oa", "threshold")}
        rows.append({**_line_head(scored, rd, source), "source": source,
                     "scales": "/".join(f"{s:g}" for s in scored.cam.scales), **scores})
    return pd.DataFrame(rows)


def stage_pseudo(cfg: RunConfig, rd: Path, progress: bool = True) -> dict[str, Any]:
    """Dense-CRF pseudo-masks of the training split, threshold chosen on the val split."""
    from cism_lib.metrics import write_metrics

    train, val = _eval_splits(cfg)
    threshold = read_metrics(rd)[f"cam_threshold_{train}"]  # selected on val by stage_eval
    ds = cam_split(cfg, train, progress=progress)
    folder = RunFolder(rd)
    m = pseudo_masks_scored(cfg, folder.cams(train), ds, folder.pseudo(train), threshold,
                            split=train, selected_on=val, progress=progress)
    write_metrics(m, folder.metrics(), f"pseudo_{train}")
    update_metrics(rd, **{f"pseudo_miou_{train}": m["miou"], f"pseudo_oa_{train}": m["oa"]})
    return {"miou": m["miou"]}


def pseudo_masks_scored(cfg: RunConfig, cam_dir: Path, ds: Any, out: Path, threshold: float, split: str,
                        selected_on: str, progress: bool = True) -> dict[str, Any]:
    """CRF pseudo-masks of `ds` from the CAMs in cam_dir, scored against its ground truth, with
    their protocol (split, threshold and where it was chosen, CRF, scales, flip)."""
    from cism_lib.crf import make_pseudo_masks, score_pseudo_masks

    make_pseudo_masks(cam_dir, ds, out, cfg.crf, bg_threshold=threshold, progress=progress)
    m = score_pseudo_masks(out, ds)
    m["protocol"] = {"split": split, "threshold": threshold, "threshold_selected_on": selected_on,
                     "crf": cfg.crf.enabled, "unary": cfg.crf.unary, "band": list(cfg.crf.band),
                     "scored": "the pixels the masks label (coverage)",
                     "scales": list(cfg.cam.scales), "flip": cfg.cam.flip}
    return m


def stage_segment(cfg: RunConfig, rd: Path, progress: bool = True) -> dict[str, Any]:
    """DeepLab trained on the pseudo-masks, evaluated on the val split's ground truth."""
    from cism_lib.metrics import write_metrics

    train, val = _eval_splits(cfg)
    folder = RunFolder(rd)
    m = segmenter_scored(cfg, cam_split(cfg, train, progress=progress), folder.pseudo(train),
                         lambda tf: open_split(cfg, val, transform=tf, progress=progress),
                         folder.seg, run_device(cfg), split=val, progress=progress,
                         init_seed=cfg.seg.seed)  # unset: the generator as the stages before left it
    write_metrics(m, folder.metrics(), f"seg_{val}")
    update_metrics(rd, **{f"seg_miou_{val}": m["miou"], f"seg_oa_{val}": m["oa"]})
    return {"miou": m["miou"]}


def seg_seed(cfg: RunConfig) -> int:
    """DeepLab's seed: seg.seed, or the classifier's train.seed where it is None."""
    return cfg.train.seed if cfg.seg.seed is None else cfg.seg.seed


def segmenter_scored(cfg: RunConfig, train_ds: Any, mask_dir: Path, open_val: Callable[[Any], Any],
                     out: Path, device: Any, split: str, progress: bool = True,
                     init_seed: int | None = None) -> dict[str, Any]:
    """cfg.seg's DeepLab trained on `train_ds` images with the pseudo-masks in mask_dir (checkpoint
    and log in out), then scored on `open_val(eval transform)`, a dataset with ground truth.

    `init_seed` seeds the new head's random weights (the chain's DeepLab: the same in any process);
    None draws them from the global generator as it stands (stage_segment: a deterministic
    function of the stages run before it in the same process, kept so its runs stay reproducible).
    """
    import numpy as np
    import torch

    from cism_lib.data.transforms import EvalTransform, TrainTransform, normalization_for
    from cism_lib.segment import PseudoMaskDataset, build_segmenter, evaluate_segmenter, train_segmenter

    mean, std = normalization_for(cfg.seg.backbone)
    tf = TrainTransform(cfg.seg.crop_size, scale_range=cfg.data.scale_range, color_jitter=0.0,
                        mean=mean, std=std)
    pseudo = PseudoMaskDataset(train_ds, mask_dir, tf)
    val_ds = open_val(EvalTransform(mean, std))  # before training: a missing split fails fast
    if init_seed is not None:
        torch.manual_seed(init_seed)
    model = build_segmenter(cfg.seg, train_ds.classes.num_classes)
    curve = None
    if cfg.seg.curve_images > 0:
        head = torch.utils.data.Subset(val_ds, range(min(cfg.seg.curve_images, len(val_ds))))
        head.classes = val_ds.classes

        def curve(net: Any) -> dict[str, Any]:
            m = evaluate_segmenter(net, head, device, amp=cfg.train.amp)
            return {"val_miou": m["miou"], "val_oa": m["oa"], "val_images": len(head)}

    model, history = train_segmenter(model, pseudo, cfg.seg, device, out, progress=progress, seed=seg_seed(cfg),
                                     amp=cfg.train.amp, depthwise_grad=cfg.train.depthwise_grad,
                                     fused_optimizer=cfg.train.fused_optimizer, on_epoch=curve)
    m = evaluate_segmenter(model, val_ds, device, split=split, amp=cfg.train.amp,
                           scales=tuple(cfg.seg.eval_scales), flip=cfg.seg.eval_flip)
    if (tuple(cfg.seg.eval_scales), cfg.seg.eval_flip) != ((1.0,), False):  # and the plain protocol
        single = evaluate_segmenter(model, val_ds, device, split=split, amp=cfg.train.amp)
        m["single_scale"] = {k: single[k] for k in ("miou", "oa", "iou")}
    if cfg.seg.eval_crf:  # the configured scales / flip, then the dense CRF of cfg.crf
        refined = evaluate_segmenter(model, val_ds, device, split=split, amp=cfg.train.amp,
                                     scales=tuple(cfg.seg.eval_scales), flip=cfg.seg.eval_flip,
                                     crf=cfg.crf, mean=mean, std=std)
        m["with_crf"] = {k: refined[k] for k in ("miou", "oa", "iou")}
    m["steps"] = int(sum(r["steps"] for r in history))
    if cfg.seg.curve_images > 0:  # val mIoU of the first curve_images val images after each epoch
        steps = np.cumsum([r["steps"] for r in history])
        m["curve"] = [{"epoch": r["epoch"], "steps": int(n), "loss": r["loss"], "val_miou": r.get("val_miou")}
                      for r, n in zip(history, steps, strict=True)]
    return m


STAGE_FUNCS: dict[str, Callable[..., dict[str, Any]]] = {
    "train": stage_train, "cams": stage_cams, "eval": stage_eval, "pseudo": stage_pseudo,
    "segment": stage_segment,
}


def run_all(cfg: RunConfig, stages: Sequence[str] = STAGES, force: bool = False, resume: bool = True,
            progress: bool = True) -> Path:
    """Run the chosen stages in order; a stage already done for this config is skipped."""
    unknown = set(stages) - set(STAGES)
    if unknown:
        raise ConfigError(f"unknown stage(s) {sorted(unknown)}; stages are {STAGES}")
    from cism_lib.runtime import dist_info, folder_lock, setup_cpu

    setup_cpu(cfg.threads)
    main = dist_info().is_main
    rd = run_dir(cfg)

    def run(stage: str) -> dict[str, Any]:
        if stage == "train":
            return stage_train(cfg, rd, resume=resume, progress=progress)
        _resume_generator(rd, stage)
        return STAGE_FUNCS[stage](cfg, rd, progress=progress)

    # one writer per run folder; under torchrun rank 0 holds it for all ranks
    with folder_lock(rd) if main else contextlib.nullcontext():
        if main:
            write_run_record(cfg, rd)
        # under torchrun every rank trains; rank 0 alone runs the other stages and writes markers
        todo = [s for s in pending_stages(cfg, rd, stages, force) if main or s == "train"]
        _run_stages(rd, todo, run, record=main, keep_generator=True)
    return rd


def _run_stages(folder: Path, stages: Sequence[str], run: Callable[[str], dict[str, Any]], record: bool = True,
                keep_generator: bool = False) -> None:
    """The one stage loop of runs and chains: each stage in order, then (with `record`) the state
    of torch's generator it left (`keep_generator`) and its marker with its wall time, so an
    interrupted run resumes at the first stage without one and a profile's cost splits by stage."""
    for stage in stages:
        start = time.perf_counter()
        info = run(stage)
        if record:
            if keep_generator:
                _keep_generator(folder, stage)
            mark_done(folder, stage, {**info, "seconds": round(time.perf_counter() - start, 1)})


# ----------------------------------------------------------------------------- a trained run's chain
# The stages after the classifier as their own runs inside its folder: `<run>/chain/<hash>/`, one
# per setting of cam.max_train, crf.* and seg.* (runfolder.chain_dir), so that a new CRF or
# DeepLab setting reuses the trained classifier and its CAMs (a seg-enabled run_dir hashes the seg
# values, so every DeepLab variant there retrains the classifier).
CHAIN_STAGES = ("cams", "pseudo", "segment")


def chain_config(rd: Path, **overrides: Any) -> RunConfig:
    """The config of a trained run folder (its config.yaml) with `overrides` of cam.max_train,
    crf.* and seg.* (device and threads too: where it runs, not what it computes); a ConfigError
    names any other key (they would describe another classifier)."""
    from cism_lib.config import load_config

    path = RunFolder(rd).config
    if not path.is_file():
        raise ConfigError(f"{rd}: not a run folder (no config.yaml); train a classifier there first")
    bad = [k for k in overrides if not key_under(k, CHAIN_KEYS + ("device", "threads"))]
    if bad:
        raise ConfigError(f"{rd}: a chain changes only cam.max_train, crf.* and seg.*, not {bad}")
    return load_config(path, {"seg.enabled": True, **overrides})


def _shared_pseudo(cfg: RunConfig, rd: Path, cd: Path) -> Path | None:
    """Another chain folder of the run whose finished pseudo-masks are the ones `cfg` would make
    (same cam.max_train and crf.*; it differs in seg.* only), or None."""
    from cism_lib.config import load_config

    want = pseudo_identity(cfg)
    for other in RunFolder(rd).chains():
        if other.root != cd and stage_done(other.root, "pseudo") and pseudo_identity(load_config(other.config)) == want:
            return other.pseudo()
    return None


def _link_masks(src: Path, dst: Path) -> None:
    """Hard links of src's PNGs in dst, those not there yet; across file systems, atomic copies
    (a copy cut short must not be taken for a finished mask, which make_pseudo_masks would skip)."""
    import shutil

    from cism_lib.runtime import atomic_path

    dst.mkdir(parents=True, exist_ok=True)
    for f in sorted(src.glob("*.png")):
        if not (dst / f.name).exists():
            try:
                os.link(f, dst / f.name)
            except OSError:
                with atomic_path(dst / f.name) as tmp:
                    shutil.copyfile(f, tmp)


def run_chain(cfg: RunConfig, rd: Path, stages: Sequence[str] = CHAIN_STAGES, force: bool = False,
              progress: bool = True) -> Path:
    """CAMs of the train images the chain covers (cam.max_train; into the run's own cams/, so
    they are shared), CRF pseudo-masks of them and DeepLab on those, in chain_dir(cfg, rd).

    Needs the run's `train` and `eval` stages (the classifier and its CAM scores). The pseudo-mask
    threshold is the one the run's eval chose on its train CAMs (cam_threshold_<val>), so the val
    split, where DeepLab is scored, chooses nothing; DeepLab is scored on the whole val split.
    Each finished stage leaves a marker in `<chain>/stages/`: an interrupted chain resumes there.
    A chain that differs from a finished one in seg.* only links that chain's pseudo-masks (no CRF
    again) and scores them.
    """
    from cism_lib.runtime import folder_lock, setup_cpu

    rd = Path(rd)
    unknown = set(stages) - set(CHAIN_STAGES)
    if unknown:
        raise ConfigError(f"unknown chain stage(s) {sorted(unknown)}; stages are {CHAIN_STAGES}")
    for needed in ("train", "eval"):
        if not stage_done(rd, needed):
            raise ConfigError(f"{rd}: the run's {needed!r} stage is not done; its chain needs it")
    run_cam = json.loads((RunFolder(rd).cams(cfg.data.train_split) / "cam_meta.json").read_text())
    if run_cam != {"scales": list(cfg.cam.scales), "flip": cfg.cam.flip}:
        raise ConfigError(f"{rd}: its CAMs were made with {run_cam}; a chain may change cam.max_train only")
    setup_cpu(cfg.threads)
    cd = chain_dir(cfg, rd)
    with folder_lock(rd):  # the chain writes the run's own cams/ too
        cd.mkdir(parents=True, exist_ok=True)
        save_config(cfg, RunFolder(cd).config)
        todo = [s for s in CHAIN_STAGES if s in stages and (force or not _chain_stage_done(cfg, cd, s))]
        _run_stages(cd, todo, lambda stage: CHAIN_FUNCS[stage](cfg, rd, cd, progress))
    return cd


def _seg_scoring(seg: Any) -> dict[str, Any]:
    """How a chain's DeepLab is scored (a SegConfig's scales, flip and CRF; in the stage marker)."""
    return {"scales": [float(x) for x in seg.eval_scales], "flip": seg.eval_flip, "crf": seg.eval_crf}


def _chain_stage_done(cfg: RunConfig, cd: Path, stage: str) -> bool:
    """A chain stage's marker exists (for `segment`: made with this scoring; another scoring
    re-scores the trained DeepLab, which resumes from its finished checkpoint without training)."""
    if not stage_done(cd, stage):
        return False
    if stage != "segment":
        return True
    from cism_lib.config import SegConfig

    marker = json.loads(RunFolder(cd).stage("segment").read_text())  # no scoring: the default one
    return marker.get("scoring", _seg_scoring(SegConfig())) == _seg_scoring(cfg.seg)


def _chain_cams(cfg: RunConfig, rd: Path, cd: Path, progress: bool) -> dict[str, Any]:
    """The run's CAMs of every train image the chain covers (those already there are kept)."""
    train, run = cfg.data.train_split, RunFolder(rd)
    images, written = _make_split_cams(cfg, run.checkpoint, run.cams(), progress, splits=(train,))[train]
    return {"images": images, "written": written}


def _chain_pseudo(cfg: RunConfig, rd: Path, cd: Path, progress: bool) -> dict[str, Any]:
    """CRF pseudo-masks of the chain's train images, scored against their ground truth."""
    from cism_lib.metrics import write_metrics

    train, val = _eval_splits(cfg)
    threshold = read_metrics(rd).get(f"cam_threshold_{val}")
    if threshold is None:
        raise ConfigError(f"{rd}: metrics.json has no cam_threshold_{val} (run its eval stage)")
    ds = cam_split(cfg, train, progress=progress)
    chain = RunFolder(cd)
    shared = _shared_pseudo(cfg, rd, cd)
    if shared is not None:  # a chain that differs in seg.* only: its masks, scored again here
        _link_masks(shared, chain.pseudo())
    m = pseudo_masks_scored(cfg, RunFolder(rd).cams(train), ds, chain.pseudo(), threshold,
                            split=f"{train} ({len(ds)} images)",
                            selected_on=_threshold_split(rd, val) or train, progress=progress)
    write_metrics(m, chain.metrics(), "pseudo_train")
    update_metrics(cd, pseudo_miou_train=m["miou"], pseudo_oa_train=m["oa"], pseudo_coverage=m["coverage"],
                   pseudo_threshold=threshold, pseudo_images=len(ds))
    return {"miou": m["miou"], "images": len(ds), **({"masks_from": shared.parent.name} if shared else {})}


def _threshold_split(rd: Path, report: str) -> str | None:
    """Where the run's eval chose the threshold it applied to split `report` (its protocol)."""
    path = RunFolder(rd).metrics(f"cam_{report}")
    return json.loads(path.read_text()).get("protocol", {}).get("threshold_selected_on") if path.is_file() else None


def _chain_segment(cfg: RunConfig, rd: Path, cd: Path, progress: bool) -> dict[str, Any]:
    """DeepLab on the chain's pseudo-masks, scored on the whole val split."""
    from cism_lib.metrics import write_metrics

    train, val = _eval_splits(cfg)
    vcfg = replace(cfg, **{"data.max_val": None})
    chain = RunFolder(cd)
    m = segmenter_scored(cfg, cam_split(cfg, train, progress=progress), chain.pseudo(),
                         lambda tf: open_split(vcfg, val, transform=tf, progress=progress),
                         chain.seg, run_device(cfg), split=f"{val} (all images)", progress=progress,
                         init_seed=seg_seed(cfg))
    # seg_val: single scale, no CRF (Table 2's protocol); seg_val_ms: the configured scales / flip;
    # seg_val_crf: those + the dense CRF
    entries: dict[str, Any] = {"seg_steps": m["steps"]}
    single = m.pop("single_scale", None)
    refined = m.pop("with_crf", None)
    if single is None:  # configured protocol is single scale
        write_metrics(m, chain.metrics(), "seg_val")
        entries.update(seg_miou_val=m["miou"], seg_oa_val=m["oa"])
    else:
        proto = dict(m["protocol"])
        write_metrics({**m, **single, "protocol": {**proto, "scales": [1.0], "flip": False}}, chain.metrics(), "seg_val")
        write_metrics(m, chain.metrics(), "seg_val_ms")
        entries.update(seg_miou_val=single["miou"], seg_oa_val=single["oa"], seg_miou_val_ms=m["miou"],
                       seg_oa_val_ms=m["oa"])
    if refined is not None:
        write_metrics({**m, **refined, "protocol": {**m["protocol"], "crf": True}}, chain.metrics(), "seg_val_crf")
        entries.update(seg_miou_val_crf=refined["miou"], seg_oa_val_crf=refined["oa"])
    # a scoring replaces the last one whole: no figure of an earlier protocol stays behind
    for stem, scored in (("seg_val_ms", single is not None), ("seg_val_crf", refined is not None)):
        if not scored:
            for f in (chain.metrics(stem), chain.metrics() / f"{stem}_per_class.csv"):
                f.unlink(missing_ok=True)
    update_metrics(cd, drop_prefix="seg_", **entries)
    return {"miou": entries["seg_miou_val"], "steps": m["steps"], "scoring": _seg_scoring(cfg.seg)}


def chain_summary(run_dirs: Sequence[Path | str], per_class: bool = False) -> pd.DataFrame:
    """One line per chain folder of the given runs: the run, its chain's own settings (the
    non-default cam.max_train / crf.* / seg.* values it was made with, as a text), the pseudo-mask
    and DeepLab scores (percent, NaN for a stage not run), DeepLab's steps and its learning curve
    (val mIoU after each epoch on the curve's images). `per_class`: the DeepLab val IoU of each
    class too (single scale)."""
    import pandas as pd

    from cism_lib.config import flatten, load_config

    lines = []
    for rd in map(Path, run_dirs):
        run = load_config(RunFolder(rd).config)
        base = flatten(to_dict(run))
        for chain in RunFolder(rd).chains():
            cd = chain.root
            cfg = load_config(chain.config)
            # what the chain set against its run (cam.max_train always: which images it covers)
            own = {k: v for k, v in flatten(to_dict(cfg)).items()
                   if key_under(k, CHAIN_KEYS) and not key_under(k, CHAIN_IGNORED)
                   and (base.get(k) != v or k == "cam.max_train")}
            m = read_metrics(cd)
            pct = {k: 100 * float(m[k]) if k in m else float("nan") for k in (
                "pseudo_miou_train", "pseudo_oa_train", "seg_miou_val", "seg_oa_val", "seg_miou_val_ms", "seg_miou_val_crf")}
            line = {"run": rd.name, "chain": cd.name, "method": run.model.method, "seed": run.train.seed,
                    "settings": " ".join(f"{k}={v}" for k, v in sorted(own.items())),
                    "pseudo images": m.get("pseudo_images", float("nan")),
                    "threshold": m.get("pseudo_threshold", float("nan")),
                    "pseudo mIoU": pct["pseudo_miou_train"], "pseudo OA": pct["pseudo_oa_train"],
                    "DeepLab mIoU": pct["seg_miou_val"], "DeepLab OA": pct["seg_oa_val"],
                    "DeepLab mIoU flip/ms": pct["seg_miou_val_ms"], "DeepLab mIoU +CRF": pct["seg_miou_val_crf"],
                    "steps": m.get("seg_steps", float("nan"))}
            seg = chain.metrics("seg_val")
            if seg.is_file():
                detail = json.loads(seg.read_text())
                curve = detail.get("curve") or []
                line["curve (steps: val mIoU)"] = ", ".join(
                    f"{p['steps']}: {100 * p['val_miou']:.1f}" for p in curve if p.get("val_miou") is not None)
                if per_class:
                    line.update({f"IoU {n}": 100 * float(v) if v is not None else float("nan")
                                 for n, v in zip(detail.get("class_names", []), detail.get("iou", []), strict=False)})
            lines.append(line)
    return pd.DataFrame(lines)


CHAIN_FUNCS: dict[str, Callable[..., dict[str, Any]]] = {
    "cams": _chain_cams, "pseudo": _chain_pseudo, "segment": _chain_segment}


def collect_runs(root: str | Path = "runs") -> pd.DataFrame:
    """One row per run folder under root: its main config switches and its metrics."""
    import pandas as pd
    import yaml

    rows = []
    for cfg_path in sorted(Path(root).glob("*/config.yaml")):
        rd = cfg_path.parent
        c = yaml.safe_load(cfg_path.read_text())
        m = c["model"]
        rows.append({"run": rd.name, "name": c["name"], "dataset": c["data"]["dataset"],
                     "method": m["method"], "backbone": m["backbone"], "use_pv": m["use_pv"],
                     "use_pie": m["use_pie"], "use_slsc": m["use_slsc"], "losses": "+".join(m["losses"]),
                     "eta": m["eta"], "mcsg": c["data"]["mcsg"], "seed": c["train"]["seed"],
                     **{k: v for k, v in read_metrics(rd).items() if not isinstance(v, (dict, list))}})
    return pd.DataFrame(rows)
