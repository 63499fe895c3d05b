import json

import numpy as np
import pytest

from tool import cli
from voc12.make_cls_labels import (
    build_cls_labels,
    get_args_parser,
    image_labels,
    load_cls_labels,
    main,
    save_cls_labels,
)
from vocabulary import CAT_LIST

OBJECTS = {"2007_000001": ["dog", "person"], "2007_000002": ["aeroplane"], "2008_000003": ["tvmonitor"]}


def _fake_root(tmp_path):
    root = tmp_path / "VOC2012"
    (root / "Annotations").mkdir(parents=True)
    for image_id, names in OBJECTS.items():
        objects = "".join(f"<object><name>{n}</name><difficult>0</difficult><bndbox><xmin>1</xmin><ymin>1"
                          "</ymin><xmax>2</xmax><ymax>2</ymax></bndbox></object>" for n in names)
        (root / "Annotations" / f"{image_id}.xml").write_text(f"<annotation>{objects}</annotation>")
    seg = root / "ImageSets" / "Segmentation"
    seg.mkdir(parents=True)
    (seg / "train_aug.txt").write_text("".join(f"{i}\n" for i in OBJECTS))
    return root


def _reference():
    return {i: np.array([float(c in names) for c in CAT_LIST], np.float32) for i, names in OBJECTS.items()}


def _assert_same(a, b):
    assert list(a) == list(b)
    for k in a:
        assert a[k].dtype == np.float32 and a[k].shape == (20,)
        np.testing.assert_array_equal(a[k], b[k])


def test_build_from_xml(tmp_path):
    _assert_same(build_cls_labels(_fake_root(tmp_path), list(OBJECTS)), _reference())


def test_npz_round_trip_has_no_pickles(tmp_path):
    path = tmp_path / "labels.npz"
    save_cls_labels(path, _reference())
    with np.load(path, allow_pickle=False) as data:
        assert sorted(data.files) == ["ids", "labels"]
        assert data["ids"].dtype.kind == "U" and data["labels"].shape == (3, 20)
        assert data["labels"].dtype == np.float32
    _assert_same(load_cls_labels(path), _reference())


def test_json_round_trip(tmp_path):
    path = tmp_path / "labels.json"
    save_cls_labels(path, _reference())
    assert json.loads(path.read_text())["2007_000002"][0] == 1.0
    _assert_same(load_cls_labels(path), _reference())


def test_save_rejects_wrong_length(tmp_path):
    with pytest.raises(ValueError, match="bad_id"):
        save_cls_labels(tmp_path / "x.npz", {"bad_id": np.zeros(21)})


def test_legacy_npy_needs_explicit_flag(tmp_path):
    path = tmp_path / "cls_labels.npy"
    legacy = {k: v.astype(np.float64) for k, v in _reference().items()}
    np.save(path, legacy, allow_pickle=True)
    # the message names the file and gives commands and flags that exist (no keyword-only advice)
    with pytest.raises(ValueError, match="--cls_labels .*cls_labels.npy.*voc12.make_cls_labels --voc12_root"):
        load_cls_labels(path)
    with pytest.raises(ValueError, match="leave --cls_labels out") as err:
        image_labels(tmp_path, list(OBJECTS), path)
    assert "legacy_npy" not in str(err.value).split(": ", 1)[1]
    _assert_same(load_cls_labels(path, legacy_npy=True), _reference())
    _assert_same(image_labels(tmp_path, list(OBJECTS), path, legacy_npy=True), _reference())

    int_keys = tmp_path / "irn.npy"
    np.save(int_keys, {2007000001: legacy["2007_000001"]}, allow_pickle=True)
    assert list(load_cls_labels(int_keys, legacy_npy=True)) == ["2007_000001"]


def test_image_labels_from_file_or_xml(tmp_path):
    root = _fake_root(tmp_path)
    ids = ["2008_000003", "2007_000001"]
    ref = _reference()
    from_xml = image_labels(root, ids)
    path = tmp_path / "l.npz"
    save_cls_labels(path, ref)
    from_file = image_labels(root, ids, path)
    _assert_same(from_xml, {i: ref[i] for i in ids})
    _assert_same(from_file, from_xml)
    with pytest.raises(cli.UserError, match="2099_000000"):
        image_labels(root, ["2099_000000"], path)
    with pytest.raises(FileNotFoundError, match="missing.npz"):
        load_cls_labels(tmp_path / "missing.npz")


def test_script(tmp_path, capsys):
    root = _fake_root(tmp_path)
    out = tmp_path / "out" / "cls_labels.npz"
    main(get_args_parser().parse_args(["--voc12_root", str(root), "--list", "train_aug.txt",
                                       "--out", str(out)]))
    _assert_same(load_cls_labels(out), _reference())
    assert "3 image labels" in capsys.readouterr().out
