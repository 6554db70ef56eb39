"""python -m cism_lib.tools.stepprofile: where a training step's time goes, as Markdown."""
from __future__ import annotations

import pytest

from cism_lib.tools import stepprofile


@pytest.mark.parametrize("grad", ["aten", "conv"])
def test_profile_of_a_small_cism_step_accounts_for_its_phases_and_names_the_conv_backward(
        grad: str, capsys: pytest.CaptureFixture) -> None:
    result = stepprofile.main(["--device", "cpu", "--threads", "1", "--model.backbone", "efficientnet_lite0",
                               "--model.weights", "none", "--model.proto_dim", "8", "--data.crop_size", "64",
                               "--train.batch_size", "1", "--train.amp", "false", "--train.depthwise_grad",
                               grad, "--steps", "1", "--top", "200"])
    phases = result["phases"]
    assert set(phases) == set(stepprofile.PHASES) and all(s >= 0 for s in phases.values())
    assert sum(phases.values()) == pytest.approx(result["step_s"], rel=0.05)  # one step: phases tile it
    assert next(iter(result["modules"])) == "backbone"  # the slowest forward module
    assert {"backbone", "classifier", "prototype"} <= set(result["modules"])
    names = [name for name, _, _ in result["ops"]]
    assert any("DepthwiseConvGrad" in n for n in names) == (grad == "conv")
    text = capsys.readouterr().out
    assert text.startswith("median step") and "| phase | s / step | share |" in text


def test_depthwise_layers_times_every_lite0_depthwise_convolution_both_ways(capsys: pytest.CaptureFixture) -> None:
    result = stepprofile.main(["--threads", "1", "--data.crop_size", "32", "--train.batch_size", "1",
                               "--train.amp", "false", "--depthwise-layers"])
    rows = result["layers"]
    assert len(rows) == 16 and rows[0]["channels"] == 32 and rows[-1]["channels"] == 1152
    assert [r["stride"] for r in rows].count(2) == 3  # output stride 16: the 4th stride-2 stage is dilated
    assert all(r["aten"] > 0 and r["conv"] > 0 for r in rows)
    assert capsys.readouterr().out.splitlines()[-1].startswith("| all |")
