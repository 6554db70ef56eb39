"""The segmentation network trained on pseudo-masks: DeepLab-LargeFOV or DeepLabV3 heads.

The paper trains "DeepLabV1" [45] on the pseudo-masks. The original DeepLab-LargeFOV sits on VGG-16
at output stride 8: fc6 = 3×3 conv, dilation 12, 1024 channels; fc7 = 1×1, 1024; fc8 = 1×1
classifier, dropout 0.5 after fc6 and fc7. `DeepLabLargeFOV` keeps that head but puts it on our
output-stride-16 backbones (ResNet/EfficientNet from models/backbones.py), so with the same
dilation 12 its field of view in pixels is twice the original's. `head="deeplabv3"` uses
torchvision's ASPP `DeepLabHead` with rates (6, 12, 18), the DeepLabV3 setting for stride 16.
"""
from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from cism_lib.cam import IMAGENET_MEAN, IMAGENET_STD, Transform, normalize_image, scaled_forward
from cism_lib.classes import IGNORE_INDEX
from cism_lib.config import SCORING_ONLY as _SCORING_ONLY
from cism_lib.config import SegConfig, matches_stored, to_dict
from cism_lib.crf import read_index_png
from cism_lib.errors import CheckpointError, ConfigError, DataError
from cism_lib.loop import Epoch, epoch_loader, fit, poly_scheduler
from cism_lib.metrics import ConfusionMatrix, with_class_names
from cism_lib.runfolder import SEG_CHECKPOINT as CHECKPOINT
from cism_lib.runtime import Precision, atomic_path, load_checkpoint_file, precision_for, write_text_atomic

RETRAIN = "delete it and run the same command again: DeepLab trains again from its first epoch"
TRAIN_FIRST = "train DeepLab first (cism segment CONFIG, or cism chain RUN)"
# SegConfig fields that change how a trained segmenter is scored, never its weights
SCORING_ONLY = tuple(k.removeprefix("seg.") for k in _SCORING_ONLY if k.startswith("seg."))
LOG = "seg_log.jsonl"


def dilated_conv_inside(conv: nn.Conv2d, x: torch.Tensor) -> torch.Tensor:
    """conv(x) for a 3×3 conv of dilation d and padding d, without the taps that read only padding.

    Along a dimension of size ≤ d, every tap at offset ±d from any position lies outside the map,
    so those kernel rows (columns) multiply zeros: convolving with the centre row (column) alone
    and no padding there gives the same output, and the same gradient (zero for the dropped taps,
    which the slice passes back to the full weight), at 1/3 (1/9 when both) of the cost. On the
    cpu profile's 10×10 (train) and 12×12 (val) feature maps this is DeepLab-LargeFOV's fc6,
    by far the largest layer. Other shapes run the convolution as it is.
    """
    d, pad = conv.dilation, conv.padding
    if conv.kernel_size != (3, 3) or pad != d or conv.groups != 1 or conv.stride != (1, 1):
        return conv(x)
    keep_h, keep_w = x.shape[-2] > d[0], x.shape[-1] > d[1]
    if keep_h and keep_w:
        return conv(x)
    rows = slice(0, 3) if keep_h else slice(1, 2)
    cols = slice(0, 3) if keep_w else slice(1, 2)
    return F.conv2d(x, conv.weight[:, :, rows, cols], conv.bias, 1,
                    (pad[0] if keep_h else 0, pad[1] if keep_w else 0), d)


class DeepLabLargeFOV(nn.Module):
    """DeepLab v1 LargeFOV head: 3×3 dilated conv → ReLU → dropout → 1×1 → ReLU → dropout → 1×1."""

    def __init__(self, in_channels: int, num_classes: int, mid_channels: int = 1024,
                 dilation: int = 12, dropout: float = 0.5) -> None:
        super().__init__()
        self.fc6 = nn.Conv2d(in_channels, mid_channels, 3, padding=dilation, dilation=dilation)
        self.fc7 = nn.Conv2d(mid_channels, mid_channels, 1)
        self.fc8 = nn.Conv2d(mid_channels, num_classes, 1)
        self.drop6, self.drop7 = nn.Dropout2d(dropout), nn.Dropout2d(dropout)
        nn.init.normal_(self.fc8.weight, std=0.01)
        nn.init.zeros_(self.fc8.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Class logits at the feature resolution."""
        x = self.drop6(F.relu(dilated_conv_inside(self.fc6, x)))
        x = self.drop7(F.relu(self.fc7(x)))
        return self.fc8(x)


class Segmenter(nn.Module):
    """Backbone + head; returns logits [B,C,H,W] bilinearly upsampled to the input size."""

    def __init__(self, backbone: nn.Module, head: nn.Module) -> None:
        super().__init__()
        self.backbone, self.head = backbone, head

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Per-pixel class logits at input resolution."""
        logits = self.head(self.backbone(x))
        return F.interpolate(logits, size=x.shape[-2:], mode="bilinear", align_corners=False)


def build_segmenter(cfg: SegConfig, num_classes: int, backbone: nn.Module | None = None) -> Segmenter:
    """The segmentation net of cfg.head on cfg.backbone (or on a given backbone with `out_channels`)."""
    if backbone is None:
        from cism_lib.models.backbones import build_backbone

        backbone = build_backbone(cfg.backbone, cfg.weights, 16)
    channels = int(backbone.out_channels)
    if cfg.head == "largefov":
        head: nn.Module = DeepLabLargeFOV(channels, num_classes)
    elif cfg.head == "deeplabv3":
        from torchvision.models.segmentation.deeplabv3 import DeepLabHead

        head = DeepLabHead(channels, num_classes, atrous_rates=(6, 12, 18))
    else:
        raise ConfigError(f"seg.head must be largefov or deeplabv3, got {cfg.head!r}")
    return Segmenter(backbone, head)


class PseudoMaskDataset(torch.utils.data.Dataset):
    """Dataset images paired with the pseudo-masks `<mask_dir>/<id>.png` of the same ids."""

    def __init__(self, dataset: Any, mask_dir: str | Path, transform: Transform | None = None,
                 mean: tuple[float, ...] = IMAGENET_MEAN, std: tuple[float, ...] = IMAGENET_STD) -> None:
        self.dataset, self.mask_dir, self.transform = dataset, Path(mask_dir), transform
        self.mean, self.std = mean, std
        self.ids, self.classes = list(dataset.ids), dataset.classes
        self.split = getattr(dataset, "split", None)
        missing = [s for s in self.ids if not (self.mask_dir / f"{s}.png").is_file()]
        if missing:
            raise DataError(f"{self.mask_dir}: {len(missing)} pseudo-masks missing, e.g. {missing[0]}.png")

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, i: int) -> dict[str, Any]:
        """{"image": float32 [3,H,W], "mask": int64 [H,W], "id": str} after the transform."""
        image = self.dataset.read_image(i)  # the pseudo-mask is the target; no ground truth is read
        path = self.mask_dir / f"{self.ids[i]}.png"
        mask = read_index_png(path)
        if mask.shape != image.shape[:2]:
            raise DataError(f"{path}: pseudo-mask size {mask.shape} != image size {image.shape[:2]}")
        if self.transform is not None:
            # Fresh augmentation every epoch, reproducible under torch.manual_seed (and per worker).
            rng = np.random.default_rng(int(torch.randint(2**31, ()).item()))
            x, y = self.transform(image, mask, rng)
        else:
            x, y = normalize_image(image, self.mean, self.std), torch.from_numpy(mask)
        return {"image": x, "mask": torch.as_tensor(y).long(), "id": self.ids[i]}


def class_weights(dataset: "PseudoMaskDataset", mode: str) -> torch.Tensor | None:
    """Cross-entropy weights [C] from the pseudo-masks' pixel frequencies f_c (255 not counted).

    inverse_sqrt: w_c ∝ f_c^(-1/2); median_frequency: w_c = median(f) / f_c over the classes the
    masks contain (SegNet). Classes absent from every mask get weight 0 (they are never a target).
    The weights are scaled so that Σ_c f_c w_c = 1: the mean weight of a training pixel is 1.
    None for mode "none".
    """
    if mode == "none":
        return None
    n = dataset.classes.num_classes
    counts = np.zeros(n, dtype=np.float64)
    for sid in dataset.ids:
        mask = read_index_png(dataset.mask_dir / f"{sid}.png")
        counts += np.bincount(mask[mask < n].reshape(-1), minlength=n)[:n]
    if counts.sum() == 0:
        raise DataError(f"{dataset.mask_dir}: the pseudo-masks label no pixel (all ignored)")
    f = counts / counts.sum()
    present = f > 0
    w = np.zeros(n)
    if mode == "inverse_sqrt":
        w[present] = f[present] ** -0.5
    elif mode == "median_frequency":
        w[present] = np.median(f[present]) / f[present]
    else:
        raise ConfigError(f"seg.class_weights must be none, inverse_sqrt or median_frequency, got {mode!r}")
    return torch.as_tensor(w / (f * w).sum(), dtype=torch.float32)


def _optimizer(model: Segmenter, cfg: SegConfig, total_steps: int,
               fused: bool = False) -> tuple[torch.optim.Optimizer, Any]:
    """The head at `head_lr_mult` × the backbone LR, poly decay (power 0.9) over all steps.

    `sgd` is DeepLab's (momentum 0.9, weight decay 5e-4); `adam` (no weight decay) reaches a
    usable segmenter within the few hundred steps of a CPU budget, where SGD at DeepLab's LR
    still predicts background everywhere. `fused`: one fused kernel over all parameters
    (train.fused_optimizer).
    """
    groups = [{"params": model.backbone.parameters(), "lr": cfg.lr},
              {"params": model.head.parameters(), "lr": cfg.head_lr_mult * cfg.lr}]
    kind = True if fused else None
    if cfg.optimizer == "adam":
        opt: torch.optim.Optimizer = torch.optim.Adam(groups, lr=cfg.lr, fused=kind)
    else:
        opt = torch.optim.SGD(groups, lr=cfg.lr, momentum=0.9, weight_decay=5e-4, fused=kind)

    return opt, poly_scheduler(opt, total_steps)


def _resume(path: Path, cfg: SegConfig, model: nn.Module, opt: Any, sched: Any) -> list[dict]:
    """Load a checkpoint made with the same config; returns its history (empty when none)."""
    if not path.is_file():
        return []
    ckpt = load_checkpoint_file(path, "DeepLab checkpoint", RETRAIN, TRAIN_FIRST)
    stored = ckpt.get("config")
    if isinstance(stored, dict):  # how it is scored (and its learning curve) changes no weight
        stored = {**stored, **{k: to_dict(cfg)[k] for k in SCORING_ONLY}}
    if not matches_stored(stored, cfg):
        raise CheckpointError(f"{path}: made for config {ckpt.get('config')}, not {to_dict(cfg)}; "
                              "use another out_dir or delete it")
    model.load_state_dict(ckpt["model"])
    opt.load_state_dict(ckpt["optimizer"])
    sched.load_state_dict(ckpt["scheduler"])
    return list(ckpt["history"])


def _save(path: Path, cfg: SegConfig, model: nn.Module, opt: Any, sched: Any, history: list[dict]) -> None:
    """Write the checkpoint (a plain dict carrying the config) atomically."""
    with atomic_path(path) as tmp:
        torch.save({"model": model.state_dict(), "optimizer": opt.state_dict(),
                    "scheduler": sched.state_dict(), "config": to_dict(cfg), "history": history,
                    "epoch": len(history)}, tmp)


def pixel_loss(model: nn.Module, batch: dict[str, Any], device: torch.device, precision: Precision,
               weight: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
    """A batch's cross-entropy against its pseudo-masks, in fp32, 255 ignored, classes weighted
    by `weight`: Σ w_y·(−log p_y) / Σ w_y over the pixels that count ({"total": loss})."""
    x, y = precision.images(batch["image"].to(device)), batch["mask"].to(device)
    with precision.autocast():
        logits = model(x)
    return {"total": F.cross_entropy(logits.float(), y, weight=weight, ignore_index=IGNORE_INDEX)}


def train_segmenter(model: nn.Module, train_ds: Any, cfg: SegConfig, device: torch.device | str,
                    out_dir: str | Path, progress: bool = True, seed: int = 0,
                    amp: bool = True, depthwise_grad: str = "aten",
                    fused_optimizer: bool = False,
                    on_epoch: Callable[[nn.Module], dict[str, Any]] | None = None) -> tuple[nn.Module, list[dict]]:
    """Train on pseudo-masks (pixel_loss) with loop.fit; a checkpoint and a JSON-lines record per
    epoch (and class_weights.json when weighted); `fused_optimizer` as in _optimizer.

    `on_epoch(model)`, when given, runs after each epoch's steps and its returned entries join
    that epoch's record (the learning curve: e.g. a val score); it must leave the model's weights
    as they are (the next epoch puts the model back in training mode).

    Resumes from `<out_dir>/seg_checkpoint.pth` when it exists. Returns (the model, one record
    per epoch).
    The network runs under `runtime.precision_for(device, amp)`, the loss in fp32; a Lite0
    backbone backpropagates its depthwise convolutions as `depthwise_grad` says
    (models.backbones.set_depthwise_grad).
    """
    from cism_lib.models.backbones import set_depthwise_grad

    out, device = Path(out_dir), torch.device(device)
    out.mkdir(parents=True, exist_ok=True)
    precision = precision_for(device, amp)
    precision.model(model.to(device))
    set_depthwise_grad(model, depthwise_grad)
    steps = len(epoch_loader(train_ds, cfg.batch_size, seed, 0))
    opt, sched = _optimizer(model, cfg, cfg.epochs * steps, fused_optimizer)
    history = _resume(out / CHECKPOINT, cfg, model, opt, sched)
    # the weights read every pseudo-mask once: only when there is an epoch left to train
    weight = class_weights(train_ds, cfg.class_weights) if len(history) < cfg.epochs else None
    if weight is not None:
        write_text_atomic(out / "class_weights.json", json.dumps(
            dict(zip(train_ds.classes.names, [round(float(v), 6) for v in weight], strict=True))) + "\n")
        weight = weight.to(device)

    def record(epoch: int, done: Epoch) -> dict[str, Any]:
        entry = {"epoch": epoch + 1, "loss": done.losses.get("total", 0.0), "steps": done.steps,
                 **precision.record(), "lr": sched.get_last_lr()[0], "time_s": done.seconds}
        return {**entry, **(on_epoch(model) if on_epoch is not None else {})}

    history = fit(model, opt, sched, lambda batch: pixel_loss(model, batch, device, precision, weight),
                  lambda epoch: epoch_loader(train_ds, cfg.batch_size, seed, epoch),
                  epochs=cfg.epochs, seed=seed, history=history, record=record,
                  checkpoint=lambda history: _save(out / CHECKPOINT, cfg, model, opt, sched, history),
                  log=out / LOG, progress=progress, desc="seg epoch {epoch}/{epochs}")
    return model, history


def _test_time_probs(model: nn.Module, image: torch.Tensor, scales: tuple[float, ...], flip: bool,
                     precision: Precision) -> torch.Tensor:
    """Class scores [1,C,H,W] of one image: its logits at scale 1 without flip (the single-scale
    protocol, exactly), else the mean softmax over scales × flips (cam.scaled_forward's views,
    resized back to the image)."""
    if tuple(scales) == (1.0,) and not flip:
        with precision.autocast():
            return model(precision.images(image)).float()
    size, total = image.shape[-2:], torch.zeros(())
    for s in scales:
        for view in scaled_forward(model, image, s, flip, precision):
            if view is not None:
                if view.shape[-2:] != size:
                    view = F.interpolate(view, size=size, mode="bilinear", align_corners=False)
                total = total + view.softmax(1)
    return total


def load_segmenter(cfg: SegConfig, num_classes: int, path: str | Path) -> Segmenter:
    """A trained segmenter from a train_segmenter checkpoint (no ImageNet weights are read: the
    checkpoint holds every weight), in eval mode on the CPU."""
    state = load_checkpoint_file(path, "DeepLab checkpoint", RETRAIN, TRAIN_FIRST)["model"]
    model = build_segmenter(dataclasses.replace(cfg, weights=None), num_classes)
    model.load_state_dict(state)
    return model.eval()


@torch.no_grad()
def predict_segmenter(model: nn.Module, image: np.ndarray, mean: tuple[float, ...] = IMAGENET_MEAN,
                      std: tuple[float, ...] = IMAGENET_STD, amp: bool = True) -> np.ndarray:
    """Class ids uint8 [H,W] of one uint8 [H,W,3] image (single scale, no flip: evaluate_segmenter's
    default protocol)."""
    device = next(model.parameters()).device
    precision = precision_for(device, amp, inference=True)
    precision.model(model.eval())
    x = normalize_image(image, mean, std).unsqueeze(0).to(device)
    return _test_time_probs(model, x, (1.0,), False, precision).argmax(1)[0].cpu().numpy().astype(np.uint8)


@torch.no_grad()
def evaluate_segmenter(model: nn.Module, val_ds: Any, device: torch.device | str,
                       split: str | None = None, amp: bool = True, scales: tuple[float, ...] = (1.0,),
                       flip: bool = False, crf: Any = None, mean: tuple[float, ...] = IMAGENET_MEAN,
                       std: tuple[float, ...] = IMAGENET_STD) -> dict[str, Any]:
    """mIoU/OA on a dataset yielding {"image", "mask"} dicts (one at a time).

    Single scale by default; with other `scales` and/or `flip`, the class probabilities of every
    rescaled (and horizontally flipped) copy, resized back to the image, are averaged before the
    argmax (DeepLab's multi-scale testing). `crf` (a CrfConfig) refines those probabilities with
    a dense CRF on the image (its normalisation undone with mean / std) before the argmax."""
    device = torch.device(device)
    precision = precision_for(device, amp, inference=True)
    precision.model(model.to(device).eval())
    cm = ConfusionMatrix(val_ds.classes.num_classes)
    for i in range(len(val_ds)):
        item = val_ds[i]
        scores = _test_time_probs(model, item["image"].unsqueeze(0).to(device), scales, flip, precision)
        if crf is not None:
            from cism_lib.crf import dense_crf
            from cism_lib.data.transforms import denormalize

            probs = scores[0].float().softmax(0) if tuple(scales) == (1.0,) and not flip else scores[0].float()
            probs = probs / probs.sum(0, keepdim=True)
            refined = dense_crf(denormalize(item["image"], mean, std), probs.cpu().numpy(), crf)
            scores = torch.from_numpy(refined)[None].to(device)
        cm.update(torch.as_tensor(item["mask"]).to(device), scores.argmax(1)[0])
    protocol = {"split": split or str(getattr(val_ds, "split", None) or type(val_ds).__name__),
                "scales": [float(s) for s in scales], "flip": bool(flip), "crf": crf is not None,
                **precision.record()}
    return {"protocol": protocol, **with_class_names(cm.compute(), val_ds.classes.names)}
