"""Stage 2: train the affinity network on seed labels (algorithm.md §2).

Every visible GPU (one DistributedDataParallel worker each, started by the script; ``--gpus K`` limits it,
``--device cpu`` is one CPU process):
    python train_aff_gated_aff.py --voc12_root VOC2012 --label_dir data/Init_Label/SEAM_Box --radius 4
The same under torchrun (one process per GPU, or several machines):
    torchrun --nproc_per_node=4 train_aff_gated_aff.py ...same flags...

``--batch_size`` is the global batch: each of the K processes takes ``batch_size / K`` images per step
(it must divide), and the loss counts are averaged over processes so that K processes take exactly the
step one process would take on the whole batch. The loop, its files (``{session_name}.pth``,
``{session_name}_state.pth`` for ``--resume True``, ``{session_name}_log.jsonl``) and the resume rules are
those of ``tool/trainer.py``.
"""

from __future__ import annotations

import argparse
import functools
import importlib
import sys
from pathlib import Path

import torch
from torch import nn

from tool import cli
from tool import dist as tdist
from tool.aff_losses import affinity_loss
from tool.checkpoint import load_checkpoint, read_state_dict
from tool.cli import DEVICE_HELP, add_id_list, add_voc12_root, default_device, make_parser
from tool.trainer import TrainResult, add_training_args, run_files, train
from tool.weights import missing_weights
from voc12.data import JITTER, AffTrainDataset
from voc12.lists import read_list
from voc12.preflight import preflight_training

LOG_TERMS = ("loss", "bg", "fg", "neg", "crf")
# flags whose change alters the result: a resume must repeat them (tool/trainer.py)
SETTINGS = ("network", "backbone_width", "weights", "train_list", "label_dir", "radius", "crop_size", "color_jitter",
            "batch_size", "max_epoches", "lr", "wt_dec", "momentum", "optimizer", "seed", "num_workers")


def get_args_parser() -> argparse.ArgumentParser:
    p = make_parser(__doc__)
    p.add_argument("--batch_size", default=4, type=int, help="global batch over all processes")
    p.add_argument("--max_epoches", default=12, type=int, help="training epochs (passes over --train_list)")
    p.add_argument("--network", default="network.resnet38_aff_gated", type=str,
                   help="module providing Net(width)")
    p.add_argument("--lr", default=0.01, type=float,
                   help="base lr (x2 biases, x10 new weights, x20 new biases), poly decay power 0.9")
    p.add_argument("--radius", default=4, type=int,
                   help="window radius: 4 for box/scribble, 3 for image/point")
    p.add_argument("--num_workers", default=8, type=int, help="DataLoader workers per process")
    p.add_argument("--wt_dec", default=5e-4, type=float, help="weight decay (weight groups only)")
    p.add_argument("--momentum", default=5e-4, type=float,
                   help="SGD momentum; the published optimizer passed wt_dec into the momentum slot (5e-4)")
    add_id_list(p, "--train_list", what="images to train on")
    p.add_argument("--session_name", default="aff_box", type=str,
                   help="checkpoint name: writes {save_dir}/{session_name}.pth (aff_box, aff_scribble, "
                        "aff_image, aff_point are the names stage 3 reads)")
    p.add_argument("--crop_size", default=448, type=int, help="square training crop (pixels)")
    p.add_argument("--color_jitter", default=list(JITTER), type=float, nargs=4,
                   metavar=("BRIGHTNESS", "CONTRAST", "SATURATION", "HUE"),
                   help="colour jitter strengths (hue as a fraction of the colour circle); 0 0 0 0 = off")
    p.add_argument("--weights", default="netWeights/resnet38_aff_SEAM.pth", type=str,
                   help="init: a full affinity checkpoint (strict), a SEAM/backbone .pth or MXNet .params "
                        "(subset: counts printed), or 'none' for random init")
    add_voc12_root(p)
    p.add_argument("--label_dir", default="data/Init_Label/SEAM_Box", type=str, help="seed PNG folder")
    p.add_argument("--device", default=default_device(), type=str, help=DEVICE_HELP)
    p.add_argument("--backbone_width", default=1.0, type=float, help="channel multiplier (1 = published net)")
    p.add_argument("--seed", default=0, type=int, help="torch random seed (integer)")
    p.add_argument("--save_dir", default="netWeights/final_model", type=str,
                   help="folder of {session_name}.pth, {session_name}_state.pth and {session_name}_log.jsonl "
                        "(the folder stage 3 reads the published aff_*.pth from; upstream wrote to the current "
                        "folder)")
    add_training_args(p)
    return tdist.add_gpus_argument(p)


def build_model(network: str, width: float) -> nn.Module:
    """``Net(width)`` of the module ``network`` (e.g. ``network.resnet38_aff_gated``)."""
    try:
        module = importlib.import_module(network)
    except ImportError as err:
        raise ImportError(f"--network {network}: cannot import it ({err})") from err
    return module.Net(width=width)


def init_weights(model: nn.Module, weights: str) -> None:
    """Strict load when the file holds every key of the model (an affinity checkpoint), subset load
    otherwise (SEAM classifier, backbone or MXNet file), nothing for ``'none'``."""
    if weights.lower() == "none":
        print("--weights none: random initialization")
        return
    if not Path(weights).is_file():
        raise missing_weights(weights, "--weights", "or pass --weights none")
    keys = set(read_state_dict(weights))
    full = all(k in keys for k in model.state_dict() if not k.endswith("num_batches_tracked"))
    load_checkpoint(model, weights, strict=full)


def affinity_objective(model: nn.Module, batch: dict, epoch: int, radius: int
                       ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Loss of one batch (algorithm.md §2.1; pair counts summed over processes) and its logged terms."""
    _, aff, aff_crf = model(batch["image"], radius)
    out = affinity_loss(aff, aff_crf, batch["label"], batch["image"], batch["valid"], radius, sync_counts=True)
    return out["loss"], {k: out[k] for k in LOG_TERMS}


def main(args: argparse.Namespace) -> list[dict[str, float]]:
    """Train; returns the loss terms of every step this run took (global-batch values)."""
    with tdist.process_group(args.device) as device:
        ids = read_list(args.train_list, args.voc12_root)
        ids = preflight_training(ids, args.voc12_root, run_files(args),
                                 args.skip_bad, label_dir=args.label_dir, verbose=tdist.is_main_process())
        dataset = AffTrainDataset(ids, args.voc12_root, args.label_dir, crop_size=args.crop_size,
                                  jitter=tuple(args.color_jitter))
        torch.manual_seed(args.seed)
        model = build_model(args.network, args.backbone_width)
        if not args.resume:  # every process loads, so a bad file stops all of them (DDP copies rank 0's weights)
            init_weights(model, args.weights)
        result: TrainResult = train(model, functools.partial(affinity_objective, radius=args.radius), dataset, args,
                                    device, SETTINGS)
    return result.steps


if __name__ == "__main__":
    args = get_args_parser().parse_args()
    sys.exit(cli.run(lambda: tdist.launch(main, args, args.gpus, args.device)))
