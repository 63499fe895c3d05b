"""Run the whole A2GNN pipeline: stage scripts chained through files on disk, then a quality table.

Default data: a generated VOC-format dataset under ``--work_dir`` (made on the first run), with schedules
shortened for a CPU. With ``--voc12_root`` the same chain runs on real PASCAL VOC 2012 with the published
schedules (width-1 ResNet-38 initialised from ``--cam_weights``; CAMs and seeds for ``--train_list``
and ``--infer_list`` together, pseudo labels and scores for ``--infer_list``). Every stage is the stage's own script
called with its own arguments (each command is printed, so it can be rerun alone); a stage whose outputs
exist is skipped, so an interrupted run continues where it stopped and ``--redo STAGE`` reruns one.

    python run_pipeline.py --quick                   # CI size, a few minutes on 2 CPU cores
    python run_pipeline.py                           # the default run reported in the README
    python run_pipeline.py --supervision box --stages a2gnn evaluate
    python run_pipeline.py --voc12_root $VOC --cam_weights netWeights/ilsvrc-cls_rna-a1_cls1000_ep-0001.params
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from functools import cached_property
from pathlib import Path

from tool.cli import default_device
from tool.label_io import atomic_path
from voc12.lists import read_list, write_id_list

REPO = Path(__file__).resolve().parent
STAGES = ("data", "cam_train", "cam_infer", "seeds", "baselines", "aff_train", "a2gnn", "evaluate", "sheet")
SUPERVISIONS = ("image", "point", "scribble", "box")
PER_IMAGE_SCRIPTS = {"infer_SEAM", "make_seed_labels", "make_baseline_labels", "train_infer_A2GNN_box",
                     "train_infer_A2GNN_others"}  # these take --shard i/n
AFF_RADIUS = {"image": 3, "point": 3, "scribble": 4, "box": 4}  # SPEC §2.2


@dataclass(frozen=True)
class Plan:
    """Sizes and schedules of one run (the paper's schedules shortened for CPU; see the README)."""

    num_train: int
    num_val: int
    min_size: int
    max_size: int
    width: float  # backbone width of the classifier and the affinity nets
    cam_epochs: int
    cam_batch: int
    cam_crop: int
    cam_resize_long: tuple[int, int]
    cam_lr: float
    cam_scales: tuple[float, ...]
    aff_epochs: int
    aff_batch: int
    aff_crop: int
    aff_lr: float
    box_epochs: int  # A2GNN epochs per phase (SPEC §3.5: 150 box, 50 others)
    others_epochs: int
    hidden: int


PLANS = {
    "default": Plan(num_train=100, num_val=50, min_size=128, max_size=256, width=0.125,
                    cam_epochs=10, cam_batch=8, cam_crop=128, cam_resize_long=(128, 192), cam_lr=0.01,
                    cam_scales=(0.5, 1.0, 1.5),
                    aff_epochs=8, aff_batch=8, aff_crop=128, aff_lr=0.01,
                    box_epochs=150, others_epochs=50, hidden=256),
    "quick": Plan(num_train=16, num_val=4, min_size=96, max_size=128, width=0.125,
                  cam_epochs=2, cam_batch=4, cam_crop=96, cam_resize_long=(96, 144), cam_lr=0.01,
                  cam_scales=(1.0,),
                  aff_epochs=1, aff_batch=4, aff_crop=96, aff_lr=0.01,
                  box_epochs=20, others_epochs=10, hidden=64),
    # real VOC2012 (--voc12_root without --quick): the published schedules, SPEC §1.1, 1.2, 2.2, 3.5
    "voc": Plan(num_train=0, num_val=0, min_size=0, max_size=0, width=1.0,
                cam_epochs=8, cam_batch=8, cam_crop=448, cam_resize_long=(448, 768), cam_lr=0.01,
                cam_scales=(0.5, 1.0, 1.5, 2.0),
                aff_epochs=12, aff_batch=4, aff_crop=448, aff_lr=0.01,
                box_epochs=150, others_epochs=50, hidden=256),
}


def plan_name(args: argparse.Namespace) -> str:
    """``quick`` with ``--quick``; else ``voc`` on a real VOC root, ``default`` on the generated data."""
    return "quick" if args.quick else ("voc" if args.voc12_root else "default")


class Pipeline:
    """Paths of one run and one method per stage; every stage calls a stage script's ``main``."""

    def __init__(self, args: argparse.Namespace):
        self.args = args
        self.plan = PLANS[plan_name(args)]
        self.work = Path(args.work_dir)
        self.root = Path(args.voc12_root) if args.voc12_root else self.work / "VOC2012"
        self.synthetic = args.voc12_root is None
        self.sups = SUPERVISIONS if args.supervision == "all" else (args.supervision,)
        self.seconds: dict[str, dict[str, float]] = {s: {} for s in self.sups}
        self.failures: list[str] = []
        self.weights = self.work / "weights"
        self.cam_dir = self.work / "cams"
        self.cam_seeds = self.work / "seeds" / "SEAM_Image"
        self.cam_full = self.work / "seeds" / "SEAM_Image_Full"
        self.cam_pred = self.work / "cam_pred"

    # --- plumbing -------------------------------------------------------------------------------
    def run(self, script: str, argv: Sequence[str]) -> None:
        """Run ``script.main`` with ``argv`` (printed as the equivalent shell command).

        A per-image script runs as ``--jobs`` processes with ``--shard i/jobs`` and one thread each when
        ``--jobs`` > 1: on a CPU, small per-image work scales better over processes than over threads.
        """
        argv = [str(a) for a in argv]
        jobs = self.args.jobs if script in PER_IMAGE_SCRIPTS else 1
        if jobs > 1:
            code = self._run_sharded(script, argv, jobs)
        else:
            print(f"\n$ python {script}.py {' '.join(argv)}", flush=True)
            module = importlib.import_module(script)
            result = module.main(module.get_args_parser().parse_args(argv))
            code = getattr(result, "exit_code", result)
        if isinstance(code, int) and code != 0:
            self.failures.append(f"{script} exited with {code}")
            print(f"warning: {script} reported failures (exit code {code}); continuing", file=sys.stderr)

    @staticmethod
    def _run_sharded(script: str, argv: list[str], jobs: int) -> int:
        commands = [[sys.executable, str(REPO / f"{script}.py"), *argv, "--shard", f"{i}/{jobs}"]
                    for i in range(jobs)]
        for command in commands:
            print(f"\n$ OMP_NUM_THREADS=1 python {script}.py {' '.join(command[2:])} &", flush=True)
        env = {**os.environ, "OMP_NUM_THREADS": "1"}
        processes = [subprocess.Popen(command, env=env) for command in commands]
        codes = [process.wait() for process in processes]
        return max(codes)

    def timed(self, stage: str, sups: Sequence[str], fn, *fn_args) -> None:
        """Run ``fn`` and charge its time to ``stage`` for each supervision in ``sups`` (shared stages)."""
        start = time.time()
        fn(*fn_args)
        for sup in sups:
            self.seconds[sup][stage] = round(self.seconds[sup].get(stage, 0.0) + time.time() - start, 1)

    def wanted(self, stage: str) -> bool:
        return stage in self.args.stages

    def redo(self, stage: str) -> bool:
        return stage in self.args.redo

    def common(self) -> list[str]:
        return ["--device", self.args.device, "--seed", self.args.seed]

    @property
    def infer_list(self) -> str:
        """Images that get pseudo labels and are scored (VOC: train, the paper's ablation setting)."""
        return self.args.infer_list

    @cached_property
    def seed_list(self) -> str:
        """Images that need CAMs and seeds: the affinity net's training list and the infer list together
        (on VOC train_aug ⊃ train; on the generated data both are the same list). Worked out on first use,
        after the data stage, and kept for the run."""
        train = read_list(self.args.train_list, self.root)
        infer = read_list(self.args.infer_list, self.root)
        if set(infer) <= set(train):
            return self.args.train_list
        path = self.work / "seed_list.txt"
        write_id_list(path, train + sorted(set(infer) - set(train)))
        return str(path)

    def seed_dir(self, sup: str) -> Path:
        """Seeds A2GNN propagates (SPEC §1.3 names)."""
        return self.work / "seeds" / {"image": "SEAM_Image", "point": "SEAM_Point",
                                      "scribble": "Scribble_SuperPixel", "box": "SEAM_Box"}[sup]

    def aff_label_dir(self, sup: str) -> Path:
        """Seeds the affinity net of ``sup`` trains on (scribble: strokes over CAM seeds)."""
        return self.work / "seeds" / "SEAM_Scribble" if sup == "scribble" else self.seed_dir(sup)

    def pseudo_dir(self, sup: str) -> Path:
        return self.work / "pseudo" / sup

    # --- stages ---------------------------------------------------------------------------------
    def data(self) -> None:
        if not self.synthetic:
            if not (self.root / "JPEGImages").is_dir():
                raise SystemExit(f"--voc12_root {self.root}: no JPEGImages folder (expected a VOC2012 root)")
            return
        if (self.root / "ImageSets" / "Segmentation" / "val.txt").is_file() and not self.redo("data"):
            print(f"dataset exists: {self.root}")
            return
        p = self.plan
        self.run("make_synthetic_voc", ["--out", self.root, "--num_train", p.num_train, "--num_val", p.num_val,
                                        "--seed", self.args.seed, "--min_size", p.min_size,
                                        "--max_size", p.max_size])

    def cam_train(self) -> None:
        ckpt = self.weights / "resnet38_SEAM.pth"
        if ckpt.is_file() and not self.redo("cam_train"):
            print(f"classifier exists: {ckpt}")
            return
        p = self.plan
        if plan_name(self.args) == "voc" and not self.args.cam_weights:
            raise SystemExit("--voc12_root: pass --cam_weights (the ImageNet ResNet-38 .params file, see "
                             f"download_weights.py) or put a trained classifier at {ckpt}; a ResNet-38 trained "
                             "from scratch is not the paper's setting (--quick runs a smoke test without it)")
        weights = self.args.cam_weights or "none"
        # from scratch (no ImageNet file) needs a real momentum; with weights, the published 5e-4 quirk
        momentum = 0.9 if weights == "none" else 5e-4
        self.run("train_SEAM", ["--voc12_root", self.root, "--train_list", self.args.train_list,
                                "--weights", weights, "--backbone_width", p.width,
                                "--max_epoches", p.cam_epochs, "--batch_size", p.cam_batch,
                                "--crop_size", p.cam_crop, "--resize_long", *p.cam_resize_long,
                                "--lr", p.cam_lr, "--momentum", momentum, "--num_workers", self.args.num_workers,
                                "--session_name", "resnet38_SEAM", "--save_dir", self.weights, *self.common()])

    def cam_infer(self) -> None:
        p = self.plan
        self.run("infer_SEAM", ["--voc12_root", self.root, "--infer_list", self.seed_list,
                                "--weights", self.weights / "resnet38_SEAM.pth", "--backbone_width", p.width,
                                "--scales", *p.cam_scales, "--out_cam", self.cam_dir,
                                "--out_cam_pred", self.cam_pred, "--out_cam_pred_bg_power", 4,
                                "--crf", self.cam_seeds,
                                "--ori_crf", self.cam_full, "--num_workers", self.args.num_workers,
                                "--overwrite", self.redo("cam_infer"), *self.common()])

    def seeds(self, sup: str) -> None:
        base = ["--voc12_root", self.root, "--infer_list", self.seed_list, "--cam_seed_dir", self.cam_seeds,
                "--overwrite", self.redo("seeds"), "--seed", self.args.seed]
        if sup == "image":
            return  # the CAM seeds themselves
        if sup == "scribble":
            self.run("make_seed_labels", ["--type", "scribble", "--out_dir", self.seed_dir(sup), *base])
            self.run("make_seed_labels", ["--type", "scribble", "--scribble_mode", "override",
                                          "--out_dir", self.aff_label_dir(sup), *base])
        else:
            self.run("make_seed_labels", ["--type", sup, "--out_dir", self.seed_dir(sup), *base])

    def baselines(self, sup: str) -> None:
        methods = ["box_fill", "grabcut"] if sup == "box" else []
        for method in methods:
            out = self.work / "baselines" / method
            self.run("make_baseline_labels", ["--method", method, "--voc12_root", self.root,
                                              "--infer_list", self.infer_list, "--out_dir", out,
                                              "--overwrite", self.redo("baselines"), "--seed", self.args.seed])

    def aff_train(self, sup: str) -> None:
        ckpt = self.weights / f"aff_{sup}.pth"
        if ckpt.is_file() and not self.redo("aff_train"):
            print(f"affinity net exists: {ckpt}")
            return
        p = self.plan
        self.run("train_aff_gated_aff", ["--voc12_root", self.root, "--train_list", self.args.train_list,
                                         "--label_dir", self.aff_label_dir(sup),
                                         "--weights", self.weights / "resnet38_SEAM.pth",
                                         "--backbone_width", p.width, "--radius", AFF_RADIUS[sup],
                                         "--max_epoches", p.aff_epochs, "--batch_size", p.aff_batch,
                                         "--crop_size", p.aff_crop, "--lr", p.aff_lr,
                                         "--num_workers", self.args.num_workers,
                                         "--session_name", f"aff_{sup}", "--save_dir", self.weights,
                                         *self.common()])

    def a2gnn(self, sup: str) -> None:
        p = self.plan
        argv = ["--voc12_root", self.root, "--infer_list", self.infer_list,
                "--weights", self.weights / f"aff_{sup}.pth", "--backbone_width", p.width,
                "--radius", AFF_RADIUS[sup], "--seed_label_root", self.seed_dir(sup),
                "--save_path", self.pseudo_dir(sup), "--hidden", p.hidden,
                "--overwrite", self.redo("a2gnn"), *self.common()]
        if sup == "box":
            self.run("train_infer_A2GNN_box", [*argv, "--BoxXmlpath", self.root / "Annotations",
                                               "--epochs", p.box_epochs])
        else:
            rw = ["--rw", "True", "--cam_dir", self.cam_dir] if sup in ("image", "point") else ["--rw", "False"]
            self.run("train_infer_A2GNN_others", [*argv, *rw, "--epochs", p.others_epochs])

    def evaluate(self, sup: str) -> dict:
        """Scores of this supervision's seeds, baselines and pseudo labels against the ground truth."""
        from eval_miou import evaluate

        gt = self.root / "SegmentationClass"
        ids = read_list(self.infer_list, self.root)
        seeds = evaluate(self.seed_dir(sup), gt, ids, seeds=True)
        result = {"seed_miou": evaluate(self.seed_dir(sup), gt, ids)["miou"],  # 255 -> background (SPEC §5)
                  "seed_precision": seeds["precision"], "seed_coverage": seeds["coverage"], "baselines": {}}
        if sup == "image":
            result["baselines"]["cam"] = evaluate(self.cam_pred, gt, ids)["miou"]
        if sup == "scribble":  # the strokes themselves as labels (255 -> background)
            result["baselines"]["scribbles"] = evaluate(self.root / "Scribbles", gt, ids)["miou"]
        if sup == "box":
            for method in ("box_fill", "grabcut"):
                result["baselines"][method] = evaluate(self.work / "baselines" / method, gt, ids)["miou"]
        result["pseudo_miou"] = evaluate(self.pseudo_dir(sup), gt, ids)["miou"]
        return result

    def sheet(self) -> None:
        columns = [f"cam_seeds={self.cam_seeds}"] + [f"{sup}={self.pseudo_dir(sup)}" for sup in self.sups]
        self.run("visualize", ["--voc12_root", self.root, "--list", self.infer_list, "--first", 6,
                               "--columns", *columns, "--out", self.work / "contact_sheet.png"])


def print_table(summary: dict) -> None:
    rows = summary["supervision"]
    baseline_names = sorted({name for r in rows.values() for name in r.get("baselines", {})})
    header = f"{'supervision':<12}{'seeds (prec/cov)':>20}{'seed mIoU':>11}" + "".join(
        f"{name:>10}" for name in baseline_names) + f"{'A2GNN':>9}{'minutes':>9}"
    print("\n" + header + "\n" + "-" * len(header))
    for sup, r in rows.items():
        if "pseudo_miou" not in r:
            continue
        line = f"{sup:<12}{100 * r['seed_precision']:>12.1f} /{100 * r['seed_coverage']:>5.1f}"
        line += f"{100 * r['seed_miou']:>11.1f}"
        line += "".join(f"{100 * r['baselines'][n]:>10.1f}" if n in r["baselines"] else f"{'-':>10}"
                        for n in baseline_names)
        line += f"{100 * r['pseudo_miou']:>9.1f}{sum(r['seconds'].values()) / 60:>9.1f}"
        print(line)
    print("(%, on the infer list; seed mIoU counts unlabelled (255) seed pixels as background; "
          "minutes = this supervision's stages, shared stages counted in each)")


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work_dir", default="data/demo", help="everything the run writes goes here")
    parser.add_argument("--voc12_root", default=None,
                        help="a real VOC2012 root (default: generate a synthetic one under --work_dir)")
    parser.add_argument("--supervision", default="all", choices=(*SUPERVISIONS, "all"))
    parser.add_argument("--quick", action="store_true", help="tiny dataset and short schedules (CI)")
    parser.add_argument("--stages", nargs="+", default=list(STAGES), choices=STAGES, help="stages to run")
    parser.add_argument("--redo", nargs="*", default=[], choices=STAGES,
                        help="recompute these stages even where their outputs exist")
    parser.add_argument("--train_list", default="train_aug.txt", type=str, help="list the networks train on")
    parser.add_argument("--infer_list", default="train.txt", type=str,
                        help="list that gets seeds and pseudo labels (default: train, where the paper scores "
                             "pseudo labels)")
    parser.add_argument("--cam_weights", default=None,
                        help="init of the classifier (ImageNet .params or a .pth); default: from scratch")
    parser.add_argument("--num_workers", default=0, type=int, help="DataLoader workers")
    parser.add_argument("--jobs", default=None, type=int,
                        help="processes for the per-image stages (default: CPU cores on CPU, 1 on CUDA)")
    parser.add_argument("--device", default=default_device(), type=str)
    parser.add_argument("--seed", default=0, type=int)
    return parser


def main(args: argparse.Namespace) -> dict:
    if args.jobs is None:
        args.jobs = 1 if args.device.startswith("cuda") else len(os.sched_getaffinity(0))
    pipe = Pipeline(args)
    pipe.work.mkdir(parents=True, exist_ok=True)
    print(f"pipeline: {plan_name(args)} plan {asdict(pipe.plan)}")
    print(f"data: {pipe.root}; supervisions: {', '.join(pipe.sups)}; work dir: {pipe.work}")
    steps = [("data", None), ("cam_train", None), ("cam_infer", None)]
    steps += [(stage, sup) for stage in ("seeds", "baselines", "aff_train", "a2gnn") for sup in pipe.sups]
    start = time.time()
    for stage, sup in steps:
        if not pipe.wanted(stage):
            continue
        print(f"\n=== [{time.time() - start:7.1f} s] stage {stage}{f' ({sup})' if sup else ''}", flush=True)
        if sup is None:
            pipe.timed(stage, pipe.sups, getattr(pipe, stage))
        else:
            pipe.timed(stage, [sup], getattr(pipe, stage), sup)
    summary_path = pipe.work / "summary.json"
    summary = json.loads(summary_path.read_text()) if summary_path.is_file() else {"supervision": {}}
    if pipe.wanted("evaluate"):
        print(f"\n=== [{time.time() - start:7.1f} s] stage evaluate", flush=True)
        for sup in pipe.sups:
            entry = pipe.evaluate(sup)
            entry["seconds"] = pipe.seconds[sup] or summary["supervision"].get(sup, {}).get("seconds", {})
            summary["supervision"][sup] = entry
        summary["plan"] = plan_name(args)
        summary["voc12_root"] = str(pipe.root)
        with atomic_path(summary_path) as tmp:
            tmp.write_text(json.dumps(summary, indent=2))
        print_table(summary)
        print(f"summary: {summary_path}")
    if pipe.wanted("sheet"):
        pipe.sheet()
    print(f"\npipeline finished in {(time.time() - start) / 60:.1f} min"
          + (f"; {len(pipe.failures)} stage(s) reported failures: {pipe.failures}" if pipe.failures else ""))
    return summary


if __name__ == "__main__":
    main(get_args_parser().parse_args())
