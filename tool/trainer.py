"""The one training loop of the training scripts and its checkpoint / resume helper.

``train_SEAM.py``, ``train_aff_gated_aff.py`` and ``train_seg.py`` each build a network, a dataset and a
loss function, then call :func:`train`, which owns the rest: the DataLoader (one ``DistributedSampler``
for one or many processes, so the shuffle depends only on ``(seed, epoch)``), the poly-lr optimizer
(``--optimizer``), DistributedDataParallel under ``torchrun`` or ``tool.dist.launch`` (with SyncBatchNorm on
several GPUs, so that a trainable BatchNorm normalises over the global batch; frozen ones stay frozen), mixed
precision (``amp``, CUDA only), the cuDNN autotuner on CUDA, the tqdm bar (its loss terms are the last log
record's: the loop reads the terms back from the device once per record, not at every step), the training
state after every epoch, ``--resume``, the JSON-lines log and the final weights.

Files, in ``save_dir`` (``{s}`` = ``--session_name``):

- ``{s}.pth``: the final weights, a plain state dict (no ``module.`` prefix), so the next stage and the
  published-checkpoint loaders read it strictly.
- ``{s}_state.pth``: written atomically after every epoch: model, optimizer (with its step counter),
  AMP scaler, finished epochs, the run's arguments (``args``) and its result-changing settings
  (``settings``). ``--resume True`` continues from it and refuses it when a setting differs.
- ``{s}_log.jsonl``: one JSON object per line: ``{"event": "start", "args": {...}, "step": s}`` at every
  (re)start, then every ``--log_every`` steps and at the end of each epoch ``{"step", "epoch", "lr",
  "seconds_per_step", <loss terms averaged over the interval>}``. A resumed run first drops the records
  after the step it resumes from, so the log is the curve of one uninterrupted run.
- ``--tensorboard DIR`` (optional, needs the ``tensorboard`` package): the same records as TensorBoard
  scalars (one tag per key, x axis = step) through ``torch.utils.tensorboard``; a resumed run purges the
  events after the step it resumes from.

Reproducibility: before every epoch the loop seeds torch with ``seed + 1 + epoch · world + rank``; the
sampler shuffles with ``(seed, epoch)``. A run killed after epoch ``e`` and resumed with the same
settings ends with the same weights as the uninterrupted run (same process and worker counts).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, Dataset, DistributedSampler
from tqdm import tqdm

from tool import dist as tdist
from tool.checkpoint import save_checkpoint
from tool.cli import BadValueError, MissingFileError, UserError, WrongFileError, str2bool
from tool.label_io import atomic_path
from tool.optim import OPTIMIZERS, build_optimizer

# loss_fn(model, batch on the device, epoch) -> (objective to backpropagate, loss terms to log)
LossFn = Callable[[nn.Module, dict, int], tuple[torch.Tensor, Mapping[str, torch.Tensor]]]
STATE_KEYS = ("model", "optimizer", "epoch", "step", "settings", "args")
PROCESSES = "processes"  # setting recorded by the loop itself: the torchrun world size


def add_training_args(parser: argparse.ArgumentParser) -> None:
    """The flags every training script shares: ``--optimizer``, ``--resume``, ``--skip_bad``, ``--log_every``."""
    parser.add_argument("--optimizer", default="sgd", choices=OPTIMIZERS,
                        help="sgd: the published SGD with poly decay (uses --momentum); adamw: AdamW with "
                             "the same poly decay and lr multipliers (OURS; for networks trained from "
                             "scratch, try lr 1e-3..2e-3)")
    parser.add_argument("--resume", default=False, type=str2bool,
                        help="True: continue from {save_dir}/{session_name}_state.pth (the settings that "
                             "change results must equal the saved ones)")
    parser.add_argument("--skip_bad", default=False, type=str2bool,
                        help="train on the images whose files pass the pre-flight check and say how many "
                             "were left out; False: list every bad file and stop before step 1")
    parser.add_argument("--log_every", default=20, type=int,
                        help="steps between two records of {save_dir}/{session_name}_log.jsonl")
    parser.add_argument("--tensorboard", default=None, type=str, metavar="DIR",
                        help="also write the log's scalars as TensorBoard events into this folder (needs the "
                             "tensorboard package; view with: tensorboard --logdir DIR); default: off")


def run_files(args: argparse.Namespace) -> tuple[Path, Path, Path]:
    """The files a run writes in ``--save_dir``: final weights, training state, loss log."""
    base = Path(args.save_dir) / args.session_name
    return base.with_name(f"{base.name}.pth"), base.with_name(f"{base.name}_state.pth"), \
        base.with_name(f"{base.name}_log.jsonl")


def plain(value: Any) -> Any:
    """``value`` as JSON-compatible data (tuples → lists, paths and other objects → str)."""
    return json.loads(json.dumps(value, default=str))


def run_settings(args: argparse.Namespace, names: Sequence[str]) -> dict[str, Any]:
    """The result-changing settings of a run: ``{flag name: value}`` plus the process count."""
    return {**{name: plain(getattr(args, name)) for name in names}, PROCESSES: tdist.get_world_size()}


def check_settings(path: Path, saved: Mapping[str, Any], current: Mapping[str, Any]) -> None:
    """``ValueError`` naming every flag whose value differs between the saved state and this run."""
    differ = [name for name in sorted(set(saved) | set(current)) if saved.get(name) != current.get(name)]
    if differ:
        def flag(name: str) -> str:
            return "torchrun processes" if name == PROCESSES else f"--{name}"
        details = "; ".join(f"{flag(n)} was {saved.get(n)!r}, now {current.get(n)!r}" for n in differ)
        raise WrongFileError(f"--resume True: {path} was saved with other settings ({details}). Resume with the "
                             "saved values, or start a new run (another --session_name, or --resume False)")


def save_training_state(path: Path, *, model: nn.Module, optimizer: torch.optim.Optimizer, epoch: int,
                        settings: Mapping[str, Any], args: Mapping[str, Any],
                        scaler: torch.amp.GradScaler | None = None) -> None:
    """Atomically write what ``--resume`` needs (tensors and plain values only); ``epoch`` = epochs done."""
    state = {"model": {k: v.detach().cpu() for k, v in model.state_dict().items()},
             "optimizer": optimizer.state_dict(), "epoch": epoch, "step": optimizer.global_step,
             "settings": dict(settings), "args": dict(args)}
    if scaler is not None and scaler.is_enabled():
        state["scaler"] = scaler.state_dict()
    with atomic_path(path) as tmp:
        torch.save(state, tmp)


def load_training_state(path: Path, *, model: nn.Module, optimizer: torch.optim.Optimizer,
                        settings: Mapping[str, Any], scaler: torch.amp.GradScaler | None = None) -> int:
    """Restore a :func:`save_training_state` file after checking its settings; return the epochs done."""
    if not path.is_file():
        raise MissingFileError(f"--resume True: training state not found: {path} (it is written after "
                               "the first epoch; check --save_dir and --session_name)")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - a truncated or foreign file; never retry with unpickling
        raise WrongFileError(f"--resume True: {path} is not a readable training state (truncated or not a "
                             f"PyTorch file): {type(err).__name__}") from None
    missing = [k for k in STATE_KEYS if not isinstance(state, Mapping) or k not in state]
    if missing:
        raise WrongFileError(f"--resume True: {path} is not a training-state file of this version (missing "
                             f"{missing}); start a new run with --resume False")
    check_settings(path, state["settings"], settings)
    model.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    if scaler is not None and "scaler" in state:
        scaler.load_state_dict(state["scaler"])
    if optimizer.global_step != state["step"]:
        raise WrongFileError(f"--resume True: {path}: optimizer step {optimizer.global_step} != saved step "
                             f"{state['step']}")
    return int(state["epoch"])


class TrainingLog:
    """The JSON-lines curve of a run (see the module docstring); written by the main process only.

    The loss terms stay on the device between records (summed in float64): reading them is a host
    synchronisation, done once per record, not once per step."""

    def __init__(self, path: Path, every: int, enabled: bool, tensorboard: str | None = None):
        if every <= 0:
            raise BadValueError(f"--log_every must be positive, got {every}")
        self.path, self.every, self.enabled, self.tensorboard = path, every, enabled, tensorboard
        self.writer = None
        if enabled and tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter  # noqa: F401 - checked before step 1
            except ImportError:
                raise UserError("--tensorboard needs the tensorboard package: pip install tensorboard "
                                "(or leave --tensorboard out; the JSON-lines log is written either way)") from None
        self.sums: torch.Tensor | None = None
        self.count, self.since = 0, time.time()

    def start(self, args: Mapping[str, Any], step: int) -> None:
        """Drop records after ``step`` (a resumed run), then append a start record."""
        if not self.enabled:
            return
        kept = []
        if step > 0 and self.path.is_file():
            for line in self.path.read_text().splitlines():
                record = json.loads(line) if line.strip() else None
                if record is not None and record.get("step", 0) <= step:
                    kept.append(line)
        kept.append(json.dumps({"event": "start", "step": step, "args": dict(args)}))
        with atomic_path(self.path) as tmp:
            tmp.write_text("\n".join(kept) + "\n")
        if self.tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            # events at or after the resumed step (written after the saved state) are dropped by TensorBoard
            self.writer = SummaryWriter(self.tensorboard, purge_step=step + 1 if step > 0 else None)
        self.since = time.time()

    def add(self, names: Sequence[str], terms: torch.Tensor, step: int, epoch: int, lr: float,
            epoch_end: bool) -> dict[str, float] | None:
        """Accumulate one step's terms ``(len(names),)``; every ``every`` steps and at an epoch's end write a
        record and return it (``None`` otherwise, and always on other processes than the main one)."""
        if not self.enabled:
            return None
        terms = terms.detach().double()
        self.sums = terms if self.sums is None else self.sums + terms
        self.count += 1
        if not (step % self.every == 0 or epoch_end):
            return None
        now = time.time()
        means = (self.sums / self.count).tolist()
        record = {"step": step, "epoch": epoch, "lr": lr, "seconds_per_step": (now - self.since) / self.count,
                  **dict(zip(names, means, strict=True))}
        with open(self.path, "a") as f:
            f.write(json.dumps(record) + "\n")
        if self.writer is not None:
            for key, value in record.items():
                if key != "step":
                    self.writer.add_scalar(key, value, step)
            if epoch_end:
                self.writer.flush()
        self.sums, self.count, self.since = None, 0, now
        return record

    def close(self) -> None:
        """Flush and close the TensorBoard writer (the JSON-lines file is complete after every record)."""
        if self.writer is not None:
            self.writer.close()
            self.writer = None


@dataclass
class TrainResult:
    """Loss terms of the steps this invocation ran (averaged over processes) and their per-epoch means."""

    steps: list[dict[str, float]] = field(default_factory=list)
    epochs: list[dict[str, float]] = field(default_factory=list)


def _to_device(batch: dict, device: torch.device) -> dict:
    return {k: v.to(device, non_blocking=True) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}


def train_step(model: nn.Module, optimizer: torch.optim.Optimizer, batch: dict, loss_fn: LossFn, epoch: int,
               scaler: torch.amp.GradScaler | None = None) -> dict[str, float]:
    """One optimizer step on this process's share of the batch (already on the device).

    With an enabled ``scaler`` the forward runs under float16 autocast. Returns the logged loss terms
    averaged over the processes (the global batch's values when the loss averages per image).
    """
    names, logged = optimizer_step(model, optimizer, batch, loss_fn, epoch, scaler)
    return dict(zip(names, logged.tolist(), strict=True))


def optimizer_step(model: nn.Module, optimizer: torch.optim.Optimizer, batch: dict, loss_fn: LossFn, epoch: int,
                   scaler: torch.amp.GradScaler | None = None) -> tuple[list[str], torch.Tensor]:
    """:func:`train_step` without reading the terms back: ``(names, terms (len(names),) on the device)``, so
    that the host does not wait for the device at every step (``train`` reads them once per log record)."""
    amp = scaler is not None and scaler.is_enabled()
    device_type = next(iter(t for t in batch.values() if isinstance(t, torch.Tensor))).device.type
    with torch.autocast(device_type, dtype=torch.float16, enabled=amp):
        objective, terms = loss_fn(model, batch, epoch)
    optimizer.zero_grad(set_to_none=True)
    if amp:
        scaler.scale(objective).backward()
        scaler.step(optimizer)
        scaler.update()
    else:
        objective.backward()
        optimizer.step()
    names = list(terms)
    return names, tdist.mean_over_processes(torch.stack([terms[k].detach().float() for k in names]))


@contextlib.contextmanager
def cudnn_autotuner(device: torch.device) -> Iterator[None]:
    """On CUDA, for the block, let cuDNN time its convolution algorithms for each input shape it meets and keep
    the fastest (``torch.backends.cudnn.benchmark``): training batches are fixed-size crops (the incomplete last
    batch is dropped), so each shape is timed once; results then vary in the last bits between runs. The flag
    is restored after the block: the per-image stages that may follow in the same process (``run_pipeline.py``)
    meet a new shape with nearly every image, and would time each."""
    previous = torch.backends.cudnn.benchmark
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    try:
        yield
    finally:
        torch.backends.cudnn.benchmark = previous


def make_loader(dataset: Dataset, args: argparse.Namespace, device: torch.device
                ) -> tuple[DistributedSampler, DataLoader]:
    """This process's share of every global batch of ``args.batch_size``: one ``DistributedSampler`` (shuffle
    by ``(args.seed, epoch)``, incomplete last batch dropped) for one or many processes."""
    rank, world = tdist.get_rank(), tdist.get_world_size()
    if args.batch_size % world:  # tool.dist.worker_count refuses this before the workers start
        raise BadValueError(f"--batch_size {args.batch_size} (global) must be divisible by the {world} processes "
                            "(one per GPU: --gpus, or torchrun's --nproc_per_node, sets their number)")
    if len(dataset) < args.batch_size:
        raise BadValueError(f"the training list has {len(dataset)} images, fewer than --batch_size "
                            f"{args.batch_size}; pass a smaller --batch_size")
    sampler = DistributedSampler(dataset, num_replicas=world, rank=rank, shuffle=True, seed=args.seed,
                                 drop_last=True)
    loader = DataLoader(dataset, batch_size=args.batch_size // world, sampler=sampler,
                        num_workers=args.num_workers, pin_memory=device.type == "cuda", drop_last=True)
    return sampler, loader


def train(net: nn.Module, loss_fn: LossFn, dataset: Dataset, args: argparse.Namespace, device: torch.device,
          settings: Sequence[str], *, wrap: Callable[[nn.Module], nn.Module] | None = None,
          max_steps: int | None = None, amp: bool = False, find_unused_parameters: bool = False) -> TrainResult:
    """Train ``net`` (already initialised) on ``dataset`` with ``loss_fn``; write the files listed above.

    ``args`` supplies ``batch_size`` (global, divided over the torchrun processes), ``max_epoches``,
    ``lr``, ``wt_dec``, ``momentum``, ``optimizer``, ``seed``, ``num_workers``, ``save_dir``,
    ``session_name``, ``resume``, ``log_every``. ``settings`` names the flags that change results; they are
    stored in the training state and a resume that differs is refused. ``net.get_parameter_groups()``
    gives the optimizer's four groups. ``wrap(net)`` is the module ``loss_fn`` calls (default ``net``;
    DDP wraps it). ``max_steps`` (``--max_iters``) ends the run after that many steps instead of after
    ``max_epoches`` epochs. ``amp``: float16 autocast and a gradient scaler (CUDA only).
    """
    rank, world = tdist.get_rank(), tdist.get_world_size()
    main_process = tdist.is_main_process()
    if amp and device.type != "cuda":
        raise BadValueError(f"--amp True needs a CUDA device, got --device {device}")
    sampler, loader = make_loader(dataset, args, device)
    per_rank, steps_per_epoch = args.batch_size // world, len(dataset) // args.batch_size
    if max_steps is None:
        max_epochs, max_step = args.max_epoches, steps_per_epoch * args.max_epoches
    else:
        max_epochs, max_step = math.ceil(max_steps / steps_per_epoch), max_steps

    if world > 1 and device.type == "cuda":  # trainable BatchNorm (from scratch, deeplabv3) normalises over all GPUs;
        net = nn.SyncBatchNorm.convert_sync_batchnorm(net)  # frozen ones stay in eval mode (network.resnet38d)
    net.to(device)
    net.train()
    optimizer = build_optimizer(args.optimizer, net.get_parameter_groups(), lr=args.lr,
                                weight_decay=args.wt_dec, max_step=max_step, momentum=args.momentum)
    scaler = torch.amp.GradScaler(device.type, enabled=amp)
    final, state_path, log_path = run_files(args)
    current = run_settings(args, settings)
    arguments = plain(vars(args))
    first_epoch = 0
    if args.resume:
        first_epoch = load_training_state(state_path, model=net, optimizer=optimizer, settings=current,
                                          scaler=scaler)
        if main_process:
            print(f"resumed {state_path}: {first_epoch} epochs done, step {optimizer.global_step}")
    model = wrap(net) if wrap is not None else net
    if world > 1:
        model = DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None,
                                        find_unused_parameters=find_unused_parameters)
    log = TrainingLog(log_path, args.log_every, main_process, getattr(args, "tensorboard", None))
    log.start(arguments, optimizer.global_step)
    if main_process:
        print(arguments)
        print(f"{len(dataset)} images, {world} process(es) x {per_rank} images/step, {steps_per_epoch} "
              f"steps/epoch, {max_step} steps, from epoch {first_epoch + 1}", flush=True)

    result = TrainResult()
    with cudnn_autotuner(device), contextlib.closing(log):  # a run that raises still flushes its TensorBoard events
        bar = tqdm(total=max_step, initial=optimizer.global_step, unit="step", disable=not main_process,
                   dynamic_ncols=True)
        run_start = time.time()
        for epoch in range(first_epoch, max_epochs):
            torch.manual_seed(args.seed + 1 + epoch * world + rank)
            sampler.set_epoch(epoch)
            bar.set_description(f"epoch {epoch + 1}/{max_epochs}")
            epoch_terms = []  # on the device: read back once per log record and once per epoch
            for index, batch in enumerate(loader):
                names, terms = optimizer_step(model, optimizer, _to_device(batch, device), loss_fn, epoch, scaler)
                epoch_terms.append(terms)
                lr = optimizer.param_groups[0]["lr"]
                last = index + 1 == steps_per_epoch or optimizer.global_step == max_step
                record = log.add(names, terms, optimizer.global_step, epoch + 1, lr, last)
                if record is not None:  # the bar shows the means of the last record
                    images_per_s = (len(result.steps) + len(epoch_terms)) * args.batch_size / (time.time() - run_start)
                    bar.set_postfix({**{k: f"{record[k]:.4f}" for k in names}, "lr": f"{lr:.2e}",
                                     "img/s": f"{images_per_s:.1f}"}, refresh=False)
                bar.update(1)
                if optimizer.global_step == max_step:
                    break
            epoch_steps = [dict(zip(names, row, strict=True)) for row in torch.stack(epoch_terms).tolist()]
            result.steps += epoch_steps
            result.epochs.append({k: sum(s[k] for s in epoch_steps) / len(epoch_steps) for k in epoch_steps[0]})
            if main_process:
                tqdm.write(f"epoch {epoch + 1}: " + ", ".join(f"{k} {v:.4f}" for k, v in result.epochs[-1].items())
                           + f", lr {optimizer.param_groups[0]['lr']:.2e}", file=sys.stdout)
                save_training_state(state_path, model=net, optimizer=optimizer, epoch=epoch + 1, settings=current,
                                    args=arguments, scaler=scaler)
    bar.close()
    if main_process:
        save_checkpoint(net, final)
        print(f"done: {len(result.steps)} steps (at {optimizer.global_step}/{max_step}) in "
              f"{time.time() - run_start:.1f} s; saved {final}, log {log.path}")
    return result

