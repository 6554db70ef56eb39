"""cism_lib: Cross-Image Semantic Mining for weakly supervised semantic segmentation of aerial imagery.

Heavy parts (torch models, CRF) are imported lazily by their modules, so `import cism_lib` is fast.
"""
from __future__ import annotations

__version__ = "0.1.0"

from cism_lib.classes import ISAID, VOC, ClassSet, get_class_set  # noqa: E402
from cism_lib.errors import CheckpointError, CismError, ConfigError, DataError  # noqa: E402

__all__ = ["__version__", "ISAID", "VOC", "ClassSet", "get_class_set", "CismError", "DataError",
           "ConfigError", "CheckpointError"]
