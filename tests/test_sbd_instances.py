"""SBD instance ground truth: ``inst/<id>.mat`` (scipy.io.savemat in SBD's GTinst struct layout: Segmentation,
Boundaries, Categories) read by voc12.prepare.read_sbd_inst and by ``make_instance_labels.py --label_dir gt
--sbd_inst``, VOC's own SegmentationObject PNGs winning where both exist."""

import json

import numpy as np
import pytest
import scipy.io
from PIL import Image
from pycocotools import mask as mask_utils

import make_instance_labels
from tool.cli import UserError
from tool.label_io import save_label_png
from voc12.annotations import AnnotationError
from voc12.prepare import read_sbd_inst


def write_inst_mat(path, inst, categories):
    """SBD's layout: struct GTinst with the instance map, per-instance boundary cells and class ids (column)."""
    boundaries = np.empty((len(categories), 1), dtype=object)
    for k in range(len(categories)):
        boundaries[k, 0] = np.zeros(inst.shape, np.uint8)
    scipy.io.savemat(path, {"GTinst": {"Segmentation": inst.astype(np.uint8), "Boundaries": boundaries,
                                       "Categories": np.asarray(categories, np.uint8).reshape(-1, 1)}})


def random_instances(rng, hw, n):
    """A random map of ``n`` instances (each present) on background, and random classes 1..20."""
    inst = rng.integers(0, n + 1, hw).astype(np.uint8)
    inst.flat[:n + 1] = np.arange(n + 1)
    return inst, rng.integers(1, 21, n).tolist()


@pytest.mark.parametrize("n", [0, 1, 4])
def test_read_sbd_inst_returns_the_map_and_classes(tmp_path, n):
    rng = np.random.default_rng(n)
    inst, classes = random_instances(rng, (7, 9), n)
    write_inst_mat(tmp_path / "a.mat", inst, classes)
    got, got_classes = read_sbd_inst((tmp_path / "a.mat").read_bytes(), "a.mat")
    np.testing.assert_array_equal(got, inst)
    assert got_classes == classes


def test_read_sbd_inst_refuses_other_files(tmp_path):
    scipy.io.savemat(tmp_path / "cls.mat", {"GTcls": {"Segmentation": np.zeros((3, 3), np.uint8)}})
    with pytest.raises(AnnotationError, match="cls.mat: not an SBD instance .mat"):
        read_sbd_inst((tmp_path / "cls.mat").read_bytes(), "cls.mat")
    write_inst_mat(tmp_path / "bad.mat", np.full((3, 3), 2, np.uint8), [5])
    with pytest.raises(AnnotationError, match="bad.mat: instance indices"):
        read_sbd_inst((tmp_path / "bad.mat").read_bytes(), "bad.mat")
    write_inst_mat(tmp_path / "cat.mat", np.ones((3, 3), np.uint8), [21])
    with pytest.raises(AnnotationError, match="cat.mat: GTinst.Categories"):
        read_sbd_inst((tmp_path / "cat.mat").read_bytes(), "cat.mat")


def test_make_instance_labels_reads_sbd_where_voc_has_no_png(tmp_path, capsys):
    rng = np.random.default_rng(0)
    voc, sbd = tmp_path / "VOC2012", tmp_path / "inst"
    for folder in (voc / "SegmentationObject", voc / "SegmentationClass", sbd):
        folder.mkdir(parents=True)
    # 2007_000001: both VOC and SBD (VOC wins); 2008_000002: SBD only; 2009_000003: neither
    voc_obj = np.zeros((6, 8), np.uint8)
    voc_obj[1:3, 1:4], voc_obj[4:6, 5:8], voc_obj[0, 0] = 1, 2, 255
    voc_seg = np.where(voc_obj == 1, 7, np.where(voc_obj == 2, 12, voc_obj)).astype(np.uint8)
    save_label_png(voc / "SegmentationObject" / "2007_000001.png", voc_obj)
    save_label_png(voc / "SegmentationClass" / "2007_000001.png", voc_seg)
    write_inst_mat(sbd / "2007_000001.mat", np.ones((6, 8), np.uint8), [3])
    sbd_inst, sbd_classes = random_instances(rng, (5, 7), 3)
    write_inst_mat(sbd / "2008_000002.mat", sbd_inst, sbd_classes)
    ids = ["2007_000001", "2008_000002", "2009_000003"]
    (tmp_path / "list.txt").write_text("\n".join(ids) + "\n")
    out_json, out_dir = tmp_path / "gt.json", tmp_path / "png"
    status = make_instance_labels.main(make_instance_labels.get_args_parser().parse_args(
        ["--voc12_root", str(voc), "--infer_list", str(tmp_path / "list.txt"), "--label_dir", "gt",
         "--sbd_inst", str(sbd), "--out_json", str(out_json), "--out_dir", str(out_dir)]))
    assert status == 1
    err = capsys.readouterr().err
    assert "failed 2009_000003" in err and "2009_000003.png" in err and "2009_000003.mat" in err
    coco = json.loads(out_json.read_text())
    assert sorted(image["id"] for image in coco["images"]) == [2007000001, 2008000002]
    expected = {2007000001: (voc_obj, [7, 12]), 2008000002: (sbd_inst, sbd_classes)}
    for image_id, (inst, classes) in expected.items():
        anns = sorted((a for a in coco["annotations"] if a["image_id"] == image_id), key=lambda a: a["instance"])
        assert [a["category_id"] for a in anns] == classes
        for k, ann in enumerate(anns, start=1):
            np.testing.assert_array_equal(mask_utils.decode(ann["segmentation"]).astype(bool), inst == k)
    with Image.open(out_dir / "2008_000002.png") as img:
        np.testing.assert_array_equal(np.array(img), sbd_inst)


def test_sbd_inst_flag_needs_gt_and_a_folder(tmp_path):
    parse = make_instance_labels.get_args_parser().parse_args
    (tmp_path / "labels").mkdir()
    (tmp_path / "list.txt").write_text("2007_000001\n")
    common = ["--voc12_root", str(tmp_path), "--infer_list", str(tmp_path / "list.txt"), "--out_json",
              str(tmp_path / "x.json")]
    with pytest.raises(UserError, match="--sbd_inst is read only with --label_dir gt"):
        make_instance_labels.main(parse(common + ["--label_dir", str(tmp_path / "labels"), "--sbd_inst",
                                                  str(tmp_path)]))
    with pytest.raises(UserError, match="--sbd_inst .*nowhere: no such folder"):
        make_instance_labels.main(parse(common + ["--label_dir", "gt", "--sbd_inst", str(tmp_path / "nowhere")]))
