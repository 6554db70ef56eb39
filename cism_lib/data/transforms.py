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


def resize_pair(image: np.ndarray, mask: np.ndarray, height: int, width: int
                ) -> tuple[np.ndarray, np.ndarray]:
    """Resize an image (bilinear) and its mask (nearest) to height x width."""
    if image.shape[:2] == (height, width):
        return image, mask
    img = np.asarray(Image.fromarray(image).resize((width, height), Image.BILINEAR))
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


def color_jitter(image: np.ndarray, strength: float, rng: np.random.Generator) -> np.ndarray:
    """Random brightness, contrast and saturation, each by a factor in [1-s, 1+s]; uint8 in/out."""
    b, c, s = rng.uniform(max(0.0, 1 - strength), 1 + strength, size=3)
    x = image.astype(np.float32) * b
    grey = x @ np.asarray([0.299, 0.587, 0.114], dtype=np.float32)
    x = (x - grey.mean()) * c + grey.mean()
    grey = (x @ np.asarray([0.299, 0.587, 0.114], dtype=np.float32))[..., None]
    x = (x - grey) * s + grey
    return np.clip(np.rint(x), 0, 255).astype(np.uint8)


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

    def __call__(self, image: np.ndarray, mask: np.ndarray, rng: np.random.Generator
                 ) -> tuple[torch.Tensor, torch.Tensor]:
        """(uint8 [H,W,3], uint8 [H,W], rng) → (float32 [3,c,c], int64 [c,c]), c = crop_size."""
        # Geometric draws come first and colour draws last, so the mask does not depend on
        # color_jitter for a given generator state.
        scale = rng.uniform(*self.scale_range)
        h, w = mask.shape
        if self.mode == "fit":
            scale = min(scale, 1.0) * self.crop_size / max(h, w)
        image, mask = resize_pair(image, mask, max(1, round(h * scale)), max(1, round(w * scale)))
        if self.hflip and rng.random() < 0.5:
            image, mask = image[:, ::-1], mask[:, ::-1]
        if self.vflip and rng.random() < 0.5:
            image, mask = image[::-1], mask[::-1]
        if self.rot90:
            k = int(rng.integers(0, 4))
            image, mask = np.rot90(image, k), np.rot90(mask, k)
        y, x = crop_box(*mask.shape, self.crop_size, rng)
        c = self.crop_size
        image, mask = image[y:y + c, x:x + c], mask[y:y + c, x:x + c]
        if self.color_jitter > 0:
            image = color_jitter(image, self.color_jitter, rng)
        # Padding after normalisation: image 0 (the mean colour), mask IGNORE_INDEX.
        out = pad_to(normalize(image, self.mean, self.std), c, 0.0)
        mask = pad_to(mask, c, IGNORE_INDEX)
        return to_tensors(out, mask)


@dataclass(frozen=True)
class EvalTransform:
    """Normalisation only, with an optional resize to `size` (int or (height, width))."""

    mean: Triple = IMAGENET_MEAN
    std: Triple = IMAGENET_STD
    size: int | tuple[int, int] | None = None

    def __call__(self, image: np.ndarray, mask: np.ndarray,
                 rng: np.random.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """(uint8 [H,W,3], uint8 [H,W]) → (float32 [3,H',W'], int64 [H',W']); rng is unused."""
        if self.size is not None:
            h, w = (self.size, self.size) if isinstance(self.size, int) else self.size
            image, mask = resize_pair(image, mask, h, w)
        return to_tensors(normalize(image, self.mean, self.std), mask)


__all__ = ["normalization_for", "TrainTransform", "EvalTransform", "denormalize", "normalize",
           "resize_pair", "random_crop", "crop_box", "pad_to", "color_jitter", "to_tensors", "IMAGENET_MEAN",
           "IMAGENET_STD"]
