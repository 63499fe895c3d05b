"""benchmarks/bench_amp_quality.py on a tiny generated run folder: both --amp rows are measured and printed."""

import importlib.util
from pathlib import Path

import numpy as np
import pytest
import torch

import make_synthetic_voc
from network.resnet38_aff_gated import Net
from tool.checkpoint import save_checkpoint
from tool.label_io import read_label_png, save_label_png

BENCH = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_amp_quality.py"

pytestmark = pytest.mark.usefixtures("one_thread")


def load_bench():
    spec = importlib.util.spec_from_file_location("bench_amp_quality", BENCH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_prints_the_miou_of_both_runs_and_their_difference(tmp_path, capsys):
    """A run_pipeline.py work folder in miniature: dataset, scribble seeds (a sparse sample of the ground
    truth) and an untrained width-1/8 affinity net at the paths the pipeline uses."""
    work = tmp_path / "work"
    make_synthetic_voc.main(make_synthetic_voc.get_args_parser().parse_args(
        ["--out", str(work / "VOC2012"), "--num_train", "2", "--num_val", "1", "--min_size", "40",
         "--max_size", "56"]))
    ids = (work / "VOC2012" / "ImageSets" / "Segmentation" / "train.txt").read_text().split()
    for image_id in ids:
        seeds = read_label_png(work / "VOC2012" / "SegmentationClass" / f"{image_id}.png").copy()
        keep = np.zeros(seeds.shape, bool)
        keep[::4, ::4] = True
        seeds[~keep] = 255
        save_label_png(work / "seeds" / "Scribble_SuperPixel" / f"{image_id}.png", seeds)
    torch.manual_seed(0)
    save_checkpoint(Net(width=0.125), work / "weights" / "aff_scribble.pth")

    bench = load_bench()
    rows = bench.main(bench.get_args_parser().parse_args(
        ["--work_dir", str(work), "--quick", "True", "--supervision", "scribble", "--num_images", "2",
         "--device", "cpu", "--out_dir", str(tmp_path / "out")]))
    (row,) = rows
    assert row["images"] == 2 and 0 <= row["miou_False"] <= 1 and 0 <= row["miou_True"] <= 1
    assert row["points"] == pytest.approx(100 * (row["miou_True"] - row["miou_False"]))
    for amp in (False, True):
        assert sorted(p.stem for p in (tmp_path / "out" / f"scribble_amp_{amp}").glob("*.png")) == sorted(ids)
    out = capsys.readouterr().out
    assert "| scribble | 2 |" in out and "mIoU --amp False" in out and "mIoU --amp True" in out
