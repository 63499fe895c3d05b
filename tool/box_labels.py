"""Label maps from class boxes: box filling, GrabCut per box, and the smallest-box overlap rule (algorithm.md §1.3).

Boxes are ``vocabulary.Box``: integer ``cls`` (1..20) and 0-based inclusive ``x0, y0, x1, y1``. Where
boxes (or their masks) overlap, a pixel belongs to the smallest box that claims it; among boxes of equal
area the earlier one in the list wins.
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

from vocabulary import Box


def box_mask(box: Box, hw: tuple[int, int]) -> np.ndarray:
    """``(H, W)`` bool mask of the box rectangle (inclusive corners, clipped to the image)."""
    mask = np.zeros(hw, dtype=bool)
    mask[max(box.y0, 0):box.y1 + 1, max(box.x0, 0):box.x1 + 1] = True
    return mask


def smallest_box_owner(boxes: Sequence[Box], hw: tuple[int, int],
                       masks: Sequence[np.ndarray] | None = None) -> np.ndarray:
    """``(H, W)`` int64: index of the smallest box claiming each pixel, -1 where none does.

    A box claims its rectangle, or, when ``masks`` (one ``(H, W)`` bool per box) are given, the pixels
    of its mask. Ties in area go to the earlier box.
    """
    owner = np.full(hw, -1, dtype=np.int64)
    areas = [(b.x1 - b.x0 + 1) * (b.y1 - b.y0 + 1) for b in boxes]
    # paint largest first so smaller boxes end on top; among equal areas, the earlier box paints last
    for k in sorted(range(len(boxes)), key=lambda k: (-areas[k], -k)):
        owner[box_mask(boxes[k], hw) if masks is None else masks[k]] = k
    return owner


def _labels_from_owner(boxes: Sequence[Box], owner: np.ndarray) -> np.ndarray:
    classes = np.array([0] + [b.cls for b in boxes], dtype=np.uint8)
    return classes[owner + 1]


def box_fill_label(boxes: Sequence[Box], hw: tuple[int, int]) -> np.ndarray:
    """``(H, W)`` uint8: every box filled with its class (smallest box on top), 0 outside all boxes."""
    return _labels_from_owner(boxes, smallest_box_owner(boxes, hw))


def box_class_mask(boxes: Sequence[Box], hw: tuple[int, int], num_classes: int) -> np.ndarray:
    """``(C, H, W)`` bool: the labels the boxes allow at each pixel. Background everywhere; class ``c``
    inside every box of class ``c`` (overlapping boxes allow each of their classes)."""
    allowed = np.zeros((num_classes, *hw), dtype=bool)
    allowed[0] = True
    for box in boxes:
        allowed[box.cls] |= box_mask(box, hw)
    return allowed


def mask_box_iou(mask: np.ndarray, box: Box) -> float:
    """IoU between a ``(H, W)`` bool mask and the box rectangle."""
    rect = box_mask(box, mask.shape)
    union = np.count_nonzero(mask | rect)
    return np.count_nonzero(mask & rect) / union if union else 0.0


def grabcut_box_masks(image: np.ndarray, boxes: Sequence[Box], iters: int = 3,
                      min_iou: float = 0.15, seed: int = 0) -> list[np.ndarray]:
    """One ``(H, W)`` bool foreground mask per box from OpenCV GrabCut initialised with the rectangle.

    ``image`` is ``(H, W, 3)`` uint8 RGB. Foreground = definite or probable foreground. The whole box is
    used when GrabCut fails, finds nothing, or its mask has IoU < ``min_iou`` with the box. OpenCV's
    random generator is reset to ``seed`` before each call, so the result is deterministic.
    """
    h, w = image.shape[:2]
    bgr = np.ascontiguousarray(image[..., ::-1])
    masks = []
    for box in boxes:
        rect = (int(box.x0), int(box.y0), int(box.x1 - box.x0 + 1), int(box.y1 - box.y0 + 1))
        fg = np.zeros((h, w), dtype=bool)
        gc = np.zeros((h, w), dtype=np.uint8)
        try:
            cv2.setRNGSeed(seed)
            cv2.grabCut(bgr, gc, rect, np.zeros((1, 65), np.float64), np.zeros((1, 65), np.float64),
                        iters, cv2.GC_INIT_WITH_RECT)
            fg = (gc == cv2.GC_FGD) | (gc == cv2.GC_PR_FGD)
        except cv2.error:  # e.g. a box covering the whole image leaves no background to model
            pass
        masks.append(fg if fg.any() and mask_box_iou(fg, box) >= min_iou else box_mask(box, (h, w)))
    return masks


def grabcut_label(image: np.ndarray, boxes: Sequence[Box], iters: int = 3, min_iou: float = 0.15,
                  seed: int = 0) -> np.ndarray:
    """``(H, W)`` uint8: GrabCut masks of ``grabcut_box_masks`` filled with their class, 0 elsewhere.

    A pixel claimed by several masks takes the class of the smallest box among them.
    """
    masks = grabcut_box_masks(image, boxes, iters, min_iou, seed)
    return _labels_from_owner(boxes, smallest_box_owner(boxes, image.shape[:2], masks))
