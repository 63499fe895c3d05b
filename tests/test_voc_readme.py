"""The commands of docs/voc.md (steps 1-3 on PASCAL VOC 2012), run as written on a VOC-shaped root.

The commands are parsed from docs/voc.md (so the test fails when the page and the code drift apart) and
run in order, in-process, from a scratch working folder standing in for the repository root: relative
paths (``data/``, ``netWeights/``, ``out/``) land there and each step reads what the previous one wrote.
Only size flags are appended (network width, crops, epochs, scales, loader processes). The root has the
VOC folders and file names and, like a VOC download, no train_aug list: ``train_aug.txt`` is found
through the shipped-list lookup, pointed (for this small root) at lists of the generated ids. The two
published downloads the section starts from (the ImageNet MXNet file and ``resnet38_aff_SEAM.pth``) are
written by the test from width-1/8 networks.
"""

import importlib
import os
import re
import shlex
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from test_checkpoint import backbone_mxnet_arrays, write_mxnet_params

import voc12.lists
from network import resnet38_aff_gated, resnet38d
from tool.checkpoint import save_checkpoint
from tool.label_io import read_label_png
from voc12.synthetic import write_voc_download

VOC_DOC = Path(__file__).resolve().parents[1] / "docs" / "voc.md"
README = Path(__file__).resolve().parents[1] / "README.md"
WIDTH = "0.125"
SIZE_FLAGS = {  # appended to the docs/voc.md command of each script
    "train_SEAM": ["--backbone_width", WIDTH, "--crop_size", "64", "--resize_long", "64", "80",
                   "--max_epoches", "1", "--batch_size", "2", "--num_workers", "0"],
    "infer_SEAM": ["--backbone_width", WIDTH, "--scales", "1.0", "--num_workers", "0"],
    "make_seed_labels": [],
    "train_aff_gated_aff": ["--backbone_width", WIDTH, "--crop_size", "64", "--max_epoches", "1",
                            "--batch_size", "2", "--num_workers", "0"],
    "train_infer_A2GNN_box": ["--backbone_width", WIDTH, "--epochs", "2", "--hidden", "16"],
    "train_infer_A2GNN_others": ["--backbone_width", WIDTH, "--epochs", "2", "--hidden", "16"],
    "eval_miou": [],
}
TRAIN = ["2007_000032", "2007_000039", "2007_000063", "2007_000068"]
AUG = ["2007_000121", "2007_000170"]  # train_aug only (SBD)
VAL = ["2007_000033"]


def voc_commands(text: str) -> list[str]:
    """The ``python ...`` lines of the code blocks of docs/voc.md up to its Step/Stage 4 heading, comments
    dropped, backslash continuations joined."""
    end = re.search(r"^#+ .*(Step|Stage) 4", text, flags=re.MULTILINE)
    section = text[:end.start()] if end else text
    commands = []
    for block in re.findall(r"^```[^\n]*\n(.*?)^```", section, flags=re.MULTILINE | re.DOTALL):
        for line in block.replace("\\\n", " ").splitlines():
            if line.strip().startswith("python "):
                commands.append(line.strip())
    return commands


def test_voc_doc_has_every_stage():
    scripts = [shlex.split(c)[1] for c in voc_commands(VOC_DOC.read_text(encoding="utf-8"))]
    for script in ("train_SEAM.py", "infer_SEAM.py", "make_seed_labels.py", "train_aff_gated_aff.py",
                   "train_infer_A2GNN_box.py", "train_infer_A2GNN_others.py", "eval_miou.py"):
        assert script in scripts
    assert set(scripts) <= {f"{s}.py" for s in SIZE_FLAGS}, "a new script in docs/voc.md needs SIZE_FLAGS"


def test_readme_voc_commands_are_those_of_the_voc_doc():
    """The README's short command list on VOC is copied from docs/voc.md, which the slow test below runs."""
    readme = README.read_text(encoding="utf-8")
    section = readme[readme.index("## The four stages on PASCAL VOC"):]
    section = section[:re.search(r"^#+ Stage 4", section, flags=re.MULTILINE).start()]
    commands = [line.strip() for line in section.splitlines() if line.startswith("python ")]
    assert commands and set(commands) <= set(voc_commands(VOC_DOC.read_text(encoding="utf-8")))


def test_published_greyscale_seed_pngs_read_as_class_ids(tmp_path):
    """The upstream seeds are greyscale PNGs of class ids (written from uint8 maps, read back with
    OpenCV IMREAD_GRAYSCALE): they must read as the same values as our palette PNGs."""
    values = np.array([[0, 1, 15], [20, 255, 7]], np.uint8)
    Image.fromarray(values, mode="L").save(tmp_path / "grey.png")
    np.testing.assert_array_equal(read_label_png(tmp_path / "grey.png"), values)
    Image.fromarray(np.stack([values] * 3, -1), mode="RGB").save(tmp_path / "rgb.png")
    with pytest.raises(ValueError, match="RGB"):
        read_label_png(tmp_path / "rgb.png")


@pytest.mark.slow
def test_voc_doc_commands_run_in_order(tmp_path, monkeypatch, one_thread):
    voc = tmp_path / "VOC2012"
    write_voc_download(voc, TRAIN, AUG, VAL)
    assert sorted(p.name for p in (voc / "ImageSets" / "Segmentation").iterdir()) == ["train.txt", "val.txt"]
    lists = tmp_path / "lists"  # the shipped lists, for this root's ids
    lists.mkdir()
    for name, ids in (("train_aug", TRAIN + AUG), ("train", TRAIN), ("val", VAL), ("test", [])):
        (lists / f"{name}.txt").write_text("".join(f"{i}\n" for i in ids))
    monkeypatch.setattr(voc12.lists, "SHIPPED_LISTS", lists)

    work = tmp_path / "repo"  # stands for the repository root the page's relative paths start from
    work.mkdir()
    monkeypatch.chdir(work)
    torch.manual_seed(0)
    Path("netWeights").mkdir()
    write_mxnet_params(Path("netWeights/ilsvrc-cls_rna-a1_cls1000_ep-0001.params"),
                       backbone_mxnet_arrays(resnet38d.Net(width=float(WIDTH))))
    save_checkpoint(resnet38_aff_gated.Net(width=float(WIDTH)), Path("netWeights/resnet38_aff_SEAM.pth"))
    monkeypatch.setenv("VOC", str(voc))

    commands = voc_commands(VOC_DOC.read_text(encoding="utf-8"))
    results = []
    for command in commands:
        argv = shlex.split(os.path.expandvars(command))
        script = argv[1].removesuffix(".py")
        module = importlib.import_module(script)
        args = module.get_args_parser().parse_args(argv[2:] + SIZE_FLAGS[script])
        result = module.main(args)
        if hasattr(result, "exit_code"):  # per-image stages: no image may fail
            assert result.exit_code == 0 and result.failed == [], (command, result.failed)
        results.append((command, result))

    train_aug = TRAIN + AUG
    assert Path("netWeights/resnet38_SEAM.pth").is_file()
    for folder, ids in (("data/cams", train_aug), ("data/Init_Label/SEAM_Image", train_aug),
                        ("data/Init_Label/SEAM_Image_Full", train_aug)):
        assert sorted(p.stem for p in Path(folder).iterdir()) == sorted(ids), folder
    for name in ("SEAM_Box", "Scribble_SuperPixel", "SEAM_Scribble", "SEAM_Point"):
        for image_id in train_aug:
            label = read_label_png(Path("data/Init_Label") / name / f"{image_id}.png")
            assert set(np.unique(label)) <= set(range(21)) | {255}
    for sup in ("box", "scribble", "image", "point"):
        assert Path(f"netWeights/final_model/aff_{sup}.pth").is_file(), sup  # step 2 -> step 3
        preds = sorted(p.stem for p in Path(f"out/{sup}_pred").glob("*.png"))
        assert preds == sorted(train_aug), sup
    scores = [r for c, r in results if "eval_miou.py" in c]
    assert len(scores) == 2 and scores[0]["num_images"] == len(TRAIN)
    assert 0.0 <= scores[0]["miou"] <= 1.0 and Path("out/box_pred.json").is_file()
    assert scores[1]["precision"] is not None
