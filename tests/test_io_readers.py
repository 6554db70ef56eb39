"""Image/mask IO, the iSAID and VOC readers, bad-input errors, skip_bad and split_isaid."""
from __future__ import annotations

import os
import re
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cism_lib.classes import ISAID, VOC, index_to_rgb, rgb_to_index
from cism_lib.data.io import read_image, read_mask, write_png_atomic
from cism_lib.data.isaid import SegFolder, patch_starts, split_isaid
from cism_lib.data.voc import VOCFolder
from cism_lib.errors import DataError
from tests.fixtures import (expected_labels, random_image, save, write_isaid_full,
                            write_isaid_mmseg, write_voc)

COLOUR = "_instance_color_RGB"


# ---------------------------------------------------------------- io

@pytest.mark.parametrize("classes", [ISAID, VOC])
def test_palette_round_trip(classes):
    index = np.arange(256, dtype=np.uint8).reshape(16, 16)
    index[index >= classes.num_classes] = 255
    assert np.array_equal(rgb_to_index(index_to_rgb(index, classes), classes,
                                       ignore_rgb=((255, 255, 255),)), index)


def test_colour_mask_file_round_trip(tmp_path):
    mask = np.arange(16, dtype=np.uint8).repeat(4).reshape(8, 8)
    mask[0, 0] = 255
    path = write_png_atomic(tmp_path / "m.png", index_to_rgb(mask, ISAID))
    assert np.array_equal(read_mask(path, ISAID, colour=True), mask)
    assert np.array_equal(read_mask(path, ISAID, colour=None), mask)


def test_write_png_atomic_palette_keeps_indices(tmp_path):
    mask = np.array([[0, 1, 20], [255, 7, 0]], dtype=np.uint8)
    path = write_png_atomic(tmp_path / "sub" / "p.png", mask, palette=VOC)
    img = Image.open(path)
    assert img.mode == "P"
    assert np.array_equal(np.asarray(img), mask)
    assert img.getpalette()[3:6] == list(VOC.palette[1])
    assert np.array_equal(read_mask(path, VOC, colour=False), mask)
    assert np.array_equal(read_mask(path, VOC, colour=True), mask)  # via the VOC palette colours
    assert os.listdir(path.parent) == ["p.png"]  # no temp file left behind


def test_read_image_converts_modes(tmp_path):
    grey = np.array([[0, 100], [200, 255]], dtype=np.uint8)
    Image.fromarray(grey).save(tmp_path / "l.png")
    assert np.array_equal(read_image(tmp_path / "l.png"), np.stack([grey] * 3, axis=-1))
    rgba = np.zeros((2, 2, 4), dtype=np.uint8)
    rgba[..., :3], rgba[..., 3] = 7, 0
    Image.fromarray(rgba).save(tmp_path / "a.png")
    out = read_image(tmp_path / "a.png")
    assert out.shape == (2, 2, 3) and out.dtype == np.uint8 and (out == 7).all()
    write_png_atomic(tmp_path / "p.png", np.array([[1, 14]], dtype=np.uint8), palette=ISAID)
    assert read_image(tmp_path / "p.png").tolist() == [[[0, 0, 63], [0, 127, 255]]]


@pytest.mark.parametrize("suffix", [".png", ".jpg"])
def test_truncated_image_raises(tmp_path, suffix):
    path = save(tmp_path / f"cut{suffix}", random_image(np.random.default_rng(0), 64, 64))
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(DataError, match=rf"^{re.escape(str(path))}: cannot read image"):
        read_image(path)


def test_unreadable_and_missing_image(tmp_path):
    (tmp_path / "junk.png").write_bytes(b"not an image at all")
    with pytest.raises(DataError, match="junk.png: cannot read image"):
        read_image(tmp_path / "junk.png")
    with pytest.raises(DataError, match="nope.jpg: cannot read image: file not found"):
        read_image(tmp_path / "nope.jpg")


def test_index_mask_value_out_of_range(tmp_path):
    mask = np.zeros((4, 4), dtype=np.uint8)
    mask[1, 1] = 17
    save(tmp_path / "m.png", mask)
    with pytest.raises(DataError, match=r"m.png: mask value 17 is not a isaid class id"):
        read_mask(tmp_path / "m.png", ISAID, colour=False)
    mask[1, 1] = 255
    save(tmp_path / "m.png", mask)
    assert read_mask(tmp_path / "m.png", ISAID, colour=False)[1, 1] == 255


# ---------------------------------------------------------------- SegFolder

def _check_folder(ds, masks, classes=ISAID):
    """ids sorted, labels and masks equal to what the fixture wrote."""
    assert ds.ids == sorted(masks) and len(ds) == len(masks)
    assert np.array_equal(ds.labels, expected_labels([masks[i] for i in ds.ids], classes))
    for i, sid in enumerate(ds.ids):
        image, mask = ds.read(i)
        assert image.dtype == np.uint8 and image.shape == mask.shape + (3,)
        assert np.array_equal(mask, masks[sid])


def test_segfolder_devkit_png(isaid_devkit):
    root, masks = isaid_devkit
    ds = SegFolder(root, "train")
    assert ds.layout == "devkit" and ds.classes is ISAID
    _check_folder(ds, masks)
    assert ds.image_path(0) == root / "train" / "images" / f"{ds.ids[0]}.png"
    assert ds.labels.dtype == bool and ds.labels.shape == (6, 15)


def test_segfolder_devkit_jpg(isaid_devkit_jpg):
    root, masks = isaid_devkit_jpg
    ds = SegFolder(root, "val", layout="devkit")
    _check_folder(ds, masks)
    assert ds.image_path(1).suffix == ".jpg"


def test_segfolder_mmseg_index_masks(isaid_mmseg):
    root, masks = isaid_mmseg
    ds = SegFolder(root, "train")
    assert ds.layout == "mmseg" and Image.open(ds.mask_path(0)).mode == "P"
    _check_folder(ds, masks)


@pytest.mark.parametrize("colour", [True, False])
def test_segfolder_mmseg_plain_names(tmp_path, rng, colour):
    masks = write_isaid_mmseg(tmp_path, "val", 3, 16, rng, colour=colour, suffix="")
    _check_folder(SegFolder(tmp_path, "val", layout="mmseg"), masks)


def test_segfolder_max_items_and_manifest(isaid_devkit):
    root, masks = isaid_devkit
    (root / "train" / "manifest.csv").write_text("id,class_ids\n" + "".join(f"{i},1\n" for i in masks))
    ds = SegFolder(root, "train", max_items=2)
    assert ds.ids == sorted(masks)[:2] and ds.labels.shape == (2, 15)
    assert len(ds.manifest) == 6


def test_getitem_without_and_with_transform(isaid_devkit):
    root, masks = isaid_devkit
    ds = SegFolder(root, "train")
    item = ds[2]
    assert isinstance(item["image"], np.ndarray) and item["id"] == ds.ids[2]
    assert np.array_equal(item["label"], ds.labels[2].astype(np.float32))

    def transform(image, mask, rng):
        import torch
        return torch.tensor([float(rng.integers(1 << 30))]), torch.from_numpy(mask.astype(np.int64))

    ds.transform = transform
    first, again = ds[1], ds[1]
    assert first["image"].item() == again["image"].item()  # same seed, epoch, index
    assert first["label"].dtype.is_floating_point and first["label"].shape == (15,)
    assert first["image"].item() != ds[2]["image"].item()
    ds.set_epoch(1)
    assert ds[1]["image"].item() != first["image"].item()
    ds.set_epoch(0)
    ds.seed = 5
    assert ds[1]["image"].item() != first["image"].item()


# ---------------------------------------------------------------- bad input

def test_missing_root_and_split(tmp_path, isaid_devkit):
    with pytest.raises(DataError, match="nowhere: dataset root not found"):
        SegFolder(tmp_path / "nowhere")
    root, _ = isaid_devkit
    with pytest.raises(DataError, match=r"split 'val' not found.*val/images"):
        SegFolder(root, "val")
    with pytest.raises(DataError, match=r"img_dir/train: split folder not found"):
        SegFolder(root, "train", layout="mmseg")


def test_empty_folder(tmp_path):
    (tmp_path / "train" / "images").mkdir(parents=True)
    with pytest.raises(DataError, match=r"train/images: no images found"):
        SegFolder(tmp_path)


def test_image_without_mask_names_files(isaid_devkit):
    root, masks = isaid_devkit
    ids = sorted(masks)
    for sid in ids[1:3]:
        (root / "train" / "images" / f"{sid}{COLOUR}.png").unlink()
    with pytest.raises(DataError) as err:
        SegFolder(root, "train")
    msg = str(err.value)
    assert msg.startswith(str(root / "train" / "images" / f"{ids[1]}.png"))
    assert "2 image(s) without mask" in msg and f"{ids[2]}.png" in msg and "\n" not in msg


def _paint_bad_colour(root: Path, sid: str) -> Path:
    """Give one mask pixel a colour that is not in the iSAID palette."""
    path = root / "train" / "images" / f"{sid}{COLOUR}.png"
    rgb = np.asarray(Image.open(path)).copy()
    rgb[3, 4] = (10, 20, 30)
    Image.fromarray(rgb).save(path)
    return path


def test_mask_colour_not_in_palette(isaid_devkit):
    root, masks = isaid_devkit
    sid = sorted(masks)[3]
    path = _paint_bad_colour(root, sid)
    ds = SegFolder(root, "train")
    with pytest.raises(DataError, match=rf"^{re.escape(str(path))}: mask colour \(10, 20, 30\)"):
        _ = ds.labels
    with pytest.raises(DataError, match=re.escape(str(path))):
        ds.read(3)


def test_truncated_image_in_folder(isaid_devkit):
    root, masks = isaid_devkit
    path = root / "train" / "images" / f"{sorted(masks)[0]}.png"
    path.write_bytes(path.read_bytes()[:200])
    with pytest.raises(DataError, match=rf"^{re.escape(str(path))}: cannot read image"):
        SegFolder(root, "train").read(0)


def test_size_mismatch(isaid_devkit):
    root, masks = isaid_devkit
    sid = sorted(masks)[4]
    save(root / "train" / "images" / f"{sid}.png", random_image(np.random.default_rng(1), 32, 30))
    with pytest.raises(DataError, match=rf"{sid}{COLOUR}.png: mask size 32x32 differs from image "
                                        rf"{sid}.png size 30x32"):
        SegFolder(root, "train").read(4)


def test_skip_bad_lists_what_it_skipped(isaid_devkit):
    root, masks = isaid_devkit
    ids = sorted(masks)
    (root / "train" / "images" / f"{ids[0]}{COLOUR}.png").unlink()            # no mask
    _paint_bad_colour(root, ids[1])                                             # bad colour
    img = root / "train" / "images" / f"{ids[2]}.png"
    img.write_bytes(img.read_bytes()[:200])                                     # truncated
    save(root / "train" / "images" / f"{ids[3]}.png", random_image(np.random.default_rng(1), 8, 8))
    with pytest.warns(UserWarning, match="skipped 4 bad sample"):
        ds = SegFolder(root, "train", skip_bad=True)
    assert ds.ids == ids[4:]
    reasons = dict(ds.skipped)
    assert sorted(reasons) == ids[:4]
    assert "no mask" in reasons[ids[0]] and "(10, 20, 30)" in reasons[ids[1]]
    assert "cannot read image" in reasons[ids[2]] and "differs from image" in reasons[ids[3]]
    assert np.array_equal(ds.labels, expected_labels([masks[i] for i in ids[4:]], ISAID))


# ---------------------------------------------------------------- VOC

def test_voc_segmentation_class_aug(voc_aug):
    root, masks = voc_aug
    ds = VOCFolder(root.parent, "train_aug")  # finds <root>/VOC2012 itself
    assert ds.classes is VOC and ds.root == root
    _check_folder(ds, {k: masks[k] for k in ds.ids}, VOC)
    assert (ds.read(0)[1][0] == 255).all()  # boundary kept as ignore
    assert ds.image_path(0) == root / "JPEGImages" / "2007_000032.jpg"
    assert VOCFolder(root, "val").ids == ["2007_000033", "2007_000042"]


def test_voc_palette_segmentation_class(tmp_path, rng):
    masks = write_voc(tmp_path, {"train": ["b", "a", "c"]}, 20, rng, mask_dir="SegmentationClass")
    ds = VOCFolder(tmp_path, "train")
    assert Image.open(ds.mask_path(0)).mode == "P"
    _check_folder(ds, masks, VOC)


def test_voc_train_aug_list_at_root(voc_aug):
    root, masks = voc_aug
    lst = root / "ImageSets" / "Segmentation" / "train_aug.txt"
    lines = [f"/JPEGImages/{s}.jpg /SegmentationClassAug/{s}.png" for s in lst.read_text().split()]
    (root / "train_aug.txt").write_text("\n".join(lines) + "\n")
    lst.unlink()
    ds = VOCFolder(root, "train_aug")
    assert ds.ids == ["2007_000032", "2007_000039", "2008_000002", "2011_003276"]


def test_voc_bad_inputs(voc_aug):
    root, masks = voc_aug
    with pytest.raises(DataError, match=r"ImageSets/Segmentation/test.txt: split list not found"):
        VOCFolder(root, "test")
    bad = masks["2007_000033"].copy()
    bad[5, 5] = 21
    save(root / "SegmentationClassAug" / "2007_000033.png", bad)
    with pytest.raises(DataError, match=r"2007_000033.png: mask value 21 is not a voc class id"):
        _ = VOCFolder(root, "val").labels
    (root / "JPEGImages" / "2007_000042.jpg").unlink()
    with pytest.raises(DataError, match=r"2007_000042.jpg: image listed in val.txt not found"):
        VOCFolder(root, "val")
    with pytest.warns(UserWarning, match="skipped 2 bad"), \
            pytest.raises(DataError, match=r"VOC2012: no usable samples \(2 bad\)"):
        VOCFolder(root, "val", skip_bad=True)


def test_voc_skip_bad(voc_aug):
    root, masks = voc_aug
    bad = masks["2008_000002"].copy()
    bad[5, 5] = 40
    save(root / "SegmentationClassAug" / "2008_000002.png", bad)
    (root / "SegmentationClassAug" / "2007_000039.png").unlink()
    with pytest.warns(UserWarning, match="skipped 2 bad sample"):
        ds = VOCFolder(root, "train_aug", skip_bad=True)
    assert ds.ids == ["2007_000032", "2011_003276"]
    reasons = dict(ds.skipped)
    assert "mask value 40" in reasons["2008_000002"] and "no mask 2007_000039.png" in reasons["2007_000039"]


# ---------------------------------------------------------------- split_isaid

def test_patch_starts():
    assert patch_starts(700, 256, 64) == [0, 192, 384, 576]
    assert patch_starts(600, 256, 64) == [0, 192, 384]
    assert patch_starts(256, 256, 64) == [0]
    assert patch_starts(100, 256, 64) == [0]


def test_split_isaid(tmp_path, rng):
    image, mask = write_isaid_full(tmp_path / "src", "train", "P0007", 600, 700, rng)
    ids = split_isaid(tmp_path / "src", tmp_path / "dst", "train", patch=256, overlap=64,
                      progress=False)
    assert len(ids) == 3 * 4
    assert "P0007_192_448_384_640" in ids and "P0007_384_600_576_700" in ids
    ds = SegFolder(tmp_path / "dst", "train")
    assert sorted(ids) == ds.ids
    inner = ds.ids.index("P0007_192_448_384_640")
    img, m = ds.read(inner)
    assert np.array_equal(img, image[192:448, 384:640]) and np.array_equal(m, mask[192:448, 384:640])
    corner = ds.ids.index("P0007_384_600_576_700")
    img, m = ds.read(corner)
    assert img.shape == (256, 256, 3)
    assert np.array_equal(img[:216, :124], image[384:, 576:]) and not img[216:].any()
    assert not img[:, 124:].any() and (m[196:216, 94:124] == 14).all() and not m[216:].any()
    assert ds.labels[corner].nonzero()[0].tolist() == [13]  # plane only


def test_split_isaid_missing_mask(tmp_path, rng):
    write_isaid_full(tmp_path / "src", "val", "P0001", 50, 60, rng)
    (tmp_path / "src" / "val" / "Semantic_masks" / "images" / f"P0001{COLOUR}.png").unlink()
    with pytest.raises(DataError, match=r"P0001.png: no semantic mask P0001_instance_color_RGB.png"):
        split_isaid(tmp_path / "src", tmp_path / "dst", "val", patch=32, overlap=8, progress=False)


# ---------------------------------------------------------------- real tiles

README_COUNTS = {  # /work/shared/data/isaid512/README.md: train images, val images per class
    "ship": (571, 245), "storage_tank": (156, 52), "baseball_diamond": (45, 21),
    "tennis_court": (142, 55), "basketball_court": (49, 22), "ground_track_field": (120, 47),
    "bridge": (81, 29), "large_vehicle": (866, 372), "small_vehicle": (1437, 582),
    "helicopter": (31, 7), "swimming_pool": (127, 63), "roundabout": (46, 15),
    "soccer_ball_field": (142, 58), "plane": (503, 201), "harbor": (522, 216),
}


@pytest.mark.realdata
@pytest.mark.skipif(not os.environ.get("CISM_ISAID_ROOT"), reason="set CISM_ISAID_ROOT to the isaid512 tiles")
def test_real_isaid512_class_counts():
    from cism_lib.data.stats import category_histogram, class_image_counts
    root = Path(os.environ["CISM_ISAID_ROOT"])
    readme_hist = {"train": [0, 664, 888, 619, 107, 22], "val": [1, 236, 372, 248, 54, 9]}
    start = time.time()
    for col, (split, n) in enumerate([("train", 2300), ("val", 920)]):
        ds = SegFolder(root, split)
        assert len(ds) == n and ds.layout == "devkit" and ds.image_path(0).suffix == ".jpg"
        counts = class_image_counts(ds.labels, ISAID).set_index("name")["images"]
        assert {k: int(v) for k, v in counts.items()} == {k: v[col] for k, v in README_COUNTS.items()}
        assert category_histogram(ds.labels)["images"].tolist() == readme_hist[split]
        image, mask = ds.read(0)
        assert image.shape == (512, 512, 3) and mask.shape == (512, 512)
    print(f"real isaid512 labels: {time.time() - start:.1f} s")
