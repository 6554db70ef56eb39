"""cism_lib: Cross-Image Semantic Mining for weakly supervised semantic segmentation of aerial imagery.

Heavy parts (torch models, CRF) are imported lazily by their modules, so `import cism_lib` is fast.
"""
from __future__ import annotations

import os

# OpenMP threads that wait passively (sleep) instead of spinning: two 2-thread processes on 2 cores
# (a notebook beside `make reproduce`) then share the cores instead of each running many times
# slower, for a few per cent alone (docs/benchmarks.md, "Two processes on one machine"). Read when
# torch loads its OpenMP runtime, so it acts where cism_lib is imported before torch; a value set
# by the user wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

__version__ = "0.1.0"

from cism_lib.classes import ISAID, VOC, ClassSet, get_class_set  # noqa: E402
from cism_lib.errors import CheckpointError, CismError, ConfigError, DataError  # noqa: E402

__all__ = ["__version__", "ISAID", "VOC", "ClassSet", "get_class_set", "CismError", "DataError",
           "ConfigError", "CheckpointError"]
