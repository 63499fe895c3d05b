"""torchrun helpers: rank and world size from the environment, falling back to one process; and
``launch``, which makes a plain ``python script.py`` use every visible GPU the way torchrun would."""

from __future__ import annotations

import argparse
import contextlib
import multiprocessing
import os
import socket
import sys
from collections.abc import Callable, Iterator
from typing import Any

import torch
import torch.distributed as dist


def get_rank() -> int:
    """This process's global rank (``RANK`` set by torchrun), 0 without torchrun."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank()
    return int(os.environ.get("RANK", 0))


def get_world_size() -> int:
    """Number of processes (``WORLD_SIZE`` set by torchrun), 1 without torchrun."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_world_size()
    return int(os.environ.get("WORLD_SIZE", 1))


def get_local_rank() -> int:
    """This process's rank on its machine (``LOCAL_RANK``), 0 without torchrun."""
    return int(os.environ.get("LOCAL_RANK", 0))


def is_main_process() -> bool:
    return get_rank() == 0


def init_distributed(device: str) -> torch.device:
    """Start the process group when launched by torchrun and return this process's device.

    NCCL on CUDA, gloo on CPU. Without torchrun (``WORLD_SIZE`` unset or 1) nothing is initialised and
    ``device`` is returned as given. Under torchrun with ``device='cuda'`` each process takes
    ``cuda:LOCAL_RANK``.
    """
    dev = torch.device(device)
    if int(os.environ.get("WORLD_SIZE", 1)) > 1 and not dist.is_initialized():
        if dev.type == "cuda":
            dev = torch.device("cuda", get_local_rank())
            torch.cuda.set_device(dev)
        dist.init_process_group(backend="nccl" if dev.type == "cuda" else "gloo")
    elif dev.type == "cuda" and dev.index is None:
        dev = torch.device("cuda", get_local_rank())
    return dev


def mean_over_processes(x: torch.Tensor) -> torch.Tensor:
    """Average of ``x`` over the processes of the default process group (``x`` itself without one)."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return x
    x = x.clone()
    dist.all_reduce(x)
    return x / dist.get_world_size()


def cleanup_distributed() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


@contextlib.contextmanager
def process_group(device: str) -> Iterator[torch.device]:
    """``with process_group(args.device) as device``: :func:`init_distributed` for the block and
    :func:`cleanup_distributed` after it, also when the block raises."""
    dev = init_distributed(device)
    try:
        yield dev
    finally:
        cleanup_distributed()


def parse_shard(shard: str | None) -> tuple[int, int]:
    """This process's shard ``(index, count)`` of an id list (``shard_ids``).

    ``None`` → the torchrun rank and world size (``(0, 1)`` without torchrun). ``'i/n'`` → shard ``i`` of
    ``n``, split again among this run's ``W`` workers (``launch`` or torchrun): worker ``r`` takes
    ``(i + n·r, n·W)``, i.e. ``ids[i::n][r::W]``, so every id of shard ``i`` is processed by exactly one
    worker (``run_pipeline.py --jobs J`` passes ``--shard j/J`` to scripts that may start several workers).
    """
    rank, world = get_rank(), get_world_size()
    if shard is None:
        return rank, world
    try:
        index, count = (int(v) for v in shard.split("/"))
    except ValueError as err:
        raise ValueError(f"--shard must look like i/n (e.g. 0/4), got {shard!r}") from err
    if not 0 <= index < count:
        raise ValueError(f"--shard {shard}: need 0 <= i < n")
    return index + count * rank, count * world


def shard_ids(ids: list[str], index: int, count: int) -> list[str]:
    """The ids this shard processes: ``ids[index::count]``."""
    return ids[index::count]


def add_gpus_argument(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """``--gpus``: the worker processes ``launch`` starts (the same flag in every stage script)."""
    parser.add_argument("--gpus", default=None, type=int,
                        help="worker processes, one per GPU (default: every visible GPU with --device cuda, "
                             "1 on CPU; ignored under torchrun). With --device cpu, N > 1 starts N CPU "
                             "workers (gloo) standing in for GPUs")
    return parser


def worker_count(gpus: int | None, device: str) -> int:
    """How many workers ``launch`` starts: 1 under torchrun; ``gpus`` if given (at most the visible GPUs
    on CUDA); else every visible GPU for a CUDA device, 1 on CPU."""
    if "WORLD_SIZE" in os.environ:
        return 1
    cuda = torch.device(device).type == "cuda"
    visible = torch.cuda.device_count() if cuda else 0
    if gpus is not None:
        if gpus < 1:
            raise ValueError(f"--gpus must be at least 1, got {gpus}")
        if cuda and gpus > visible:
            raise ValueError(f"--gpus {gpus}: only {visible} GPU(s) visible")
        return gpus
    return max(visible, 1) if cuda and torch.device(device).index is None else 1


def launch(main: Callable[[argparse.Namespace], Any], args: argparse.Namespace, gpus: int | None,
           device: str) -> int:
    """Run ``main(args)`` once per worker and return the exit status (0, or the largest a worker had).

    One worker (under torchrun, one GPU, CPU by default): ``main(args)`` in this process. ``N > 1``: start
    ``N`` processes on this machine with torchrun's environment (``RANK = LOCAL_RANK``, ``WORLD_SIZE``,
    ``MASTER_ADDR``/``MASTER_PORT``), so ``init_distributed`` gives each ``cuda:LOCAL_RANK`` (or a gloo CPU
    worker), training scripts run DistributedDataParallel and per-image stages take shard ``RANK/N``.
    A worker's status is ``main``'s return value's ``exit_code`` (0 without one), 1 if it raised.
    """
    count = worker_count(gpus, device)
    if count == 1:
        return _exit_code(main(args))
    kind = "GPU" if torch.device(device).type == "cuda" else "CPU (gloo, standing in for GPUs)"
    print(f"starting {count} worker processes, one per {kind}; --gpus 1 or CUDA_VISIBLE_DEVICES limits this",
          flush=True)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    context = multiprocessing.get_context("spawn")
    threads = 0 if kind == "GPU" else max(1, (os.cpu_count() or 1) // count)  # CPU workers share the cores
    workers = [context.Process(target=_worker, args=(main, args, rank, count, port, threads))
               for rank in range(count)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    return max(abs(worker.exitcode or 0) for worker in workers)


def _worker(main: Callable[[argparse.Namespace], Any], args: argparse.Namespace, rank: int, count: int,
            port: int, threads: int) -> None:
    if threads:
        torch.set_num_threads(threads)
    os.environ.update({"RANK": str(rank), "LOCAL_RANK": str(rank), "WORLD_SIZE": str(count),
                       "LOCAL_WORLD_SIZE": str(count), "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port)})
    sys.exit(_exit_code(main(args)))


def _exit_code(result: Any) -> int:
    return int(getattr(result, "exit_code", 0) or 0)
