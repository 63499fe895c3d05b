"""export_labels.py: what OpenCV reads as grayscale from its PNGs is the class id map; list files of both
formats; a missing label is named and the rest exported."""

import cv2
import numpy as np
import pytest

import export_labels
from tool.label_io import read_label_png, save_image, save_label_png


@pytest.fixture
def root(tmp_path):
    """A VOC-like root with three images, palette labels for two of them (the third is missing)."""
    rng = np.random.default_rng(0)
    voc = tmp_path / "VOC2012"
    labels = tmp_path / "pseudo"
    for i, image_id in enumerate(["a_1", "b_2", "c_3"]):
        save_image(voc / "JPEGImages" / f"{image_id}.jpg", rng.integers(0, 256, (7, 9, 3), dtype=np.uint8))
        if i < 2:
            label = rng.integers(0, 21, (7, 9)).astype(np.uint8)
            label[0, :3] = 255
            save_label_png(labels / f"{image_id}.png", label)
    (tmp_path / "ids.txt").write_text("a_1\nb_2\nc_3\n")
    return tmp_path


def run(root, *extra):
    return export_labels.main(export_labels.get_args_parser().parse_args(
        ["--voc12_root", str(root / "VOC2012"), "--label_dir", str(root / "pseudo"), "--infer_list",
         str(root / "ids.txt"), "--out_dir", str(root / "gray"), *extra]))


def test_opencv_grayscale_reads_the_class_ids_and_the_list_pairs_them(root):
    assert not np.array_equal(cv2.imread(str(root / "pseudo" / "a_1.png"), cv2.IMREAD_GRAYSCALE),
                              read_label_png(root / "pseudo" / "a_1.png"))  # the palette PNG: luminance
    summary = run(root, "--list_format", "torchseg")
    assert summary.done == 2 and [i for i, _ in summary.failed] == ["c_3"]
    for image_id in ("a_1", "b_2"):
        got = cv2.imread(str(root / "gray" / f"{image_id}.png"), cv2.IMREAD_GRAYSCALE)
        assert np.array_equal(got, read_label_png(root / "pseudo" / f"{image_id}.png"))
    lines = (root / "gray.txt").read_text().splitlines()
    images, gray = (root / "VOC2012" / "JPEGImages").resolve(), (root / "gray").resolve()
    assert lines == [f"{images / f'{i}.jpg'}\t{gray / f'{i}.png'}" for i in ("a_1", "b_2")]


def test_semseg_list_is_space_separated_and_a_rerun_skips(root):
    run(root)
    again = run(root, "--list_path", str(root / "lists" / "train.txt"))
    assert again.done == 0 and again.skipped == 2
    for line in (root / "lists" / "train.txt").read_text().splitlines():
        image, label = line.split(" ")
        assert cv2.imread(image) is not None and cv2.imread(label, cv2.IMREAD_GRAYSCALE).shape == (7, 9)


def test_a_missing_label_folder_is_a_one_line_error(root, tmp_path):
    with pytest.raises(export_labels.cli.UserError, match="--label_dir not found"):
        export_labels.main(export_labels.get_args_parser().parse_args(
            ["--voc12_root", str(root / "VOC2012"), "--label_dir", str(tmp_path / "nope"), "--infer_list",
             str(root / "ids.txt"), "--out_dir", str(root / "gray")]))
