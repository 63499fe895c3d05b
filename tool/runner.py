"""The per-image loop every per-image stage shares: sharding, resume, progress, failure summary."""

from __future__ import annotations

import sys
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from tqdm import tqdm

from tool.dist import parse_shard, shard_ids


@dataclass
class RunSummary:
    """What a per-image run did; ``failed`` holds ``(image_id, message)`` pairs."""

    done: int = 0
    skipped: int = 0
    failed: list[tuple[str, str]] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def exit_code(self) -> int:
        return 1 if self.failed else 0

    def line(self, desc: str) -> str:
        return (f"{desc}: done {self.done}, skipped {self.skipped} (output exists), "
                f"failed {len(self.failed)}, {self.seconds:.1f} s")


def run_per_image(
    ids: Sequence[str],
    process: Callable[[str], None],
    outputs: Callable[[str], Sequence[Path]],
    desc: str,
    shard: str | None = None,
    overwrite: bool = False,
    verbose_errors: bool = False,
    batch_size: int = 1,
    prepare: Callable[[list[str]], None] | None = None,
) -> RunSummary:
    """Call ``process(image_id)`` for this shard's ids and report what happened.

    ``shard`` is ``'i/n'`` or ``None`` (then the torchrun rank/world size, or everything). An id whose
    ``outputs(id)`` all exist is skipped unless ``overwrite`` (``process`` must write its outputs
    atomically, so an existing file is a complete one). An exception in ``process`` is reported with the
    image id and the loop goes on; the failures are listed at the end. ``KeyboardInterrupt`` stops.
    ``prepare``: called with every ``batch_size`` consecutive ids still to do, before their ``process``
    calls (a batched stage computes them together there, ``process`` writes one image); an exception in
    it fails each id of that batch.
    """
    if batch_size < 1:
        raise ValueError(f"batch size must be at least 1, got {batch_size}")
    index, count = parse_shard(shard)
    mine = shard_ids(list(ids), index, count)
    summary = RunSummary()
    start = time.time()
    bar = tqdm(total=len(mine), desc=desc if count == 1 else f"{desc} [{index}/{count}]", dynamic_ncols=True)

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
                process(image_id)
                summary.done += 1
            except (KeyboardInterrupt, SystemExit):
                raise
            except Exception as err:  # noqa: BLE001 - one bad image must not stop a 10,000-image run
                message = f"{type(err).__name__}: {err}"
                summary.failed.append((image_id, message))
                tqdm.write(f"FAILED {image_id}: {message}", file=sys.stderr)
                if verbose_errors:
                    tqdm.write(traceback.format_exc(), file=sys.stderr)
            bar.update(1)
            bar.set_postfix(failed=len(summary.failed), refresh=False)

    pending: list[str] = []
    for image_id in mine:
        paths = list(outputs(image_id))
        if not overwrite and paths and all(Path(p).exists() for p in paths):
            summary.skipped += 1
            bar.update(1)
            continue
        pending.append(image_id)
        if len(pending) == batch_size:
            finish(pending)
            pending = []
    if pending:
        finish(pending)
    bar.close()
    summary.seconds = time.time() - start
    print(summary.line(desc))
    if summary.failed:
        print(f"{len(summary.failed)} image(s) failed:", file=sys.stderr)
        for image_id, message in summary.failed:
            print(f"  {image_id}: {message}", file=sys.stderr)
    return summary
