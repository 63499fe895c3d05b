"""The pre-flight pass: every bad file of a list named with its reason, then stop or skip."""

import numpy as np
import pytest
from PIL import Image

import train_aff_gated_aff
import train_SEAM
from tool.label_io import save_label_png
from voc12.preflight import BadFilesError, find_bad_files, known_failures, preflight_training

XML = ("<annotation><size><width>12</width><height>10</height></size><object><name>cat</name>"
       "<bndbox><xmin>2</xmin><ymin>2</ymin><xmax>6</xmax><ymax>6</ymax></bndbox></object></annotation>")


@pytest.fixture
def root(tmp_path):
    """Ids: good, corrupt (truncated JPEG), badxml, badseed (value 37), wrongsize (seed 5x5), noimage."""
    root = tmp_path / "voc"
    for folder in ("JPEGImages", "Annotations", "seeds"):
        (root / folder).mkdir(parents=True)
    rng = np.random.default_rng(0)
    for image_id in ("good", "corrupt", "badxml", "badseed", "wrongsize", "noimage"):
        Image.fromarray(rng.integers(0, 255, (10, 12, 3), dtype=np.uint8)).save(
            root / "JPEGImages" / f"{image_id}.jpg")
        (root / "Annotations" / f"{image_id}.xml").write_text(XML)
        save_label_png(root / "seeds" / f"{image_id}.png", np.zeros((10, 12), np.uint8))
    jpeg = root / "JPEGImages" / "corrupt.jpg"
    jpeg.write_bytes(jpeg.read_bytes()[:200])
    (root / "Annotations" / "badxml.xml").write_text("<annotation><object>")
    seed = np.zeros((10, 12), np.uint8)
    seed[0, 0] = 37
    save_label_png(root / "seeds" / "badseed.png", seed)
    save_label_png(root / "seeds" / "wrongsize.png", np.zeros((5, 5), np.uint8))
    (root / "JPEGImages" / "noimage.jpg").unlink()
    return root


IDS = ["good", "corrupt", "badxml", "badseed", "wrongsize", "noimage"]


def test_every_bad_file_is_found_with_its_reason(root):
    bad = find_bad_files(IDS, root, read_xml=True, label_dir=root / "seeds", workers=2)
    found = {(b.image_id, b.path.relative_to(root).as_posix()): b.reason for b in bad}
    assert set(found) == {("corrupt", "JPEGImages/corrupt.jpg"), ("badxml", "Annotations/badxml.xml"),
                          ("badseed", "seeds/badseed.png"), ("wrongsize", "seeds/wrongsize.png"),
                          ("noimage", "JPEGImages/noimage.jpg")}
    assert "truncated" in found["corrupt", "JPEGImages/corrupt.jpg"]
    assert "broken XML" in found["badxml", "Annotations/badxml.xml"]
    assert "[37]" in found["badseed", "seeds/badseed.png"]
    assert "size" in found["wrongsize", "seeds/wrongsize.png"]
    assert "not found" in found["noimage", "JPEGImages/noimage.jpg"]
    assert [b.image_id for b in bad] == [i for i in IDS if i != "good"]  # list order
    assert set(known_failures(bad)) == set(IDS) - {"good"}
    # without XML and seeds only the images count
    assert {b.image_id for b in find_bad_files(IDS, root)} == {"corrupt", "noimage"}


def test_cls_labels_file_must_hold_every_id(root, tmp_path):
    from voc12.make_cls_labels import save_cls_labels

    save_cls_labels(tmp_path / "cls.npz", {"good": np.eye(20, dtype=np.float32)[7]})
    bad = find_bad_files(["good", "badxml"], root, cls_labels=tmp_path / "cls.npz")
    assert [(b.image_id, b.path.name) for b in bad] == [("badxml", "cls.npz")]


def test_preflight_training_stops_or_skips(root, tmp_path, capsys):
    outputs = [tmp_path / "out" / "net.pth", tmp_path / "out" / "net_state.pth"]
    with pytest.raises(BadFilesError, match="5 of 6 images in --train_list have bad files.*--skip_bad True") as err:
        preflight_training(IDS, root, outputs, skip_bad=False, read_xml=True, label_dir=root / "seeds")
    assert len(err.value.bad) == 5
    stderr = capsys.readouterr().err
    for name in ("corrupt.jpg", "badxml.xml", "badseed.png", "wrongsize.png", "noimage.jpg"):
        assert name in stderr
    good = preflight_training(IDS, root, outputs, skip_bad=True, read_xml=True, label_dir=root / "seeds")
    assert good == ["good"] and "left out 5 of 6 images" in capsys.readouterr().err
    assert (tmp_path / "out").is_dir()


def test_training_scripts_check_before_any_step(root, tmp_path):
    """A corrupt JPEG, a seed value 37 and an unwritable --save_dir stop the run before step 1."""
    (root / "list.txt").write_text("good\ncorrupt\nbadseed\n")
    aff = ["--voc12_root", str(root), "--label_dir", str(root / "seeds"), "--train_list", str(root / "list.txt"),
           "--weights", "none", "--backbone_width", "0.125", "--crop_size", "16", "--batch_size", "1",
           "--num_workers", "0", "--device", "cpu"]
    with pytest.raises(BadFilesError, match="corrupt.jpg.*badseed.png: .*unknown class values \\[37\\]"):
        train_aff_gated_aff.main(train_aff_gated_aff.get_args_parser().parse_args(
            [*aff, "--save_dir", str(tmp_path / "aff")]))
    assert not (tmp_path / "aff" / "res_aff_box_state.pth").exists()
    (tmp_path / "file").write_text("x")
    with pytest.raises(OSError, match="--save_dir .*file/sub: cannot write there"):
        train_aff_gated_aff.main(train_aff_gated_aff.get_args_parser().parse_args(
            [*aff, "--save_dir", str(tmp_path / "file" / "sub")]))
    seam = ["--voc12_root", str(root), "--train_list", str(root / "list.txt"), "--weights", "none",
            "--backbone_width", "0.0625", "--batch_size", "1", "--num_workers", "0", "--device", "cpu"]
    with pytest.raises(BadFilesError, match="1 of 3 images .*corrupt.jpg"):
        train_SEAM.main(train_SEAM.get_args_parser().parse_args([*seam, "--save_dir", str(tmp_path / "s")]))
    with pytest.raises(OSError, match="--save_dir .*file/sub: cannot write there"):
        train_SEAM.main(train_SEAM.get_args_parser().parse_args([*seam, "--save_dir", str(tmp_path / "file/sub")]))
