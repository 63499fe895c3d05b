"""tool.cli and the command line of every script: one help formatter, a help text on every option, and a user's
mistake answered by one ``error: …`` line with exit status 2 (no traceback)."""

from __future__ import annotations

import argparse
import importlib
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import make_synthetic_voc
from tool import cli

REPO = Path(__file__).resolve().parents[1]
# every top-level script with a parser, found by glob so that a script added later is checked too
SCRIPTS = sorted(p.stem for p in REPO.glob("*.py")
                 if "def get_args_parser" in p.read_text(encoding="utf-8")) + ["voc12.make_cls_labels"]


@pytest.mark.parametrize("script", SCRIPTS)
def test_every_option_has_help_and_the_shared_formatter(script):
    parser = importlib.import_module(script).get_args_parser()
    assert parser.formatter_class is cli.HelpFormatter, f"{script}: build the parser with tool.cli.make_parser"
    silent = [a.option_strings[0] for a in parser._actions
              if a.option_strings and not isinstance(a, argparse._HelpAction) and not (a.help or "").strip()]
    assert not silent, f"{script}: options without help: {silent}"
    text = parser.format_help()  # a stray % in a help string fails here, as it would under --help
    assert "usage:" in text


def test_help_states_every_default_once():
    parser = cli.make_parser("demo")
    parser.add_argument("--lr", default=0.01, type=float, help="learning rate")
    parser.add_argument("--out", default=None, help="output folder")
    parser.add_argument("--crop", default=448, type=int, help="crop in pixels (default: the published 448)")
    parser.add_argument("--flag", action="store_true", help="a switch")
    text = " ".join(parser.format_help().split())
    assert "learning rate (default: 0.01)" in text
    assert "output folder" in text and "(default: None)" not in text
    assert text.count("default") == 2  # --lr's appended one and --crop's own
    assert "a switch (default" not in text


def test_run_turns_a_user_error_into_one_line_and_status_2(capsys, monkeypatch):
    monkeypatch.delenv(cli.DEBUG_ENV, raising=False)

    def bad():
        raise cli.UserError("--weights x.jpg: not a checkpoint; pass a .pth file")

    assert cli.run(bad) == 2
    assert capsys.readouterr().err == "error: --weights x.jpg: not a checkpoint; pass a .pth file\n"
    assert cli.run(lambda: None) == 0 and cli.run(lambda: 3) == 3
    monkeypatch.setenv(cli.DEBUG_ENV, "1")
    with pytest.raises(cli.UserError):
        cli.run(bad)


@pytest.fixture(scope="module")
def mistakes(tmp_path_factory) -> Path:
    """A tiny generated VOC root and the wrong files users pass: a JPEG, a torchvision-style state dict,
    colour (RGB) PNGs where label maps belong."""
    d = tmp_path_factory.mktemp("mistakes")
    make_synthetic_voc.main(make_synthetic_voc.get_args_parser().parse_args(
        ["--out", str(d / "VOC"), "--num_train", "2", "--num_train_aug", "2", "--num_val", "1", "--min_size", "40",
         "--max_size", "56"]))
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(d / "photo.jpg")
    (d / "rgb").mkdir()
    for image_id in (d / "VOC" / "ImageSets" / "Segmentation" / "train.txt").read_text().split():
        with Image.open(d / "VOC" / "SegmentationClass" / f"{image_id}.png") as label:
            label.convert("RGB").save(d / "rgb" / f"{image_id}.png")
    torch.save({"conv1.weight": torch.zeros(4, 3, 7, 7), "bn1.weight": torch.zeros(4), "fc.weight": torch.zeros(10, 4)},
               d / "torchvision.pth")
    return d


# (command line with {d} = the fixture folder, a phrase the error line must hold)
BAD_INVOCATIONS = [
    ("train_SEAM.py --voc12_root {d}/missing --device cpu", "check --voc12_root"),
    ("train_SEAM.py --voc12_root {d}/VOC --train_list train.txt --weights {d}/photo.jpg --save_dir {d}/w1 "
     "--device cpu", "photo.jpg: not a PyTorch checkpoint"),
    ("infer_SEAM.py --voc12_root {d}/VOC --infer_list train.txt --weights {d}/torchvision.pth --crf {d}/o1 "
     "--ori_crf none --device cpu", "torchvision.pth does not match"),
    ("eval_classifier.py --voc12_root {d}/VOC --list train.txt --weights {d}/photo.jpg --device cpu", "photo.jpg"),
    ("train_aff_gated_aff.py --voc12_root {d}/VOC --train_list train.txt --label_dir {d}/rgb --weights none "
     "--save_dir {d}/w2 --device cpu", "got mode RGB"),
    ("train_seg.py --voc12_root {d}/VOC --train_list train.txt --label_dir {d}/rgb --arch deeplabv2_resnet38 "
     "--backbone_weights none --save_dir {d}/w3 --device cpu", "got mode RGB"),
    ("eval_miou.py --pred_dir {d}/rgb --gt_dir {d}/VOC/SegmentationClass --voc12_root {d}/VOC --list train.txt",
     "got mode RGB"),
    ("visualize.py --voc12_root {d}/VOC --list no_such_list.txt --columns a={d}/rgb --out {d}/sheet.png",
     "id list 'no_such_list.txt' not found"),
    ("make_voc_lists.py --voc12_root {d}/missing --out_dir {d}/lists", "--voc12_root folder not found"),
    ("make_seed_labels.py --type box --voc12_root {d}/VOC --infer_list train.txt --cam_seed_dir {d}/missing "
     "--out_dir {d}/seeds", "--cam_seed_dir not found"),
    ("train_infer_A2GNN_box.py --voc12_root {d}/VOC --infer_list train.txt --weights {d}/photo.jpg "
     "--save_path {d}/pseudo --device cpu", "photo.jpg"),
    ("infer_seg.py --voc12_root {d}/VOC --infer_list train.txt --weights {d}/photo.jpg --arch deeplabv2_resnet38 "
     "--save_path {d}/pred --device cpu", "photo.jpg"),
    ("infer_image.py --image {d}/missing.jpg --box 1,1,4,4,dog --out {d}/mask.png --device cpu", "image not found"),
    ("run_pipeline.py --voc12_root {d}/missing --work_dir {d}/work --device cpu", "no JPEGImages folder"),
    ("-m voc12.make_cls_labels --voc12_root {d}/missing --out {d}/labels.npz", "annotation file not found"),
    ("run_pipeline.py --work_dir {d}/work --set cam_epoch=2", "unknown key 'cam_epoch'"),
]


def test_user_mistakes_end_with_one_error_line_and_status_2(mistakes):
    """Each bad invocation as a user types it, in its own process: exit status 2, the last stderr line is
    ``error: …`` naming the problem, and no traceback."""
    env = {k: v for k, v in os.environ.items() if k != cli.DEBUG_ENV}
    env.update(OMP_NUM_THREADS="1", PYTHONPATH=str(REPO))
    commands = [[sys.executable, *line.format(d=mistakes).split()] for line, _ in BAD_INVOCATIONS]
    results, running = [], []
    for command in commands:  # four processes at a time
        running.append(subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.DEVNULL,
                                        stderr=subprocess.PIPE, text=True))
        if len(running) == 4:
            results += [(p.communicate(timeout=300)[1], p.returncode) for p in running]
            running = []
    results += [(p.communicate(timeout=300)[1], p.returncode) for p in running]
    problems = []
    for (line, phrase), (err, code) in zip(BAD_INVOCATIONS, results, strict=True):
        last = err.strip().splitlines()[-1] if err.strip() else ""
        if code != 2 or not last.startswith("error:") or phrase not in last or "Traceback" in err:
            problems.append(f"{line}: exit {code}, stderr ends {err[-600:]!r}")
    assert not problems, "\n".join(problems)
