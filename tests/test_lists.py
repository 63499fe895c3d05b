import pytest

import make_voc_lists
from voc12.lists import make_voc_lists as make_lists
from voc12.lists import read_id_list, read_list, resolve_list, write_id_list


def test_read_bare_ids_and_pairs_with_blank_lines(tmp_path):
    bare = tmp_path / "bare.txt"
    bare.write_text("2007_000032\n\n  2008_000002  \nimg.v2\n")
    assert read_id_list(bare) == ["2007_000032", "2008_000002", "img.v2"]

    pairs = tmp_path / "pairs.txt"
    pairs.write_text("/JPEGImages/2007_000032.jpg /SegmentationClassAug/2007_000032.png\n"
                     "\n"
                     "/JPEGImages/a_longer_id_than_voc.jpg /SegmentationClassAug/a_longer_id_than_voc.png\n"
                     "JPEGImages/short.JPG\n")
    assert read_id_list(pairs) == ["2007_000032", "a_longer_id_than_voc", "short"]


def test_missing_list_names_the_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.txt"):
        read_id_list(tmp_path / "nope.txt")


def test_write_read_round_trip(tmp_path):
    ids = ["b", "a", "2007_000032"]
    write_id_list(tmp_path / "sub" / "l.txt", ids)
    assert (tmp_path / "sub" / "l.txt").read_text() == "b\na\n2007_000032\n"
    assert read_id_list(tmp_path / "sub" / "l.txt") == ids


def test_resolve_list(tmp_path):
    root = tmp_path / "VOC2012"
    (root / "ImageSets" / "Segmentation").mkdir(parents=True)
    in_root = root / "ImageSets" / "Segmentation" / "train.txt"
    in_root.write_text("x\n")
    own = tmp_path / "mine.txt"
    own.write_text("y\n")
    assert resolve_list(own, root) == own
    assert resolve_list(str(own), root) == own
    assert resolve_list("train.txt", root) == in_root
    assert resolve_list("train", root) == in_root
    assert read_list("train", root) == ["x"]
    with pytest.raises(FileNotFoundError, match="mysplit.txt"):
        resolve_list("mysplit.txt", root)


def _fake_voc(root, train, val, aug=None):
    seg = root / "ImageSets" / "Segmentation"
    seg.mkdir(parents=True)
    (seg / "train.txt").write_text("".join(f"{i}\n" for i in train))
    (seg / "val.txt").write_text("".join(f"{i}\n" for i in val))
    if aug is not None:
        (root / "SegmentationClassAug").mkdir()
        for i in aug:
            (root / "SegmentationClassAug" / f"{i}.png").write_bytes(b"")


def test_make_voc_lists_with_aug(tmp_path):
    root = tmp_path / "VOC2012"
    _fake_voc(root, train=["t2", "t1"], val=["v1", "v2"], aug=["a2", "t1", "v1", "a1"])
    out = tmp_path / "lists"
    lists = make_lists(root, out)
    assert lists == {"train": ["t2", "t1"], "val": ["v1", "v2"], "train_aug": ["a1", "a2", "t1", "t2"]}
    for name, ids in lists.items():
        assert read_id_list(out / f"{name}.txt") == ids


def test_make_voc_lists_without_aug_prints_note(tmp_path, capsys):
    root = tmp_path / "VOC2012"
    _fake_voc(root, train=["t2", "t1"], val=["v1"])
    lists = make_lists(root, tmp_path / "lists")
    assert lists["train_aug"] == ["t1", "t2"]
    assert "SegmentationClassAug" in capsys.readouterr().out


def test_make_voc_lists_script(tmp_path, capsys):
    root = tmp_path / "VOC2012"
    _fake_voc(root, train=["t1"], val=["v1"], aug=["a1"])
    args = make_voc_lists.get_args_parser().parse_args(
        ["--voc12_root", str(root), "--out_dir", str(tmp_path / "out")])
    make_voc_lists.main(args)
    assert read_id_list(tmp_path / "out" / "train_aug.txt") == ["a1", "t1"]
    assert "train_aug: 2 ids" in capsys.readouterr().out
    with pytest.raises(FileNotFoundError, match="voc12_root"):
        make_lists(tmp_path / "missing", tmp_path / "out")


def test_utf8_byte_order_mark_is_dropped(tmp_path):
    path = tmp_path / "bom.txt"
    path.write_bytes("\ufeff2007_000032\n2007_000033\n".encode())
    assert read_id_list(path) == ["2007_000032", "2007_000033"]


@pytest.mark.parametrize("name, count", [("train_aug", 10582), ("train", 1464), ("val", 1449),
                                         ("test", 1456)])
def test_standard_splits_ship_and_resolve_by_name(tmp_path, name, count):
    root = tmp_path / "VOC2012"  # a VOC download: no ImageSets/Segmentation/train_aug.txt
    (root / "ImageSets" / "Segmentation").mkdir(parents=True)
    ids = read_list(f"{name}.txt", root)
    assert len(ids) == len(set(ids)) == count
    assert all(len(i) == 11 and i[4] == "_" for i in ids)
    assert read_list(name, None) == ids
    assert read_list(f"voc12/{name}.txt", root) == ids  # the upstream default spelling


def test_standard_splits_are_consistent():
    lists = {name: set(read_list(name, None)) for name in ("train_aug", "train", "val", "test")}
    assert lists["train"] <= lists["train_aug"]
    assert not lists["val"] & lists["train_aug"]
    assert not lists["test"] & (lists["train_aug"] | lists["val"])


def test_dataset_lists_win_over_shipped_ones(tmp_path):
    seg = tmp_path / "VOC2012" / "ImageSets" / "Segmentation"
    seg.mkdir(parents=True)
    (seg / "train_aug.txt").write_text("2026_000001\n")
    assert read_list("train_aug.txt", tmp_path / "VOC2012") == ["2026_000001"]


def test_a_missing_path_with_folders_is_not_replaced_by_a_shipped_list(tmp_path):
    with pytest.raises(FileNotFoundError, match="train_aug.txt"):
        resolve_list(tmp_path / "lists" / "train_aug.txt", tmp_path)
