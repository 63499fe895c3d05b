"""Weak annotations: VOC XML boxes and image labels, scribble PNGs, point clicks (JSON).

Coordinates are 0-based pixel indices, boxes inclusive on both ends. VOC XML ``bndbox`` values are
1-based inclusive, so 1 is subtracted while reading. Every malformed input raises
:class:`AnnotationError` with the file name; a missing file raises ``FileNotFoundError``.
"""

from __future__ import annotations

import json
import os
import warnings
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tool.cli import MissingFileError
from tool.label_io import read_label_png
from vocabulary import CAT_LIST, NUM_CLASSES, Box


class AnnotationError(ValueError):
    """A weak-annotation file that cannot be read as what it claims to be."""


@dataclass(frozen=True)
class Point:
    """A click: ``cls`` in 0..20 (0 = background click) at 0-based pixel ``(x, y)``."""

    cls: int
    x: int
    y: int


def _xml_root(path: Path) -> ET.Element:
    if not path.is_file():
        raise MissingFileError(f"annotation file not found: {path}")
    try:
        return ET.parse(path).getroot()
    except ET.ParseError as err:
        raise AnnotationError(f"{path}: broken XML ({err})") from err


def _text(element: ET.Element, tag: str, path: Path) -> str:
    child = element.find(tag)
    if child is None or child.text is None or not child.text.strip():
        raise AnnotationError(f"{path}: missing <{tag}> in <{element.tag}>")
    return child.text.strip()


def _number(element: ET.Element, tag: str, path: Path) -> int:
    text = _text(element, tag, path)
    try:
        return round(float(text))
    except ValueError as err:
        raise AnnotationError(f"{path}: <{tag}> is not a number: {text!r}") from err


def _class_index(name: str, path: Path) -> int:
    if name not in CAT_LIST:
        raise AnnotationError(f"{path}: unknown class {name!r} (expected one of the 20 VOC classes)")
    return CAT_LIST.index(name) + 1


def _objects(root: ET.Element, path: Path) -> list[tuple[int, ET.Element]]:
    """``(class 1..20, <object> element)`` for every object, in file order."""
    return [(_class_index(_text(obj, "name", path), path), obj) for obj in root.findall("object")]


def read_boxes(xml_path: str | os.PathLike, image_size: tuple[int, int] | None = None) -> list[Box]:
    """Boxes of a VOC XML file, in file order, 0-based inclusive and clipped to the image.

    ``image_size = (H, W)`` clips to the real image; without it the XML ``<size>`` is used. A box that
    is inverted (max < min) or lies entirely outside the image is dropped with a warning naming the file.
    """
    return read_box_annotation(xml_path, image_size)[0]


def read_box_annotation(xml_path: str | os.PathLike,
                        image_size: tuple[int, int] | None = None) -> tuple[list[Box], list[Box]]:
    """``(boxes, dropped)``: the boxes of :func:`read_boxes`, and for every dropped box the part of the
    image it may cover (its corners sorted, clipped to the image; none for a box wholly outside).

    A dropped box still marks an object of its class, so seed labels make ``dropped`` unknown (255),
    never background.
    """
    path = Path(xml_path)
    root = _xml_root(path)
    objects = _objects(root, path)
    if image_size is None:
        size = root.find("size")
        if size is None:
            raise AnnotationError(f"{path}: no <size> element; pass image_size=(H, W) to clip the boxes")
        image_size = (_number(size, "height", path), _number(size, "width", path))
    height, width = image_size

    boxes, dropped = [], []
    for cls, obj in objects:
        bndbox = obj.find("bndbox")
        if bndbox is None:
            raise AnnotationError(f"{path}: missing <bndbox> in <object> {CAT_LIST[cls - 1]!r}")
        x0, y0, x1, y1 = (_number(bndbox, tag, path) - 1 for tag in ("xmin", "ymin", "xmax", "ymax"))
        inverted = x1 < x0 or y1 < y0
        lo_x, hi_x, lo_y, hi_y = min(x0, x1), max(x0, x1), min(y0, y1), max(y0, y1)
        outside = hi_x < 0 or hi_y < 0 or lo_x > width - 1 or lo_y > height - 1
        if inverted or outside:
            what = "inverted box" if inverted else f"box outside the {height}x{width} image"
            warnings.warn(f"{path}: dropped {what} {CAT_LIST[cls - 1]} (x {x0}..{x1}, y {y0}..{y1}, "
                          "0-based); its area is left unknown (255) in seed labels", stacklevel=3)
            if not outside:
                dropped.append(Box(cls=cls, x0=max(lo_x, 0), y0=max(lo_y, 0), x1=min(hi_x, width - 1),
                                   y1=min(hi_y, height - 1)))
            continue
        difficult = obj.find("difficult")
        boxes.append(Box(
            cls=cls,
            x0=max(x0, 0), y0=max(y0, 0), x1=min(x1, width - 1), y1=min(y1, height - 1),
            difficult=difficult is not None and (difficult.text or "").strip() == "1",
        ))
    return boxes, dropped


def image_label_from_xml(xml_path: str | os.PathLike) -> np.ndarray:
    """``(20,)`` float32 multi-hot of the classes present in a VOC XML file (difficult objects count)."""
    path = Path(xml_path)
    label = np.zeros(len(CAT_LIST), dtype=np.float32)
    for cls, _ in _objects(_xml_root(path), path):
        label[cls - 1] = 1.0
    return label


def read_scribble(png_path: str | os.PathLike) -> np.ndarray:
    """``(H, W)`` uint8 scribble map: class ids 0..20 on stroke pixels, 255 elsewhere."""
    try:
        return read_label_png(png_path)
    except ValueError as err:  # the label validator of tool.label_io: values 0..20 or 255
        raise AnnotationError(f"scribble: {err}") from err


def read_points(json_path: str | os.PathLike, image_size: tuple[int, int] | None = None) -> list[Point]:
    """Clicks of a JSON file ``[{"class": c, "x": x, "y": y}, ...]`` (0-based pixels, class 0..20).

    With ``image_size = (H, W)``, a point outside the image is an error.
    """
    path = Path(json_path)
    if not path.is_file():
        raise MissingFileError(f"point file not found: {path}")
    try:
        entries = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise AnnotationError(f"{path}: broken JSON ({err})") from err
    if not isinstance(entries, list):
        raise AnnotationError(f"{path}: expected a JSON list of {{'class', 'x', 'y'}} objects")

    points = []
    for k, entry in enumerate(entries):
        if not isinstance(entry, dict) or set(entry) != {"class", "x", "y"}:
            raise AnnotationError(f"{path}: point {k} must be an object with exactly 'class', 'x', 'y'")
        values = [entry["class"], entry["x"], entry["y"]]
        if not all(isinstance(v, int) and not isinstance(v, bool) for v in values):
            raise AnnotationError(f"{path}: point {k} has non-integer values {entry}")
        point = Point(*values)
        if not 0 <= point.cls < NUM_CLASSES:
            raise AnnotationError(f"{path}: point {k} has class {point.cls}, expected 0..20")
        if point.x < 0 or point.y < 0:
            raise AnnotationError(f"{path}: point {k} has negative coordinates {entry}")
        if image_size is not None and (point.y >= image_size[0] or point.x >= image_size[1]):
            raise AnnotationError(f"{path}: point {k} at (x={point.x}, y={point.y}) lies outside the "
                                  f"{image_size[0]}x{image_size[1]} image")
        points.append(point)
    return points
