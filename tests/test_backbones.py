"""Backbones: output stride, weight loading from the hub cache or a file, EfficientNet-Lite0 ImageNet."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from cism_lib.errors import CheckpointError, ConfigError
from cism_lib.models.backbones import build_backbone, imagenet_weights_file

torch.set_num_threads(1)


@pytest.mark.parametrize("name,channels", [("resnet18", 512), ("resnet34", 512), ("resnet50", 2048)])
def test_resnet_output_stride_16(name: str, channels: int) -> None:
    net = build_backbone(name, None, 16).eval()
    with torch.no_grad():
        out = net(torch.randn(1, 3, 64, 96))
    assert net.out_channels == channels
    assert out.shape == (1, channels, 4, 6)


@pytest.mark.parametrize("stride", [8, 32])
def test_resnet18_other_strides(stride: int) -> None:
    net = build_backbone("resnet18", None, stride).eval()
    with torch.no_grad():
        assert net(torch.randn(1, 3, 64, 64)).shape[-1] == 64 // stride


def test_resnet18_last_stage_dilated() -> None:
    body = build_backbone("resnet18", None, 16).body
    assert body.layer4[0].conv1.stride == (1, 1) and body.layer4[0].downsample[0].stride == (1, 1)
    assert body.layer4[1].conv1.dilation == (2, 2) and body.layer4[1].conv1.padding == (2, 2)
    assert body.layer3[0].conv1.stride == (2, 2)


def test_missing_imagenet_cache_is_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    with pytest.raises(CheckpointError) as err:
        build_backbone("resnet18", "imagenet")
    msg = str(err.value)
    assert "resnet18-f37072fd.pth" in msg and "download.pytorch.org" in msg
    assert str(tmp_path / "checkpoints") in msg


def test_imagenet_weights_loaded_from_hub_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import torchvision.models as tvm

    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    reference = tvm.resnet18(weights=None)
    path = imagenet_weights_file("resnet18")
    path.parent.mkdir(parents=True)
    torch.save(reference.state_dict(), path)
    net = build_backbone("resnet18", "imagenet")
    assert torch.equal(net.body.conv1.weight, reference.conv1.weight)
    assert torch.equal(net.body.layer4[1].bn2.running_mean, reference.layer4[1].bn2.running_mean)


def test_weights_file_errors(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="not found"):
        build_backbone("resnet18", str(tmp_path / "nope.pth"))
    bad = tmp_path / "bad.pth"
    torch.save({"conv1.weight": torch.zeros(1)}, bad)
    with pytest.raises(CheckpointError, match="bad.pth"):
        build_backbone("resnet18", str(bad))
    with pytest.raises(ConfigError, match="unknown backbone"):
        build_backbone("vgg16", None)


def test_efficientnet_lite0_imagenet_top1() -> None:
    """The bundled weights classify real photos correctly at output stride 16."""
    import skimage.data
    import torchvision.models as tvm

    categories = tvm.ResNet50_Weights.IMAGENET1K_V1.meta["categories"]
    state = torch.load(imagenet_weights_file("efficientnet_lite0"), map_location="cpu", weights_only=True)
    net = build_backbone("efficientnet_lite0", "imagenet", 16).eval()
    expected = {"chelsea": {"Egyptian cat", "tabby", "tiger cat"},
                "coffee": {"espresso", "cup", "coffee mug"}}
    for name, accepted in expected.items():
        image = torch.from_numpy(getattr(skimage.data, name)()).permute(2, 0, 1).float()[None]
        image = F.interpolate(image, size=(224, 224), mode="bilinear", align_corners=False)
        with torch.no_grad():
            feats = net((image - 127.0) / 128.0)  # EfficientNet-Lite's TF normalisation
        assert feats.shape == (1, 1280, 14, 14)
        logits = feats.mean((2, 3)) @ state["_fc.weight"].T + state["_fc.bias"]
        assert categories[int(logits.argmax())] in accepted, name
