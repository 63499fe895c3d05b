import json
import shutil

import numpy as np
import pytest

import make_seed_labels
import make_synthetic_voc
from tool.label_io import read_label_png, save_label_png
from voc12.annotations import read_boxes, read_points


@pytest.fixture(scope="module")
def voc(tmp_path_factory):
    """A tiny synthetic root and 'CAM seeds' = ground truth with a ring of 255 at object borders."""
    root = tmp_path_factory.mktemp("voc")
    make_synthetic_voc.main(make_synthetic_voc.get_args_parser().parse_args(
        ["--out", str(root), "--num_train", "3", "--num_val", "1", "--min_size", "48", "--max_size", "64"]))
    ids = (root / "ImageSets/Segmentation/train.txt").read_text().split()
    for image_id in ids:
        gt = read_label_png(root / "SegmentationClass" / f"{image_id}.png")
        seeds = gt.copy()
        seeds[np.roll(gt, 2, axis=1) != gt] = 255
        save_label_png(root / "cam_seeds" / f"{image_id}.png", seeds)
    return root, ids


def run(root, out, kind, *extra):
    return make_seed_labels.main(make_seed_labels.get_args_parser().parse_args([
        "--type", kind, "--voc12_root", str(root), "--list", "train.txt",
        "--cam_seed_dir", str(root / "cam_seeds"), "--out_dir", str(out), *extra]))


@pytest.mark.parametrize("kind,extra", [
    ("image", []), ("box", []), ("box", ["--box_mode", "grabcut"]), ("box", ["--box_mode", "cam"]),
    ("scribble", []), ("scribble", ["--scribble_mode", "override"]), ("point", ["--point_radius", "3"]),
])
def test_every_type_writes_consistent_seeds(voc, tmp_path, kind, extra):
    root, ids = voc
    summary = run(root, tmp_path, kind, *extra)
    assert (summary.done, summary.failed) == (len(ids), [])
    for image_id in ids:
        gt = read_label_png(root / "SegmentationClass" / f"{image_id}.png")
        cam = read_label_png(root / "cam_seeds" / f"{image_id}.png")
        seed = read_label_png(tmp_path / f"{image_id}.png")
        assert seed.shape == gt.shape
        if kind == "image":
            np.testing.assert_array_equal(seed, cam)
        if kind == "box":
            boxes = read_boxes(root / "Annotations" / f"{image_id}.xml", gt.shape)
            inside = np.zeros(gt.shape, bool)
            for b in boxes:
                inside[b.y0:b.y1 + 1, b.x0:b.x1 + 1] = True
            assert (seed[~inside] == 0).all() and (seed[inside] != 0).any()
            if extra != ["--box_mode", "grabcut"]:  # CAM seeds are correct here, so labels must be too
                labelled = seed != 255
                assert (seed[labelled] == gt[labelled]).all()
        if kind == "scribble":
            scribble = read_label_png(root / "Scribbles" / f"{image_id}.png")
            stroke = scribble != 255
            if extra:
                np.testing.assert_array_equal(seed[stroke], scribble[stroke])
                np.testing.assert_array_equal(seed[~stroke], cam[~stroke])
            else:
                assert ((seed[stroke] == scribble[stroke]) | (seed[stroke] == 255)).all()
                assert (seed != 255).sum() > stroke.sum()
        if kind == "point":
            for p in read_points(root / "Points" / f"{image_id}.json"):
                assert seed[p.y, p.x] == p.cls


def test_bad_inputs_are_named_and_the_run_goes_on(voc, tmp_path):
    root, ids = voc
    bad = tmp_path / "root"
    shutil.copytree(root, bad)
    (bad / "Points" / f"{ids[0]}.json").write_text(json.dumps([{"class": 3, "x": 5000, "y": 1}]))
    xml = bad / "Annotations" / f"{ids[1]}.xml"
    xml.write_text(xml.read_text().replace("<name>", "<name>unicorn", 1))
    summary = run(bad, tmp_path / "point", "point")
    assert summary.done == 2 and len(summary.failed) == 1
    assert f"Points/{ids[0]}.json" in summary.failed[0][1] and "outside" in summary.failed[0][1]
    summary = run(bad, tmp_path / "box", "box")
    assert summary.done == 2 and f"Annotations/{ids[1]}.xml" in summary.failed[0][1]
    assert "unicorn" in summary.failed[0][1]
    save_label_png(bad / "cam_seeds" / f"{ids[2]}.png", np.zeros((3, 3), np.uint8))
    summary = run(bad, tmp_path / "image", "image")
    assert [i for i, _ in summary.failed] == [ids[2]] and "does not match" in summary.failed[0][1]


def test_missing_cam_seed_dir_is_a_flag_error(voc, tmp_path):
    root, _ = voc
    args = make_seed_labels.get_args_parser().parse_args(
        ["--type", "point", "--voc12_root", str(root), "--list", "train.txt", "--out_dir", str(tmp_path),
         "--cam_seed_dir", str(tmp_path / "no_seeds")])
    with pytest.raises(FileNotFoundError, match="--cam_seed_dir"):
        make_seed_labels.main(args)


def test_inverted_box_area_is_unknown_in_box_seeds(voc, tmp_path):
    """An inverted box is dropped with a warning; its object's pixels become 255, not background."""
    root, ids = voc
    xml = root / "Annotations" / f"{ids[0]}.xml"
    original = xml.read_text()
    box = read_boxes(xml)[0]
    # swap xmin and xmax of the first object (1-based in the file)
    inverted = original.replace(f"<xmin>{box.x0 + 1}</xmin>", "<xmin>TMP</xmin>", 1).replace(
        f"<xmax>{box.x1 + 1}</xmax>", f"<xmax>{box.x0 + 1}</xmax>", 1).replace("<xmin>TMP</xmin>",
                                                                               f"<xmin>{box.x1 + 1}</xmin>", 1)
    (tmp_path / "ann").mkdir()
    for image_id in ids:
        shutil.copy(root / "Annotations" / f"{image_id}.xml", tmp_path / "ann" / f"{image_id}.xml")
    (tmp_path / "ann" / f"{ids[0]}.xml").write_text(inverted)
    with pytest.warns(UserWarning, match="inverted"):
        summary = run(root, tmp_path / "out", "box", "--annotation_dir", str(tmp_path / "ann"),
                      "--box_mode", "grabcut")
    assert summary.exit_code == 0
    label = read_label_png(tmp_path / "out" / f"{ids[0]}.png")
    assert (label[box.y0:box.y1 + 1, box.x0:box.x1 + 1] == 255).all()


def test_default_output_folders_are_the_published_names():
    parse = make_seed_labels.get_args_parser().parse_args
    names = {kind: make_seed_labels.default_out_dir(parse(["--type", kind, "--voc12_root", "V"]))
             for kind in ("image", "box", "point")}
    names["override"] = make_seed_labels.default_out_dir(
        parse(["--type", "scribble", "--scribble_mode", "override", "--voc12_root", "V"]))
    names["scribble"] = make_seed_labels.default_out_dir(parse(["--type", "scribble", "--voc12_root", "V"]))
    assert {k: str(v) for k, v in names.items()} == {
        "image": "data/Init_Label/SEAM_Image", "box": "data/Init_Label/SEAM_Box",
        "point": "data/Init_Label/SEAM_Point", "override": "data/Init_Label/SEAM_Scribble",
        "scribble": "data/Init_Label/Scribble_SuperPixel"}
