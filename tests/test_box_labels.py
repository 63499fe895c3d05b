import numpy as np
import pytest

import make_baseline_labels
from tool import cli
from tool.box_labels import box_class_mask, box_fill_label, grabcut_box_masks, grabcut_label, smallest_box_owner
from tool.label_io import read_label_png
from voc12.annotations import read_boxes
from voc12.synthetic import generate_sample, image_id, write_lists, write_sample
from vocabulary import Box


def _owner_loop(boxes, hw):
    """Per pixel: the index of the smallest box containing it (earliest on ties), -1 if none."""
    owner = np.full(hw, -1)
    for y in range(hw[0]):
        for x in range(hw[1]):
            best = None
            for k, b in enumerate(boxes):
                if b.x0 <= x <= b.x1 and b.y0 <= y <= b.y1:
                    area = (b.x1 - b.x0 + 1) * (b.y1 - b.y0 + 1)
                    if best is None or area < best[0]:
                        best = (area, k)
            if best is not None:
                owner[y, x] = best[1]
    return owner


def test_box_class_mask_matches_a_loop_over_pixels_and_boxes():
    rng = np.random.default_rng(3)
    hw = (9, 13)
    for _ in range(5):
        boxes = []
        for _ in range(rng.integers(0, 4)):
            x0, x1 = sorted(rng.integers(0, hw[1], 2))
            y0, y1 = sorted(rng.integers(0, hw[0], 2))
            boxes.append(Box(int(rng.integers(1, 21)), int(x0), int(y0), int(x1), int(y1)))
        expected = np.zeros((21, *hw), bool)
        for y in range(hw[0]):
            for x in range(hw[1]):
                expected[0, y, x] = True
                for b in boxes:
                    if b.x0 <= x <= b.x1 and b.y0 <= y <= b.y1:
                        expected[b.cls, y, x] = True
        assert np.array_equal(box_class_mask(boxes, hw, 21), expected)


def test_box_fill_smallest_box_on_top():
    big, small = Box(3, 1, 1, 8, 6), Box(7, 4, 2, 6, 4)
    for boxes in ([big, small], [small, big]):
        label = box_fill_label(boxes, (8, 10))
        assert label.dtype == np.uint8
        assert np.all(label[2:5, 4:7] == 7)
        assert np.sum(label == 3) == 8 * 6 - 9 and np.sum(label == 0) == 80 - 48


def test_owner_matches_a_pixel_loop_with_ties():
    rng = np.random.default_rng(0)
    boxes = []
    for _ in range(6):
        x0, y0 = rng.integers(0, 12, 2)
        w, h = rng.integers(1, 8, 2)
        boxes.append(Box(int(rng.integers(1, 21)), int(x0), int(y0), int(x0 + w), int(y0 + h)))
    boxes.append(Box(5, boxes[0].x0 + 1, boxes[0].y0, boxes[0].x1 + 1, boxes[0].y1))  # same area as box 0
    assert np.array_equal(smallest_box_owner(boxes, (16, 18)), _owner_loop(boxes, (16, 18)))


def test_owner_with_masks_uses_only_claimed_pixels():
    big, small = Box(1, 0, 0, 5, 5), Box(2, 2, 2, 4, 4)
    m_big = np.zeros((6, 6), bool)
    m_big[:, :3] = True
    m_small = np.zeros((6, 6), bool)
    m_small[2, 2] = True
    owner = smallest_box_owner([big, small], (6, 6), [m_big, m_small])
    expected = np.full((6, 6), -1)
    expected[:, :3] = 0
    expected[2, 2] = 1
    assert np.array_equal(owner, expected)


def test_grabcut_falls_back_to_the_whole_box():
    uniform = np.full((40, 50, 3), 120, np.uint8)
    box = Box(4, 10, 5, 29, 24)
    whole = np.zeros((40, 50), bool)
    whole[5:25, 10:30] = True
    assert np.array_equal(grabcut_box_masks(uniform, [box])[0], whole)
    cover_all = Box(4, 0, 0, 49, 39)  # no background left for GrabCut
    assert grabcut_box_masks(uniform, [cover_all])[0].all()
    rng = np.random.default_rng(1)
    noisy = rng.integers(0, 256, (40, 50, 3), dtype=np.uint8)
    assert np.array_equal(grabcut_box_masks(noisy, [box], min_iou=1.01)[0], whole)


def test_grabcut_finds_a_disc_and_resolves_overlaps():
    yy, xx = np.mgrid[:60, :60]
    disc = (yy - 30) ** 2 + (xx - 30) ** 2 <= 12 ** 2
    image = np.zeros((60, 60, 3), np.uint8)
    image[...] = (20, 40, 200)
    image[disc] = (230, 40, 20)
    box = Box(9, 16, 16, 44, 44)
    mask = grabcut_box_masks(image, [box])[0]
    assert np.sum(mask & disc) / np.sum(mask | disc) > 0.8
    label = grabcut_label(image, [box])
    assert set(np.unique(label).tolist()) == {0, 9} and np.array_equal(label == 9, mask)
    assert np.array_equal(grabcut_label(image, [box]), label)  # deterministic


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    out = tmp_path_factory.mktemp("voc")
    ids = [image_id(i) for i in range(3)]
    for i, name in enumerate(ids):
        write_sample(out, name, generate_sample(2, i, 64, 96))
    write_lists(out, ids, [])
    return out


@pytest.mark.parametrize("method", ["box_fill", "grabcut", "seeds"])
def test_make_baseline_labels(root, tmp_path, method):
    argv = ["--method", method, "--voc12_root", str(root), "--list", "train", "--out_dir", str(tmp_path)]
    if method == "seeds":
        argv += ["--seed_dir", str(root / "Scribbles")]
    assert make_baseline_labels.main(make_baseline_labels.get_args_parser().parse_args(argv)) == 0
    for name in (image_id(i) for i in range(3)):
        out = read_label_png(tmp_path / f"{name}.png")
        gt = read_label_png(root / "SegmentationClass" / f"{name}.png")
        assert out.shape == gt.shape and 255 not in out
        if method == "box_fill":
            boxes = read_boxes(root / "Annotations" / f"{name}.xml")
            assert np.array_equal(out, box_fill_label(boxes, gt.shape))
        elif method == "seeds":
            scribble = read_label_png(root / "Scribbles" / f"{name}.png")
            assert np.array_equal(out, np.where(scribble == 255, 0, scribble))
        else:
            assert set(np.unique(out).tolist()) <= set(np.unique(gt).tolist())


def test_seeds_method_needs_a_seed_dir(root, tmp_path):
    args = make_baseline_labels.get_args_parser().parse_args(
        ["--method", "seeds", "--voc12_root", str(root), "--list", "train", "--out_dir", str(tmp_path)])
    with pytest.raises(cli.UserError, match="--seed_dir"):
        make_baseline_labels.main(args)
