"""prepare_voc.py at VOC image size: seconds per step and images per second, to size a full run.

Writes ``--images`` random 500×375 JPEGs with VOC masks for a third of them, SBD ``cls/<id>.mat`` files
(scipy.io.savemat, SBD's struct layout) in a ``benchmark.tgz``, ScribbleSup XML (4 strokes of 6 vertices per
image) in a ``.zip`` and a What's-the-Point JSON (3 clicks per image), then times each step of
``voc12.prepare`` once, and a rerun (everything already there). The real ``benchmark.tgz`` also holds
SBD's images and instance maps (about 1.4 GB to decompress while streaming it), which this archive does not.
Times on a loaded machine vary: give the load average with them.

    python benchmarks/bench_prepare_voc.py --images 300
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tarfile
import tempfile
import time
import zipfile
from pathlib import Path

import numpy as np
import scipy.io
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tool.label_io import save_label_png  # noqa: E402
from voc12.prepare import Preparer  # noqa: E402

H, W = 375, 500


def write_inputs(tmp: Path, n: int) -> tuple[Path, Path, Path, Path]:
    rng = np.random.default_rng(0)
    root, ids = tmp / "VOCdevkit" / "VOC2012", [f"2008_{i:06d}" for i in range(n)]
    for folder in ("JPEGImages", "SegmentationClass", "ImageSets/Segmentation"):
        (root / folder).mkdir(parents=True)
    (root / "ImageSets/Segmentation/train.txt").write_text("".join(f"{i}\n" for i in ids[: n // 3]))
    (root / "ImageSets/Segmentation/val.txt").write_text("")
    xml, clicks = {}, {}
    with tarfile.open(tmp / "benchmark.tgz", "w:gz") as sbd:
        for k, image_id in enumerate(ids):
            image = rng.integers(0, 255, (H, W, 3), dtype=np.uint8)
            Image.fromarray(image).save(root / "JPEGImages" / f"{image_id}.jpg")
            label = np.zeros((H, W), np.uint8)
            label[100:300, 150:400] = 1 + k % 20
            if k < n // 3:
                save_label_png(root / "SegmentationClass" / f"{image_id}.png", label)
            mat = tmp / f"{image_id}.mat"
            scipy.io.savemat(mat, {"GTcls": {"Segmentation": label, "CategoriesPresent": np.uint8(1 + k % 20)}})
            sbd.add(mat, f"benchmark_RELEASE/dataset/cls/{image_id}.mat")
            mat.unlink()
            strokes = "".join(
                f"<polygon><tag>{'background' if s == 0 else 'cat'}</tag>"
                + "".join(f"<point><X>{x}</X><Y>{y}</Y></point>" for x, y in rng.integers(1, 370, (6, 2)))
                + "</polygon>" for s in range(4))
            xml[image_id] = f"<annotation><filename>{image_id}.jpg</filename>{strokes}</annotation>"
            clicks[image_id] = [{"cls": 8, "x": int(x), "y": int(y), "rank": 1}
                                for x, y in rng.integers(0, 370, (3, 2))]
    with zipfile.ZipFile(tmp / "scribble_annotation.zip", "w") as archive:
        for image_id, text in xml.items():
            archive.writestr(f"scribble_annotation/pascal_2012/{image_id}.xml", text)
    (tmp / "wtp.json").write_text(json.dumps(clicks))
    return root, tmp / "benchmark.tgz", tmp / "scribble_annotation.zip", tmp / "wtp.json"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=300, help="number of images (VOC has 12,031 with masks)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root, sbd, scribbles, points = write_inputs(Path(tmp), args.images)
        rows = []
        for attempt in ("first run", "rerun"):
            prep = Preparer(root, progress=False)
            steps = (("VOC masks", prep.voc_masks, ()), ("SBD .mat (.tgz)", prep.aug_masks, (sbd,)),
                     ("ScribbleSup XML (.zip)", prep.scribbles, (scribbles,)),
                     ("What's-the-Point JSON", prep.points, (points,)), ("lists", prep.lists, ()))
            for name, step, step_args in steps:
                start = time.perf_counter()
                report = step(*step_args)
                report = report[0] if isinstance(report, tuple) else report
                seconds = time.perf_counter() - start
                rows.append((attempt, name, report.written, report.present, seconds))
    print(f"{args.images} images of {W}x{H}; load average {os.getloadavg()[0]:.1f}")
    print(f"{'':10s} {'step':24s} {'written':>8s} {'present':>8s} {'seconds':>8s} {'files/s':>8s}")
    for attempt, name, written, present, seconds in rows:
        rate = (written + present) / seconds if seconds > 0 else float("nan")
        print(f"{attempt:10s} {name:24s} {written:8d} {present:8d} {seconds:8.2f} {rate:8.0f}")


if __name__ == "__main__":
    main()
