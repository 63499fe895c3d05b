"""Stage 3, scribble / point / image-level supervision: per-image A2GNN on seeds, optionally fused with
the random walk of the CAMs (``--rw True``, image and point) (algorithm.md §3).

    python train_infer_A2GNN_others.py --rw False --voc12_root VOC2012 \
        --weights netWeights/final_model/aff_scribble.pth --save_path out/scribble_pred \
        --seed_label_root data/Init_Label/Scribble_SuperPixel
    python train_infer_A2GNN_others.py --rw True --voc12_root VOC2012 \
        --weights netWeights/final_model/aff_point.pth --save_path out/point_pred \
        --seed_label_root data/Init_Label/SEAM_Point --cam_dir out/cam

The default radius 3 is the published one for this script (also used for scribbles, whose affinity
network is trained with radius 4; pass --radius 4 to match it).
"""

import argparse
import sys

from stages.a2gnn import add_a2gnn_arguments, run_a2gnn
from tool import cli
from tool.cli import make_parser, str2bool
from tool.dist import launch
from tool.runner import RunSummary


def get_args_parser() -> argparse.ArgumentParser:
    parser = make_parser(__doc__)
    add_a2gnn_arguments(parser, "others")
    parser.add_argument("--rw", default=False, type=str2bool,
                        help="fuse the random walk of the CAMs (True/False; False means off)")
    parser.add_argument("--cam_dir", default=None, type=str, help="folder of CAM files <id>.npz (for --rw)")
    parser.add_argument("--alpha", default=6.0, type=float, help="background exponent (1 - max cam)^alpha")
    parser.add_argument("--beta", default=8.0, type=float, help="affinity power of the random walk")
    parser.add_argument("--logt", default=6, type=int, help="random walk of 2^logt steps")
    parser.add_argument("--rw_weight", default=3.0, type=float, help="weight of the random-walk scores")
    return parser


def main(args: argparse.Namespace) -> RunSummary:
    return run_a2gnn(args, "others")


if __name__ == "__main__":
    args = get_args_parser().parse_args()
    sys.exit(cli.run(lambda: launch(main, args, args.gpus, args.device)))
