"""The whole pipeline on a tiny generated dataset (``run_pipeline.py --quick``), as CI runs it."""

import importlib
import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest

import make_synthetic_voc
import run_pipeline
from tool import cli
from tool.label_io import read_label_png, save_label_png


@pytest.mark.slow
def test_quick_pipeline_writes_every_stage_and_the_summary(tmp_path):
    work = tmp_path / "demo"
    args = run_pipeline.get_args_parser().parse_args(["--quick", "--work_dir", str(work), "--device", "cpu"])
    summary = run_pipeline.main(args)

    on_disk = json.loads((work / "summary.json").read_text())
    assert on_disk == summary
    assert summary["smoke_test"] and summary["units"] == "%" and summary["plan"]["name"] == "quick"
    assert summary["plan"]["values"]["cam_epochs"] == run_pipeline.PLANS["quick"].cam_epochs
    assert summary["code_version"] and summary["machine"]["device"] == "cpu"
    assert set(summary["supervision"]) == set(run_pipeline.SUPERVISIONS)
    ids = (work / "VOC2012" / "ImageSets" / "Segmentation" / "train.txt").read_text().split()
    assert len(ids) == run_pipeline.PLANS["quick"].num_train
    for sup, entry in summary["supervision"].items():
        for key in ("seed_miou", "pseudo_miou", "seed_precision", "seed_coverage"):
            assert 0.0 <= entry[key] <= 100.0, (sup, key)  # percentages, as printed
        assert entry["seconds"]["a2gnn"] > 0 and entry["seconds"]["aff_train"] > 0
        assert (work / "weights" / f"aff_{sup}.pth").is_file()
        for image_id in ids:
            label = read_label_png(work / "pseudo" / sup / f"{image_id}.png")
            gt = read_label_png(work / "VOC2012" / "SegmentationClass" / f"{image_id}.png")
            assert label.shape == gt.shape and label.max() <= 20  # every pixel gets a class
    assert set(summary["supervision"]["box"]["baselines"]) == {"box_fill", "grabcut"}
    assert "cam" in summary["supervision"]["image"]["baselines"]
    assert set(summary["supervision"]["scribble"]["baselines"]) == {"scribbles"}
    assert (work / "contact_sheet.png").is_file()
    assert 0.0 <= summary["seg"]["gt"] <= 100.0 and summary["seg"]["num_val"] == run_pipeline.PLANS["quick"].num_val
    for sup, entry in summary["supervision"].items():
        for key in ("val_miou", "seeds_val_miou"):
            assert 0.0 <= entry["seg"][key] <= 100.0, (sup, key)
        assert (work / "seg" / "weights" / f"{sup}_pseudo.pth").is_file()
    box = summary["supervision"]["box"]
    assert box["seg"]["baseline"] == max(box["baselines"], key=box["baselines"].get)
    assert "baseline" not in summary["supervision"]["point"]["seg"]  # the point row has no baseline
    inst = summary["inst"]  # Mask R-CNN on each instance label set, scored on val
    assert set(inst["nets"]) == set(run_pipeline.INST_LABELS) and inst["num_val"] == run_pipeline.PLANS["quick"].num_val
    assert all(0.0 <= net["AP50"] <= 100.0 for net in inst["nets"].values())  # percentages, as printed
    assert all(0.0 <= label["mean_iou"] <= 100.0 for label in inst["labels"].values())

    # rerun: every stage finds its outputs and skips; the scores are recomputed identically
    again = run_pipeline.main(args)
    for sup in run_pipeline.SUPERVISIONS:
        assert np.isclose(again["supervision"][sup]["pseudo_miou"], summary["supervision"][sup]["pseudo_miou"])
        assert np.isclose(again["supervision"][sup]["seg"]["val_miou"], summary["supervision"][sup]["seg"]["val_miou"])


def test_voc_root_without_classifier_weights_is_refused(tmp_path):
    (tmp_path / "VOC2012" / "JPEGImages").mkdir(parents=True)
    args = run_pipeline.get_args_parser().parse_args(
        ["--voc12_root", str(tmp_path / "VOC2012"), "--work_dir", str(tmp_path / "work"), "--stages", "data",
         "cam_train", "--device", "cpu"])
    assert run_pipeline.plan_name(args) == "voc" and run_pipeline.PLANS["voc"].width == 1.0
    with pytest.raises(cli.UserError, match="--cam_weights"):
        run_pipeline.main(args)


@pytest.mark.slow
def test_voc_root_seeds_cover_the_training_list_and_pseudo_labels_the_infer_list(tmp_path):
    """On VOC the affinity net trains on train_aug, a superset of train: seeds must exist for all of it."""
    root = tmp_path / "VOC2012"
    make_synthetic_voc.main(make_synthetic_voc.get_args_parser().parse_args(
        ["--out", str(root), "--num_train", "12", "--num_val", "2", "--min_size", "96", "--max_size", "128"]))
    lists = root / "ImageSets" / "Segmentation"
    train_aug = (lists / "train_aug.txt").read_text().split()
    (lists / "train.txt").write_text("\n".join(train_aug[:4]) + "\n")  # train ⊂ train_aug, as on VOC
    work = tmp_path / "work"
    args = run_pipeline.get_args_parser().parse_args(
        ["--quick", "--voc12_root", str(root), "--work_dir", str(work), "--supervision", "box",
         "--device", "cpu", "--jobs", "1"])
    summary = run_pipeline.main(args)

    assert sorted(p.stem for p in (work / "seeds" / "SEAM_Box").glob("*.png")) == sorted(train_aug)
    assert sorted(p.stem for p in (work / "pseudo" / "box").glob("*.png")) == sorted(train_aug[:4])
    assert (work / "weights" / "aff_box.pth").is_file() and summary["plan"]["name"] == "quick"
    assert 0.0 <= summary["supervision"]["box"]["pseudo_miou"] <= 100.0


def test_seg_stage_on_a_voc_root_uses_the_shipped_val_list_and_skips_without_backbone(tmp_path, capsys):
    """A VOC download has no val list of its own here: the shipped voc12/val.txt (1,449 ids) is used, and
    without the ImageNet backbone file the stage is skipped with a message, not a crash."""
    (tmp_path / "VOC2012" / "JPEGImages").mkdir(parents=True)
    args = run_pipeline.get_args_parser().parse_args(
        ["--voc12_root", str(tmp_path / "VOC2012"), "--work_dir", str(tmp_path / "work"), "--device", "cpu"])
    pipe = run_pipeline.Pipeline(args)
    assert len(run_pipeline.read_list(pipe.val_list, pipe.root)) == 1449
    assert pipe.seg({"supervision": {}}) is None
    assert "seg stage skipped: no ImageNet backbone file" in capsys.readouterr().out


def test_seg_stage_trains_one_net_per_label_source_and_fills_the_summary(tmp_path, monkeypatch, capsys):
    """The stage's plumbing, with the two scripts replaced: each command must parse with the script's own
    parser; 'inference' copies the val ground truth, so every net scores 100 %."""
    work = tmp_path / "work"
    make_synthetic_voc.main(make_synthetic_voc.get_args_parser().parse_args(
        ["--out", str(work / "VOC2012"), "--num_train", "4", "--num_val", "2", "--min_size", "40",
         "--max_size", "56"]))
    args = run_pipeline.get_args_parser().parse_args(
        ["--quick", "--work_dir", str(work), "--supervision", "box", "--device", "cpu"])
    pipe = run_pipeline.Pipeline(args)
    trained = []

    def fake_run(script, argv):
        module = importlib.import_module(script)
        parsed = module.get_args_parser().parse_args([str(a) for a in argv])
        if script == "train_seg":
            trained.append(parsed)
        else:
            assert script == "infer_seg"
            out = Path(parsed.save_path)
            out.mkdir(parents=True, exist_ok=True)
            for image_id in (work / "VOC2012" / "ImageSets" / "Segmentation" / "val.txt").read_text().split():
                shutil.copy(work / "VOC2012" / "SegmentationClass" / f"{image_id}.png", out / f"{image_id}.png")

    monkeypatch.setattr(pipe, "run", fake_run)
    summary = {"supervision": {"box": {"seed_miou": 0.2, "seed_precision": 0.9, "seed_coverage": 0.5,
                                       "pseudo_miou": 0.3, "baselines": {"box_fill": 0.4, "grabcut": 0.5}}}}
    seg = pipe.seg(summary)
    assert seg["gt"] == 100.0 and seg["num_val"] == 2 and seg["arch"] == "deeplabv2_resnet38"
    assert not seg["gt_at_chance"] and 0 < seg["all_background"] < 100
    assert seg["seconds"] >= 0
    box = summary["supervision"]["box"]["seg"]
    assert box == {"val_miou": 100.0, "seeds_val_miou": 100.0, "baseline": "grabcut", "baseline_val_miou": 100.0,
                   "pct_of_gt": 100.0}
    assert [Path(a.label_dir).name for a in trained] == ["SegmentationClass", "box", "SEAM_Box", "grabcut"]
    assert all(a.train_list == pipe.infer_list and a.arch == "deeplabv2_resnet38" for a in trained)
    assert all(Path(a.backbone_weights) == work / "weights" / "resnet38_SEAM.pth" for a in trained)
    run_pipeline.print_table({**summary, "seg": seg})
    run_pipeline.print_seg_table({**summary, "seg": seg})
    table = capsys.readouterr().out
    assert "val mIoU" in table and "% of GT" in table and "grabcut 100.0" in table


def test_run_each_runs_every_argument_list_once_jobs_at_a_time(tmp_path, monkeypatch):
    """``--jobs 2`` over three runs of a script: each runs once, in its own single-threaded process, and a
    failing run is reported without stopping the others."""
    (tmp_path / "probe.py").write_text(
        "import os, sys, time\n"
        "time.sleep(0.3)\n"
        "open(sys.argv[1], 'w').write(os.environ['OMP_NUM_THREADS'])\n"
        "sys.exit(int(sys.argv[2]))\n")
    monkeypatch.setattr(run_pipeline, "REPO", tmp_path)
    args = run_pipeline.get_args_parser().parse_args(["--work_dir", str(tmp_path / "work"), "--jobs", "2"])
    pipe = run_pipeline.Pipeline(args)
    pipe.run_each("probe", [[tmp_path / f"out{i}", int(i == 1)] for i in range(3)])
    assert [(tmp_path / f"out{i}").read_text() for i in range(3)] == ["1", "1", "1"]
    assert pipe.failures == ["probe exited with 1"]


def test_seg_stage_at_chance_gives_no_percent_of_gt_and_quick_says_smoke_test(tmp_path, monkeypatch, capsys):
    """Every net 'predicts' background everywhere (as --quick's few steps do): the ground-truth net is at chance,
    so no '% of GT' is computed or printed, and the tables of a --quick run call it a smoke test."""
    work = tmp_path / "work"
    make_synthetic_voc.main(make_synthetic_voc.get_args_parser().parse_args(
        ["--out", str(work / "VOC2012"), "--num_train", "4", "--num_val", "2", "--min_size", "40",
         "--max_size", "56"]))
    args = run_pipeline.get_args_parser().parse_args(
        ["--quick", "--work_dir", str(work), "--supervision", "box", "--device", "cpu"])
    pipe = run_pipeline.Pipeline(args)
    gt_dir = work / "VOC2012" / "SegmentationClass"
    val_ids = (work / "VOC2012" / "ImageSets" / "Segmentation" / "val.txt").read_text().split()

    def fake_run(script, argv):
        parsed = importlib.import_module(script).get_args_parser().parse_args([str(a) for a in argv])
        if script == "infer_seg":
            out = Path(parsed.save_path)
            out.mkdir(parents=True, exist_ok=True)
            for image_id in val_ids:
                save_label_png(out / f"{image_id}.png", np.zeros_like(read_label_png(gt_dir / f"{image_id}.png")))

    monkeypatch.setattr(pipe, "run", fake_run)
    summary = {"smoke_test": True,
               "supervision": {"box": {"seed_miou": 20.0, "seed_precision": 90.0, "seed_coverage": 50.0,
                                       "pseudo_miou": 30.0, "baselines": {"grabcut": 50.0}}}}
    seg = pipe.seg(summary)
    # reference: background IoU (background pixels / all labelled pixels) averaged with 0 for each object class
    labels = np.concatenate([read_label_png(gt_dir / f"{i}.png").ravel() for i in val_ids])
    labels = labels[labels != 255]
    reference = 100 * (labels == 0).mean() / len(np.unique(labels))
    assert np.isclose(seg["all_background"], reference, atol=0.01) and np.isclose(seg["gt"], reference, atol=0.01)
    assert seg["gt_at_chance"] and summary["supervision"]["box"]["seg"]["pct_of_gt"] is None
    summary["seg"] = seg
    run_pipeline.print_table(summary)
    run_pipeline.print_seg_table(summary)
    out = capsys.readouterr().out
    assert "at chance" in out and out.count("not quality figures") >= 3
    assert not re.search(r"box .*\d\s*$", out.split("% of GT")[-1].splitlines()[2])  # the box row ends with '-'


def test_plan_flag_and_overrides_reach_the_pipeline(tmp_path):
    parse = run_pipeline.get_args_parser().parse_args
    work = ["--work_dir", str(tmp_path)]
    assert run_pipeline.Pipeline(parse(work)).plan == run_pipeline.PLANS["default"]
    assert run_pipeline.Pipeline(parse([*work, "--quick"])).plan_name == "quick"
    pipe = run_pipeline.Pipeline(parse([*work, "--quick", "--plan", "default", "--set", "cam_epochs=3",
                                        "--set", "seg.iters=7", "--set", "cam_scales=0.5,1"]))
    assert pipe.plan_name == "default" and pipe.plan.cam_epochs == 3 and pipe.plan.cam_scales == (0.5, 1.0)
    assert pipe.seg_plan.iters == 7 and pipe.seg_plan.lr == run_pipeline.SEG_PLANS["default"].lr
    assert pipe.overrides == {"cam_epochs": 3, "seg.iters": 7, "cam_scales": (0.5, 1.0)}
    with pytest.raises(cli.UserError, match="unknown key 'cam_epoch'.*cam_epochs"):
        run_pipeline.Pipeline(parse([*work, "--set", "cam_epoch=3"]))
