import json
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import make_synthetic_voc
from voc12.synthetic import CATEGORIES, add_distractors, generate_sample, image_id, object_masks, write_sample
from vocabulary import CAT_LIST, voc_palette

SMALL = {"min_size": 64, "max_size": 96}


@pytest.fixture(scope="module")
def root(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("synthetic")
    args = make_synthetic_voc.get_args_parser().parse_args(
        ["--out", str(out), "--num_train", "5", "--num_train_aug", "8", "--num_val", "4", "--seed", "7",
         "--min_size", "64", "--max_size", "128"])
    make_synthetic_voc.main(args)
    return out


def _ids(root: Path, name: str) -> list[str]:
    return (root / "ImageSets" / "Segmentation" / f"{name}.txt").read_text().split()


def _xml_objects(path: Path) -> tuple[tuple[int, int], list[tuple[int, int, int, int, int]]]:
    """(H, W) and (class 1..20, x0, y0, x1, y1) 0-based from a VOC XML file, read independently."""
    ann = ET.parse(path).getroot()
    size = (int(ann.find("size/height").text), int(ann.find("size/width").text))
    objects = []
    for obj in ann.findall("object"):
        assert obj.find("difficult").text == "0"
        b = obj.find("bndbox")
        x0, y0, x1, y1 = (int(b.find(t).text) - 1 for t in ("xmin", "ymin", "xmax", "ymax"))
        objects.append((CAT_LIST.index(obj.find("name").text) + 1, x0, y0, x1, y1))
    return size, objects


def test_every_class_has_a_body_and_a_distinctive_part():
    assert sorted(CATEGORIES) == list(range(1, 21))
    codes = {(c.hue, c.pattern) for c in CATEGORIES.values()}
    assert len(codes) == 20  # the part's hue and pattern alone tell every class apart
    assert {c.group for c in CATEGORIES.values()} == {"vehicle", "animal", "indoor"}
    u, v = np.meshgrid(np.linspace(-1.6, 1.6, 161), np.linspace(-1.6, 1.6, 161))
    for cls in range(1, 21):
        body, part = object_masks(cls, u, v)
        whole = body | part
        # both present, inside the drawing window, the part a minority of the object that touches the body
        assert body.any() and part.any(), cls
        assert not (whole[0].any() or whole[-1].any() or whole[:, 0].any() or whole[:, -1].any()), cls
        assert 0.1 < part.sum() / whole.sum() < 0.5, cls
        grown = np.zeros_like(part)
        grown[1:-1, 1:-1] = part[1:-1, 1:-1] | part[:-2, 1:-1] | part[2:, 1:-1] | part[1:-1, :-2] | part[1:-1, 2:]
        assert (grown & body).any(), cls
    for a in range(1, 21):  # classes of one group share the body mask exactly
        for b in range(a + 1, 21):
            same_group = CATEGORIES[a].group == CATEGORIES[b].group
            assert np.array_equal(object_masks(a, u, v)[0], object_masks(b, u, v)[0]) == same_group


def test_layout_and_lists(root):
    train, train_aug, val = _ids(root, "train"), _ids(root, "train_aug"), _ids(root, "val")
    assert train_aug == [f"2026_{i:06d}" for i in range(1, 9)]
    assert train == train_aug[:5]  # as on VOC: train inside train_aug, val apart from both
    assert val == [f"2026_{i:06d}" for i in range(9, 13)]
    assert _ids(root, "trainval") == train + val
    for image in train_aug + val:
        for folder, suffix in (("JPEGImages", "jpg"), ("SegmentationClass", "png"),
                               ("SegmentationObject", "png"), ("Annotations", "xml"), ("Scribbles", "png"),
                               ("Points", "json")):
            assert (root / folder / f"{image}.{suffix}").is_file(), (folder, image)


def test_same_seed_same_bytes(tmp_path):
    for out in (tmp_path / "a", tmp_path / "b"):
        for index in (3, 0):  # the order of generation must not matter
            write_sample(out, image_id(index), generate_sample(11, index, **SMALL))
    files = sorted(p.relative_to(tmp_path / "a") for p in (tmp_path / "a").rglob("*") if p.is_file())
    assert len(files) == 12
    for rel in files:
        assert (tmp_path / "a" / rel).read_bytes() == (tmp_path / "b" / rel).read_bytes(), rel
    assert not np.array_equal(generate_sample(11, 3, **SMALL).image, generate_sample(12, 3, **SMALL).image)


def test_boxes_are_tight_bounds_of_visible_instances(root):
    for image in _ids(root, "train_aug") + _ids(root, "val"):
        (h, w), objects = _xml_objects(root / "Annotations" / f"{image}.xml")
        seg = np.array(Image.open(root / "SegmentationClass" / f"{image}.png"))
        inst = np.array(Image.open(root / "SegmentationObject" / f"{image}.png"))
        assert seg.shape == inst.shape == (h, w)
        assert Image.open(root / "JPEGImages" / f"{image}.jpg").size == (w, h)
        assert 1 <= len(objects) <= 3
        assert set(np.unique(inst).tolist()) <= set(range(len(objects) + 1))
        assert np.array_equal(seg == 0, inst == 0)
        for k, (cls, x0, y0, x1, y1) in enumerate(objects, start=1):
            ys, xs = np.nonzero(inst == k)
            assert len(ys) >= 40
            assert (x0, y0, x1, y1) == (xs.min(), ys.min(), xs.max(), ys.max()), (image, k)
            assert np.all(seg[inst == k] == cls)


def test_scribbles_and_points_lie_on_their_instance(root):
    for image in _ids(root, "train_aug") + _ids(root, "val"):
        _, objects = _xml_objects(root / "Annotations" / f"{image}.xml")
        seg = np.array(Image.open(root / "SegmentationClass" / f"{image}.png"))
        inst = np.array(Image.open(root / "SegmentationObject" / f"{image}.png"))
        scribble = np.array(Image.open(root / "Scribbles" / f"{image}.png"))
        stroke = scribble != 255
        assert np.array_equal(scribble[stroke], seg[stroke])  # every stroke pixel on its own class
        assert (scribble == 0).any()  # background strokes
        for k, (cls, *_) in enumerate(objects, start=1):
            assert (scribble[inst == k] == cls).any(), (image, k)  # one stroke per instance
        points = json.loads((root / "Points" / f"{image}.json").read_text())
        assert all(set(p) == {"class", "x", "y"} for p in points)
        for k, (cls, *_) in enumerate(objects, start=1):
            p = points[k - 1]
            assert p["class"] == cls and inst[p["y"], p["x"]] == k, (image, k)
        background = points[len(objects):]
        assert 1 <= len(background) <= 3
        assert all(p["class"] == 0 and seg[p["y"], p["x"]] == 0 for p in background)


def test_labels_round_trip_through_the_palette(tmp_path):
    sample = generate_sample(5, 2, **SMALL)
    write_sample(tmp_path, "x", sample)
    for folder, expected in (("SegmentationClass", sample.seg), ("SegmentationObject", sample.inst),
                             ("Scribbles", sample.scribble)):
        img = Image.open(tmp_path / folder / "x.png")
        assert img.mode == "P"
        assert np.array_equal(np.array(img.getpalette(), dtype=np.uint8).reshape(-1, 3)[:256], voc_palette())
        assert np.array_equal(np.array(img), expected)
    jpg = np.array(Image.open(tmp_path / "JPEGImages" / "x.jpg")).astype(int)
    assert np.abs(jpg - sample.image).mean() < 12  # JPEG at quality 85..90 stays close


def test_every_class_appears_across_a_few_hundred_images():
    counts = np.zeros(21, int)
    for index in range(300):
        sample = generate_sample(0, index, **SMALL)
        counts[np.unique([b[0] for b in sample.boxes])] += 1
        assert len({b[0] for b in sample.boxes}) == len(set(np.unique(sample.seg)) - {0})
    assert counts[1:].min() >= 10, counts
    assert counts[1:].max() <= 4 * counts[1:].min(), counts


def test_distractors_touch_objects_but_only_paint_background():
    """Distractor blobs are drawn next to the instances, on background pixels only (labels stay true)."""
    rng = np.random.default_rng(3)
    h, w = 96, 120
    owner = np.zeros((h, w), np.int32)
    owner[30:60, 40:80] = 1
    owner[10:25, 90:110] = 2
    image = np.full((h, w, 3), 7.0, np.float32)
    painted = np.zeros((h, w), bool)
    for _ in range(20):
        before = image.copy()
        add_distractors(rng, image, owner)
        painted |= np.any(image != before, axis=-1)
        image[:] = 7.0
    assert not painted[owner > 0].any()
    assert painted.any()
    ring = np.zeros((h, w), bool)  # background pixels next to an object
    ring[29:61, 39:81] = True
    ring &= owner == 0
    assert (painted & ring).any()
