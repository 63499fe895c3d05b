"""Stage 4 instances: train Mask R-CNN on a COCO instances file (docs/instances.md, **OURS**).

The file may hold instance pseudo labels (``make_instance_labels.py`` on A2GNN's box pseudo labels), a
baseline (GrabCut per box, box fill) or the ground truth; images are read from ``<voc12_root>/JPEGImages``.
Defaults are Detectron2's PASCAL VOC Mask R-CNN recipe: ResNet-50-FPN from ImageNet, batch 16, lr 0.02,
18,000 iterations, weight decay 1e-4, momentum 0.9, shorter side drawn from 480..800 (longer at most 1333),
horizontal flip; the lr decays poly (power 0.9) instead of in steps, without warm-up.

    python train_inst.py --voc12_root $VOC --train_json out/instances_box.json \\
        --backbone_weights netWeights/resnet50-0676ba61.pth --session_name maskrcnn_box --save_dir netWeights
    torchrun --nproc_per_node=4 train_inst.py ...same flags...   # --batch_size stays the global batch

Plain ``python`` trains on every visible GPU (``--gpus K`` limits it). The loop, its files
(``{session_name}.pth``, ``{session_name}_state.pth`` for ``--resume True``, ``{session_name}_log.jsonl``)
and the resume rules are those of ``tool/trainer.py``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
from torch import nn

from network.maskrcnn import InstanceNet
from stages.instances import add_model_args, build_from_args
from tool import cli
from tool import dist as tdist
from tool.checkpoint import load_checkpoint
from tool.trainer import add_training_args, run_files, train
from voc12.instances import InstanceTrainDataset, read_coco, split_batch
from voc12.preflight import preflight_training

# flags whose change alters the result: a resume must repeat them (tool/trainer.py)
SETTINGS = ("arch", "backbone_width", "backbone_weights", "train_json", "short_side", "long_side", "batch_size",
            "max_iters", "lr", "wt_dec", "momentum", "optimizer", "seed", "num_workers", "amp")
DEFAULT_BACKBONE = {"maskrcnn_resnet50_fpn": "netWeights/resnet50-0676ba61.pth",
                    "maskrcnn_resnet38": "netWeights/ilsvrc-cls_rna-a1_cls1000_ep-0001.params"}


def get_args_parser() -> argparse.ArgumentParser:
    p = cli.make_parser(__doc__)
    cli.add_voc12_root(p)
    p.add_argument("--train_json", required=True, type=str,
                   help="COCO instances file to train on (make_instance_labels.py)")
    add_model_args(p)
    p.add_argument("--backbone_weights", default=None, type=str,
                   help="local file of the backbone: torchvision's ImageNet ResNet-50 .pth, or for "
                        "maskrcnn_resnet38 a SEAM classifier .pth or the MXNet .params; 'none' for random init; "
                        f"default {DEFAULT_BACKBONE}[arch]. Nothing is downloaded")
    p.add_argument("--max_iters", default=18000, type=int, help="training steps")
    p.add_argument("--batch_size", default=16, type=int, help="global batch over all processes (images)")
    p.add_argument("--lr", default=0.02, type=float, help="base learning rate (biases x2), poly decay power 0.9")
    p.add_argument("--wt_dec", default=1e-4, type=float, help="weight decay (weights only)")
    p.add_argument("--momentum", default=0.9, type=float, help="SGD momentum")
    p.add_argument("--amp", default=False, type=cli.str2bool, help="float16 mixed precision (CUDA only)")
    p.add_argument("--num_workers", default=4, type=int, help="DataLoader workers per process")
    p.add_argument("--session_name", default="maskrcnn", type=str, help="name of the run's files")
    p.add_argument("--save_dir", default="netWeights", type=str,
                   help="folder of {session_name}.pth, {session_name}_state.pth and {session_name}_log.jsonl")
    p.add_argument("--device", default=cli.default_device(), type=str, help="cpu, cuda or cuda:K")
    p.add_argument("--seed", default=0, type=int, help="random seed (init, flips, shuffling)")
    add_training_args(p)
    return tdist.add_gpus_argument(p)


def load_backbone(net: InstanceNet, path: str, arch: str) -> None:
    """Fill every backbone tensor from ``path``; a file that leaves some unfilled is refused."""
    if not Path(path).is_file():
        raise cli.UserError(f"--backbone_weights not found: {path} (a local {net.backbone_name} file; nothing is "
                            "downloaded), or pass --backbone_weights none")
    try:
        report = load_checkpoint(net.body, path, strict=False)
    except ValueError as err:
        raise cli.UserError(f"--backbone_weights {path}: {err}") from None
    if report.missing or report.reshaped:
        unfilled = report.missing + report.reshaped
        raise cli.UserError(f"--backbone_weights {path}: not a {net.backbone_name} file for --arch {arch}: "
                            f"{len(unfilled)} tensors missing or of another shape, e.g. {unfilled[:3]}")


def inst_objective(model: nn.Module, batch: dict, epoch: int) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """The sum of Mask R-CNN's five losses (RPN objectness and box, classifier, box, mask), each logged."""
    losses = model(*split_batch(batch))
    total = sum(losses.values())
    return total, {"loss": total, **losses}


def main(args: argparse.Namespace) -> list[dict[str, float]]:
    """Train; returns the loss terms of every step this run took (averaged over processes)."""
    with tdist.process_group(args.device) as device:
        if args.backbone_weights is None:
            args.backbone_weights = DEFAULT_BACKBONE[args.arch]
        try:
            coco = read_coco(args.train_json)
            ids = [Path(im["file_name"]).stem for im in coco["images"]]
        except (OSError, ValueError, KeyError, TypeError) as err:
            raise cli.UserError(f"--train_json {args.train_json}: {err} (a COCO instances file)") from None
        good = set(preflight_training(ids, args.voc12_root, run_files(args), args.skip_bad,
                                      verbose=tdist.is_main_process(), list_flag="--train_json"))
        coco["images"] = [im for im in coco["images"] if Path(im["file_name"]).stem in good]
        dataset = InstanceTrainDataset(coco, args.voc12_root)
        torch.manual_seed(args.seed)
        net = build_from_args(args)
        if not args.resume and args.backbone_weights.lower() != "none":
            load_backbone(net, args.backbone_weights, args.arch)
        result = train(net, inst_objective, dataset, args, device, SETTINGS, max_steps=args.max_iters, amp=args.amp,
                       find_unused_parameters=True)
    return result.steps


if __name__ == "__main__":
    args = get_args_parser().parse_args()
    sys.exit(cli.run(lambda: tdist.launch(main, args, args.gpus, args.device)))
