"""The WSSS chain as stages: train → CAMs → eval CAMs → CRF pseudo-masks → segmentation; run records."""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Callable, Sequence

from cism_lib.config import RunConfig, config_hash, save_config, to_dict
from cism_lib.errors import ConfigError
from cism_lib.runtime import write_json_atomic

STAGES = ("train", "cams", "eval", "pseudo", "segment")
ISAID_ENV = "CISM_ISAID_ROOT"


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
    root = d.root or (os.environ.get(ISAID_ENV) if d.dataset == "isaid" else None)
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

        return VOCFolder(root, split, transform=transform, min_pixels=d.min_pixels,
                         skip_bad=d.skip_bad, max_items=limit)
    from cism_lib.data.isaid import SegFolder

    return SegFolder(root, split, layout=d.layout, transform=transform, min_pixels=d.min_pixels,
                     skip_bad=d.skip_bad, max_items=limit)


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
                        mean=mean, std=std)
    mcsg = None
    if d.mcsg:
        from cism_lib.data.mcsg import MCSG

        mcsg = MCSG(base.labels, max_categories=d.mcsg_max_categories)
    return PairDataset(base, tf, seed=cfg.train.seed, mcsg=mcsg)


# ----------------------------------------------------------------------------- run records
def run_dir(cfg: RunConfig) -> Path:
    """`<out_dir>/<name>-<hash>`: one folder per configuration (name and out_dir excluded)."""
    key = {k: v for k, v in to_dict(cfg).items() if k not in ("name", "out_dir")}
    return Path(cfg.out_dir) / f"{cfg.name}-{config_hash(key)}"


def write_run_record(cfg: RunConfig, rd: Path) -> None:
    """config.yaml and versions.json beside the outputs."""
    from cism_lib.runtime import versions

    rd.mkdir(parents=True, exist_ok=True)
    save_config(cfg, rd / "config.yaml")
    write_json_atomic(rd / "versions.json", versions())


def stage_done(rd: Path, stage: str) -> bool:
    """True when a stage finished in this run folder (its marker exists)."""
    return (rd / "stages" / f"{stage}.json").exists()


def mark_done(rd: Path, stage: str, info: dict[str, Any]) -> None:
    """Write a stage's marker (atomically, after its outputs)."""
    write_json_atomic(rd / "stages" / f"{stage}.json", info)


def read_metrics(rd: Path) -> dict[str, Any]:
    """The run's merged metrics.json (empty when absent)."""
    path = rd / "metrics.json"
    return json.loads(path.read_text()) if path.exists() else {}


def update_metrics(rd: Path, **entries: Any) -> dict[str, Any]:
    """Merge entries into metrics.json."""
    metrics = read_metrics(rd)
    metrics.update(entries)
    write_json_atomic(rd / "metrics.json", metrics)
    return metrics
