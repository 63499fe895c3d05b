"""run_pipeline.py's instance stage: labels, their scores, one Mask R-CNN per label set, the table."""

import importlib
import json
import shutil
from pathlib import Path

import pytest

import make_synthetic_voc
import run_pipeline
from tool.coco_eval import as_results


def test_inst_stage_trains_one_net_per_label_set_and_scores_them(tmp_path, monkeypatch, capsys):
    """The stage's plumbing with the two network scripts replaced (each command must parse with the script's
    own parser; 'inference' returns the val ground truth, so every net scores 100 %); the labels are real."""
    work = tmp_path / "work"
    root = work / "VOC2012"
    make_synthetic_voc.main(make_synthetic_voc.get_args_parser().parse_args(
        ["--out", str(root), "--num_train", "4", "--num_val", "2", "--min_size", "40", "--max_size", "56"]))
    (work / "weights").mkdir()
    (work / "weights" / "resnet38_SEAM.pth").write_bytes(b"")  # only its presence is checked here
    for folder in (work / "pseudo" / "box", work / "baselines" / "grabcut", work / "baselines" / "box_fill"):
        shutil.copytree(root / "SegmentationClass", folder)  # ground-truth class maps stand in for each
    args = run_pipeline.get_args_parser().parse_args(
        ["--quick", "--work_dir", str(work), "--supervision", "box", "--device", "cpu", "--jobs", "1"])
    pipe = run_pipeline.Pipeline(args)
    trained, real_run = [], pipe.run

    def fake_run(script, argv):
        if script == "make_instance_labels":
            return real_run(script, argv)
        module = importlib.import_module(script)
        parsed = module.get_args_parser().parse_args([str(a) for a in argv])
        if script == "train_inst":
            trained.append(parsed)
        else:
            assert script == "infer_inst" and parsed.mask_context == run_pipeline.INST_PLANS["quick"].mask_context
            gt = json.loads(pipe.inst_labels("val_gt").read_text())
            Path(parsed.out_json).parent.mkdir(parents=True, exist_ok=True)
            Path(parsed.out_json).write_text(json.dumps(as_results(gt)))

    monkeypatch.setattr(pipe, "run", fake_run)
    inst = pipe.inst()
    assert [Path(a.train_json).stem for a in trained] == list(run_pipeline.INST_LABELS)
    assert all(a.arch == "maskrcnn_resnet38" and Path(a.backbone_weights).name == "resnet38_SEAM.pth"
               for a in trained)
    assert set(inst["nets"]) == set(run_pipeline.INST_LABELS) and inst["num_val"] == 2
    assert all(net["AP50"] == pytest.approx(100.0) for net in inst["nets"].values())  # percentages
    assert all(net[key] == pytest.approx(100.0) for net in inst["nets"].values()
               for key in ("found", "box_iou", "mask_iou"))
    assert inst["a2gnn_pct_of_gt_ap50"] == pytest.approx(100.0)
    for label in inst["labels"].values():  # the class maps are the ground truth: only same-class overlaps differ
        assert 50.0 < label["mean_iou"] <= 100.0 and 0 < label["AP50"] <= 100.0
    assert (work / "inst" / "labels" / "a2gnn").is_dir()
    run_pipeline.print_inst_table({"inst": inst})
    assert "net AP50" in capsys.readouterr().out


def test_inst_stage_needs_the_box_supervision_and_its_label_folders(tmp_path, capsys):
    args = run_pipeline.get_args_parser().parse_args(
        ["--quick", "--work_dir", str(tmp_path), "--supervision", "image", "--device", "cpu"])
    assert run_pipeline.Pipeline(args).inst() is None
    assert "needs the box supervision" in capsys.readouterr().out
    (tmp_path / "weights").mkdir()
    (tmp_path / "weights" / "resnet38_SEAM.pth").write_bytes(b"")
    args.supervision = "box"
    assert run_pipeline.Pipeline(args).inst() is None
    assert "no label folder" in capsys.readouterr().out
