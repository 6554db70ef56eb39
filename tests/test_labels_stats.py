"""Image-level labels from masks, the label cache, and the dataset statistics (Figure 5)."""
from __future__ import annotations

import os

import numpy as np
import pytest

import cism_lib.data.labels as labels_mod
from cism_lib.classes import ISAID, VOC, index_to_rgb
from cism_lib.data.isaid import SegFolder
from cism_lib.data.labels import cache_name, fallback_cache_dir, image_labels, mask_labels
from cism_lib.data.stats import (category_fraction, category_histogram,
                                 class_image_counts, dataset_stats, format_stats)
from tests.fixtures import expected_labels, random_image, save

COLOUR = "_instance_color_RGB"


def test_mask_labels_min_pixels_and_ignore():
    mask = np.zeros((6, 6), dtype=np.uint8)
    mask[0, :3] = 2        # 3 px of class 2
    mask[1:3, :5] = 5      # 10 px of class 5
    mask[5, :] = 255       # ignore, never a label
    mask[4, 0] = 15        # 1 px of the last class
    assert mask_labels(mask, 15).nonzero()[0].tolist() == [1, 4, 14]
    assert mask_labels(mask, 15, min_pixels=3).nonzero()[0].tolist() == [1, 4]
    assert mask_labels(mask, 15, min_pixels=4).nonzero()[0].tolist() == [4]
    assert not mask_labels(np.zeros((3, 3), np.uint8), 15).any()  # background only → empty label
    assert mask_labels(mask, 20).shape == (20,)


def test_image_labels_from_paths(tmp_path):
    m1 = np.zeros((5, 5), np.uint8)
    m1[0, 0], m1[1:3, 1:3] = 3, 20
    m2 = np.full((5, 5), 255, np.uint8)
    m2[4, 4] = 1
    p1, p2 = save(tmp_path / "a.png", m1), save(tmp_path / "b.png", m2)
    got = image_labels([p1, p2], VOC, colour=False, progress=False)
    assert got.dtype == bool and got.shape == (2, 20)
    assert got[0].nonzero()[0].tolist() == [2, 19] and got[1].nonzero()[0].tolist() == [0]
    got2 = image_labels([p1, p2], VOC, colour=False, min_pixels=2, progress=False)
    assert got2[0].nonzero()[0].tolist() == [19] and not got2[1].any()
    assert (tmp_path / cache_name(1)).is_file() and (tmp_path / cache_name(2)).is_file()


def test_labels_match_fixture_masks(isaid_devkit):
    root, masks = isaid_devkit
    for mp in (1, 50):
        ds = SegFolder(root, "train", min_pixels=mp)
        assert np.array_equal(ds.labels, expected_labels([masks[i] for i in ds.ids], ISAID, mp))


def test_cache_hit_reads_no_mask(isaid_devkit, monkeypatch):
    root, _ = isaid_devkit
    first = SegFolder(root, "train").labels
    assert (root / "train" / ".cism_labels_mp1.npz").is_file()

    def boom(*args, **kwargs):
        raise AssertionError("mask decoded despite a valid cache")

    monkeypatch.setattr(SegFolder, "read_mask", boom)
    assert np.array_equal(SegFolder(root, "train").labels, first)


def test_open_split_without_progress_derives_the_labels_with_no_bar(isaid_devkit, tmp_path, capsys, monkeypatch):
    from cism_lib import pipeline
    from cism_lib.config import load_config

    monkeypatch.delenv("CISM_HEADLESS", raising=False)  # a bar would show outside headless runs
    root, masks = isaid_devkit
    cfg = load_config(None, {"data.dataset": "isaid", "data.root": str(root), "out_dir": str(tmp_path)})
    ds = pipeline.open_split(cfg, "train", progress=False)
    assert "labels" not in capsys.readouterr().err  # the first (uncached) derivation, silently
    assert np.array_equal(ds.labels, expected_labels([masks[i] for i in ds.ids], ISAID, 1))
    (root / "train" / cache_name(1)).unlink()
    SegFolder(root, "train").load_labels(progress=True)
    assert "labels train" in capsys.readouterr().err  # with progress, the same derivation shows its bar


def test_stale_cache_rebuilt(isaid_devkit, rng):
    root, masks = isaid_devkit
    assert SegFolder(root, "train").labels.shape == (6, 15)
    new = np.zeros((32, 32), np.uint8)
    new[:4, :4] = 11
    save(root / "train" / "images" / "Z9999.png", random_image(rng, 32, 32))
    save(root / "train" / "images" / f"Z9999{COLOUR}.png", index_to_rgb(new, ISAID))
    ds = SegFolder(root, "train")
    assert ds.labels.shape == (7, 15) and ds.labels[-1].nonzero()[0].tolist() == [10]
    # edit an existing mask: same name, new content and mtime → its row is recomputed
    sid = ds.ids[0]
    edited = np.zeros((32, 32), np.uint8)
    edited[0, 0] = 7
    path = root / "train" / "images" / f"{sid}{COLOUR}.png"
    save(path, index_to_rgb(edited, ISAID))
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    again = SegFolder(root, "train").labels
    assert again[0].nonzero()[0].tolist() == [6]
    assert np.array_equal(again[1:6], expected_labels([masks[i] for i in ds.ids[1:6]], ISAID))


def test_read_only_folder_uses_fallback_cache(isaid_devkit, tmp_path, monkeypatch):
    root, masks = isaid_devkit
    monkeypatch.setenv("CISM_CACHE_DIR", str(tmp_path / "cc"))
    folder = root / "train"
    os.chmod(folder, 0o555)  # read-only by mode bits (honoured even when running as root)
    try:
        labels = SegFolder(root, "train").labels
        assert not (folder / cache_name(1)).exists()
        cached = fallback_cache_dir(folder) / cache_name(1)
        assert cached.is_file() and cached.parent.parent == tmp_path / "cc"
        monkeypatch.setattr(SegFolder, "read_mask", lambda *a: 1 / 0)
        assert np.array_equal(SegFolder(root, "train").labels, labels)
    finally:
        os.chmod(folder, 0o755)


def test_is_writable_respects_mode_bits(tmp_path):
    assert labels_mod.is_writable(tmp_path)
    os.chmod(tmp_path, 0o555)
    try:
        assert not labels_mod.is_writable(tmp_path)
    finally:
        os.chmod(tmp_path, 0o755)


# ---------------------------------------------------------------- stats

LABELS = np.array([  # 7 images, K = 3
    [0, 0, 0],
    [1, 0, 0],
    [1, 0, 0],
    [0, 1, 0],
    [1, 1, 0],
    [1, 1, 1],
    [0, 1, 1],
], dtype=bool)


def test_category_histogram():
    hist = category_histogram(LABELS, max_bin=2)
    assert hist["n_categories"].tolist() == ["0", "1", "2+"]
    assert hist["images"].tolist() == [1, 3, 3]
    assert np.allclose(hist["fraction"], [1 / 7, 3 / 7, 3 / 7])
    full = category_histogram(LABELS)
    assert full["n_categories"].tolist() == ["0", "1", "2", "3", "4", "5+"]
    assert full["images"].tolist() == [1, 3, 2, 1, 0, 0]
    assert category_fraction(LABELS, "2-3") == pytest.approx(3 / 7)
    assert category_fraction(LABELS, "1") == pytest.approx(3 / 7)
    assert category_fraction(LABELS, "3+") == pytest.approx(1 / 7)


def test_class_image_counts():
    from cism_lib.classes import ClassSet
    tiny = ClassSet("tiny", ("bg", "a", "b", "c"), ((0, 0, 0), (1, 1, 1), (2, 2, 2), (3, 3, 3)))
    df = class_image_counts(LABELS, tiny)
    assert df["class_id"].tolist() == [1, 2, 3] and df["name"].tolist() == ["a", "b", "c"]
    assert df["images"].tolist() == [4, 4, 2]
    assert np.allclose(df["fraction"], [4 / 7, 4 / 7, 2 / 7])
    with pytest.raises(ValueError, match=r"\[N, 15\]"):
        class_image_counts(LABELS, ISAID)


def test_dataset_stats_and_format(isaid_devkit):
    root, masks = isaid_devkit
    ds = SegFolder(root, "train")
    stats = dataset_stats(ds)
    assert stats["classes"]["images"].sum() == ds.labels.sum()
    assert stats["categories"]["images"].sum() == 6
    text = format_stats(stats, title="tiny", labels=ds.labels, paper="isaid", width=10)
    lines = text.splitlines()
    assert lines[0] == "tiny" and "small_vehicle" in text and "(paper 63%)" in text
    bars = [ln for ln in lines if " | " in ln]
    assert len(bars) == 6 and max(ln.count("#") for ln in bars) == 10



def test_data_stats_pairs_prints_the_exact_chance_of_a_common_class(isaid_devkit, capsys):
    from cism_lib.cli import main
    from cism_lib.data.pairs import shared_class_chance

    root, _ = isaid_devkit
    assert main(["data", "stats", str(root), "--split", "train", "--pairs"]) == 0
    out = capsys.readouterr().out
    assert "| class | images | P(common), any | P(common), class |" in out
    labels = SegFolder(root, "train").labels
    held = np.flatnonzero(labels.sum(axis=0))[0]  # a class some tile holds
    row = next(ln for ln in out.splitlines() if ln.startswith(f"| {ISAID.names[held + 1]} |"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert float(cells[2]) == pytest.approx(shared_class_chance(labels, "any")[held], abs=0.005)
    assert float(cells[3]) == pytest.approx(shared_class_chance(labels, "class")[held], abs=0.005)
