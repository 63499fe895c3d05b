"""Reading and writing label maps, images and arrays; every write is atomic (temp file + rename)."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
from PIL import Image

from vocabulary import voc_palette


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it onto ``path`` only if the block succeeds.

    The parent folder is created. On error the temporary file is removed, so ``path`` is either the old
    file, absent, or the complete new file: never half written.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.", suffix=path.suffix + ".tmp")
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.replace(tmp_path, path)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


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


def read_label_png(path: str | os.PathLike) -> np.ndarray:
    """Read a label map as ``(H, W)`` uint8 class indices from a palette or grayscale PNG.

    Palette PNGs give their indices; grayscale PNGs give their values. RGB images are refused because
    their colours would have to be inverted through the palette.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"label map not found: {path}")
    with Image.open(path) as img:
        if img.mode in ("P", "L"):
            return np.array(img, dtype=np.uint8)
        if img.mode in ("I", "I;16"):
            return np.array(img).astype(np.uint8)
        raise ValueError(f"{path}: expected a palette or grayscale label PNG, got mode {img.mode}")


def read_image(path: str | os.PathLike) -> np.ndarray:
    """Read an image as ``(H, W, 3)`` uint8 RGB."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"image not found: {path}")
    with Image.open(path) as img:
        return np.array(img.convert("RGB"), dtype=np.uint8)


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
        raise FileNotFoundError(f"array file not found: {path}")
    with np.load(path, allow_pickle=False) as data:
        return {k: data[k] for k in data.files}
