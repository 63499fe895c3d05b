"""Per-image A2GNN step: our sparse/tiled implementation against a dense one of the published formulation.

At VOC size (375×500 → 376×504 padded → 47×63 nodes, 5632-d features, r = 4, box schedule with two
boxes) both variants run the same training step on the same inputs: ours = ``tool.propagate.train_step``
(window graph, tiled attention, seed loss with its gradient in one pass, MP loss on box crops and
points, CRF kernel built once per image and counted in the setup); dense = the published formulation
written below (``N × N`` adjacency, window mask and cosine matrices with −1e9 masking, logits and 256-d
embeddings upsampled to full resolution every epoch for the seed and MP losses, the gated CRF loss
module called every epoch). Graph build for dense is our vectorized ``to_dense`` (faster than the
published Python loop over nodes; it only favours dense, and is outside the 300 epochs anyway).

Time: median seconds of a step of phase 1 (seed + MP) and phase 2 (+ 0.01·CRF) after one warm-up step
(the median resists bursts of other work on a shared machine),
in a child process with the default allocator; per image = graph build + 150 steps of each phase (the
box schedule) + inference, extrapolated from the measured steps.
Peak memory of the GNN step = the largest memory in use during one step of each phase minus the memory
in use right before them, after one warm-up step of each phase: what is held across steps (inputs, node
features, graph structure, model, gradients and Adam state) is not counted, for either variant (so the
dense variant's two ``N × N`` structure matrices are not counted either). It is measured in a separate
child: on CPU it resets the peak resident set (``echo 5 > /proc/self/clear_refs``) before the steps and
reports ``VmHWM − VmRSS``, with glibc's mmap threshold at 64 KiB so that freed tensors leave the
resident set (that setting slows allocation down, hence the separate child for time); where ``/proc``
cannot be reset it falls back to ``ru_maxrss``. On CUDA: ``torch.cuda.max_memory_allocated`` minus the
memory allocated before the steps.
Scaling: our step at 1×, 2×, 4× the pixels.

``--batch_images 1,8,32`` prints a second table instead: ``K`` VOC-size images (different random inputs)
trained together by ``tool.propagate.train_step`` (one A2GNN each), per schedule (box: 150 + 150 epochs
with the MP loss; others: 50 + 50 without): images per second of the GNN training (graph build + both
phases extrapolated from the median step + inference; the affinity network and the dense CRF are not
counted), the peak memory of a batch (CUDA: ``max_memory_allocated`` over the whole batch run; CPU: the
resident-set peak above the start, in its own child) and the hours 10,582 VOC-size images (train_aug)
would take at that rate on this device.

    python benchmarks/bench_a2gnn.py --threads 2   # 3 timed steps per phase
    python benchmarks/bench_a2gnn.py --quick       # 1 timed step per phase, about a minute on 2 cores
    python benchmarks/bench_a2gnn.py --threads 1   # single-threaded (steadier on a shared machine)
    python benchmarks/bench_a2gnn.py --device cuda --batch_images 1,8,32,64
    python benchmarks/bench_a2gnn.py --device cuda --check_sync   # no host synchronisation in an epoch

``--check_sync`` (CUDA only) trains two VOC-size images together for 3 epochs of each phase of each
schedule (after the graph build) under ``torch.cuda.set_sync_debug_mode("warn")`` and prints every operation
that made the host wait for the GPU with the line that called it; exit status 1 if there was one (the CPU
test in tests/test_propagate.py checks the same by profiling).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))  # the dense reference of the gated CRF loss

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from gated_crf_reference import GatedCRFLoss  # noqa: E402

from network.a2gnn import A2GNN  # noqa: E402
from tool.a2gnn_losses import CRF_KERNELS, CRF_RADIUS  # noqa: E402
from tool.graph import window_graph  # noqa: E402
from tool.propagate import (  # noqa: E402
    CRF_WEIGHT,
    ImageInputs,
    PropagateConfig,
    image_generator,
    node_features,
    train_step,
    training_batch,
    upsample,
)
from vocabulary import Box  # noqa: E402

VOC_GRID = (47, 63)
FEATURES = 5632
RADIUS = 4
EPOCHS_PER_PHASE = 150
EPOCHS = {"box": 150, "others": 50}
TRAIN_AUG = 10582


def make_inputs(scale: float, device: torch.device, seed: int = 0) -> dict:
    """Random inputs of a ``scale``× VOC-size image (pixels), on ``device``."""
    g = torch.Generator().manual_seed(seed)
    h, w = (round(s * scale ** 0.5) for s in VOC_GRID)
    hp, wp = 8 * h, 8 * w
    d = 2 * RADIUS + 1
    features = torch.rand(FEATURES, h, w, generator=g).clamp(min=0.3) - 0.3  # sparse-ish, non-negative
    aff = torch.rand(d, d, h, w, generator=g)
    seeds = torch.randint(0, 21, (hp, wp), generator=g)
    seeds[torch.rand(hp, wp, generator=g) < 0.5] = 0
    seeds[torch.rand(hp, wp, generator=g) < 0.3] = 255
    image = torch.randn(3, hp, wp, generator=g)
    boxes = [Box(12, wp // 8, hp // 6, wp // 2, hp - hp // 5), Box(15, wp // 3, hp // 10, wp - 5, hp // 2)]
    return {"features": features.to(device), "aff": aff.to(device), "seeds": seeds.to(device),
            "image": image.to(device), "boxes": boxes, "h": h, "w": w}


# ------------------------------------------------------------------ dense reference (published formulation)

def dense_attention(x, beta, adj, aff_cropping):
    norm2 = torch.norm(x, 2, 1).view(-1, 1)
    cos = torch.div(torch.mm(x, x.t()), torch.mm(norm2, norm2.t()) + 1e-7)
    mask = torch.zeros_like(aff_cropping)
    mask[aff_cropping == 0] = -1e9
    mask[cos < 0] = -1e9
    return torch.mm(F.softmax(beta * cos + mask + 10 * adj, dim=1), x)


def dense_forward(model, x, adj, aff_cropping):
    x = F.dropout(F.relu(x @ model.embeddinglayer.weight[0]), model.dropout_rate, training=model.training)
    for layer in model.attentionlayers:
        x = dense_attention(x, layer.beta[0], adj, aff_cropping)
    return x @ model.outputlayer.weight[0], x


def dense_mp_loss(pred, fts, boxes, seeds):
    """Full-resolution MP loss with consistency checking; ``pred`` (C, Hp, Wp), ``fts`` (d, Hp, Wp)."""
    ce, ce_n, dis, dis_n = 0, 0, 0, 0
    for box in boxes:
        pred_box = pred[:, box.y0:box.y1 + 1, box.x0:box.x1 + 1]
        fts_box = fts[:, box.y0:box.y1 + 1, box.x0:box.x1 + 1]
        ind_row = torch.max(pred_box[box.cls], dim=1).indices
        ind_col = torch.max(pred_box[box.cls], dim=0).indices
        rows = torch.arange(pred_box.shape[1], device=pred.device)
        cols = torch.arange(pred_box.shape[2], device=pred.device)
        points = torch.cat([pred_box[:, rows, ind_row], pred_box[:, ind_col, cols]], dim=1)
        f = torch.cat([fts_box[:, rows, ind_row], fts_box[:, ind_col, cols]], dim=1).t()
        norm = torch.norm(f, 2, 1).view(-1, 1)
        cos = torch.div(f @ f.t(), norm @ norm.t() + 1e-7)
        dis = dis + torch.sum(1 - cos + 1e-5)
        dis_n += cos.numel()
        target = torch.full((points.shape[1],), box.cls, device=pred.device)
        ce = ce + F.cross_entropy(points.t(), target, reduction="sum")
        ce_n += points.shape[1]
        sim = F.cosine_similarity(fts_box.reshape(fts.shape[0], -1), f.mean(0)[:, None], dim=0)
        region = seeds[box.y0:box.y1 + 1, box.x0:box.x1 + 1]
        region[(sim.view(region.shape) < 0) & (region == box.cls)] = 255
    return ce / ce_n + dis / dis_n, seeds


def dense_seed_loss(pred, seeds):
    """Published seed loss on the full-resolution logits: CE over background seeds + CE over foreground."""
    background, foreground = seeds.clone(), seeds.clone()
    background[seeds != 0] = 255
    foreground[seeds == 0] = 255
    return (F.cross_entropy(pred[None], background[None], ignore_index=255)
            + F.cross_entropy(pred[None], foreground[None], ignore_index=255))


def dense_step(model, x, dense, seeds, optimizer, boxes, crf_image, h, w):
    adj, aff_cropping = dense
    model.train()
    optimizer.zero_grad()
    logits, fts = dense_forward(model, x, adj, aff_cropping)
    grid = logits.t().reshape(-1, h, w)
    pred = upsample(grid, tuple(seeds.shape))
    fts_full = upsample(fts.t().reshape(-1, h, w), tuple(seeds.shape))
    mp, seeds = dense_mp_loss(pred, fts_full, boxes, seeds.clone())
    loss = mp + dense_seed_loss(pred, seeds)
    if crf_image is not None:
        crf = GatedCRFLoss()(F.softmax(grid, dim=0)[None], CRF_KERNELS, CRF_RADIUS, {"rgb": crf_image[None]}, h, w)
        loss = loss + CRF_WEIGHT["box"] * crf["loss"]
    loss.backward()
    optimizer.step()
    return seeds, loss.detach()


# ------------------------------------------------------------------ one variant, in a child process

def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def memory_mark(device) -> tuple[int, bool]:
    """Reset the peak and return ``(current bytes, whether /proc's peak could be reset)``."""
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        return torch.cuda.memory_allocated(device), True
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return _status_kib("VmRSS") * 1024, True
    except OSError:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024, False


def memory_peak(device, reset: bool) -> int:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device)
    if reset:
        return _status_kib("VmHWM") * 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def _status_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise OSError(field)


def run_variant(variant: str, scale: float, steps: int, device: torch.device, measure: str) -> dict:
    """Run ``variant`` at ``scale`` in this process; ``measure`` is ``'time'`` (``steps`` timed steps per
    phase) or ``'memory'`` (the peak of one step per phase after one warm-up step per phase)."""
    inputs = make_inputs(scale, device)
    h, w = inputs["h"], inputs["w"]
    torch.manual_seed(0)
    sync(device)
    start = time.perf_counter()
    if variant == "dense":
        x = node_features(inputs["features"])
        adj, edges = window_graph(inputs["aff"], RADIUS).to_dense()
        structure = (adj, edges.float())
        crf_input = F.interpolate(inputs["image"][None], (h, w), mode="bilinear", align_corners=False)[0]
    else:
        structure = training_batch([image_inputs(inputs)], PropagateConfig(schedule="box"))
        _ = structure.graph.tiles, structure.crf.tiles
        crf_input = CRF_WEIGHT["box"]
    sync(device)
    setup = time.perf_counter() - start
    model = A2GNN(FEATURES, 256, 21, 3, 0.5).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=0.035, weight_decay=5e-4)
    seeds, boxes = inputs["seeds"], inputs["boxes"]

    def step(crf):
        if variant == "dense":
            return dense_step(model, x, structure, seeds, optimizer, boxes, crf, h, w)
        return train_step(model, structure, optimizer, crf)

    result = {"variant": variant, "scale": scale, "grid": f"{h}x{w}", "nodes": h * w}
    if measure == "memory":
        for crf in (None, crf_input):  # warm-up: optimizer state, lazy caches, code paths
            step(crf)
        sync(device)
        base, reset = memory_mark(device)
        for crf in (None, crf_input):
            step(crf)
        sync(device)
        return {**result, "peak_mb": (memory_peak(device, reset) - base) / 2 ** 20}
    seconds = []
    for crf in (None, crf_input):
        step(crf)  # warm-up
        times = []
        for _ in range(steps):
            sync(device)
            start = time.perf_counter()
            step(crf)
            sync(device)
            times.append(time.perf_counter() - start)
        seconds.append(statistics.median(times))
    model.eval()
    sync(device)
    start = time.perf_counter()
    with torch.no_grad():
        if variant == "dense":
            dense_forward(model, x, *structure)
        else:
            model(structure.x, structure.graph)
    sync(device)
    infer = time.perf_counter() - start
    return {**result, "phase1_s": seconds[0], "phase2_s": seconds[1], "setup_s": setup + infer,
            "image_s": setup + infer + EPOCHS_PER_PHASE * (seconds[0] + seconds[1])}


def image_inputs(inputs: dict, key: str = "") -> ImageInputs:
    h, w = inputs["h"], inputs["w"]
    return ImageInputs(inputs["features"], inputs["aff"], inputs["seeds"], inputs["image"], (8 * h, 8 * w),
                       boxes=inputs["boxes"], key=key)


def build_training(items: list[ImageInputs], cfg: PropagateConfig, device: torch.device) -> tuple:
    """What the stage builds before the epochs: the batch with its graph and CRF tiles, the stacked A2GNN
    and its Adam. Returns ``(batch, model, optimizer)``."""
    batch = training_batch(items, cfg)
    _ = batch.graph.tiles, batch.crf.tiles
    generators = [image_generator(0, item.key, device) for item in items]
    model = A2GNN(FEATURES, cfg.hidden, cfg.num_class, cfg.nlayers, cfg.dropout, generators)
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    return batch, model, optimizer


def run_batch(schedule: str, images: int, steps: int, device: torch.device, measure: str, scale: float = 1.0
              ) -> dict:
    """``images`` VOC-size images trained together with ``schedule``: seconds of the whole batch
    (``measure='time'``, extrapolated from the median of ``steps`` steps per phase) or its peak memory
    (``'memory'``: one warm-up step and one step per phase, whole-run peak)."""
    cfg = PropagateConfig(schedule=schedule)
    base, reset = memory_mark(device) if measure == "memory" else (0, False)
    items = [image_inputs(make_inputs(scale, device, seed=k), key=str(k)) for k in range(images)]
    sync(device)
    start = time.perf_counter()
    batch, model, optimizer = build_training(items, cfg, device)
    sync(device)
    setup = time.perf_counter() - start
    result = {"schedule": schedule, "images": images}
    if measure == "memory":
        for crf in (None, CRF_WEIGHT[schedule], None, CRF_WEIGHT[schedule]):
            train_step(model, batch, optimizer, crf)
        model.eval()
        with torch.no_grad():
            model(batch.x, batch.graph)
        sync(device)
        return {**result, "peak_mb": (memory_peak(device, reset) - base) / 2 ** 20}
    seconds = []
    for crf in (None, CRF_WEIGHT[schedule]):
        train_step(model, batch, optimizer, crf)  # warm-up
        times = []
        for _ in range(steps):
            sync(device)
            start = time.perf_counter()
            train_step(model, batch, optimizer, crf)
            sync(device)
            times.append(time.perf_counter() - start)
        seconds.append(statistics.median(times))
    model.eval()
    sync(device)
    start = time.perf_counter()
    with torch.no_grad():
        model(batch.x, batch.graph)
    sync(device)
    batch_s = setup + time.perf_counter() - start + EPOCHS[schedule] * sum(seconds)
    return {**result, "step1_s": seconds[0], "step2_s": seconds[1], "batch_s": batch_s}


def synchronising_calls(work: Callable[[], None]) -> list[str]:
    """``work()`` under CUDA's sync debug mode "warn": each call that made the host wait, as ``file:line``."""
    torch.cuda.set_sync_debug_mode("warn")
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            work()
    finally:
        torch.cuda.set_sync_debug_mode("default")
    return [f"{w.filename}:{w.lineno}" for w in caught if "synchroniz" in str(w.message)]


def check_sync(device: torch.device) -> int:
    """``--check_sync``: epochs of both phases of each schedule with CUDA's sync debug mode set to warn; prints
    every synchronising call. Returns how many there were (-1 when the detector misses a planted ``.item()``)."""
    planted = synchronising_calls(lambda: torch.ones(1, device=device).item())
    print(f"control: a planted .item() on {device} is detected: {'yes' if planted else 'NO'}", flush=True)
    if not planted:
        return -1
    found = 0
    for schedule in ("box", "others"):
        cfg = PropagateConfig(schedule=schedule)
        items = [image_inputs(make_inputs(1.0, device, seed=k), key=str(k)) for k in range(2)]
        batch, model, optimizer = build_training(items, cfg, device)
        sync(device)

        def epochs(model=model, batch=batch, optimizer=optimizer, schedule=schedule) -> None:
            for crf in (None, CRF_WEIGHT[schedule]):
                for _ in range(3):
                    train_step(model, batch, optimizer, crf)

        synced = synchronising_calls(epochs)
        sync(device)
        found += len(synced)
        print(f"{schedule}: 3+3 epochs of 2 VOC-size images on {device_name(str(device))}: "
              f"{len(synced)} host synchronisation(s)", flush=True)
        for where in sorted(set(synced)):
            print(f"  at {where}")
    return found


def child(variant: str, scale: float, steps: int, device: str, threads: int, measure: str,
          images: int = 0) -> dict:
    env = dict(os.environ)
    if measure == "memory" and device == "cpu":
        env["MALLOC_MMAP_THRESHOLD_"] = "65536"
    cmd = [sys.executable, __file__, "--child", variant, "--measure", measure, "--scale", str(scale),
           "--steps", str(steps), "--device", device, "--threads", str(threads), "--images", str(images)]
    out = subprocess.run(cmd, env=env, check=True, capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def device_name(device: str) -> str:
    if torch.device(device).type == "cuda":
        return torch.cuda.get_device_name(torch.device(device))
    return f"CPU, {torch.get_num_threads()} threads"


def batch_table(sizes: list[int], steps: int, device: str, threads: int, scale: float = 1.0) -> None:
    """The ``--batch_images`` table."""
    h, w = (round(s * scale ** 0.5) for s in VOC_GRID)
    print(f"device {device} ({device_name(device)}), {steps} timed step(s) per phase, "
          f"{'VOC-size' if scale == 1 else f'{scale}x VOC-size'} images ({h}x{w} grid, 5632-d features, "
          f"r = {RADIUS})")
    header = (f"{'schedule':8} {'images':>6} {'s/step ph1':>11} {'s/step ph2':>11} {'s/batch':>9} "
              f"{'images/s':>9} {'peak MB':>9} {f'h/{TRAIN_AUG}':>9}")
    print(header)
    print("-" * len(header))
    for schedule in ("box", "others"):
        for images in sizes:
            row = child(schedule, scale, steps, device, threads, "time", images)
            row["peak_mb"] = child(schedule, scale, 1, device, threads, "memory", images)["peak_mb"]
            rate = images / row["batch_s"]
            print(f"{schedule:8} {images:>6} {row['step1_s']:>11.4f} {row['step2_s']:>11.4f} "
                  f"{row['batch_s']:>9.1f} {rate:>9.4g} {row['peak_mb']:>9.0f} {TRAIN_AUG / rate / 3600:>9.2f}")
    print(f"s/batch: graph build + {EPOCHS['box']}+{EPOCHS['box']} (box) or {EPOCHS['others']}+"
          f"{EPOCHS['others']} (others) epochs + inference, from the median step; h/{TRAIN_AUG}: hours for "
          "train_aug on one such device, A2GNN training only (affinity net and dense CRF not counted)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="1 timed step per phase")
    parser.add_argument("--steps", type=int, default=3, help="timed steps per phase")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads(), help="CPU threads")
    parser.add_argument("--batch_images", default=None, type=str,
                        help="comma-separated batch sizes: print the images-per-second table instead")
    parser.add_argument("--check_sync", action="store_true",
                        help="CUDA: fail on any host synchronisation inside A2GNN epochs (see above)")
    parser.add_argument("--child", choices=["ours", "dense", "box", "others"], help=argparse.SUPPRESS)
    parser.add_argument("--images", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--measure", choices=["time", "memory"], default="time", help=argparse.SUPPRESS)
    parser.add_argument("--scale", type=float, default=1.0,
                        help="--batch_images: pixels of each image relative to VOC size (1 = 47x63 grid; small "
                             "values for a quick check that the table runs)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.child in ("box", "others"):
        print(json.dumps(run_batch(args.child, args.images, args.steps, torch.device(args.device), args.measure,
                                   args.scale)))
        return
    if args.child:
        print(json.dumps(run_variant(args.child, args.scale, args.steps, torch.device(args.device),
                                     args.measure)))
        return
    if args.check_sync:
        if torch.device(args.device).type != "cuda":
            parser.error("--check_sync needs --device cuda (on a CPU: pytest tests/test_propagate.py -k wait)")
        sys.exit(0 if check_sync(torch.device(args.device)) == 0 else 1)
    steps = 1 if args.quick else args.steps
    if args.batch_images:
        batch_table([int(v) for v in args.batch_images.split(",")], steps, args.device, args.threads, args.scale)
        return
    print(f"device {args.device}, {torch.get_num_threads()} threads, {steps} timed step(s) per phase")
    rows = [child(variant, scale, steps, args.device, args.threads, "time")
            for variant, scale in (("dense", 1.0), ("ours", 1.0), ("ours", 2.0), ("ours", 4.0))]
    for row in rows[:2]:
        row["peak_mb"] = child(row["variant"], 1.0, 1, args.device, args.threads, "memory")["peak_mb"]
    header = (f"{'variant':8} {'pixels':>6} {'grid':>8} {'nodes':>6} {'phase1 s/ep':>12} {'phase2 s/ep':>12} "
              f"{'s/image':>9} {'peak MB':>9}")
    print(header)
    print("-" * len(header))
    for r in rows:
        peak = f"{r['peak_mb']:>9.1f}" if "peak_mb" in r else f"{'':>9}"
        print(f"{r['variant']:8} {r['scale']:>5.0f}x {r['grid']:>8} {r['nodes']:>6} {r['phase1_s']:>12.4f} "
              f"{r['phase2_s']:>12.4f} {r['image_s']:>9.1f} {peak}")
    print("peak MB: memory in use during a step of each phase above what is held across steps (inputs, "
          "graph, model, optimizer state)")
    dense, ours = rows[0], rows[1]
    per_step = {r["scale"]: r["phase1_s"] + r["phase2_s"] for r in rows[1:]}
    print(f"ours: 4x pixels take {per_step[4.0] / per_step[1.0]:.2f}x the time per step "
          f"(2x: {per_step[2.0] / per_step[1.0]:.2f}x)")
    print(f"speedup_vs_dense={dense['image_s'] / ours['image_s']:.1f} "
          f"peak_mem_ratio={ours['peak_mb'] / dense['peak_mb']:.3f}")


if __name__ == "__main__":
    main()
