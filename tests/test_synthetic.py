"""SynthAerial: determinism, the devkit layout, label consistency and the category statistics."""
from __future__ import annotations

import csv
import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from scipy import ndimage

from cism_lib.classes import ISAID, rgb_to_index
from cism_lib.data import synthetic
from cism_lib.data.synthetic import (default_root, generate, present_classes, render_item,
                                     render_scene, sample_classes, writer)
from cism_lib.errors import DataError


@pytest.fixture(scope="module")
def sample150() -> list[list[int]]:
    """Present classes of 150 small training scenes (seed 0)."""
    return [present_classes(render_item(0, "train", i, 64)[1]) for i in range(150)]


def test_render_shapes_and_dtypes():
    image, mask = render_scene(np.random.default_rng(3), 96)
    assert image.shape == (96, 96, 3) and image.dtype == np.uint8
    assert mask.shape == (96, 96) and mask.dtype == np.uint8
    assert mask.max() <= 15


def test_same_seed_identical_bytes_different_seed_differs():
    a_img, a_mask = render_scene(np.random.default_rng([7, 0, 5]), 96)
    b_img, b_mask = render_scene(np.random.default_rng([7, 0, 5]), 96)
    assert a_img.tobytes() == b_img.tobytes() and a_mask.tobytes() == b_mask.tobytes()
    c_img, _ = render_scene(np.random.default_rng([8, 0, 5]), 96)
    assert a_img.tobytes() != c_img.tobytes()
    # An item depends on (seed, split, index) only, not on what was rendered before it.
    assert render_item(7, "val", 2, 64)[0].tobytes() == render_item(7, "val", 2, 64)[0].tobytes()
    assert render_item(7, "val", 2, 64)[0].tobytes() != render_item(7, "train", 2, 64)[0].tobytes()


def test_drawn_classes_survive_in_mask():
    # Every class the scene sampler picks is still visible in the final mask (no full occlusion).
    for i in range(40):
        _, wanted = sample_classes(np.random.default_rng([0, 0, i]))
        _, mask = render_item(0, "train", i, 96)
        assert set(wanted) == set(present_classes(mask)), i


def test_category_count_distribution(sample150):
    counts = Counter(len(c) for c in sample150)
    n = len(sample150)
    assert counts[0] == 0
    assert counts[1] / n < 0.35
    assert 0.50 <= (counts[2] + counts[3]) / n <= 0.75
    assert sum(v for k, v in counts.items() if k >= 4) / n >= 0.04


def test_every_class_appears(sample150):
    per_class = Counter(c for classes in sample150 for c in classes)
    assert set(per_class) == set(range(1, 16))
    assert min(per_class.values()) >= 3  # at least 2% of 150 images


def test_objects_scale_with_image_size():
    # Small vehicles are at least ~6x12 px at 256: their area is >= ~50 px per vehicle.
    for i in range(60):
        _, wanted = sample_classes(np.random.default_rng([0, 0, i]))
        if synthetic.SV in wanted:
            _, mask = render_item(0, "train", i, 256)
            break
    labels, n = ndimage.label(mask == synthetic.SV)
    sizes = ndimage.sum(np.ones_like(labels), labels, range(1, n + 1))
    assert n >= 1 and np.median(sizes) >= 50


def test_generate_layout_manifest_and_palette(tmp_path):
    out = generate(tmp_path / "synth", n_train=4, n_val=2, size=64, seed=1, progress=False)
    assert out == tmp_path / "synth"
    meta = json.loads((out / "synth.json").read_text())
    assert meta["seed"] == 1 and meta["size"] == 64 and meta["n_train"] == 4 and meta["n_val"] == 2
    assert meta["counts"]["train"]["images"] == 4
    for split, n in (("train", 4), ("val", 2)):
        with open(out / split / "manifest.csv", newline="") as f:
            rows = list(csv.DictReader(f))
        assert [r["id"] for r in rows] == [f"synth_{i:06d}" for i in range(n)]
        for row in rows:
            image = np.asarray(Image.open(out / split / "images" / f"{row['id']}.png"))
            colour = np.asarray(Image.open(out / split / "images" / f"{row['id']}_instance_color_RGB.png"))
            assert image.shape == (64, 64, 3) and colour.shape == (64, 64, 3)
            mask = rgb_to_index(colour, ISAID)  # raises on any non-palette colour
            assert [int(c) for c in row["class_ids"].split()] == present_classes(mask)
            index = int(row["id"][-6:])
            assert np.array_equal(mask, render_item(1, split, index, 64)[1])
    assert not list(out.rglob("*.tmp")) and not (out / ".synth-partial.json").exists()


def test_generate_parallel_matches_serial(tmp_path):
    a = generate(tmp_path / "a", 3, 1, size=48, seed=2, progress=False)
    b = generate(tmp_path / "b", 3, 1, size=48, seed=2, workers=2, progress=False)
    files = sorted(p.relative_to(a) for p in a.rglob("*.png"))
    assert len(files) == 8
    for rel in files:
        assert (a / rel).read_bytes() == (b / rel).read_bytes()


def test_regeneration_skipped_and_mismatch_raises(tmp_path, monkeypatch):
    out = generate(tmp_path / "s", 2, 1, size=48, seed=0, progress=False)
    calls = []
    monkeypatch.setattr(writer, "_write_item", lambda task: calls.append(task))
    assert generate(out, 2, 1, size=48, seed=0, progress=False) == out
    assert calls == []
    with pytest.raises(DataError, match="different parameters"):
        generate(out, 3, 1, size=48, seed=0, progress=False)
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("x")
    with pytest.raises(DataError, match="not a SynthAerial"):
        generate(foreign, 1, 1, size=48, progress=False)


def test_default_root_does_not_depend_on_the_current_folder(monkeypatch, tmp_path):
    monkeypatch.delenv("CISM_DATA_DIR", raising=False)
    checkout = Path(synthetic.__file__).resolve().parents[3]  # <checkout>/cism_lib/data/synthetic/__init__.py
    here = default_root(256, 0, 600, 200)
    monkeypatch.chdir(tmp_path)
    assert default_root(256, 0, 600, 200) == here == checkout / "data" / "synth-256-s0-600-200"
    monkeypatch.setenv("CISM_DATA_DIR", "/tmp/elsewhere")
    assert default_root(128, 3, 10, 5) == Path("/tmp/elsewhere/synth-128-s3-10-5")
    monkeypatch.setenv("CISM_DATA_DIR", "rel")  # a relative override is resolved once, here
    assert default_root(1, 0, 1, 1) == tmp_path / "rel" / "synth-1-s0-1-1"


def test_interrupted_generation_resumes(tmp_path, monkeypatch):
    real = writer._write_item

    def crash_after_first(task):
        if task[2] > 0:
            raise KeyboardInterrupt
        return real(task)

    monkeypatch.setattr(writer, "_write_item", crash_after_first)
    with pytest.raises(KeyboardInterrupt):
        generate(tmp_path / "p", 3, 1, size=48, seed=0, progress=False)
    assert not (tmp_path / "p" / "synth.json").exists()
    with pytest.raises(DataError, match="different parameters"):
        generate(tmp_path / "p", 4, 1, size=48, seed=0, progress=False)
    monkeypatch.setattr(writer, "_write_item", real)
    out = generate(tmp_path / "p", 3, 1, size=48, seed=0, progress=False)
    assert json.loads((out / "synth.json").read_text())["counts"]["train"]["images"] == 3
    assert not (out / ".synth-partial.json").exists()
