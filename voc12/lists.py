"""Image id lists: reading both list dialects, resolving list names, generating the VOC lists.

Two dialects are read: bare ids (``2007_000032``) and SEAM/PSA pairs
(``/JPEGImages/2007_000032.jpg /SegmentationClassAug/2007_000032.png``). The id is the file name of the
first token without its image suffix; later tokens are ignored and blank lines skipped.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

from tool.label_io import atomic_path

LIST_FOLDER = Path("ImageSets") / "Segmentation"
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
        raise FileNotFoundError(f"id list not found: {path}")
    with open(path, encoding="utf-8-sig") as f:
        return [_id_of(line.split()[0]) for line in f if line.strip()]


def write_id_list(path: str | os.PathLike, ids: Iterable[str]) -> None:
    """Write one bare id per line, atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text("".join(f"{image_id}\n" for image_id in ids))


def resolve_list(name_or_path: str | os.PathLike, voc12_root: str | os.PathLike) -> Path:
    """An existing list path as given, else ``voc12_root/ImageSets/Segmentation/<name>[.txt]``.

    So ``train_aug.txt``, ``train_aug`` and ``path/to/list.txt`` all work.
    """
    given = Path(name_or_path)
    if given.is_file():
        return given
    folder = Path(voc12_root) / LIST_FOLDER
    candidates = [folder / given] + ([] if given.suffix else [folder / f"{given}.txt"])
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    tried = ", ".join(str(c) for c in [given, *candidates])
    raise FileNotFoundError(f"id list {str(name_or_path)!r} not found (tried {tried})")


def read_list(name_or_path: str | os.PathLike, voc12_root: str | os.PathLike) -> list[str]:
    """Ids of a list given as a path or a list name under ``voc12_root`` (see :func:`resolve_list`)."""
    return read_id_list(resolve_list(name_or_path, voc12_root))


def make_voc_lists(voc12_root: str | os.PathLike, out_dir: str | os.PathLike) -> dict[str, list[str]]:
    """Write ``train.txt``, ``val.txt`` and ``train_aug.txt`` (bare ids) into ``out_dir``.

    train and val come from ``ImageSets/Segmentation/{train,val}.txt``. train_aug is the ids of
    ``SegmentationClassAug/*.png`` plus train, minus val, sorted; without ``SegmentationClassAug`` it is
    train alone (a note is printed). Returns ``{'train': ids, 'val': ids, 'train_aug': ids}``.
    """
    root = Path(voc12_root)
    if not root.is_dir():
        raise FileNotFoundError(f"--voc12_root folder not found: {root}")
    train = read_id_list(root / LIST_FOLDER / "train.txt")
    val = read_id_list(root / LIST_FOLDER / "val.txt")
    aug_dir = root / "SegmentationClassAug"
    if aug_dir.is_dir():
        aug = {p.stem for p in aug_dir.glob("*.png")}
    else:
        print(f"note: {aug_dir} not found; train_aug = train ({len(train)} ids)")
        aug = set()
    lists = {"train": train, "val": val, "train_aug": sorted((aug | set(train)) - set(val))}
    for name, ids in lists.items():
        write_id_list(Path(out_dir) / f"{name}.txt", ids)
    return lists
