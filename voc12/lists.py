"""Image id lists: reading both list dialects, resolving list names, generating the VOC lists.

The standard PASCAL VOC 2012 splits ship in this package as bare ids (``voc12/train_aug.txt`` 10,582,
``train.txt`` 1,464, ``val.txt`` 1,449, ``test.txt`` 1,456), as in the upstream repositories, so a list
flag given as ``train_aug.txt`` works on a plain VOC download (which has no train_aug list).

Two dialects are read: bare ids (``2007_000032``) and SEAM/PSA pairs
(``/JPEGImages/2007_000032.jpg /SegmentationClassAug/2007_000032.png``). The id is the file name of the
first token without its image suffix; later tokens are ignored and blank lines skipped.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

from tool.cli import MissingFileError
from tool.label_io import atomic_path

LIST_FOLDER = Path("ImageSets") / "Segmentation"
SHIPPED_LISTS = Path(__file__).resolve().parent
STANDARD_SPLITS = {"train_aug": 10582, "train": 1464, "val": 1449, "test": 1456}  # name: ids
_IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")


def _id_of(token: str) -> str:
    name = token.rsplit("/", 1)[-1]
    stem, dot, suffix = name.rpartition(".")
    return stem if dot and f".{suffix.lower()}" in _IMAGE_SUFFIXES else name


def read_id_list(path: str | os.PathLike) -> list[str]:
    """Image ids of a list file, in file order (either dialect; blank lines skipped; a UTF-8 byte-order
    mark, as some Windows editors write, is dropped)."""
    path = Path(path)
    if not path.is_file():
        raise MissingFileError(f"id list not found: {path}")
    with open(path, encoding="utf-8-sig") as f:
        return [_id_of(line.split()[0]) for line in f if line.strip()]


def write_id_list(path: str | os.PathLike, ids: Iterable[str]) -> None:
    """Write one bare id per line, atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text("".join(f"{image_id}\n" for image_id in ids))


def resolve_list(name_or_path: str | os.PathLike, voc12_root: str | os.PathLike | None) -> Path:
    """Find an id list: the path as given if it is a file, else ``<name>[.txt]`` in
    ``voc12_root/ImageSets/Segmentation/`` (a dataset's own lists win), else in the shipped ``voc12/``.

    So ``train_aug.txt``, ``train_aug``, ``voc12/train_aug.txt`` (the upstream default, from the
    repository root) and ``path/to/list.txt`` all work. The error lists every place tried.
    """
    given = Path(name_or_path)
    if given.is_file():
        return given
    candidates = []
    if given.parent in (Path("."), Path("voc12")):  # a bare name (a path with folders is not looked up)
        folders = ([Path(voc12_root) / LIST_FOLDER] if voc12_root is not None else []) + [SHIPPED_LISTS]
        names = [given.name] + ([] if given.suffix else [f"{given.name}.txt"])
        candidates = [folder / name for folder in folders for name in names]
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    tried = ", ".join(str(c) for c in [given, *candidates])
    raise MissingFileError(f"id list {str(name_or_path)!r} not found (tried {tried}); give a list file or "
                           f"one of the shipped names {', '.join(f'{n}.txt' for n in STANDARD_SPLITS)}")


def read_list(name_or_path: str | os.PathLike, voc12_root: str | os.PathLike | None) -> list[str]:
    """Ids of a list given as a path or a list name under ``voc12_root`` (see :func:`resolve_list`)."""
    return read_id_list(resolve_list(name_or_path, voc12_root))


def train_aug_ids(mask_ids: Iterable[str], train: Iterable[str], val: Iterable[str]) -> list[str]:
    """The train_aug rule: ids with a ``SegmentationClassAug`` mask, plus VOC train, minus VOC val, sorted
    (on the full SBD + VOC masks: 10,582 ids)."""
    return sorted((set(mask_ids) | set(train)) - set(val))


def make_voc_lists(voc12_root: str | os.PathLike, out_dir: str | os.PathLike) -> dict[str, list[str]]:
    """Write ``train.txt``, ``val.txt`` and ``train_aug.txt`` (bare ids) into ``out_dir``.

    train and val come from ``ImageSets/Segmentation/{train,val}.txt``. train_aug is the ids of
    ``SegmentationClassAug/*.png`` plus train, minus val, sorted; without ``SegmentationClassAug`` it is
    train alone (a note is printed). Returns ``{'train': ids, 'val': ids, 'train_aug': ids}``.
    """
    root = Path(voc12_root)
    if not root.is_dir():
        raise MissingFileError(f"--voc12_root folder not found: {root}")
    train = read_id_list(root / LIST_FOLDER / "train.txt")
    val = read_id_list(root / LIST_FOLDER / "val.txt")
    aug_dir = root / "SegmentationClassAug"
    if aug_dir.is_dir():
        aug = {p.stem for p in aug_dir.glob("*.png")}
    else:
        print(f"note: {aug_dir} not found; train_aug = train ({len(train)} ids)")
        aug = set()
    lists = {"train": train, "val": val, "train_aug": train_aug_ids(aug, train, val)}
    for name, ids in lists.items():
        write_id_list(Path(out_dir) / f"{name}.txt", ids)
    return lists
