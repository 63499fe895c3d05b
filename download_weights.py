"""Fetch the published weights into ``netWeights/`` and check that each one loads into its network.

    python download_weights.py --list                 # what exists, where it comes from, where it goes
    python download_weights.py --dest netWeights      # download what can be downloaded, verify everything
    python download_weights.py --base_url http://mirror/dir   # fetch every file as <base_url>/<name>

Only some files have a direct source: the SEAM classifier (Google Drive), the ImageNet ResNet-38 MXNet
file (ademxapp, AARNet CloudStor) and the seed-label archive (Google Drive, only with
``--files seed_labels``). The affinity nets are published on BaiduYun only; this script says where to put
them and verifies them once they are there. Verification loads each checkpoint into its network with
``tool.checkpoint.load_checkpoint`` (strict for ``.pth``; the ``.params`` backbone must fill every
backbone key) and reports matched / missing / unexpected keys. ``--backbone_width`` builds the networks at a
width multiplier (for small test checkpoints); the published files need the default 1.
"""

from __future__ import annotations

import argparse
import hashlib
import html
import http.client
import http.cookiejar
import os
import re
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from tqdm import tqdm

from tool import cli
from tool.checkpoint import load_checkpoint
from tool.cli import make_parser, str2bool

BAIDU_WEIGHTS = "BaiduYun https://pan.baidu.com/s/1Y7K8o6FEIqdhAOTKgcA39g (access code: cvfg)"
GDRIVE_DOWNLOAD = "https://drive.google.com/uc?export=download&id={}"
CHUNK = 1 << 20


@dataclass(frozen=True)
class Published:
    """One published file: where it goes, what it is for, where it comes from."""

    key: str  # name for --files
    filename: str
    folder: str  # "weights", "final_model" (below --dest) or "data" (--data_dir)
    network: str | None  # "seam", "aff", "backbone" or None (not a checkpoint)
    used_by: str
    source: str
    url: str | None = None  # direct download; None: manual download only
    md5: str | None = None  # only where a published checksum exists (see CHECKSUM_SOURCES)


PUBLISHED = (
    Published("resnet38_SEAM", "resnet38_SEAM.pth", "weights", "seam",
              "stage 1 CAMs: infer_SEAM.py --weights",
              "SEAM Google Drive https://drive.google.com/file/d/1jWsV5Yev-PwKgvvtUM3GnY0ogb50-qKa/view",
              GDRIVE_DOWNLOAD.format("1jWsV5Yev-PwKgvvtUM3GnY0ogb50-qKa")),
    Published("ilsvrc", "ilsvrc-cls_rna-a1_cls1000_ep-0001.params", "weights", "backbone",
              "stage 1 training init: train_SEAM.py --weights",
              "ademxapp Model A1 (github.com/itijyou/ademxapp), AARNet CloudStor share NOPhJ247fhVDnZH "
              "(CloudStor has been retired; the link may be dead)",
              "https://cloudstor.aarnet.edu.au/plus/index.php/s/NOPhJ247fhVDnZH/download",
              md5="ff21f45d6bf03284100dcbec571edfad"),
    Published("resnet38_aff_SEAM", "resnet38_aff_SEAM.pth", "weights", "aff",
              "stage 2 init: train_aff_gated_aff.py --weights", BAIDU_WEIGHTS),
    *(Published(f"aff_{sup}", f"aff_{sup}.pth", "final_model", "aff",
                f"stage 3 ({sup}): train_infer_A2GNN_{'box' if sup == 'box' else 'others'}.py --weights",
                BAIDU_WEIGHTS)
      for sup in ("box", "scribble", "image", "point")),
    Published("seed_labels", "seed_labels.zip", "data", None,
              "stage 2/3 seed labels: unpack so that data/Init_Label/<SEAM_Box, ...> exists",
              "Google Drive https://drive.google.com/file/d/1d6nntO4kfgKN45o37GjTYWdu6eLF8RXc/view",
              GDRIVE_DOWNLOAD.format("1d6nntO4kfgKN45o37GjTYWdu6eLF8RXc")),
)
DEFAULT_FILES = [p.key for p in PUBLISHED if p.network is not None]
# Where each md5 above comes from. The other files have no published checksum or size (SEAM, A2GNN and the
# BaiduYun shares state none), so none is checked: the script prints the md5 and size of each file it
# verifies, for you to record, and checks them by loading them strictly into their network.
CHECKSUM_SOURCES = {"ilsvrc": "github.com/itijyou/ademxapp models/checksum.md5"}


def destination(item: Published, dest: Path, data_dir: Path) -> Path:
    folder = {"weights": dest, "final_model": dest / "final_model", "data": data_dir}[item.folder]
    return folder / item.filename


def print_table(dest: Path, data_dir: Path) -> None:
    for item in PUBLISHED:
        how = "download" if item.url else "manual"
        check = (f"md5 {item.md5} ({CHECKSUM_SOURCES[item.key]})" if item.md5
                 else "no published checksum (loaded into its network instead)")
        print(f"{item.key:18s} {how:8s} -> {destination(item, dest, data_dir)}\n"
              f"{'':18s} used by: {item.used_by}\n{'':18s} source:  {item.source}\n{'':18s} check:   {check}")


def _google_drive_confirm_url(page: str, url: str, cookies: http.cookiejar.CookieJar) -> str | None:
    """The follow-up URL of Google Drive's "can't scan this file for viruses" page, if it is one."""
    form = re.search(r'<form[^>]*id="download-form"[^>]*action="([^"]+)"', page)
    if form:
        fields = dict(re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)"', page))
        return html.unescape(form.group(1)) + "?" + urllib.parse.urlencode(fields)
    token = re.search(r"confirm=([0-9A-Za-z_-]+)", page)
    token = token.group(1) if token else next(
        (c.value for c in cookies if c.name.startswith("download_warning")), None)
    return f"{url}&confirm={token}" if token else None


def partial_path(target: Path) -> Path:
    """Where an unfinished download of ``target`` is kept (and resumed from): ``<target>.part``."""
    return target.with_name(target.name + ".part")


def _open(opener: urllib.request.OpenerDirector, url: str, offset: int, timeout: float):
    """Open ``url`` asking for the bytes from ``offset`` on; ``None`` if the server says none are left."""
    headers = {"Range": f"bytes={offset}-"} if offset else {}
    try:
        return opener.open(urllib.request.Request(url, headers=headers), timeout=timeout)
    except urllib.error.HTTPError as err:
        if err.code == 416 and offset:  # range not satisfiable: the partial file is already complete
            return None
        raise


def fetch(url: str, target: Path, timeout: float, md5: str | None = None, progress: bool = True) -> int:
    """Download ``url`` to ``target``; return its size in bytes.

    Bytes go to ``<target>.part`` with a progress bar; a ``.part`` left by an interrupted run is resumed
    with an HTTP range request (a server that ignores ranges sends the whole file, which then replaces
    it). Only a complete file, whose md5 matches ``md5`` when one is given, is renamed to ``target``;
    a mismatching download is deleted. Follows Google Drive's confirmation page for large files (a
    ``download-form`` or a ``confirm=`` token); any other HTML answer raises ``OSError``.
    """
    part = partial_path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    offset = part.stat().st_size if part.is_file() else 0
    cookies = http.cookiejar.CookieJar()
    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(cookies))
    response = _open(opener, url, offset, timeout)
    if response is not None and response.headers.get_content_type() == "text/html":
        page = response.read(2_000_000).decode("utf-8", "replace")
        follow = _google_drive_confirm_url(page, url, cookies)
        if follow is None:
            raise OSError(f"{url} answered with an HTML page, not the file (quota, login or a moved link)")
        response = _open(opener, follow, offset, timeout)
        if response is not None and response.headers.get_content_type() == "text/html":
            raise OSError(f"{url}: the confirmation page did not lead to the file (Drive quota?)")
    total = None
    if response is not None:
        if response.status != 206:  # the whole file: start over
            offset = 0
        length = response.headers.get("Content-Length")
        total = offset + int(length) if length and length.isdigit() else None
        bar = tqdm(total=total, initial=offset, unit="B", unit_scale=True, unit_divisor=1024,
                   desc=target.name, disable=not progress, dynamic_ncols=True)
        try:
            with response, bar, open(part, "ab" if offset else "wb") as f:
                while chunk := response.read(CHUNK):
                    f.write(chunk)
                    bar.update(len(chunk))
        except (http.client.HTTPException, OSError) as err:
            raise OSError(f"{url}: download interrupted at {part.stat().st_size} bytes ({err}); the partial "
                          f"file {part} is kept: run again to resume") from err
    size = part.stat().st_size
    if total is not None and size != total:
        raise OSError(f"{url}: got {size} of {total} bytes; the partial file {part} is kept: run again to "
                      "resume")
    if md5 is not None and (digest := md5sum(part)) != md5:
        part.unlink()
        raise ValueError(f"{url}: md5 {digest} differs from the published {md5}; the download was deleted")
    os.replace(part, target)
    return size


def md5sum(path: Path) -> str:
    digest = hashlib.md5()
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def build_network(kind: str, width: float):
    """The network a published checkpoint belongs to (imports here: torch models are only built on use)."""
    from network import resnet38_aff_gated, resnet38_SEAM, resnet38d

    return {"seam": resnet38_SEAM.Net, "aff": resnet38_aff_gated.Net, "backbone": resnet38d.Net}[kind](width)


def verify(item: Published, path: Path, width: float) -> str:
    """Load ``path`` into its network; return a one-line result, raise ``ValueError`` when it does not fit."""
    digest = md5sum(path)
    if item.md5 and width == 1.0 and digest != item.md5:
        raise ValueError(f"{path}: md5 {digest} differs from the published {item.md5} "
                         f"({CHECKSUM_SOURCES[item.key]}): a damaged or different file")
    checked = "matches the published md5" if item.md5 and width == 1.0 else "no published md5 to compare"
    facts = f"{path.stat().st_size} bytes, md5 {digest} ({checked})"
    if item.network is None:
        return f"{facts}; not a checkpoint, not loaded"
    model = build_network(item.network, width)
    report = load_checkpoint(model, path, strict=item.network != "backbone")
    if report.missing:
        raise ValueError(f"{path}: {len(report.missing)} backbone keys missing, e.g. {report.missing[:4]}")
    return f"{report.summary()} in {type(model).__module__}.Net(width={width}); {facts}"


def _absolute(path: Path) -> str:
    return "" if path.is_absolute() else f" ({path.resolve()})"


def get_args_parser() -> argparse.ArgumentParser:
    parser = make_parser(__doc__)
    parser.add_argument("--list", action="store_true", help="print the table of published files and exit")
    parser.add_argument("--dest", default="netWeights",
                        help="weights folder (final models go to DEST/final_model)")
    parser.add_argument("--data_dir", default="data", help="folder for the seed-label archive")
    parser.add_argument("--files", nargs="+", default=DEFAULT_FILES, choices=[p.key for p in PUBLISHED],
                        help="which files (default: all checkpoints; add seed_labels for the label archive)")
    parser.add_argument("--base_url", default=None,
                        help="mirror: fetch every file as BASE_URL/<file name>, not from the published links")
    parser.add_argument("--force", type=str2bool, default=False,
                        help="download again even if the file exists")
    parser.add_argument("--verify", type=str2bool, default=True, help="load each file into its network")
    parser.add_argument("--backbone_width", "--width", type=float, default=1.0,
                        help="width multiplier of the networks used for verification; the published "
                             "files need 1 (their checksums are only checked at 1)")
    parser.add_argument("--timeout", type=float, default=60.0,
                        help="seconds before a stalled connection fails")
    return parser


def main(args: argparse.Namespace) -> int:
    """Download and verify; return the exit status (1 if a download or a verification failed)."""
    dest, data_dir = Path(args.dest), Path(args.data_dir)
    if args.list:
        print_table(dest, data_dir)
        return 0
    start, failed, manual, ok = time.time(), [], [], []
    for item in (p for p in PUBLISHED if p.key in args.files):
        target = destination(item, dest, data_dir)
        url = f"{args.base_url.rstrip('/')}/{item.filename}" if args.base_url else item.url
        try:
            if url and (args.force or not target.is_file()):
                resume = partial_path(target).is_file()
                print(f"{item.key}: {'resuming' if resume else 'downloading'} {url}")
                md5 = item.md5 if args.backbone_width == 1.0 else None
                size = fetch(url, target, args.timeout, md5=md5)
                print(f"{item.key}: {size} bytes -> {target}")
            if not target.is_file():
                manual.append(item)
                print(f"{item.key}: not present; get {item.filename} from {item.source} and place it at "
                      f"{target}{_absolute(target)}")
                continue
            if args.verify:
                print(f"{item.key}: verified: {verify(item, target, args.backbone_width)}")
            ok.append(item.key)
        except (OSError, ValueError, RuntimeError) as err:
            failed.append(item.key)
            print(f"{item.key}: FAILED: {err}\n{item.key}: to do it by hand, get {item.filename} from "
                  f"{item.source} and place it at {target}{_absolute(target)}", file=sys.stderr)
    print(f"done: {len(ok)} ok, {len(manual)} to place by hand, {len(failed)} failed "
          f"({time.time() - start:.1f} s)" + (f"; failed: {', '.join(failed)}" if failed else ""))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(cli.run(lambda: main(get_args_parser().parse_args())))
