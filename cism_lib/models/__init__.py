"""The classifier: backbones, prototype vectors, PIE, SLSC, CIAN and the CISM network."""
from __future__ import annotations

from cism_lib.models.backbones import BACKBONES, Backbone, build_backbone, imagenet_weights_file
from cism_lib.models.cism import CISMNet, active_losses, build_model

__all__ = ["BACKBONES", "Backbone", "build_backbone", "imagenet_weights_file", "CISMNet",
           "active_losses", "build_model"]
