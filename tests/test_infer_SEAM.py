import numpy as np
import pytest
import torch

import infer_SEAM
import make_synthetic_voc
from network.resnet38_SEAM import Net
from tool.cam import load_cams
from tool.checkpoint import save_checkpoint
from tool.dist import launch
from tool.label_io import load_npz, read_label_png
from voc12.annotations import image_label_from_xml


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("voc")
    make_synthetic_voc.main(make_synthetic_voc.get_args_parser().parse_args(
        ["--out", str(root), "--num_train", "2", "--num_val", "1", "--min_size", "40", "--max_size", "56"]))
    torch.manual_seed(0)
    weights = root / "tiny_seam.pth"
    save_checkpoint(Net(width=0.0625), weights)
    return root, weights


def parse(root, weights, out, *extra):
    return infer_SEAM.get_args_parser().parse_args([
        "--voc12_root", str(root), "--infer_list", "train.txt", "--weights", str(weights),
        "--backbone_width", "0.0625", "--scales", "0.5", "1.0", "--num_workers", "0", "--device", "cpu",
        "--out_cam", str(out / "cam"), "--out_cam_pred", str(out / "cam_pred"), "--out_crf", str(out / "crf"),
        "--crf", str(out / "seed"), "--ori_crf", str(out / "full"), *extra])


def run(root, weights, out, *extra):
    return infer_SEAM.main(parse(root, weights, out, *extra))


def test_two_cpu_workers_write_what_one_process_writes(setup, tmp_path, capfd):
    """``--gpus 2 --device cpu`` through ``launch``: two gloo workers take one shard each and write the same
    files, with the same contents, as one process (also with a CRF pool and a loader process each)."""
    root, weights = setup
    for gpus in (1, 2):
        args = parse(root, weights, tmp_path / f"gpus{gpus}", "--gpus", str(gpus), "--cpu_workers", str(gpus - 1),
                     "--num_workers", str(gpus - 1))
        assert launch(infer_SEAM.main, args, args.gpus, args.device) == 0
    assert "starting 2 worker processes" in capfd.readouterr().out
    files = {gpus: sorted(p.relative_to(tmp_path / f"gpus{gpus}") for p in (tmp_path / f"gpus{gpus}").rglob("*")
                          if p.is_file()) for gpus in (1, 2)}
    assert files[1] == files[2] and len(files[1]) == 2 * 6  # 2 images x (cam, cam_pred, 2 crf, seed, full)
    for name in files[1]:
        one, two = tmp_path / "gpus1" / name, tmp_path / "gpus2" / name
        if name.suffix == ".png":
            assert np.array_equal(read_label_png(one), read_label_png(two)), name
        else:
            a, b = load_npz(one), load_npz(two)
            assert sorted(a) == sorted(b), name
            for key in a:
                np.testing.assert_allclose(a[key], b[key], rtol=1e-5, atol=1e-6, err_msg=f"{name} {key}")


def test_writes_every_output_and_resumes(setup, tmp_path):
    root, weights = setup
    ids = (root / "ImageSets/Segmentation/train.txt").read_text().split()
    summary = run(root, weights, tmp_path)
    assert (summary.done, summary.skipped, summary.failed) == (2, 0, [])
    for image_id in ids:
        h, w = read_label_png(root / "SegmentationClass" / f"{image_id}.png").shape
        present = np.flatnonzero(image_label_from_xml(root / "Annotations" / f"{image_id}.xml")) + 1
        classes, cams = load_cams(tmp_path / "cam" / f"{image_id}.npz")
        assert classes.tolist() == present.tolist() and cams.shape == (len(present), h, w)
        assert cams.max() <= 1 and (cams.reshape(len(present), -1).max(1) > 0.99).all()
        for folder in ("seed", "full", "cam_pred"):
            label = read_label_png(tmp_path / folder / f"{image_id}.png")
            assert label.shape == (h, w)
            assert set(np.unique(label).tolist()) <= {0, 255, *present.tolist()}
        seed = read_label_png(tmp_path / "seed" / f"{image_id}.png")
        full = read_label_png(tmp_path / "full" / f"{image_id}.png")
        assert ((seed == full) | (seed == 255)).all()  # seeds are the full label, masked
        for alpha in ("4.0", "24.0"):
            crf = load_npz(tmp_path / f"crf_{alpha}" / f"{image_id}.npz")
            assert crf["classes"].tolist() == [0, *present.tolist()]
            np.testing.assert_allclose(crf["probs"].sum(0), 1, atol=1e-3)

    again = run(root, weights, tmp_path)
    assert (again.done, again.skipped) == (0, 2)
    (tmp_path / "seed" / f"{ids[1]}.png").unlink()
    again = run(root, weights, tmp_path)
    assert (again.done, again.skipped) == (1, 1)
    assert (tmp_path / "seed" / f"{ids[1]}.png").exists()


def test_a_missing_image_is_reported_and_the_rest_done(setup, tmp_path):
    root, weights = setup
    ids = (root / "ImageSets/Segmentation/train.txt").read_text().split()
    listing = tmp_path / "list.txt"
    listing.write_text(f"{ids[0]}\n2026_missing\n{ids[1]}\n")
    (root / "Annotations" / "2026_missing.xml").write_text(
        (root / "Annotations" / f"{ids[0]}.xml").read_text())
    try:
        summary = run(root, weights, tmp_path, "--infer_list", str(listing),
                      "--crf", "none", "--ori_crf", "none")
    finally:
        (root / "Annotations" / "2026_missing.xml").unlink()
    assert summary.done == 2 and [i for i, _ in summary.failed] == ["2026_missing"]
    assert "2026_missing.jpg" in summary.failed[0][1]
    assert not (tmp_path / "seed").exists()


def test_broken_xml_and_unlisted_image_fail_per_image(setup, tmp_path):
    """One broken XML and one id with neither image nor XML no longer abort the run: each is named."""
    root, weights = setup
    ids = (root / "ImageSets/Segmentation/train.txt").read_text().split()
    listing = tmp_path / "list.txt"
    listing.write_text(f"2026_badxml\n{ids[0]}\n2026_nothing\n")
    (root / "JPEGImages" / "2026_badxml.jpg").write_bytes((root / "JPEGImages" / f"{ids[0]}.jpg").read_bytes())
    (root / "Annotations" / "2026_badxml.xml").write_text("<annotation><object>")
    try:
        summary = run(root, weights, tmp_path, "--infer_list", str(listing), "--crf", "none", "--ori_crf", "none")
    finally:
        (root / "Annotations" / "2026_badxml.xml").unlink()
        (root / "JPEGImages" / "2026_badxml.jpg").unlink()
    assert summary.done == 1 and summary.exit_code == 1
    failed = dict(summary.failed)
    assert set(failed) == {"2026_badxml", "2026_nothing"}
    assert "2026_badxml.xml" in failed["2026_badxml"] and "broken XML" in failed["2026_badxml"]
    assert "2026_nothing.jpg" in failed["2026_nothing"] and "2026_nothing.xml" in failed["2026_nothing"]
    assert (tmp_path / "cam" / f"{ids[0]}.npz").is_file()
