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


# ----------------------------------------------------------------------------- depthwise backward
@pytest.mark.parametrize("kernel,stride,dilation,size", [
    (3, 1, 1, (9, 10)), (5, 1, 1, (8, 7)), (5, 1, 2, (12, 11)), (3, 1, 2, (9, 9)),
    (3, 2, 1, (12, 13)), (3, 2, 1, (11, 10)), (5, 2, 1, (14, 15)), (5, 2, 1, (9, 12))])
def test_depthwise_conv_grad_is_the_exact_gradient_of_the_padded_convolution(
        kernel: int, stride: int, dilation: int, size: tuple[int, int]) -> None:
    from cism_lib.models.backbones import _DepthwiseConvGrad, same_padding

    (top, bottom), (left, right) = (same_padding(size[0], kernel, stride, dilation),
                                    same_padding(size[1], kernel, stride, dilation))
    pads = (left, right, top, bottom)
    g = torch.Generator().manual_seed(kernel * 100 + stride * 10 + dilation)
    x = torch.randn(2, 5, *size, dtype=torch.float64, generator=g, requires_grad=True)
    w = torch.randn(5, 1, kernel, kernel, dtype=torch.float64, generator=g, requires_grad=True)
    y = _DepthwiseConvGrad.apply(x, w, pads, stride, dilation)
    ref = F.conv2d(F.pad(x, pads), w, None, stride, 0, dilation, 5)
    assert y.shape[-2:] == (-(-size[0] // stride), -(-size[1] // stride))  # 'same': ceil(size / stride)
    assert torch.equal(y, ref)
    out_grad = torch.randn(y.shape, dtype=torch.float64, generator=g)
    got = torch.autograd.grad(y, (x, w), out_grad)
    want = torch.autograd.grad(ref, (x, w), out_grad)
    for a, b in zip(got, want, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)
    assert torch.autograd.gradcheck(lambda a, b: _DepthwiseConvGrad.apply(a, b, pads, stride, dilation), (x, w))


def _lite0_grads(grad: str, amp: bool, channels_last: bool,
                 train: bool = True) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    from cism_lib.models.backbones import set_depthwise_grad

    torch.manual_seed(0)
    net = build_backbone("efficientnet_lite0", None, 16).train(train)
    assert set_depthwise_grad(net, grad) == 16  # one depthwise convolution per MBConv block
    x = torch.randn(2, 3, 72, 88, generator=torch.Generator().manual_seed(1))
    if channels_last:
        net, x = net.to(memory_format=torch.channels_last), x.contiguous(memory_format=torch.channels_last)
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=amp):
        out = net(x)
    (out.float() ** 2).mean().backward()
    return out.detach().float(), {n: p.grad.clone() for n, p in net.named_parameters()}


def test_lite0_with_conv_depthwise_grad_has_the_same_forward_and_gradients_in_fp32() -> None:
    out_aten, grads_aten = _lite0_grads("aten", amp=False, channels_last=False)
    out_conv, grads_conv = _lite0_grads("conv", amp=False, channels_last=False)
    assert torch.equal(out_aten, out_conv)  # the forward is the package's padding and convolution
    assert grads_aten.keys() == grads_conv.keys()
    for name, g in grads_aten.items():  # fp32 summation order only
        torch.testing.assert_close(grads_conv[name], g, rtol=1e-4, atol=1e-6, msg=name)


def test_lite0_conv_depthwise_grad_under_bf16_autocast_stays_within_bf16_rounding_of_fp32() -> None:
    # BatchNorm on running statistics: a random net's batch statistics of 2 images make the
    # gradient chaotic in any precision (PyTorch's own bf16 lands 100 % from fp32 there)
    _, fp32 = _lite0_grads("aten", amp=False, channels_last=False, train=False)
    _, aten = _lite0_grads("aten", amp=True, channels_last=True, train=False)
    _, conv = _lite0_grads("conv", amp=True, channels_last=True, train=False)

    def rel(a: dict[str, torch.Tensor]) -> float:  # the whole gradient's relative distance to fp32
        num = sum(((a[n] - g) ** 2).sum() for n, g in fp32.items())
        return float(num.sqrt() / sum((g ** 2).sum() for g in fp32.values()).sqrt())

    # bf16 has an 8-bit mantissa (relative step 2^-8 ≈ 0.4 %); through 16 blocks PyTorch's own
    # bf16 kernels land a few percent from fp32: the conv backward must be no farther than 1.5× that
    print(f"relative distance to fp32: aten {rel(aten):.4f}, conv {rel(conv):.4f}")
    assert rel(aten) < 0.1 and rel(conv) < 1.5 * rel(aten) + 0.01
    assert all(torch.isfinite(g).all() for g in conv.values())


def test_depthwise_grad_leaves_inference_and_other_backbones_alone() -> None:
    from cism_lib.models.backbones import set_depthwise_grad

    assert set_depthwise_grad(build_backbone("resnet18", None, 16), "conv") == 0
    net = build_backbone("efficientnet_lite0", None, 16).eval()
    x = torch.randn(1, 3, 40, 40)
    with torch.no_grad():
        before = net(x)
        set_depthwise_grad(net, "conv")
        assert torch.equal(net(x), before)  # no gradient recorded: the package's own path
    assert set(net.state_dict()) == set(build_backbone("efficientnet_lite0", None, 16).state_dict())
    with pytest.raises(ConfigError, match="depthwise_grad must be one of"):
        set_depthwise_grad(net, "fast")


@pytest.mark.parametrize("grad,calls", [("aten", 0), ("conv", 1)])
def test_train_depthwise_grad_reaches_the_classifier_training(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                              grad: str, calls: int) -> None:
    from cism_lib.config import RunConfig, replace
    from cism_lib.engine import train_classifier
    from cism_lib.models import backbones
    from tests.fixtures import pair_batch

    seen: list[int] = []
    original = backbones._DepthwiseConvGrad.backward

    def spy(ctx, grad_out):  # noqa: ANN001, ANN202
        seen.append(grad_out.shape[1])
        return original(ctx, grad_out)

    monkeypatch.setattr(backbones._DepthwiseConvGrad, "backward", staticmethod(spy))
    cfg = replace(RunConfig(), **{"device": "cpu", "threads": 1, "model.method": "cam",
                                  "model.backbone": "efficientnet_lite0", "model.weights": None,
                                  "train.epochs": 1, "train.batch_size": 2, "train.amp": False,
                                  "train.depthwise_grad": grad})

    class Items(torch.utils.data.Dataset):
        def __len__(self) -> int:
            return 2

        def __getitem__(self, i: int) -> dict:
            b = pair_batch(i, size=48)
            return {"image_q": b["image_q"][0], "label_q": b["label_q"][0]}

    train_classifier(cfg, Items(), 3, tmp_path, progress=False)
    # one step: every depthwise convolution of >= 64 channels (15 of 16; not the 32-channel first) once
    assert len(seen) == 15 * calls and all(c >= backbones.CONV_GRAD_MIN_CHANNELS for c in seen)


def test_train_segmenter_sets_the_depthwise_grad_it_is_given(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from cism_lib.config import SegConfig
    from cism_lib.models import backbones
    from cism_lib.segment import build_segmenter, train_segmenter

    calls: list[str] = []
    real = backbones.set_depthwise_grad
    monkeypatch.setattr(backbones, "set_depthwise_grad", lambda m, g: calls.append(g) or real(m, g))
    cfg = SegConfig(backbone="efficientnet_lite0", weights=None, epochs=0, batch_size=1)
    train_segmenter(build_segmenter(cfg, 3), [None], cfg, "cpu", tmp_path, progress=False, amp=False,
                    depthwise_grad="conv")
    assert calls == ["conv"]
