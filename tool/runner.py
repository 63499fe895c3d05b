"""The per-image loop every per-image stage shares: sharding, resume, progress, failure summary."""

from __future__ import annotations

import argparse
import errno
import multiprocessing
import sys
import time
import traceback
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from tool.dist import cores_per_gpu, parse_shard, shard_ids
from tool.label_io import probe_output_dir, remove_stale_temporaries

CpuWork = Callable[[], None]  # an image's CPU part (dense CRF, file writes): picklable, e.g. a partial


def add_cpu_workers_argument(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """``--cpu_workers``: the processes that run each image's CPU part (``run_per_image``, ``cpu_workers``)."""
    parser.add_argument("--cpu_workers", default=None, type=int,
                        help="processes that run the dense CRF and write each image's files while this "
                             "process computes the next images on the device (0: here, one image after the "
                             "other; each worker of a several-GPU run has its own). Default with a GPU: "
                             f"{GPU_CPU_WORKERS}, at most half the CPU cores per GPU (measured: docs/gpu.md); "
                             "0 on a CPU, where torch's threads already use every core")
    return parser


GPU_CPU_WORKERS = 4  # H200 + 16 cores: 2.4x / 2.6x for infer_SEAM / infer_seg (2 workers: 1.9x / 1.8x)
GPU_LOAD_WORKERS = 2  # H200 + 16 cores: 1.25x infer_SEAM, 1.16x A2GNN box (docs/gpu.md)


def resolve_cpu_workers(value: int | None, device: torch.device | str) -> int:
    """``--cpu_workers`` as given, or its default for ``device``: on CUDA ``GPU_CPU_WORKERS``, at most half
    the CPU cores per visible GPU (at least 1); 0 on a CPU."""
    if value is not None:
        return value
    if torch.device(device).type != "cuda":
        return 0
    return max(1, min(GPU_CPU_WORKERS, cores_per_gpu() // 2))


def add_load_workers_argument(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """``--num_workers`` of a per-image stage: the processes that read the next images' files while this one
    computes (``run_per_image``, ``load_workers``); the upstream flag name and meaning (loader processes)."""
    parser.add_argument("--num_workers", default=None, type=int,
                        help="processes that read and decode the next images' files (image, seeds, boxes, "
                             "CAMs, scaled copies) while this process computes the current ones on the device "
                             f"(0: here, before each image). Default: {GPU_LOAD_WORKERS} with a GPU; "
                             "0 on a CPU (no gain measured on 2 cores; both measured in docs/gpu.md)")
    return parser


def resolve_load_workers(value: int | None, device: torch.device | str) -> int:
    """``--num_workers`` as given, or its default for ``device``: ``GPU_LOAD_WORKERS`` on CUDA, 0 on a CPU."""
    if value is not None:
        return value
    return GPU_LOAD_WORKERS if torch.device(device).type == "cuda" else 0


@dataclass
class RunSummary:
    """What a per-image run did; ``failed`` holds ``(image_id, message)`` pairs. ``empty``: the id list
    had no ids (and that was not allowed); ``stopped``: why the run stopped early (a full disk)."""

    done: int = 0
    skipped: int = 0
    failed: list[tuple[str, str]] = field(default_factory=list)
    seconds: float = 0.0
    empty: bool = False
    stopped: str | None = None

    @property
    def exit_code(self) -> int:
        return 1 if self.failed or self.empty or self.stopped else 0

    def line(self, desc: str) -> str:
        return (f"{desc}: done {self.done}, skipped {self.skipped} (output exists), "
                f"failed {len(self.failed)}, {self.seconds:.1f} s")


def run_per_image(
    ids: Sequence[str],
    process: Callable[[str], CpuWork | None],
    outputs: Callable[[str], Sequence[Path]],
    desc: str,
    shard: str | None = None,
    overwrite: bool = False,
    verbose_errors: bool = False,
    known_failures: Mapping[str, str] | None = None,
    allow_empty: bool = False,
    batch_size: int = 1,
    prepare: Callable[..., None] | None = None,
    cpu_workers: int = 0,
    load: Callable[[str], Any] | None = None,
    load_workers: int = 0,
) -> RunSummary:
    """Call ``process(image_id)`` for this shard's ids (and run what it returns) and report what happened.

    ``shard`` is ``'i/n'`` (split again among the workers of a several-worker run, ``parse_shard``) or
    ``None`` (then the torchrun rank/world size, or everything). An id whose
    ``outputs(id)`` all exist is skipped unless ``overwrite`` (``process`` must write its outputs
    atomically, so an existing file is a complete one). Before any image is processed, every output
    folder of the pending ids is created and probed with a test write (a read-only folder fails at once,
    naming it) and stale temporaries of killed writes of those outputs are removed. An exception in
    ``process`` is reported with the image id and the loop goes on; the failures are listed at the end.
    ``known_failures`` maps ids already found bad (e.g. by ``voc12.preflight``) to their message: they
    count as failed and ``process`` is not called for them. A full disk stops the run (every later
    image would fail too). An empty id list is a warning and exit code 1 unless ``allow_empty``.
    ``KeyboardInterrupt`` stops. ``prepare``: called with every ``batch_size`` consecutive ids still to do
    (known failures left out), before their ``process`` calls (a batched stage computes them together
    there, ``process`` writes one image); an exception in it fails each id of that batch.
    ``process`` may return the image's CPU part, a picklable ``CpuWork`` (a ``functools.partial`` of a
    module-level function, no torch): with ``cpu_workers`` > 0 it runs in a pool of that many processes while
    ``process`` goes on with the next images (at most ``2 × cpu_workers`` wait), else at once; the image
    is done (or failed, named) when it has run.
    ``load``: reads an image's inputs (its files, decoded); then ``process(image_id, load(image_id))`` and
    ``prepare(batch, [load(image_id) for image_id in batch])``. With ``load_workers`` > 0 a
    ``torch.utils.data.DataLoader`` of that many processes calls it, in the loop's order, ahead of the
    device work (at least one batch ahead), else it runs here just before; ``load`` must be picklable
    where processes are spawned, not forked. An exception in ``load`` fails that image only, named.
    """
    if batch_size < 1:
        raise ValueError(f"batch size must be at least 1, got {batch_size}")
    if cpu_workers < 0:
        raise ValueError(f"--cpu_workers must be at least 0, got {cpu_workers}")
    if load_workers < 0:
        raise ValueError(f"--num_workers must be at least 0, got {load_workers}")
    index, count = parse_shard(shard)
    mine = shard_ids(list(ids), index, count)
    known_failures = known_failures or {}
    summary = RunSummary()
    start = time.time()
    if not ids:
        summary.empty = not allow_empty
        print(f"{'note' if allow_empty else 'warning'}: {desc}: the id list is empty, nothing to do",
              file=sys.stderr)
    elif not mine:
        print(f"note: {desc}: shard {index}/{count} of {len(ids)} ids is empty", file=sys.stderr)
    planned = {image_id: [Path(p) for p in outputs(image_id)] for image_id in mine}
    pending = {image_id for image_id, paths in planned.items()
               if overwrite or not paths or not all(p.exists() for p in paths)}
    pending_outputs = [p for image_id in pending if image_id not in known_failures for p in planned[image_id]]
    for folder in sorted({p.parent for p in pending_outputs}):
        probe_output_dir(folder, f"{desc} output folder")
    for stale in remove_stale_temporaries(pending_outputs):
        print(f"removed a stale temporary of a killed write: {stale}", file=sys.stderr)

    bar = tqdm(total=len(mine), desc=desc if count == 1 else f"{desc} [{index}/{count}]", dynamic_ncols=True)

    def fail(image_id: str, err: Exception) -> None:
        message = str(err) if isinstance(err, _KnownFailure) else f"{type(err).__name__}: {err}"
        summary.failed.append((image_id, message))
        tqdm.write(f"FAILED {image_id}: {message}", file=sys.stderr)
        if verbose_errors:
            tqdm.write(err.trace if isinstance(err, _LoadFailure) else traceback.format_exc(), file=sys.stderr)
        if isinstance(err, OSError) and err.errno == errno.ENOSPC:
            summary.stopped = (f"stopped: {err}. Free space there, or write to another folder, then "
                               "rerun the same command: finished images are skipped (--overwrite False)")
            tqdm.write(summary.stopped, file=sys.stderr)

    # fork where there is one, as torch's DataLoader: no interpreter start per worker; the parts use no torch
    method = "fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn"
    pool = ProcessPoolExecutor(cpu_workers, mp_context=multiprocessing.get_context(method)) if cpu_workers else None
    in_flight: dict[Future, str] = {}

    def tick() -> None:
        bar.update(1)
        bar.set_postfix(failed=len(summary.failed), refresh=False)

    def settle(futures) -> None:
        for future in futures:
            image_id = in_flight.pop(future)
            try:
                future.result()
                summary.done += 1
            except Exception as err:  # noqa: BLE001 - as in process: name the image, go on
                fail(image_id, err)
            tick()

    def drain(most: int) -> None:
        """Collect the finished CPU parts; wait until at most ``most`` are left."""
        settle([f for f in list(in_flight) if f.done()])
        while len(in_flight) > most:
            settle(wait(in_flight, return_when=FIRST_COMPLETED).done)

    def finish(batch: list[str], inputs: list) -> None:
        error: Exception | None = None
        if prepare is not None:
            try:
                prepare(batch) if load is None else prepare(batch, inputs)
            except (KeyboardInterrupt, SystemExit):
                raise
            except Exception as err:  # noqa: BLE001 - reported for every image of the batch below
                error = err
        for image_id, loaded in zip(batch, inputs, strict=True):
            try:
                if error is not None:
                    raise error
                work = process(image_id) if load is None else process(image_id, loaded)
                if work is not None and pool is not None:
                    in_flight[pool.submit(work)] = image_id
                else:
                    if work is not None:
                        work()
                    summary.done += 1
                    tick()
            except (KeyboardInterrupt, SystemExit):
                raise
            except Exception as err:  # noqa: BLE001 - one bad image must not stop a 10,000-image run
                fail(image_id, err)
                tick()
            drain(2 * cpu_workers)
            if summary.stopped:
                return

    todo = [image_id for image_id in mine if image_id in pending and image_id not in known_failures]
    loaded_items = _prefetch(todo, load, load_workers, batch_size)
    try:
        batch: list[str] = []
        inputs: list = []
        for image_id in mine:
            if summary.stopped:
                break
            if image_id not in pending:
                summary.skipped += 1
                bar.update(1)
                continue
            if image_id in known_failures:
                fail(image_id, _KnownFailure(known_failures[image_id]))
                bar.update(1)
                continue
            loaded_id, loaded = next(loaded_items)
            if loaded_id != image_id:
                raise RuntimeError(f"{desc}: the loader is out of step: got {loaded_id}, expected {image_id}")
            if isinstance(loaded, _LoadFailure):
                fail(image_id, loaded)
                tick()
                continue
            batch.append(image_id)
            inputs.append(loaded)
            if len(batch) == batch_size:
                finish(batch, inputs)
                batch, inputs = [], []
        if batch and not summary.stopped:
            finish(batch, inputs)
        drain(0)
    finally:
        del loaded_items  # stops the loader's processes
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)
    bar.close()
    summary.seconds = time.time() - start
    print(summary.line(desc))
    if summary.failed:
        print(f"{len(summary.failed)} image(s) failed:", file=sys.stderr)
        for image_id, message in summary.failed:
            print(f"  {image_id}: {message}", file=sys.stderr)
    if summary.stopped:
        print(summary.stopped, file=sys.stderr)
    return summary


class _KnownFailure(Exception):
    """An id reported bad before the loop (its message is shown as it is)."""


class _LoadFailure(_KnownFailure):
    """What ``load`` raised for an id, as text (any exception crosses from a loader process); ``trace``: its
    traceback for ``verbose_errors``."""

    def __init__(self, message: str, trace: str):
        super().__init__(message)
        self.trace = trace

    def __reduce__(self):
        return _LoadFailure, (str(self), self.trace)


class _LoadDataset(Dataset):
    """Item ``k``: ``(ids[k], load(ids[k]))``, or ``(ids[k], _LoadFailure)`` if ``load`` raised."""

    def __init__(self, ids: list[str], load: Callable[[str], Any]):
        self.ids, self.load = ids, load

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, index: int) -> tuple[str, Any]:
        image_id = self.ids[index]
        try:
            return image_id, self.load(image_id)
        except Exception as err:  # noqa: BLE001 - fails this image only, named by the loop
            return image_id, _LoadFailure(f"{type(err).__name__}: {err}", traceback.format_exc())


def _one(batch: list) -> Any:
    """``collate_fn`` that keeps the one sample of a batch as it is."""
    return batch[0]


def _prefetch(ids: list[str], load: Callable[[str], Any] | None, workers: int,
              batch_size: int) -> Iterator[tuple[str, Any]]:
    """``(id, inputs)`` of ``ids`` in order: ``inputs`` is ``load(id)`` read by ``workers`` DataLoader processes
    (enough ahead for a batch of ``batch_size``; 0: here, when asked), a ``_LoadFailure``, or ``None`` without
    ``load``."""
    if load is None:
        return ((image_id, None) for image_id in ids)
    ahead = {"prefetch_factor": max(2, -(-batch_size // workers))} if workers else {}
    return iter(DataLoader(_LoadDataset(ids, load), batch_size=1, shuffle=False, num_workers=workers,
                           collate_fn=_one, **ahead))
