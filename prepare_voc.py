"""Prepare a PASCAL VOC 2012 root from the downloaded archives, so every stage and run_pipeline.py read it.

    python prepare_voc.py --voc12_root data/VOCdevkit/VOC2012 --download \\
        --scribbles scribble_annotation.zip --points pascal2012_trainval_main.json

Writes SegmentationClassAug/ (VOC masks, then SBD .mat or prebuilt PNGs), ImageSets/Segmentation/train_aug.txt,
Scribbles/ (ScribbleSup XML rasterised, or PNGs as they are), Points/ (What's-the-Point clicks plus one
background click from each scribble), cls_labels.npz and prepare_voc_report.json, beside the VOC data. A file
that exists is kept, so a rerun finishes what is missing. docs/data.md says where each archive comes from.
Exit status 1 when a source given is unusable (nothing in it could be used).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from tool import cli
from voc12 import downloads
from voc12.prepare import SCRIBBLE_WIDTH, prepare


def get_args_parser() -> argparse.ArgumentParser:
    parser = cli.make_parser(__doc__)
    cli.add_voc12_root(parser)
    parser.add_argument("--sbd", default=None, type=str,
                        help="SBD benchmark.tgz or its unpacked folder, or the prebuilt SegmentationClassAug.zip "
                             "or folder (default: none; with --download the fetched benchmark.tgz)")
    parser.add_argument("--scribbles", default=None, type=str,
                        help="ScribbleSup scribble_annotation.zip or its folder (XML), or a folder / .zip of "
                             "scribble PNGs (default: none)")
    parser.add_argument("--points", default=None, type=str,
                        help="What's-the-Point JSON file, e.g. pascal2012_trainval_main.json (default: none)")
    parser.add_argument("--scribble_width", default=SCRIBBLE_WIDTH, type=int,
                        help="stroke width in pixels of rasterised XML scribbles")
    parser.add_argument("--download", action="store_true",
                        help="fetch VOC2012 trainval and SBD benchmark.tgz (md5-checked) first; --voc12_root "
                             "must then end in VOCdevkit/VOC2012")
    parser.add_argument("--download_dir", default=None, type=str,
                        help="folder for the downloaded archives (default: the folder holding VOCdevkit/)")
    parser.add_argument("--progress", default=True, type=cli.str2bool, help="show progress bars (True/False)")
    return parser


def _existing(flag: str, value: str | None) -> str | None:
    if value is not None and not Path(value).exists():
        raise cli.UserError(f"{flag} {value}: not found; give the downloaded archive or its unpacked folder "
                            "(docs/data.md says where each comes from)")
    return value


def main(args: argparse.Namespace) -> int:
    root = Path(args.voc12_root)
    if args.scribble_width < 1:
        raise cli.UserError(f"--scribble_width {args.scribble_width}: must be at least 1 pixel")
    sbd = _existing("--sbd", args.sbd)
    scribbles = _existing("--scribbles", args.scribbles)
    points = _existing("--points", args.points)
    if args.download:
        try:
            parent = downloads.voc_devkit_parent(root)
        except ValueError as err:
            raise cli.UserError(str(err)) from None
        download_dir = Path(args.download_dir) if args.download_dir else parent
        if not (root / "JPEGImages").is_dir():
            downloads.download_voc(root, download_dir)
        if sbd is None:
            sbd = str(downloads.download_sbd(download_dir))
        print("not downloadable here (no stable address and checksum); get them by hand:")
        for item in downloads.MANUAL:
            print(f"  {item.what}: {item.where}; then pass {item.flag}")
    if not (root / "JPEGImages").is_dir():
        raise cli.UserError(f"--voc12_root {root}: no JPEGImages folder; give the VOC2012 folder of the VOC "
                            "download (.../VOCdevkit/VOC2012), or add --download to fetch it")
    reports = prepare(root, sbd=sbd, scribbles=scribbles, points=points, scribble_width=args.scribble_width,
                      progress=args.progress)
    print("\nsummary (every problem is listed in " + str(root / "prepare_voc_report.json") + "):")
    for report in reports:
        print("\n".join(report.lines()))
    unusable = [r.source for r in reports if r.unusable and r.source != "VOC SegmentationClass"]
    if unusable:
        print(f"unusable: {', '.join(unusable)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(cli.run(lambda: main(get_args_parser().parse_args())))
