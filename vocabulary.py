"""The names every package shares: the 21 PASCAL VOC classes, the ignore label, the colours of label PNGs
and the class box.

This module is the bottom layer: it imports nothing from the repository, and ``network``, ``tool``,
``voc12``, the stage helpers and the scripts all take these names from here (``docs/layout.md``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

CAT_LIST = [
    "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
    "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa", "train",
    "tvmonitor",
]
CLASS_NAMES = ["background", *CAT_LIST]
NUM_CLASSES = len(CLASS_NAMES)  # 21
IGNORE = 255
IGNORE_COLOR = (224, 224, 192)


def voc_palette() -> np.ndarray:
    """The VOC colormap as a ``(256, 3)`` uint8 array; index 255 (ignore) is drawn as (224, 224, 192)."""
    palette = np.zeros((256, 3), dtype=np.uint8)
    for index in range(256):
        c, r, g, b = index, 0, 0, 0
        for shift in range(7, -1, -1):
            r |= ((c >> 0) & 1) << shift
            g |= ((c >> 1) & 1) << shift
            b |= ((c >> 2) & 1) << shift
            c >>= 3
        palette[index] = (r, g, b)
    palette[255] = IGNORE_COLOR
    return palette


@dataclass(frozen=True)
class Box:
    """A class box: ``cls`` in 1..20, 0-based inclusive corners clipped to the image."""

    cls: int
    x0: int
    y0: int
    x1: int
    y1: int
    difficult: bool = False

    @property
    def area(self) -> int:
        return (self.x1 - self.x0 + 1) * (self.y1 - self.y0 + 1)
