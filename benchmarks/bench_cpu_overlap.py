"""Per-image stages with their CPU part (dense CRF, label / npz writes) in ``--cpu_workers`` processes, or
with their image decoding (``--flag num_workers``: JPEG, seeds, boxes, CAMs read by DataLoader processes
ahead of the device work), vs in the main process, one after the other: wall seconds of each stage
script's ``main`` on a generated dataset.

Each stage runs ``--repeats`` times per setting, the settings interleaved (0, 1, 0, 1, …) so that bursts of
other work on a shared machine hit both; the table shows the median and the gain of each setting over
the first one (the other flag stays 0). The networks have random weights of backbone width ``--width`` (the time of a
forward pass grows with it, the CRF's does not: at width 1 on a CPU the network dominates and the overlap
gains least; on a GPU the network is fast and the CRF is what the overlap hides). Stage 3 trains
``--epochs`` epochs per phase (150 + 150 in a real box run, which makes the CRF a small share on a CPU).

    python benchmarks/bench_cpu_overlap.py                     # 6 images of 240-320 px, 2 repeats
    python benchmarks/bench_cpu_overlap.py --threads 1 --stages infer_SEAM,infer_seg
    python benchmarks/bench_cpu_overlap.py --flag num_workers --workers 0,1,2    # decoding overlap
    python benchmarks/bench_cpu_overlap.py --device cuda --width 1 --epochs 150 --images 20
"""

from __future__ import annotations

import argparse
import contextlib
import io
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

import infer_SEAM  # noqa: E402
import infer_seg  # noqa: E402
import make_synthetic_voc  # noqa: E402
import train_infer_A2GNN_box  # noqa: E402
from network.deeplab import build_seg_net  # noqa: E402
from network.resnet38_aff_gated import Net as AffNet  # noqa: E402
from network.resnet38_SEAM import Net as SeamNet  # noqa: E402
from tool.checkpoint import save_checkpoint  # noqa: E402


def setup(folder: Path, images: int, min_size: int, max_size: int, width: float) -> dict[str, Path]:
    """A generated dataset and random-weight checkpoints of the three networks under ``folder``."""
    root = folder / "voc"
    with contextlib.redirect_stdout(io.StringIO()):
        make_synthetic_voc.main(make_synthetic_voc.get_args_parser().parse_args(
            ["--out", str(root), "--num_train", str(images), "--num_val", "1", "--min_size", str(min_size),
             "--max_size", str(max_size)]))
    torch.manual_seed(0)
    paths = {"root": root, "seam": folder / "seam.pth", "aff": folder / "aff.pth", "seg": folder / "seg.pth"}
    save_checkpoint(SeamNet(width=width), paths["seam"])
    save_checkpoint(AffNet(width=width), paths["aff"])
    save_checkpoint(build_seg_net("deeplabv2_resnet38", 21, width), paths["seg"])
    return paths


def stage_commands(paths: dict[str, Path], out: Path, args: argparse.Namespace) -> dict[str, tuple]:
    """``(module, argv)`` of each stage; every run overwrites its outputs."""
    root, width = str(paths["root"]), str(args.width)
    common = ["--device", args.device, "--overwrite", "True", "--num_workers", "0", "--cpu_workers", "0"]
    return {
        "infer_SEAM (2 CRFs)": (infer_SEAM, [
            "--voc12_root", root, "--infer_list", "train.txt", "--weights", str(paths["seam"]), "--backbone_width",
            width, "--out_cam", str(out / "cam"), "--out_crf", str(out / "crf"),
            "--crf", str(out / "seed"), "--ori_crf", str(out / "full"), *common]),
        "A2GNN box (1 CRF)": (train_infer_A2GNN_box, [
            "--voc12_root", root, "--infer_list", "train.txt", "--weights", str(paths["aff"]), "--backbone_width",
            width, "--seed_label_root", str(out / "seed"), "--save_path", str(out / "a2gnn"), "--epochs",
            str(args.epochs), *common]),
        "infer_seg (1 CRF)": (infer_seg, [
            "--voc12_root", root, "--infer_list", "train.txt", "--weights", str(paths["seg"]), "--arch",
            "deeplabv2_resnet38", "--backbone_width", width, "--save_path", str(out / "seg"), "--save_path_crf",
            str(out / "seg_crf"), "--gt_dir", "none", *common]),
    }


def timed(module, argv: list[str]) -> float:
    args = module.get_args_parser().parse_args(argv)
    start = time.perf_counter()
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        summary = module.main(args)
    seconds = time.perf_counter() - start
    if summary.exit_code:
        raise RuntimeError(f"{module.__name__} failed: {summary.failed}")
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--images", type=int, default=6, help="images in the list")
    parser.add_argument("--min_size", type=int, default=240, help="smallest image side, pixels")
    parser.add_argument("--max_size", type=int, default=320, help="largest image side, pixels")
    parser.add_argument("--width", type=float, default=0.25, help="backbone width of the random networks")
    parser.add_argument("--epochs", type=int, default=20, help="A2GNN epochs per phase")
    parser.add_argument("--flag", default="cpu_workers", choices=("cpu_workers", "num_workers"),
                        help="the stage flag to vary: the CRF/write pool or the image-loading processes")
    parser.add_argument("--workers", default="0,1,2", type=str, help="comma-separated settings of --flag")
    parser.add_argument("--repeats", type=int, default=2, help="runs per stage and setting (interleaved)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads(),
                        help="torch threads of the main process (1: as each of run_pipeline.py's CPU --jobs)")
    parser.add_argument("--stages", default="infer_SEAM,A2GNN,infer_seg", type=str,
                        help="comma-separated stages to time (infer_SEAM runs anyway when A2GNN is asked for: "
                             "its seeds are A2GNN's input)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    wanted = args.stages.split(",")
    settings = [int(v) for v in args.workers.split(",")]
    with tempfile.TemporaryDirectory() as tmp:
        paths = setup(Path(tmp), args.images, args.min_size, args.max_size, args.width)
        print(f"--{args.flag} varied; device {args.device}, {torch.get_num_threads()} torch threads, "
              f"{args.images} images of {args.min_size}-{args.max_size} px, backbone width {args.width}, "
              f"A2GNN {args.epochs}+{args.epochs} epochs, median of {args.repeats} interleaved runs")
        header = f"{'stage':22} " + " ".join(f"{f'workers {w} s':>12}" for w in settings) + " " + " ".join(
            f"{f'gain {w}':>8}" for w in settings[1:])
        print(header)
        print("-" * len(header))
        out = Path(tmp) / "out"
        # infer_SEAM first: its seeds are the A2GNN stage's seed labels
        for name, (module, argv) in stage_commands(paths, out, args).items():
            if not any(name.startswith(w) for w in wanted):
                if name.startswith("infer_SEAM") and "A2GNN" in wanted:
                    timed(module, argv)
                continue
            seconds = {w: [] for w in settings}
            for _ in range(args.repeats):
                for w in settings:
                    seconds[w].append(timed(module, [*argv, f"--{args.flag}", str(w)]))
            median = {w: statistics.median(v) for w, v in seconds.items()}
            print(f"{name:22} " + " ".join(f"{median[w]:>12.2f}" for w in settings) + " " + " ".join(
                f"{median[settings[0]] / median[w]:>7.2f}x" for w in settings[1:]), flush=True)
    print(f"gain: wall time with --{args.flag} {settings[0]} / with N (includes the start of the processes)")


if __name__ == "__main__":
    main()
