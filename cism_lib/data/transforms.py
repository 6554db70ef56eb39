"""Image/mask augmentation and normalisation: numpy + PIL on the CPU, randomness from a numpy Generator.

Every random choice is drawn from the `rng` argument, so a transform is deterministic given
the generator state (the pair sampler seeds it with `(seed, epoch, index)`); torch's RNG is
never used, which keeps results identical for any number of DataLoader workers.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image

from cism_lib.classes import IGNORE_INDEX
from cism_lib.errors import ConfigError

Triple = tuple[float, float, float]

IMAGENET_MEAN: Triple = (0.485, 0.456, 0.406)
IMAGENET_STD: Triple = (0.229, 0.224, 0.225)
# TF-Lite EfficientNet-Lite convention: x_norm = (x * 255 - 127) / 128.
LITE_MEAN: Triple = (127 / 255, 127 / 255, 127 / 255)
LITE_STD: Triple = (128 / 255, 128 / 255, 128 / 255)


def normalization_for(backbone: str) -> tuple[Triple, Triple]:
    """(mean, std) in [0, 1] units expected by a backbone's pretrained weights."""
    if backbone.startswith("resnet"):
        return IMAGENET_MEAN, IMAGENET_STD
    if backbone.startswith("efficientnet_lite"):
        return LITE_MEAN, LITE_STD
    raise ConfigError(f"no normalisation known for backbone {backbone!r}; "
                      "expected resnet* or efficientnet_lite0")


def resize_pair(image: np.ndarray, mask: np.ndarray | None, height: int, width: int
                ) -> tuple[np.ndarray, np.ndarray | None]:
    """Resize an image (bilinear) and its mask (nearest; None stays None) to height x width."""
    if image.shape[:2] == (height, width):
        return image, mask
    img = np.asarray(Image.fromarray(image).resize((width, height), Image.BILINEAR))
    if mask is None:
        return img, None
    msk = np.asarray(Image.fromarray(mask).resize((width, height), Image.NEAREST))
    return img, msk


def normalize(image: np.ndarray, mean: Triple, std: Triple) -> np.ndarray:
    """uint8 [H,W,3] → float32 [H,W,3] as (x/255 - mean) / std."""
    m = np.asarray(mean, dtype=np.float32)
    s = np.asarray(std, dtype=np.float32)
    return (image.astype(np.float32) / 255.0 - m) / s


def to_tensors(image: np.ndarray, mask: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    """float32 [H,W,3] and uint8 [H,W] → float32 tensor [3,H,W] and int64 tensor [H,W]."""
    img = torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1), dtype=np.float32))
    msk = torch.from_numpy(np.ascontiguousarray(mask, dtype=np.int64))
    return img, msk


def denormalize(tensor: torch.Tensor | np.ndarray, mean: Triple, std: Triple) -> np.ndarray:
    """Normalised image [3,H,W] (tensor or array) → uint8 [H,W,3] for figures."""
    x = tensor.detach().float().cpu().numpy() if torch.is_tensor(tensor) else np.asarray(tensor)
    x = x.transpose(1, 2, 0) * np.asarray(std, np.float32) + np.asarray(mean, np.float32)
    return np.clip(np.rint(x * 255.0), 0, 255).astype(np.uint8)


LUMA = np.asarray([0.299, 0.587, 0.114], dtype=np.float32)


def color_jitter(image: np.ndarray, strength: float, rng: np.random.Generator) -> np.ndarray:
    """Random brightness b, contrast c and saturation s, each a factor in [1-s, 1+s]; uint8 in/out.

    The three steps x·b, (x - m)·c + m (m the mean grey level) and (x - g)·s + g (g the pixel's
    grey level) are affine, and the luma weights sum to 1, so together they are one 3×3 colour
    matrix c·b·(s·I + (1-s)·1 wᵀ) plus the offset (1-c)·m: one matrix product per pixel.
    """
    b, c, s = rng.uniform(max(0.0, 1 - strength), 1 + strength, size=3)
    m = b * float((image.reshape(-1, 3) @ LUMA).mean())
    matrix = (c * b) * (s * np.eye(3, dtype=np.float32) + (1 - s) * np.outer(np.ones(3), LUMA))
    x = image.reshape(-1, 3) @ matrix.T.astype(np.float32) + np.float32((1 - c) * m)
    return np.clip(np.rint(x), 0, 255).astype(np.uint8).reshape(image.shape)


def crop_box(height: int, width: int, size: int, rng: np.random.Generator) -> tuple[int, int]:
    """Random top-left corner of a size x size crop of an image padded at the bottom/right."""
    y = int(rng.integers(0, max(size, height) - size + 1))
    x = int(rng.integers(0, max(size, width) - size + 1))
    return y, x


def pad_to(array: np.ndarray, size: int, fill: float) -> np.ndarray:
    """Pad an array [h,w,...] with h, w <= size at the bottom/right to [size,size,...]."""
    if array.shape[:2] == (size, size):
        return array
    out = np.full((size, size) + array.shape[2:], fill, dtype=array.dtype)
    out[:array.shape[0], :array.shape[1]] = array
    return out


def random_crop(image: np.ndarray, mask: np.ndarray, size: int, rng: np.random.Generator
                ) -> tuple[np.ndarray, np.ndarray]:
    """Pad (image 0, mask IGNORE_INDEX) at the bottom/right up to `size`, then crop size x size."""
    y, x = crop_box(*mask.shape, size, rng)
    image, mask = image[y:y + size, x:x + size], mask[y:y + size, x:x + size]
    return pad_to(image, size, 0), pad_to(mask, size, IGNORE_INDEX)


@dataclass(frozen=True)
class TrainTransform:
    """Random rescale, flips, 90° rotations, crop with ignore padding and colour jitter.

    mode "crop": the image is rescaled by a factor drawn from scale_range, then a random
    crop_size window is cut. When the image is larger than the window, objects outside it are
    lost while the image-level label still names them (label noise for small objects in large
    tiles). mode "fit": the whole image is rescaled to fit in the window (longer side
    crop_size times a factor from scale_range, capped at 1) and padded, so every labelled
    object stays in view.
    """

    crop_size: int
    scale_range: tuple[float, float] = (0.7, 1.3)
    hflip: bool = True
    vflip: bool = True          # aerial imagery has no canonical "up"
    rot90: bool = True
    color_jitter: float = 0.3
    mean: Triple = IMAGENET_MEAN
    std: Triple = IMAGENET_STD
    mode: str = "crop"          # crop | fit

    def __post_init__(self) -> None:
        if self.mode not in ("crop", "fit"):
            raise ConfigError(f"TrainTransform mode must be crop or fit, got {self.mode!r}")

    def __call__(self, image: np.ndarray, mask: np.ndarray | None, rng: np.random.Generator
                 ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(uint8 [H,W,3], uint8 [H,W] or None, rng) → (float32 [3,c,c], int64 [c,c] or None).

        The classifier's training path passes no mask (weak supervision reads none); the
        image's geometry and colour draws do not depend on whether a mask is given.
        """
        # Geometric draws come first and colour draws last, so the mask does not depend on
        # color_jitter for a given generator state.
        scale = rng.uniform(*self.scale_range)
        h, w = image.shape[:2]
        if self.mode == "fit":
            scale = min(scale, 1.0) * self.crop_size / max(h, w)
        image, mask = resize_pair(image, mask, max(1, round(h * scale)), max(1, round(w * scale)))
        views = [image] if mask is None else [image, mask]
        if self.hflip and rng.random() < 0.5:
            views = [v[:, ::-1] for v in views]
        if self.vflip and rng.random() < 0.5:
            views = [v[::-1] for v in views]
        if self.rot90:
            k = int(rng.integers(0, 4))
            views = [np.rot90(v, k) for v in views]
        y, x = crop_box(*views[0].shape[:2], self.crop_size, rng)
        c = self.crop_size
        views = [v[y:y + c, x:x + c] for v in views]
        image = views[0]
        if self.color_jitter > 0:
            image = color_jitter(image, self.color_jitter, rng)
        # Padding after normalisation: image 0 (the mean colour), mask IGNORE_INDEX.
        out = pad_to(normalize(image, self.mean, self.std), c, 0.0)
        if mask is None:
            return to_tensors(out, np.zeros((0, 0), np.uint8))[0], None
        return to_tensors(out, pad_to(views[1], c, IGNORE_INDEX))


@dataclass(frozen=True)
class EvalTransform:
    """Normalisation only, with an optional resize to `size` (int or (height, width))."""

    mean: Triple = IMAGENET_MEAN
    std: Triple = IMAGENET_STD
    size: int | tuple[int, int] | None = None

    def __call__(self, image: np.ndarray, mask: np.ndarray | None,
                 rng: np.random.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(uint8 [H,W,3], uint8 [H,W] or None) → (float32 [3,H',W'], int64 [H',W'] or None)."""
        if self.size is not None:
            h, w = (self.size, self.size) if isinstance(self.size, int) else self.size
            image, mask = resize_pair(image, mask, h, w)
        if mask is None:
            return to_tensors(normalize(image, self.mean, self.std), np.zeros((0, 0), np.uint8))[0], None
        return to_tensors(normalize(image, self.mean, self.std), mask)


__all__ = ["normalization_for", "TrainTransform", "EvalTransform", "denormalize", "normalize",
           "resize_pair", "random_crop", "crop_box", "pad_to", "color_jitter", "to_tensors", "IMAGENET_MEAN",
           "IMAGENET_STD"]
