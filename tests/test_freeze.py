"""The anchors' training practice on the backbone (train.frozen_stages, train.freeze_bn): what is
frozen receives no update and keeps its BatchNorm statistics; everything else trains."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from cism_lib import pipeline
from cism_lib.config import replace
from cism_lib.engine import train_classifier
from cism_lib.errors import ConfigError
from cism_lib.models import build_model
from cism_lib.models.backbones import backbone_stages, build_backbone, freeze
from tests.test_pipeline import _data_env, data_dir, tiny_config  # noqa: F401 (the module's SynthAerial fixtures)


def test_the_stages_of_each_backbone_cover_it_in_forward_order():
    lite = build_backbone("efficientnet_lite0", None)
    parts = backbone_stages(lite)
    assert [len(p) for p in parts] == [2, 1, 2, 2, 3, 3, 4, 1]  # stem, then Lite0's seven stages
    assert sum(len(p) for p in parts[1:]) == len(lite.body.net._blocks)
    res = build_backbone("resnet18", None)
    assert backbone_stages(res)[2][0] is res.body.layer2
    with pytest.raises(ConfigError, match=r"frozen_stages must lie between 0 and 4"):
        freeze(res, 5)


def _state(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


@pytest.fixture(scope="module")
def trained(data_dir, tmp_path_factory):  # noqa: F811 (the imported fixture)
    """Initial and trained weights of a tiny CAM classifier per freezing setting."""
    out = {}
    for name, extra in {"stages2": {"train.frozen_stages": 2}, "bn": {"train.freeze_bn": True}}.items():
        cfg = tiny_config(tmp_path_factory.mktemp(name), **{"model.method": "cam", "train.epochs": 1, **extra})
        torch.manual_seed(cfg.train.seed)  # train_classifier seeds, then builds: the same initial weights
        initial = _state(build_model(cfg.model, pipeline.num_foreground(cfg)))
        model, _ = train_classifier(cfg, pipeline.pair_dataset(cfg, progress=False), pipeline.num_foreground(cfg),
                                 tmp_path_factory.mktemp(f"{name}-out"), progress=False)
        out[name] = (initial, _state(model))
    return out


def test_frozen_stages_keep_their_weights_and_statistics_and_the_rest_trains(trained):
    initial, final = trained["stages2"]
    frozen = ("backbone.body.conv1.", "backbone.body.bn1.", "backbone.body.layer1.", "backbone.body.layer2.")
    changed = {k for k in initial if not torch.equal(initial[k], final[k])}
    assert changed and not {k for k in changed if k.startswith(frozen)}
    assert any(k.startswith("backbone.body.layer2.0.bn1.running_mean") for k in initial)  # statistics included
    assert any(k.startswith("backbone.body.layer3.") and k.endswith(".weight") for k in changed)
    assert any(k.startswith("backbone.body.layer4.") and "running_mean" in k for k in changed)
    assert any(k.startswith("classifier.") for k in changed)


def test_frozen_batchnorm_keeps_every_statistic_and_affine_parameter(trained):
    initial, final = trained["bn"]
    bn = [k for k in initial if k.startswith("backbone.") and (".bn" in k or "downsample.1" in k)]
    assert bn and all(torch.equal(initial[k], final[k]) for k in bn)
    convs = [k for k in initial if k.startswith("backbone.") and "conv" in k and k.endswith("weight")]
    assert any(not torch.equal(initial[k], final[k]) for k in convs)  # the convolutions still train


def test_freezing_enters_the_runs_identity_only_when_set(tmp_path):
    plain = tiny_config(tmp_path)
    assert pipeline.run_dir(replace(plain, **{"train.frozen_stages": 0, "train.freeze_bn": False})) == \
        pipeline.run_dir(plain)
    assert pipeline.run_dir(replace(plain, **{"train.freeze_bn": True})) != pipeline.run_dir(plain)
