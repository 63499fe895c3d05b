"""Reading and writing label maps, images and arrays; every write is atomic (temp file + rename).

Also the one label-map validator (:func:`check_label`) that every label reader uses, the output-folder
probe run before any work (:func:`probe_output_dir`) and the clean-up of temporaries left by a killed
write (:func:`remove_stale_temporaries`).
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import tempfile
import zipfile
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np
from PIL import Image

from tool.cli import MissingFileError, WrongFileError
from vocabulary import IGNORE, NUM_CLASSES, voc_palette

_TEMP_SUFFIX = ".tmp"


def current_umask() -> int:
    """The process umask: from ``/proc/self/status`` on Linux, else by setting and restoring it (which
    is not thread-safe, hence the first way)."""
    with contextlib.suppress(OSError, ValueError):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it onto ``path`` only if the block succeeds.

    The parent folder is created. On error the temporary file is removed, so ``path`` is either the old
    file, absent, or the complete new file: never half written. The file gets the mode an ordinary
    ``open`` would give it (``0o666`` minus the umask), not ``mkstemp``'s private ``0o600``. The
    temporary is named ``.<stem>.<8 random characters><suffix>.tmp``; a write killed half-way leaves it
    behind, and :func:`remove_stale_temporaries` removes it on the next run. A full disk raises
    ``OSError(ENOSPC)`` naming ``path``.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.", suffix=path.suffix + _TEMP_SUFFIX)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        os.chmod(tmp_path, 0o666 & ~current_umask())
        yield tmp_path
        os.replace(tmp_path, path)
    except OSError as err:
        if err.errno == errno.ENOSPC:
            raise OSError(errno.ENOSPC, f"no space left on the device while writing {path}") from err
        raise
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


# ".<stem>.<8 random characters of tempfile><suffix>.tmp"; the stem is taken as long as possible
_TEMPORARY = re.compile(r"\.(?P<stem>.+)\.[a-z0-9_]{8}(?P<suffix>(?:\.[^.]*)?)\.tmp")


def remove_stale_temporaries(paths: Iterable[str | os.PathLike]) -> list[Path]:
    """Remove the temporaries that killed :func:`atomic_path` writes of ``paths`` left behind.

    Each folder is listed once, so this is cheap for a 10,000-image run. Only temporaries of the given
    outputs are touched (concurrent shards write other files). Returns the removed paths.
    """
    by_folder: dict[Path, set[str]] = {}
    for p in paths:
        p = Path(p)
        by_folder.setdefault(p.parent, set()).add(p.name)
    removed = []
    for folder, names in by_folder.items():
        if not folder.is_dir():
            continue
        for entry in os.listdir(folder):
            match = _TEMPORARY.fullmatch(entry)
            if match and match["stem"] + match["suffix"] in names:
                with contextlib.suppress(FileNotFoundError):
                    (folder / entry).unlink()
                removed.append(folder / entry)
    return removed


def probe_output_dir(folder: str | os.PathLike, what: str) -> None:
    """Create ``folder`` and write and remove a probe file in it, before any work is done.

    ``what`` names the flag (``'--save_dir'``). Raises ``PermissionError`` / ``OSError`` naming the
    folder, the flag and the reason, so a read-only output folder costs no compute.
    """
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(dir=folder, prefix=".write_probe.", suffix=_TEMP_SUFFIX)
        os.close(fd)
        os.unlink(probe)
    except OSError as err:
        raise type(err)(err.errno, f"{what} {folder}: cannot write there ({err.strerror or err}); "
                                   f"choose a writable folder") from err


def save_label_png(path: str | os.PathLike, label: np.ndarray) -> None:
    """Write a ``(H, W)`` uint8 label map (0..20 classes, 255 ignore) as a VOC palette PNG, atomically."""
    label = np.asarray(label)
    if label.ndim != 2:
        raise ValueError(f"{path}: label map must be 2-D (H, W), got shape {label.shape}")
    if label.dtype != np.uint8:
        if label.min(initial=0) < 0 or label.max(initial=0) > 255:
            raise ValueError(f"{path}: label values must lie in 0..255")
        label = label.astype(np.uint8)
    img = Image.fromarray(label, mode="P")
    img.putpalette(voc_palette().reshape(-1).tolist())
    with atomic_path(path) as tmp:
        img.save(tmp, format="PNG")


def save_index_png(path: str | os.PathLike, label: np.ndarray) -> None:
    """Write a ``(H, W)`` uint8 label map as a single-channel 8-bit PNG (mode ``L``, no palette), atomically.

    Each pixel value is the class id: what code that opens label PNGs as grayscale expects (OpenCV's
    ``IMREAD_GRAYSCALE`` turns a palette PNG into the luminance of its colours, e.g. class 15 into 147).
    """
    label = np.asarray(label)
    if label.ndim != 2 or label.dtype != np.uint8:
        raise ValueError(f"{path}: expected a (H, W) uint8 label map, got {label.dtype} {label.shape}")
    with atomic_path(path) as tmp:
        Image.fromarray(label, mode="L").save(tmp, format="PNG")


def check_label(label: np.ndarray, hw: tuple[int, int] | None, source: str | os.PathLike) -> np.ndarray:
    """The one label-map validator: ``label`` as ``(H, W)`` uint8 if it is 2-D, ``hw``-shaped (when
    given) and holds only 0..20 or 255; else ``WrongFileError`` (a ``ValueError``) naming ``source``."""
    label = np.asarray(label)
    if label.ndim != 2:
        raise WrongFileError(f"{source}: a label map must be 2-D (H, W), got shape {label.shape}")
    if hw is not None and label.shape != tuple(hw):
        raise WrongFileError(f"{source}: size (H, W) = {label.shape} does not match the image's {tuple(hw)}")
    if label.size and (label.min() < 0 or label.max() > IGNORE):
        bad = np.unique(label[(label < 0) | (label > IGNORE)])
    else:
        counts = np.bincount(label.astype(np.uint8).ravel(), minlength=IGNORE + 1)
        bad = np.flatnonzero(counts[NUM_CLASSES:IGNORE]) + NUM_CLASSES
    if bad.size:
        raise WrongFileError(f"{source}: unknown class values {bad[:10].tolist()} (expected 0..20, or 255 = "
                             "unknown)")
    return label.astype(np.uint8)


def read_label_png(path: str | os.PathLike, hw: tuple[int, int] | None = None) -> np.ndarray:
    """Read a label map as ``(H, W)`` uint8 class indices from a palette or grayscale PNG.

    Palette PNGs give their indices; grayscale PNGs give their values. RGB images are refused because
    their colours would have to be inverted through the palette. Every map passes :func:`check_label`
    (values 0..20 or 255; size ``hw`` when given), so no reader trains on or merges a value such as 37.
    """
    path = Path(path)
    if not path.is_file():
        raise MissingFileError(f"label map not found: {path}")
    try:
        with Image.open(path) as img:
            if img.mode in ("P", "L"):
                label = np.array(img, dtype=np.uint8)
            elif img.mode in ("I", "I;16"):
                label = np.array(img)
            else:
                raise WrongFileError(f"{path}: expected a palette or grayscale label PNG of class ids "
                                     f"(0..20, 255 = unknown), got mode {img.mode}; convert colour masks to class ids")
    except (OSError, SyntaxError) as err:  # PIL: UnidentifiedImageError, truncated file
        raise WrongFileError(f"{path}: not a readable PNG label map ({err})") from err
    return check_label(label, hw, path)


def read_image(path: str | os.PathLike) -> np.ndarray:
    """Read an image as ``(H, W, 3)`` uint8 RGB; a missing, corrupt or truncated file raises naming it."""
    path = Path(path)
    if not path.is_file():
        raise MissingFileError(f"image not found: {path}")
    try:
        with Image.open(path) as img:
            return np.array(img.convert("RGB"), dtype=np.uint8)
    except (OSError, SyntaxError) as err:  # PIL: UnidentifiedImageError, "Truncated File Read", ...
        raise WrongFileError(f"{path}: corrupt or truncated image ({err})") from err


def save_image(path: str | os.PathLike, image: np.ndarray, quality: int = 95) -> None:
    """Write a ``(H, W, 3)`` uint8 RGB image atomically (JPEG or PNG by the suffix)."""
    with atomic_path(path) as tmp:
        fmt = "JPEG" if Path(path).suffix.lower() in (".jpg", ".jpeg") else "PNG"
        kwargs = {"quality": quality} if fmt == "JPEG" else {}
        Image.fromarray(np.asarray(image, dtype=np.uint8)).save(tmp, format=fmt, **kwargs)


def save_npz(path: str | os.PathLike, **arrays: np.ndarray) -> None:
    """Write arrays to a compressed ``.npz`` atomically (no pickled objects)."""
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        np.savez_compressed(f, **arrays)


def load_npz(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Read every array of an ``.npz`` file (``allow_pickle=False``)."""
    path = Path(path)
    if not path.is_file():
        raise MissingFileError(f"array file not found: {path}")
    try:
        with np.load(path, allow_pickle=False) as data:
            return {k: data[k] for k in data.files}
    except ValueError as err:
        if "Object arrays" in str(err):
            raise WrongFileError(f"{path}: holds object arrays (pickled Python objects), which are never "
                                 "loaded because unpickling runs code from the file; write plain numeric "
                                 "arrays (tool.label_io.save_npz)") from None
        if "pickled data" in str(err):  # neither zip nor .npy: a pickle, or random bytes
            raise WrongFileError(f"{path}: not an .npz archive (a pickle or a corrupt file); it is not "
                                 "unpickled") from None
        raise WrongFileError(f"{path}: unreadable .npz ({err})") from err
    except (OSError, EOFError, zipfile.BadZipFile) as err:
        raise WrongFileError(f"{path}: not an .npz archive, or a truncated one ({type(err).__name__})") from None
