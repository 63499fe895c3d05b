"""Where the VOC data comes from: the archives with a stable address and checksum (fetched through
torchvision's dataset download utilities) and the ones a person downloads by hand."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from torchvision.datasets import SBDataset
from torchvision.datasets.utils import download_and_extract_archive, download_url
from torchvision.datasets.voc import DATASET_YEAR_DICT

VOC2012 = DATASET_YEAR_DICT["2012"]  # url, filename, md5, base_dir "VOCdevkit/VOC2012" (torchvision's record)
SBD_URL, SBD_MD5, SBD_FILE = SBDataset.url, SBDataset.md5, SBDataset.filename


@dataclass(frozen=True)
class Manual:
    """A download without a stable address and checksum: where people get it, and the flag that takes it."""

    what: str
    where: str
    flag: str


MANUAL = (
    Manual("ScribbleSup scribbles (scribble_annotation.zip: pascal_2012/<id>.xml)",
           "https://jifengdai.org/downloads/scribble_sup/ (a copy already as PNGs: "
           "http://cs.uwaterloo.ca/~m62tang/rloss/pascal_2012_scribble.zip)",
           "--scribbles PATH/scribble_annotation.zip"),
    Manual("What's-the-Point clicks (pascal2012_trainval_main.json)",
           "the data/ folder of https://github.com/abearman/whats-the-point1",
           "--points PATH/pascal2012_trainval_main.json"),
    Manual("prebuilt SegmentationClassAug.zip (instead of SBD's benchmark.tgz)",
           "https://www.dropbox.com/s/oeu149j8qtbs1x0/SegmentationClassAug.zip "
           "(from github.com/DrSleep/tensorflow-deeplab-resnet)",
           "--sbd PATH/SegmentationClassAug.zip"),
    Manual("published seed labels and CAMs", "python download_weights.py --list (seed_labels; CAMs on BaiduYun)",
           "see download_weights.py"),
)


def voc_devkit_parent(voc12_root: str | os.PathLike) -> Path:
    """The folder the VOC tar unpacks into (it holds ``VOCdevkit/VOC2012``); ``ValueError`` when
    ``voc12_root`` does not end in ``VOCdevkit/VOC2012``."""
    root = Path(voc12_root)
    if root.parts[-2:] != tuple(Path(VOC2012["base_dir"]).parts):
        raise ValueError(f"--voc12_root {root}: with --download it must end in {VOC2012['base_dir']} (the VOC tar "
                         f"unpacks there), e.g. data/{VOC2012['base_dir']}")
    return root.parent.parent


def download_voc(voc12_root: str | os.PathLike, download_dir: str | os.PathLike) -> None:
    """Fetch the VOC2012 trainval tar into ``download_dir`` (md5-checked; a complete archive is not fetched
    again) and unpack it so that ``voc12_root`` exists."""
    download_and_extract_archive(VOC2012["url"], download_root=download_dir,
                                 extract_root=voc_devkit_parent(voc12_root), filename=VOC2012["filename"],
                                 md5=VOC2012["md5"])


def download_sbd(download_dir: str | os.PathLike) -> Path:
    """Fetch SBD's ``benchmark.tgz`` into ``download_dir`` (md5-checked; not unpacked: prepare reads the
    archive as it is) and return its path."""
    download_url(SBD_URL, download_dir, filename=SBD_FILE, md5=SBD_MD5)
    return Path(download_dir) / SBD_FILE
