"""Small argparse helpers shared by the stage scripts."""

from __future__ import annotations

import argparse

import torch


def str2bool(value: str | bool) -> bool:
    """Parse ``True/False`` style flags (``--rw False`` means off; never ``type=bool``)."""
    if isinstance(value, bool):
        return value
    text = value.strip().lower()
    if text in ("true", "t", "yes", "y", "1", "on"):
        return True
    if text in ("false", "f", "no", "n", "0", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected a boolean (True/False), got {value!r}")


def default_device() -> str:
    """``'cuda'`` when a GPU is visible, else ``'cpu'``."""
    return "cuda" if torch.cuda.is_available() else "cpu"
