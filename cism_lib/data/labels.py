"""Image-level labels derived from masks, cached beside the data with a per-file fingerprint."""
from __future__ import annotations

import hashlib
import os
import stat
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from cism_lib.classes import ClassSet
from cism_lib.data.io import read_mask
from cism_lib.errors import DataError
from cism_lib.runtime import atomic_path, progress_bar

CACHE_VERSION = 1


def mask_labels(mask: np.ndarray, num_foreground: int, min_pixels: int = 1) -> np.ndarray:
    """Multi-hot bool [K]: class k in 1..K present with >= min_pixels pixels (0 and 255 excluded)."""
    counts = np.bincount(mask.ravel(), minlength=256)
    return counts[1: num_foreground + 1] >= max(int(min_pixels), 1)


def cache_name(min_pixels: int) -> str:
    """File name of the label cache for a min_pixels setting."""
    return f".cism_labels_mp{int(min_pixels)}.npz"


def fallback_cache_dir(folder: str | Path) -> Path:
    """Cache folder for a read-only data folder: $CISM_CACHE_DIR or ~/.cache/cism_lib, + sha1."""
    base = os.environ.get("CISM_CACHE_DIR") or Path.home() / ".cache" / "cism_lib"
    digest = hashlib.sha1(str(Path(folder).resolve()).encode()).hexdigest()
    return Path(base) / digest


def is_writable(folder: Path) -> bool:
    """Writable by us and not marked read-only (root bypasses os.access, so check mode bits too)."""
    try:
        mode = os.stat(folder).st_mode
    except OSError:
        return False
    return os.access(folder, os.W_OK) and bool(mode & (stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH))


def file_keys(paths: Sequence[Path], folder: Path) -> list[str]:
    """One key per mask file: relative path, size and mtime (ns), so edits invalidate it."""
    keys = []
    for p in paths:
        try:
            st = os.stat(p)
        except OSError as exc:
            raise DataError(f"{p}: cannot read mask: {exc.strerror or exc}") from None
        keys.append(f"{os.path.relpath(p, folder)}|{st.st_size}|{st.st_mtime_ns}")
    return keys


def fingerprint(keys: Sequence[str]) -> str:
    """sha1 of the file list (ids + sizes + mtimes)."""
    return hashlib.sha1("\n".join(keys).encode()).hexdigest()


def _load_cache(path: Path, classes: ClassSet) -> dict[str, np.ndarray] | None:
    """Cached {key: label row}, or None when absent, unreadable or made for other classes."""
    try:
        with np.load(path, allow_pickle=False) as z:
            if int(z["version"]) != CACHE_VERSION or str(z["classes"]) != classes.name:
                return None
            keys, labels = z["keys"].tolist(), z["labels"].astype(bool)
    except (OSError, ValueError, KeyError):
        return None
    if labels.shape != (len(keys), classes.num_foreground):
        return None
    return dict(zip(keys, labels))


def _save_cache(path: Path, table: dict[str, np.ndarray], fp: str, classes: ClassSet) -> bool:
    """Write the cache atomically; False when the folder is not writable."""
    keys = sorted(table)
    labels = np.stack([table[k] for k in keys]) if keys else np.zeros((0, classes.num_foreground), bool)
    try:
        with atomic_path(path) as tmp:
            np.savez(tmp, version=CACHE_VERSION, classes=classes.name, fingerprint=fp,
                     keys=np.asarray(keys, dtype=str), labels=labels)
    except OSError:
        return False
    return True


def _prune(table: dict[str, np.ndarray], keys: Sequence[str], folder: Path) -> dict[str, np.ndarray]:
    """Keep the current keys and other still-existing files' rows (e.g. another subset's)."""
    current = set(keys)
    rels = {k.rsplit("|", 2)[0] for k in keys}
    return {k: v for k, v in table.items()
            if k in current or (k.rsplit("|", 2)[0] not in rels
                                and (folder / k.rsplit("|", 2)[0]).exists())}


def _resolve_source(source: Any, classes: ClassSet | None, colour: bool | None,
                    cache_folder: str | Path | None
                    ) -> tuple[list[Path], ClassSet, Callable[[int], np.ndarray], Path]:
    """Mask paths, classes, a mask reader and the cache folder for a dataset or a path list."""
    if hasattr(source, "mask_paths"):
        paths = [Path(p) for p in source.mask_paths]
        folder = Path(cache_folder or source.cache_folder)
        return paths, source.classes, source.read_mask, folder
    if classes is None:
        raise ValueError("image_labels: pass classes= when giving mask paths")
    paths = [Path(p) for p in source]
    if cache_folder is None:
        cache_folder = os.path.commonpath([str(p.resolve().parent) for p in paths]) if paths else "."
    return paths, classes, lambda i: read_mask(paths[i], classes, colour), Path(cache_folder)


def image_labels(source: Any, classes: ClassSet | None = None, *, colour: bool | None = None,
                 min_pixels: int = 1, cache: bool = True, cache_folder: str | Path | None = None,
                 progress: bool = True) -> np.ndarray:
    """Image-level labels bool [N, K] of a dataset (SegFolder/VOCFolder) or of mask paths.

    The cache `<folder>/.cism_labels_mp<min_pixels>.npz` maps each mask's (path, size, mtime)
    to its label row, so added, removed or edited files are detected and only those recomputed.
    A read-only folder caches under `fallback_cache_dir(folder)` instead.
    """
    paths, classes, reader, folder = _resolve_source(source, classes, colour, cache_folder)
    keys = file_keys(paths, folder)
    name = cache_name(min_pixels)
    locations = [folder / name, fallback_cache_dir(folder) / name]
    table: dict[str, np.ndarray] = {}
    if cache:
        for loc in locations:
            table.update(_load_cache(loc, classes) or {})
    missing = [i for i, k in enumerate(keys) if k not in table]
    bar = progress_bar(missing, desc=f"labels {folder.name}", unit="mask", disable=not progress or not missing,
               leave=False)
    for i in bar:
        table[keys[i]] = mask_labels(reader(i), classes.num_foreground, min_pixels)
    if cache and missing:
        table = _prune(table, keys, folder)
        fp = fingerprint(keys)
        if not (is_writable(folder) and _save_cache(locations[0], table, fp, classes)):
            _save_cache(locations[1], table, fp, classes)
    if not keys:
        return np.zeros((0, classes.num_foreground), dtype=bool)
    return np.stack([table[k] for k in keys]).astype(bool)
