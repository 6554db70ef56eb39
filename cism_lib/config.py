"""Frozen dataclass configs: the one source of truth for the CLI, notebooks and YAML presets."""
from __future__ import annotations

import hashlib
import json
import types
import typing
from dataclasses import dataclass, field, fields, is_dataclass
from pathlib import Path
from typing import Any

from cism_lib.errors import ConfigError

LOSSES = ("ml", "sl", "csm", "nsc")
PROFILES = ("smoke", "cpu", "paper", "isaid512")  # the presets in configs/, by name
CLASS_WEIGHTS = ("none", "inverse_sqrt", "median_frequency")  # seg.class_weights


@dataclass(frozen=True)
class DataConfig:
    """Where the images come from and how they are augmented."""

    dataset: str = "synthetic"          # synthetic | isaid | voc
    root: str | None = None             # data folder; synthetic: generated here if missing
    layout: str = "auto"                # auto | devkit | mmseg (iSAID only)
    train_split: str = "train"
    val_split: str = "val"
    synth_train: int = 600              # SynthAerial images (synthetic only)
    synth_val: int = 200
    synth_size: int = 256
    synth_seed: int = 0
    max_train: int | None = None        # take the first N training images (after sorting)
    max_val: int | None = None
    crop_size: int = 256
    crop_mode: str = "crop"             # crop: random crop, labels of the whole image | fit: whole image
    scale_range: tuple[float, float] = (0.7, 1.3)
    color_jitter: float = 0.3
    min_pixels: int = 1                 # a class counts as present with at least this many pixels
    # How a query's reference is drawn: any (uniformly among the images sharing any of its classes)
    # | class (MCIS: one of its classes uniformly, then an image holding that class), which makes a
    # rare class common to the pair far more often (data.pairs.shared_class_chance)
    pair_sampling: str = "any"
    mcsg: bool = False                  # Multi-Category Sample Generation (section 3.3)
    mcsg_max_categories: int = 3        # low-category group: <= this many classes
    mcsg_prob: float | None = None      # P(low-category query → mosaic); None: one mosaic per batch
    skip_bad: bool = False
    workers: int = 0


@dataclass(frozen=True)
class ModelConfig:
    """The classifier: method, backbone and every switch of the ablation tables."""

    method: str = "cism"                # cam | cian | cism
    backbone: str = "resnet50"          # resnet18 | resnet34 | resnet50 | efficientnet_lite0
    weights: str | None = "imagenet"    # imagenet | None | path to a .pth file
    use_pv: bool = True                 # prototype vectors (Eq. 1-5)
    use_pie: bool = True                # prototype interactive enhancement (Eq. 6-9)
    use_slsc: bool = True               # single-label secondary classification (Eq. 14-17)
    losses: tuple[str, ...] = LOSSES
    eta: float = 0.3                    # dropout rate of the gate map (Eq. 5)
    lam: float = 1.0                    # weight of the auxiliary losses (Eq. 18)
    lam_learnable: bool = False         # learnable, non-collapsing lambda (see docs/method.md)
    proto_dim: int = 256                # channels of F_c / X_Q / X_R
    gamma_axis: str = "class"           # softmax of gamma over classes or space (Eq. 16)
    cam_threshold: float = 0.5          # high-confidence CAM region used by MAP (Eq. 3-4)
    output_stride: int = 16
    pie_norm: str = "minmax"            # matching map A to [0,1]: minmax | affine ((cos+1)/2)
    pie_pool: str = "class"             # P' pooled per class (class) or over the whole map (global)
    sim_centre: bool = False            # cosines of Eq. 7 and 14 on centred features (F_c is all-positive)
    sl_form: str = "recam"              # Z~ as [K,K] per-class scores (recam) or their diagonal (diag)
    # How L_sl reaches the CAM (docs/method.md, 8): the defaults are the readings that measured best.
    sl_scorer: str = "separate"         # Z~ scored by ReCAM's own 1x1 (separate) or by W_c (cam)
    sl_pool: str = "masked"             # Eq. 16 denominator: sum of gamma * mask (masked) or of gamma
    sl_detach: bool = True              # no L_sl gradient through the mask M and gamma into the CAM
    cross_affinity: bool = True         # cism builds on CIAN's cross-image affinity (the paper's baseline)
    self_ml: bool = False               # also L_ml on each image paired with itself (the test-time path)
    loss_reduction: str = "mean"        # soft-margin losses over classes: mean, or sum as Eq. 19/24/27 read


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation of the classifier."""

    epochs: int = 5
    batch_size: int = 8                 # pairs per step
    lr: float = 0.01
    backbone_lr_mult: float = 0.1
    optimizer: str = "adam"             # adam | sgd
    weight_decay: float = 1e-4
    poly_power: float = 0.9
    amp: bool = True                    # bf16 autocast on CUDA and bf16-native CPUs; false: fp32
    channels_last: bool = True          # with bf16 only (runtime.precision_for)
    # How Lite0's depthwise convolutions backpropagate on CPU (classifier and DeepLab): conv (as
    # forward convolutions: the same gradients to rounding, a faster training step; docs/benchmarks.md)
    # | aten (PyTorch's kernels); models.backbones.set_depthwise_grad
    depthwise_grad: str = "conv"
    # Adam / SGD as one fused kernel over all parameters (classifier and DeepLab; CPU and CUDA):
    # the same update to rounding, faster (docs/benchmarks.md); false: PyTorch's per-parameter loop
    fused_optimizer: bool = True
    seed: int = 0
    max_steps: int | None = None
    # The anchors' practice on the pretrained backbone (models.backbones.freeze): the stem and the
    # first N stages get no gradient and keep their BatchNorm statistics (IRN: 2); freeze_bn: every
    # backbone BatchNorm keeps its statistics and affine parameters (IRN, CIAN, RPNet)
    frozen_stages: int = 0
    freeze_bn: bool = False
    init_from: str | None = None        # a classifier checkpoint.pt to start from (shared layers only)
    aux_warmup: float = 0.0             # λ ramps linearly from 0 over this fraction of all steps (0: off)
    # The anchors' order (ReCAM, MCIS): only L_ml trains before this epoch (counted from 1), so
    # the auxiliary losses start from a CAM that has trained; 1: every loss from the first step
    aux_from_epoch: int = 1
    # Gradient-balanced λ: every this many steps, λ_eff = model.lam × ‖∇_backbone L_ml‖ /
    # ‖∇_backbone (L_sl + L_csm + L_nsc)‖ on that step's batch, held until the next measurement (0: off)
    lam_balance_every: int = 0
    grad_probe: bool = False            # log each loss's backbone gradient norm and cosine with L_ml per epoch
    log_every: int = 10
    # The learning curve: after each of these epochs (counted from 1) the weights are kept as
    # train/epoch_<N>.pt and their CAMs scored under the run's protocol into curve/epoch_<N>/
    # (pipeline.score_curve). It changes no weight, so it does not enter the run's identity.
    curve_epochs: tuple[int, ...] = ()
    sync_bn: bool = False
    tensorboard: bool = False


# How a query's reference is drawn (data.pairs.PairDataset).
PAIR_SAMPLING = ("any", "class")

# What a classifier's CAM is made from (CISMNet.cam): W_c (the paper's), the separate SLSC
# scorer, their product (ReCAM's final CAMs), or CISM's class-specific weighting M ⊙ S of Eq. 14
# with the image as its own reference.
CAM_SOURCES = ("classifier", "slsc", "product", "specific")


@dataclass(frozen=True)
class CamConfig:
    """Multi-scale CAM inference and background threshold selection."""

    scales: tuple[float, ...] = (0.5, 1.0, 1.5, 2.0)
    flip: bool = True
    batch_size: int = 8
    thresholds: tuple[float, ...] = tuple(round(0.05 * i, 2) for i in range(1, 20))
    # CAMs of only the first N images of the train split (None: all of them): the threshold for val is
    # chosen on those N, and pseudo-masks / DeepLab use those N (a cheaper protocol for large splits)
    max_train: int | None = None


@dataclass(frozen=True)
class CrfConfig:
    """Dense-CRF refinement (defaults from the WSSS literature).

    The sxy widths are pixels of a 500-pixel image (the VOC scale the defaults come from);
    crf.kernel_sxy scales them to each image's shorter side.
    """

    enabled: bool = True
    gauss_sxy: float = 3.0
    gauss_compat: float = 3.0
    bi_sxy: float = 80.0
    bi_srgb: float = 13.0
    bi_compat: float = 10.0
    iterations: int = 10
    workers: int = 0                    # 0 = all CPU cores
    unary: str = "prob"                 # prob: -log of the CAM's distribution | label: IRN's, from its argmax
    gt_prob: float = 0.7                # unary "label": the probability given to the argmax class
    # IRN's confident / uncertain split, as multipliers (low, high) of the chosen background
    # threshold: foreground where the mask made at high × threshold says so, background where the
    # mask made at low × threshold says so, the rest ignored (255) by DeepLab. (1, 1): one mask.
    band: tuple[float, float] = (1.0, 1.0)


@dataclass(frozen=True)
class SegConfig:
    """The segmentation network trained on pseudo-masks."""

    enabled: bool = True
    head: str = "largefov"              # largefov | deeplabv3
    backbone: str = "resnet50"
    weights: str | None = "imagenet"
    epochs: int = 5
    batch_size: int = 8
    lr: float = 0.001
    crop_size: int = 256
    optimizer: str = "sgd"              # sgd (momentum 0.9, wd 5e-4; DeepLab) | adam
    head_lr_mult: float = 10.0          # the head's LR ÷ the backbone's
    # Cross-entropy class weights from the pseudo-masks' pixel frequencies f_c: none |
    # inverse_sqrt (w_c ∝ f_c^-1/2) | median_frequency (SegNet's median(f) / f_c); normalised so
    # that the mean weight over the training pixels is 1.
    class_weights: str = "none"
    # Scoring on val: scales and horizontal flip averaged (softmax) before the argmax; (1.0,), false:
    # single scale, the logits' argmax
    eval_scales: tuple[float, ...] = (1.0,)
    eval_flip: bool = False
    eval_crf: bool = False              # also score with the dense CRF (crf.*, probability unary) on DeepLab's scores
    # The learning curve: after every epoch, the val mIoU of the first N val images (single scale)
    # joins seg_log.jsonl as val_miou (0: none). It reads no training pixel and changes no weight.
    curve_images: int = 0
    # DeepLab's own seed (its head's initial weights, crop order and augmentation); None: the
    # classifier's train.seed. A chain with another seg.seed is a second DeepLab seed on the same
    # classifier and pseudo-masks.
    seed: int | None = None


@dataclass(frozen=True)
class RunConfig:
    """A whole pipeline run: data → classifier → CAMs → CRF → segmentation."""

    name: str = "run"
    out_dir: str = "runs"
    device: str = "auto"                # auto | cpu | cuda | cuda:N
    threads: int | None = None          # torch CPU threads; None: torch's default (the presets fix it)
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    cam: CamConfig = field(default_factory=CamConfig)
    crf: CrfConfig = field(default_factory=CrfConfig)
    seg: SegConfig = field(default_factory=SegConfig)


def to_dict(cfg: Any) -> dict[str, Any]:
    """A config as a plain dict of builtins (tuples become lists), safe for YAML and torch.save."""
    def plain(v: Any) -> Any:
        if is_dataclass(v):
            return {f.name: plain(getattr(v, f.name)) for f in fields(v)}
        if isinstance(v, (tuple, list)):
            return [plain(x) for x in v]
        return v
    return plain(cfg)


def _coerce(value: Any, hint: Any, where: str) -> Any:
    """Convert a YAML/CLI value to the annotated type, or raise ConfigError."""
    origin = typing.get_origin(hint)
    if is_dataclass(hint):
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping, got {value!r}")
        return from_dict(hint, value, where)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        if value is None or (isinstance(value, str) and value.lower() in ("none", "null")):
            if type(None) in typing.get_args(hint):
                return None
        return _coerce(value, args[0], where)
    if origin is tuple:
        args = typing.get_args(hint)
        if isinstance(value, str):
            value = [v for v in value.replace(",", " ").split() if v]
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        item = args[0]
        return tuple(_coerce(v, item, where) for v in value)
    try:
        if hint is bool:
            if isinstance(value, str):
                if value.lower() in ("1", "true", "yes", "on"):
                    return True
                if value.lower() in ("0", "false", "no", "off"):
                    return False
                raise ValueError(value)
            return bool(value)
        if hint is int:
            if isinstance(value, float) and not value.is_integer():
                raise ValueError(value)
            return int(value)
        if hint is float:
            return float(value)
        if hint is str:
            return str(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{where}: cannot read {value!r} as {hint.__name__}") from None
    return value


def from_dict(cls: type, data: dict[str, Any], where: str = "config") -> Any:
    """Build a config dataclass from a dict; unknown keys are an error naming the key."""
    hints = typing.get_type_hints(cls)
    names = {f.name for f in fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {unknown}; valid keys are {sorted(names)}")
    kwargs = {k: _coerce(v, hints[k], f"{where}.{k}") for k, v in data.items()}
    cfg = cls(**kwargs)
    validate(cfg, where)
    return cfg


def validate(cfg: Any, where: str = "config") -> None:
    """Check values that a type cannot express."""
    checks: dict[type, list[tuple[bool, str]]] = {}
    if isinstance(cfg, DataConfig):
        checks[DataConfig] = [(cfg.dataset in ("synthetic", "isaid", "voc"),
                               "dataset must be synthetic, isaid or voc"),
                              (cfg.crop_mode in ("crop", "fit"), "crop_mode must be crop or fit"),
                              (cfg.pair_sampling in PAIR_SAMPLING, f"pair_sampling must be one of {PAIR_SAMPLING}")]
    if isinstance(cfg, ModelConfig):
        checks[ModelConfig] = [
            (cfg.method in ("cam", "cian", "cism"), "method must be cam, cian or cism"),
            (set(cfg.losses) <= set(LOSSES) and "ml" in cfg.losses,
             f"losses must be a subset of {LOSSES} containing 'ml'"),
            (0.0 <= cfg.eta < 1.0, "eta must be in [0, 1)"),
            (cfg.gamma_axis in ("class", "space"), "gamma_axis must be class or space"),
            (cfg.output_stride in (8, 16, 32), "output_stride must be 8, 16 or 32"),
            (cfg.pie_norm in ("minmax", "affine"), "pie_norm must be minmax or affine"),
            (cfg.pie_pool in ("class", "global"), "pie_pool must be class or global"),
            (cfg.sl_form in ("recam", "diag"), "sl_form must be recam or diag"),
            (cfg.sl_scorer in ("cam", "separate"), "sl_scorer must be cam or separate"),
            (cfg.sl_pool in ("gamma", "masked"), "sl_pool must be gamma or masked"),
            (cfg.loss_reduction in ("mean", "sum"), "loss_reduction must be mean or sum"),
        ]
    if isinstance(cfg, TrainConfig):
        checks[TrainConfig] = [(cfg.optimizer in ("adam", "sgd"), "optimizer must be adam or sgd"),
                               (cfg.batch_size >= 1, "batch_size must be >= 1"),
                               (0.0 <= cfg.aux_warmup <= 1.0, "aux_warmup must be in [0, 1]"),
                               (cfg.lam_balance_every >= 0, "lam_balance_every must be >= 0"),
                               (1 <= cfg.aux_from_epoch <= cfg.epochs, "aux_from_epoch must lie between 1 and epochs"),
                               (cfg.frozen_stages >= 0, "frozen_stages must be >= 0"),
                               (all(1 <= e <= cfg.epochs for e in cfg.curve_epochs),
                                "curve_epochs must lie between 1 and train.epochs"),
                               (cfg.depthwise_grad in ("aten", "conv"), "depthwise_grad must be aten or conv")]
    if isinstance(cfg, CrfConfig):
        checks[CrfConfig] = [(cfg.unary in ("prob", "label"), "unary must be prob or label"),
                             (0.0 < cfg.gt_prob < 1.0, "gt_prob must be in (0, 1)"),
                             (len(cfg.band) == 2 and 0.0 < cfg.band[0] <= 1.0 <= cfg.band[1],
                              "band must be [low, high] with 0 < low <= 1 <= high")]
    if isinstance(cfg, SegConfig):
        checks[SegConfig] = [(cfg.optimizer in ("adam", "sgd"), "optimizer must be sgd or adam"),
                             (cfg.head in ("largefov", "deeplabv3"), "head must be largefov or deeplabv3"),
                             (cfg.class_weights in CLASS_WEIGHTS,
                              f"class_weights must be one of {', '.join(CLASS_WEIGHTS)}"),
                             (len(cfg.eval_scales) > 0 and all(s > 0 for s in cfg.eval_scales),
                              "eval_scales must be a non-empty list of positive scales")]
    if isinstance(cfg, RunConfig):
        checks[RunConfig] = [(cfg.threads is None or cfg.threads >= 1, "threads must be >= 1 or null")]
    for ok, msg in checks.get(type(cfg), []):
        if not ok:
            raise ConfigError(f"{where}: {msg}")


def replace(cfg: Any, _where: str = "", **changes: Any) -> Any:
    """dataclasses.replace that accepts dotted keys ('model.eta': 0.1) for nested configs."""
    nested: dict[str, dict[str, Any]] = {}
    flat: dict[str, Any] = {}
    for key, value in changes.items():
        head, _, rest = key.replace("__", ".").partition(".")
        if rest:
            nested.setdefault(head, {})[rest] = value
        else:
            flat[key] = value
    for head, sub in nested.items():
        if not hasattr(cfg, head):
            raise ConfigError(f"unknown config section {head!r}")
        flat[head] = replace(getattr(cfg, head), f"{_where}{head}.", **sub)
    data = to_dict(cfg)
    for k, v in flat.items():
        if k not in data:
            raise ConfigError(f"unknown key {_where}{k!r}; valid keys are {sorted(data)}")
        data[k] = to_dict(v) if is_dataclass(v) else v
    return from_dict(type(cfg), data, _where.rstrip(".") or "config")


def _yaml_error(path: Path, text: str, exc: Exception) -> ConfigError:
    """A YAML syntax error as one line naming the file, line and column."""
    mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
    if mark is not None:
        line, column = mark.line + 1, mark.column + 1
    else:  # a ReaderError (forbidden character) only knows its offset in the text
        offset = getattr(exc, "position", 0)
        line = text.count("\n", 0, offset) + 1
        column = offset - (text.rfind("\n", 0, offset) + 1) + 1
    problem = getattr(exc, "problem", None) or getattr(exc, "reason", None) or type(exc).__name__
    context, start = getattr(exc, "context", None), getattr(exc, "context_mark", None)
    if context and start is not None and start is not mark:
        problem += f" ({context} that starts at line {start.line + 1}, column {start.column + 1})"
    return ConfigError(f"{path}: invalid YAML at line {line}, column {column}: {problem}")


def _read_mapping(path: Path) -> dict[str, Any]:
    """The mapping in a YAML config file, or a one-line ConfigError saying what is wrong with it."""
    import yaml

    if not path.is_file():
        raise ConfigError(f"{path}: config file not found")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not a UTF-8 text file") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the config file: {exc.strerror}") from None
    try:
        loaded = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise _yaml_error(path, text, exc) from None
    if loaded is None:
        raise ConfigError(f"{path}: empty config file (write a YAML mapping such as configs/cpu.yaml, "
                          "or name no file for the defaults)")
    if not isinstance(loaded, dict):
        raise ConfigError(f"{path}: a config file must be a YAML mapping of sections, "
                          f"not a {type(loaded).__name__}")
    return loaded


def load_config(path: str | Path | None = None, overrides: dict[str, Any] | None = None) -> RunConfig:
    """Read a YAML preset (may be partial) and apply dotted overrides."""
    data = _read_mapping(Path(path)) if path is not None else {}
    cfg = from_dict(RunConfig, data, str(path or "config"))
    return replace(cfg, **(overrides or {})) if overrides else cfg


def save_config(cfg: Any, path: str | Path) -> None:
    """Write a config as YAML."""
    import yaml

    Path(path).write_text(yaml.safe_dump(to_dict(cfg), sort_keys=False))


def flatten(data: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """A nested dict as {"section.key": value}."""
    out: dict[str, Any] = {}
    for k, v in data.items():
        if isinstance(v, dict):
            out.update(flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def non_default(cfg: Any) -> dict[str, Any]:
    """The dotted keys whose values differ from the defaults of cfg's class."""
    here, base = flatten(to_dict(cfg)), flatten(to_dict(type(cfg)()))
    return {k: v for k, v in here.items() if k not in base or base[k] != v}


def matches_stored(stored: Any, cfg: Any) -> bool:
    """True when a config dict stored with a checkpoint equals `cfg`; keys added since it was
    written count as their defaults, so new options do not invalidate old checkpoints."""
    if not isinstance(stored, dict):
        return False
    return {**to_dict(type(cfg)()), **stored} == to_dict(cfg)


# Config values that change how trained weights are scored or their learning curve, never a
# weight: no classifier or DeepLab is trained again for them (runfolder, segment).
SCORING_ONLY = ("train.curve_epochs", "seg.curve_images", "seg.eval_scales", "seg.eval_flip", "seg.eval_crf")


def key_under(key: str, prefixes: tuple[str, ...]) -> bool:
    """True when a dotted key is one of `prefixes` or lies inside one (a section or a key)."""
    return any(key == p or key.startswith(p + ".") for p in prefixes)


def config_hash(cfg: Any, n: int = 10, exclude: tuple[str, ...] = (),
                extra: dict[str, Any] | None = None, include: tuple[str, ...] | None = None) -> str:
    """A short stable hash of a config's non-default values (minus `exclude`d keys or sections,
    plus `extra` entries that are not config values, e.g. the precision a machine resolves to).

    Only values that differ from the defaults enter the hash, so a new field whose default keeps
    the old behaviour leaves every existing run folder and checkpoint valid. `include`, when
    given, keeps only the keys under those sections or keys.
    """
    key = {k: v for k, v in non_default(cfg).items()
           if not key_under(k, exclude) and (include is None or key_under(k, include))}
    key.update(extra or {})
    blob = json.dumps(key, sort_keys=True).encode()
    return hashlib.sha256(blob).hexdigest()[:n]


__all__ = [
    "DataConfig", "ModelConfig", "TrainConfig", "CamConfig", "CrfConfig", "SegConfig",
    "RunConfig", "PROFILES", "SCORING_ONLY", "to_dict", "from_dict", "replace", "load_config", "save_config", "config_hash", "key_under",
    "flatten", "non_default", "matches_stored",
]
