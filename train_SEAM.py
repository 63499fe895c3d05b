"""Stage 1: train the SEAM classifier (SPEC §1.2) on image-level labels.

Single process (CPU or one GPU): ``python train_SEAM.py --voc12_root VOC2012 ...``.
Several GPUs: ``torchrun --nproc_per_node 4 train_SEAM.py ...`` (``--batch_size`` stays the global batch).
"""

from __future__ import annotations

import argparse
import importlib
import time
from pathlib import Path

import torch
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader
from torch.utils.data.distributed import DistributedSampler
from tqdm import tqdm

from tool.checkpoint import load_checkpoint, save_checkpoint
from tool.cli import add_id_list, add_voc12_root, default_device
from tool.dist import cleanup_distributed, get_rank, get_world_size, init_distributed, is_main_process
from tool.label_io import atomic_path
from tool.optim import PolyOptimizer
from tool.seam_losses import TwoViews, seam_step_losses
from voc12.data import ClsTrainDataset
from voc12.lists import read_list
from voc12.make_cls_labels import image_labels

LOSS_NAMES = ("loss", "cls", "rvmin", "er", "ecr")


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description="Train the SEAM classifier (stage 1).")
    parser.add_argument("--batch_size", default=8, type=int, help="global batch, split over torchrun ranks")
    parser.add_argument("--max_epoches", default=8, type=int)
    parser.add_argument("--network", default="network.resnet38_SEAM", type=str)
    parser.add_argument("--lr", default=0.01, type=float)
    parser.add_argument("--num_workers", default=8, type=int)
    parser.add_argument("--wt_dec", default=5e-4, type=float)
    parser.add_argument("--momentum", default=5e-4, type=float,
                        help="SGD momentum; 5e-4 reproduces the published optimizer (weight decay passed "
                             "into the momentum slot)")
    parser.add_argument("--cls_only_epochs", default=0, type=int,
                        help="OURS: train on the classification loss alone for this many first epochs (a "
                             "warm-up for --weights none); 0 = every SEAM loss from the start (published)")
    add_id_list(parser, "--train_list", what="images to train on")
    parser.add_argument("--session_name", default="resnet38_SEAM", type=str)
    parser.add_argument("--crop_size", default=448, type=int)
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
                        help="writes <session_name>.pth (weights) and <session_name>_state.pth (resume)")
    parser.add_argument("--resume", default=None, type=str, help="a <session_name>_state.pth to continue")
    parser.add_argument("--device", default=default_device(), type=str)
    parser.add_argument("--seed", default=0, type=int)
    return parser


def save_training_state(path: Path, net: torch.nn.Module, optimizer: PolyOptimizer, epoch: int) -> None:
    """Model, optimizer, finished epoch and global step, written atomically."""
    state = {"model": net.state_dict(), "optimizer": optimizer.state_dict(), "epoch": epoch,
             "step": optimizer.global_step}
    with atomic_path(path) as tmp:
        torch.save(state, tmp)


def load_training_state(path: str, net: torch.nn.Module, optimizer: PolyOptimizer,
                        device: torch.device) -> int:
    """Restore a :func:`save_training_state` file; return the next epoch to run."""
    if not Path(path).is_file():
        raise FileNotFoundError(f"--resume: training state not found: {path}")
    state = torch.load(path, map_location=device, weights_only=True)
    missing = {"model", "optimizer", "epoch", "step"} - set(state)
    if missing:
        raise ValueError(f"--resume {path}: not a training-state file (missing {sorted(missing)})")
    net.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    if optimizer.global_step != state["step"]:
        raise ValueError(f"--resume {path}: optimizer step {optimizer.global_step} != "
                         f"saved step {state['step']}")
    print(f"resumed {path}: epoch {state['epoch'] + 1} done, step {state['step']}")
    return state["epoch"] + 1


def main(args: argparse.Namespace) -> list[dict[str, float]]:
    """Train; return the per-epoch mean losses (this rank's batches) of the epochs run."""
    device = init_distributed(args.device)
    rank, world = get_rank(), get_world_size()
    if args.batch_size % world:
        raise ValueError(f"--batch_size {args.batch_size} must be divisible by the {world} processes")
    torch.manual_seed(args.seed + rank)  # ranks augment differently; DDP copies rank 0's initial weights

    ids = read_list(args.train_list, args.voc12_root)
    labels = image_labels(args.voc12_root, ids, args.cls_labels)
    dataset = ClsTrainDataset(ids, args.voc12_root, labels, crop_size=args.crop_size,
                              resize_long=tuple(args.resize_long))
    sampler = DistributedSampler(dataset, shuffle=True, seed=args.seed, drop_last=True) if world > 1 else None
    loader = DataLoader(dataset, batch_size=args.batch_size // world, shuffle=sampler is None,
                        sampler=sampler, num_workers=args.num_workers, pin_memory=device.type == "cuda",
                        drop_last=True,                        persistent_workers=args.num_workers > 0)
    if len(loader) == 0:
        raise ValueError(f"--train_list has {len(ids)} images, fewer than one batch of {args.batch_size}")

    from_scratch = args.weights.lower() == "none"
    net = importlib.import_module(args.network).Net(width=args.backbone_width, from_scratch=from_scratch)
    if not from_scratch:
        load_checkpoint(net, args.weights, strict=False)
    net.to(device)
    optimizer = PolyOptimizer(net.get_parameter_groups(), lr=args.lr, weight_decay=args.wt_dec,
                              max_step=len(loader) * args.max_epoches, momentum=args.momentum)
    start_epoch = load_training_state(args.resume, net, optimizer, device) if args.resume else 0

    model = TwoViews(net).to(device)
    if world > 1:
        # the PCM head gets no gradient from the classification loss alone (--cls_only_epochs)
        model = DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None,
                                        find_unused_parameters=args.cls_only_epochs > 0)
    model.train()

    save_dir = Path(args.save_dir)
    history = []
    start = time.time()
    for epoch in range(start_epoch, args.max_epoches):
        if sampler is not None:
            sampler.set_epoch(epoch)
        sums = dict.fromkeys(LOSS_NAMES, 0.0)
        bar = tqdm(loader, desc=f"epoch {epoch + 1}/{args.max_epoches}", disable=not is_main_process(),
                   dynamic_ncols=True)
        for batch in bar:
            losses = seam_step_losses(model, batch["image"].to(device, non_blocking=True),
                                      batch["label"].to(device, non_blocking=True))
            loss = losses["cls"] if epoch < args.cls_only_epochs else losses["loss"]
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            for name in LOSS_NAMES:
                sums[name] += losses[name].item()
            bar.set_postfix({name: f"{losses[name].item():.3f}" for name in LOSS_NAMES}, refresh=False)
        history.append({name: value / len(loader) for name, value in sums.items()})
        if is_main_process():
            print(f"epoch {epoch + 1}: " + ", ".join(f"{k} {v:.4f}" for k, v in history[-1].items())
                  + f", lr {optimizer.param_groups[0]['lr']:.2e}")
            save_training_state(save_dir / f"{args.session_name}_state.pth", net, optimizer, epoch)

    if is_main_process():
        save_checkpoint(net, save_dir / f"{args.session_name}.pth")
        print(f"trained {args.max_epoches - start_epoch} epochs ({optimizer.global_step} steps in all) in "
              f"{time.time() - start:.1f} s -> {save_dir / f'{args.session_name}.pth'}")
    cleanup_distributed()
    return history


if __name__ == "__main__":
    main(get_args_parser().parse_args())
