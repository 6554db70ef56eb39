"""A trained run's chain (pipeline.run_chain): its own folder per CRF / DeepLab setting inside the
classifier run, the threshold protocol, resume, the learning curve, and its one-line errors."""
from __future__ import annotations

import json

import pytest
import torch

from cism_lib import pipeline
from cism_lib.cli import main as cli_main
from cism_lib.config import replace
from cism_lib.errors import ConfigError
from tests.test_pipeline import _data_env, data_dir, tiny_config  # noqa: F401 (the module's SynthAerial fixtures)


@pytest.fixture(scope="module")
def trained(data_dir, tmp_path_factory):  # noqa: F811 (the imported fixture)
    """A classifier run (no DeepLab) with CAMs of only its first 8 train images, scored."""
    cfg = tiny_config(tmp_path_factory.mktemp("chain"), **{"seg.enabled": False, "cam.max_train": 8})
    rd = pipeline.run_all(cfg, stages=("train", "cams", "eval"), progress=False)
    return cfg, rd


def test_chain_covers_every_train_image_and_keeps_the_threshold_chosen_on_train(trained):
    _, rd = trained
    assert len(list((rd / "cams" / "train").glob("*.npz"))) == 8
    cfg = pipeline.chain_config(rd, **{"cam.max_train": None, "seg.curve_images": 4})
    cd = pipeline.run_chain(cfg, rd, progress=False)
    assert cd.parent == rd / "chain"
    assert len(list((rd / "cams" / "train").glob("*.npz"))) == 16  # the run's CAMs, completed
    assert len(list((cd / "pseudo").glob("*.png"))) == 16
    m = pipeline.read_metrics(cd)
    run = pipeline.read_metrics(rd)
    assert m["pseudo_threshold"] == run["cam_threshold_val"]  # chosen by eval on the train CAMs
    assert m["pseudo_images"] == 16 and 0 <= m["pseudo_miou_train"] <= 1
    proto = json.loads((cd / "metrics" / "pseudo_train.json").read_text())["protocol"]
    assert proto["threshold_selected_on"] == "train" and proto["split"] == "train (16 images)"
    seg = json.loads((cd / "metrics" / "seg_val.json").read_text())
    assert seg["protocol"]["split"] == "val (all images)" and 0 <= m["seg_miou_val"] <= 1
    # the curve: one point per epoch, on the first 4 val images, cumulative steps
    assert [p["epoch"] for p in seg["curve"]] == [1] and seg["curve"][0]["steps"] == m["seg_steps"] == 4
    assert 0 <= seg["curve"][0]["val_miou"] <= 1
    log = [json.loads(line) for line in (cd / "seg" / "seg_log.jsonl").read_text().splitlines()]
    assert log[0]["val_images"] == 4
    assert not (rd / "pseudo").exists() and not (rd / "seg").exists()  # the run folder itself: untouched


def test_chain_folders_are_keyed_by_their_own_values_only(trained):
    _, rd = trained
    base = pipeline.chain_config(rd)
    assert pipeline.chain_dir(base, rd) == pipeline.chain_dir(pipeline.chain_config(rd, **{
        "crf.workers": 3, "seg.curve_images": 10, "device": "cpu"}), rd)  # change no number
    others = [pipeline.chain_dir(pipeline.chain_config(rd, **o), rd) for o in (
        {"crf.unary": "label"}, {"seg.epochs": 2}, {"cam.max_train": None}, {"crf.band": (0.5, 1.5)})]
    assert len({pipeline.chain_dir(base, rd), *others}) == 5


def test_finished_chain_stages_are_skipped_and_a_missing_one_resumes(trained, monkeypatch):
    _, rd = trained
    cfg = pipeline.chain_config(rd, **{"crf.enabled": False, "seg.epochs": 1})
    cd = pipeline.run_chain(cfg, rd, stages=("cams", "pseudo"), progress=False)
    assert not pipeline.stage_done(cd, "segment")
    monkeypatch.setitem(pipeline.CHAIN_FUNCS, "pseudo", lambda *a: pytest.fail("pseudo re-run"))
    monkeypatch.setitem(pipeline.CHAIN_FUNCS, "cams", lambda *a: pytest.fail("cams re-run"))
    assert pipeline.run_chain(cfg, rd, progress=False) == cd
    assert pipeline.stage_done(cd, "segment") and "seg_miou_val" in pipeline.read_metrics(cd)


def test_curve_changes_no_weight(trained, tmp_path):
    from cism_lib.segment import build_segmenter

    _, rd = trained
    cfg = pipeline.chain_config(rd, **{"crf.enabled": False})
    cd = pipeline.run_chain(cfg, rd, stages=("cams", "pseudo"), progress=False)
    weights = []
    for n in (0, 3):
        c = pipeline.chain_config(rd, **{"crf.enabled": False, "seg.epochs": 2, "seg.curve_images": n})
        pipeline.segmenter_scored(c, pipeline.cam_split(c, "train", progress=False), cd / "pseudo",
                                  lambda tf, c=c: pipeline.open_split(c, "val", transform=tf, progress=False),
                                  tmp_path / f"seg{n}", "cpu", split="val", progress=False, init_seed=0)
        model = build_segmenter(c.seg, 16)
        model.load_state_dict(torch.load(tmp_path / f"seg{n}" / "seg_checkpoint.pth", weights_only=True)["model"])
        weights.append(torch.cat([p.detach().reshape(-1) for p in model.parameters()]))
    assert torch.equal(weights[0], weights[1])


def test_chain_refuses_other_keys_and_untrained_runs(trained, tmp_path):
    _, rd = trained
    with pytest.raises(ConfigError, match=r"changes only cam.max_train, crf\.\* and seg\.\*, not \['model.lam'\]"):
        pipeline.chain_config(rd, **{"model.lam": 0.1})
    with pytest.raises(ConfigError, match="not a run folder"):
        pipeline.chain_config(tmp_path)
    with pytest.raises(ConfigError, match=r"changes only .*not \['cam.flip'\]"):
        pipeline.chain_config(rd, **{"cam.flip": False})
    cfg = pipeline.chain_config(rd)  # a config built by hand: its CAMs would not be the run's
    with pytest.raises(ConfigError, match="its CAMs were made with .* a chain may change cam.max_train only"):
        pipeline.run_chain(replace(cfg, **{"cam.flip": not cfg.cam.flip}), rd, progress=False)
    untrained = tiny_config(tmp_path, **{"seg.enabled": False})
    rd2 = pipeline.run_dir(untrained)
    pipeline.write_run_record(untrained, rd2)
    with pytest.raises(ConfigError, match="'train' stage is not done"):
        pipeline.run_chain(pipeline.chain_config(rd2), rd2, progress=False)


def test_cli_chain_prints_the_folder_and_one_line_errors(trained, capsys):
    _, rd = trained
    assert cli_main(["chain", str(rd), "--crf.enabled", "false", "--stages", "cams", "pseudo"]) == 0
    out = capsys.readouterr().out
    assert "chain folder:" in out and "pseudo_miou_train" in out
    assert cli_main(["chain", str(rd), "--train.lr", "0.1"]) == 2
    assert "changes only cam.max_train" in capsys.readouterr().err


def test_chain_examples_show_cams_masks_and_deeplab_of_each_model(trained):
    from cism_lib import experiments as ex
    from cism_lib.crf import read_index_png

    cfg, rd = trained
    cd = pipeline.run_chain(pipeline.chain_config(rd, **{"crf.enabled": False}), rd, progress=False)
    samples = ex.chain_examples({"A": (cfg, cd), "B": (cfg, cd)}, "train", indices=[0, 1])
    assert [k for k in samples[0] if k != "notes"] == [
        "image", "ground truth", "A CAM", "B CAM", "A pseudo-mask", "B pseudo-mask", "A DeepLab", "B DeepLab"]
    ds = pipeline.open_split(cfg, "train", progress=False)
    assert (samples[1]["A pseudo-mask"] == read_index_png(cd / "pseudo" / f"{ds.ids[1]}.png")).all()
    pred = samples[0]["A DeepLab"]
    assert pred.shape == ds.read(0)[1].shape and pred.dtype.name == "uint8" and pred.max() < 16
    assert samples[0]["notes"]["A DeepLab"].startswith("mIoU ")
    val = ex.chain_examples({"A": (cfg, cd)}, "val", n=2)  # val: no pseudo-masks exist
    assert [k for k in val[0] if k != "notes"] == ["image", "ground truth", "A CAM", "A DeepLab"]


def test_load_segmenter_names_a_missing_or_broken_checkpoint(tmp_path):
    from cism_lib.config import SegConfig
    from cism_lib.errors import CheckpointError
    from cism_lib.segment import load_segmenter

    seg = SegConfig(backbone="resnet18", weights=None)
    with pytest.raises(CheckpointError, match=r"no DeepLab checkpoint here; train DeepLab first"):
        load_segmenter(seg, 16, tmp_path / "seg_checkpoint.pth")
    (tmp_path / "bad.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match=r"bad\.pth: not a DeepLab checkpoint: not a PyTorch file; "
                                              r"delete it and run the same command again"):
        load_segmenter(seg, 16, tmp_path / "bad.pth")


def test_a_new_scoring_rescores_the_trained_deeplab_without_training_it(trained, monkeypatch):
    from cism_lib import segment

    _, rd = trained
    base = {"crf.enabled": False, "crf.iterations": 1}
    cd = pipeline.run_chain(pipeline.chain_config(rd, **base), rd, progress=False)
    single = pipeline.read_metrics(cd)["seg_miou_val"]
    weights = (cd / "seg" / "seg_checkpoint.pth").read_bytes()
    monkeypatch.setattr(segment, "pixel_loss", lambda *a, **k: pytest.fail("DeepLab retrained"))
    scored = pipeline.chain_config(rd, **base, **{"seg.eval_flip": True, "seg.eval_scales": (0.75, 1.0),
                                                  "seg.eval_crf": True})
    assert pipeline.chain_dir(scored, rd) == cd  # the same DeepLab, scored again
    pipeline.run_chain(scored, rd, progress=False)
    m = pipeline.read_metrics(cd)
    assert m["seg_miou_val"] == single  # the single-scale protocol stays the headline
    assert 0 <= m["seg_miou_val_ms"] <= 1 and 0 <= m["seg_miou_val_crf"] <= 1
    ms = json.loads((cd / "metrics" / "seg_val_ms.json").read_text())["protocol"]
    assert ms["scales"] == [0.75, 1.0] and ms["flip"] and not ms["crf"]
    assert json.loads((cd / "metrics" / "seg_val_crf.json").read_text())["protocol"]["crf"]
    assert json.loads((cd / "metrics" / "seg_val.json").read_text())["protocol"]["scales"] == [1.0]
    assert (cd / "seg" / "seg_checkpoint.pth").read_bytes() == weights
    monkeypatch.setitem(pipeline.CHAIN_FUNCS, "segment", lambda *a: pytest.fail("re-scored twice"))
    pipeline.run_chain(scored, rd, progress=False)


def test_a_rescoring_drops_the_figures_of_the_protocol_it_replaces(trained):
    _, rd = trained
    base = {"crf.enabled": False, "crf.iterations": 1}
    flip = pipeline.chain_config(rd, **base, **{"seg.eval_flip": True, "seg.eval_crf": True})
    cd = pipeline.run_chain(flip, rd, progress=False)
    assert {"seg_miou_val_ms", "seg_miou_val_crf"} <= set(pipeline.read_metrics(cd))
    assert pipeline.run_chain(pipeline.chain_config(rd, **base), rd, progress=False) == cd  # single scale
    m = pipeline.read_metrics(cd)
    assert "seg_miou_val" in m and "pseudo_miou_train" in m
    assert not [k for k in m if k.startswith(("seg_miou_val_", "seg_oa_val_"))]
    assert sorted(f.name for f in (cd / "metrics").glob("seg_*")) == ["seg_val.json", "seg_val_per_class.csv"]


def test_chain_summary_lists_each_chain_with_its_own_settings_and_scores(trained, capsys):
    _, rd = trained
    # its own folder (the curve is not part of it: a chain made by another test would have none)
    cd = pipeline.run_chain(pipeline.chain_config(rd, **{"crf.enabled": False, "seg.lr": 5e-4,
                                                         "seg.curve_images": 2}), rd, progress=False)
    table = pipeline.chain_summary([rd], per_class=True).set_index("chain")
    line = table.loc[cd.name]
    assert line["settings"] == "cam.max_train=8 crf.enabled=False seg.lr=0.0005" and line["method"] == "cism"
    m = pipeline.read_metrics(cd)
    assert line["pseudo mIoU"] == pytest.approx(100 * m["pseudo_miou_train"])
    assert line["DeepLab mIoU"] == pytest.approx(100 * m["seg_miou_val"]) and line["steps"] == m["seg_steps"]
    assert line["curve (steps: val mIoU)"].startswith(f"{m['seg_steps']}: ")
    assert "IoU background" in table.columns
    assert cli_main(["chain", str(rd), "--summary"]) == 0
    assert cd.name in capsys.readouterr().out


def test_cli_chain_figure_writes_the_figure_and_names_a_wrong_folder(trained, tmp_path, monkeypatch, capsys):
    from cism_lib import viz

    _, rd = trained
    cd = pipeline.run_chain(pipeline.chain_config(rd, **{"crf.enabled": False}), rd, progress=False)
    monkeypatch.setattr(viz, "output_dir", lambda kind, profile: tmp_path / kind / profile)
    assert cli_main(["chain-figure", f"A={cd}", "--split", "train", "--images", "2", "--name", "f"]) == 0
    assert (tmp_path / "figures" / "isaid512" / "f.jpg").stat().st_size > 0
    assert cli_main(["chain-figure", f"A={rd}"]) == 2
    assert "(a chain folder)" in capsys.readouterr().err


def test_a_new_deeplab_setting_links_the_pseudo_masks_of_its_sibling_chain(trained, monkeypatch):
    from cism_lib import crf

    _, rd = trained
    first = pipeline.run_chain(pipeline.chain_config(rd, **{"crf.bi_sxy": 30}), rd, stages=("cams", "pseudo"),
                               progress=False)
    monkeypatch.setattr(crf, "_run_job", lambda *a: pytest.fail("CRF re-run"))
    cfg = pipeline.chain_config(rd, **{"crf.bi_sxy": 30, "seg.epochs": 3})
    cd = pipeline.run_chain(cfg, rd, stages=("cams", "pseudo"), progress=False)
    assert cd != first
    masks = sorted((first / "pseudo").glob("*.png"))
    assert len(masks) == 8 and [f.name for f in sorted((cd / "pseudo").glob("*.png"))] == [f.name for f in masks]
    assert all((cd / "pseudo" / f.name).stat().st_ino == f.stat().st_ino for f in masks)  # links, not copies
    assert pipeline.read_metrics(cd)["pseudo_miou_train"] == pipeline.read_metrics(first)["pseudo_miou_train"]
    assert json.loads((cd / "stages" / "pseudo.json").read_text())["masks_from"] == first.name
    # another CRF setting makes its own masks
    other = pipeline.chain_config(rd, **{"crf.bi_sxy": 40, "seg.epochs": 3})
    with pytest.raises(pytest.fail.Exception, match="CRF re-run"):
        pipeline.run_chain(other, rd, stages=("cams", "pseudo"), progress=False)


def test_masks_are_copied_whole_where_they_cannot_be_linked(tmp_path, monkeypatch):
    (tmp_path / "a").mkdir()
    for name in ("x.png", "y.png"):
        (tmp_path / "a" / name).write_bytes(name.encode() * 100)
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "y.png").write_bytes(b"kept")  # already there: left alone

    def no_link(*a):
        raise OSError("cross-device link")

    monkeypatch.setattr(pipeline.os, "link", no_link)
    pipeline._link_masks(tmp_path / "a", tmp_path / "b")
    assert sorted(p.name for p in (tmp_path / "b").iterdir()) == ["x.png", "y.png"]  # no temporary left
    assert (tmp_path / "b" / "x.png").read_bytes() == b"x.png" * 100
    assert (tmp_path / "b" / "y.png").read_bytes() == b"kept"


def test_a_second_deeplab_seed_is_its_own_chain_on_the_same_masks(trained):
    _, rd = trained
    base = {"crf.enabled": False, "crf.iterations": 1}
    first = pipeline.run_chain(pipeline.chain_config(rd, **base), rd, progress=False)
    assert pipeline.seg_seed(pipeline.chain_config(rd, **base)) == pipeline.chain_config(rd).train.seed
    seeded = pipeline.chain_config(rd, **base, **{"seg.seed": 5})
    cd = pipeline.chain_dir(seeded, rd)
    assert cd != first and pipeline.seg_seed(seeded) == 5
    pipeline.run_chain(seeded, rd, progress=False)
    assert json.loads((cd / "stages" / "pseudo.json").read_text())["masks_from"] == first.name
    wa, wb = (torch.load(c / "seg" / "seg_checkpoint.pth", map_location="cpu", weights_only=True)["model"]
              for c in (first, cd))
    heads = [k for k in wa if k.startswith("head") and wa[k].is_floating_point()]
    assert heads and any(not torch.equal(wa[k], wb[k]) for k in heads)  # another draw of DeepLab


@pytest.mark.parametrize("seed", [None, 3])
def test_a_runs_deeplab_head_is_seeded_by_seg_seed_only_where_it_is_set(trained, monkeypatch, seed):
    cfg, rd = trained
    seen = {}

    def scored(*args, **kwargs):
        seen.update(kwargs)
        return {"miou": 0.5, "oa": 0.5, "iou": [0.5, 0.5]}

    monkeypatch.setattr(pipeline, "segmenter_scored", scored)
    monkeypatch.setattr(pipeline, "update_metrics", lambda *a, **k: None)
    monkeypatch.setattr("cism_lib.metrics.write_metrics", lambda *a, **k: None)
    pipeline.stage_segment(replace(cfg, **{"seg.seed": seed}), rd, progress=False)
    assert seen["init_seed"] == seed  # unset: the generator as the earlier stages left it
