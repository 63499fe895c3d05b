"""Window affinities of the affinity net (algorithm.md §0.3): ``WindowL1Distance`` against the unfolded formula.

Forward + backward of ``aff_crf = mean_c |f_i − f_j|`` over the ``(2r+1)²`` window, r = 4, 448 channels,
at the stage-2 training shape of the published schedule (batch 4, crop 448 → 56×56), at the demo's
(batch 8, crop 128 → 16×16) and at one VOC image in stage 3 (47×63, forward only, no grad). The reference
unfolds the window into an ``(N, C, (2r+1)², h, w)`` tensor and lets autograd differentiate it.
Time: median of ``--repeats`` runs after one warm-up. The unfolded tensor alone is
``N·C·(2r+1)²·h·w·4`` bytes (printed), which is what the shifted-slice version never allocates.

    python benchmarks/bench_window_affinity.py --threads 2
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from network.resnet38_aff_gated import window_affinity  # noqa: E402

CASES = (("stage 2, published (4, 448, 56, 56)", (4, 448, 56, 56), True),
         ("stage 2, demo (8, 448, 16, 16)", (8, 448, 16, 16), True),
         ("stage 3, VOC image (1, 448, 47, 63)", (1, 448, 47, 63), False))


def unfolded(f: torch.Tensor, radius: int) -> torch.Tensor:
    k = 2 * radius + 1
    neighbours = F.unfold(f, kernel_size=k, padding=radius).view(f.shape[0], f.shape[1], k, k, *f.shape[2:])
    return (neighbours - f[:, :, None, None]).abs().mean(dim=1)


def seconds(fn, f: torch.Tensor, radius: int, backward: bool, repeats: int) -> float:
    times = []
    for _ in range(repeats + 1):
        start = time.perf_counter()
        with torch.set_grad_enabled(backward):
            out = fn(f, radius)
            if backward:
                out.sum().backward()
                f.grad = None
        times.append(time.perf_counter() - start)
    return statistics.median(times[1:])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--radius", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)

    print(f"{'case':<38}{'unfolded s':>12}{'ours s':>10}{'speedup':>9}{'unfold MiB':>12}")
    for name, shape, backward in CASES:
        f = torch.randn(*shape, requires_grad=backward)
        ref = seconds(unfolded, f, args.radius, backward, args.repeats)
        ours = seconds(lambda x, r: window_affinity(x, r)[1], f, args.radius, backward, args.repeats)
        mib = shape[0] * shape[1] * (2 * args.radius + 1) ** 2 * shape[2] * shape[3] * 4 / 2 ** 20
        print(f"{name:<38}{ref:>12.3f}{ours:>10.3f}{ref / ours:>8.1f}x{mib:>12.0f}")


if __name__ == "__main__":
    main()
