"""Multi-scale + flip CAM inference, compact CAM storage and CAM → label maps.

A CAM file `<out_dir>/<id>.npz` holds `keys` (int16 [n], the present foreground class ids 1..K)
and `cams` (float16 [n, H, W], max-normalised to [0, 1]); classes absent from the image-level
label are not stored and load back as zeros. `cam_meta.json` beside them records scales and flip.
"""
from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from cism_lib.config import CamConfig
from cism_lib.data.transforms import IMAGENET_MEAN, IMAGENET_STD, normalize
from cism_lib.errors import ConfigError, DataError
from cism_lib.runtime import Precision, atomic_path, precision_for, write_text_atomic

Transform = Callable[[np.ndarray, np.ndarray, np.random.Generator], tuple[torch.Tensor, torch.Tensor]]


def scaled_forward(forward: Callable[[torch.Tensor], torch.Tensor], images: torch.Tensor, scale: float,
                   flip: bool, precision: Precision) -> tuple[torch.Tensor, torch.Tensor | None]:
    """`forward` (under `precision`, output in fp32) on images resized by `scale`, and on their
    mirror in the same batch, flipped back: (output, mirrored output or None without flip), at the
    resolution `forward` returns. The test-time views of multi-scale CAMs and DeepLab scoring."""
    b, _, h, w = images.shape
    x = images
    if scale != 1.0:
        size = (max(1, round(h * scale)), max(1, round(w * scale)))
        x = F.interpolate(images, size=size, mode="bilinear", align_corners=False)
    if flip:
        x = torch.cat([x, x.flip(-1)], dim=0)
    with precision.autocast():
        out = forward(precision.images(x)).float()
    return (out[:b], out[b:].flip(-1)) if flip else (out, None)


def _scale_cam(model: nn.Module, images: torch.Tensor, scale: float, flip: bool,
               precision: Precision) -> torch.Tensor:
    """CAM of images resized by `scale` (plus the flipped-back CAM of the mirror) at full size."""
    cam, mirror = scaled_forward(model.cam, images, scale, flip, precision)
    if mirror is not None:
        cam = cam + mirror
    return F.interpolate(cam, size=images.shape[-2:], mode="bilinear", align_corners=False)


@torch.no_grad()
def multiscale_cam(model: nn.Module, image: torch.Tensor, label: torch.Tensor,
                   scales: Sequence[float] = (0.5, 1.0, 1.5, 2.0), flip: bool = True,
                   amp: bool = True, precision: Precision | None = None) -> torch.Tensor:
    """Sum of CAMs over scales (and flips), absent classes zeroed, each class max-normalised to [0, 1].

    `image` is [3,H,W] or [B,3,H,W] (normalised, on the model's device), `label` [K] or [B,K]
    multi-hot; returns float32 [B,K,H,W]. Normalisation follows IRN: relu(cam) / (max + 1e-5).
    The network runs under `precision` (default `runtime.precision_for(device, amp)`); resizing
    and sums are fp32.
    """
    images = image.unsqueeze(0) if image.dim() == 3 else image
    labels = torch.as_tensor(label).reshape(images.shape[0], -1).to(images.device, torch.float32)
    precision = precision or precision_for(images.device, amp, inference=True)
    total = sum(_scale_cam(model, images, float(s), flip, precision) for s in scales)
    cam = F.relu(total.float()) * labels[:, :, None, None]
    return cam / (cam.amax(dim=(2, 3), keepdim=True) + 1e-5)


def save_cam(path: str | Path, cam: np.ndarray | torch.Tensor, label: np.ndarray | torch.Tensor) -> None:
    """Store the present classes of a [K,H,W] CAM as fp16 in an .npz, written atomically."""
    cam = cam.detach().cpu().numpy() if isinstance(cam, torch.Tensor) else np.asarray(cam)
    label = label.detach().cpu().numpy() if isinstance(label, torch.Tensor) else np.asarray(label)
    present = np.flatnonzero(label.reshape(-1) > 0)
    keys = (present + 1).astype(np.int16)
    cams = cam[present].astype(np.float16)
    with atomic_path(path) as tmp, open(tmp, "wb") as f:  # a handle: numpy adds no suffix
        np.savez_compressed(f, keys=keys, cams=cams)


def load_cam(path: str | Path, num_fg: int) -> tuple[np.ndarray, np.ndarray]:
    """Read a CAM file as (float32 [K,H,W] with zeros for absent classes, bool label [K])."""
    path = Path(path)
    try:
        with np.load(path) as data:
            keys, cams = data["keys"].astype(np.int64), data["cams"]
    except FileNotFoundError:
        raise DataError(f"{path}: CAM file not found (run `cism cams CONFIG` first)") from None
    except Exception as e:  # corrupt zip, missing arrays, truncated file
        raise DataError(f"{path}: damaged CAM file ({type(e).__name__}: {e}); delete it and redo the CAM "
                        "stage (cism cams CONFIG --force, or cism chain RUN --stages cams --force): only missing "
                        "CAM files are made again") from None
    if keys.size and (keys.min() < 1 or keys.max() > num_fg) or cams.shape[0] != keys.size:
        raise DataError(f"{path}: class ids {keys.tolist()} do not fit {num_fg} foreground classes")
    full = np.zeros((num_fg, *cams.shape[1:]), dtype=np.float32)
    full[keys - 1] = cams.astype(np.float32)
    label = np.zeros(num_fg, dtype=bool)
    label[keys - 1] = True
    return full, label


def cam_to_labels(cam: np.ndarray, bg_threshold: float) -> np.ndarray:
    """Label map [H,W] uint8: argmax over [background = bg_threshold constant, CAMs of classes 1..K]."""
    if cam.shape[0] == 0:
        return np.zeros(cam.shape[1:], dtype=np.uint8)
    best = cam.argmax(axis=0)
    # Ties with the background constant go to background, as argmax picks the first channel.
    fg = np.take_along_axis(cam, best[None], axis=0)[0] > bg_threshold
    return np.where(fg, best + 1, 0).astype(np.uint8)


def normalize_image(image: np.ndarray, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """uint8 [H,W,3] RGB → float32 [3,H,W] with (x / 255 - mean) / std."""
    return torch.from_numpy(np.ascontiguousarray(normalize(image, mean, std).transpose(2, 0, 1)))


Raw = tuple[int, np.ndarray]


def _raw_batches(dataset: Any, todo: list[int], batch_size: int) -> Iterator[list[Raw]]:
    """Read images (never their masks) and group consecutive ones of the same size into batches."""
    batch: list[Raw] = []
    for i in todo:
        image = dataset.read_image(i)
        if batch and (image.shape != batch[0][1].shape or len(batch) >= batch_size):
            yield batch
            batch = []
        batch.append((i, image))
    if batch:
        yield batch


def _prepare(batch: list[Raw], transform: Transform | None, mean: Sequence[float],
             std: Sequence[float]) -> torch.Tensor:
    """Normalised image batch [B,3,h,w]."""
    rng = np.random.default_rng(0)
    if transform is None:
        return torch.stack([normalize_image(image, mean, std) for _, image in batch])
    return torch.stack([transform(image, None, rng)[0] for _, image in batch])


def write_cam_meta(out_dir: str | Path, cfg: CamConfig, resume: bool = True) -> None:
    """Record how the CAMs in out_dir were made (read back by metrics.evaluate_cams).

    When resuming, CAMs already there must have been made the same way (no silent mixing).
    """
    meta = {"scales": list(cfg.scales), "flip": cfg.flip}
    path = Path(out_dir) / "cam_meta.json"
    if resume and path.is_file() and json.loads(path.read_text()) != meta:
        raise ConfigError(f"{path}: the CAMs here were made with {path.read_text()}, not {meta}; "
                          "use another folder or skip_done=False")
    write_text_atomic(Path(out_dir) / "cam_meta.json", json.dumps(meta))


def make_cams(model: nn.Module, dataset: Any, out_dir: str | Path, cfg: CamConfig,
              device: torch.device | str, progress: bool = True, skip_done: bool = True,
              transform: Transform | None = None, mean: Sequence[float] = IMAGENET_MEAN,
              std: Sequence[float] = IMAGENET_STD, amp: bool = True) -> list[str]:
    """Write `<out_dir>/<id>.npz` multi-scale CAMs for every image; returns the ids written.

    Images are normalised by `transform` (must keep the image size) or else by mean/std; the
    image-level labels come from `dataset.labels`. Existing files are skipped when skip_done.
    """
    from cism_lib.runtime import progress_bar

    out, device = Path(out_dir), torch.device(device)
    out.mkdir(parents=True, exist_ok=True)
    write_cam_meta(out, cfg, resume=skip_done)
    todo = [i for i, sid in enumerate(dataset.ids) if not (skip_done and (out / f"{sid}.npz").exists())]
    precision_for(device, amp, inference=True).model(model.eval())
    written: list[str] = []
    with progress_bar(total=len(todo), desc="CAMs", disable=not progress) as bar:
        for batch in _raw_batches(dataset, todo, cfg.batch_size):
            idx, size = [b[0] for b in batch], batch[0][1].shape[:2]
            images = _prepare(batch, transform, mean, std)
            labels = torch.as_tensor(np.asarray(dataset.labels)[idx], dtype=torch.float32)
            cams = multiscale_cam(model, images.to(device), labels, cfg.scales, cfg.flip, amp)
            if cams.shape[-2:] != size:
                cams = F.interpolate(cams, size=size, mode="bilinear", align_corners=False)
            for i, cam, label in zip(idx, cams.cpu(), labels):
                save_cam(out / f"{dataset.ids[i]}.npz", cam, label)
                written.append(dataset.ids[i])
            bar.update(len(idx))
    return written
