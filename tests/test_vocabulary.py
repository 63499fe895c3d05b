"""The shared vocabulary: class list, ignore label, palette, Box, and the old import paths users type."""

import numpy as np

import voc12
import vocabulary
from tool import label_io
from voc12 import annotations


def test_classes():
    assert vocabulary.NUM_CLASSES == len(vocabulary.CLASS_NAMES) == 21
    assert vocabulary.CLASS_NAMES[0] == "background"
    assert vocabulary.CLASS_NAMES[15] == "person" and vocabulary.CLASS_NAMES[20] == "tvmonitor"
    assert vocabulary.IGNORE == 255


def test_palette_first_colours_and_ignore():
    palette = vocabulary.voc_palette()
    assert palette.shape == (256, 3) and palette.dtype == np.uint8
    assert palette[:4].tolist() == [[0, 0, 0], [128, 0, 0], [0, 128, 0], [128, 128, 0]]
    assert tuple(palette[vocabulary.IGNORE]) == vocabulary.IGNORE_COLOR == (224, 224, 192)


def test_box_area_is_inclusive():
    assert vocabulary.Box(cls=3, x0=2, y0=4, x1=2, y1=6).area == 3


def test_old_import_paths_give_the_same_objects():
    assert voc12.CAT_LIST is vocabulary.CAT_LIST and voc12.CLASS_NAMES is vocabulary.CLASS_NAMES
    assert voc12.NUM_CLASSES == vocabulary.NUM_CLASSES and voc12.IGNORE == vocabulary.IGNORE
    assert annotations.Box is vocabulary.Box
    assert label_io.voc_palette is vocabulary.voc_palette
