"""Shared fixtures: tiny datasets in each official layout, written into tmp_path."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tests.fixtures import write_isaid_devkit, write_isaid_mmseg, write_voc


@pytest.fixture(autouse=True)
def _private_cache_dir(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """Label caches of read-only folders go to a temp dir, never to ~/.cache."""
    monkeypatch.setenv("CISM_CACHE_DIR", str(tmp_path_factory.mktemp("cism_cache")))


@pytest.fixture(autouse=True)
def _restore_torch_threads():
    """Runs set torch's thread count from their config; give every test the session's count."""
    import torch

    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def rng() -> np.random.Generator:
    """A fixed-seed generator."""
    return np.random.default_rng(0)


@pytest.fixture
def isaid_devkit(tmp_path: Path, rng: np.random.Generator) -> tuple[Path, dict[str, np.ndarray]]:
    """iSAID devkit patch folder with 6 train PNG tiles of 32x32; returns (root, {id: mask})."""
    return tmp_path / "isaid", write_isaid_devkit(tmp_path / "isaid", "train", 6, 32, rng)


@pytest.fixture
def isaid_devkit_jpg(tmp_path: Path, rng: np.random.Generator) -> tuple[Path, dict[str, np.ndarray]]:
    """Like isaid_devkit but with .jpg images (as in the real isaid512 tiles)."""
    return tmp_path / "isaid", write_isaid_devkit(tmp_path / "isaid", "val", 4, 32, rng, ext=".jpg")


@pytest.fixture
def isaid_mmseg(tmp_path: Path, rng: np.random.Generator) -> tuple[Path, dict[str, np.ndarray]]:
    """mmsegmentation layout with 'P'-mode index masks named <id>_instance_color_RGB.png."""
    return tmp_path / "mmseg", write_isaid_mmseg(tmp_path / "mmseg", "train", 5, 32, rng)


@pytest.fixture
def voc_aug(tmp_path: Path, rng: np.random.Generator) -> tuple[Path, dict[str, np.ndarray]]:
    """VOC 2012 with SegmentationClassAug index masks; train_aug (4 ids) and val (2 ids)."""
    splits = {"train_aug": ["2007_000032", "2007_000039", "2008_000002", "2011_003276"],
              "val": ["2007_000033", "2007_000042"]}
    return tmp_path / "VOC2012", write_voc(tmp_path / "VOC2012", splits, 24, rng)
