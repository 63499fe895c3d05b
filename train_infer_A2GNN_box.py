"""Stage 3, box supervision: per-image A2GNN on box seeds with the MP loss (algorithm.md §3).

    python train_infer_A2GNN_box.py --voc12_root VOC2012 --BoxXmlpath VOC2012/Annotations \
        --weights netWeights/final_model/aff_box.pth --save_path out/box_pred \
        --seed_label_root data/Init_Label/SEAM_Box
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
    add_a2gnn_arguments(parser, "box")
    parser.add_argument("--BoxXmlpath", default=None, type=str,
                        help="folder of VOC XML box annotations <id>.xml (default: voc12_root/Annotations)")
    parser.add_argument("--box_constraint", default=False, type=str2bool,
                        help="ours (off = published): before and after the dense CRF, allow each pixel only "
                             "background and the classes of the boxes that contain it (True/False)")
    return parser


def main(args: argparse.Namespace) -> RunSummary:
    return run_a2gnn(args, "box")


if __name__ == "__main__":
    args = get_args_parser().parse_args()
    sys.exit(cli.run(lambda: launch(main, args, args.gpus, args.device)))
