"""Image-level labels (20-d multi-hot, class 1..20 -> index 0..19) from VOC XML, saved without pickles.

File formats: ``.npz`` with ``ids`` (N,) unicode and ``labels`` (N, 20) float32; ``.json`` mapping id to
a list of 20 numbers. The SEAM ``cls_labels.npy`` (a pickled dict) is read only with ``legacy_npy=True``.

Usage: ``python -m voc12.make_cls_labels --voc12_root R --list train_aug.txt --out data/cls_labels.npz``
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from tool import cli
from tool.cli import MissingFileError, WrongFileError, make_parser
from tool.label_io import atomic_path, load_npz, save_npz
from voc12.annotations import image_label_from_xml
from voc12.lists import read_list
from vocabulary import CAT_LIST


def build_cls_labels(voc12_root: str | os.PathLike, ids: Sequence[str]) -> dict[str, np.ndarray]:
    """``{id: (20,) float32 multi-hot}`` read from ``voc12_root/Annotations/<id>.xml``."""
    xml_dir = Path(voc12_root) / "Annotations"
    return {image_id: image_label_from_xml(xml_dir / f"{image_id}.xml") for image_id in ids}


def _label_vector(value, image_id: str, path: str | os.PathLike) -> np.ndarray:
    vector = np.asarray(value, dtype=np.float32)
    if vector.shape != (len(CAT_LIST),):
        raise ValueError(f"{path}: label of {image_id} has shape {vector.shape}, expected (20,)")
    return vector


def _legacy_id(key) -> str:
    """SEAM keys are id strings; IRN-style files key by int (``2007000032`` -> ``'2007_000032'``)."""
    if isinstance(key, (int, np.integer)):
        digits = str(int(key))
        return f"{digits[:4]}_{digits[4:]}"
    return str(key)


def save_cls_labels(path: str | os.PathLike, labels: dict[str, np.ndarray]) -> None:
    """Write labels atomically as ``.npz`` (``ids``, ``labels``), or as ``.json`` if the path says so."""
    ids = list(labels)
    stacked = np.zeros((len(ids), len(CAT_LIST)), dtype=np.float32)
    for row, image_id in enumerate(ids):
        stacked[row] = _label_vector(labels[image_id], image_id, path)
    if Path(path).suffix == ".json":
        with atomic_path(path) as tmp:
            tmp.write_text(json.dumps({i: row.tolist() for i, row in zip(ids, stacked, strict=True)}))
    else:
        save_npz(path, ids=np.array(ids, dtype=str), labels=stacked)


def load_cls_labels(path: str | os.PathLike, legacy_npy: bool = False) -> dict[str, np.ndarray]:
    """``{id: (20,) float32}`` from a ``.npz`` or ``.json`` label file.

    A legacy SEAM ``.npy`` (pickled dict) is read only with ``legacy_npy=True``: unpickling runs code
    from the file, so pass it only for a file you trust.
    """
    path = Path(path)
    if not path.is_file():
        raise MissingFileError(f"class label file not found: {path}")
    if path.suffix == ".npy":
        if not legacy_npy:
            raise WrongFileError(f"--cls_labels {path}: .npy class labels are pickled and are not loaded "
                                 "(unpickling runs code from the file); build an .npz from the XML files with "
                                 "'python -m voc12.make_cls_labels --voc12_root ROOT --list LIST --out "
                                 "cls_labels.npz', or leave --cls_labels out to read the XML files")
        raw = np.load(path, allow_pickle=True).item()  # trusted legacy file only (see docstring)
        pairs = [(_legacy_id(k), v) for k, v in raw.items()]
    elif path.suffix == ".json":
        pairs = list(json.loads(path.read_text()).items())
    else:
        arrays = load_npz(path)
        if set(arrays) != {"ids", "labels"}:
            raise ValueError(f"{path}: expected arrays 'ids' and 'labels', found {sorted(arrays)}")
        pairs = list(zip(arrays["ids"].tolist(), arrays["labels"], strict=True))

    return {image_id: _label_vector(value, image_id, path) for image_id, value in pairs}


def image_labels(voc12_root: str | os.PathLike, ids: Sequence[str],
                 cls_labels_path: str | os.PathLike | None = None,
                 legacy_npy: bool = False) -> dict[str, np.ndarray]:
    """``{id: (20,) float32}`` for ``ids``: from ``cls_labels_path`` if given, else from the XML files.

    ``legacy_npy`` is passed to :func:`load_cls_labels` (trusted SEAM ``.npy`` files only).
    """
    if cls_labels_path is None:
        return build_cls_labels(voc12_root, ids)
    labels = load_cls_labels(cls_labels_path, legacy_npy=legacy_npy)
    missing = [i for i in ids if i not in labels]
    if missing:
        raise WrongFileError(f"{cls_labels_path}: no label for {len(missing)} ids, e.g. {missing[:5]}")
    return {i: labels[i] for i in ids}


def get_args_parser() -> argparse.ArgumentParser:
    parser = make_parser("Build image-level labels from VOC XML annotations.")
    parser.add_argument("--voc12_root", required=True, type=str,
                        help="the VOC2012 folder (JPEGImages/, Annotations/, SegmentationClass/, ...)")
    parser.add_argument("--train_list", "--list", default="train_aug.txt", type=str,
                        help="images the classifier trains on: a path, or a name (train_aug.txt, train.txt, "
                             "val.txt, test.txt) looked up in <voc12_root>/ImageSets/Segmentation/, then in "
                             "the shipped voc12/")
    parser.add_argument("--out", default="data/cls_labels.npz", help="output .npz (or .json)")
    return parser


def main(args: argparse.Namespace) -> None:
    ids = read_list(args.train_list, args.voc12_root)
    labels = build_cls_labels(args.voc12_root, ids)
    save_cls_labels(args.out, labels)
    counts = np.stack(list(labels.values())).sum(0) if labels else np.zeros(len(CAT_LIST))
    print(f"{len(labels)} image labels -> {args.out}; images per class: "
          + ", ".join(f"{name} {int(n)}" for name, n in zip(CAT_LIST, counts, strict=True)))


if __name__ == "__main__":
    sys.exit(cli.run(lambda: main(get_args_parser().parse_args())))
