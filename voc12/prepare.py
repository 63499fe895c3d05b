"""Turn the archives researchers download into a VOC2012 root every stage reads (``prepare_voc.py``).

Inputs, each a folder or the archive itself (``.zip``, ``.tar``, ``.tgz``), read as published:

- **SBD** ``benchmark.tgz``: ``benchmark_RELEASE/dataset/cls/<id>.mat``, a MATLAB struct ``GTcls`` whose
  ``Segmentation`` field is the ``(H, W)`` class-id map; or the prebuilt ``SegmentationClassAug.zip``
  (greyscale class-id PNGs, taken as they are).
- **ScribbleSup** ``scribble_annotation.zip``: ``pascal_2012/<id>.xml``, one ``<polygon>`` per stroke with
  a ``<tag>`` class name and ``<point><X>x</X><Y>y</Y></point>`` vertices of a polyline (1-based pixels); its
  ``pascal_2007/`` and ``pascal_context/`` folders are skipped; or PNG scribbles (class ids on strokes, 255
  elsewhere), taken as they are.
- **What's-the-Point** clicks: one JSON object, image id -> list of ``{"cls": 1..20, "x", "y", ...}``
  (0-based pixels; no background clicks).

Outputs, beside the VOC data (``JPEGImages``, ``Annotations``, ``SegmentationClass``, ``ImageSets``):

- ``SegmentationClassAug/<id>.png``: VOC's own ``SegmentationClass`` mask where it exists, else the SBD or
  prebuilt mask (the usual SegmentationClassAug);
- ``ImageSets/Segmentation/train_aug.txt``: ids with a mask, plus VOC train, minus VOC val (the rule of
  :func:`voc12.lists.train_aug_ids`), where every stage's list lookup finds it first;
- ``Scribbles/<id>.png``: strokes rasterised ``SCRIBBLE_WIDTH`` pixels wide (background strokes first,
  then the object strokes in file order on top), 255 elsewhere;
- ``Points/<id>.json``: the project's point JSON (:func:`voc12.annotations.read_points`): the clicks, then
  one background click taken from the image's background scribble (:func:`background_click`);
- ``cls_labels.npz``: image-level labels of train_aug and val from the XML files;
- ``prepare_voc_report.json``: the counts and every problem of the last run.

A file that exists is kept (a rerun finishes what is missing and writes nothing new), every write is
atomic, and every entry that cannot be used is named in the report, never dropped silently.
"""

from __future__ import annotations

import io
import json
import os
import tarfile
import xml.etree.ElementTree as ET
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

import cv2
import numpy as np
import scipy.io
from PIL import Image
from tqdm import tqdm

from tool.label_io import atomic_path, check_label, read_label_png, save_label_png
from voc12.annotations import AnnotationError, image_label_from_xml, read_points
from voc12.lists import LIST_FOLDER, SHIPPED_LISTS, STANDARD_SPLITS, read_id_list, train_aug_ids, write_id_list
from voc12.make_cls_labels import load_cls_labels, save_cls_labels
from vocabulary import CAT_LIST, IGNORE

SCRIBBLE_WIDTH = 3  # pixels: stroke width of rasterised ScribbleSup polylines (cv2.polylines thickness)
# ScribbleSup tags -> VOC ids: the short names of its annotation tool (plane, bike, table, plant, monitor, as its
# PASCAL-Context files spell them), the VOC names, and spelled-out variants of other copies
CLASS_ALIASES = {"background": 0, "bg": 0, "plane": 1, "airplane": 1, "bike": 2, "motorcycle": 14, "table": 11,
                 "dining table": 11, "dining_table": 11, "plant": 16, "potted plant": 16, "potted_plant": 16,
                 "monitor": 20, "tv": 20, "tv/monitor": 20, "tv_monitor": 20,
                 **{name: index + 1 for index, name in enumerate(CAT_LIST)}}
# the ScribbleSup archive also holds PASCAL VOC 2007 and PASCAL-Context scribbles (other ids, other classes)
OTHER_SCRIBBLE_SETS = {"pascal_2007", "pascal_context"}
REPORT_NAME = "prepare_voc_report.json"
SHOWN = 10  # ids printed per problem kind (the report file holds all)


class SourceError(ValueError):
    """A source (folder or archive) that holds nothing of the kind it was given for."""


# --- reading folders and archives alike -----------------------------------------------------------------
@dataclass(frozen=True)
class Entry:
    """One file of a source: its path inside the folder or archive, and a reader of its bytes."""

    name: PurePosixPath
    read: Callable[[], bytes]


def _skipped(name: PurePosixPath) -> bool:
    """macOS archive litter (``__MACOSX/``, ``._x``) and hidden files are no data."""
    return any(part == "__MACOSX" or part.startswith(".") for part in name.parts)


def source_entries(path: str | os.PathLike) -> Iterator[Entry]:
    """Every file of a folder, ``.zip`` or tar archive (any compression), in name order for folders and zips,
    archive order for tars (read each entry's bytes before moving on: tars are read front to back)."""
    path = Path(path)
    if path.is_dir():
        for file in sorted(p for p in path.rglob("*") if p.is_file()):
            name = PurePosixPath(file.relative_to(path).as_posix())
            if not _skipped(name):
                yield Entry(name, file.read_bytes)
    elif zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as archive:
            for info in sorted(archive.infolist(), key=lambda i: i.filename):
                name = PurePosixPath(info.filename)
                if not info.is_dir() and not _skipped(name):
                    yield Entry(name, lambda info=info: archive.read(info))
    elif path.is_file() and tarfile.is_tarfile(path):
        with tarfile.open(path, "r:*") as archive:
            for member in archive:
                name = PurePosixPath(member.name)
                if member.isfile() and not _skipped(name):
                    yield Entry(name, lambda member=member: archive.extractfile(member).read())
    elif path.is_file():
        raise SourceError(f"{path}: neither a folder nor a .zip / .tar / .tgz archive")
    else:
        raise FileNotFoundError(f"{path}: not found")


# --- the formats --------------------------------------------------------------------------------------------
def _sbd_struct(data: bytes, source: str, kind: str, struct: str, fields: tuple[str, ...]) -> list[np.ndarray]:
    """The ``fields`` of MATLAB struct ``struct`` in an SBD ``kind`` .mat file, or ``AnnotationError`` naming
    ``source``."""
    try:
        mat = scipy.io.loadmat(io.BytesIO(data), squeeze_me=True, struct_as_record=False)
        return [np.asarray(getattr(mat[struct], name)) for name in fields]
    except (ValueError, KeyError, AttributeError, TypeError, OSError, NotImplementedError,
            scipy.io.matlab.MatReadError) as err:
        raise AnnotationError(f"{source}: not an SBD {kind} .mat (struct {struct} with field(s) {', '.join(fields)}): "
                              f"{type(err).__name__}: {err}") from None


def read_sbd_mat(data: bytes, source: str) -> np.ndarray:
    """``(H, W)`` uint8 class ids of an SBD ``cls/<id>.mat`` file (struct ``GTcls``, field ``Segmentation``)."""
    (label,) = _sbd_struct(data, source, "class", "GTcls", ("Segmentation",))
    try:
        return check_label(label, None, source)
    except ValueError as err:
        raise AnnotationError(str(err)) from None


def read_sbd_inst(data: bytes, source: str) -> tuple[np.ndarray, list[int]]:
    """An SBD ``inst/<id>.mat`` file (struct ``GTinst``): the ``(H, W)`` uint8 instance map ``Segmentation``
    (0 background, ``k`` the ``k``-th instance) and ``Categories``, the class id 1..20 of each instance."""
    inst, categories = _sbd_struct(data, source, "instance", "GTinst", ("Segmentation", "Categories"))
    classes = np.atleast_1d(categories).ravel()  # squeeze_me makes one instance's list a scalar
    if inst.ndim != 2 or not np.issubdtype(inst.dtype, np.integer) or not np.issubdtype(classes.dtype, np.number):
        raise AnnotationError(f"{source}: GTinst.Segmentation must be a 2-D integer map and Categories numbers, got "
                              f"{inst.dtype} {inst.shape} and {classes.dtype}")
    if inst.size and (inst.min() < 0 or inst.max() > len(classes)):
        raise AnnotationError(f"{source}: instance indices {int(inst.min())}..{int(inst.max())} do not match the "
                              f"{len(classes)} GTinst.Categories (expected 0..{len(classes)})")
    if classes.size and (classes.min() < 1 or classes.max() >= len(CAT_LIST) + 1 or (classes % 1).any()):
        raise AnnotationError(f"{source}: GTinst.Categories {classes.tolist()[:10]} are not VOC class ids 1..20")
    if len(classes) >= IGNORE:
        raise AnnotationError(f"{source}: {len(classes)} instances; an instance map holds at most {IGNORE - 1}")
    return inst.astype(np.uint8), [int(c) for c in classes]


def read_label_bytes(data: bytes, source: str) -> np.ndarray:
    """``(H, W)`` uint8 class ids of a palette or greyscale label PNG given as bytes."""
    try:
        with Image.open(io.BytesIO(data)) as img:
            if img.mode not in ("P", "L"):
                raise AnnotationError(f"{source}: expected a palette or greyscale label PNG, got mode {img.mode}")
            label = np.array(img, dtype=np.uint8)
        return check_label(label, None, source)
    except (OSError, SyntaxError, ValueError) as err:
        raise AnnotationError(f"{source}: not a label PNG ({err})") from None


@dataclass(frozen=True)
class Stroke:
    """One ScribbleSup stroke: class id (0 = background) and its polyline, ``(N, 2)`` float x, y (0-based)."""

    cls: int
    xy: np.ndarray


def read_scribble_xml(data: bytes, source: str) -> tuple[list[Stroke], list[str]]:
    """``(strokes, problems)`` of a ScribbleSup XML file. Its ``<X>``/``<Y>`` are 1-based pixel coordinates (as
    MATLAB's, which its demo and the widely used PNG conversion draw them with; VOC XML is 1-based too), so 1 is
    subtracted. A stroke with an unknown class name or without vertices is left out and named in ``problems``."""
    try:
        root = ET.fromstring(data)
    except ET.ParseError as err:
        raise AnnotationError(f"{source}: broken XML ({err})") from None
    strokes, problems = [], []
    for k, polygon in enumerate(root.iter("polygon")):
        tag = (polygon.findtext("tag") or "").strip()
        cls = CLASS_ALIASES.get(tag.lower())
        if cls is None:
            problems.append(f"stroke {k}: unknown class name {tag!r}")
            continue
        try:
            xy = np.array([[float(p.findtext("X")), float(p.findtext("Y"))] for p in polygon.iter("point")],
                          dtype=np.float64).reshape(-1, 2) - 1
        except (TypeError, ValueError):
            problems.append(f"stroke {k} ({tag}): a vertex without numeric <X>/<Y>")
            continue
        if not len(xy):
            problems.append(f"stroke {k} ({tag}): no vertices")
            continue
        strokes.append(Stroke(cls, xy))
    return strokes, problems


def rasterise_strokes(strokes: list[Stroke], hw: tuple[int, int], width: int = SCRIBBLE_WIDTH) -> np.ndarray:
    """``(H, W)`` uint8 scribble map: each polyline drawn ``width`` pixels wide (vertices rounded to the
    nearest pixel; a one-vertex stroke is a dot; background strokes first, object strokes on top in file
    order), 255 elsewhere."""
    label = np.full(hw, IGNORE, dtype=np.uint8)
    for stroke in sorted(strokes, key=lambda s: s.cls != 0):  # stable: file order within each group
        xy = np.repeat(stroke.xy, 2, axis=0) if len(stroke.xy) == 1 else stroke.xy  # one vertex: a dot
        points = np.round(xy).astype(np.int32).reshape(-1, 1, 2)
        cv2.polylines(label, [points], isClosed=False, color=int(stroke.cls), thickness=width)
    return label


def read_wtp_clicks(path: str | os.PathLike) -> dict[str, list[dict]]:
    """The What's-the-Point JSON object: image id -> list of clicks (``cls`` 1..20, ``x``, ``y``)."""
    path = Path(path)
    if not path.is_file():
        raise SourceError(f"{path}: not a file (give the What's-the-Point JSON file itself)")
    try:
        data = json.loads(path.read_bytes())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise SourceError(f"{path}: not a JSON file ({err})") from None
    if not isinstance(data, dict) or not all(isinstance(v, list) for v in data.values()):
        raise SourceError(f"{path}: expected a What's-the-Point JSON object (image id -> list of clicks)")
    return data


def background_click(scribble: np.ndarray) -> tuple[int, int] | None:
    """The background click added to an image's clicks: the middle background-stroke pixel (class 0) in
    row-major order, as ``(x, y)``; ``None`` when the scribble has no background stroke."""
    ys, xs = np.nonzero(scribble == 0)
    if not len(ys):
        return None
    k = len(ys) // 2
    return int(xs[k]), int(ys[k])


# --- the report ---------------------------------------------------------------------------------------------
@dataclass
class Report:
    """Counts of one source: files written, files already there, and every problem by kind."""

    source: str
    written: int = 0
    present: int = 0
    problems: dict[str, list[str]] = field(default_factory=dict)
    unusable: str | None = None  # why the whole source could not be used

    def problem(self, kind: str, what: str) -> None:
        self.problems.setdefault(kind, []).append(what)

    def lines(self) -> list[str]:
        head = f"{self.source}: {self.written} written, {self.present} already there"
        if self.unusable:
            head += f"; UNUSABLE: {self.unusable}"
        out = [head]
        for kind, items in self.problems.items():
            more = f" ... (+{len(items) - SHOWN} more)" if len(items) > SHOWN else ""
            out.append(f"  {kind} ({len(items)}): {'; '.join(items[:SHOWN])}{more}")
        return out


# --- the steps ----------------------------------------------------------------------------------------------
class Preparer:
    """Writes the prepared folders into ``root`` (a VOC2012 folder), one step per source."""

    def __init__(self, root: str | os.PathLike, scribble_width: int = SCRIBBLE_WIDTH, progress: bool = True):
        self.root = Path(root)
        if not (self.root / "JPEGImages").is_dir():
            raise FileNotFoundError(f"{self.root}: no JPEGImages folder (expected the VOC2012 folder of the VOC "
                                    "download, .../VOCdevkit/VOC2012)")
        self.width = scribble_width
        self.progress = progress
        self._sizes: dict[str, tuple[int, int] | None] = {}
        known = [SHIPPED_LISTS / f"{name}.txt" for name in STANDARD_SPLITS]
        known += [self.root / LIST_FOLDER / f"{name}.txt" for name in ("train", "val", "train_aug")]
        self.listed = {i for path in known if path.is_file() for i in read_id_list(path)}

    def image_hw(self, image_id: str) -> tuple[int, int] | None:
        """``(H, W)`` of ``JPEGImages/<id>.jpg`` (header only), ``None`` when the image is missing."""
        if image_id not in self._sizes:
            path = self.root / "JPEGImages" / f"{image_id}.jpg"
            try:
                with Image.open(path) as img:
                    self._sizes[image_id] = (img.height, img.width)
            except (OSError, SyntaxError):
                self._sizes[image_id] = None
        return self._sizes[image_id]

    def _bar(self, items, desc: str):
        return tqdm(items, desc=desc, unit=" files", disable=not self.progress, dynamic_ncols=True)

    def _checked(self, image_id: str, label: np.ndarray, report: Report) -> bool:
        hw = self.image_hw(image_id)
        if hw is None:
            report.problem("missing image", image_id)
            return False
        if label.shape != hw:
            report.problem("size differs from the image", f"{image_id} {label.shape} vs {hw}")
            return False
        return True

    # masks
    def voc_masks(self) -> Report:
        """VOC's own ``SegmentationClass`` masks into ``SegmentationClassAug`` (they win over SBD's)."""
        report = Report("VOC SegmentationClass")
        folder = self.root / "SegmentationClass"
        if not folder.is_dir():
            report.unusable = f"{folder} not found (is this the VOC2012 folder?)"
            return report
        for path in self._bar(sorted(folder.glob("*.png")), "VOC masks"):
            out = self.root / "SegmentationClassAug" / path.name
            if out.is_file():
                report.present += 1
                continue
            try:
                label = read_label_png(path)
            except ValueError as err:
                report.problem("unreadable mask", str(err))
                continue
            if self._checked(path.stem, label, report):
                with atomic_path(out) as tmp:
                    tmp.write_bytes(path.read_bytes())
                report.written += 1
        return report

    def aug_masks(self, source: str | os.PathLike) -> Report:
        """SBD ``cls/<id>.mat`` files (written as palette PNGs) or prebuilt class-id PNGs (copied as they are)
        into ``SegmentationClassAug``, for the ids it does not hold yet."""
        report = Report(f"SBD / SegmentationClassAug {source}")
        seen, in_cls = 0, Path(source).name == "cls"  # the cls/ folder itself may be given
        for entry in self._bar(source_entries(source), "SBD masks"):
            folder = entry.name.parent.name or ("cls" if in_cls else "")
            is_mat = entry.name.suffix == ".mat" and folder == "cls"  # inst/ holds instance maps
            if not is_mat and entry.name.suffix.lower() != ".png":
                continue
            seen += 1
            image_id = entry.name.stem
            out = self.root / "SegmentationClassAug" / f"{image_id}.png"
            if out.is_file():
                report.present += 1
                continue
            data = entry.read()
            try:
                label = read_sbd_mat(data, f"{source}:{entry.name}") if is_mat else \
                    read_label_bytes(data, f"{source}:{entry.name}")
            except AnnotationError as err:
                report.problem("unreadable mask", str(err))
                continue
            if not self._checked(image_id, label, report):
                continue
            if is_mat:
                save_label_png(out, label)
            else:
                with atomic_path(out) as tmp:
                    tmp.write_bytes(data)
            report.written += 1
        if not seen:
            report.unusable = "no SBD cls/<id>.mat file and no label PNG in it"
        elif not report.written + report.present:
            report.unusable = "none of its masks could be used"
        return report

    # scribbles
    def scribbles(self, source: str | os.PathLike) -> Report:
        """ScribbleSup XML (rasterised) or PNG scribbles (copied as they are) into ``Scribbles``."""
        report = Report(f"scribbles {source}")
        seen = 0
        for entry in self._bar(source_entries(source), "scribbles"):
            suffix = entry.name.suffix.lower()
            if suffix not in (".xml", ".png"):
                continue
            if OTHER_SCRIBBLE_SETS & set(entry.name.parts):
                report.problem("not PASCAL VOC 2012 (pascal_2007 / pascal_context scribbles; skipped)", str(entry.name))
                continue
            seen += 1
            image_id = entry.name.stem
            out = self.root / "Scribbles" / f"{image_id}.png"
            if out.is_file():
                report.present += 1
                continue
            where = f"{source}:{entry.name}"
            data = entry.read()
            try:
                if suffix == ".png":
                    label = read_label_bytes(data, where)
                else:
                    strokes, problems = read_scribble_xml(data, where)
                    for text in problems:
                        report.problem("stroke left out", f"{image_id} {text}")
                    hw = self.image_hw(image_id)
                    label = rasterise_strokes(strokes, hw, self.width) if hw else np.zeros((0, 0), np.uint8)
            except AnnotationError as err:
                report.problem("unreadable file", str(err))
                continue
            if not self._checked(image_id, label, report):
                continue
            if image_id not in self.listed:
                report.problem("image in no list (written anyway)", image_id)
            if (label == IGNORE).all():
                report.problem("no stroke (written anyway: all 255)", image_id)
            if suffix == ".png":
                with atomic_path(out) as tmp:
                    tmp.write_bytes(data)
            else:
                save_label_png(out, label)
            report.written += 1
        if not seen:
            report.unusable = "no ScribbleSup .xml and no scribble .png in it"
        elif not report.written + report.present:
            report.unusable = "none of its scribbles could be used"
        return report

    # points
    def points(self, path: str | os.PathLike) -> Report:
        """What's-the-Point clicks into ``Points/<id>.json``, plus one background click per image taken from
        its scribble (:func:`background_click`); clicks outside the image or of a class outside 1..20 are
        named and left out."""
        report = Report(f"points {path}")
        clicks = read_wtp_clicks(path)
        for image_id, entries in self._bar(clicks.items(), "points"):
            out = self.root / "Points" / f"{image_id}.json"
            if out.is_file():
                report.present += 1
                continue
            hw = self.image_hw(image_id)
            if hw is None:
                report.problem("missing image", image_id)
                continue
            if image_id not in self.listed:
                report.problem("image in no list (written anyway)", image_id)
            kept = []
            for k, click in enumerate(entries):
                try:
                    cls, x, y = int(click["cls"]), round(float(click["x"])), round(float(click["y"]))
                except (KeyError, TypeError, ValueError):
                    report.problem("malformed click", f"{image_id} click {k}: {click!r}")
                    continue
                if not 1 <= cls <= len(CAT_LIST):
                    report.problem("class outside 1..20", f"{image_id} click {k}: cls {cls}")
                elif not (0 <= x < hw[1] and 0 <= y < hw[0]):
                    report.problem("click outside the image", f"{image_id} click {k}: (x={x}, y={y}) not in "
                                                              f"{hw[0]}x{hw[1]}")
                else:
                    kept.append({"class": cls, "x": x, "y": y})
            scribble = self.root / "Scribbles" / f"{image_id}.png"
            bg = background_click(read_label_png(scribble)) if scribble.is_file() else None
            if bg is None:
                report.problem("no background click (no background scribble)", image_id)
            else:
                kept.append({"class": 0, "x": bg[0], "y": bg[1]})
            with atomic_path(out) as tmp:
                tmp.write_text(json.dumps(kept) + "\n")
            read_points(out, hw)  # the file every stage reads passes its own reader
            report.written += 1
        if not clicks:
            report.unusable = "no image in it"
        return report

    # lists and labels
    def lists(self) -> tuple[Report, dict[str, list[str]]]:
        """``train_aug.txt`` from the masks there are, and each split checked against the standard one."""
        report = Report("lists")
        folder = self.root / LIST_FOLDER
        try:
            train, val = read_id_list(folder / "train.txt"), read_id_list(folder / "val.txt")
        except FileNotFoundError as err:
            report.unusable = str(err)
            return report, {}
        masks = {p.stem for p in (self.root / "SegmentationClassAug").glob("*.png")}
        lists = {"train_aug": train_aug_ids(masks, train, val), "train": train, "val": val}
        path = folder / "train_aug.txt"
        if path.is_file() and read_id_list(path) == lists["train_aug"]:
            report.present += 1
        else:
            write_id_list(path, lists["train_aug"])
            report.written += 1
        for name, ids in lists.items():
            standard = read_id_list(SHIPPED_LISTS / f"{name}.txt")
            missing, extra = sorted(set(standard) - set(ids)), sorted(set(ids) - set(standard))
            for image_id in missing:
                report.problem(f"{name} has {len(ids)} ids, the standard split {len(standard)}; missing", image_id)
            for image_id in extra:
                report.problem(f"{name}: not in the standard split", image_id)
        return report, lists

    def labels(self, ids: list[str]) -> Report:
        """``cls_labels.npz``: image-level labels of ``ids`` from ``Annotations/<id>.xml``."""
        report = Report("image labels (Annotations XML)")
        out = self.root / "cls_labels.npz"
        if out.is_file() and set(load_cls_labels(out)) == set(ids):
            report.present += 1
            return report
        labels = {}
        for image_id in self._bar(ids, "image labels"):
            try:
                labels[image_id] = image_label_from_xml(self.root / "Annotations" / f"{image_id}.xml")
            except (FileNotFoundError, AnnotationError) as err:
                report.problem("no usable XML", str(err))
        if labels:
            save_cls_labels(out, labels)
            report.written += 1
        return report


def prepare(root: str | os.PathLike, sbd: str | os.PathLike | None = None,
            scribbles: str | os.PathLike | None = None, points: str | os.PathLike | None = None,
            scribble_width: int = SCRIBBLE_WIDTH, progress: bool = True) -> list[Report]:
    """Run every step for the sources given (masks, scribbles, points, lists, image labels), write
    ``prepare_voc_report.json`` into ``root`` and return the reports."""
    prep = Preparer(root, scribble_width, progress)
    reports = [prep.voc_masks()]
    steps = ((sbd, prep.aug_masks), (scribbles, prep.scribbles), (points, prep.points))
    for source, step in steps:
        if source is None:
            continue
        try:
            reports.append(step(source))
        except SourceError as err:
            reports.append(Report(str(source), unusable=str(err)))
    list_report, lists = prep.lists()
    reports.append(list_report)
    if lists:
        reports.append(prep.labels(sorted(set(lists["train_aug"]) | set(lists["val"]))))
    with atomic_path(Path(root) / REPORT_NAME) as tmp:
        tmp.write_text(json.dumps([r.__dict__ for r in reports], indent=1) + "\n")
    return reports
