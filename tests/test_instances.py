"""tool.instances: instance maps from class maps and boxes, the ground-truth form and the COCO round trip."""

import json

import numpy as np
import pytest

from tool.instances import (
    coco_annotations,
    coco_dataset,
    coco_image,
    coco_image_id,
    decode_mask,
    encode_mask,
    instance_map,
    instances_from_ground_truth,
    instances_from_labels,
    read_instance_png,
)
from tool.label_io import save_label_png
from vocabulary import IGNORE, Box


def reference_instances(label, boxes):
    """Pixel by pixel: the smallest box (then the earliest) of the pixel's class that contains it."""
    h, w = label.shape
    inst = np.zeros((h, w), np.uint8)
    for y in range(h):
        for x in range(w):
            inside = [k for k, b in enumerate(boxes) if b.x0 <= x <= b.x1 and b.y0 <= y <= b.y1]
            own = [k for k in inside if boxes[k].cls == label[y, x]]
            if own:
                inst[y, x] = min(own, key=lambda k: (boxes[k].area, k)) + 1
            elif inside and label[y, x] == IGNORE:
                inst[y, x] = IGNORE
    for k, b in enumerate(boxes, start=1):
        if not (inst == k).any():
            rect = np.zeros((h, w), bool)
            rect[b.y0:b.y1 + 1, b.x0:b.x1 + 1] = True
            inst[rect & (inst == 0)] = k
    return inst


def random_boxes(rng, h, w, n):
    boxes = []
    for _ in range(n):
        x0, x1 = sorted(rng.integers(0, w, 2).tolist())
        y0, y1 = sorted(rng.integers(0, h, 2).tolist())
        boxes.append(Box(int(rng.integers(1, 4)), x0, y0, x1, y1))
    return boxes


@pytest.mark.parametrize("seed", range(6))
def test_instances_match_the_pixel_reference_on_random_maps(seed):
    rng = np.random.default_rng(seed)
    label = rng.choice(np.array([0, 1, 2, 3, IGNORE], np.uint8), size=(14, 17), p=[.4, .2, .15, .15, .1])
    boxes = random_boxes(rng, 14, 17, int(rng.integers(1, 6)))
    result = instances_from_labels(label, boxes)
    np.testing.assert_array_equal(result.inst, reference_instances(label, boxes))
    assert result.classes == [b.cls for b in boxes]


def test_overlap_goes_to_the_smaller_box_and_an_empty_box_takes_its_free_rectangle():
    label = np.zeros((10, 12), np.uint8)
    label[1:9, 1:11] = 5
    label[4, 4] = IGNORE
    big, small, cow = Box(5, 1, 1, 10, 8), Box(5, 6, 2, 9, 5), Box(10, 0, 0, 2, 2)
    result = instances_from_labels(label, [big, small, cow])
    assert (result.inst[2:6, 6:10] == 2).all()  # the overlap: the smaller box
    assert result.inst[7, 2] == 1 and result.inst[4, 4] == IGNORE
    # the cow box holds no cow pixel: it gets its rectangle's pixels that no instance owns
    assert result.filled == [3] and result.empty == []
    expected = np.zeros((3, 3), bool)
    expected[0, :] = expected[:, 0] = True
    np.testing.assert_array_equal(result.inst[0:3, 0:3] == 3, expected)


def test_a_box_covered_by_other_instances_is_empty_and_left_out_of_coco():
    label = np.zeros((8, 8), np.uint8)
    label[0:6, 0:6] = 1
    result = instances_from_labels(label, [Box(1, 0, 0, 5, 5), Box(2, 1, 1, 3, 3)])
    assert result.empty == [2] and result.filled == []
    annotations = coco_annotations(result, 1, first_id=7)
    assert [a["instance"] for a in annotations] == [1] and annotations[0]["id"] == 7


def test_ground_truth_class_is_the_majority_class_under_each_index():
    obj = np.zeros((6, 6), np.uint8)
    obj[0:3, 0:3], obj[3:6, 3:6], obj[0, 5] = 1, 2, IGNORE
    seg = np.zeros((6, 6), np.uint8)
    seg[0:3, 0:3], seg[3:6, 3:6] = 7, 12
    seg[0, 0] = 3
    result = instances_from_ground_truth(seg, obj)
    assert result.classes == [7, 12] and result.empty == []


def test_coco_json_round_trip_through_pycocotools(tmp_path):
    rng = np.random.default_rng(0)
    label = rng.choice(np.array([0, 1, 2], np.uint8), size=(20, 30))
    boxes = [Box(1, 2, 3, 20, 15), Box(2, 10, 0, 29, 19), Box(1, 0, 0, 5, 5)]
    labels = instances_from_labels(label, boxes)
    dataset = coco_dataset([coco_image("2026_000004", (20, 30))], coco_annotations(labels, 2026000004, 1, boxes),
                           "test")
    path = tmp_path / "inst.json"
    path.write_text(json.dumps(dataset))
    from pycocotools.coco import COCO
    coco = COCO(str(path))
    assert coco.getImgIds() == [2026000004]
    for ann in coco.loadAnns(coco.getAnnIds()):
        np.testing.assert_array_equal(coco.annToMask(ann).astype(bool), labels.inst == ann["instance"])
        box = boxes[ann["instance"] - 1]
        assert ann["bbox"] == [box.x0, box.y0, box.x1 - box.x0 + 1, box.y1 - box.y0 + 1]
        assert ann["area"] == (labels.inst == ann["instance"]).sum()


def test_mask_rle_and_polygon_decoding():
    mask = np.zeros((9, 11), bool)
    mask[2:7, 3:9] = True
    np.testing.assert_array_equal(decode_mask(encode_mask(mask), (9, 11)), mask)
    flat = mask.ravel(order="F").astype(int)  # COCO runs: column-major, starting with a run of zeros
    edges = np.flatnonzero(np.diff(np.r_[0, flat, 1 - flat[-1]]))
    uncompressed = {"size": [9, 11], "counts": np.diff(np.r_[0, edges]).tolist()}
    np.testing.assert_array_equal(decode_mask(uncompressed, (9, 11)), mask)
    square = decode_mask([[1.0, 1.0, 5.0, 1.0, 5.0, 5.0, 1.0, 5.0]], (9, 11))
    assert 16 <= square.sum() <= 25


def test_instance_png_and_predicted_map(tmp_path):
    inst = np.array([[0, 1, 2], [37, 255, 0]], np.uint8)  # VOC object maps may hold any index
    save_label_png(tmp_path / "a.png", inst)
    np.testing.assert_array_equal(read_instance_png(tmp_path / "a.png"), inst)
    masks = np.zeros((3, 2, 2), bool)
    masks[0, 0, :], masks[1, :, 0], masks[2] = True, True, True
    out = instance_map(masks, np.array([0.6, 0.9, 0.1]), threshold=0.5)
    np.testing.assert_array_equal(out, [[1, 2], [1, 0]])  # index 1 = best score, drawn on top


def test_coco_image_id_needs_the_voc_form():
    assert coco_image_id("2007_000032") == 2007000032
    with pytest.raises(ValueError, match="YYYY_NNNNNN"):
        coco_image_id("cat")
