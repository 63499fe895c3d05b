"""Stage 2: train the affinity network on seed labels (SPEC §2).

Single process (CPU or one GPU):
    python train_aff_gated_aff.py --voc12_root VOC2012 --label_dir data/Init_Label/SEAM_Box --radius 4
Several GPUs (DistributedDataParallel, one process per GPU):
    torchrun --nproc_per_node=4 train_aff_gated_aff.py ...same flags...

``--batch_size`` is the global batch: each of the K processes takes ``batch_size / K`` images per step
(it must divide), and the loss counts are averaged over processes so that K processes take exactly the
step one process would take on the whole batch. Writes ``{save_dir}/{session_name}.pth`` (the model
state dict, no ``module.`` prefix) at the end and ``{save_dir}/{session_name}_state.pth`` (model,
optimizer with its step counter, finished epochs) after every epoch; ``--resume True`` continues from it.
"""

from __future__ import annotations

import argparse
import importlib
import time
from pathlib import Path

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, DistributedSampler
from tqdm import tqdm

from tool import dist as tdist
from tool.aff_losses import affinity_loss
from tool.checkpoint import load_checkpoint, read_state_dict, save_checkpoint
from tool.cli import add_id_list, add_voc12_root, default_device, str2bool
from tool.label_io import atomic_path
from tool.optim import PolyOptimizer
from voc12.data import AffTrainDataset
from voc12.lists import read_list

LOG_TERMS = ("loss", "bg", "fg", "neg", "crf")


def get_args_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description="Stage 2: train the affinity network (SPEC §2).",
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--batch_size", default=4, type=int, help="global batch over all processes")
    p.add_argument("--max_epoches", default=12, type=int)
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
    p.add_argument("--crop_size", default=448, type=int)
    p.add_argument("--weights", default="netWeights/resnet38_aff_SEAM.pth", type=str,
                   help="init: a full affinity checkpoint (strict), a SEAM/backbone .pth or MXNet .params "
                        "(subset: counts printed), or 'none' for random init")
    add_voc12_root(p)
    p.add_argument("--label_dir", default="data/Init_Label/SEAM_Box", type=str, help="seed PNG folder")
    p.add_argument("--device", default=default_device(), type=str)
    p.add_argument("--backbone_width", default=1.0, type=float, help="channel multiplier (1 = published net)")
    p.add_argument("--seed", default=0, type=int)
    p.add_argument("--resume", default=False, type=str2bool,
                   help="continue from {save_dir}/{session_name}_state.pth")
    p.add_argument("--save_dir", default="netWeights/final_model", type=str,
                   help="folder of {session_name}.pth and {session_name}_state.pth (the folder stage 3 "
                        "reads the published aff_*.pth from; upstream wrote to the current folder)")
    return p


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
        raise FileNotFoundError(f"--weights file not found: {weights} (or pass --weights none)")
    keys = set(read_state_dict(weights))
    full = all(k in keys for k in model.state_dict() if not k.endswith("num_batches_tracked"))
    load_checkpoint(model, weights, strict=full)


def train_step(model: nn.Module, optimizer: torch.optim.Optimizer, batch: dict, radius: int,
               device: torch.device) -> dict[str, float]:
    """One SGD step on this process's share of the batch; returns the loss terms of the global batch."""
    image = batch["image"].to(device, non_blocking=True)
    label = batch["label"].to(device, non_blocking=True)
    valid = batch["valid"].to(device, non_blocking=True)
    _, aff, aff_crf = model(image, radius)
    out = affinity_loss(aff, aff_crf, label, image, valid, radius, sync_counts=True)
    optimizer.zero_grad(set_to_none=True)
    out["loss"].backward()
    optimizer.step()
    logged = tdist.mean_over_processes(torch.stack([out[k].detach() for k in LOG_TERMS]))
    return dict(zip(LOG_TERMS, logged.tolist(), strict=True))


def save_training_state(path: Path, model: nn.Module, optimizer: PolyOptimizer, epoch: int, args) -> None:
    """Atomically write what ``--resume`` needs (tensors and plain values only)."""
    state = {"model": {k: v.detach().cpu() for k, v in model.state_dict().items()},
             "optimizer": optimizer.state_dict(), "epoch": epoch, "global_step": optimizer.global_step,
             "batch_size": args.batch_size, "max_step": optimizer.max_step, "seed": args.seed}
    with atomic_path(path) as tmp:
        torch.save(state, tmp)


def main(args: argparse.Namespace) -> list[dict[str, float]]:
    """Train; returns the loss terms of every step this run took (global-batch values)."""
    start = time.time()
    device = tdist.init_distributed(args.device)
    rank, world = tdist.get_rank(), tdist.get_world_size()
    main_process = tdist.is_main_process()
    if args.batch_size % world:
        raise ValueError(f"--batch_size {args.batch_size} (global) must be divisible by the "
                         f"{world} processes")
    per_rank = args.batch_size // world

    ids = read_list(args.train_list, args.voc12_root)
    dataset = AffTrainDataset(ids, args.voc12_root, args.label_dir, crop_size=args.crop_size)
    steps_per_epoch = len(dataset) // args.batch_size
    if steps_per_epoch == 0:
        raise ValueError(f"--train_list has {len(dataset)} images, fewer than --batch_size {args.batch_size}")
    max_step = steps_per_epoch * args.max_epoches
    # one sampler for one or many processes: the shuffle depends only on (seed, epoch)
    sampler = DistributedSampler(dataset, num_replicas=world, rank=rank, shuffle=True, seed=args.seed,
                                 drop_last=True)
    loader = DataLoader(dataset, batch_size=per_rank, sampler=sampler, num_workers=args.num_workers,
                        pin_memory=device.type == "cuda", drop_last=True)

    torch.manual_seed(args.seed)
    model = build_model(args.network, args.backbone_width)
    save_dir = Path(args.save_dir)
    state_path = save_dir / f"{args.session_name}_state.pth"
    state = None
    if args.resume:
        if not state_path.is_file():
            raise FileNotFoundError(f"--resume True: training state not found: {state_path}")
        state = torch.load(state_path, map_location="cpu", weights_only=True)
        saved = (state["batch_size"], state["max_step"], state["seed"])
        if saved != (args.batch_size, max_step, args.seed):
            raise ValueError(f"{state_path}: saved for (--batch_size, steps, --seed) = {saved}, this run has "
                             f"{(args.batch_size, max_step, args.seed)}; resume needs the same values")
        model.load_state_dict(state["model"])
    else:  # every process loads, so a bad file stops all of them (DDP would copy rank 0's weights anyway)
        init_weights(model, args.weights)
    model = model.to(device)
    model.train()  # BatchNorm stays frozen, not_training blocks keep requires_grad=False
    optimizer = PolyOptimizer(model.get_parameter_groups(), lr=args.lr, weight_decay=args.wt_dec,
                              max_step=max_step, momentum=args.momentum)
    first_epoch = 0
    if state is not None:
        optimizer.load_state_dict(state["optimizer"])
        first_epoch = state["epoch"]
    if world > 1:
        device_ids = [device.index] if device.type == "cuda" else None
        ddp_model = DistributedDataParallel(model, device_ids=device_ids, broadcast_buffers=False)
    else:
        ddp_model = model
    if main_process:
        print(vars(args))
        print(f"{len(dataset)} images, {world} process(es) x {per_rank} images/step, "
              f"{steps_per_epoch} steps/epoch, {max_step} steps, from epoch {first_epoch + 1}")

    bar = tqdm(total=max_step, initial=optimizer.global_step, unit="step", disable=not main_process,
               dynamic_ncols=True)
    run_start, history = time.time(), []
    for epoch in range(first_epoch, args.max_epoches):
        # augmentation randomness derived from (seed, epoch, rank): resuming reproduces the same epochs
        torch.manual_seed(args.seed + 1 + epoch * world + rank)
        sampler.set_epoch(epoch)
        bar.set_description(f"epoch {epoch + 1}/{args.max_epoches}")
        for batch in loader:
            terms = train_step(ddp_model, optimizer, batch, args.radius, device)
            history.append(terms)
            images_per_s = len(history) * args.batch_size / (time.time() - run_start)
            bar.set_postfix({**{k: f"{v:.4f}" for k, v in terms.items()}, "img/s": f"{images_per_s:.1f}",
                             "lr": f"{optimizer.param_groups[0]['lr']:.2e}"})
            bar.update(1)
        if main_process:
            save_training_state(state_path, model, optimizer, epoch + 1, args)
    bar.close()
    if main_process:
        final = save_dir / f"{args.session_name}.pth"
        save_checkpoint(model, final)
        print(f"done: {len(history)} steps (at {optimizer.global_step}/{max_step}) in "
              f"{time.time() - start:.1f} s; saved {final}")
    tdist.cleanup_distributed()
    return history


if __name__ == "__main__":
    main(get_args_parser().parse_args())
