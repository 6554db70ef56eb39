"""Class metadata and palette decoding."""
from __future__ import annotations

import numpy as np
import pytest

from cism_lib.classes import IGNORE_INDEX, ISAID, VOC, VOC_BOUNDARY_RGB, index_to_rgb, rgb_to_index
from cism_lib.errors import DataError


def test_isaid_ids_and_colours_match_the_official_table():
    assert ISAID.num_classes == 16 and ISAID.num_foreground == 15
    assert ISAID.names[9] == "small_vehicle" and ISAID.palette[9] == (0, 0, 127)
    assert ISAID.names[15] == "harbor" and ISAID.palette[15] == (0, 100, 155)
    assert len(set(ISAID.palette)) == 16


def test_voc_palette_is_the_standard_colour_map():
    assert VOC.num_classes == 21
    assert VOC.palette[1] == (128, 0, 0) and VOC.palette[15] == (192, 128, 128)


def test_palette_round_trip_all_classes():
    idx = np.arange(16, dtype=np.uint8).reshape(4, 4)
    assert np.array_equal(rgb_to_index(index_to_rgb(idx, ISAID), ISAID), idx)


def test_unknown_colour_names_file_and_colour():
    rgb = index_to_rgb(np.zeros((3, 3), np.uint8), ISAID)
    rgb[1, 2] = (1, 2, 3)
    with pytest.raises(DataError, match=r"m\.png.*\(1, 2, 3\).*row 1, col 2"):
        rgb_to_index(rgb, ISAID, "m.png")


def test_ignore_colour_maps_to_ignore_index():
    rgb = index_to_rgb(np.array([[0, 1]], np.uint8), VOC)
    rgb[0, 0] = VOC_BOUNDARY_RGB
    out = rgb_to_index(rgb, VOC, ignore_rgb=(VOC_BOUNDARY_RGB,))
    assert out.tolist() == [[IGNORE_INDEX, 1]]
