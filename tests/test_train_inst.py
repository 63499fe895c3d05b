"""Stage 4 instances on a tiny generated VOC root: instance labels, Mask R-CNN training with kill-and-resume
equality, inference to COCO results and PNGs, and their scores."""

import json

import numpy as np
import pytest
import torch
from killed_run import killed_after_epoch

import eval_inst
import infer_inst
import make_instance_labels
import make_synthetic_voc
import train_inst
from network.maskrcnn import ResNet38Features, build_instance_net
from tool.cli import UserError
from tool.dist import launch
from tool.instances import read_instance_png
from vocabulary import NUM_CLASSES

MODEL = ["--arch", "maskrcnn_resnet38", "--backbone_width", "0.0625", "--short_side", "48", "--long_side", "64"]


@pytest.fixture(scope="module")
def tiny_voc(tmp_path_factory):
    root = tmp_path_factory.mktemp("voc")
    make_synthetic_voc.main(make_synthetic_voc.get_args_parser().parse_args(
        ["--out", str(root), "--num_train", "4", "--num_val", "3", "--min_size", "40", "--max_size", "56"]))
    out = tmp_path_factory.mktemp("labels")
    for list_name in ("train", "val"):
        assert make_instance_labels.main(make_instance_labels.get_args_parser().parse_args(
            ["--voc12_root", str(root), "--infer_list", f"{list_name}.txt", "--label_dir", "gt",
             "--out_json", str(out / f"{list_name}_gt.json")])) == 0
    return root, out


def train_args(root, labels, out, *extra):
    return train_inst.get_args_parser().parse_args([
        "--voc12_root", str(root), "--train_json", str(labels / "train_gt.json"), *MODEL,
        "--backbone_weights", "none", "--batch_size", "2", "--max_iters", "3", "--lr", "1e-4", "--optimizer", "adamw",
        "--num_workers", "0", "--device", "cpu", "--save_dir", str(out), "--session_name", "inst", "--log_every", "1",
        *extra])


@pytest.fixture(scope="module")
def trained(tiny_voc, tmp_path_factory):
    root, labels = tiny_voc
    out = tmp_path_factory.mktemp("full")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny images: one thread is faster and does not suffer from a loaded machine
    yield train_inst.main(train_args(root, labels, out)), out
    torch.set_num_threads(threads)


def test_box_fill_labels_are_the_rectangles_and_score_below_ground_truth(tiny_voc, tmp_path):
    root, labels = tiny_voc
    from make_baseline_labels import baseline_label
    from tool.label_io import save_label_png
    from voc12.lists import read_list
    for image_id in read_list("train.txt", root):
        save_label_png(tmp_path / "fill" / f"{image_id}.png", baseline_label("box_fill", root, image_id))
    assert make_instance_labels.main(make_instance_labels.get_args_parser().parse_args(
        ["--voc12_root", str(root), "--infer_list", "train.txt", "--label_dir", str(tmp_path / "fill"),
         "--out_json", str(tmp_path / "fill.json"), "--out_dir", str(tmp_path / "png")])) == 0
    fill = json.loads((tmp_path / "fill.json").read_text())
    gt = json.loads((labels / "train_gt.json").read_text())
    assert len(fill["annotations"]) == len(gt["annotations"])
    image = fill["images"][0]
    inst = read_instance_png(tmp_path / "png" / image["file_name"].replace(".jpg", ".png"))
    for ann in (a for a in fill["annotations"] if a["image_id"] == image["id"]):
        x, y, w, h = (int(v) for v in ann["bbox"])
        owned = inst[y:y + h, x:x + w] == ann["instance"]
        assert owned.sum() == ann["area"] > 0  # every pixel of the instance lies in its box
    scores = eval_inst.main(eval_inst.get_args_parser().parse_args(
        ["--gt_json", str(labels / "train_gt.json"), "--pred_json", str(tmp_path / "fill.json")]))
    assert 0 < scores["mean_iou"] < 1 and scores["AP"] < 1
    with pytest.raises(UserError, match="--label_dir"):
        make_instance_labels.main(make_instance_labels.get_args_parser().parse_args(
            ["--voc12_root", str(root), "--label_dir", str(tmp_path / "nowhere"), "--out_json", str(tmp_path / "x")]))


def test_networks_give_losses_in_training_and_detections_in_eval(one_thread):
    torch.manual_seed(0)
    for arch, width in (("maskrcnn_resnet38", 0.0625), ("maskrcnn_resnet50_fpn", 1.0)):
        net = build_instance_net(arch, NUM_CLASSES, min_size=48, max_size=64, width=width, detections=5)
        masks = torch.zeros(1, 40, 50, dtype=torch.uint8)
        masks[0, 5:30, 10:40] = 1
        target = {"boxes": torch.tensor([[10.0, 5.0, 40.0, 30.0]]), "labels": torch.tensor([4]), "masks": masks}
        net.train()
        losses = net([torch.rand(3, 40, 50)], [target])
        assert set(losses) == {"loss_classifier", "loss_box_reg", "loss_mask", "loss_objectness", "loss_rpn_box_reg"}
        assert all(torch.isfinite(v) for v in losses.values())
        weights, biases, new_w, new_b = net.get_parameter_groups()
        assert len(weights) + len(biases) == sum(p.requires_grad for p in net.parameters()) and not new_w + new_b
        net.eval()
        with torch.no_grad():
            out = net([torch.rand(3, 40, 50)])[0]
        assert out["masks"].shape[1:] == (1, 40, 50) and len(out["scores"]) <= 5


def test_mask_context_pastes_masks_of_grown_boxes_and_keeps_the_detections(one_thread):
    torch.manual_seed(0)
    net = build_instance_net("maskrcnn_resnet38", NUM_CLASSES, min_size=64, max_size=96, width=0.0625).eval()
    net.model.roi_heads.score_thresh = 0.0  # random weights: keep every detection
    images = [torch.rand(3, 50, 70), torch.rand(3, 64, 48)]
    with torch.no_grad():
        plain = net.model(images)
        net.mask_context = 1.0
        detect_1 = net.detect(images)
        net.mask_context = 1.3
        grown = net(images)
        heads = net.model.roi_heads
        postprocess = heads.postprocess_detections

        def grow(*args):  # the reference: torchvision's own forward with its detections grown about their centres
            boxes, scores, labels = postprocess(*args)
            sizes = args[-1]
            big = []
            for b, (h, w) in zip(boxes, sizes, strict=True):
                c, half = (b[:, :2] + b[:, 2:]) / 2, (b[:, 2:] - b[:, :2]) / 2 * 1.3
                g = torch.cat([c - half, c + half], 1)
                big.append(torch.stack([g[:, 0].clamp(0, w), g[:, 1].clamp(0, h), g[:, 2].clamp(0, w),
                                        g[:, 3].clamp(0, h)], 1))
            return big, scores, labels

        heads.postprocess_detections = grow
        reference = net.model(images)
    assert all(len(p["scores"]) > 0 for p in plain)
    for p, d, g, r in zip(plain, detect_1, grown, reference, strict=True):
        for key in ("boxes", "labels", "scores", "masks"):
            torch.testing.assert_close(d[key], p[key])
        for key in ("boxes", "labels", "scores"):
            torch.testing.assert_close(g[key], p[key])
        torch.testing.assert_close(g["masks"], r["masks"])
        assert not torch.allclose(g["masks"], p["masks"])
    heads.score_thresh = 1.1  # no detection at all
    with torch.no_grad():
        empty = net(images)
    assert [tuple(e["masks"].shape) for e in empty] == [(0, 1, 50, 70), (0, 1, 64, 48)]


def test_detect_follows_torchvision_on_the_fpn_network(one_thread):
    torch.manual_seed(0)
    net = build_instance_net("maskrcnn_resnet50_fpn", NUM_CLASSES, min_size=64, max_size=96).eval()
    net.model.roi_heads.score_thresh = 0.0
    images = [torch.rand(3, 50, 70)]
    with torch.no_grad():
        plain, detect_1 = net.model(images), net.detect(images)
    assert len(plain[0]["scores"]) > 0
    for key in ("boxes", "labels", "scores", "masks"):
        torch.testing.assert_close(detect_1[0][key], plain[0][key])


def test_resnet38_features_add_the_upsampled_stride8_map_to_the_stride4_map(one_thread):
    torch.manual_seed(0)
    features = ResNet38Features(width=0.0625).eval()
    x = torch.rand(2, 3, 64, 96)
    with torch.no_grad():
        out = features(x)
        body = features.body.forward_as_dict(x)

    def conv1x1(conv, t):  # (N, C, H, W) -> (N, O, H, W)
        return torch.einsum("nchw,oc->nohw", t, conv.weight[:, :, 0, 0]) + conv.bias.view(1, -1, 1, 1)

    top = conv1x1(features.reduce, body["conv6"])  # (2, 128, 8, 12)
    up = top.repeat_interleave(2, dim=2).repeat_interleave(2, dim=3)  # each stride-8 cell over its 2x2 stride-4 cells
    assert list(out) == ["0", "1"] and out["0"].shape == (2, 128, 16, 24) and out["1"].shape == (2, 128, 8, 12)
    torch.testing.assert_close(out["1"], top.clamp(min=0), rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(out["0"], (conv1x1(features.lateral, body["conv3"]) + up).clamp(min=0),
                               rtol=1e-4, atol=1e-5)


def test_killed_and_resumed_training_ends_with_the_uninterrupted_weights(tiny_voc, trained, tmp_path, one_thread):
    root, labels = tiny_voc
    full, full_dir = trained
    assert len(full) == 3 and all(np.isfinite(s["loss"]) for s in full)  # 2 steps/epoch, last epoch cut at 3
    with killed_after_epoch(1):
        train_inst.main(train_args(root, labels, tmp_path / "cut"))
    rest = train_inst.main(train_args(root, labels, tmp_path / "cut", "--resume", "True"))
    assert rest == full[2:]
    reference = torch.load(full_dir / "inst.pth", weights_only=True)
    resumed = torch.load(tmp_path / "cut" / "inst.pth", weights_only=True)
    for key, value in reference.items():
        assert torch.equal(resumed[key], value), key


def test_inference_writes_coco_results_and_pngs_that_eval_scores(tiny_voc, trained, tmp_path, one_thread):
    root, labels = tiny_voc
    _, full_dir = trained
    summary = infer_inst.main(infer_inst.get_args_parser().parse_args(
        ["--voc12_root", str(root), "--infer_list", "val.txt", "--weights", str(full_dir / "inst.pth"), *MODEL,
         "--out_json", str(tmp_path / "val.json"), "--save_path", str(tmp_path / "png"), "--png_score", "0",
         "--device", "cpu"]))
    assert summary.done == 3 and summary.exit_code == 0
    results = json.loads((tmp_path / "val.json").read_text())
    gt = json.loads((labels / "val_gt.json").read_text())
    for image in gt["images"]:
        stem = image["file_name"].replace(".jpg", ".png")
        obj = read_instance_png(tmp_path / "png" / "SegmentationObject" / stem)
        assert obj.shape == (image["height"], image["width"])
        assert obj.max() <= sum(r["image_id"] == image["id"] for r in results)
    scores = eval_inst.main(eval_inst.get_args_parser().parse_args(
        ["--gt_json", str(labels / "val_gt.json"), "--pred_json", str(tmp_path / "val.json")]))
    assert all(0 <= scores[k] <= 1 for k in ("AP", "AP50", "AP75", "mAP_r@0.25"))
    with pytest.raises(UserError, match="--weights"):
        infer_inst.main(infer_inst.get_args_parser().parse_args(
            ["--voc12_root", str(root), "--infer_list", "val.txt", "--weights", str(full_dir / "inst.pth"),
             "--arch", "maskrcnn_resnet38", "--backbone_width", "0.125", "--out_json", str(tmp_path / "x.json"),
             "--device", "cpu"]))


def test_two_cpu_workers_and_shards_write_the_results_of_one_process(tiny_voc, trained, tmp_path, capsys):
    """``--gpus 2 --device cpu`` (two spawned gloo workers, as a plain run on 2 GPUs) and two ``--shard``
    runs write the ``--out_json`` of one process, complete and in list order; a failed image leaves it
    unwritten until a rerun completes it, and the rerun redoes only that image."""
    root, labels = tiny_voc
    _, full_dir = trained

    def args(out, *extra):
        return infer_inst.get_args_parser().parse_args(
            ["--voc12_root", str(root), "--infer_list", "val.txt", "--weights", str(full_dir / "inst.pth"), *MODEL,
             "--out_json", str(out), "--device", "cpu", *extra])

    assert infer_inst.main(args(tmp_path / "one.json")).exit_code == 0
    one = (tmp_path / "one.json").read_text()
    two = args(tmp_path / "two.json", "--gpus", "2", "--num_workers", "1")
    assert launch(infer_inst.main, two, two.gpus, two.device) == 0
    assert "starting 2 worker processes" in capsys.readouterr().out
    assert (tmp_path / "two.json").read_text() == one

    ids = (root / "ImageSets" / "Segmentation" / "val.txt").read_text().split()
    image = root / "JPEGImages" / f"{ids[1]}.jpg"
    kept = image.read_bytes()
    image.write_bytes(b"not a jpeg")
    try:
        first = infer_inst.main(args(tmp_path / "shard.json", "--shard", "0/2"))
        second = infer_inst.main(args(tmp_path / "shard.json", "--shard", "1/2"))
    finally:
        image.write_bytes(kept)
    assert first.exit_code == 0 and [i for i, _ in second.failed] == [ids[1]]
    assert not (tmp_path / "shard.json").exists() and "not written yet" in capsys.readouterr().out
    rerun = infer_inst.main(args(tmp_path / "shard.json", "--shard", "1/2"))
    assert (rerun.done, rerun.skipped) == (1, 0) and (tmp_path / "shard.json").read_text() == one
