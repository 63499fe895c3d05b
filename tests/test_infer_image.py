"""infer_image.py: a mask from boxes, a scribble or clicks for one image, on a generated image, with
demo-width (1/8) affinity weights trained by stage 2 in the test."""

import argparse

import numpy as np
import pytest
import torch
from PIL import Image

import infer_image
import train_aff_gated_aff
from network import resnet38_SEAM
from tool import cli
from tool.checkpoint import save_checkpoint
from tool.label_io import read_image, read_label_png, save_image, save_label_png
from voc12.synthetic import generate_sample, write_voc_download

W = "0.125"


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    """Affinity nets trained by train_aff_gated_aff.py (1 epoch, ground truth as seeds) for r = 4 and 3."""
    root = tmp_path_factory.mktemp("voc")
    ids = [f"2007_{i:06d}" for i in range(4)]
    write_voc_download(root / "VOC2012", ids, [], [], min_size=64, max_size=80)
    out = {}
    for radius, name in ((4, "aff_box"), (3, "aff_point")):
        argv = ["--voc12_root", str(root / "VOC2012"), "--train_list", str(root / "VOC2012/ImageSets/Segmentation"
                                                                           "/train.txt"),
                "--label_dir", str(root / "VOC2012" / "SegmentationClass"), "--weights", "none",
                "--radius", str(radius), "--session_name", name, "--save_dir", str(root / "w"),
                "--backbone_width", W, "--crop_size", "64", "--max_epoches", "1", "--batch_size", "2",
                "--num_workers", "0"]
        train_aff_gated_aff.main(train_aff_gated_aff.get_args_parser().parse_args(argv))
        out[name] = root / "w" / f"{name}.pth"
    torch.manual_seed(0)
    save_checkpoint(resnet38_SEAM.Net(width=float(W)), root / "w" / "resnet38_SEAM.pth")
    out["cam"] = root / "w" / "resnet38_SEAM.pth"
    return out


@pytest.fixture
def photo(tmp_path):
    sample = generate_sample(3, 1, 96, 120)
    save_image(tmp_path / "photo.jpg", sample.image)
    return tmp_path / "photo.jpg", sample


def run(argv):
    return infer_image.main(infer_image.get_args_parser().parse_args(argv))


def box_flags(sample):
    return [f for cls, x0, y0, x1, y1 in sample.boxes for f in ("--box", f"{x0},{y0},{x1},{y1},{cls}")]


SMALL = ["--backbone_width", W, "--epochs", "2", "--hidden", "16"]


def test_boxes_without_a_classifier_use_grabcut_seeds(photo, weights, capsys, one_thread):
    path, sample = photo
    label = run(["--image", str(path), *box_flags(sample), "--weights", str(weights["aff_box"]), *SMALL])
    assert "box seeds: grabcut (no --cam_weights)" in capsys.readouterr().out
    assert label.shape == sample.seg.shape
    np.testing.assert_array_equal(read_label_png(path.with_name("photo_mask.png")), label)
    # (how good the mask is depends on the weights: these are barely trained, so only the classes are
    # checked; the published aff_box.pth is what makes it a box-to-mask tool)
    assert set(np.unique(label)) <= {0, *(b[0] for b in sample.boxes)}
    picture = Image.open(path.with_name("photo_overlay.png"))
    assert picture.mode == "RGB" and picture.size == (label.shape[1], label.shape[0])
    assert not np.array_equal(np.asarray(picture), read_image(path))  # mask and boxes drawn


def test_boxes_with_a_classifier_and_a_downscaled_work_size(photo, weights, tmp_path, capsys, one_thread):
    path, sample = photo
    out = tmp_path / "m.png"
    label = run(["--image", str(path), *box_flags(sample), "--weights", str(weights["aff_box"]),
                 "--cam_weights", str(weights["cam"]), "--scales", "1.0", "--max_side", "64", "--out", str(out),
                 "--overlay", "none", *SMALL])
    assert "box seeds: cam_and_grabcut" in capsys.readouterr().out
    assert label.shape == sample.seg.shape and read_label_png(out).shape == sample.seg.shape
    assert not path.with_name("photo_overlay.png").exists()


def test_scribble_and_clicks(photo, weights, tmp_path, one_thread):
    path, sample = photo
    save_label_png(tmp_path / "strokes.png", sample.scribble)
    label = run(["--image", str(path), "--scribble", str(tmp_path / "strokes.png"),
                 "--weights", str(weights["aff_box"]), "--out", str(tmp_path / "s.png"), *SMALL])
    assert set(np.unique(label)) <= set(np.unique(sample.scribble)) - {255}
    clicks = [f for c, x, y in sample.points for f in ("--point", f"{x},{y},{c}")]
    label = run(["--image", str(path), *clicks, "--point", "0,0,background",
                 "--weights", str(weights["aff_point"]), "--out", str(tmp_path / "p.png"), *SMALL])
    assert label.shape == sample.seg.shape


def test_annotation_errors_are_clear(photo):
    path, _ = photo
    parse = infer_image.get_args_parser().parse_args
    with pytest.raises(cli.UserError, match="one kind of annotation"):
        infer_image.main(parse(["--image", str(path)]))
    with pytest.raises(argparse.ArgumentTypeError, match="unknown class 'persn'"):
        infer_image.parse_box("1,2,30,40,persn")
    with pytest.raises(argparse.ArgumentTypeError, match="x0 <= x1"):
        infer_image.parse_box("30,2,1,40,person")
    assert infer_image.parse_box("1,2,30,40,person").cls == 15
    assert infer_image.parse_point("5,6,background").cls == 0
    with pytest.raises(cli.UserError, match="outside"):
        infer_image.main(parse(["--image", str(path), "--box", "500,500,600,600,dog", "--max_side", "0"]))
