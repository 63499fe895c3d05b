"""A label map drawn over its image so that every class stays legible: a light fill of the class colour, a
solid outline of each class region with a contrasting rim, the annotation (boxes, clicks) and a legend strip
with the class names below the image."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import cv2
import numpy as np
from PIL import Image, ImageDraw, ImageFont

from tool.label_io import voc_palette
from vocabulary import CLASS_NAMES, IGNORE, Box


class Click(Protocol):
    """A click: class ``cls`` (0 = background) at 0-based pixel ``(x, y)`` (``voc12.annotations.Point``)."""

    cls: int
    x: int
    y: int


def contrast(rgb: Sequence[int]) -> tuple[int, int, int]:
    """Black or white, whichever stands out more against the colour ``rgb`` (by its luma)."""
    luma = 0.299 * rgb[0] + 0.587 * rgb[1] + 0.114 * rgb[2]
    return (0, 0, 0) if luma >= 100 else (255, 255, 255)


def outline_masks(label: np.ndarray, cls: int, thickness: int) -> tuple[np.ndarray, np.ndarray]:
    """``(band, rim)`` ``(H, W)`` bool of class ``cls`` in ``label``: the ``thickness`` px just inside its
    region's border, and the 1 px ring just outside it."""
    region = (label == cls).astype(np.uint8)
    kernel = np.ones((3, 3), np.uint8)
    inner = cv2.erode(region, kernel, iterations=thickness, borderType=cv2.BORDER_REPLICATE)
    outer = cv2.dilate(region, kernel, iterations=1)
    return (region > inner), (outer > region)


def overlay(image: np.ndarray, label: np.ndarray, boxes: Sequence[Box] = (), points: Sequence[Click] = (),
            fill: float = 0.3, names: Sequence[str] = CLASS_NAMES) -> Image.Image:
    """``image`` ``(H, W, 3)`` uint8 with ``label`` ``(H, W)`` (class ids; 0 background and 255 unknown are
    left as the image) drawn on it: each class region filled with its VOC colour at opacity ``fill`` and
    outlined in that colour at full opacity with a black or white rim; ``boxes`` (0-based inclusive corners)
    as rectangles with a name tag, ``points`` as discs; below the image a legend strip with a swatch and
    the name of every class in the label or the annotation. Returns an RGB picture ``W`` wide and ``H`` plus
    the strip high."""
    if label.shape != image.shape[:2]:
        raise ValueError(f"label {label.shape} and image {image.shape[:2]} differ in size")
    palette = voc_palette()
    h, w = label.shape
    thickness = max(2, round(max(h, w) / 200))
    painted = (label != 0) & (label != IGNORE)
    out = image.astype(np.float32)
    out[painted] = (1 - fill) * out[painted] + fill * palette[label[painted]]
    present = [int(c) for c in np.unique(label) if c not in (0, IGNORE)]
    for cls in present:
        band, rim = outline_masks(label, cls, thickness)
        out[rim & ~painted] = contrast(palette[cls])
        out[band] = palette[cls]
    picture = Image.fromarray(out.round().astype(np.uint8))
    draw = ImageDraw.Draw(picture)
    font = ImageFont.load_default(size=max(10, round(max(h, w) / 40)))
    for box in boxes:
        rgb = tuple(int(v) for v in palette[box.cls])
        draw.rectangle((box.x0, box.y0, box.x1, box.y1), outline=contrast(rgb), width=thickness + 2)
        draw.rectangle((box.x0, box.y0, box.x1, box.y1), outline=rgb, width=thickness)
        tag = draw.textbbox((box.x0, box.y0), names[box.cls], font=font)
        draw.rectangle(tag, fill=rgb)
        draw.text((box.x0, box.y0), names[box.cls], fill=contrast(rgb), font=font)
    r = 2 * thickness + 1
    for p in points:
        rgb = tuple(int(v) for v in palette[p.cls])
        draw.ellipse((p.x - r, p.y - r, p.x + r, p.y + r), fill=rgb, outline=contrast(rgb), width=max(1, r // 3))
    classes = sorted(set(present) | {b.cls for b in boxes} | {p.cls for p in points})
    return with_legend(picture, [(names[c], tuple(int(v) for v in palette[c])) for c in classes], font)


def with_legend(picture: Image.Image, entries: Sequence[tuple[str, tuple[int, int, int]]],
                font: ImageFont.ImageFont) -> Image.Image:
    """``picture`` with a white strip below it holding a colour swatch and a name per entry, in rows."""
    if not entries:
        return picture
    width = picture.width
    probe = ImageDraw.Draw(picture)
    line = probe.textbbox((0, 0), "Hg", font=font)[3] + 4
    pad, x, y = line // 3, line // 3, line // 3
    places = []
    for name, rgb in entries:
        item = line + pad + round(probe.textlength(name, font=font)) + 2 * pad
        if x + item > width and x > pad:
            x, y = pad, y + line + pad
        places.append((x, y, name, rgb))
        x += item
    strip = Image.new("RGB", (width, picture.height + y + line + pad), (255, 255, 255))
    strip.paste(picture, (0, 0))
    draw = ImageDraw.Draw(strip)
    for x, y, name, rgb in places:
        top = picture.height + y
        draw.rectangle((x, top, x + line - 1, top + line - 1), fill=rgb, outline=(0, 0, 0))
        draw.text((x + line + pad, top), name, fill=(0, 0, 0), font=font)
    return strip
