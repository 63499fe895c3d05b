"""Worker functions of tests/test_dist.py, in a module of their own so that each spawned worker imports little."""

import argparse
import time

import torch

from tool.dist import get_rank, process_group


def rank1_fails_while_rank0_waits_in_all_reduce(args):
    """Rank 1 raises (a CUDA out-of-memory stand-in) while rank 0 waits for it in an all-reduce; rank 0 then
    blocks as NCCL would (for minutes, until its watchdog), where gloo would fail fast."""
    with process_group("cpu"):
        if get_rank() == 1:
            (args.out / "failed_at").write_text(repr(time.time()))
            raise args.error
        try:
            torch.distributed.all_reduce(torch.ones(1))
        except RuntimeError:
            pass
        time.sleep(600)


def rank1_returns_failures_early(args):
    """Rank 1 ends at once with per-image failures (status 1, no exception); rank 0 finishes later."""
    if get_rank() == 1:
        return argparse.Namespace(exit_code=1)
    time.sleep(1.0)
    (args.out / "rank0_done").write_text("yes")
    return None
