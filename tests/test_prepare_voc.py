"""prepare_voc.py / voc12.prepare on fixtures written here in each published format: SBD .mat (scipy.io.savemat
in SBD's GTcls struct layout), the prebuilt greyscale SegmentationClassAug PNGs, ScribbleSup XML, a
What's-the-Point JSON and labelme-style VOC XML, as folders and as archives."""

import json
import tarfile
import zipfile
from pathlib import Path

import numpy as np
import pytest
import scipy.io
import scipy.sparse
from PIL import Image

import prepare_voc
import voc12.downloads
import voc12.lists
from tool import cli
from tool.label_io import read_label_png, save_label_png
from voc12.annotations import read_boxes, read_points
from voc12.make_cls_labels import load_cls_labels
from voc12.prepare import background_click

TRAIN, VAL, SBD_ONLY = ["2007_000032", "2007_000039"], ["2007_000033"], ["2008_000002", "2008_000003"]
SIZES = {"2007_000032": (20, 30), "2007_000039": (24, 18), "2007_000033": (16, 16), "2008_000002": (22, 26),
         "2008_000003": (18, 28)}  # (H, W)


def labelme_xml(hw, objects):
    """A VOC XML as annotation tools export it (labelme2voc): float coordinates, empty tags."""
    body = "".join(f"<object><name>{name}</name><pose/><truncated/><difficult/><bndbox><xmin>{x0:.1f}</xmin>"
                   f"<ymin>{y0:.1f}</ymin><xmax>{x1:.1f}</xmax><ymax>{y1:.1f}</ymax></bndbox></object>"
                   for name, (x0, y0, x1, y1) in objects)
    return (f"<annotation><folder/><filename>x.jpg</filename><size><width>{hw[1]}</width><height>{hw[0]}</height>"
            f"<depth>3</depth></size><segmented/>{body}</annotation>")


def random_label(rng, hw, classes):
    return rng.choice(np.array(classes, np.uint8), size=hw)


@pytest.fixture
def voc(tmp_path, monkeypatch):
    """A VOC2012 folder (JPEGImages, Annotations, SegmentationClass for train/val, ImageSets) and the shipped
    lists pointed at these ids."""
    rng = np.random.default_rng(0)
    root = tmp_path / "VOCdevkit" / "VOC2012"
    for image_id, hw in SIZES.items():
        (root / "JPEGImages").mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 255, (*hw, 3), dtype=np.uint8)).save(root / "JPEGImages" / f"{image_id}.jpg")
        (root / "Annotations").mkdir(exist_ok=True)
        (root / "Annotations" / f"{image_id}.xml").write_text(
            labelme_xml(hw, [("cat", (1.4, 2.6, 8.0, 9.2)), ("tvmonitor", (3.0, 3.0, 5.0, 6.0))]))
    for image_id in TRAIN + VAL:
        save_label_png(root / "SegmentationClass" / f"{image_id}.png",
                       random_label(rng, SIZES[image_id], [0, 8, 20, 255]))
    lists = root / "ImageSets" / "Segmentation"
    lists.mkdir(parents=True)
    (lists / "train.txt").write_text("".join(f"{i}\n" for i in TRAIN))
    (lists / "val.txt").write_text("".join(f"{i}\n" for i in VAL))
    shipped = tmp_path / "shipped"
    shipped.mkdir()
    for name, ids in (("train_aug", sorted(TRAIN + SBD_ONLY)), ("train", TRAIN), ("val", VAL), ("test", [])):
        (shipped / f"{name}.txt").write_text("".join(f"{i}\n" for i in ids))
    monkeypatch.setattr(voc12.lists, "SHIPPED_LISTS", shipped)
    monkeypatch.setattr(voc12.prepare, "SHIPPED_LISTS", shipped)
    return root


def write_sbd(folder: Path, labels: dict[str, np.ndarray]) -> Path:
    """SBD's layout: benchmark_RELEASE/dataset/cls/<id>.mat holding struct GTcls (Segmentation, Boundaries,
    CategoriesPresent), plus train.txt / val.txt."""
    dataset = folder / "benchmark_RELEASE" / "dataset"
    (dataset / "cls").mkdir(parents=True)
    for image_id, label in labels.items():
        present = np.array([c for c in np.unique(label) if 0 < c < 255], np.uint8)
        boundaries = np.empty((20, 1), object)  # a cell of one sparse boundary map per class
        for k in range(20):
            boundaries[k, 0] = scipy.sparse.csc_matrix(label.shape, dtype=np.float64)
        scipy.io.savemat(dataset / "cls" / f"{image_id}.mat",
                         {"GTcls": {"Segmentation": label, "Boundaries": boundaries, "CategoriesPresent": present}})
    (dataset / "train.txt").write_text("".join(f"{i}\n" for i in labels))
    (dataset / "val.txt").write_text("")
    return folder / "benchmark_RELEASE"


def tgz(folder: Path, out: Path) -> Path:
    with tarfile.open(out, "w:gz") as archive:
        archive.add(folder, arcname=folder.name)
    return out


def zipped(folder: Path, out: Path) -> Path:
    with zipfile.ZipFile(out, "w") as archive:
        for file in sorted(folder.rglob("*")):
            archive.write(file, file.relative_to(folder.parent).as_posix())
        archive.writestr("__MACOSX/._junk.png", b"not a png")  # macOS litter is skipped
    return out


def scribble_xml(strokes):
    """ScribbleSup's layout; ``strokes``: (tag, [(x, y), ...] 0-based), written 1-based as the files are."""
    body = "".join("<polygon><tag>{}</tag>{}</polygon>".format(
        tag, "".join(f"<point><X>{x + 1}</X><Y>{y + 1}</Y></point>" for x, y in xy)) for tag, xy in strokes)
    return (f"<annotation><folder>anno</folder><filename>x.png</filename><size><width>9</width><height>9</height>"
            f"<depth>3</depth></size><segmented>1</segmented>{body}</annotation>")


def run(argv):
    return cli.run(lambda: prepare_voc.main(prepare_voc.get_args_parser().parse_args(argv + ["--progress", "False"])))


def files_and_times(root: Path) -> dict[str, int]:
    return {str(p.relative_to(root)): p.stat().st_mtime_ns for p in root.rglob("*")
            if p.is_file() and p.name != "prepare_voc_report.json"}


@pytest.mark.parametrize("archive", ["folder", "cls folder", "tgz"])
def test_sbd_masks_voc_masks_win_lists_and_labels(voc, tmp_path, capsys, archive):
    rng = np.random.default_rng(1)
    sbd_labels = {i: random_label(rng, SIZES[i], [0, 3, 15]) for i in SBD_ONLY + TRAIN[:1] + VAL}
    sbd_labels["2009_999999"] = random_label(rng, (5, 5), [0])  # no image in VOC
    sbd = write_sbd(tmp_path / "sbd", sbd_labels)
    (sbd / "dataset" / "cls" / "2008_000009.mat").write_bytes(b"MATLAB 5.0")  # a truncated file
    scipy.io.savemat(sbd / "dataset" / "cls" / "2008_000001.mat", {"Other": np.zeros(3)})  # not SBD's struct
    sources = {"folder": sbd, "cls folder": sbd / "dataset" / "cls", "tgz": tgz(sbd, tmp_path / "benchmark.tgz")}
    source = sources[archive]
    assert run(["--voc12_root", str(voc), "--sbd", str(source)]) == 0
    out = capsys.readouterr().out
    aug = voc / "SegmentationClassAug"
    for image_id in SBD_ONLY:  # the .mat class map, as class ids
        np.testing.assert_array_equal(read_label_png(aug / f"{image_id}.png"), sbd_labels[image_id])
    for image_id in TRAIN + VAL:  # VOC's own mask wins where it exists
        assert (aug / f"{image_id}.png").read_bytes() == (voc / "SegmentationClass" / f"{image_id}.png").read_bytes()
    assert not (aug / "2009_999999.png").exists()
    assert "missing image (1): 2009_999999" in out
    assert "unreadable mask (2): " in out and "2008_000001.mat: not an SBD class .mat" in out
    assert "2008_000009.mat: not an SBD class .mat" in out
    assert voc12.lists.read_id_list(voc / "ImageSets/Segmentation/train_aug.txt") == sorted(TRAIN + SBD_ONLY)
    assert "missing (" not in out  # every split matches the standard one
    labels = load_cls_labels(voc / "cls_labels.npz")
    assert sorted(labels) == sorted(TRAIN + SBD_ONLY + VAL)
    expected = np.zeros(20, np.float32)
    expected[[7, 19]] = 1  # cat, tvmonitor
    np.testing.assert_array_equal(labels["2008_000002"], expected)

    before = files_and_times(voc)
    assert run(["--voc12_root", str(voc), "--sbd", str(source)]) == 0
    assert files_and_times(voc) == before  # a second run writes nothing new
    report = json.loads((voc / "prepare_voc_report.json").read_text())
    assert all(r["written"] == 0 for r in report)


def test_missing_ids_against_the_standard_split_are_named(voc, capsys):
    assert run(["--voc12_root", str(voc)]) == 0  # no SBD: train_aug is VOC train alone
    out = capsys.readouterr().out
    assert "train_aug has 2 ids, the standard split 4; missing (2): 2008_000002; 2008_000003" in out


def test_prebuilt_greyscale_zip_taken_as_it_is(voc, tmp_path):
    rng = np.random.default_rng(2)
    folder = tmp_path / "prebuilt" / "SegmentationClassAug"
    folder.mkdir(parents=True)
    for image_id in SBD_ONLY:
        Image.fromarray(random_label(rng, SIZES[image_id], [0, 5, 255]), mode="L").save(folder / f"{image_id}.png")
    assert run(["--voc12_root", str(voc), "--sbd", str(zipped(folder, tmp_path / "SegmentationClassAug.zip"))]) == 0
    for image_id in SBD_ONLY:
        assert (voc / "SegmentationClassAug" / f"{image_id}.png").read_bytes() == \
            (folder / f"{image_id}.png").read_bytes()


def stroke_reference(hw, segment, radius):
    """Pixels whose centre lies within ``radius`` of the segment (x0, y0) - (x1, y1)."""
    (x0, y0), (x1, y1) = segment
    ys, xs = np.mgrid[:hw[0], :hw[1]]
    d = np.array([x1 - x0, y1 - y0], float)
    t = np.clip(((xs - x0) * d[0] + (ys - y0) * d[1]) / (d @ d), 0, 1)
    return np.hypot(xs - (x0 + t * d[0]), ys - (y0 + t * d[1])) <= radius


@pytest.mark.parametrize("width", [1, 3])
def test_scribble_xml_rasterised(voc, tmp_path, capsys, width):
    folder = tmp_path / "scribble_annotation" / "pascal_2012"
    folder.mkdir(parents=True)
    cat, bg, dog = ((3, 4), (20, 4)), ((0, 14), (25, 14)), ((4, 18), (14, 8))
    (folder / "2007_000032.xml").write_text(scribble_xml([
        ("cat", cat), ("background", bg), ("dog", dog), ("unicorn", [(1, 1), (5, 5)]), ("monitor", [(28.4, 2.6)])]))
    (folder / "2099_000001.xml").write_text(scribble_xml([("cat", cat)]))  # no such image
    context = folder.parent / "pascal_context"
    context.mkdir()
    (context / "2007_000039.xml").write_text(scribble_xml([("sky", cat)]))  # PASCAL-Context: not VOC 2012
    source = zipped(folder.parent, tmp_path / "scribble_annotation.zip")
    assert run(["--voc12_root", str(voc), "--scribbles", str(source), "--scribble_width", str(width)]) == 0
    out = capsys.readouterr().out
    hw = SIZES["2007_000032"]
    label = read_label_png(voc / "Scribbles" / "2007_000032.png", hw)
    inner, outer = (0.5, 1.0) if width == 1 else (1.5, 2.0)  # a width-w stroke covers what lies within w/2
    for cls, segment in ((8, cat), (0, bg)):  # axis-aligned: every pixel within w/2 is on the stroke
        assert np.isin(label[stroke_reference(hw, segment, inner)], [cls, 12]).all()
    assert label[14, 8] == 12  # where the dog crosses the background stroke, the object is drawn on top
    dog_pixels = np.argwhere(label == 12)
    assert set(range(4, 15)) <= set(dog_pixels[:, 1].tolist())  # the diagonal has no gap
    assert stroke_reference(hw, dog, outer)[tuple(dog_pixels.T)].all()
    near = stroke_reference(hw, cat, outer) | stroke_reference(hw, bg, outer) | stroke_reference(hw, dog, outer)
    near[1:6, 26:31] = True  # the one-vertex monitor stroke: a dot at (28, 3)
    assert label[3, 28] == 20 and (label[~near] == 255).all()
    assert "unknown class name 'unicorn'" in out and "missing image (1): 2099_000001" in out
    assert not (voc / "Scribbles" / "2007_000039.png").exists() and "pascal_context/2007_000039.xml" in out


def test_png_scribbles_copied_and_bad_ones_named(voc, tmp_path, capsys):
    folder = tmp_path / "pascal_2012_scribble"
    folder.mkdir()
    good = np.full(SIZES["2007_000039"], 255, np.uint8)
    good[5, 2:9] = 12
    Image.fromarray(good, mode="L").save(folder / "2007_000039.png")
    Image.fromarray(np.full(SIZES["2007_000032"], 77, np.uint8), mode="L").save(folder / "2007_000032.png")
    assert run(["--voc12_root", str(voc), "--scribbles", str(folder)]) == 0
    assert (voc / "Scribbles/2007_000039.png").read_bytes() == (folder / "2007_000039.png").read_bytes()
    assert not (voc / "Scribbles/2007_000032.png").exists()
    assert "unknown class values [77]" in capsys.readouterr().out


def test_points_with_background_click_from_the_scribble(voc, tmp_path, capsys):
    scribble = np.full(SIZES["2007_000032"], 255, np.uint8)
    scribble[15, 3:20] = 0
    scribble[4:8, 10] = 8
    save_label_png(voc / "Scribbles" / "2007_000032.png", scribble)
    clicks = {"2007_000032": [{"cls": 8, "x": 10, "y": 5, "rank": 1}, {"cls": 20, "x": 29.0, "y": 19.0, "rank": 2},
                              {"cls": 3, "x": 30, "y": 2, "rank": 3}, {"cls": 21, "x": 1, "y": 1, "rank": 4}],
              "2007_000039": [{"cls": 15, "x": 4, "y": 6, "rank": 1}],
              "2099_000001": [{"cls": 1, "x": 1, "y": 1, "rank": 1}]}
    path = tmp_path / "pascal2012_trainval_main.json"
    path.write_text(json.dumps(clicks))
    assert run(["--voc12_root", str(voc), "--points", str(path)]) == 0
    out = capsys.readouterr().out
    points = read_points(voc / "Points" / "2007_000032.json", SIZES["2007_000032"])
    ys, xs = np.nonzero(scribble == 0)
    assert background_click(scribble) == (xs[len(xs) // 2], ys[len(ys) // 2]) == (11, 15)
    assert [(p.cls, p.x, p.y) for p in points] == [(8, 10, 5), (20, 29, 19), (0, 11, 15)]
    assert [(p.cls, p.x, p.y) for p in read_points(voc / "Points" / "2007_000039.json")] == [(15, 4, 6)]
    assert "click outside the image (1): 2007_000032 click 2: (x=30, y=2) not in 20x30" in out
    assert "class outside 1..20 (1): 2007_000032 click 3: cls 21" in out
    assert "no background click (no background scribble) (1): 2007_000039" in out
    assert "missing image (1): 2099_000001" in out


def test_labelme_xml_boxes_read(voc):
    boxes = read_boxes(voc / "Annotations" / "2007_000032.xml")
    assert [(b.cls, b.x0, b.y0, b.x1, b.y1, b.difficult) for b in boxes] == [(8, 0, 2, 7, 8, False),
                                                                             (20, 2, 2, 4, 5, False)]


def test_unusable_sources_and_user_errors(voc, tmp_path, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "readme.txt").write_text("nothing here")
    assert run(["--voc12_root", str(voc), "--sbd", str(empty)]) == 1
    assert "UNUSABLE: no SBD cls/<id>.mat file" in capsys.readouterr().out
    (tmp_path / "bad.json").write_text("[1, 2]")
    assert run(["--voc12_root", str(voc), "--points", str(tmp_path / "bad.json")]) == 1
    assert run(["--voc12_root", str(voc), "--points", str(empty)]) == 1  # a folder, not the JSON file
    assert "not a file (give the What's-the-Point JSON file itself)" in capsys.readouterr().out
    assert run(["--voc12_root", str(voc), "--scribbles", str(tmp_path / "nowhere.zip")]) == 2
    assert "error: --scribbles" in capsys.readouterr().err
    assert run(["--voc12_root", str(tmp_path)]) == 2
    assert "no JPEGImages folder" in capsys.readouterr().err


def test_download_goes_through_torchvision(tmp_path, monkeypatch, capsys):
    calls = []
    root = tmp_path / "data" / "VOCdevkit" / "VOC2012"

    def fake_voc(url, download_root, extract_root, filename, md5):
        calls.append(("voc", url, Path(download_root), Path(extract_root), md5))
        (root / "JPEGImages").mkdir(parents=True)
        (root / "SegmentationClass").mkdir()

    def fake_url(url, root_dir, filename, md5):
        calls.append(("sbd", url, Path(root_dir), filename, md5))
        tgz(write_sbd(tmp_path / "sbd", {}), Path(root_dir) / filename)

    monkeypatch.setattr(voc12.downloads, "download_and_extract_archive", fake_voc)
    monkeypatch.setattr(voc12.downloads, "download_url", fake_url)
    assert run(["--voc12_root", str(root), "--download"]) == 1  # the fake SBD archive holds no mask: unusable
    assert calls[0] == ("voc", "https://thor.robots.ox.ac.uk/pascal/VOC/voc2012/VOCtrainval_11-May-2012.tar",
                        tmp_path / "data", tmp_path / "data", "6cd6e144f989b92b3379bac3b3de84fd")
    sbd_url = "https://www2.eecs.berkeley.edu/Research/Projects/CS/vision/grouping/semantic_contours/benchmark.tgz"
    assert calls[1] == ("sbd", sbd_url, tmp_path / "data", "benchmark.tgz", "82b4d87ceb2ed10f6038a1cba92111cb")
    out = capsys.readouterr().out
    assert "jifengdai.org/downloads/scribble_sup" in out and "whats-the-point1" in out
    assert run(["--voc12_root", str(tmp_path / "VOC2012"), "--download"]) == 2  # not .../VOCdevkit/VOC2012


def longest_run(mask: np.ndarray) -> tuple[int, int, int]:
    """``(y, x0, x1)`` of the longest horizontal run of ``mask``."""
    best = (0, 0, -1)
    for y, row in enumerate(mask):
        padded = np.concatenate([[0], row.astype(np.int8), [0]])
        edges = np.flatnonzero(np.diff(padded))
        for x0, x1 in zip(edges[::2], edges[1::2] - 1, strict=True):
            if x1 - x0 > best[2] - best[1]:
                best = (y, int(x0), int(x1))
    return best


@pytest.mark.slow
def test_prepared_root_runs_every_supervision_end_to_end(tmp_path, monkeypatch, one_thread):
    """Generated images, converted to the downloads' formats (SBD .mat in a .tgz, ScribbleSup XML in a .zip,
    a What's-the-Point JSON), prepared, then ``run_pipeline.py --voc12_root ROOT --quick`` on every
    supervision."""
    import run_pipeline
    from voc12.synthetic import write_voc_download

    train = [f"2007_{i:06d}" for i in range(1, 7)]
    aug, val = ["2008_000001", "2008_000002", "2008_000003"], ["2007_000100", "2007_000101"]
    root = tmp_path / "VOCdevkit" / "VOC2012"
    write_voc_download(root, train, aug, val, min_size=96, max_size=112)
    sbd, scribbles, clicks = {}, tmp_path / "scribble_annotation" / "pascal_2012", {}
    scribbles.mkdir(parents=True)
    for image_id in train + aug + val:
        seg = read_label_png(root / "SegmentationClassAug" / f"{image_id}.png") if image_id not in val else \
            read_label_png(root / "SegmentationClass" / f"{image_id}.png")
        if image_id not in val:
            sbd[image_id] = seg
        strokes = []
        for cls in np.unique(seg[seg != 255]):
            y, x0, x1 = longest_run(seg == cls)
            strokes.append((["background", *voc12.prepare.CAT_LIST][cls], [(x0 + 1, y), (max(x1 - 1, x0 + 1), y)]))
        (scribbles / f"{image_id}.xml").write_text(scribble_xml(strokes))
        points = json.loads((root / "Points" / f"{image_id}.json").read_text())
        clicks[image_id] = [{"cls": p["class"], "x": p["x"], "y": p["y"], "rank": 1} for p in points if p["class"]]
    for folder in ("SegmentationClassAug", "Scribbles", "Points"):
        for file in (root / folder).iterdir():
            file.unlink()
        (root / folder).rmdir()
    sbd_tgz = tgz(write_sbd(tmp_path / "sbd", sbd), tmp_path / "benchmark.tgz")
    scribble_zip = zipped(scribbles.parent, tmp_path / "scribble_annotation.zip")
    (tmp_path / "wtp.json").write_text(json.dumps(clicks))
    shipped = tmp_path / "shipped"
    shipped.mkdir()
    for name, ids in (("train_aug", sorted(train + aug)), ("train", train), ("val", val), ("test", [])):
        (shipped / f"{name}.txt").write_text("".join(f"{i}\n" for i in ids))
    monkeypatch.setattr(voc12.lists, "SHIPPED_LISTS", shipped)
    monkeypatch.setattr(voc12.prepare, "SHIPPED_LISTS", shipped)

    assert run(["--voc12_root", str(root), "--sbd", str(sbd_tgz), "--scribbles", str(scribble_zip),
                "--points", str(tmp_path / "wtp.json")]) == 0
    report = {r["source"].split(" ")[0]: r for r in json.loads((root / "prepare_voc_report.json").read_text())}
    assert report["scribbles"]["written"] == 11 and report["points"]["written"] == 11
    assert not report["scribbles"]["problems"] and not report["points"]["problems"]

    work = tmp_path / "work"
    summary = run_pipeline.main(run_pipeline.get_args_parser().parse_args(
        ["--quick", "--voc12_root", str(root), "--work_dir", str(work), "--device", "cpu", "--jobs", "1",
         "--stages", "data", "cam_train", "cam_infer", "seeds", "baselines", "aff_train", "a2gnn", "evaluate"]))
    for sup in ("image", "point", "scribble", "box"):
        assert sorted(p.stem for p in (work / "pseudo" / sup).glob("*.png")) == train, sup
        assert 0.0 <= summary["supervision"][sup]["pseudo_miou"] <= 100.0  # percent
