"""torchrun helpers: rank and world size from the environment, falling back to one process."""

from __future__ import annotations

import os

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


def parse_shard(shard: str | None) -> tuple[int, int]:
    """``'i/n'`` → ``(i, n)``; ``None`` → the torchrun rank and world size (``(0, 1)`` without torchrun)."""
    if shard is None:
        return get_rank(), get_world_size()
    try:
        index, count = (int(v) for v in shard.split("/"))
    except ValueError as err:
        raise ValueError(f"--shard must look like i/n (e.g. 0/4), got {shard!r}") from err
    if not 0 <= index < count:
        raise ValueError(f"--shard {shard}: need 0 <= i < n")
    return index, count


def shard_ids(ids: list[str], index: int, count: int) -> list[str]:
    """The ids this shard processes: ``ids[index::count]``."""
    return ids[index::count]
