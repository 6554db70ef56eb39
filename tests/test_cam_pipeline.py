"""make_cams end to end: what reaches the network (scales, flip, precision, transform), the
files it writes (size, folder, resume metadata) and its progress bar."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import cism_lib.runtime as runtime
from cism_lib.cam import load_cam, make_cams, multiscale_cam, normalize_image, write_cam_meta
from cism_lib.config import CamConfig
from cism_lib.data.transforms import IMAGENET_MEAN, IMAGENET_STD
from cism_lib.errors import ConfigError
from tests.fixtures import ArrayDataset


class RecordingCam(nn.Module):
    """A 3×3 conv CAM times a left-to-right ramp (so not flip-equivariant); records every call."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.conv = nn.Conv2d(3, 2, 3, padding=1, bias=False)
        self.calls: list[dict] = []

    def cam(self, x: torch.Tensor) -> torch.Tensor:
        self.calls.append({"size": tuple(x.shape), "autocast": torch.is_autocast_enabled("cpu"),
                           "channels_last": not x.is_contiguous()
                           and x.is_contiguous(memory_format=torch.channels_last)})
        ramp = torch.linspace(0.1, 1.0, x.shape[-1])
        return self.conv(x) * ramp


def _dataset(n: int = 3, size: int = 16) -> ArrayDataset:
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 256, (size, size, 3), dtype=np.uint8) for _ in range(n)]
    masks = [np.full((size, size), 1 + i % 2, dtype=np.uint8) for i in range(n)]
    return ArrayDataset(masks, images)


def _expected(model: nn.Module, ds: ArrayDataset, i: int, scales, flip: bool) -> np.ndarray:
    """multiscale_cam of image i normalised with the ImageNet mean/std, in fp32."""
    x = normalize_image(ds.images[i], IMAGENET_MEAN, IMAGENET_STD)
    label = torch.as_tensor(ds.labels[i], dtype=torch.float32)
    return multiscale_cam(model, x, label, scales, flip=flip, amp=False)[0].numpy()


def test_make_cams_passes_scales_and_flip_to_the_network(tmp_path) -> None:
    ds, model = _dataset(), RecordingCam()
    cfg = CamConfig(scales=(1.0, 2.0), flip=True, batch_size=2)
    make_cams(model, ds, tmp_path, cfg, "cpu", progress=False, amp=False)
    # per batch, one call per scale with the images and their mirrors: batches of 2 and 1
    assert [c["size"] for c in model.calls] == [(4, 3, 16, 16), (4, 3, 32, 32), (2, 3, 16, 16), (2, 3, 32, 32)]
    for i, sid in enumerate(ds.ids):
        cam, _ = load_cam(tmp_path / f"{sid}.npz", 2)
        np.testing.assert_allclose(cam, _expected(model, ds, i, (1.0, 2.0), True), atol=1e-3)
    flipless = _expected(model, ds, 0, (1.0, 2.0), False)
    assert np.abs(flipless - _expected(model, ds, 0, (1.0, 2.0), True)).max() > 0.05  # flip matters here


def test_make_cams_amp_is_bf16_channels_last_and_amp_false_is_plain_fp32(tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(runtime, "cpu_bf16_supported", lambda: True)  # as on a bf16 CPU
    ds, cfg = _dataset(2), CamConfig(scales=(1.0,), flip=False)
    model = RecordingCam()
    make_cams(model, ds, tmp_path / "amp", cfg, "cpu", progress=False)  # amp by default
    assert all(c["autocast"] and c["channels_last"] for c in model.calls)
    assert model.conv.weight.is_contiguous(memory_format=torch.channels_last)
    assert not model.conv.weight.is_contiguous()

    model = RecordingCam()
    make_cams(model, ds, tmp_path / "fp32", cfg, "cpu", progress=False, amp=False)
    assert model.calls and not any(c["autocast"] or c["channels_last"] for c in model.calls)
    assert model.conv.weight.is_contiguous()
    for i, sid in enumerate(ds.ids):
        cam, _ = load_cam(tmp_path / "fp32" / f"{sid}.npz", 2)
        np.testing.assert_allclose(cam, _expected(RecordingCam(), ds, i, (1.0,), False), atol=6e-4)


def _half_with_offset(image: np.ndarray, mask: None, rng: np.random.Generator):
    """A transform that halves the image and adds a random constant (it uses its generator)."""
    x = normalize_image(image[::2, ::2], IMAGENET_MEAN, IMAGENET_STD) + float(rng.uniform(0.5, 1.5))
    return x, None


def test_make_cams_with_a_resizing_random_transform(tmp_path) -> None:
    ds, cfg = _dataset(2), CamConfig(scales=(1.0,), flip=False, batch_size=2)
    out = tmp_path / "nested" / "cams"  # parent folders are created
    make_cams(RecordingCam(), ds, out, cfg, "cpu", progress=False, transform=_half_with_offset, amp=False)
    again = tmp_path / "again"
    make_cams(RecordingCam(), ds, again, cfg, "cpu", progress=False, transform=_half_with_offset, amp=False)
    rng = np.random.default_rng(0)  # the batch's images draw from one generator, in order
    x = torch.stack([_half_with_offset(im, None, rng)[0] for im in ds.images])
    labels = torch.as_tensor(ds.labels, dtype=torch.float32)
    small = multiscale_cam(RecordingCam(), x, labels, (1.0,), flip=False, amp=False)
    expected = F.interpolate(small, size=(16, 16), mode="bilinear", align_corners=False).numpy()
    for i, sid in enumerate(ds.ids):
        cam, _ = load_cam(out / f"{sid}.npz", 2)
        assert cam.shape == (2, 16, 16)  # back at the image's size
        np.testing.assert_allclose(cam, expected[i], atol=1e-3)
        np.testing.assert_array_equal(cam, load_cam(again / f"{sid}.npz", 2)[0])  # reproducible


def test_write_cam_meta_refuses_other_settings_unless_told_not_to_resume(tmp_path) -> None:
    write_cam_meta(tmp_path, CamConfig(scales=(1.0,), flip=False))
    with pytest.raises(ConfigError, match=r"cam_meta.json: the CAMs here were made with .*not \{'scales': \[0\.5"):
        write_cam_meta(tmp_path, CamConfig(scales=(0.5, 1.0)))  # resume is the default
    write_cam_meta(tmp_path, CamConfig(scales=(0.5, 1.0)), resume=False)
    assert json.loads((tmp_path / "cam_meta.json").read_text()) == {"scales": [0.5, 1.0], "flip": True}


def test_make_cams_without_skip_done_rewrites_everything_with_new_settings(tmp_path) -> None:
    ds = _dataset(2)
    make_cams(RecordingCam(), ds, tmp_path, CamConfig(scales=(1.0,), flip=False), "cpu", progress=False)
    cfg = CamConfig(scales=(0.5, 1.0), flip=True)
    assert make_cams(RecordingCam(), ds, tmp_path, cfg, "cpu", progress=False, skip_done=False) == ds.ids
    assert json.loads((tmp_path / "cam_meta.json").read_text()) == {"scales": [0.5, 1.0], "flip": True}


def test_make_cams_progress_bar_counts_images(tmp_path, monkeypatch, capsys) -> None:
    monkeypatch.delenv(runtime.HEADLESS_ENV, raising=False)
    ds, cfg = _dataset(3), CamConfig(scales=(1.0,), flip=False, batch_size=2)
    make_cams(RecordingCam(), ds, tmp_path / "a", cfg, "cpu")  # progress by default
    err = capsys.readouterr().err
    assert "CAMs: 100%" in err and "3/3" in err
    make_cams(RecordingCam(), ds, tmp_path / "b", cfg, "cpu", progress=False)
    assert capsys.readouterr().err == ""


class SizeCam(nn.Module):
    """Records input sizes; its CAM is the image's first two channels."""

    def __init__(self) -> None:
        super().__init__()
        self.sizes: list[tuple[int, ...]] = []

    def cam(self, x: torch.Tensor) -> torch.Tensor:
        self.sizes.append(tuple(x.shape))
        return x[:, :2]


def test_multiscale_cam_scaled_sizes_round_and_never_reach_zero() -> None:
    model = SizeCam()
    cam = multiscale_cam(model, torch.rand(1, 3, 3, 2), torch.ones(2), scales=(0.25, 1.0, 2.0), flip=False)
    # 3 × 0.25 rounds to 1, 2 × 0.25 to 0 and is kept at 1; scale 2 doubles both sides
    assert model.sizes == [(1, 3, 1, 1), (1, 3, 3, 2), (1, 3, 6, 4)]
    assert cam.shape == (1, 2, 3, 2)


def test_multiscale_cam_resizes_with_half_pixel_centres() -> None:
    """IRN's resizing (align_corners=False) both ways: down to the scale, back to the image."""
    torch.manual_seed(0)
    image = torch.rand(1, 3, 8, 12)
    cam = multiscale_cam(SizeCam(), image, torch.ones(2), scales=(0.5,), flip=False)
    down = F.interpolate(image, size=(4, 6), mode="bilinear", align_corners=False)
    up = F.interpolate(down[:, :2], size=(8, 12), mode="bilinear", align_corners=False)
    torch.testing.assert_close(cam, up / (up.amax(dim=(2, 3), keepdim=True) + 1e-5))
