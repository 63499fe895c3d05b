"""An image with its label map drawn over it in the VOC colours, plus the annotation that produced it."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from PIL import Image, ImageDraw

from tool.label_io import voc_palette


def overlay(image: np.ndarray, label: np.ndarray, alpha: float = 0.5,
            boxes: Sequence[tuple[int, int, int, int, int, str]] = (),
            points: Sequence[tuple[int, int, int, str]] = ()) -> Image.Image:
    """``image`` ``(H, W, 3)`` uint8 blended with the palette colour of ``label`` ``(H, W)`` (class ids,
    255 unknown: left as the image) at ``alpha``; background (0) is left as the image too. ``boxes``:
    ``(x0, y0, x1, y1, class id, name)`` 0-based inclusive, drawn as outlines with their name; ``points``:
    ``(x, y, class id, name)`` drawn as discs. Returns an RGB picture of the image's size."""
    if label.shape != image.shape[:2]:
        raise ValueError(f"label {label.shape} and image {image.shape[:2]} differ in size")
    palette = voc_palette()
    colour = palette[label].astype(np.float32)
    painted = (label != 0) & (label != 255)
    out = image.astype(np.float32)
    out[painted] = (1 - alpha) * out[painted] + alpha * colour[painted]
    picture = Image.fromarray(out.round().astype(np.uint8))
    draw = ImageDraw.Draw(picture)
    width = max(1, round(max(image.shape[:2]) / 250))
    for x0, y0, x1, y1, cls, name in boxes:
        rgb = tuple(int(v) for v in palette[cls])
        draw.rectangle((x0, y0, x1, y1), outline=rgb, width=width)
        draw.text((x0 + width + 1, y0 + width), name, fill=rgb)
    for x, y, cls, name in points:
        rgb = tuple(int(v) for v in palette[cls])
        r = 2 * width + 1
        draw.ellipse((x - r, y - r, x + r, y + r), fill=rgb, outline=(255, 255, 255))
        draw.text((x + r + 1, y - r), name, fill=rgb)
    return picture
