"""Every stage script on a tiny generated set whose list also names a corrupt image, a broken XML, a bad
seed (value 37) and an id without an image: the exit code is non-zero, every bad file is named, and every
good image's output exists and equals the output of a clean run on the good ids alone."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import infer_SEAM
import make_seed_labels
import make_synthetic_voc
import train_aff_gated_aff
import train_infer_A2GNN_box
import train_SEAM
from network.resnet38_aff_gated import Net as AffNet
from network.resnet38_SEAM import Net as SeamNet
from tool.cam import load_cams
from tool.checkpoint import read_state_dict, save_checkpoint
from tool.label_io import load_npz, read_label_png, save_label_png

ROOT = Path(__file__).resolve().parents[1]
SEAM_WIDTH, AFF_WIDTH = 0.0625, 0.125
BAD = {  # id -> the file that must be named
    "2026_corrupt": "JPEGImages/2026_corrupt.jpg",
    "2026_badxml": "Annotations/2026_badxml.xml",
    "2026_badseed": "seeds/2026_badseed.png",
    "2026_noimage": "JPEGImages/2026_noimage.jpg",
}

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def faulty_voc(tmp_path_factory):
    """A 4-image synthetic root with seeds, plus the four bad ids; lists good.txt and faulty.txt."""
    root = tmp_path_factory.mktemp("voc")
    make_synthetic_voc.main(make_synthetic_voc.get_args_parser().parse_args(
        ["--out", str(root), "--num_train", "4", "--num_val", "0", "--min_size", "40", "--max_size", "56"]))
    lists = root / "ImageSets" / "Segmentation"
    good = lists.joinpath("train.txt").read_text().split()
    for image_id in good:
        gt = read_label_png(root / "SegmentationClass" / f"{image_id}.png")
        seeds = gt.copy()
        seeds[np.roll(gt, 2, axis=1) != gt] = 255
        save_label_png(root / "seeds" / f"{image_id}.png", seeds)
    donors = dict(zip(BAD, good, strict=False))
    for bad, donor in donors.items():
        for folder, ext in (("JPEGImages", ".jpg"), ("Annotations", ".xml"), ("seeds", ".png"),
                            ("SegmentationClass", ".png")):
            shutil.copy(root / folder / f"{donor}{ext}", root / folder / f"{bad}{ext}")
    jpeg = root / "JPEGImages" / "2026_corrupt.jpg"
    jpeg.write_bytes(jpeg.read_bytes()[: jpeg.stat().st_size // 2])
    (root / "Annotations" / "2026_badxml.xml").write_text("<annotation><object><name>cat")
    seed = read_label_png(root / "seeds" / "2026_badseed.png")
    seed[:3, :3] = 37
    save_label_png(root / "seeds" / "2026_badseed.png", seed)
    (root / "JPEGImages" / "2026_noimage.jpg").unlink()
    faulty = [good[0], "2026_corrupt", good[1], "2026_badxml", "2026_badseed", good[2], "2026_noimage",
              good[3]]
    lists.joinpath("good.txt").write_text("\n".join(good) + "\n")
    lists.joinpath("faulty.txt").write_text("\n".join(faulty) + "\n")
    torch.manual_seed(0)
    save_checkpoint(SeamNet(width=SEAM_WIDTH), root / "seam.pth")
    torch.manual_seed(0)
    save_checkpoint(AffNet(width=AFF_WIDTH), root / "aff.pth")
    return root, good


def run_script(script: str, argv: list[str]) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, str(ROOT / script), *argv], capture_output=True, text=True,
                          env=env, timeout=600, cwd=ROOT)


def assert_names(stderr: str, root: Path, ids) -> None:
    for image_id in ids:
        assert str(root / BAD[image_id]) in stderr, f"{BAD[image_id]} not named:\n{stderr}"


def same_pngs(a: Path, b: Path, ids) -> None:
    for image_id in ids:
        np.testing.assert_array_equal(read_label_png(a / f"{image_id}.png"), read_label_png(b / f"{image_id}.png"))


@pytest.mark.slow
def test_infer_seam(faulty_voc, tmp_path):
    root, good = faulty_voc

    def argv(list_name, out):
        return ["--voc12_root", str(root), "--infer_list", list_name, "--weights", str(root / "seam.pth"),
                "--backbone_width", str(SEAM_WIDTH), "--scales", "0.5", "1.0", "--num_workers", "0",
                "--device", "cpu", "--out_cam", str(out / "cam"), "--crf", str(out / "seed"),
                "--ori_crf", "none"]

    faulty = run_script("infer_SEAM.py", argv("faulty.txt", tmp_path / "faulty"))
    assert faulty.returncode == 1, faulty.stderr
    assert_names(faulty.stderr, root, ["2026_corrupt", "2026_badxml", "2026_noimage"])
    clean = infer_SEAM.main(infer_SEAM.get_args_parser().parse_args(argv("good.txt", tmp_path / "clean")))
    assert clean.exit_code == 0 and clean.done == len(good)
    same_pngs(tmp_path / "faulty" / "seed", tmp_path / "clean" / "seed", good)
    for image_id in good:
        for a, b in zip(load_cams(tmp_path / "faulty" / "cam" / f"{image_id}.npz"),
                        load_cams(tmp_path / "clean" / "cam" / f"{image_id}.npz"), strict=True):
            np.testing.assert_array_equal(a, b)
    # the bad seed id has a good image and XML: infer_SEAM does not read seeds, so it is processed
    assert (tmp_path / "faulty" / "seed" / "2026_badseed.png").is_file()


def test_make_seed_labels(faulty_voc, tmp_path):
    root, good = faulty_voc

    def argv(list_name, out):
        return ["--type", "box", "--voc12_root", str(root), "--list", list_name,
                "--cam_seed_dir", str(root / "seeds"), "--out_dir", str(out)]

    faulty = run_script("make_seed_labels.py", argv("faulty.txt", tmp_path / "faulty"))
    assert faulty.returncode == 1, faulty.stderr
    assert_names(faulty.stderr, root, list(BAD))
    assert "unknown class values [37]" in faulty.stderr
    clean = make_seed_labels.main(make_seed_labels.get_args_parser().parse_args(argv("good.txt",
                                                                                     tmp_path / "clean")))
    assert clean.exit_code == 0 and clean.done == len(good)
    same_pngs(tmp_path / "faulty", tmp_path / "clean", good)
    assert sorted(p.name for p in (tmp_path / "faulty").iterdir()) == sorted(f"{i}.png" for i in good)


def stage2_argv(root, list_name, out, *extra):
    return ["--voc12_root", str(root), "--label_dir", str(root / "seeds"), "--train_list", list_name,
            "--weights", "none", "--backbone_width", str(AFF_WIDTH), "--crop_size", "32", "--radius", "2",
            "--batch_size", "2", "--max_epoches", "1", "--num_workers", "0", "--device", "cpu",
            "--save_dir", str(out), "--session_name", "aff", "--seed", "1", *extra]


@pytest.mark.slow
def test_train_aff_gated_aff(faulty_voc, tmp_path):
    root, good = faulty_voc
    faulty = run_script("train_aff_gated_aff.py", stage2_argv(root, "faulty.txt", tmp_path / "faulty"))
    assert faulty.returncode != 0
    assert_names(faulty.stderr, root, ["2026_corrupt", "2026_badseed", "2026_noimage"])
    assert "unknown class values [37]" in faulty.stderr and "--skip_bad True" in faulty.stderr
    assert not (tmp_path / "faulty" / "aff.pth").exists() and not (tmp_path / "faulty" / "aff_state.pth").exists()

    skipped = train_aff_gated_aff.main(train_aff_gated_aff.get_args_parser().parse_args(
        stage2_argv(root, "faulty.txt", tmp_path / "skip", "--skip_bad", "True")))
    # stage 2 reads no XML: the broken-XML id has a good image and seed and is trained on
    usable = [i for i in (root / "ImageSets/Segmentation/faulty.txt").read_text().split()
              if i in good or i == "2026_badxml"]
    (tmp_path / "usable.txt").write_text("\n".join(usable) + "\n")
    clean = train_aff_gated_aff.main(train_aff_gated_aff.get_args_parser().parse_args(
        stage2_argv(root, str(tmp_path / "usable.txt"), tmp_path / "clean")))
    assert len(skipped) == len(clean) == len(usable) // 2
    a, b = read_state_dict(tmp_path / "skip" / "aff.pth"), read_state_dict(tmp_path / "clean" / "aff.pth")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def seam_argv(root, list_name, out, *extra):
    return ["--voc12_root", str(root), "--train_list", list_name, "--weights", "none",
            "--backbone_width", str(SEAM_WIDTH), "--crop_size", "32", "--resize_long", "32", "40",
            "--batch_size", "2", "--max_epoches", "1", "--num_workers", "0", "--device", "cpu",
            "--save_dir", str(out), "--session_name", "seam", *extra]


@pytest.mark.slow
def test_train_seam(faulty_voc, tmp_path, capsys):
    root, good = faulty_voc
    faulty = run_script("train_SEAM.py", seam_argv(root, "faulty.txt", tmp_path / "faulty"))
    assert faulty.returncode != 0
    assert_names(faulty.stderr, root, ["2026_corrupt", "2026_badxml", "2026_noimage"])
    assert not (tmp_path / "faulty" / "seam.pth").exists()

    train_SEAM.main(train_SEAM.get_args_parser().parse_args(
        seam_argv(root, "faulty.txt", tmp_path / "skip", "--skip_bad", "True")))
    assert "left out 3 of 8 images" in capsys.readouterr().err
    # stage 1 reads no seeds: the bad-seed id has a good image and XML and is trained on
    usable = [i for i in (root / "ImageSets/Segmentation/faulty.txt").read_text().split()
              if i in good or i == "2026_badseed"]
    (tmp_path / "usable.txt").write_text("\n".join(usable) + "\n")
    train_SEAM.main(train_SEAM.get_args_parser().parse_args(seam_argv(root, str(tmp_path / "usable.txt"),
                                                                      tmp_path / "clean")))
    a, b = read_state_dict(tmp_path / "skip" / "seam.pth"), read_state_dict(tmp_path / "clean" / "seam.pth")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.slow
def test_train_infer_a2gnn_box(faulty_voc, tmp_path):
    root, good = faulty_voc

    def argv(list_name, out):
        return ["--voc12_root", str(root), "--weights", str(root / "aff.pth"), "--backbone_width",
                str(AFF_WIDTH), "--infer_list", list_name, "--seed_label_root", str(root / "seeds"),
                "--save_path", str(out), "--save_probs", str(out / "probs"), "--epochs", "2", "--hidden",
                "8", "--radius", "2", "--device", "cpu"]

    faulty = run_script("train_infer_A2GNN_box.py", argv("faulty.txt", tmp_path / "faulty"))
    assert faulty.returncode == 1, faulty.stderr
    assert_names(faulty.stderr, root, list(BAD))
    clean = train_infer_A2GNN_box.main(train_infer_A2GNN_box.get_args_parser().parse_args(
        argv("good.txt", tmp_path / "clean")))
    assert clean.exit_code == 0 and clean.done == len(good)
    same_pngs(tmp_path / "faulty", tmp_path / "clean", good)
    for image_id in good:
        np.testing.assert_array_equal(load_npz(tmp_path / "faulty" / "probs" / f"{image_id}.npz")["probs"],
                                      load_npz(tmp_path / "clean" / "probs" / f"{image_id}.npz")["probs"])
