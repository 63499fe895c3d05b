"""Generate a VOC2012-style dataset with weak annotations (boxes, scribbles, points) for demos and tests.

    python make_synthetic_voc.py --out data/synthetic_voc --num_train 400 --num_val 100 --seed 0

The output folder is what the stage scripts take as ``--voc12_root``.
"""

from __future__ import annotations

import argparse
import time

from tqdm import tqdm

from voc12.synthetic import generate_sample, image_id, write_lists, write_sample


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", required=True, help="dataset root to write (VOC2012 layout)")
    parser.add_argument("--num_train", type=int, default=400)
    parser.add_argument("--num_val", type=int, default=100)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--min_size", type=int, default=128, help="smallest image side in pixels")
    parser.add_argument("--max_size", type=int, default=256, help="largest image side in pixels")
    return parser


def main(args: argparse.Namespace) -> None:
    if args.num_train < 0 or args.num_val < 0:
        raise SystemExit("--num_train and --num_val must be >= 0")
    start = time.time()
    ids = [image_id(i) for i in range(args.num_train + args.num_val)]
    for index, name in enumerate(tqdm(ids, desc="synthetic VOC", dynamic_ncols=True)):
        write_sample(args.out, name, generate_sample(args.seed, index, args.min_size, args.max_size))
    write_lists(args.out, ids[:args.num_train], ids[args.num_train:])
    print(f"synthetic VOC: wrote {len(ids)} images ({args.num_train} train, {args.num_val} val) "
          f"to {args.out} in {time.time() - start:.1f} s")


if __name__ == "__main__":
    main(get_args_parser().parse_args())
