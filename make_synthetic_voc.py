"""Generate a VOC2012-style dataset with weak annotations (boxes, scribbles, points) for demos and tests.

    python make_synthetic_voc.py --out data/synthetic_voc --num_train_aug 600 --num_train 100 --num_val 200

The output folder is what the stage scripts take as ``--voc12_root``. As on VOC, the ``train_aug`` list
(classifier and affinity training) holds the ``train`` list (pseudo labels and their scores) and ``val``
is disjoint from both (held-out scores: the classifier's mAP, the segmentation network).
"""

from __future__ import annotations

import argparse
import sys
import time

from tqdm import tqdm

from tool import cli
from tool.cli import make_parser
from voc12.synthetic import generate_sample, image_id, write_lists, write_sample


def get_args_parser() -> argparse.ArgumentParser:
    parser = make_parser(__doc__)
    parser.add_argument("--out", required=True, help="dataset root to write (VOC2012 layout)")
    parser.add_argument("--num_train", type=int, default=100, help="images in the train list")
    parser.add_argument("--num_train_aug", type=int, default=None,
                        help="images in the train_aug list, the first --num_train of them the train list "
                             "(default: --num_train, train_aug = train)")
    parser.add_argument("--num_val", type=int, default=200, help="images in the val list")
    parser.add_argument("--seed", type=int, default=0, help="dataset seed: same seed, same bytes")
    parser.add_argument("--min_size", type=int, default=128, help="smallest image side in pixels")
    parser.add_argument("--max_size", type=int, default=256, help="largest image side in pixels")
    return parser


def main(args: argparse.Namespace) -> None:
    num_aug = args.num_train if args.num_train_aug is None else args.num_train_aug
    if min(args.num_train, args.num_val, num_aug) < 0:
        raise cli.UserError("--num_train, --num_train_aug and --num_val must be >= 0")
    if num_aug < args.num_train:
        raise cli.UserError(f"--num_train_aug {num_aug} < --num_train {args.num_train}: train_aug holds train")
    start = time.time()
    ids = [image_id(i) for i in range(num_aug + args.num_val)]
    for index, name in enumerate(tqdm(ids, desc="synthetic VOC", dynamic_ncols=True)):
        write_sample(args.out, name, generate_sample(args.seed, index, args.min_size, args.max_size))
    write_lists(args.out, ids[:args.num_train], ids[num_aug:], train_aug_ids=ids[:num_aug])
    print(f"synthetic VOC: wrote {len(ids)} images ({num_aug} train_aug, the first {args.num_train} of "
          f"them train; {args.num_val} val) to {args.out} in {time.time() - start:.1f} s")


if __name__ == "__main__":
    sys.exit(cli.run(lambda: main(get_args_parser().parse_args())))
