"""The whole pipeline on a tiny generated dataset (``run_pipeline.py --quick``), as CI runs it."""

import json

import numpy as np
import pytest

import run_pipeline
from tool.label_io import read_label_png


@pytest.mark.slow
def test_quick_pipeline_writes_every_stage_and_the_summary(tmp_path):
    work = tmp_path / "demo"
    args = run_pipeline.get_args_parser().parse_args(["--quick", "--work_dir", str(work), "--device", "cpu"])
    summary = run_pipeline.main(args)

    on_disk = json.loads((work / "summary.json").read_text())
    assert on_disk == summary
    assert set(summary["supervision"]) == set(run_pipeline.SUPERVISIONS)
    ids = (work / "VOC2012" / "ImageSets" / "Segmentation" / "train.txt").read_text().split()
    assert len(ids) == run_pipeline.PLANS["quick"].num_train
    for sup, entry in summary["supervision"].items():
        for key in ("seed_miou", "pseudo_miou", "seed_precision", "seed_coverage"):
            assert 0.0 <= entry[key] <= 1.0, (sup, key)
        assert entry["seconds"]["a2gnn"] > 0 and entry["seconds"]["aff_train"] > 0
        assert (work / "weights" / f"aff_{sup}.pth").is_file()
        for image_id in ids:
            label = read_label_png(work / "pseudo" / sup / f"{image_id}.png")
            gt = read_label_png(work / "VOC2012" / "SegmentationClass" / f"{image_id}.png")
            assert label.shape == gt.shape and label.max() <= 20  # every pixel gets a class
    assert set(summary["supervision"]["box"]["baselines"]) == {"box_fill", "grabcut"}
    assert "cam" in summary["supervision"]["image"]["baselines"]
    assert (work / "contact_sheet.png").is_file()

    # rerun: every stage finds its outputs and skips; the scores are recomputed identically
    again = run_pipeline.main(args)
    for sup in run_pipeline.SUPERVISIONS:
        assert np.isclose(again["supervision"][sup]["pseudo_miou"], summary["supervision"][sup]["pseudo_miou"])
