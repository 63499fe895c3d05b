"""Merging weak annotations (boxes, scribbles, points) with CAM seeds into seed labels (algorithm.md §1.3).

Every label map here is ``(H, W)`` uint8 with class ids 0..20 (0 = background) and 255 = unknown.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from tool.box_labels import box_mask, smallest_box_owner
from tool.label_io import check_label  # noqa: F401 - the one label validator, re-exported for callers
from vocabulary import IGNORE, NUM_CLASSES

BOX_MODES = ("grabcut", "cam", "cam_and_grabcut")
SCRIBBLE_MODES = ("superpixel", "override")
VOC_HW = (375, 500)  # the typical VOC image size at which SLIC's n_segments is given


def box_seed_label(boxes: Sequence, hw: tuple[int, int], mode: str = "cam_and_grabcut",
                   grabcut_masks: Sequence[np.ndarray] | None = None,
                   cam_seed: np.ndarray | None = None, unknown: Sequence = ()) -> np.ndarray:
    """Seed label from boxes (``vocabulary.Box``: ``cls``, 0-based inclusive ``x0, y0, x1, y1``).

    Background outside every box. Inside the boxes, the GrabCut label is the class of the smallest box
    whose GrabCut mask (``grabcut_masks``, one ``(H, W)`` bool per box) claims the pixel, else 0; the
    box class of a pixel is that of the smallest box rectangle containing it. Then ``grabcut`` mode
    gives the GrabCut label; ``cam`` mode gives the box class where ``cam_seed`` says that class, 0 where
    ``cam_seed`` says background, 255 elsewhere; ``cam_and_grabcut`` gives the GrabCut label where
    ``cam_seed`` agrees with it (both the same class, or both background) and 255 elsewhere.
    Finally the rectangles of ``unknown`` (boxes the annotation reader dropped, e.g. inverted ones) are
    255: an object is there, so its pixels must not become background seeds.
    """
    if mode not in BOX_MODES:
        raise ValueError(f"box mode must be one of {BOX_MODES}, got {mode!r}")
    if mode != "grabcut" and cam_seed is None:
        raise ValueError(f"box mode {mode!r} needs the CAM seed label")
    if mode != "cam" and (grabcut_masks is None or len(grabcut_masks) != len(boxes)):
        raise ValueError(f"box mode {mode!r} needs one GrabCut mask per box")
    label = np.zeros(hw, dtype=np.uint8)
    if len(boxes):
        classes = np.array([0] + [b.cls for b in boxes], dtype=np.uint8)
        box_class = classes[smallest_box_owner(boxes, hw) + 1]
        inside = box_class > 0
        if mode == "cam":
            merged = np.where((cam_seed == box_class) | (cam_seed == 0), cam_seed, IGNORE)
        else:
            masks = [np.asarray(m, dtype=bool) for m in grabcut_masks]
            grabcut = classes[smallest_box_owner(boxes, hw, masks) + 1]
            merged = grabcut if mode == "grabcut" else np.where(cam_seed == grabcut, grabcut, IGNORE)
        label[inside] = merged[inside]
    for box in unknown:
        label[box_mask(box, hw)] = IGNORE
    return label


def scaled_n_segments(n_segments: int, hw: tuple[int, int], ref_hw: tuple[int, int] = VOC_HW) -> int:
    """``n_segments`` scaled by the image area relative to ``ref_hw`` (VOC 500×375), so superpixels keep
    their VOC pixel size on smaller or larger images; at least 1."""
    return max(1, round(n_segments * hw[0] * hw[1] / (ref_hw[0] * ref_hw[1])))


def superpixels(image: np.ndarray, n_segments: int = 1000, compactness: float = 10.0) -> np.ndarray:
    """SLIC superpixels of ``image`` ``(H, W, 3)`` uint8 as ``(H, W)`` int64 segment ids from 0.

    ``n_segments`` is taken at VOC size and scaled by :func:`scaled_n_segments`.
    """
    from skimage.segmentation import slic

    n = scaled_n_segments(n_segments, image.shape[:2])
    return slic(image, n_segments=n, compactness=compactness, start_label=0).astype(np.int64)


def scribble_superpixel_label(segments: np.ndarray, scribble: np.ndarray) -> np.ndarray:
    """A superpixel touched by strokes of exactly one class takes that class; every other pixel → 255.

    segments: ``(H, W)`` int ids. scribble: ``(H, W)`` uint8, class ids (0..20) on strokes, 255 elsewhere.
    """
    on_stroke = scribble != IGNORE
    num_segments = int(segments.max()) + 1
    counts = np.bincount(segments[on_stroke] * NUM_CLASSES + scribble[on_stroke].astype(np.int64),
                         minlength=num_segments * NUM_CLASSES).reshape(num_segments, NUM_CLASSES)
    single = (counts > 0).sum(axis=1) == 1
    segment_label = np.where(single, counts.argmax(axis=1), IGNORE).astype(np.uint8)
    return segment_label[segments]


def scribble_override_label(cam_seed: np.ndarray, scribble: np.ndarray) -> np.ndarray:
    """CAM seeds where there is no stroke; stroke pixels take the stroke's class."""
    return np.where(scribble != IGNORE, scribble, cam_seed).astype(np.uint8)


def point_seed_label(points: Sequence, cam_seed: np.ndarray, radius: int = 6) -> np.ndarray:
    """Seed label from clicks (``voc12.annotations.Point``: ``cls`` 0..20, 0-based ``x``, ``y``).

    Starts from ``cam_seed`` with every foreground class that has no point set to 255 (background seeds
    kept); then each point paints a disc of radius ``radius`` px (distance ≤ radius) with its class, the
    nearest point winning where discs overlap. Points must lie inside the image.
    """
    h, w = cam_seed.shape
    outside = [p for p in points if not (0 <= p.x < w and 0 <= p.y < h)]
    if outside:
        raise ValueError(f"points outside the {w}x{h} image: "
                         + ", ".join(f"(class {p.cls}, x {p.x}, y {p.y})" for p in outside))
    pointed = {p.cls for p in points} | {0}
    label = np.where(np.isin(cam_seed, sorted(pointed)), cam_seed, IGNORE).astype(np.uint8)
    if not points:
        return label
    xy = np.array([(p.x, p.y) for p in points], dtype=np.float64)
    yy, xx = np.mgrid[:h, :w]
    dist2 = (xx[None] - xy[:, 0, None, None]) ** 2 + (yy[None] - xy[:, 1, None, None]) ** 2
    nearest = dist2.argmin(axis=0)
    in_disc = dist2.min(axis=0) <= radius ** 2
    classes = np.array([p.cls for p in points], dtype=np.uint8)
    label[in_disc] = classes[nearest[in_disc]]
    return label
