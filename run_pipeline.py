"""Run the whole A2GNN pipeline: stage scripts chained through files on disk, then a quality table.

Default data: a generated VOC-format dataset under ``--work_dir`` (made on the first run), with schedules
shortened for a CPU. With ``--voc12_root`` the same chain runs on real PASCAL VOC 2012 with the published
schedules (width-1 ResNet-38 initialised from ``--cam_weights``; CAMs and seeds for ``--train_list``
and ``--infer_list`` together, pseudo labels and scores for ``--infer_list``). Every stage is the stage's own script
called with its own arguments (each command is printed, so it can be rerun alone); a stage whose outputs
exist is skipped, so an interrupted run continues where it stopped and ``--redo STAGE`` reruns one.
Sizes and schedules come from a named plan of ``stages/plans.py`` (``--plan``); ``--set key=value`` changes
one value. ``summary.json`` holds the scores (%, as printed), the plan as run, the code version and machine.

    python run_pipeline.py --quick                   # smoke test of the wiring, a few minutes on 2 CPU cores
    python run_pipeline.py                           # the default run (docs/results.md)
    python run_pipeline.py --set cam_epochs=6 --set seg.iters=50 --work_dir data/short
    python run_pipeline.py --supervision box --stages a2gnn evaluate
    python run_pipeline.py --voc12_root $VOC --cam_weights netWeights/ilsvrc-cls_rna-a1_cls1000_ep-0001.params

On CUDA each training stage (``train_SEAM``, ``train_aff_gated_aff``, ``train_seg``) runs one at a time on every
visible GPU, through the same ``tool.dist.launch`` as the script run alone (one DistributedDataParallel worker per
GPU; ``--gpus`` limits it), with DataLoader workers on the CPU cores; the run's first lines say what it uses.
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
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import torch

from stages.plans import INST_PLANS, PLANS, SEG_PLANS, apply_overrides, default_plan_name, plan_record, provenance
from tool import cli
from tool.cli import DEVICE_HELP, default_device, make_parser
from tool.coco_eval import AP_KEYS, EXACT_IOUS
from tool.dist import add_gpus_argument, cores_per_gpu, launch
from tool.label_io import atomic_path, read_label_png
from tool.metrics import confusion_matrix, grid_label, scores_from_confusion
from voc12.lists import read_list, write_id_list

REPO = Path(__file__).resolve().parent
STAGES = ("data", "cam_train", "cam_eval", "cam_infer", "seeds", "baselines", "aff_train", "a2gnn", "evaluate", "seg",
          "inst", "sheet")
SUPERVISIONS = ("image", "point", "scribble", "box")
PER_IMAGE_SCRIPTS = {"infer_SEAM", "make_seed_labels", "make_baseline_labels", "train_infer_A2GNN_box",
                     "train_infer_A2GNN_others"}  # these take --shard i/n
TRAINING_SCRIPTS = {"train_SEAM", "train_aff_gated_aff", "train_seg"}  # through tool.dist.launch: every GPU
MAX_LOADER_WORKERS = 8  # DataLoader workers per GPU worker by default
AFF_RADIUS = {"image": 3, "point": 3, "scribble": 4, "box": 4}  # algorithm.md §2.2


UNITS = "%"  # every score in summary.json is a percentage, as in the printed tables
CHANCE_MARGIN = 1.0  # mIoU points: a ground-truth net within this of all-background is at chance
SMOKE_TEST = ("smoke test of the wiring (plan 'quick': a few tiny images, a few steps per stage): its numbers "
              "are not quality figures")


def percents(scores: dict[str, Any]) -> dict[str, Any]:
    """The instance scores of ``eval_inst.evaluate`` (AP keys, mean IoU) as percentages, the unit of the
    printed tables and summary.json; counts and the -1 of 'no ground truth' stay as they are."""
    shares = ("mean_iou", *(f"iou>={t}" for t in EXACT_IOUS), "found", "box_iou", "mask_iou")
    return {key: pct(value) if key in (*AP_KEYS, *shares) and value >= 0 else value
            for key, value in scores.items()}


def pct(value: float) -> float:
    """A score in [0, 1] as a percentage, the unit of the printed tables and of summary.json."""
    return round(100 * value, 2)


def background_miou(gt_dir: Path, ids: Sequence[str]) -> float:
    """mIoU (0..1) of labelling every pixel background: the chance level of a segmentation net."""
    conf = 0
    for image_id in ids:
        label = read_label_png(gt_dir / f"{image_id}.png")
        conf = conf + confusion_matrix(np.zeros_like(label), label)
    return scores_from_confusion(conf)["miou"]


INST_LABELS = ("a2gnn", "grabcut", "box_fill", "gt")  # the instance label sets Mask R-CNN trains on


def plan_name(args: argparse.Namespace) -> str:
    """``--plan``, else ``quick`` with ``--quick``, ``voc`` with ``--voc12_root``, ``default`` otherwise."""
    return args.plan or default_plan_name(args.quick, args.voc12_root)


class Pipeline:
    """Paths of one run and one method per stage; every stage calls a stage script's ``main``."""

    def __init__(self, args: argparse.Namespace):
        self.args = args
        self.plan_name = plan_name(args)
        self.plan, self.seg_plan, self.inst_plan, self.overrides = apply_overrides(
            PLANS[self.plan_name], SEG_PLANS[self.plan_name], INST_PLANS[self.plan_name], args.set)
        self.work = Path(args.work_dir)
        self.root = Path(args.voc12_root) if args.voc12_root else self.work / "VOC2012"
        self.synthetic = args.voc12_root is None
        self.sups = SUPERVISIONS if args.supervision == "all" else (args.supervision,)
        self.cuda = torch.device(args.device).type == "cuda"
        self.num_workers = loader_workers(args.device) if args.num_workers is None else args.num_workers
        self.seconds: dict[str, dict[str, float]] = {s: {} for s in self.sups}
        self.stage_seconds: dict[str, float] = {}  # wall time of each stage, shared stages once
        self.failures: list[str] = []
        self.weights = self.work / "weights"
        self.cam_dir = self.work / "cams"
        self.cam_seeds = self.work / "seeds" / "SEAM_Image"
        self.cam_full = self.work / "seeds" / "SEAM_Image_Full"
        self.cam_pred = self.work / "cam_pred"

    # --- plumbing -------------------------------------------------------------------------------
    def devices(self) -> str:
        """One line: where the training stages, their data loaders and the per-image stages run."""
        loaders = f"{self.num_workers} DataLoader workers per process (--num_workers)"
        per_image = f"per-image stages: {self.args.jobs} process(es) (--jobs)"
        device = torch.device(self.args.device)
        if device.type != "cuda":
            return f"devices: training stages in this process on {self.args.device}, {loaders}; {per_image}"
        if device.index is not None:
            gpus = f"{self.args.device} only"
        elif self.args.gpus is not None:
            gpus = f"{self.args.gpus} GPUs (--gpus)"
        else:
            gpus = (f"every visible GPU ({torch.cuda.device_count()}; fewer where a stage's --batch_size does not "
                    "divide over them)")
        return (f"devices: training stages on {gpus}, one DistributedDataParallel worker each (tool.dist.launch), "
                f"one stage at a time, {loaders}; {per_image}")

    def run(self, script: str, argv: Sequence[str]) -> None:
        """Run ``script.main`` with ``argv`` (printed as the equivalent shell command).

        A per-image script runs as ``--jobs`` processes with ``--shard i/jobs`` and one thread each when
        ``--jobs`` > 1: on a CPU, small per-image work scales better over processes than over threads.
        A training script goes through ``tool.dist.launch``, as when run alone: on CUDA one worker per visible GPU
        (``--gpus``), on a CPU this process.
        """
        argv = [str(a) for a in argv]
        if script in TRAINING_SCRIPTS and self.args.gpus is not None:
            argv += ["--gpus", str(self.args.gpus)]
        jobs = self.args.jobs if script in PER_IMAGE_SCRIPTS else 1
        if jobs > 1:
            code = self._run_sharded(script, argv, jobs)
        else:
            print(f"\n$ python {script}.py {' '.join(argv)}", flush=True)
            module = importlib.import_module(script)
            parsed = module.get_args_parser().parse_args(argv)
            if script in TRAINING_SCRIPTS:
                code = launch(module.main, parsed, parsed.gpus, parsed.device)
            else:
                result = module.main(parsed)
                code = getattr(result, "exit_code", result)
        self._report(script, code)

    def _report(self, script: str, code: object) -> None:
        """Note a stage script's non-zero exit code; the run goes on."""
        if isinstance(code, int) and code != 0:
            self.failures.append(f"{script} exited with {code}")
            print(f"warning: {script} reported failures (exit code {code}); continuing", file=sys.stderr)

    def _run_sharded(self, script: str, argv: list[str], jobs: int) -> int:
        return self._run_processes(script, [[*argv, "--shard", f"{i}/{jobs}"] for i in range(jobs)], jobs)

    @staticmethod
    def _run_processes(script: str, argvs: Sequence[list[str]], jobs: int) -> int:
        """Run ``script`` once per argument list, ``jobs`` single-threaded processes at a time; the
        highest exit code."""
        env = {**os.environ, "OMP_NUM_THREADS": "1"}
        pending = [[sys.executable, str(REPO / f"{script}.py"), *argv] for argv in argvs]
        running: list[subprocess.Popen] = []
        codes = []
        while pending or running:
            while pending and len(running) < jobs:
                command = pending.pop(0)
                print(f"\n$ OMP_NUM_THREADS=1 python {script}.py {' '.join(command[2:])} &", flush=True)
                running.append(subprocess.Popen(command, env=env))
            time.sleep(0.2)
            codes += [p.returncode for p in running if p.poll() is not None]
            running = [p for p in running if p.returncode is None]
        return max(codes)

    def run_each(self, script: str, argvs: Sequence[Sequence]) -> None:
        """Run ``script.main`` once per argument list: as ``--jobs`` processes at a time when ``--jobs`` > 1
        (independent runs, e.g. one segmentation net each), else one after the other in this process. On CUDA
        training runs go one after the other, each on every GPU."""
        argvs = [[str(a) for a in argv] for argv in argvs]
        if (self.args.jobs or 1) > 1 and len(argvs) > 1 and not (self.cuda and script in TRAINING_SCRIPTS):
            self._report(script, self._run_processes(script, argvs, self.args.jobs))
        else:
            for argv in argvs:
                self.run(script, argv)

    def timed(self, stage: str, sups: Sequence[str], fn, *fn_args) -> None:
        """Run ``fn`` and charge its time to ``stage`` for each supervision in ``sups`` (shared stages)."""
        start = time.time()
        fn(*fn_args)
        elapsed = time.time() - start
        for sup in sups:
            self.seconds[sup][stage] = round(self.seconds[sup].get(stage, 0.0) + elapsed, 1)
        self.stage_seconds[stage] = round(self.stage_seconds.get(stage, 0.0) + elapsed, 1)

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
        """Seeds A2GNN propagates (algorithm.md §1.3 names)."""
        return self.work / "seeds" / {"image": "SEAM_Image", "point": "SEAM_Point",
                                      "scribble": "Scribble_SuperPixel", "box": "SEAM_Box"}[sup]

    def aff_label_dir(self, sup: str) -> Path:
        """Seeds the affinity net of ``sup`` trains on (scribble: strokes over CAM seeds)."""
        return self.work / "seeds" / "SEAM_Scribble" if sup == "scribble" else self.seed_dir(sup)

    def aff_weights(self, sup: str) -> Path:
        """The affinity net of ``sup`` (``train_aff_gated_aff.py --session_name aff_<sup>`` in ``weights/``)."""
        return self.weights / f"aff_{sup}.pth"

    def pseudo_dir(self, sup: str) -> Path:
        return self.work / "pseudo" / sup

    # --- stages ---------------------------------------------------------------------------------
    def data(self) -> None:
        if not self.synthetic:
            if not (self.root / "JPEGImages").is_dir():
                raise cli.UserError(f"--voc12_root {self.root}: no JPEGImages folder (expected a VOC2012 root)")
            return
        if (self.root / "ImageSets" / "Segmentation" / "val.txt").is_file() and not self.redo("data"):
            print(f"dataset exists: {self.root}")
            return
        p = self.plan
        self.run("make_synthetic_voc", ["--out", self.root, "--num_train_aug", p.num_train_aug,
                                        "--num_train", p.num_train, "--num_val", p.num_val,
                                        "--seed", self.args.seed, "--min_size", p.min_size,
                                        "--max_size", p.max_size])

    def cam_train(self) -> None:
        ckpt = self.weights / "resnet38_SEAM.pth"
        if ckpt.is_file() and not self.redo("cam_train"):
            print(f"classifier exists: {ckpt}")
            return
        p = self.plan
        if self.plan_name == "voc" and not self.args.cam_weights:
            raise cli.UserError("--voc12_root: pass --cam_weights (the ImageNet ResNet-38 .params file, see "
                                f"download_weights.py) or put a trained classifier at {ckpt}; a ResNet-38 trained "
                                "from scratch is not the paper's setting (--quick runs a smoke test without it)")
        weights = self.args.cam_weights or "none"
        # from scratch (no ImageNet file) needs a real momentum; with weights, the published 5e-4 quirk
        momentum = 0.9 if weights == "none" else 5e-4
        self.run("train_SEAM", ["--voc12_root", self.root, "--train_list", self.args.train_list,
                                "--weights", weights, "--backbone_width", p.width,
                                "--max_epoches", p.cam_epochs, "--batch_size", p.cam_batch,
                                "--crop_size", p.cam_crop, "--resize_long", *p.cam_resize_long,
                                "--lr", p.cam_lr, "--momentum", momentum, "--optimizer", p.cam_optimizer,
                                "--cls_only_epochs", p.cam_cls_only_epochs, "--pcm_only_epochs", p.cam_pcm_only_epochs,
                                "--color_jitter", *p.jitter,
                                "--num_workers", self.num_workers, "--session_name", "resnet38_SEAM",
                                "--save_dir", self.weights, *self.common()])

    def cam_eval(self) -> None:
        """The classifier's multi-label AP on the held-out val list (``eval_classifier.py``)."""
        if not (self.root / "ImageSets" / "Segmentation" / self.val_list).is_file():
            print(f"no {self.val_list} under {self.root}: classifier not scored")
            return
        self.run("eval_classifier", ["--voc12_root", self.root, "--weights", self.weights / "resnet38_SEAM.pth",
                                     "--backbone_width", self.plan.width, "--list", self.val_list,
                                     "--out", self.work / "classifier_val.json", "--device", self.args.device])

    def dataset_scores(self) -> dict:
        """What the data allows before stages 2-3: the classifier's val mAP (against the label-frequency
        prior) and the mIoU of the ground truth seen through the stride-8 feature grid, on the infer list."""
        result = {}
        classifier = self.work / "classifier_val.json"
        if classifier.is_file():
            scores = json.loads(classifier.read_text())
            result.update(classifier_map=pct(scores["map"]), classifier_prior_map=pct(scores["prior_map"]),
                          classifier_images=scores["images"])
        gt = self.root / "SegmentationClass"
        ids = read_list(self.infer_list, self.root)
        conf = 0
        for image_id in ids:
            label = read_label_png(gt / f"{image_id}.png")
            conf = conf + confusion_matrix(grid_label(label), label)
        result["grid_upper_bound"] = pct(scores_from_confusion(conf)["miou"])
        return result

    def cam_infer(self) -> None:
        p = self.plan
        self.run("infer_SEAM", ["--voc12_root", self.root, "--infer_list", self.seed_list,
                                "--weights", self.weights / "resnet38_SEAM.pth", "--backbone_width", p.width,
                                "--scales", *p.cam_scales, "--sure_bg_score", p.cam_sure_bg_score,
                                "--sure_bg_quantile", p.cam_sure_bg_quantile,
                                "--out_cam", self.cam_dir,
                                "--out_cam_pred", self.cam_pred, "--out_cam_pred_bg_power", 4,
                                "--crf", self.cam_seeds,
                                "--ori_crf", self.cam_full, "--num_workers", self.num_workers,
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

    def aff_train(self) -> None:
        """One affinity net per supervision, trained ``--jobs`` at a time (independent runs)."""
        p = self.plan
        todo = []
        for sup in self.sups:
            if self.aff_weights(sup).is_file() and not self.redo("aff_train"):
                print(f"affinity net exists: {self.aff_weights(sup)}")
            else:
                todo.append(sup)
        self.run_each("train_aff_gated_aff", [
            ["--voc12_root", self.root, "--train_list", self.args.train_list, "--label_dir", self.aff_label_dir(sup),
             "--weights", self.weights / "resnet38_SEAM.pth", "--backbone_width", p.width, "--radius", AFF_RADIUS[sup],
             "--max_epoches", p.aff_epochs, "--batch_size", p.aff_batch, "--crop_size", p.aff_crop, "--lr", p.aff_lr,
             "--color_jitter", *p.jitter, "--num_workers", self.num_workers, "--session_name", f"aff_{sup}",
             "--save_dir", self.weights, *self.common()]
            for sup in todo])

    def a2gnn_command(self, sup: str) -> tuple[str, list]:
        """Stage 3 of ``sup``: the script and its arguments (benchmarks/bench_amp_quality.py reruns it)."""
        p = self.plan
        argv = ["--voc12_root", self.root, "--infer_list", self.infer_list,
                "--weights", self.aff_weights(sup), "--backbone_width", p.width,
                "--radius", AFF_RADIUS[sup], "--seed_label_root", self.seed_dir(sup),
                "--save_path", self.pseudo_dir(sup), "--hidden", p.hidden,
                "--overwrite", self.redo("a2gnn"), *self.common()]
        if sup == "box":
            return "train_infer_A2GNN_box", [*argv, "--BoxXmlpath", self.root / "Annotations", "--epochs", p.box_epochs,
                                             "--box_constraint", p.box_constraint]
        rw = ["--rw", "True", "--cam_dir", self.cam_dir] if sup in ("image", "point") else ["--rw", "False"]
        return "train_infer_A2GNN_others", [*argv, *rw, "--epochs", p.others_epochs]

    def a2gnn(self, sup: str) -> None:
        self.run(*self.a2gnn_command(sup))

    def evaluate(self, sup: str) -> dict:
        """Scores of this supervision's seeds, baselines and pseudo labels against the ground truth."""
        from eval_miou import evaluate

        gt = self.root / "SegmentationClass"
        ids = read_list(self.infer_list, self.root)
        seeds = evaluate(self.seed_dir(sup), gt, ids, seeds=True)
        result = {"seed_miou": pct(evaluate(self.seed_dir(sup), gt, ids)["miou"]),  # 255 -> background (§5)
                  "seed_precision": pct(seeds["precision"]), "seed_coverage": pct(seeds["coverage"]), "baselines": {}}
        if sup == "image":
            result["baselines"]["cam"] = pct(evaluate(self.cam_pred, gt, ids)["miou"])
        if sup == "scribble":  # the strokes themselves as labels (255 -> background)
            result["baselines"]["scribbles"] = pct(evaluate(self.root / "Scribbles", gt, ids)["miou"])
        if sup == "box":
            for method in ("box_fill", "grabcut"):
                result["baselines"][method] = pct(evaluate(self.work / "baselines" / method, gt, ids)["miou"])
        result["pseudo_miou"] = pct(evaluate(self.pseudo_dir(sup), gt, ids)["miou"])
        return result

    @property
    def val_list(self) -> str:
        """Images the segmentation networks are scored on (VOC val; the generated data has one too)."""
        return "val.txt"

    def baseline_dir(self, name: str) -> Path:
        """Label folder of a baseline scored by :meth:`evaluate`."""
        return {"cam": self.cam_pred, "scribbles": self.root / "Scribbles"}.get(name, self.work / "baselines" / name)

    def seg_nets(self, nets: dict[str, Path], val_ids: list[str]) -> dict[str, float]:
        """Train a segmentation net per ``name: label folder`` over the infer list, label the val list with each
        (both ``--jobs`` at a time) and return their val mIoU by name."""
        from eval_miou import evaluate

        plan = self.seg_plan
        ckpts = {name: self.work / "seg" / "weights" / f"{name}.pth" for name in nets}
        width = ["--backbone_width", self.plan.width] if plan.arch == "deeplabv2_resnet38" else []
        init = (["--backbone_weights", self.weights / "resnet38_SEAM.pth"] if plan.arch == "deeplabv2_resnet38"
                else [])
        self.run_each("train_seg", [
            ["--voc12_root", self.root, "--train_list", self.infer_list, "--label_dir", label_dir, "--arch", plan.arch,
             *width, *init, "--max_iters", plan.iters, "--batch_size", plan.batch, "--crop_size", plan.crop,
             "--scale_range", *plan.scale_range, "--lr", plan.lr, "--optimizer", plan.optimizer,
             "--num_workers", self.num_workers, "--session_name", name, "--save_dir", ckpts[name].parent,
             *self.common()]
            for name, label_dir in nets.items() if not ckpts[name].is_file() or self.redo("seg")])
        preds = {name: self.work / "seg" / "val" / name for name in nets}
        self.run_each("infer_seg", [
            ["--voc12_root", self.root, "--infer_list", self.val_list, "--weights", ckpts[name], "--arch", plan.arch,
             *width, "--save_path", preds[name], "--gt_dir", "none", "--overwrite", self.redo("seg"),
             "--device", self.args.device] for name in nets])
        return {name: evaluate(pred, self.root / "SegmentationClass", val_ids)["miou"] for name, pred in preds.items()}

    def seg(self, summary: dict) -> dict | None:
        """Stage 4 (algorithm.md §4): per supervision, nets trained on its pseudo labels, its seeds and its strongest
        baseline, and one net on ground truth (the upper bound), all scored on the val list. Fills
        ``summary['supervision'][sup]['seg']`` and returns ``summary['seg']`` (None when skipped)."""
        try:
            val_ids = read_list(self.val_list, self.root)
        except FileNotFoundError:
            print(f"seg stage skipped: no val list ({self.val_list}) in {self.root}")
            return None
        plan = self.seg_plan
        if plan.arch != "deeplabv2_resnet38":
            from train_seg import default_backbone_weights

            if not Path(default_backbone_weights(plan.arch)).is_file():
                print(f"seg stage skipped: no ImageNet backbone file {default_backbone_weights(plan.arch)} "
                      "(see train_seg.py --backbone_weights)")
                return None
        aug = self.root / "SegmentationClassAug"
        start = time.time()
        nets = {"gt": aug if aug.is_dir() else self.root / "SegmentationClass"}
        best: dict[str, str | None] = {}  # each scored supervision's strongest baseline
        for sup in self.sups:
            entry = summary["supervision"].get(sup)
            if entry is None or "pseudo_miou" not in entry:
                print(f"seg ({sup}): no evaluate results; run the evaluate stage first")
                continue
            nets[f"{sup}_pseudo"], nets[f"{sup}_seeds"] = self.pseudo_dir(sup), self.seed_dir(sup)
            best[sup] = max(entry["baselines"], key=entry["baselines"].get) if entry["baselines"] else None
            if best[sup]:
                nets[f"baseline_{best[sup]}"] = self.baseline_dir(best[sup])
        scores = {name: pct(miou) for name, miou in self.seg_nets(nets, val_ids).items()}
        chance = pct(background_miou(self.root / "SegmentationClass", val_ids))
        # a ground-truth net no better than labelling everything background learnt nothing: no "% of GT"
        gt_at_chance = scores["gt"] <= chance + CHANCE_MARGIN
        for sup, baseline in best.items():
            result = {"val_miou": scores[f"{sup}_pseudo"], "seeds_val_miou": scores[f"{sup}_seeds"]}
            if baseline:
                result.update(baseline=baseline, baseline_val_miou=scores[f"baseline_{baseline}"])
            result["pct_of_gt"] = None if gt_at_chance else pct(result["val_miou"] / scores["gt"])
            summary["supervision"][sup]["seg"] = result
        return {"arch": plan.arch, "val_list": self.val_list, "num_val": len(val_ids), "gt": scores["gt"],
                "all_background": chance, "gt_at_chance": gt_at_chance, "seconds": round(time.time() - start, 1)}

    def inst_labels(self, name: str) -> Path:
        """The COCO instances file of a label set of :data:`INST_LABELS` (or ``val_gt``)."""
        return self.work / "inst" / "labels" / f"{name}.json"

    def inst(self) -> dict | None:
        """Stage 4, instances (docs/instances.md): instance labels of the box pseudo labels, of GrabCut per box, of
        the filled boxes and of the ground truth on the infer list, their own scores there, and Mask R-CNN
        trained on each and scored on the val list. Returns ``summary['inst']`` (None when skipped)."""
        from eval_inst import evaluate
        from train_inst import DEFAULT_BACKBONE

        if "box" not in self.sups:
            print("inst stage skipped: it needs the box supervision (--supervision box or all)")
            return None
        plan = self.inst_plan
        backbone = self.weights / "resnet38_SEAM.pth" if plan.arch == "maskrcnn_resnet38" else \
            Path(DEFAULT_BACKBONE[plan.arch])
        if not backbone.is_file():
            print(f"inst stage skipped: no backbone file {backbone} (see train_inst.py --backbone_weights)")
            return None
        start = time.time()
        folders = {"a2gnn": self.pseudo_dir("box"), "grabcut": self.baseline_dir("grabcut"),
                   "box_fill": self.baseline_dir("box_fill"), "gt": "gt"}
        missing = [str(f) for f in folders.values() if f != "gt" and not Path(f).is_dir()]
        if missing:
            print(f"inst stage skipped: no label folder {', '.join(missing)} (run the baselines and a2gnn stages)")
            return None
        sets = [(name, self.infer_list, folder) for name, folder in folders.items()] + [("val_gt", self.val_list, "gt")]
        for name, ids, folder in sets:
            if not self.inst_labels(name).is_file() or self.redo("inst"):
                png = [] if name == "val_gt" else ["--out_dir", self.inst_labels(name).with_suffix("")]
                self.run("make_instance_labels", ["--voc12_root", self.root, "--infer_list", ids, "--label_dir", folder,
                                                  "--out_json", self.inst_labels(name), *png])
        gt_train, gt_val = (json.loads(self.inst_labels(n).read_text()) for n in ("gt", "val_gt"))
        labels = {name: percents(evaluate(gt_train, json.loads(self.inst_labels(name).read_text())))
                  for name in INST_LABELS[:3]}
        model = ["--arch", plan.arch, "--short_side", *plan.short_side, "--long_side", plan.long_side]
        if plan.arch == "maskrcnn_resnet38":
            model += ["--backbone_width", self.plan.width]
        ckpts = {name: self.work / "inst" / "weights" / f"{name}.pth" for name in INST_LABELS}
        self.run_each("train_inst", [
            ["--voc12_root", self.root, "--train_json", self.inst_labels(name), *model, "--backbone_weights", backbone,
             "--max_iters", plan.iters, "--batch_size", plan.batch, "--lr", plan.lr, "--optimizer", plan.optimizer,
             "--num_workers", self.num_workers, "--session_name", name, "--save_dir", ckpts[name].parent,
             *self.common()]
            for name in INST_LABELS if not ckpts[name].is_file() or self.redo("inst")])
        preds = {name: self.work / "inst" / "val" / f"{name}.json" for name in INST_LABELS}
        self.run_each("infer_inst", [
            ["--voc12_root", self.root, "--infer_list", self.val_list, "--weights", ckpts[name], *model,
             "--mask_context", plan.mask_context, "--out_json", preds[name], "--device", self.args.device]
            for name in INST_LABELS if not preds[name].is_file() or self.redo("inst")])
        nets = {name: percents(evaluate(gt_val, json.loads(preds[name].read_text()))) for name in INST_LABELS}
        gt_ap50 = nets["gt"]["AP50"]
        return {"arch": plan.arch, "iters": plan.iters, "mask_context": plan.mask_context, "val_list": self.val_list,
                "num_val": len(gt_val["images"]), "labels": labels, "nets": nets,
                "a2gnn_pct_of_gt_ap50": pct(nets["a2gnn"]["AP50"] / gt_ap50) if gt_ap50 > 0 else None,
                "seconds": round(time.time() - start, 1)}

    def sheet(self) -> None:
        columns = [f"cam_seeds={self.cam_seeds}"] + [f"{sup}={self.pseudo_dir(sup)}" for sup in self.sups]
        self.run("visualize", ["--voc12_root", self.root, "--list", self.infer_list, "--first", 6,
                               "--columns", *columns, "--out", self.work / "contact_sheet.png"])


def print_table(summary: dict) -> None:
    if summary.get("smoke_test"):
        print(f"\n*** {SMOKE_TEST} ***")
    data = summary.get("dataset", {})
    if "classifier_map" in data:
        print(f"\nclassifier: val mAP {data['classifier_map']:.1f} over {data['classifier_images']} held-out "
              f"images (label-frequency prior {data['classifier_prior_map']:.1f})")
    if "grid_upper_bound" in data:
        print(f"stride-8 grid upper bound (ground truth averaged on the feature grid): "
              f"{data['grid_upper_bound']:.1f} mIoU")
    rows = summary["supervision"]
    baseline_names = sorted({name for r in rows.values() for name in r.get("baselines", {})})
    header = f"{'supervision':<12}{'seeds (prec/cov)':>20}{'seed mIoU':>11}" + "".join(
        f"{name:>10}" for name in baseline_names) + f"{'A2GNN':>9}{'val mIoU':>10}{'% of GT':>9}{'minutes':>9}"
    print("\n" + header + "\n" + "-" * len(header))
    for sup, r in rows.items():
        if "pseudo_miou" not in r:
            continue
        line = f"{sup:<12}{r['seed_precision']:>12.1f} /{r['seed_coverage']:>5.1f}{r['seed_miou']:>11.1f}"
        line += "".join(f"{r['baselines'][n]:>10.1f}" if n in r["baselines"] else f"{'-':>10}"
                        for n in baseline_names)
        seg = r.get("seg", {})
        line += f"{r['pseudo_miou']:>9.1f}" + (f"{seg['val_miou']:>10.1f}" if seg else f"{'-':>10}")
        line += f"{seg['pct_of_gt']:>9.1f}" if seg.get("pct_of_gt") is not None else f"{'-':>9}"
        line += f"{sum(r.get('seconds', {}).values()) / 60:>9.1f}"
        print(line)
    print("(%, on the infer list; seed mIoU counts unlabelled (255) seed pixels as background; "
          "minutes = this supervision's stages, shared stages counted in each; val mIoU: the segmentation "
          "network trained on the pseudo labels, % of the one trained on ground truth)")
    if summary.get("smoke_test"):
        print(f"({SMOKE_TEST})")


def print_seg_table(summary: dict) -> None:
    """Val mIoU of the stage-4 networks: trained on the seeds, the strongest baseline, the pseudo labels."""
    seg = summary["seg"]
    print(f"\nsegmentation networks ({seg['arch']}), mIoU % on {seg['val_list']} ({seg['num_val']} images); "
          f"trained on ground truth: {seg['gt']:.1f}; {seg.get('seconds', 0) / 60:.1f} min for all of them")
    if seg.get("gt_at_chance"):
        print(f"the net trained on ground truth is at chance (all background: {seg['all_background']:.1f} mIoU), "
              "so no '% of GT' is given")
    header = f"{'supervision':<12}{'seeds':>8}{'baseline':>22}{'A2GNN':>8}{'% of GT':>9}"
    print(header + "\n" + "-" * len(header))
    for sup, r in summary["supervision"].items():
        if "seg" not in r:
            continue
        n = r["seg"]
        base = f"{n['baseline']} {n['baseline_val_miou']:.1f}" if "baseline" in n else "-"
        pct_text = f"{n['pct_of_gt']:>9.1f}" if n["pct_of_gt"] is not None else f"{'-':>9}"
        print(f"{sup:<12}{n['seeds_val_miou']:>8.1f}{base:>22}{n['val_miou']:>8.1f}{pct_text}")
    if summary.get("smoke_test"):
        print(f"({SMOKE_TEST})")


def print_inst_table(summary: dict) -> None:
    """Mask AP of the instance labels on the infer list and of Mask R-CNN trained on each, on the val list."""
    inst = summary["inst"]
    print(f"\ninstance segmentation (Mask R-CNN {inst['arch']}, {inst['iters']} steps, mask context "
          f"{inst['mask_context']}), mask AP % on "
          f"{inst['val_list']} ({inst['num_val']} images); {inst.get('seconds', 0) / 60:.1f} min for all of it")
    header = (f"{'labels':<10}{'label AP50':>11}{'AP75':>7}{'box IoU':>9}{'net AP50':>10}{'AP75':>7}{'AP':>7}"
              f"{'found':>7}{'box IoU':>9}{'mask IoU':>10}")
    print(header + "\n" + "-" * len(header))
    for name, net in inst["nets"].items():
        label = inst["labels"].get(name)
        cells = (f"{label['AP50']:>11.1f}{label['AP75']:>7.1f}{label['mean_iou']:>9.1f}" if label
                 else f"{'-':>11}{'-':>7}{'-':>9}")
        print(f"{name:<10}{cells}{net['AP50']:>10.1f}{net['AP75']:>7.1f}{net['AP']:>7.1f}{net['found']:>7.1f}"
              f"{net['box_iou']:>9.1f}{net['mask_iou']:>10.1f}")
    if inst["a2gnn_pct_of_gt_ap50"] is not None:
        print(f"(label columns: the instance labels themselves on the infer list, as predictions of score 1; box IoU: "
              f"mean IoU of each box's mask with its ground-truth instance; found: the share of val instances with a "
              f"detection of their class at box IoU >= 0.5, then the mean box and mask IoU of those. A2GNN's net "
              f"reaches {inst['a2gnn_pct_of_gt_ap50']:.1f} % of the ground-truth net's AP50)")
    if summary.get("smoke_test"):
        print(f"({SMOKE_TEST})")


def get_args_parser() -> argparse.ArgumentParser:
    parser = make_parser(__doc__)
    parser.add_argument("--work_dir", default="data/demo", help="everything the run writes goes here")
    parser.add_argument("--voc12_root", default=None,
                        help="a real VOC2012 root (default: generate a synthetic one under --work_dir)")
    parser.add_argument("--supervision", default="all", choices=(*SUPERVISIONS, "all"),
                        help="kind of weak annotation to run, or all four")
    parser.add_argument("--quick", action="store_true",
                        help="smoke test of the wiring: the 'quick' plan (tiny dataset, a few steps per stage; a "
                             "few minutes on 2 CPU cores); its numbers are not quality figures")
    parser.add_argument("--plan", default=None, choices=sorted(PLANS),
                        help="named sizes and schedules of stages/plans.py (default: quick with --quick, voc with "
                             "--voc12_root, else default)")
    parser.add_argument("--set", default=[], action="append", metavar="KEY=VALUE",
                        help="override one plan value, typed by its field (repeatable): --set cam_epochs=4, "
                             "--set cam_scales=0.5,1,1.5, --set seg.iters=200 for the stage-4 part; none by default")
    parser.add_argument("--stages", nargs="+", default=list(STAGES), choices=STAGES, help="stages to run")
    parser.add_argument("--redo", nargs="*", default=[], choices=STAGES,
                        help="recompute these stages even where their outputs exist")
    parser.add_argument("--train_list", default="train_aug.txt", type=str, help="list the networks train on")
    parser.add_argument("--infer_list", default="train.txt", type=str,
                        help="list that gets seeds and pseudo labels (default: train, where the paper scores "
                             "pseudo labels)")
    parser.add_argument("--cam_weights", default=None,
                        help="init of the classifier (ImageNet .params or a .pth); default: from scratch")
    parser.add_argument("--num_workers", default=None, type=int,
                        help="DataLoader workers per training (or CAM inference) process (default: 0 on CPU; on "
                             f"CUDA the CPU cores per visible GPU, at most {MAX_LOADER_WORKERS})")
    parser.add_argument("--jobs", default=None, type=int,
                        help="processes for the per-image stages, and on CPU for independent training runs "
                             "(default: CPU cores on CPU, 1 on CUDA)")
    parser.add_argument("--device", default=default_device(), type=str, help=DEVICE_HELP)
    parser.add_argument("--seed", default=0, type=int,
                        help="seed of the generated dataset and of every stage (integer)")
    return add_gpus_argument(parser)


def loader_workers(device: str) -> int:
    """Default ``--num_workers``: 0 on a CPU (training already keeps the cores busy); on CUDA the CPU cores
    shared by the GPU workers, 1 to ``MAX_LOADER_WORKERS`` each, so that decoding and augmentation run beside
    the GPU instead of inside the training loop."""
    if torch.device(device).type != "cuda":
        return 0
    return min(MAX_LOADER_WORKERS, cores_per_gpu())


def main(args: argparse.Namespace) -> dict:
    if args.jobs is None:
        args.jobs = 1 if args.device.startswith("cuda") else len(os.sched_getaffinity(0))
    pipe = Pipeline(args)
    pipe.work.mkdir(parents=True, exist_ok=True)
    smoke_test = pipe.plan_name == "quick"
    if smoke_test:
        print(f"*** {SMOKE_TEST} ***")
    print(pipe.devices(), flush=True)
    record = plan_record(pipe.plan_name, pipe.plan, pipe.seg_plan, pipe.inst_plan, pipe.overrides)
    print(f"pipeline: {pipe.plan_name} plan {record}")
    print(f"data: {pipe.root}; supervisions: {', '.join(pipe.sups)}; work dir: {pipe.work}")
    steps = [("data", None), ("cam_train", None), ("cam_eval", None), ("cam_infer", None)]
    steps += [(stage, sup) for stage in ("seeds", "baselines") for sup in pipe.sups]
    steps += [("aff_train", None)] + [("a2gnn", sup) for sup in pipe.sups]
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
    summary = json.loads(summary_path.read_text()) if summary_path.is_file() else {}
    if summary.get("units") != UNITS:  # none yet, or one written in fractions by an earlier version
        summary = {"supervision": {}}
    if pipe.wanted("evaluate"):
        print(f"\n=== [{time.time() - start:7.1f} s] stage evaluate", flush=True)
        for sup in pipe.sups:
            entry = pipe.evaluate(sup)
            if "seg" in summary["supervision"].get(sup, {}):  # stage-4 scores stay until the seg stage reruns
                entry["seg"] = summary["supervision"][sup]["seg"]
            entry["seconds"] = pipe.seconds[sup] or summary["supervision"].get(sup, {}).get("seconds", {})
            summary["supervision"][sup] = entry
        summary["dataset"] = pipe.dataset_scores()
        # wall time of each stage this invocation ran (one skipped because its outputs exist: its few seconds)
        summary.setdefault("stage_seconds", {}).update(pipe.stage_seconds)
        summary.update(units=UNITS, smoke_test=smoke_test,
                       plan=record,
                       voc12_root=str(pipe.root), **provenance(REPO, args.device))
        with atomic_path(summary_path) as tmp:
            tmp.write_text(json.dumps(summary, indent=2))
        print_table(summary)
        print(f"summary: {summary_path}")
    if pipe.wanted("seg"):
        print(f"\n=== [{time.time() - start:7.1f} s] stage seg", flush=True)
        seg = pipe.seg(summary)
        if seg is not None:
            summary["seg"] = seg
            pipe.stage_seconds["seg"] = seg["seconds"]
            summary.setdefault("stage_seconds", {})["seg"] = seg["seconds"]
            with atomic_path(summary_path) as tmp:
                tmp.write_text(json.dumps(summary, indent=2))
            print_seg_table(summary)
    if pipe.wanted("inst"):
        print(f"\n=== [{time.time() - start:7.1f} s] stage inst", flush=True)
        inst = pipe.inst()
        if inst is not None:
            summary["inst"] = inst
            pipe.stage_seconds["inst"] = inst["seconds"]
            summary.setdefault("stage_seconds", {})["inst"] = inst["seconds"]
            with atomic_path(summary_path) as tmp:
                tmp.write_text(json.dumps(summary, indent=2))
            print_inst_table(summary)
    if pipe.wanted("sheet"):
        pipe.sheet()
    if pipe.stage_seconds:
        print("stage minutes: " + ", ".join(f"{stage} {sec / 60:.1f}" for stage, sec in pipe.stage_seconds.items()))
    print(f"\npipeline finished in {(time.time() - start) / 60:.1f} min"
          + (f"; {len(pipe.failures)} stage(s) reported failures: {pipe.failures}" if pipe.failures else ""))
    return summary


if __name__ == "__main__":
    sys.exit(cli.run(lambda: main(get_args_parser().parse_args())))
