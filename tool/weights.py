"""The published weight files: what each is, where it comes from, where it goes, how it is checked.

``download_weights.py`` fetches and verifies them; :func:`missing_weights` is the one error every stage
raises (through ``tool.checkpoint``) for a weights file that is not there: which file, the
``download_weights.py`` command that fetches it (or where its BaiduYun link is), and where it goes.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from torchvision.models import ResNet50_Weights, ResNet101_Weights

from tool.cli import MissingFileError

BAIDU_WEIGHTS = "BaiduYun https://pan.baidu.com/s/1Y7K8o6FEIqdhAOTKgcA39g (access code: cvfg)"


@dataclass(frozen=True)
class Published:
    """One published file: where it goes, what it is for, where it comes from, what checks it."""

    key: str  # name for download_weights.py --files
    filename: str
    folder: str  # "weights", "final_model" (below --dest) or "data" (--data_dir)
    network: str | None  # "seam", "aff", "backbone", "resnet50", "resnet101" or None (not a checkpoint)
    used_by: str
    source: str
    gdrive_id: str | None = None  # Google Drive file id (fetched with gdown)
    url: str | None = None  # another direct address
    md5: str | None = None  # only where a published checksum exists (see CHECKSUM_SOURCES)
    sha256: str | None = None  # likewise; none is published in full for any of these files
    sha256_prefix: str | None = None  # the first hex digits of the sha256 that a torchvision file name carries

    @property
    def downloadable(self) -> bool:
        return self.gdrive_id is not None or self.url is not None


PUBLISHED = (
    Published("resnet38_SEAM", "resnet38_SEAM.pth", "weights", "seam",
              "stage 1 CAMs: infer_SEAM.py --weights",
              "SEAM Google Drive https://drive.google.com/file/d/1jWsV5Yev-PwKgvvtUM3GnY0ogb50-qKa/view",
              gdrive_id="1jWsV5Yev-PwKgvvtUM3GnY0ogb50-qKa"),
    Published("ilsvrc", "ilsvrc-cls_rna-a1_cls1000_ep-0001.params", "weights", "backbone",
              "stage 1 training init: train_SEAM.py --weights",
              "ademxapp Model A1 (github.com/itijyou/ademxapp), AARNet CloudStor share NOPhJ247fhVDnZH "
              "(CloudStor has been retired; the link may be dead)",
              url="https://cloudstor.aarnet.edu.au/plus/index.php/s/NOPhJ247fhVDnZH/download",
              md5="ff21f45d6bf03284100dcbec571edfad"),
    Published("resnet38_aff_SEAM", "resnet38_aff_SEAM.pth", "weights", "aff",
              "stage 2 init: train_aff_gated_aff.py --weights", BAIDU_WEIGHTS),
    *(Published(f"aff_{sup}", f"aff_{sup}.pth", "final_model", "aff",
                f"stage 3 ({sup}): train_infer_A2GNN_{'box' if sup == 'box' else 'others'}.py --weights",
                BAIDU_WEIGHTS)
      for sup in ("box", "scribble", "image", "point")),
    *(Published(f"resnet{depth}", Path(weights.url).name, "weights", f"resnet{depth}",
                f"stage 4 backbone: train_seg.py --arch deeplabv2_resnet{depth} --backbone_weights",
                f"torchvision ImageNet weights {weights.url}", url=weights.url,
                sha256_prefix=Path(weights.url).stem.rsplit("-", 1)[1])
      for depth, weights in ((101, ResNet101_Weights.IMAGENET1K_V1), (50, ResNet50_Weights.IMAGENET1K_V1))),
    Published("seed_labels", "seed_labels.zip", "data", None,
              "stage 2/3 seed labels: unpack so that data/Init_Label/<SEAM_Box, ...> exists",
              "Google Drive https://drive.google.com/file/d/1d6nntO4kfgKN45o37GjTYWdu6eLF8RXc/view",
              gdrive_id="1d6nntO4kfgKN45o37GjTYWdu6eLF8RXc"),
)
# Where each checksum above comes from. The other files have no published checksum or size (SEAM, A2GNN and
# the BaiduYun shares state none; no copy was at hand to compute one), so none is checked: download_weights.py
# prints the md5 and sha256 of each file it verifies, for you to record, and loads it strictly into its network.
CHECKSUM_SOURCES = {"ilsvrc": "github.com/itijyou/ademxapp models/checksum.md5",
                    **{f"resnet{d}": "the first sha256 hex digits in torchvision's file name, as torch.hub checks"
                       for d in (101, 50)}}
DEFAULT_DEST, DEFAULT_DATA_DIR = Path("netWeights"), Path("data")


def destination(item: Published, dest: Path = DEFAULT_DEST, data_dir: Path = DEFAULT_DATA_DIR) -> Path:
    """Where ``download_weights.py --dest DEST --data_dir DATA_DIR`` puts ``item``."""
    folder = {"weights": dest, "final_model": dest / "final_model", "data": data_dir}[item.folder]
    return folder / item.filename


def published(filename: str) -> Published | None:
    """The published file of this name, if any."""
    return next((p for p in PUBLISHED if p.filename == filename), None)


def fetch_command(item: Published, target: Path) -> str:
    """The ``download_weights.py`` command that puts ``item`` at ``target``."""
    folder = target.parent
    if item.folder == "data":
        where = f" --data_dir {folder}" if folder != DEFAULT_DATA_DIR else ""
    else:
        dest = folder.parent if item.folder == "final_model" and folder.name == "final_model" else folder
        where = f" --dest {dest}" if dest != DEFAULT_DEST else ""
    return f"python download_weights.py --files {item.key}{where}"


class MissingWeights(MissingFileError):
    """A weights file that is not there (a :class:`~tool.cli.UserError`: one ``error:`` line, status 2)."""


def missing_weights(path: str | os.PathLike, flag: str | None = None, otherwise: str = "") -> MissingWeights:
    """The one-line error for a weights file that is not at ``path`` (``flag``: the option that named it;
    ``otherwise``: another way out, appended, e.g. ``'or pass --weights none'``)."""
    path = Path(path)
    head = f"weights file not found: {path}" + (f" ({flag})" if flag else "")
    tail = f"; {otherwise}" if otherwise else ""
    item = published(path.name)
    if item is None:
        return MissingWeights(f"{head}; check the path (published files: python download_weights.py --list){tail}")
    if item.downloadable:  # a Google Drive or direct file: its folder is --dest or --data_dir
        return MissingWeights(f"{head}; it is the published {item.filename} ({item.used_by}): "
                              f"'{fetch_command(item, path)}' fetches it there (from {item.url or item.source}){tail}")
    return MissingWeights(f"{head}; it is the published {item.filename} ({item.used_by}), on {item.source} "
                          f"only: download it there and put it at {path} (or train it yourself; see the README){tail}")
