"""A run's folder: which config values make another run (its identity) and where each output lies.

One folder per configuration, `<out_dir>/<method>-<hash>`, shared by every table and notebook
that asks for that configuration. Inside it (`RunFolder` spells every path):

    config.yaml  versions.json  metrics.json  .lock
    stages/<stage>.json, <stage>.rng.pt    finished stages and the generator they left
    train/checkpoint.pt, log.jsonl, epoch_<N>.pt
    cams/<split>/<id>.npz, cams_<source>/  metrics/<stem>.json
    pseudo/<split>/<id>.png  seg/seg_checkpoint.pth
    curve/epoch_<N>/         a learning-curve epoch: its own metrics.json and metrics/
    chain/<hash>/            a chain: the run's classifier with other CRF / DeepLab values;
                             its own config.yaml, stages/, metrics, pseudo/ and seg/

A chain or a curve epoch is a RunFolder too (the same names for the same kinds of output).
"""
from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cism_lib.config import SCORING_ONLY, RunConfig, config_hash, to_dict
from cism_lib.errors import CheckpointError
from cism_lib.runtime import write_json_atomic

ISAID_ENV = "CISM_ISAID_ROOT"
CHECKPOINT = "checkpoint.pt"          # the classifier, under train/ (engine writes it)
TRAIN_LOG = "log.jsonl"                # its epoch records, beside it
SEG_CHECKPOINT = "seg_checkpoint.pth"  # DeepLab, under seg/ (segment writes it)


def snapshot_name(epoch: int) -> str:
    """The file of the classifier's weights kept after `epoch` (counted from 1), under train/."""
    return f"epoch_{epoch}.pt"


# ----------------------------------------------------------------------------- identity
# A config value names the folder when it differs from its default, except the keys below. Only
# non-default values enter the hash, so a new option whose default keeps the old behaviour
# leaves every folder's name as it was.
LABELS = ("name", "out_dir")  # what a run is called and where runs are kept
# A chain is named by the values it may set (CHAIN_KEYS), less those that do not change what
# it trains; its pseudo-masks depend on PSEUDO_KEYS only (chains that agree on them share them).
CHAIN_KEYS = ("cam.max_train", "crf", "seg")
PSEUDO_KEYS = ("cam.max_train", "crf")
CHAIN_IGNORED = SCORING_ONLY + ("crf.workers", "seg.enabled")  # processes; a chain always trains DeepLab


@dataclass(frozen=True)
class Legacy:
    """A rule that keeps the names of folders made before it. With `extra`, `keys` stay out of a
    run's hash and `extra(cfg)` enters it instead (nothing where the key changes no number);
    without, `keys` keep their own values in the hash although they would otherwise be left out."""

    keys: tuple[str, ...]
    why: str
    extra: Callable[[RunConfig], dict[str, Any]] | None = None


RUN_LEGACY: tuple[Legacy, ...] = (
    Legacy(("seg.eval_scales", "seg.eval_flip", "seg.eval_crf", "crf.workers"),
           "a seg-enabled run was named with its DeepLab scoring and its CRF processes before chains "
           "scored in place; they stay in its name (a chain leaves them out)"),
    Legacy(("train.depthwise_grad",), "the conv depthwise backward changes the rounding only where it "
           "acts (Lite0 on the CPU); runs made with aten's keep their names",
           lambda cfg: {"runtime.depthwise_grad": "conv"} if depthwise_conv_run(cfg) else {}),
    Legacy(("train.fused_optimizer",), "the fused optimiser rounds differently from the "
           "per-parameter one of older runs", lambda cfg: {"runtime.fused_optimizer": True} if cfg.train.fused_optimizer else {}),
    Legacy((), "a CPU run was fp32 before the bf16 path: bf16 runs on CPUs that have it get their own folder",
           lambda cfg: {"runtime.precision": "bf16"} if cpu_bf16_run(cfg) else {}),
    Legacy(("train.init_from",), "the starting weights, not where their file lies, make the run",
           lambda cfg: {"train.init_from.weights": weights_digest(cfg.train.init_from)} if cfg.train.init_from else {}),
)


def given_root(d: Any) -> str | None:
    """data.root as configured, or for iSAID the CISM_ISAID_ROOT environment variable."""
    return d.root or (os.environ.get(ISAID_ENV) if d.dataset == "isaid" else None)


def run_identity(cfg: RunConfig) -> tuple[tuple[str, ...], dict[str, Any]]:
    """(keys left out, entries added) of the hash that names cfg's run folder.

    Labels never enter it. A synthetic dataset's root is only where its scenes are cached (its
    synth_* values fix the data); a real root enters as its resolved absolute path, whether given
    as data.root or by CISM_ISAID_ROOT, so `../data/x` and `/abs/data/x` make one run. A run with
    seg.enabled false never uses the other seg values, and scoring-only values change no weight.
    """
    kept = {k for rule in RUN_LEGACY if rule.extra is None for k in rule.keys}
    exclude = LABELS + ("data.root",) + tuple(k for k in SCORING_ONLY if k not in kept)
    extra: dict[str, Any] = {}
    root = given_root(cfg.data)
    if cfg.data.dataset != "synthetic" and root:
        extra["data.root"] = str(Path(root).expanduser().resolve())
    if not cfg.seg.enabled:
        exclude += tuple(f"seg.{k}" for k in to_dict(cfg.seg) if k != "enabled")
    for rule in RUN_LEGACY:
        if rule.extra is not None:
            exclude += rule.keys
            extra.update(rule.extra(cfg))
    return exclude, extra


def run_dir(cfg: RunConfig) -> Path:
    """`<out_dir>/<method>-<hash>`: the one folder of this configuration (run_identity)."""
    exclude, extra = run_identity(cfg)
    return Path(cfg.out_dir) / f"{cfg.model.method}-{config_hash(cfg, exclude=exclude, extra=extra)}"


def chain_dir(cfg: RunConfig, rd: Path) -> Path:
    """`<rd>/chain/<10 hex>`: where the chain of `cfg` (pipeline.chain_config) lives in run folder rd."""
    return RunFolder(rd).chain(config_hash(cfg, exclude=CHAIN_IGNORED, include=CHAIN_KEYS)).root


def pseudo_identity(cfg: RunConfig) -> str:
    """The hash of what a chain's pseudo-masks depend on (chains that agree on it share them)."""
    return config_hash(cfg, exclude=CHAIN_IGNORED, include=PSEUDO_KEYS)


def weights_digest(path: str | Path, n: int = 16) -> str:
    """The first n hex digits of a SHA-256 over a classifier checkpoint's model weights (names and
    values, not the file: its optimiser state and timings differ between identical trainings)."""
    import hashlib

    import torch

    from cism_lib.runtime import load_checkpoint_file

    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: train.init_from names no such checkpoint file")
    state = load_checkpoint_file(path, "classifier checkpoint", "train.init_from needs a finished classifier: "
                                 "train it again or name another", "train the classifier first (cism train CONFIG)")
    digest = hashlib.sha256()
    for name, value in sorted(state["model"].items()):
        digest.update(name.encode())
        digest.update(value.detach().cpu().reshape(-1).contiguous().view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()[:n]


def run_device(cfg: RunConfig):
    """The torch device of the run."""
    from cism_lib.runtime import dist_info, resolve_device

    return resolve_device(cfg.device, dist_info().local_rank)


def precision(cfg: RunConfig, inference: bool = False):
    """The precision policy this run uses on this machine."""
    from cism_lib.runtime import precision_for

    return precision_for(run_device(cfg), cfg.train.amp, cfg.train.channels_last, inference)


def cpu_bf16_run(cfg: RunConfig) -> bool:
    """True when the run computes in bf16 on the CPU (the policy of runtime.precision_for)."""
    policy = precision(cfg)
    return policy.name == "bf16" and policy.device_type == "cpu"


def depthwise_conv_run(cfg: RunConfig) -> bool:
    """True when `train.depthwise_grad: conv` changes this run's numbers (in the rounding): a
    Lite0 classifier or DeepLab backbone trained on the CPU (models.backbones.set_depthwise_grad)."""
    if cfg.train.depthwise_grad != "conv" or run_device(cfg).type != "cpu":
        return False
    lite = [cfg.model.backbone] + ([cfg.seg.backbone] if cfg.seg.enabled else [])
    return any(name.startswith("efficientnet") for name in lite)


# ----------------------------------------------------------------------------- layout
@dataclass(frozen=True)
class RunFolder:
    """Where each output of a run (or of a chain, or of a learning-curve epoch) lies."""

    root: Path

    def __post_init__(self) -> None:
        object.__setattr__(self, "root", Path(self.root))

    @property
    def config(self) -> Path:
        return self.root / "config.yaml"

    @property
    def versions(self) -> Path:
        return self.root / "versions.json"

    @property
    def train(self) -> Path:
        return self.root / "train"

    @property
    def checkpoint(self) -> Path:
        """The trained classifier."""
        return self.train / CHECKPOINT

    @property
    def log(self) -> Path:
        """The classifier's epoch records (JSON lines)."""
        return self.train / TRAIN_LOG

    def snapshot(self, epoch: int) -> Path:
        """The classifier's weights kept after `epoch` (counted from 1) for the learning curve."""
        return self.train / snapshot_name(epoch)

    def cams(self, split: str | None = None, source: str | None = None) -> Path:
        """The CAM files of a split (from W_c, or from `source`: CISMNet.cam_source)."""
        folder = self.root / ("cams" if source is None else f"cams_{source}")
        return folder if split is None else folder / split

    @property
    def metrics_file(self) -> Path:
        """The merged figures of the folder."""
        return self.root / "metrics.json"

    def metrics(self, stem: str | None = None) -> Path:
        """The per-class metrics folder, or one scoring's file in it (`<stem>.json`)."""
        return self.root / "metrics" if stem is None else self.root / "metrics" / f"{stem}.json"

    def stage(self, stage: str) -> Path:
        """A finished stage's marker."""
        return self.root / "stages" / f"{stage}.json"

    def generator(self, stage: str) -> Path:
        """torch's generator state as `stage` left it."""
        return self.root / "stages" / f"{stage}.rng.pt"

    def pseudo(self, split: str | None = None) -> Path:
        """The pseudo-masks (of a run: per split; of a chain: its train images)."""
        return self.root / "pseudo" if split is None else self.root / "pseudo" / split

    @property
    def seg(self) -> Path:
        return self.root / "seg"

    @property
    def seg_checkpoint(self) -> Path:
        return self.seg / SEG_CHECKPOINT

    def curve(self, epoch: int) -> RunFolder:
        """The scores of the classifier after `epoch`."""
        return RunFolder(self.root / "curve" / f"epoch_{epoch}")

    def chain(self, name: str) -> RunFolder:
        return RunFolder(self.root / "chain" / name)

    def chains(self) -> list[RunFolder]:
        """The run's chain folders (those with a config), in name order."""
        return [RunFolder(p.parent) for p in sorted((self.root / "chain").glob("*/config.yaml"))]

    @property
    def run_of_chain(self) -> RunFolder:
        """The run a chain folder belongs to."""
        return RunFolder(self.root.parent.parent)

    @property
    def is_chain(self) -> bool:
        return self.root.parent.name == "chain" and self.config.is_file()


# ----------------------------------------------------------------------------- records
def stage_done(rd: Path, stage: str) -> bool:
    """True when a stage finished in this folder (its marker exists)."""
    return RunFolder(rd).stage(stage).exists()


def mark_done(rd: Path, stage: str, info: dict[str, Any]) -> None:
    """Write a stage's marker (atomically, after its outputs)."""
    write_json_atomic(RunFolder(rd).stage(stage), info)


def read_metrics(rd: Path) -> dict[str, Any]:
    """The folder's merged metrics.json (empty when absent)."""
    path = RunFolder(rd).metrics_file
    return json.loads(path.read_text()) if path.exists() else {}


def scalar_metrics(rd: Path) -> dict[str, Any]:
    """The numbers of the folder's metrics.json (nested per-class entries left out)."""
    return {k: v for k, v in read_metrics(rd).items() if isinstance(v, (int, float))}


def update_metrics(rd: Path, drop_prefix: str | None = None, **entries: Any) -> dict[str, Any]:
    """Merge entries into metrics.json, after removing the keys that start with `drop_prefix` (a
    stage's old figures)."""
    metrics = {k: v for k, v in read_metrics(rd).items() if drop_prefix is None or not k.startswith(drop_prefix)}
    metrics.update(entries)
    write_json_atomic(RunFolder(rd).metrics_file, metrics)
    return metrics


def train_history(rd: Path) -> list[dict[str, Any]]:
    """The classifier's epoch records from `train/log.jsonl` (empty before the first epoch)."""
    path = RunFolder(rd).log
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.is_file() else []


__all__ = [
    "ISAID_ENV", "CHECKPOINT", "TRAIN_LOG", "SEG_CHECKPOINT", "snapshot_name", "LABELS", "CHAIN_KEYS", "PSEUDO_KEYS", "CHAIN_IGNORED",
    "Legacy", "RUN_LEGACY", "given_root", "run_identity", "run_dir", "chain_dir", "pseudo_identity",
    "weights_digest", "run_device", "precision", "cpu_bf16_run", "depthwise_conv_run", "RunFolder",
    "stage_done", "mark_done", "read_metrics", "scalar_metrics", "update_metrics", "train_history",
]
