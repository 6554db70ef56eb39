"""Weak supervision: no training path reads a pixel mask (pairs, MCSG, transforms, classifier
training, CAMs, CRF pseudo-masks, DeepLab on pseudo-masks). Masks define the image-level labels
once (cached) and score results; here every way of reading one raises once the labels exist."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from cism_lib import pipeline
from cism_lib.config import load_config
from cism_lib.data import io as data_io
from cism_lib.data import isaid as data_isaid
from cism_lib.data.mcsg import MCSG
from cism_lib.data.pairs import PairDataset, SingleDataset
from cism_lib.data.transforms import TrainTransform
from tests.fixtures import write_isaid_devkit


class MaskRead(AssertionError):
    """Raised by every mask reader while the training paths run."""


def _forbid(*_: object, **__: object) -> None:
    raise MaskRead("a training path read a pixel mask")


@pytest.fixture
def no_masks(tmp_path: Path, rng: np.random.Generator, monkeypatch: pytest.MonkeyPatch):
    """A tiny iSAID folder whose labels are derived (and cached), then every mask reader raises."""
    write_isaid_devkit(tmp_path / "isaid", "train", 12, 48, rng)
    write_isaid_devkit(tmp_path / "isaid", "val", 4, 48, rng)
    cfg = load_config(None, {
        "device": "cpu", "threads": 1, "out_dir": str(tmp_path / "runs"), "data.dataset": "isaid",
        "data.root": str(tmp_path / "isaid"), "data.crop_size": 32, "data.mcsg": True,
        "data.mcsg_prob": 1.0, "data.mcsg_max_categories": 15, "model.backbone": "resnet18",
        "model.weights": None, "model.proto_dim": 8, "train.batch_size": 2, "train.epochs": 1,
        "train.max_steps": 2, "cam.scales": [1.0], "cam.batch_size": 4, "crf.iterations": 1,
        "crf.workers": 1, "seg.backbone": "resnet18", "seg.weights": None, "seg.epochs": 1,
        "seg.batch_size": 2, "seg.crop_size": 32})
    for split in ("train", "val"):
        assert pipeline.open_split(cfg, split).labels.any()  # derived from the masks once
    monkeypatch.setattr(data_io, "read_mask", _forbid)
    monkeypatch.setattr(data_isaid, "read_mask", _forbid)
    monkeypatch.setattr(data_isaid.SegDataset, "read_mask", _forbid)
    monkeypatch.setattr(data_isaid.SegDataset, "read", _forbid)
    return cfg


def test_the_guard_itself_fires(no_masks) -> None:
    ds = pipeline.open_split(no_masks, "train")
    with pytest.raises(MaskRead):
        ds.read(0)
    with pytest.raises(MaskRead):
        ds[0]


def test_pairs_mosaics_and_single_images_read_no_mask(no_masks) -> None:
    pairs = pipeline.pair_dataset(no_masks, progress=False)
    assert pairs.mcsg is not None
    items = [pairs[i] for i in range(len(pairs))]
    assert any(item["id_q"].startswith("mosaic:") for item in items)
    assert not any(k.startswith("mask") for k in items[0])
    base = pairs.base
    single = SingleDataset(base, TrainTransform(32), seed=0)
    assert single[0]["image_q"].shape == (3, 32, 32)


def test_class_first_pairs_read_no_mask(no_masks) -> None:
    from cism_lib.config import replace

    pairs = pipeline.pair_dataset(replace(no_masks, **{"data.pair_sampling": "class"}), progress=False)
    assert pairs.sampling == "class"
    items = [pairs[i] for i in range(len(pairs))]
    assert all((item["label_co"] > 0).any() for item in items)


def test_mosaic_label_is_the_union_of_its_tiles_labels(no_masks) -> None:
    base = pipeline.open_split(no_masks, "train")
    mcsg = MCSG(base.labels, max_categories=15, prob=1.0)
    rng = np.random.default_rng(3)
    for q in mcsg.low[:5]:
        image, label, tiles = mcsg.maybe_mosaic(base, int(q), rng)
        assert tiles[0] == q and len(tiles) == 4
        assert np.array_equal(label, base.labels[tiles].any(axis=0))
        assert image.shape == (48, 48, 3)


def test_training_cams_pseudo_masks_and_deeplab_read_no_mask(no_masks, tmp_path: Path) -> None:
    from cism_lib.cam import make_cams
    from cism_lib.crf import make_pseudo_masks
    from cism_lib.engine import train_classifier
    from cism_lib.segment import PseudoMaskDataset, build_segmenter, train_segmenter

    pairs = pipeline.pair_dataset(no_masks, progress=False)
    model, _ = train_classifier(no_masks, pairs, 15, tmp_path / "train", progress=False)
    train = pipeline.open_split(no_masks, "train")
    make_cams(model, train, tmp_path / "cams", no_masks.cam, "cpu", progress=False)
    assert make_pseudo_masks(tmp_path / "cams", train, tmp_path / "pseudo", no_masks.crf,
                             bg_threshold=0.3, workers=1, progress=False)
    pseudo = PseudoMaskDataset(train, tmp_path / "pseudo", TrainTransform(32))
    torch.manual_seed(0)
    _, history = train_segmenter(build_segmenter(no_masks.seg, 16), pseudo, no_masks.seg, "cpu",
                              tmp_path / "seg", progress=False)
    assert np.isfinite(history[-1]["loss"])


def test_pair_dataset_needs_read_image_not_read() -> None:
    """A dataset offering only read() (image and mask together) cannot feed training."""

    class OnlyRead:
        ids = ["a", "b"]
        labels = np.array([[True, False], [True, True]])

        def read(self, i: int):
            raise MaskRead("read() returns the mask too")

    pairs = PairDataset(OnlyRead(), TrainTransform(8))
    with pytest.raises(AttributeError, match="read_image"):
        pairs[0]
