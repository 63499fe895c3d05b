"""Stage 1: train the SEAM classifier (algorithm.md §1.2) on image-level labels.

``python train_SEAM.py --voc12_root VOC2012 ...`` trains on every visible GPU (one DistributedDataParallel
worker each, started by the script; ``--gpus K`` limits it), on one CPU process with ``--device cpu``;
``torchrun --nproc_per_node 4 train_SEAM.py ...`` does the same under torchrun (``--batch_size`` stays the
global batch).
The loop, its files (``{session_name}.pth``, ``{session_name}_state.pth`` for ``--resume True``,
``{session_name}_log.jsonl``) and the resume rules are those of ``tool/trainer.py``.
"""

from __future__ import annotations

import argparse
import functools
import importlib
import sys

import torch
from torch import nn

from tool import cli
from tool.checkpoint import load_checkpoint
from tool.cli import DEVICE_HELP, add_id_list, add_voc12_root, default_device, make_parser
from tool.dist import add_gpus_argument, get_rank, is_main_process, launch, process_group
from tool.seam_losses import TwoViews, classification_step_loss, seam_step_losses
from tool.trainer import add_training_args, run_files, train
from voc12.data import JITTER, ClsTrainDataset
from voc12.lists import read_list
from voc12.make_cls_labels import image_labels
from voc12.preflight import preflight_training

LOSS_NAMES = ("loss", "cls", "rvmin", "er", "ecr")
# flags whose change alters the result: a resume must repeat them (tool/trainer.py)
SETTINGS = ("network", "backbone_width", "weights", "train_list", "cls_labels", "crop_size", "color_jitter",
            "resize_long", "batch_size", "max_epoches", "cls_only_epochs", "pcm_only_epochs", "lr", "wt_dec",
            "momentum", "optimizer", "seed", "num_workers")


def get_args_parser() -> argparse.ArgumentParser:
    parser = make_parser(__doc__)
    parser.add_argument("--batch_size", default=8, type=int, help="global batch, split over torchrun ranks")
    parser.add_argument("--max_epoches", default=8, type=int, help="training epochs (passes over --train_list)")
    parser.add_argument("--network", default="network.resnet38_SEAM", type=str, help="module that defines Net")
    parser.add_argument("--lr", default=0.01, type=float,
                        help="base learning rate of the backbone (new layers x10), poly-decayed to 0")
    parser.add_argument("--num_workers", default=8, type=int, help="DataLoader workers per process")
    parser.add_argument("--wt_dec", default=5e-4, type=float, help="weight decay (L2 factor, weights only)")
    parser.add_argument("--momentum", default=5e-4, type=float,
                        help="SGD momentum; 5e-4 reproduces the published optimizer (weight decay passed "
                             "into the momentum slot)")
    parser.add_argument("--cls_only_epochs", default=0, type=int,
                        help="OURS: train on the classification loss of the batch itself alone (no 0.3x view) "
                             "for this many first epochs (a warm-up for --weights none); 0 = every SEAM loss "
                             "from the start (published)")
    parser.add_argument("--pcm_only_epochs", default=0, type=int,
                        help="OURS: train the PCM head alone for this many last epochs (its two losses, rvmin "
                             "+ ECR; backbone and classifier in eval mode, unchanged, BatchNorm statistics "
                             "included); 0 = none (published)")
    add_id_list(parser, "--train_list", what="images to train on")
    parser.add_argument("--session_name", default="resnet38_SEAM", type=str,
                        help="file name stem of the checkpoint, resume state and log in --save_dir")
    parser.add_argument("--crop_size", default=448, type=int, help="square training crop (pixels)")
    parser.add_argument("--color_jitter", default=list(JITTER), type=float, nargs=4,
                        metavar=("BRIGHTNESS", "CONTRAST", "SATURATION", "HUE"),
                        help="colour jitter strengths (hue as a fraction of the colour circle); 0 0 0 0 = off")
    parser.add_argument("--resize_long", default=(448, 768), type=int, nargs=2, metavar=("MIN", "MAX"),
                        help="random long side before cropping")
    parser.add_argument("--weights", default="netWeights/ilsvrc-cls_rna-a1_cls1000_ep-0001.params", type=str,
                        help="initial weights: MXNet ImageNet .params, a .pth state dict, or 'none': "
                             "train from scratch (Net(from_scratch=True): trainable batch-statistics "
                             "BatchNorm, nothing frozen, He init; use a real --momentum such as 0.9)")
    parser.add_argument("--backbone_width", default=1.0, type=float, help="backbone channel multiplier")
    add_voc12_root(parser)
    parser.add_argument("--cls_labels", default=None, type=str,
                        help="image labels (.npz of voc12/make_cls_labels.py); default: read the XML files")
    parser.add_argument("--save_dir", default="netWeights", type=str,
                        help="writes <session_name>.pth (weights), <session_name>_state.pth (resume) and "
                             "<session_name>_log.jsonl (loss curve)")
    parser.add_argument("--device", default=default_device(), type=str, help=DEVICE_HELP)
    parser.add_argument("--seed", default=0, type=int, help="torch random seed (integer; rank r uses seed + r)")
    add_training_args(parser)
    return add_gpus_argument(parser)


def seam_objective(model: nn.Module, batch: dict, epoch: int, cls_only_epochs: int, pcm_from_epoch: int
                   ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """SEAM losses of one batch (algorithm.md §1.2). Before ``cls_only_epochs``: the classification loss of
    the batch itself alone (no second view: at the small crops of a CPU run the 0.3x view is too small to
    tell classes apart by their parts). From ``pcm_from_epoch`` on: the PCM head alone, the network in eval
    mode (the 0.3x view would otherwise shift the BatchNorm statistics of a from-scratch backbone); rvmin
    and ECR are the losses whose gradient reaches the PCM head only (its inputs are detached)."""
    if epoch < cls_only_epochs:
        cls = classification_step_loss(model, batch["image"], batch["label"])
        return cls, {"loss": cls, "cls": cls}
    pcm_only = epoch >= pcm_from_epoch
    if pcm_only:
        model.eval()
    losses = seam_step_losses(model, batch["image"], batch["label"])
    loss = losses["rvmin"] + losses["ecr"] if pcm_only else losses["loss"]
    return loss, {**{k: losses[k] for k in LOSS_NAMES}, "loss": loss}


def main(args: argparse.Namespace) -> list[dict[str, float]]:
    """Train; return the per-epoch mean losses (averaged over processes) of the epochs run."""
    if args.cls_only_epochs + args.pcm_only_epochs > args.max_epoches:
        raise cli.UserError(f"--cls_only_epochs {args.cls_only_epochs} + --pcm_only_epochs {args.pcm_only_epochs} "
                            f"exceed --max_epoches {args.max_epoches}")
    with process_group(args.device) as device:
        torch.manual_seed(args.seed + get_rank())  # DDP copies rank 0's initial weights
        ids = read_list(args.train_list, args.voc12_root)
        ids = preflight_training(ids, args.voc12_root, run_files(args),
                                 args.skip_bad, read_xml=args.cls_labels is None, cls_labels=args.cls_labels,
                                 verbose=is_main_process())
        labels = image_labels(args.voc12_root, ids, args.cls_labels)
        dataset = ClsTrainDataset(ids, args.voc12_root, labels, crop_size=args.crop_size,
                                  resize_long=tuple(args.resize_long), jitter=tuple(args.color_jitter))
        from_scratch = args.weights.lower() == "none"
        net = importlib.import_module(args.network).Net(width=args.backbone_width, from_scratch=from_scratch)
        if not (from_scratch or args.resume):
            load_checkpoint(net, args.weights, strict=False)
        objective = functools.partial(seam_objective, cls_only_epochs=args.cls_only_epochs,
                                      pcm_from_epoch=args.max_epoches - args.pcm_only_epochs)
        # the PCM head gets no gradient from the classification loss alone, the rest none in the PCM epochs
        result = train(net, objective, dataset, args, device, SETTINGS, wrap=TwoViews,
                       find_unused_parameters=args.cls_only_epochs + args.pcm_only_epochs > 0)
    return result.epochs


if __name__ == "__main__":
    args = get_args_parser().parse_args()
    sys.exit(cli.run(lambda: launch(main, args, args.gpus, args.device)))
