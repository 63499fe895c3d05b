import shutil

import numpy as np
import pytest
import torch
from PIL import Image

import train_infer_A2GNN_box as box_script
import train_infer_A2GNN_others as others_script
from network.resnet38_aff_gated import Net
from tool.cam import save_cams
from tool.checkpoint import save_checkpoint
from tool.dist import launch
from tool.label_io import load_npz, read_label_png, save_label_png

SIZE = (44, 60)  # H, W: not multiples of 8
IDS = ["2007_000001", "2007_000002"]


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def fake_voc(tmp_path_factory):
    """A two-image VOC root with seeds, boxes, CAMs and a width-1/8 affinity-net checkpoint; the list also
    names an image without a seed PNG."""
    root = tmp_path_factory.mktemp("voc")
    rng = np.random.default_rng(0)
    (root / "JPEGImages").mkdir()
    (root / "Annotations").mkdir()
    (root / "ImageSets" / "Segmentation").mkdir(parents=True)
    for image_id in [*IDS, "2007_000003"]:
        image = rng.integers(0, 60, (*SIZE, 3), dtype=np.uint8)
        image[10:30, 20:45] = (200, 40, 40)
        Image.fromarray(image).save(root / "JPEGImages" / f"{image_id}.jpg")
        (root / "Annotations" / f"{image_id}.xml").write_text(
            "<annotation><size><width>60</width><height>44</height><depth>3</depth></size>"
            "<object><name>cat</name><difficult>0</difficult><bndbox><xmin>21</xmin><ymin>11</ymin>"
            "<xmax>45</xmax><ymax>30</ymax></bndbox></object></annotation>")
        cams = np.zeros((1, *SIZE), np.float32)
        cams[0, 10:30, 20:45] = 0.9
        save_cams(root / "cams" / f"{image_id}.npz", np.array([8]), cams)
    for image_id in IDS:
        seeds = np.full(SIZE, 255, np.uint8)
        seeds[:6] = 0
        seeds[15:25, 28:38] = 8
        save_label_png(root / "seeds" / f"{image_id}.png", seeds)
    (root / "ImageSets" / "Segmentation" / "tiny.txt").write_text("\n".join([*IDS, "2007_000003"]) + "\n")
    torch.manual_seed(0)
    save_checkpoint(Net(width=0.125), root / "aff.pth")
    return root


def common_flags(root, out):
    return ["--voc12_root", str(root), "--weights", str(root / "aff.pth"), "--backbone_width", "0.125",
            "--infer_list", "tiny.txt", "--seed_label_root", str(root / "seeds"), "--save_path", str(out),
            "--epochs", "2", "--hidden", "16", "--device", "cpu"]


def test_box_script_writes_labels_resumes_and_reports_failures(fake_voc, tmp_path, capsys):
    out = tmp_path / "box_pred"
    flags = [*common_flags(fake_voc, out), "--save_probs", str(tmp_path / "probs"), "--radius", "2"]
    args = box_script.get_args_parser().parse_args(flags)
    assert args.BoxXmlpath is None and args.lr == 0.035
    summary = box_script.main(args)
    assert summary.done == 2 and summary.skipped == 0
    assert [image_id for image_id, _ in summary.failed] == ["2007_000003"]
    assert "2007_000003.png" in summary.failed[0][1]  # names the missing seed file
    assert summary.exit_code == 1
    for image_id in IDS:
        label = read_label_png(out / f"{image_id}.png")
        assert label.shape == SIZE and set(np.unique(label)) <= {0, 8}
        probs = load_npz(tmp_path / "probs" / f"{image_id}.npz")["probs"]
        assert probs.shape == (21, *SIZE) and probs.dtype == np.float16
    assert "failed 1" in capsys.readouterr().out

    again = box_script.main(box_script.get_args_parser().parse_args(flags))
    assert again.skipped == 2 and again.done == 0 and len(again.failed) == 1


def test_box_constraint_keeps_labels_and_probabilities_to_the_boxes(fake_voc, tmp_path):
    """Seeds of the box's class outside its box: without --box_constraint the label spills there; with it
    nothing outside the box is the box's class, in the labels and in the saved probabilities."""
    seeds_dir = tmp_path / "seeds"
    for image_id in IDS:
        seeds = read_label_png(fake_voc / "seeds" / f"{image_id}.png")
        seeds[34:, :18] = 8  # the box is x 20..44, y 10..29 (0-based)
        save_label_png(seeds_dir / f"{image_id}.png", seeds)
    outside = np.ones(SIZE, bool)
    outside[10:30, 20:45] = False
    for constraint in (False, True):
        out = tmp_path / f"constraint_{constraint}"
        flags = [*common_flags(fake_voc, out / "labels"), "--seed_label_root", str(seeds_dir), "--radius", "2",
                 "--epochs", "8", "--save_probs", str(out / "probs"), "--box_constraint", str(constraint)]
        box_script.main(box_script.get_args_parser().parse_args(flags))
        labels = [read_label_png(out / "labels" / f"{image_id}.png") for image_id in IDS]
        probs = [load_npz(out / "probs" / f"{image_id}.npz")["probs"] for image_id in IDS]
        if constraint:
            assert all(not (label[outside] == 8).any() for label in labels)
            assert all((p[8][outside] == 0).all() and (p[1:8] == 0).all() for p in probs)
            np.testing.assert_allclose(probs[0].astype(np.float32).sum(axis=0), 1.0, atol=2e-3)
        else:
            assert any((label[outside] == 8).any() for label in labels)


def test_others_script_with_random_walk(fake_voc, tmp_path):
    out = tmp_path / "point_pred"
    flags = [*common_flags(fake_voc, out), "--rw", "True", "--cam_dir", str(fake_voc / "cams"),
             "--logt", "2", "--infer_list", str(fake_voc / "ImageSets" / "Segmentation" / "tiny.txt")]
    args = others_script.get_args_parser().parse_args(flags)
    assert args.rw is True and args.radius == 3 and args.epochs == 2
    summary = others_script.main(args)
    assert summary.done == 2 and summary.exit_code == 1
    assert all((out / f"{image_id}.png").is_file() for image_id in IDS)


def test_loader_processes_give_the_labels_of_the_main_process(fake_voc, tmp_path):
    """``--num_workers 2`` (images, seeds, CAMs read in two DataLoader processes, two images per batch)
    writes the labels and probabilities of ``--num_workers 0``; the image without seeds fails alone, named."""
    outputs = {}
    for workers in (0, 2):
        out = tmp_path / f"workers{workers}"
        args = others_script.get_args_parser().parse_args(
            [*common_flags(fake_voc, out / "labels"), "--rw", "True", "--cam_dir", str(fake_voc / "cams"),
             "--save_probs", str(out / "probs"), "--batch_images", "2", "--num_workers", str(workers)])
        summary = others_script.main(args)
        assert summary.done == 2 and [i for i, _ in summary.failed] == ["2007_000003"]
        assert "2007_000003.png" in summary.failed[0][1]
        outputs[workers] = out
    for image_id in IDS:
        assert np.array_equal(read_label_png(outputs[0] / "labels" / f"{image_id}.png"),
                              read_label_png(outputs[2] / "labels" / f"{image_id}.png"))
        np.testing.assert_array_equal(load_npz(outputs[0] / "probs" / f"{image_id}.npz")["probs"],
                                      load_npz(outputs[2] / "probs" / f"{image_id}.npz")["probs"])


def test_rw_flag_parses_false_as_off():
    args = others_script.get_args_parser().parse_args(["--voc12_root", "x", "--rw", "False"])
    assert args.rw is False and args.epochs == 50 and args.lr == 0.03


def test_batched_images_give_the_labels_of_one_at_a_time(fake_voc, tmp_path):
    """--batch_images 4 over images of two sizes (and one failing image in the batch) writes the labels
    and probabilities of --batch_images 1; the failure is reported by name and the rest finish."""
    root = tmp_path / "voc"
    shutil.copytree(fake_voc, root)
    rng = np.random.default_rng(1)
    image = rng.integers(0, 60, (37, 52, 3), dtype=np.uint8)
    image[5:25, 10:30] = (40, 200, 40)
    Image.fromarray(image).save(root / "JPEGImages" / "2007_000004.jpg")
    (root / "Annotations" / "2007_000004.xml").write_text(
        "<annotation><size><width>52</width><height>37</height><depth>3</depth></size>"
        "<object><name>dog</name><difficult>0</difficult><bndbox><xmin>11</xmin><ymin>6</ymin>"
        "<xmax>30</xmax><ymax>25</ymax></bndbox></object>"
        "<object><name>cat</name><difficult>0</difficult><bndbox><xmin>2</xmin><ymin>20</ymin>"
        "<xmax>50</xmax><ymax>36</ymax></bndbox></object></annotation>")
    seeds = np.full((37, 52), 255, np.uint8)
    seeds[:4] = 0
    seeds[10:20, 15:25] = 12
    save_label_png(root / "seeds" / "2007_000004.png", seeds)
    ids = [*IDS, "2007_000003", "2007_000004"]
    (root / "ImageSets" / "Segmentation" / "tiny.txt").write_text("\n".join(ids) + "\n")
    outputs = {}
    for batch in (1, 4):
        out = tmp_path / f"batch{batch}"
        flags = [*common_flags(root, out / "labels"), "--save_probs", str(out / "probs"), "--radius", "2",
                 "--batch_images", str(batch)]
        summary = box_script.main(box_script.get_args_parser().parse_args(flags))
        assert summary.done == 3 and [image_id for image_id, _ in summary.failed] == ["2007_000003"]
        outputs[batch] = out
    for image_id in [*IDS, "2007_000004"]:
        one = read_label_png(outputs[1] / "labels" / f"{image_id}.png")
        assert np.array_equal(one, read_label_png(outputs[4] / "labels" / f"{image_id}.png"))
        np.testing.assert_allclose(load_npz(outputs[1] / "probs" / f"{image_id}.npz")["probs"],
                                   load_npz(outputs[4] / "probs" / f"{image_id}.npz")["probs"], atol=1e-3)
    assert read_label_png(outputs[4] / "labels" / "2007_000004.png").shape == (37, 52)


def test_two_cpu_workers_write_what_one_process_writes(fake_voc, tmp_path, capsys):
    """``--gpus 2 --device cpu``: two spawned gloo workers (the path a plain ``python`` run takes on a
    2-GPU machine) shard the list and write the same files, with the same labels, as one process."""
    outputs = {}
    for gpus in (1, 2):
        out = tmp_path / f"gpus{gpus}"
        args = box_script.get_args_parser().parse_args(
            [*common_flags(fake_voc, out / "labels"), "--radius", "2", "--gpus", str(gpus),
             "--cpu_workers", str(gpus - 1)])  # the workers' CRF and PNG in a pool: the same files
        assert launch(box_script.main, args, args.gpus, args.device) == 1  # 2007_000003 has no seeds
        outputs[gpus] = out / "labels"
    assert "starting 2 worker processes" in capsys.readouterr().out
    names = sorted(p.name for p in outputs[1].iterdir())
    assert names == sorted(p.name for p in outputs[2].iterdir()) == [f"{i}.png" for i in IDS]
    for name in names:
        assert np.array_equal(read_label_png(outputs[1] / name), read_label_png(outputs[2] / name))


def test_amp_reaches_the_model_on_cpu(fake_voc, tmp_path):
    """``--amp True`` on a CPU (for measuring its effect on quality): labels are written and the
    probabilities differ from those of ``--amp False`` (the bf16 product ran)."""
    probs = {}
    for amp in ("False", "True"):
        args = box_script.get_args_parser().parse_args(
            [*common_flags(fake_voc, tmp_path / amp), "--amp", amp, "--save_probs", str(tmp_path / f"p{amp}")])
        assert box_script.main(args).exit_code == 1  # 2007_000003 has no seeds
        assert sorted(p.name for p in (tmp_path / amp).iterdir()) == [f"{i}.png" for i in IDS]
        probs[amp] = [load_npz(tmp_path / f"p{amp}" / f"{i}.npz")["probs"] for i in IDS]
    assert any(not np.array_equal(a, b) for a, b in zip(probs["False"], probs["True"], strict=True))
