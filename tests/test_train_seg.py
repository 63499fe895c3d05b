"""Stage 4 scripts on a tiny generated VOC root: training, kill-and-resume equality, inference and scores."""

import json

import numpy as np
import pytest
import torch
from killed_run import killed_after_epoch

import infer_seg
import make_synthetic_voc
import train_seg
from tool.label_io import read_label_png


@pytest.fixture(scope="module")
def tiny_voc(tmp_path_factory):
    root = tmp_path_factory.mktemp("voc")
    make_synthetic_voc.main(make_synthetic_voc.get_args_parser().parse_args(
        ["--out", str(root), "--num_train", "4", "--num_val", "3", "--min_size", "40", "--max_size", "56"]))
    return root


def seg_args(root, out, *extra):
    return train_seg.get_args_parser().parse_args([
        "--voc12_root", str(root), "--train_list", "train.txt", "--label_dir", str(root / "SegmentationClass"),
        "--arch", "deeplabv2_resnet38", "--backbone_width", "0.0625", "--backbone_weights", "none",
        "--crop_size", "48", "--batch_size", "2", "--max_iters", "5", "--lr", "0.01", "--num_workers", "0",
        "--device", "cpu", "--save_dir", str(out), "--session_name", "seg", "--log_every", "1", *extra])


@pytest.fixture(scope="module")
def trained(tiny_voc, tmp_path_factory):
    """An uninterrupted run: (its per-step losses, its folder)."""
    out = tmp_path_factory.mktemp("full")
    return train_seg.main(seg_args(tiny_voc, out)), out


def test_killed_and_resumed_training_ends_with_the_uninterrupted_weights(tiny_voc, trained, tmp_path):
    full, full_dir = trained
    assert len(full) == 5 and all(np.isfinite(s["loss"]) for s in full)  # 2 steps/epoch, last epoch cut at 5
    with killed_after_epoch(1):
        train_seg.main(seg_args(tiny_voc, tmp_path / "cut"))
    rest = train_seg.main(seg_args(tiny_voc, tmp_path / "cut", "--resume", "True"))
    assert rest == full[2:]
    reference = torch.load(full_dir / "seg.pth", weights_only=True)
    resumed = torch.load(tmp_path / "cut" / "seg.pth", weights_only=True)
    for key, value in reference.items():
        assert torch.equal(resumed[key], value), key
    with pytest.raises(ValueError, match="--crop_size was 48, now 40"):
        train_seg.main(seg_args(tiny_voc, tmp_path / "cut", "--resume", "True", "--crop_size", "40"))
    log = [json.loads(line) for line in (tmp_path / "cut" / "seg_log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log if "event" not in r] == [1, 2, 3, 4, 5]


def test_inference_writes_labels_crf_and_scores_and_resumes(tiny_voc, trained, tmp_path, capsys):
    base = ["--weights", str(trained[1] / "seg.pth"), "--arch", "deeplabv2_resnet38", "--backbone_width",
            "0.0625", "--voc12_root", str(tiny_voc), "--infer_list", "val.txt", "--scales", "0.75", "1.0",
            "--flip", "True", "--device", "cpu"]
    out, crf = tmp_path / "pred", tmp_path / "pred_crf"
    summary = infer_seg.main(infer_seg.get_args_parser().parse_args(
        [*base, "--save_path", str(out), "--save_path_crf", str(crf)]))
    ids = (tiny_voc / "ImageSets" / "Segmentation" / "val.txt").read_text().split()
    assert summary.done == 3 and not summary.failed
    for folder in (out, crf):
        for image_id in ids:
            label = read_label_png(folder / f"{image_id}.png")
            gt = read_label_png(tiny_voc / "SegmentationClass" / f"{image_id}.png")
            assert label.shape == gt.shape and label.max() <= 20
        scores = json.loads((folder.parent / f"{folder.name}.json").read_text())
        assert 0.0 <= scores["miou"] <= 1.0 and scores["num_images"] == 3
    assert "mIoU" in capsys.readouterr().out

    again = infer_seg.main(infer_seg.get_args_parser().parse_args(
        [*base, "--save_path", str(out), "--save_path_crf", str(crf)]))
    assert again.done == 0 and again.skipped == 3
    for shard in ("0/2", "1/2"):  # two shards write what one process wrote, also with a CRF/PNG pool and loaders
        infer_seg.main(infer_seg.get_args_parser().parse_args(
            [*base, "--save_path", str(tmp_path / "sharded"), "--shard", shard, "--cpu_workers", "1",
             "--num_workers", "2"]))
    for image_id in ids:
        assert np.array_equal(read_label_png(tmp_path / "sharded" / f"{image_id}.png"),
                              read_label_png(out / f"{image_id}.png"))


def test_pspnet_trains_with_its_auxiliary_loss_and_infers_from_its_checkpoint(tiny_voc, tmp_path):
    args = seg_args(tiny_voc, tmp_path, "--arch", "pspnet_resnet50", "--max_iters", "2", "--crop_size", "41")
    steps = train_seg.main(args)
    assert args.wt_dec == 1e-4 and args.momentum == 0.9  # the recipe filled what the command line left out
    assert len(steps) == 2 and all(np.isfinite(s["loss"]) for s in steps)
    for s in steps:
        assert s["loss"] == pytest.approx(s["main_loss"] + 0.4 * s["aux_loss"], rel=1e-5)
    out = tmp_path / "pred"
    summary = infer_seg.main(infer_seg.get_args_parser().parse_args([
        "--weights", str(tmp_path / "seg.pth"), "--arch", "pspnet_resnet50", "--voc12_root", str(tiny_voc),
        "--infer_list", "val.txt", "--scales", "1.0", "--flip", "True", "--save_path", str(out), "--device", "cpu"]))
    assert summary.done == 3 and not summary.failed  # the checkpoint (auxiliary head included) loaded strictly
    assert json.loads((tmp_path / "pred.json").read_text())["num_images"] == 3


def test_the_parsed_flags_hold_the_recipe_of_arch():
    base = ["--voc12_root", "V", "--label_dir", "L"]
    psp = train_seg.get_args_parser().parse_args([*base, "--lr", "0.005", "--arch", "pspnet_resnet101"])
    assert (psp.max_iters, psp.batch_size, psp.crop_size, psp.lr, psp.wt_dec) == (33050, 16, 473, 0.005, 1e-4)
    deeplab = train_seg.get_args_parser().parse_args(base)
    assert (deeplab.max_iters, deeplab.batch_size, deeplab.crop_size, deeplab.lr, deeplab.wt_dec) == (
        20000, 10, 321, 2.5e-4, 5e-4)
    with pytest.raises(SystemExit) as refused:  # argparse's one-line error, status 2
        train_seg.get_args_parser().parse_args([*base, "--arch", "pspnet_resnet50", "--batch_size", "1"])
    assert refused.value.code == 2
