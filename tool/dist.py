"""torchrun helpers: rank and world size from the environment, falling back to one process; and
``launch``, which makes a plain ``python script.py`` use every visible GPU the way torchrun would, and stops
every worker as soon as one fails."""

from __future__ import annotations

import argparse
import contextlib
import multiprocessing
import multiprocessing.connection
import os
import signal
import socket
import sys
import traceback
from collections.abc import Callable, Iterable, Iterator
from multiprocessing.process import BaseProcess
from typing import Any

import torch
import torch.distributed as dist

from tool.cli import BadValueError, UserError


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


def cores_per_gpu() -> int:
    """The CPU cores this process may use divided by the visible GPUs (at least 1): the share of each GPU's
    worker, for sizing its loader and CPU-work processes."""
    return max(1, len(os.sched_getaffinity(0)) // max(1, torch.cuda.device_count()))


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
        raise BadValueError(f"--shard must look like i/n (e.g. 0/4), got {shard!r}") from err
    if not 0 <= index < count:
        raise BadValueError(f"--shard {shard}: need 0 <= i < n")
    return index + count * rank, count * world


def shard_ids(ids: list[str], index: int, count: int) -> list[str]:
    """The ids this shard processes: ``ids[index::count]``."""
    return ids[index::count]


def add_gpus_argument(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """``--gpus``: the worker processes ``launch`` starts (the same flag in every stage script)."""
    parser.add_argument("--gpus", default=None, type=int,
                        help="worker processes, one per GPU (default: every visible GPU with --device cuda, "
                             "for a training script the most that divide --batch_size; 1 on CPU; ignored "
                             "under torchrun). With --device cpu, N > 1 starts N CPU workers (gloo) standing "
                             "in for GPUs")
    return parser


def worker_count(gpus: int | None, device: str, batch_size: int | None = None) -> int:
    """How many workers ``launch`` starts, decided before any starts.

    Under torchrun: 1 (this process is one worker already). ``gpus`` if given (at most the visible GPUs on
    CUDA). Else, for a CUDA device without an index, the most visible GPUs over which the global
    ``batch_size`` divides (all of them without one; a line says when fewer than all are used); 1 on CPU.
    A global ``batch_size`` that the workers (or torchrun's processes) cannot share evenly is refused with a
    :class:`UserError`.
    """
    if "WORLD_SIZE" in os.environ:
        world = int(os.environ["WORLD_SIZE"])
        if batch_size is not None and batch_size % world:
            raise UserError(f"--batch_size {batch_size} (the global batch) does not divide over torchrun's {world} "
                            f"processes: pass a multiple of {world}, or a --nproc_per_node that divides {batch_size}")
        return 1
    dev = torch.device(device)
    cuda = dev.type == "cuda"
    visible = torch.cuda.device_count() if cuda else 0
    if cuda and (dev.index or 0) >= visible:
        raise UserError(f"--device {device}: {visible} CUDA GPU(s) visible (check the driver and "
                        "CUDA_VISIBLE_DEVICES), or pass --device cpu")
    if gpus is not None:
        if gpus < 1:
            raise BadValueError(f"--gpus must be at least 1, got {gpus}")
        if cuda and gpus > visible:
            raise BadValueError(f"--gpus {gpus}: only {visible} GPU(s) visible; pass --gpus {max(visible, 1)} or less")
        if batch_size is not None and batch_size % gpus:
            raise BadValueError(f"--gpus {gpus}: --batch_size {batch_size} (the global batch) does not divide over "
                                f"{gpus} workers; pass a --batch_size that is a multiple of {gpus}, or a --gpus "
                                f"that divides {batch_size}")
        return gpus
    if not cuda or dev.index is not None or visible <= 1:
        return 1
    count = max(k for k in range(1, visible + 1) if batch_size is None or batch_size % k == 0)
    if count < visible:
        print(f"{visible} GPUs visible, but --batch_size {batch_size} (the global batch) divides over {count} of them: "
              f"using {count} (a --batch_size that is a multiple of {visible} uses all; --gpus chooses)", flush=True)
    return count


def launch(main: Callable[[argparse.Namespace], Any], args: argparse.Namespace, gpus: int | None,
           device: str) -> int:
    """Run ``main(args)`` once per worker and return the exit status (0, or the largest a worker had).

    The worker count is :func:`worker_count`'s (``args.batch_size``, where the script has one, is the global
    batch the workers share). One worker (under torchrun, one GPU, CPU by default): ``main(args)`` in this
    process. ``N > 1``: start ``N`` processes on this machine with torchrun's environment (``RANK = LOCAL_RANK``,
    ``WORLD_SIZE``, ``MASTER_ADDR``/``MASTER_PORT``), so ``init_distributed`` gives each ``cuda:LOCAL_RANK`` (or a
    gloo CPU worker), training scripts run DistributedDataParallel and per-image stages take shard ``RANK/N``.
    A worker's status is ``main``'s return value's ``exit_code`` (0 without one).

    The workers are watched: when one raises or dies (e.g. CUDA out of memory, or killed for host memory), the
    others, which would wait for it in a collective until NCCL's watchdog gives up, are stopped at once;
    a :class:`UserError` in a worker is raised here with its rank (one ``error: …`` line under ``cli.run``);
    any other failure prints one ``error: worker R …`` line with the worker's error and returns 1.
    """
    count = worker_count(gpus, device, getattr(args, "batch_size", None))
    if count == 1:
        return _exit_code(main(args))
    kind = "GPU" if torch.device(device).type == "cuda" else "CPU (gloo, standing in for GPUs)"
    print(f"starting {count} worker processes, one per {kind}; --gpus 1 or CUDA_VISIBLE_DEVICES limits this",
          flush=True)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    context = multiprocessing.get_context("spawn")
    threads = max(1, len(os.sched_getaffinity(0)) // count)  # the workers share the cores (torchrun: 1 each)
    workers, reports = [], []
    try:
        for rank in range(count):
            receive, send = context.Pipe(duplex=False)
            worker = context.Process(target=_worker, args=(main, args, rank, count, port, threads, send),
                                     name=f"worker {rank}")
            worker.start()
            send.close()
            workers.append(worker)
            reports.append(receive)
        return _watch(workers, reports)
    except BaseException:  # Ctrl-C or an error here: leave no worker behind
        _stop(workers)
        raise


REPORT_CHARS = 2000  # a worker's error message is cut to this length (its traceback is on its stderr)


def _worker(main: Callable[[argparse.Namespace], Any], args: argparse.Namespace, rank: int, count: int,
            port: int, threads: int, report: multiprocessing.connection.Connection) -> None:
    """One worker: run ``main(args)``, send ``("done", status)``, ``("user", message)`` for a
    :class:`UserError` or ``("error", message)`` to the parent, and exit with the status."""
    torch.set_num_threads(threads)
    os.environ.update({"RANK": str(rank), "LOCAL_RANK": str(rank), "WORLD_SIZE": str(count),
                       "LOCAL_WORLD_SIZE": str(count), "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port)})
    try:
        code = _exit_code(main(args))
    except UserError as err:
        report.send(("user", str(err)[:REPORT_CHARS]))
        sys.exit(2)
    except SystemExit as err:
        if err.code is None or isinstance(err.code, int):
            code = err.code or 0
        else:  # SystemExit("message")
            report.send(("error", str(err.code)[:REPORT_CHARS]))
            sys.exit(1)
    except BaseException as err:  # noqa: BLE001 - reported to the parent, which stops the other workers
        traceback.print_exc()
        sys.stderr.flush()
        report.send(("error", f"{type(err).__name__}: {err}"[:REPORT_CHARS]))
        sys.exit(1)
    report.send(("done", code))
    sys.exit(code)


def _watch(workers: list[BaseProcess], reports: list[multiprocessing.connection.Connection]) -> int:
    """Wait for every worker; at the first one that fails, stop the others and report it (see ``launch``)."""
    codes: dict[int, int] = {}
    while len(codes) < len(workers):
        running = {w.sentinel: rank for rank, w in enumerate(workers) if rank not in codes}
        for sentinel in multiprocessing.connection.wait(list(running)):
            rank = running[sentinel]
            workers[rank].join()
            codes[rank] = workers[rank].exitcode or 0
            report = reports[rank].recv() if reports[rank].poll() else None
            if report is not None and report[0] == "done":
                continue
            _stop(workers)
            if report is not None and report[0] == "user":
                raise UserError(f"worker {rank} of {len(workers)}: {report[1]}")
            if report is not None:
                what = f"failed: {report[1]}"
            elif codes[rank] < 0:
                what = f"was killed by signal {-codes[rank]} ({signal.strsignal(-codes[rank])}; out of host memory?)"
            else:
                what = f"exited with status {codes[rank]} without a report"
            print(f"error: worker {rank} of {len(workers)} {what}; stopped the other workers", file=sys.stderr,
                  flush=True)
            return 1
    return max(abs(code) for code in codes.values())


def _stop(workers: Iterable[BaseProcess], grace: float = 5.0) -> None:
    """Terminate the workers still running (SIGTERM, then SIGKILL after ``grace`` seconds) and reap them."""
    workers = [w for w in workers if w.pid is not None]
    for worker in workers:
        if worker.is_alive():
            worker.terminate()
    for worker in workers:
        worker.join(grace)
        if worker.is_alive():
            worker.kill()
            worker.join()


def _exit_code(result: Any) -> int:
    return int(getattr(result, "exit_code", 0) or 0)
