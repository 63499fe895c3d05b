"""Instance label maps from class maps and boxes, and their COCO form (stage 4 instances, **OURS**).

The rule (:func:`instances_from_labels`): instance ``k`` (the ``k``-th box, 1-based, in the order of the
box list = the XML order) is every pixel inside box ``k`` whose class label is the box's class. A pixel
claimed by several boxes of one class goes to the smallest of them (ties: the earlier box), as the SDI
box labels do (``tool.box_labels.smallest_box_owner``). A pixel labelled 255 (unsure) inside a box of any
class and owned by no box stays 255. A box without any pixel of its class gets the pixels of its rectangle
that are neither owned nor unsure (``filled``), so Mask R-CNN still sees the object; one whose rectangle is
covered entirely by other instances stays ``empty`` and is left out of the COCO file.

Maps are VOC ``SegmentationObject`` style: ``(H, W)`` uint8, 0 background, ``k`` the ``k``-th box, 255
ignore. COCO (``pycocotools`` RLE, the format Detectron2 and MMDetection read): :func:`coco_annotations`
turns a map into annotations whose ``bbox`` is the box (or the mask's tight box) and which keep the map's
index as ``"instance"``; category ids are the VOC class ids 1..20; an image's COCO id is its VOC id's
digits (:func:`coco_image_id`).
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image
from pycocotools import mask as mask_utils

from tool.box_labels import box_mask, smallest_box_owner
from vocabulary import CAT_LIST, IGNORE, Box

MAX_INSTANCES = 254  # indices 1..254 (255 is ignore)


@dataclass
class InstanceLabels:
    """One image's instances: ``inst`` ``(H, W)`` uint8 map; ``classes[k - 1]`` the class of index ``k``;
    ``filled`` / ``empty``: 1-based indices of boxes that had no pixel of their class (see the module)."""

    inst: np.ndarray
    classes: list[int]
    filled: list[int] = field(default_factory=list)
    empty: list[int] = field(default_factory=list)


def instances_from_labels(label: np.ndarray, boxes: Sequence[Box]) -> InstanceLabels:
    """Split a ``(H, W)`` class map (0..20, 255 unsure) into one instance per box by the module's rule."""
    if len(boxes) > MAX_INSTANCES:
        raise ValueError(f"{len(boxes)} boxes: an instance map holds at most {MAX_INSTANCES}")
    hw = label.shape
    rects = [box_mask(box, hw) for box in boxes]
    claims = [rect & (label == box.cls) for rect, box in zip(rects, boxes, strict=True)]
    owner = smallest_box_owner(boxes, hw, claims)
    inst = (owner + 1).astype(np.uint8)
    unsure = (label == IGNORE) & np.logical_or.reduce(rects, axis=0) if boxes else np.zeros(hw, bool)
    inst[unsure & (owner < 0)] = IGNORE
    result = InstanceLabels(inst, [box.cls for box in boxes])
    present = np.bincount(inst.ravel(), minlength=IGNORE + 1)
    for k, rect in enumerate(rects, start=1):
        if present[k]:
            continue
        free = rect & (inst == 0)
        if free.any():
            inst[free] = k
            result.filled.append(k)
        else:
            result.empty.append(k)
    return result


def instances_from_ground_truth(seg: np.ndarray, obj: np.ndarray) -> InstanceLabels:
    """VOC ground truth: ``obj`` (SegmentationObject indices, 255 ignore) with each index's class the most
    frequent ``seg`` (SegmentationClass) class 1..20 under it. An index without a class pixel is dropped."""
    inst = obj.copy()
    classes = []
    for k in range(1, int(obj[obj != IGNORE].max(initial=0)) + 1):
        votes = np.bincount(seg[obj == k], minlength=IGNORE + 1)[1:IGNORE]
        classes.append(int(votes.argmax()) + 1 if votes.any() else 0)
    result = InstanceLabels(inst, classes)
    result.empty = [k for k, cls in enumerate(classes, start=1) if cls == 0 and (obj == k).any()]
    return result


def read_instance_png(path: str | os.PathLike, hw: tuple[int, int] | None = None) -> np.ndarray:
    """A ``SegmentationObject`` PNG as ``(H, W)`` uint8 indices (palette or grayscale; any index)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"instance map not found: {path}")
    try:
        with Image.open(path) as img:
            if img.mode not in ("P", "L"):
                raise ValueError(f"{path}: expected a palette or grayscale instance PNG, got mode {img.mode}")
            inst = np.array(img, dtype=np.uint8)
    except (OSError, SyntaxError) as err:
        raise ValueError(f"{path}: not a readable PNG ({err})") from err
    if hw is not None and inst.shape != tuple(hw):
        raise ValueError(f"{path}: size (H, W) = {inst.shape} does not match the image's {tuple(hw)}")
    return inst


# ---------------------------------------------------------------------------------------------- COCO
_VOC_ID = re.compile(r"(\d+)_(\d+)")


def coco_image_id(voc_id: str) -> int:
    """A VOC id ``2007_000032`` as the COCO image id ``2007000032`` (ids of other forms are refused)."""
    if not _VOC_ID.fullmatch(voc_id):
        raise ValueError(f"image id {voc_id!r} is not of the VOC form YYYY_NNNNNN (digits_digits); COCO needs "
                         "integer image ids")
    return int(voc_id.replace("_", ""))


def coco_categories() -> list[dict]:
    """The 20 VOC classes as COCO categories, ids 1..20 (the class ids of the label maps)."""
    return [{"id": k, "name": name, "supercategory": "voc"} for k, name in enumerate(CAT_LIST, start=1)]


def encode_mask(mask: np.ndarray) -> dict:
    """A ``(H, W)`` bool mask as COCO compressed RLE with a ``str`` ``counts`` (JSON-ready)."""
    rle = mask_utils.encode(np.asfortranarray(mask, dtype=np.uint8))
    rle["counts"] = rle["counts"].decode("ascii")
    return rle


def decode_mask(segmentation: dict, hw: tuple[int, int]) -> np.ndarray:
    """A COCO ``segmentation`` (RLE, compressed or not, or polygons) as a ``(H, W)`` bool mask."""
    h, w = hw
    if isinstance(segmentation, list):  # polygons
        rle = mask_utils.merge(mask_utils.frPyObjects(segmentation, h, w))
    elif isinstance(segmentation.get("counts"), list):  # uncompressed RLE
        rle = mask_utils.frPyObjects(segmentation, h, w)
    else:
        rle = {"size": segmentation["size"], "counts": segmentation["counts"].encode("ascii")
               if isinstance(segmentation["counts"], str) else segmentation["counts"]}
    return mask_utils.decode(rle).astype(bool)


def box_xywh(box: Box) -> list[float]:
    """A 0-based inclusive box as COCO ``[x, y, width, height]`` in pixels."""
    return [float(box.x0), float(box.y0), float(box.x1 - box.x0 + 1), float(box.y1 - box.y0 + 1)]


def coco_annotations(labels: InstanceLabels, image_id: int, first_id: int,
                     boxes: Sequence[Box] | None = None) -> list[dict]:
    """COCO annotations (ids ``first_id``..) of every non-empty instance of ``labels``: RLE mask, ``area``
    (pixels), ``bbox`` (``boxes[k - 1]`` when given, else the mask's tight box), ``iscrowd`` 0, ``instance``."""
    annotations = []
    for k, cls in enumerate(labels.classes, start=1):
        mask = labels.inst == k
        if cls == 0 or not mask.any():
            continue
        rle = encode_mask(mask)
        bbox = box_xywh(boxes[k - 1]) if boxes is not None else mask_utils.toBbox(
            {**rle, "counts": rle["counts"].encode("ascii")}).tolist()
        annotations.append({"id": first_id + len(annotations), "image_id": image_id, "category_id": cls,
                            "segmentation": rle, "area": float(mask.sum()), "bbox": bbox, "iscrowd": 0,
                            "instance": k})
    return annotations


def coco_dataset(images: Iterable[dict], annotations: Iterable[dict], description: str) -> dict:
    """A COCO instances file: ``images`` (``id``, ``file_name``, ``height``, ``width``), ``annotations``,
    the VOC ``categories`` and an ``info`` with ``description``."""
    return {"info": {"description": description}, "images": list(images), "annotations": list(annotations),
            "categories": coco_categories()}


def coco_image(voc_id: str, hw: tuple[int, int]) -> dict:
    """The COCO ``images`` entry of a VOC image."""
    return {"id": coco_image_id(voc_id), "file_name": f"{voc_id}.jpg", "height": int(hw[0]), "width": int(hw[1])}


def instance_map(masks: np.ndarray, scores: np.ndarray, threshold: float) -> np.ndarray:
    """``(H, W)`` uint8 map of predicted ``masks`` ``(N, H, W)`` bool whose score is at least ``threshold``:
    index ``k`` = the ``k``-th best of them, higher scores drawn over lower ones, 0 elsewhere."""
    order = [int(i) for i in np.argsort(-scores, kind="stable") if scores[i] >= threshold][:MAX_INSTANCES]
    out = np.zeros(masks.shape[1:], np.uint8)
    for rank in range(len(order), 0, -1):  # lowest score first, so the best end on top
        out[masks[order[rank - 1]]] = rank
    return out
