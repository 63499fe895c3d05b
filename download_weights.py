"""Fetch the published weights into ``netWeights/`` and check that each one loads into its network.

    python download_weights.py --list                 # what exists, where it comes from, where it goes
    python download_weights.py --dest netWeights      # download what can be downloaded, verify everything
    python download_weights.py --base_url http://mirror/dir   # fetch every file as <base_url>/<name>

Only some files have a direct source: the SEAM classifier (Google Drive), the ImageNet ResNet-38 MXNet
file (ademxapp, AARNet CloudStor) and the seed-label archive (Google Drive, only with
``--files seed_labels``); gdown fetches them (Google Drive's confirmation page, progress, and a
``.part`` file that the next run resumes). The registry of published files is ``tool/weights.py``. The
affinity nets are published on BaiduYun only; this script says where to put them and verifies them once
they are there. Verification loads each checkpoint into its network with
``tool.checkpoint.load_checkpoint`` (strict for ``.pth``; the ``.params`` backbone must fill every
backbone key) and reports matched / missing / unexpected keys. ``--backbone_width`` builds the networks at a
width multiplier (for small test checkpoints); the published files need the default 1.
"""

from __future__ import annotations

import argparse
import hashlib
import sys
import time
from pathlib import Path

import gdown
import requests

from tool import cli
from tool.checkpoint import load_checkpoint
from tool.weights import CHECKSUM_SOURCES, PUBLISHED, Published, destination

DEFAULT_FILES = [p.key for p in PUBLISHED if p.network is not None and not p.network.startswith("resnet")]
CHUNK = 1 << 20


def print_table(dest: Path, data_dir: Path) -> None:
    for item in PUBLISHED:
        how = "download" if item.downloadable else "manual"
        check = (f"md5 {item.md5} ({CHECKSUM_SOURCES[item.key]})" if item.md5 else
                 f"sha256 {item.sha256_prefix}... ({CHECKSUM_SOURCES[item.key]})" if item.sha256_prefix else
                 "no published checksum (loaded into its network instead)")
        print(f"{item.key:18s} {how:8s} -> {destination(item, dest, data_dir)}\n"
              f"{'':18s} used by: {item.used_by}\n{'':18s} source:  {item.source}\n{'':18s} check:   {check}")


def digests(path: Path) -> dict[str, str]:
    """``{'md5': hex, 'sha256': hex}`` of a file, read once."""
    hashes = {"md5": hashlib.md5(), "sha256": hashlib.sha256()}
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK):
            for h in hashes.values():
                h.update(chunk)
    return {name: h.hexdigest() for name, h in hashes.items()}


def check_digests(item: Published, path: Path, compare: bool = True) -> str:
    """The size and digests of ``path`` as one line; with ``compare``, ``ValueError`` when one differs from a
    published checksum of ``item``."""
    found = digests(path)
    expected = {"md5": item.md5, "sha256": item.sha256 or item.sha256_prefix}
    for name, published in expected.items():
        if compare and published and not found[name].startswith(published):
            raise ValueError(f"{path}: {name} {found[name]} differs from the published {published} "
                             f"({CHECKSUM_SOURCES.get(item.key, 'published checksum')}): a damaged or different file")
    checked = ("matches the published checksum" if compare and any(expected.values())
               else "no published checksum to compare")
    return f"{path.stat().st_size} bytes, md5 {found['md5']}, sha256 {found['sha256']} ({checked})"


def fetch(item: Published, target: Path, timeout: float, base_url: str | None = None, progress: bool = True,
          check: bool = True) -> int:
    """Download ``item`` to ``target`` with gdown (Google Drive by file id, anything else by URL; a mirror
    ``base_url`` serves ``<base_url>/<file name>``) and return its size in bytes.

    gdown writes a ``.part`` file beside ``target`` and resumes it on the next call (HTTP range request);
    the file is renamed to ``target`` only when complete. With ``check``, a file whose checksum differs from
    the published one is deleted and ``ValueError`` raised.
    """
    target.parent.mkdir(parents=True, exist_ok=True)
    source = {"url": f"{base_url.rstrip('/')}/{item.filename}"} if base_url else (
        {"id": item.gdrive_id} if item.gdrive_id else {"url": item.url})
    try:
        gdown.download(**source, output=str(target), quiet=not progress, resume=True, timeout=timeout)
    except (requests.RequestException, gdown.exceptions.FileURLRetrievalError, gdown.exceptions.DownloadError) as err:
        raise OSError(f"{source}: download failed ({err}); a partial file is kept beside {target}: run again to "
                      "resume") from err
    if check:
        try:
            check_digests(item, target)
        except ValueError:
            target.unlink()
            raise
    return target.stat().st_size


def build_network(kind: str, width: float):
    """The network a published checkpoint belongs to (imports here: torch models are only built on use)."""
    import torchvision

    from network import resnet38_aff_gated, resnet38_SEAM, resnet38d

    if kind.startswith("resnet"):  # a torchvision ImageNet ResNet (no width multiplier)
        return getattr(torchvision.models, kind)(weights=None)
    return {"seam": resnet38_SEAM.Net, "aff": resnet38_aff_gated.Net, "backbone": resnet38d.Net}[kind](width)


def verify(item: Published, path: Path, width: float) -> str:
    """Load ``path`` into its network; return a one-line result, raise ``ValueError`` when it does not fit.
    At ``width`` 1 the published checksums are compared too."""
    facts = check_digests(item, path, compare=width == 1.0)
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
    parser = cli.make_parser(__doc__)
    parser.add_argument("--list", action="store_true", help="print the table of published files and exit")
    parser.add_argument("--dest", default="netWeights",
                        help="weights folder (final models go to DEST/final_model)")
    parser.add_argument("--data_dir", default="data", help="folder for the seed-label archive")
    parser.add_argument("--files", nargs="+", default=DEFAULT_FILES, choices=[p.key for p in PUBLISHED],
                        help="which files (default: every A2GNN checkpoint; add seed_labels for the label "
                             "archive, resnet101 / resnet50 for the stage-4 backbones)")
    parser.add_argument("--base_url", default=None,
                        help="mirror: fetch every file as BASE_URL/<file name>, not from the published links")
    parser.add_argument("--force", type=cli.str2bool, default=False,
                        help="download again even if the file exists (True/False)")
    parser.add_argument("--verify", type=cli.str2bool, default=True,
                        help="load each file into its network (True/False)")
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
        try:
            if (args.base_url or item.downloadable) and (args.force or not target.is_file()):
                if args.force and target.is_file():
                    target.unlink()
                print(f"{item.key}: downloading {item.filename}")
                size = fetch(item, target, args.timeout, args.base_url, check=args.backbone_width == 1.0)
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
