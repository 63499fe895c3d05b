import numpy as np
import pytest

import tool.box_labels as box_labels
from tool.seed_labels import (
    box_seed_label,
    check_label,
    point_seed_label,
    scaled_n_segments,
    scribble_override_label,
    scribble_superpixel_label,
    superpixels,
)
from voc12.annotations import Point
from vocabulary import Box

HW = (12, 14)
BIG = Box(cls=7, x0=0, y0=0, x1=9, y1=9)  # area 100
SMALL = Box(cls=15, x0=6, y0=4, x1=12, y1=10)  # area 49, overlaps BIG


def rect(box):
    m = np.zeros(HW, bool)
    m[box.y0:box.y1 + 1, box.x0:box.x1 + 1] = True
    return m


def reference_box_seed(boxes, masks, cam, mode):
    """Pixel by pixel: smallest containing rectangle / smallest claiming mask decide."""
    out = np.zeros(HW, np.uint8)
    for i in range(HW[0]):
        for j in range(HW[1]):
            holders = [k for k, b in enumerate(boxes) if b.y0 <= i <= b.y1 and b.x0 <= j <= b.x1]
            if not holders:
                continue
            k_rect = min(holders, key=lambda k: (boxes[k].area, k))
            claim = [k for k in range(len(boxes)) if masks[k][i, j]]
            gc = boxes[min(claim, key=lambda k: (boxes[k].area, k))].cls if claim else 0
            if mode == "grabcut":
                out[i, j] = gc
            elif mode == "cam":
                out[i, j] = cam[i, j] if cam[i, j] in (0, boxes[k_rect].cls) else 255
            else:
                out[i, j] = gc if cam[i, j] == gc else 255
    return out


@pytest.mark.parametrize("mode", ["grabcut", "cam", "cam_and_grabcut"])
def test_two_overlapping_boxes(mode):
    rng = np.random.default_rng(0)
    boxes = [BIG, SMALL]
    masks = [rect(b) & (rng.random(HW) < 0.7) for b in boxes]
    cam = rng.choice(np.array([0, 7, 15, 3, 255], np.uint8), size=HW)
    got = box_seed_label(boxes, HW, mode, grabcut_masks=masks, cam_seed=cam)
    np.testing.assert_array_equal(got, reference_box_seed(boxes, masks, cam, mode))
    assert (got[~(rect(BIG) | rect(SMALL))] == 0).all()


def test_overlap_goes_to_smallest_box():
    masks = [rect(BIG), rect(SMALL)]
    got = box_seed_label([BIG, SMALL], HW, "grabcut", grabcut_masks=masks)
    assert got[5, 7] == 15 and got[2, 2] == 7 and got[11, 13] == 0 and got[10, 12] == 15
    cam = np.full(HW, 7, np.uint8)  # CAM says the big box's class everywhere
    got = box_seed_label([BIG, SMALL], HW, "cam_and_grabcut", grabcut_masks=masks, cam_seed=cam)
    assert got[5, 7] == 255 and got[2, 2] == 7 and got[11, 13] == 0


def test_grabcut_fallback_to_whole_box(monkeypatch):
    monkeypatch.setattr(box_labels.cv2, "grabCut", lambda *a, **k: None)  # leaves the mask empty
    image = np.random.default_rng(0).integers(0, 255, (*HW, 3), dtype=np.uint8)
    masks = box_labels.grabcut_box_masks(image, [BIG, SMALL])
    got = box_seed_label([BIG, SMALL], HW, "grabcut", grabcut_masks=masks)
    np.testing.assert_array_equal(got, box_labels.box_fill_label([BIG, SMALL], HW))
    assert (got == 7).sum() == 100 - 4 * 6 and (got == 15).sum() == 49


def test_box_mode_needs_inputs():
    with pytest.raises(ValueError, match="CAM seed"):
        box_seed_label([BIG], HW, "cam")
    with pytest.raises(ValueError, match="GrabCut"):
        box_seed_label([BIG], HW, "grabcut")


def test_scribble_crossing_two_superpixels():
    segments = np.zeros((6, 9), np.int64)
    segments[:, 3:6] = 1
    segments[:, 6:] = 2
    scribble = np.full((6, 9), 255, np.uint8)
    scribble[2, 1:5] = 3  # class 3 crosses segments 0 and 1
    scribble[4, 4] = 5  # segment 1 also has class 5
    got = scribble_superpixel_label(segments, scribble)
    assert (got[:, :3] == 3).all()  # only class 3 touches segment 0
    assert (got[:, 3:] == 255).all()  # segment 1: two classes; segment 2: no stroke
    scribble[5, 7] = 0  # a background stroke claims segment 2
    assert (scribble_superpixel_label(segments, scribble)[:, 6:] == 0).all()


def test_superpixel_count_scales_with_area():
    assert scaled_n_segments(1000, (375, 500)) == 1000
    assert scaled_n_segments(1000, (75, 100)) == 40
    assert scaled_n_segments(1000, (2, 2)) == 1
    yy, xx = np.mgrid[:60, :80]
    image = np.stack([xx * 3, yy * 4, (xx + yy) * 2], -1).astype(np.uint8)  # smooth colour ramps
    seg = superpixels(image, n_segments=1000)  # 1000 at VOC size = 26 here
    assert seg.shape == (60, 80) and seg.min() == 0 and 13 <= seg.max() + 1 <= 52


def test_scribble_override():
    cam = np.array([[0, 4, 255]], np.uint8)
    scribble = np.array([[255, 9, 0]], np.uint8)
    assert scribble_override_label(cam, scribble).tolist() == [[0, 9, 0]]


def test_points_discs_and_cam_merge():
    h, w = 20, 30
    cam = np.zeros((h, w), np.uint8)
    cam[:, 10:20] = 8  # class 8 has a point
    cam[:, 20:] = 12  # class 12 has no point -> 255
    cam[0, 0] = 255
    points = [Point(8, 0, 10), Point(3, 15, 19)]  # one on the left border, one on the bottom border
    got = point_seed_label(points, cam, radius=3)
    want = np.where(cam == 12, 255, cam)
    for i in range(h):
        for j in range(w):
            d = [(j - p.x) ** 2 + (i - p.y) ** 2 for p in points]
            if min(d) <= 9:
                want[i, j] = points[int(np.argmin(d))].cls
    np.testing.assert_array_equal(got, want)
    assert (got[:, 20:] == 255).all()
    assert (got == 3).sum() == 7 + 5 + 5 + 1  # half disc on the bottom border: rows 19, 18, 17, 16
    assert got[10, 0] == 8 and got[10, 4] == 0


def test_overlapping_discs_take_the_nearest_point():
    cam = np.zeros((5, 12), np.uint8)
    got = point_seed_label([Point(2, 3, 2), Point(9, 7, 2)], cam, radius=3)
    assert got[2, 4].item() == 2 and got[2, 6].item() == 9 and got[2, 5].item() == 2  # tie -> first


def test_bad_inputs_are_named():
    with pytest.raises(ValueError, match="outside"):
        point_seed_label([Point(1, 30, 2)], np.zeros((5, 12), np.uint8))
    with pytest.raises(ValueError, match="seeds/x.png.*size"):
        check_label(np.zeros((4, 5), np.uint8), (5, 4), "seeds/x.png")
    with pytest.raises(ValueError, match="unknown class values \\[21\\]"):
        check_label(np.full((2, 2), 21, np.uint8), (2, 2), "s.png")


@pytest.mark.parametrize("mode", ["grabcut", "cam", "cam_and_grabcut"])
def test_dropped_box_area_is_unknown_not_background(mode):
    """A box the reader dropped (e.g. inverted) still marks an object: its area is 255, never seed 0."""
    hw = (12, 16)
    kept = [Box(cls=3, x0=1, y0=1, x1=4, y1=4)]
    dropped = [Box(cls=8, x0=8, y0=2, x1=14, y1=9)]
    cam_seed = np.zeros(hw, np.uint8)
    cam_seed[1:5, 1:5] = 3
    masks = [np.zeros(hw, bool)]
    masks[0][1:5, 1:5] = True
    label = box_seed_label(kept, hw, mode, grabcut_masks=masks, cam_seed=cam_seed, unknown=dropped)
    expected = np.zeros(hw, np.uint8)
    expected[1:5, 1:5] = 3
    expected[2:10, 8:15] = 255
    np.testing.assert_array_equal(label, expected)
    only_dropped = box_seed_label([], hw, mode, grabcut_masks=[], cam_seed=cam_seed, unknown=dropped)
    assert (only_dropped[2:10, 8:15] == 255).all() and only_dropped.sum() == 255 * 8 * 7
