"""Pre-flight pass over an id list: every bad input file named with its reason, before any compute.

Training scripts call :func:`preflight_training` before step 1: it probes the output folder, removes stale
temporaries of the run's outputs, checks every listed image (exists, decodes completely), its image
label (VOC XML parses, or the ``--cls_labels`` file has the id) and its seed label map (exists, decodes,
has the image's size, holds only 0..20 or 255), lists every bad file, then stops, or, with
``--skip_bad True``, trains on the rest and says how many were left out. Per-image stages call
:func:`find_bad_files` and hand the bad ids to ``tool.runner.run_per_image`` as known failures, so one
broken file fails one image, never the run.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from PIL import Image
from tqdm import tqdm

from tool.cli import MissingFileError, UserError, WrongFileError
from tool.label_io import probe_output_dir, read_label_png, remove_stale_temporaries
from voc12.annotations import image_label_from_xml
from voc12.make_cls_labels import load_cls_labels


@dataclass(frozen=True)
class BadFile:
    """One unusable input file of one listed image."""

    image_id: str
    path: Path
    reason: str

    def __str__(self) -> str:
        return f"{self.path}: {self.reason}"


class BadFilesError(WrongFileError):
    """Some listed images have bad input files (all of them are in ``bad``)."""

    def __init__(self, message: str, bad: Sequence[BadFile]):
        super().__init__(message)
        self.bad = list(bad)


def _reason(err: Exception) -> str:
    text = str(err)
    if isinstance(err, UserError):  # its message already says what is wrong
        return text
    return f"{type(err).__name__}: {text}" if text else type(err).__name__


def image_size(path: Path) -> tuple[int, int]:
    """``(H, W)`` of an image file that exists and decodes completely (a truncated JPEG fails)."""
    if not path.is_file():
        raise FileNotFoundError("image not found")
    try:
        with Image.open(path) as img:
            img.load()
            return img.height, img.width
    except (OSError, SyntaxError, ValueError) as err:  # PIL: unidentified image, "Truncated File Read"
        raise ValueError(f"corrupt or truncated image ({err})") from None


def _check_one(image_id: str, image_dir: Path, xml_dir: Path | None, label_dir: Path | None,
               labelled: set[str] | None, cls_labels: Path | None) -> list[BadFile]:
    bad = []
    image_path = image_dir / f"{image_id}.jpg"
    hw = None
    try:
        hw = image_size(image_path)
    except (OSError, ValueError) as err:
        bad.append(BadFile(image_id, image_path, str(err)))
    if xml_dir is not None:
        xml_path = xml_dir / f"{image_id}.xml"
        try:
            image_label_from_xml(xml_path)
        except (OSError, ValueError) as err:
            bad.append(BadFile(image_id, xml_path, _reason(err)))
    if labelled is not None and image_id not in labelled:
        bad.append(BadFile(image_id, cls_labels, f"no image-level label for {image_id}"))
    if label_dir is not None:
        label_path = label_dir / f"{image_id}.png"
        try:
            read_label_png(label_path, hw)
        except (OSError, ValueError) as err:
            bad.append(BadFile(image_id, label_path, _reason(err)))
    return bad


def find_bad_files(ids: Sequence[str], voc12_root: str | os.PathLike, *, read_xml: bool = False,
                   cls_labels: str | os.PathLike | None = None, label_dir: str | os.PathLike | None = None,
                   workers: int = 8, desc: str = "checking files") -> list[BadFile]:
    """Every bad input file of ``ids``, in list order.

    Checks ``voc12_root/JPEGImages/<id>.jpg`` always; ``Annotations/<id>.xml`` when ``read_xml`` (the
    image labels come from it); the id's entry in the ``cls_labels`` file when given; and
    ``label_dir/<id>.png`` (size and values) when given. A missing image folder, label folder or a broken
    ``cls_labels`` file is not per-image: it raises at once, naming the flag. Files are read in
    ``workers`` threads (decoding releases the GIL).
    """
    root = Path(voc12_root)
    image_dir = root / "JPEGImages"
    if not image_dir.is_dir():
        raise MissingFileError(f"image folder not found: {image_dir} (check --voc12_root)")
    label_folder = None if label_dir is None else Path(label_dir)
    if label_folder is not None and not label_folder.is_dir():
        raise MissingFileError(f"seed label folder not found: {label_folder} (check --label_dir)")
    xml_dir = root / "Annotations" if read_xml else None
    labelled = None if cls_labels is None else set(load_cls_labels(cls_labels))
    cls_path = None if cls_labels is None else Path(cls_labels)

    def check(image_id: str) -> list[BadFile]:
        return _check_one(image_id, image_dir, xml_dir, label_folder, labelled, cls_path)

    with ThreadPoolExecutor(max_workers=max(1, min(workers, os.cpu_count() or 1))) as pool:
        results = list(tqdm(pool.map(check, ids), total=len(ids), desc=desc, dynamic_ncols=True,
                            disable=len(ids) < 100))
    return [b for found in results for b in found]


def report_bad_files(bad: Sequence[BadFile]) -> None:
    """Print every bad file to stderr, one line each."""
    for b in bad:
        print(f"bad file ({b.image_id}): {b}", file=sys.stderr)


def known_failures(bad: Sequence[BadFile]) -> dict[str, str]:
    """``{image_id: message}`` for ``tool.runner.run_per_image(known_failures=...)``."""
    out: dict[str, str] = {}
    for b in bad:
        out[b.image_id] = f"{out[b.image_id]}; {b}" if b.image_id in out else str(b)
    return out


def preflight_training(ids: Sequence[str], voc12_root: str | os.PathLike, outputs: Sequence[Path],
                       skip_bad: bool, *, read_xml: bool = False, cls_labels: str | os.PathLike | None = None,
                       label_dir: str | os.PathLike | None = None, verbose: bool = True,
                       list_flag: str = "--train_list") -> list[str]:
    """The ids to train on, after probing the outputs' folders and checking every listed file.

    ``outputs``: the files the run writes (checkpoint, training state): their folders are probed with a
    test write (``--save_dir``) and stale temporaries of killed writes are removed. Bad files (see
    :func:`find_bad_files`) are printed when ``verbose``; then ``BadFilesError`` names them all, or, with
    ``skip_bad``, the good ids are returned and the number left out is printed.
    """
    for folder in sorted({Path(p).parent for p in outputs}):
        probe_output_dir(folder, "--save_dir")
    for stale in remove_stale_temporaries(outputs):
        if verbose:
            print(f"removed a stale temporary of a killed write: {stale}", file=sys.stderr)
    bad = find_bad_files(ids, voc12_root, read_xml=read_xml, cls_labels=cls_labels, label_dir=label_dir)
    if not bad:
        return list(ids)
    if verbose:
        report_bad_files(bad)
    failing = known_failures(bad)
    if not skip_bad:
        listing = "; ".join(str(b) for b in bad[:10]) + (f"; ... (+{len(bad) - 10} more)" if len(bad) > 10 else "")
        raise BadFilesError(f"{len(failing)} of {len(ids)} images in {list_flag} have bad files "
                            f"({len(bad)} files, each listed above): {listing}. Fix or remove them, or "
                            "pass --skip_bad True to train on the rest", bad)
    good = [i for i in ids if i not in failing]
    if verbose:
        print(f"--skip_bad True: left out {len(failing)} of {len(ids)} images with bad files; training on "
              f"{len(good)}", file=sys.stderr)
    return good
