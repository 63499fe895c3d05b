"""The per-image loop every per-image stage shares: sharding, resume, progress, failure summary."""

from __future__ import annotations

import argparse
import errno
import multiprocessing
import sys
import time
import traceback
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path

import torch
from tqdm import tqdm

from tool.dist import parse_shard, shard_ids
from tool.label_io import probe_output_dir, remove_stale_temporaries

CpuWork = Callable[[], None]  # an image's CPU part (dense CRF, file writes): picklable, e.g. a partial


def add_cpu_workers_argument(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """``--cpu_workers``: the processes that run each image's CPU part (``run_per_image``, ``cpu_workers``)."""
    parser.add_argument("--cpu_workers", default=None, type=int,
                        help="processes that run the dense CRF and write each image's files while this "
                             "process computes the next images on the device (0: here, one image after the "
                             "other; each worker of a several-GPU run has its own). Default: "
                             f"{GPU_CPU_WORKERS} with a GPU; 0 on a CPU, where torch's threads already use "
                             "every core")
    return parser


GPU_CPU_WORKERS = 2  # not yet measured on a GPU


def resolve_cpu_workers(value: int | None, device: torch.device | str) -> int:
    """``--cpu_workers`` as given, or its default for ``device``: ``GPU_CPU_WORKERS`` on CUDA, 0 on a CPU."""
    if value is not None:
        return value
    return GPU_CPU_WORKERS if torch.device(device).type == "cuda" else 0


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
    prepare: Callable[[list[str]], None] | None = None,
    cpu_workers: int = 0,
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
    """
    if batch_size < 1:
        raise ValueError(f"batch size must be at least 1, got {batch_size}")
    if cpu_workers < 0:
        raise ValueError(f"--cpu_workers must be at least 0, got {cpu_workers}")
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
            tqdm.write(traceback.format_exc(), file=sys.stderr)
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

    def finish(batch: list[str]) -> None:
        error: Exception | None = None
        if prepare is not None:
            try:
                prepare(batch)
            except (KeyboardInterrupt, SystemExit):
                raise
            except Exception as err:  # noqa: BLE001 - reported for every image of the batch below
                error = err
        for image_id in batch:
            try:
                if error is not None:
                    raise error
                work = process(image_id)
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

    try:
        batch: list[str] = []
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
            batch.append(image_id)
            if len(batch) == batch_size:
                finish(batch)
                batch = []
        if batch and not summary.stopped:
            finish(batch)
        drain(0)
    finally:
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
