"""Where the repository's outputs go: results/ (CSV tables) and figures/, one folder per profile.

A module of its own so that experiments/ (tables) and viz.py (figures) both use it without
importing each other.
"""
from __future__ import annotations

from pathlib import Path

import cism_lib

ROOT = Path(cism_lib.__file__).resolve().parent.parent


def output_dir(kind: str, profile: str) -> Path:
    """results/ or figures/ for cpu; results/<profile>/ for smoke and paper (kept apart)."""
    if kind not in ("results", "figures"):
        raise ValueError(f"kind must be results or figures, got {kind!r}")
    base = ROOT / kind
    return base if profile == "cpu" else base / profile


__all__ = ["ROOT", "output_dir"]
