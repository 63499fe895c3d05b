"""Stage 4: train a segmentation network on a folder of label maps (algorithm.md §4, **OURS**).

The labels may be pseudo labels, seeds, a baseline or ground truth (255 = ignored). Defaults are the
recipe of ``--arch`` (docs/stage4.md): DeepLab v2's (ResNet-101 from ImageNet, batch 10, 20,000 iterations,
lr 2.5e-4 (head ×10), weight decay 5e-4, crop 321) or, for pspnet_*, hszhao/semseg's VOC2012 one (batch 16,
33,050 iterations = 50 epochs of train_aug, lr 0.01 (new layers ×10), weight decay 1e-4, crop 473, auxiliary
loss weight 0.4); both SGD momentum 0.9, poly decay 0.9, random scale 0.5-2.0, flip.

    python train_seg.py --voc12_root $VOC --train_list train_aug.txt --label_dir out/box_pred \\
        --backbone_weights netWeights/resnet101-63fe2227.pth --session_name deeplabv2_box --save_dir netWeights
    torchrun --nproc_per_node=4 train_seg.py ...same flags...   # --batch_size stays the global batch

Plain ``python`` trains on every visible GPU (one DistributedDataParallel worker each, started by the
script, as torchrun would; ``--gpus K`` limits it).

The loop, its files (``{session_name}.pth``, ``{session_name}_state.pth`` for ``--resume True``,
``{session_name}_log.jsonl``) and the resume rules are those of ``tool/trainer.py``.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import torch
from torch import nn

from network.deeplab import ARCHITECTURES, TORCHVISION_FILES, SegNet, build_seg_net
from tool import cli
from tool import dist as tdist
from tool.checkpoint import load_checkpoint
from tool.cli import DEVICE_HELP, HelpFormatter, add_voc12_root, default_device, str2bool
from tool.segmentation import RecipeArgumentParser, seg_training_loss
from tool.trainer import add_training_args, run_files, train
from tool.weights import missing_weights
from voc12 import NUM_CLASSES
from voc12.data import SegTrainDataset
from voc12.lists import read_list
from voc12.preflight import preflight_training

# flags whose change alters the result: a resume must repeat them (tool/trainer.py)
SETTINGS = ("arch", "backbone_width", "backbone_weights", "train_list", "label_dir", "crop_size", "scale_range",
            "batch_size", "max_iters", "lr", "wt_dec", "momentum", "optimizer", "seed", "num_workers", "amp")


def default_backbone_weights(arch: str) -> str:
    """Where ``--backbone_weights`` is looked for by default: ``netWeights/<the file for arch>``."""
    if arch == "deeplabv2_resnet38":
        return "netWeights/ilsvrc-cls_rna-a1_cls1000_ep-0001.params"
    return f"netWeights/{TORCHVISION_FILES[arch.rsplit('_', 1)[1]]}"


def get_args_parser() -> argparse.ArgumentParser:
    p = RecipeArgumentParser(description=__doc__, formatter_class=HelpFormatter)  # defaults of --arch filled
    add_voc12_root(p)
    p.add_argument("--train_list", default="train_aug.txt", type=str,
                   help="id list: a path, or a name under VOC12_ROOT/ImageSets/Segmentation")
    p.add_argument("--label_dir", required=True, type=str,
                   help="folder of <id>.png label maps (0..20, 255 = ignore): pseudo labels, seeds, ...")
    p.add_argument("--arch", default="deeplabv2_resnet101", choices=ARCHITECTURES,
                   help="network (pspnet_*: PSPNet with its auxiliary loss; docs/stage4.md)")
    p.add_argument("--backbone_weights", default=None, type=str,
                   help="local ImageNet file of the backbone (torchvision ResNet .pth; for deeplabv2_resnet38 "
                        "a SEAM classifier .pth or the MXNet .params), or 'none' for random init; default "
                        "netWeights/<resnet101-63fe2227.pth | resnet50-0676ba61.pth | "
                        "ilsvrc-cls_rna-a1_cls1000_ep-0001.params>. Nothing is downloaded")
    p.add_argument("--backbone_width", default=1.0, type=float,
                   help="ResNet-38 channel multiplier (deeplabv2_resnet38 only; 1 = published)")
    p.add_argument("--max_iters", default=None, type=int,
                   help="training steps (default: 20000; pspnet_*: 33050)")
    p.add_argument("--batch_size", default=None, type=int,
                   help="global batch over all processes, in images (default: 10; pspnet_*: 16)")
    p.add_argument("--crop_size", default=None, type=int,
                   help="square training crop, in pixels (default: 321; pspnet_*: 473)")
    p.add_argument("--scale_range", default=(0.5, 2.0), type=float, nargs=2, metavar=("MIN", "MAX"),
                   help="random scale factor range")
    p.add_argument("--lr", default=None, type=float,
                   help="base lr of the backbone (head x10, biases x2; pspnet_*: new layers x10), poly decay "
                        "power 0.9 (default: 2.5e-4; pspnet_*: 0.01; lower it on pseudo labels, docs/stage4.md)")
    p.add_argument("--wt_dec", default=None, type=float,
                   help="weight decay (weights only; pspnet_*: every parameter) (default: 5e-4; pspnet_*: 1e-4)")
    p.add_argument("--momentum", default=0.9, type=float, help="SGD momentum")
    p.add_argument("--amp", default=False, type=str2bool, help="float16 mixed precision (CUDA only)")
    p.add_argument("--num_workers", default=4, type=int, help="DataLoader workers per process")
    p.add_argument("--session_name", default="deeplabv2", type=str,
                   help="file name stem of the checkpoint, resume state and log in --save_dir")
    p.add_argument("--save_dir", default="netWeights", type=str,
                   help="folder of {session_name}.pth, {session_name}_state.pth and {session_name}_log.jsonl")
    p.add_argument("--device", default=default_device(), type=str, help=DEVICE_HELP)
    p.add_argument("--seed", default=0, type=int, help="torch random seed (integer)")
    add_training_args(p)
    return tdist.add_gpus_argument(p)


def load_backbone(net: SegNet, path: str | os.PathLike) -> None:
    """Fill every backbone tensor of ``net`` from ``path`` (counts printed; ``ValueError`` otherwise).

    A torchvision file may only add its ``fc`` (and BatchNorm counters); a ResNet-38 file may hold heads.
    """
    if not Path(path).is_file():
        raise missing_weights(path, "--backbone_weights", "or pass --backbone_weights none")
    report = load_checkpoint(net.backbone, path, strict=False)
    unfilled = report.missing + report.reshaped
    if not net.classifier_keys:
        unfilled += [k for k in report.unexpected if not (k.startswith("fc.") or k.endswith("num_batches_tracked"))]
    if unfilled:
        raise cli.WrongFileError(f"--backbone_weights {path}: not a {net.backbone_name} file for this network: "
                                 f"{len(unfilled)} tensors missing, extra or of another shape (wrong file or "
                                 f"--backbone_width?), e.g. {unfilled[:4]}")


def seg_objective(model: nn.Module, batch: dict, epoch: int) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Cross entropy of one batch, 255 ignored (PSPNet: plus 0.4 × its auxiliary head's)."""
    return seg_training_loss(model(batch["image"]), batch["label"])


def main(args: argparse.Namespace) -> list[dict[str, float]]:
    """Train; returns the loss of every step this run took (averaged over processes)."""
    with tdist.process_group(args.device) as device:
        if args.backbone_weights is None:
            args.backbone_weights = default_backbone_weights(args.arch)
        ids = read_list(args.train_list, args.voc12_root)
        # every image and label map checked before step 1 (a colour PNG as a label names itself, not a worker)
        ids = preflight_training(ids, args.voc12_root, run_files(args), args.skip_bad, label_dir=args.label_dir,
                                 verbose=tdist.is_main_process())
        dataset = SegTrainDataset(ids, args.voc12_root, args.label_dir, crop_size=args.crop_size,
                                  scale_range=tuple(args.scale_range))
        torch.manual_seed(args.seed)
        net = build_seg_net(args.arch, NUM_CLASSES, args.backbone_width)
        if not args.resume and args.backbone_weights.lower() != "none":
            load_backbone(net, args.backbone_weights)
        result = train(net, seg_objective, dataset, args, device, SETTINGS, max_steps=args.max_iters, amp=args.amp)
    return result.steps


if __name__ == "__main__":
    args = get_args_parser().parse_args()
    sys.exit(cli.run(lambda: tdist.launch(main, args, args.gpus, args.device)))
