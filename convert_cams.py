"""Convert the published SEAM / A2GNN CAM files (``<id>.npy``) into this repository's ``<id>.npz``.

    python convert_cams.py --legacy_npy --in_dir /path/published_cams --out_dir data/cams

The published CAMs (the ~11 GB download of the upstream README, or ``infer_SEAM.py --out_cam`` of the
upstream code) are ``np.save``-d Python dicts ``{class index 0..19: (H, W) float map}``, i.e. pickles.
**Reading a pickle can run arbitrary code**: only convert files from a source you trust. Nothing here
unpickles unless ``--legacy_npy`` (or ``--legacy_npy True``) is given; every other command of this
repository reads only the ``.npz`` files written here (``classes`` (K,) in 1..20 and ``cams``
(K, H, W) float32, no pickle), e.g. ``train_infer_A2GNN_others.py --rw True --cam_dir data/cams``.

Per image, resumable (existing outputs are skipped, files are written atomically), failures are named and
listed at the end; ``--infer_list`` restricts the conversion to a list, else every ``*.npy`` is converted.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from tool import cli
from tool.cam import load_cams, save_cams
from tool.cli import LIST_NAMES_HELP, make_parser, str2bool
from tool.runner import RunSummary, run_per_image
from voc12.lists import read_list


def get_args_parser() -> argparse.ArgumentParser:
    parser = make_parser(__doc__)
    parser.add_argument("--in_dir", required=True, type=str, help="folder of published <id>.npy CAM dicts")
    parser.add_argument("--out_dir", default="data/cams", type=str, help="folder for the <id>.npz CAM files")
    parser.add_argument("--legacy_npy", default=False, type=str2bool, nargs="?", const=True,
                        help="given (or True): unpickle the .npy dicts (trusted sources only: a pickle can run code); "
                             "required, nothing is read without it")
    parser.add_argument("--infer_list", default=None, type=str,
                        help=f"images to convert (default: every *.npy in --in_dir): {LIST_NAMES_HELP}")
    parser.add_argument("--voc12_root", default=None, type=str,
                        help="VOC2012 folder, only to look up an --infer_list name in its ImageSets/Segmentation")
    parser.add_argument("--shard", default=None, type=str, help="i/n: process ids[i::n]")
    parser.add_argument("--overwrite", default=False, type=str2bool, help="convert files whose output exists")
    return parser


def main(args: argparse.Namespace) -> RunSummary:
    if not args.legacy_npy:
        raise cli.UserError("convert_cams.py reads pickled .npy files, which can run code when loaded: pass "
                            "--legacy_npy to confirm that the files come from a source you trust")
    in_dir, out_dir = Path(args.in_dir), Path(args.out_dir)
    if not in_dir.is_dir():
        raise cli.UserError(f"--in_dir not found: {in_dir}")
    ids = (read_list(args.infer_list, args.voc12_root) if args.infer_list
           else sorted(p.stem for p in in_dir.glob("*.npy")))
    if not ids:
        raise cli.UserError(f"--in_dir {in_dir}: no .npy files")

    def process(image_id: str) -> None:
        classes, cams = load_cams(in_dir / f"{image_id}.npy", legacy_npy=True)
        save_cams(out_dir / f"{image_id}.npz", classes, cams)

    return run_per_image(ids, process, lambda image_id: [out_dir / f"{image_id}.npz"], desc="convert_cams",
                         shard=args.shard, overwrite=args.overwrite)


if __name__ == "__main__":
    sys.exit(cli.run(lambda: main(get_args_parser().parse_args())))
