"""Effect of stage 3's ``--amp True`` (bf16 autocast of the A2GNN embedding product) on pseudo-label quality.

Given the work folder of a finished ``run_pipeline.py`` run (its dataset, seeds and affinity networks
``<work_dir>/weights/aff_<supervision>.pth``), runs stage 3 of each ``--supervision`` with the flags the
pipeline passes (``Pipeline.a2gnn_command``) on the first ``--num_images`` ids of ``--infer_list``, once
with ``--amp False`` and once with ``--amp True`` (same seed, so the same initial parameters and dropout
masks), scores both against the ground truth (``eval_miou.evaluate``) and prints a table: mIoU of each,
the difference in points, the share of pixels whose label changed and the seconds of each run.

    python benchmarks/bench_amp_quality.py --work_dir data/demo --supervision scribble box --num_images 60
    python benchmarks/bench_amp_quality.py --work_dir data/demo --device cuda      # on a GPU

On a CPU the bf16 product is not faster (and may be slower): there the run measures the quality change
only. Issue 17 keeps ``--amp`` off by default unless the change is under 0.2 points.
"""

from __future__ import annotations

import argparse
import importlib
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

import run_pipeline  # noqa: E402
from eval_miou import evaluate  # noqa: E402
from tool.cli import default_device, str2bool  # noqa: E402
from tool.dist import add_gpus_argument, launch  # noqa: E402
from tool.label_io import read_label_png  # noqa: E402
from voc12.lists import read_list, write_id_list  # noqa: E402


def get_args_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description="Pseudo-label mIoU of stage 3 with --amp False and --amp True.",
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--work_dir", default="data/demo", type=str,
                   help="work folder of a finished run_pipeline.py run (VOC2012/, seeds/, weights/aff_*.pth)")
    p.add_argument("--voc12_root", default=None, type=str,
                   help="the dataset root that run used (default: its generated <work_dir>/VOC2012)")
    p.add_argument("--quick", default=False, type=str2bool,
                   help="True: that run was a --quick run (its stage-3 epochs and hidden size)")
    p.add_argument("--supervision", default=["scribble"], nargs="+", choices=run_pipeline.SUPERVISIONS,
                   help="supervisions to measure, one row each")
    p.add_argument("--infer_list", default="train.txt", type=str,
                   help="id list (path or name under ImageSets/Segmentation); the pipeline's default")
    p.add_argument("--num_images", default=20, type=int, help="first N ids of the list; 0 = all")
    p.add_argument("--batch_images", default=1, type=int, help="stage 3's --batch_images")
    p.add_argument("--out_dir", default=None, type=str,
                   help="folder of the two label sets (<sup>_amp_False/, <sup>_amp_True/); default: a "
                        "temporary folder, removed at the end")
    p.add_argument("--device", default=default_device(), type=str)
    p.add_argument("--seed", default=0, type=int, help="stage 3's --seed (the same for both runs)")
    return add_gpus_argument(p)


def measure(pipeline: run_pipeline.Pipeline, sup: str, ids: list[str], out: Path, args: argparse.Namespace
            ) -> dict:
    """Stage 3 of ``sup`` on ``ids`` with ``--amp`` off and on: mIoU, seconds and labels of each."""
    script, argv = pipeline.a2gnn_command(sup)
    module = importlib.import_module(script)
    write_id_list(out / f"{sup}_ids.txt", ids)
    gt = pipeline.root / "SegmentationClass"
    row: dict = {"supervision": sup, "images": len(ids)}
    for amp in (False, True):
        save = out / f"{sup}_amp_{amp}"
        # a repeated flag takes its last value: the pipeline's command with this run's list, folder and --amp
        extra = ["--infer_list", out / f"{sup}_ids.txt", "--save_path", save, "--overwrite", True, "--amp", amp,
                 "--batch_images", args.batch_images, "--device", args.device, "--seed", args.seed,
                 *(["--gpus", args.gpus] if args.gpus is not None else [])]
        stage_args = module.get_args_parser().parse_args([str(a) for a in [*argv, *extra]])
        start = time.time()
        code = launch(module.main, stage_args, stage_args.gpus, stage_args.device)
        row[f"seconds_{amp}"] = time.time() - start
        if code:
            raise SystemExit(f"{script} --amp {amp} failed (exit code {code}); see the messages above")
        row[f"miou_{amp}"] = evaluate(save, gt, ids)["miou"]
    changed = sum(int((read_label_png(out / f"{sup}_amp_False" / f"{i}.png")
                       != read_label_png(out / f"{sup}_amp_True" / f"{i}.png")).sum()) for i in ids)
    pixels = sum(read_label_png(gt / f"{i}.png").size for i in ids)
    row["changed"] = changed / pixels
    row["points"] = 100 * (row["miou_True"] - row["miou_False"])
    return row


def format_rows(rows: list[dict]) -> str:
    lines = ["| supervision | images | mIoU --amp False | mIoU --amp True | difference (points) | pixels changed "
             "| s (False / True) |", "|---|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['supervision']} | {r['images']} | {100 * r['miou_False']:.2f} | {100 * r['miou_True']:.2f} "
                     f"| {r['points']:+.2f} | {100 * r['changed']:.3f}% | {r['seconds_False']:.0f} / "
                     f"{r['seconds_True']:.0f} |")
    return "\n".join(lines)


def main(args: argparse.Namespace) -> list[dict]:
    pipe_argv = ["--work_dir", args.work_dir, "--infer_list", args.infer_list, "--device", args.device,
                 "--seed", str(args.seed), *(["--voc12_root", args.voc12_root] if args.voc12_root else []),
                 *(["--quick"] if args.quick else [])]
    pipeline = run_pipeline.Pipeline(run_pipeline.get_args_parser().parse_args(pipe_argv))
    ids = read_list(args.infer_list, pipeline.root)
    ids = ids[:args.num_images] if args.num_images > 0 else ids
    with tempfile.TemporaryDirectory(prefix="bench_amp_") as tmp:
        out = Path(args.out_dir or tmp)
        out.mkdir(parents=True, exist_ok=True)
        rows = [measure(pipeline, sup, ids, out, args) for sup in args.supervision]
    print(f"\nstage 3 --amp False vs True on the first {len(ids)} ids of {args.infer_list} ({pipeline.root}), "
          f"device {args.device}, seed {args.seed}")
    print(format_rows(rows))
    mean = float(np.mean([r["points"] for r in rows]))
    print(f"mean difference {mean:+.2f} points (issue 17: --amp stays off by default unless the change is "
          "under 0.2 points)")
    return rows


if __name__ == "__main__":
    main(get_args_parser().parse_args())
