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


VOC12_ROOT_HELP = "the VOC2012 folder (JPEGImages/, Annotations/, SegmentationClass/, ...)"
LIST_NAMES_HELP = ("a path, or a name (train_aug.txt, train.txt, val.txt, test.txt) looked up in "
                   "<voc12_root>/ImageSets/Segmentation/, then in the shipped voc12/")
DEFAULT_LIST = "train_aug.txt"


def add_voc12_root(parser: argparse.ArgumentParser) -> None:
    """``--voc12_root``, required: one meaning and one spelling in every stage script."""
    parser.add_argument("--voc12_root", required=True, type=str, help=VOC12_ROOT_HELP)


def add_id_list(parser: argparse.ArgumentParser, flag: str, *aliases: str, what: str,
                required: bool = False) -> None:
    """An id-list flag: ``--train_list`` (images a network trains on), ``--infer_list`` (images a per-image
    stage writes outputs for) or ``--list`` (images a command scores or draws); default ``train_aug.txt``
    unless ``required``. ``aliases``: earlier names that keep working."""
    parser.add_argument(flag, *aliases, required=required, default=None if required else DEFAULT_LIST,
                        type=str, help=f"{what}: {LIST_NAMES_HELP}")
