"""The DeepLab segmentation net, its pseudo-mask dataset, training loop and evaluation."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from torch import nn

from cism_lib.config import RunConfig, SegConfig, replace
from cism_lib.crf import _palette, write_index_png
from cism_lib.errors import CheckpointError, ConfigError, DataError
from cism_lib.runtime import precision_for
from cism_lib.segment import (DeepLabLargeFOV, PseudoMaskDataset, Segmenter, build_segmenter,
                              dilated_conv_inside, evaluate_segmenter, train_segmenter)
from tests.fixtures import TOY, ArrayDataset

COLOURS = TOY.palette


class ToyDataset(ArrayDataset):
    """Uniformly coloured 32×32 images; the mask is the colour's class everywhere."""

    def __init__(self, n: int) -> None:
        masks = [np.full((32, 32), i % 3, np.uint8) for i in range(n)]
        images = [np.broadcast_to(np.uint8(COLOURS[i % 3]), (32, 32, 3)).copy() for i in range(n)]
        super().__init__(masks, images, split="toyval", id_format="img{i}")


class TinyBackbone(nn.Module):
    """A stride-16 conv standing in for models.backbones.build_backbone."""

    out_channels = 8

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 16, stride=16)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


def _pseudo_ds(tmp_path, n: int = 6) -> PseudoMaskDataset:
    ds = ToyDataset(n)
    for sid, mask in zip(ds.ids, ds.masks):
        write_index_png(tmp_path / f"{sid}.png", mask, _palette(TOY))
    return PseudoMaskDataset(ds, tmp_path, mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0))


@pytest.mark.parametrize("head", ["largefov", "deeplabv3"])
def test_segmenter_forward_shape(head: str) -> None:
    torch.manual_seed(0)
    model = build_segmenter(SegConfig(head=head), 3, backbone=TinyBackbone())
    out = model(torch.randn(2, 3, 64, 48))
    assert out.shape == (2, 3, 64, 48)
    out.sum().backward()
    assert model.backbone.conv.weight.grad is not None


def test_largefov_head_layout() -> None:
    head = DeepLabLargeFOV(8, 5)
    assert head.fc6.dilation == (12, 12) and head.fc6.kernel_size == (3, 3)
    assert head.fc6.out_channels == 1024 and head.fc7.kernel_size == (1, 1)
    assert head.fc8.out_channels == 5
    assert head(torch.randn(1, 8, 4, 3)).shape == (1, 5, 4, 3)  # padding keeps the size


@pytest.mark.parametrize("shape", [(10, 10), (12, 12), (13, 13), (5, 20), (20, 7), (1, 1)])
def test_dilated_conv_without_padding_taps_matches_the_full_conv(shape) -> None:
    """Output and every gradient (input, full weight incl. the zero-gradient taps, bias) equal the
    plain 3×3 dilation-12 conv's in fp64, on maps smaller, equal and larger than the dilation."""
    torch.manual_seed(0)
    conv = nn.Conv2d(4, 6, 3, padding=12, dilation=12).double()
    x = torch.randn(2, 4, *shape, dtype=torch.float64, requires_grad=True)
    g = torch.randn(2, 6, *shape, dtype=torch.float64)
    grads = []
    for fn in (conv, lambda t: dilated_conv_inside(conv, t)):
        conv.zero_grad()
        x.grad = None
        out = fn(x)
        (out * g).sum().backward()
        grads.append((out.detach(), x.grad.clone(), conv.weight.grad.clone(), conv.bias.grad.clone()))
    for full, inside in zip(*grads):
        torch.testing.assert_close(inside, full, rtol=1e-12, atol=1e-12)
    if shape[0] <= 12 and shape[1] <= 12:  # only the centre tap ever sees the map
        off_centre = grads[0][2].clone()
        off_centre[:, :, 1, 1] = 0
        assert off_centre.abs().max() == 0 and grads[0][2][:, :, 1, 1].abs().max() > 0


def test_unknown_head_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="largefov"):
        build_segmenter(SegConfig(head="fcn"), 3, backbone=TinyBackbone())


def test_pseudo_mask_dataset_pairs_images_and_masks(tmp_path) -> None:
    ds = _pseudo_ds(tmp_path)
    item = ds[2]
    assert item["id"] == "img2" and item["image"].shape == (3, 32, 32)
    assert item["mask"].dtype == torch.int64 and torch.all(item["mask"] == 2)
    assert torch.allclose(item["image"][2], torch.ones(32, 32))  # blue, mean 0 / std 1
    (tmp_path / "img5.png").unlink()
    with pytest.raises(DataError, match="img5.png"):
        PseudoMaskDataset(ToyDataset(6), tmp_path)


def test_pseudo_mask_dataset_applies_transform(tmp_path) -> None:
    def crop(image, mask, rng):
        y = int(rng.integers(0, 16))
        return torch.from_numpy(image[y:y + 16, :16].copy()).permute(2, 0, 1).float(), torch.from_numpy(mask[y:y + 16, :16].copy())

    _pseudo_ds(tmp_path)
    ds = PseudoMaskDataset(ToyDataset(6), tmp_path, transform=crop)
    item = ds[1]
    assert item["image"].shape == (3, 16, 16) and torch.all(item["mask"] == 1)


def _small_model() -> Segmenter:
    return Segmenter(TinyBackbone(), DeepLabLargeFOV(8, 3, mid_channels=16, dropout=0.0))


def test_training_decreases_loss_checkpoints_and_resumes(tmp_path) -> None:
    torch.manual_seed(0)
    train = _pseudo_ds(tmp_path / "masks")
    cfg = SegConfig(epochs=10, batch_size=2, lr=0.1)
    model = _small_model()
    # fp32: at this LR (head x10 = 1.0) the toy net is on the edge of divergence, and bf16
    # activations tip it over; the precision policy has its own tests (test_precision.py).
    _, history = train_segmenter(model, train, cfg, "cpu", tmp_path / "run", progress=False, amp=False)
    assert [h["epoch"] for h in history] == list(range(1, 11)) and history[0]["steps"] == 3
    assert history[-1]["loss"] < 0.5 * history[0]["loss"]
    assert history[-1]["lr"] < history[0]["lr"]  # poly decay
    log = [json.loads(line) for line in (tmp_path / "run" / "seg_log.jsonl").read_text().splitlines()]
    assert log == history
    ckpt = torch.load(tmp_path / "run" / "seg_checkpoint.pth", weights_only=True)
    assert ckpt["config"]["epochs"] == 10 and ckpt["epoch"] == 10

    resumed = _small_model()
    assert train_segmenter(resumed, train, cfg, "cpu", tmp_path / "run", progress=False)[1] == history
    for a, b in zip(model.state_dict().values(), resumed.state_dict().values()):
        assert torch.equal(a, b)
    with pytest.raises(CheckpointError, match="config"):
        train_segmenter(_small_model(), train, SegConfig(epochs=11, batch_size=2, lr=0.1), "cpu",
                        tmp_path / "run", progress=False)


class ColourOracle(nn.Module):
    """Predicts class 1 where red dominates, 2 where blue does, else background."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.stack([0.5 * torch.ones_like(x[:, 0]), x[:, 0], x[:, 2]], dim=1)


class Background(nn.Module):
    """Predicts background everywhere."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.zeros(x.shape[0], 3, *x.shape[2:]).index_fill_(1, torch.tensor([0]), 1.0)


def test_evaluate_segmenter(tmp_path) -> None:
    val = _pseudo_ds(tmp_path)
    metrics = evaluate_segmenter(ColourOracle(), val, "cpu", split="val")
    assert metrics["miou"] == pytest.approx(1.0) and metrics["oa"] == pytest.approx(1.0)
    expected = {"split": "val", "scales": [1.0], "flip": False, "crf": False,
                **precision_for("cpu", inference=True).record()}
    assert metrics["protocol"] == expected
    assert metrics["class_names"] == list(TOY.names)
    background = evaluate_segmenter(Background(), val, "cpu")
    assert background["iou"] == pytest.approx([1 / 3, 0.0, 0.0])
    assert background["oa"] == pytest.approx(1 / 3) and background["protocol"]["split"] == "toyval"


class LeftRight(nn.Module):
    """Class 1's logit ramps from -1 (left) to +1 (right) over class 0's constant 0: class 1 on the
    right half; averaged with its flip the two probabilities tie at 1/2 everywhere."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        ramp = torch.linspace(-1, 1, x.shape[-1]).expand(x.shape[0], x.shape[-2], -1)
        return torch.stack([torch.zeros_like(ramp), ramp], dim=1)


def test_evaluate_segmenter_flip_and_scales_average_probabilities(tmp_path) -> None:
    from cism_lib.classes import ClassSet

    class Blank:  # one 4x8 image whose ground truth is background everywhere
        classes = ClassSet(name="blank", names=("background", "thing"), palette=((0, 0, 0), (255, 0, 0)))

        def __len__(self) -> int:
            return 1

        def __getitem__(self, i: int) -> dict:
            return {"image": torch.zeros(3, 4, 8), "mask": torch.zeros(4, 8, dtype=torch.long)}

    single = evaluate_segmenter(LeftRight(), Blank(), "cpu", amp=False)
    assert single["oa"] == pytest.approx(0.5)                # the right half says "thing"
    flipped = evaluate_segmenter(LeftRight(), Blank(), "cpu", amp=False, flip=True)
    assert flipped["oa"] == pytest.approx(1.0)               # 1/2 vs 1/2: ties go to background
    assert flipped["protocol"]["flip"] is True and flipped["protocol"]["scales"] == [1.0]
    # a pixel-wise model scored over three scales keeps the toy's colour blocks
    multi = evaluate_segmenter(ColourOracle(), _pseudo_ds(tmp_path), "cpu", scales=(0.5, 1.0, 1.5), flip=True)
    assert multi["miou"] > 0.9 and multi["protocol"]["scales"] == [0.5, 1.0, 1.5]
    with pytest.raises(ConfigError, match="eval_scales"):
        replace(RunConfig(), **{"seg.eval_scales": ()})


@pytest.mark.parametrize("name, kind", [("sgd", torch.optim.SGD), ("adam", torch.optim.Adam)])
def test_optimizer_choice_and_head_lr_mult(name: str, kind: type) -> None:
    from cism_lib.segment import _optimizer

    opt, sched = _optimizer(_small_model(), SegConfig(optimizer=name, lr=0.01, head_lr_mult=5.0), 10)
    assert isinstance(opt, kind)
    assert [g["lr"] for g in opt.param_groups] == pytest.approx([0.01, 0.05])
    for _ in range(5):
        opt.step()
        sched.step()
    assert opt.param_groups[1]["lr"] == pytest.approx(0.05 * 0.5 ** 0.9)  # poly decay, half-way
    with pytest.raises(ConfigError, match="optimizer"):
        replace(RunConfig(), **{"seg.optimizer": "rmsprop"})


def test_adam_learns_the_toy_segmentation(tmp_path) -> None:
    torch.manual_seed(0)
    train = _pseudo_ds(tmp_path / "masks")
    cfg = SegConfig(epochs=8, batch_size=2, lr=0.01, optimizer="adam", head_lr_mult=1.0)
    model = _small_model()
    _, history = train_segmenter(model, train, cfg, "cpu", tmp_path / "run", progress=False)
    assert history[-1]["loss"] < 0.5 * history[0]["loss"]
    assert evaluate_segmenter(model, train, "cpu")["miou"] == pytest.approx(1.0)


def test_checkpoint_without_newer_seg_keys_still_resumes(tmp_path) -> None:
    torch.manual_seed(0)
    train = _pseudo_ds(tmp_path / "masks")
    cfg = SegConfig(epochs=2, batch_size=2, lr=0.1)
    _, history = train_segmenter(_small_model(), train, cfg, "cpu", tmp_path / "run", progress=False)
    path = tmp_path / "run" / "seg_checkpoint.pth"
    ckpt = torch.load(path, weights_only=True)
    for key in ("optimizer", "head_lr_mult"):  # as written before these options existed
        del ckpt["config"][key]
    torch.save(ckpt, path)
    assert train_segmenter(_small_model(), train, cfg, "cpu", tmp_path / "run", progress=False)[1] == history
