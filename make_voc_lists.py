"""Write train / val / train_aug id lists for a VOC2012 root (see voc12.lists.make_voc_lists)."""

from __future__ import annotations

import argparse
import sys

from tool import cli
from tool.cli import add_voc12_root, make_parser
from voc12.lists import make_voc_lists


def get_args_parser() -> argparse.ArgumentParser:
    parser = make_parser(__doc__)
    add_voc12_root(parser)
    parser.add_argument("--out_dir", required=True, help="folder for train.txt, val.txt, train_aug.txt")
    return parser


def main(args: argparse.Namespace) -> None:
    lists = make_voc_lists(args.voc12_root, args.out_dir)
    print(", ".join(f"{name}: {len(ids)} ids" for name, ids in lists.items()) + f" -> {args.out_dir}")


if __name__ == "__main__":
    sys.exit(cli.run(lambda: main(get_args_parser().parse_args())))
