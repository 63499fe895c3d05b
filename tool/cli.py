"""Small argparse helpers shared by the stage scripts."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from typing import Any


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
    import torch  # here, so that the file readers importing this module do not pay for torch

    return "cuda" if torch.cuda.is_available() else "cpu"


DEVICE_HELP = "torch device: cpu, cuda or cuda:N (default: cuda when a GPU is visible, else cpu)"
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


class UserError(Exception):
    """A user's mistake (bad path, wrong file kind, wrong checkpoint, bad flag value): the message is one line
    naming the file or flag and what to do. :func:`run` prints it as ``error: …`` and exits with status 2."""


class MissingFileError(UserError, FileNotFoundError):
    """A file or folder the user named (or its default path) does not exist; still a ``FileNotFoundError``."""


class BadValueError(UserError, ValueError):
    """A flag value that cannot work (with the other flags, or on this machine); still a ``ValueError``."""


class WrongFileError(UserError, ValueError):
    """A file of the wrong kind: corrupt, another format, or not fitting the network or the flag; still a
    ``ValueError``, so per-image loops count it as that image's failure."""


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Keeps the description's line breaks and appends ``(default: …)`` to every option whose help does not
    already state its default."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if ("default" in text or action.default in (None, argparse.SUPPRESS)
                or not action.option_strings or action.nargs == 0):
            return text
        return f"{text} (default: %(default)s)"


def make_parser(description: str | None) -> argparse.ArgumentParser:
    """The argument parser of every script: one formatter, so ``--help`` always states the defaults."""
    return argparse.ArgumentParser(description=description, formatter_class=HelpFormatter)


DEBUG_ENV = "A2GNN_DEBUG"


def run(entry: Callable[[], Any]) -> int:
    """Call a script's entry point and return its exit status. A :class:`UserError` ends with one
    ``error: …`` line on stderr and status 2; set ``A2GNN_DEBUG=1`` to see the traceback instead."""
    try:
        result = entry()
    except UserError as err:
        if os.environ.get(DEBUG_ENV):
            raise
        print(f"error: {err}", file=sys.stderr)
        return 2
    if isinstance(result, int):
        return result
    return int(getattr(result, "exit_code", 0) or 0)
