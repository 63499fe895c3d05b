"""The plans of ``run_pipeline.py``: the sizes and schedules of one run, as data.

A plan is a :class:`Plan` (the generated dataset and stages 1-3) and a :class:`SegPlan` (stage 4) under
one name in :data:`PLANS` / :data:`SEG_PLANS`. ``run_pipeline.py --plan NAME`` picks one (default:
``quick`` with ``--quick``, ``voc`` with ``--voc12_root``, else ``default``); ``--set key=value`` changes a
value of the plan, ``--set seg.key=value`` one of its stage-4 part (typed by the field: ``--set cam_epochs=4``,
``--set cam_scales=0.5,1,1.5``, ``--set box_constraint=False``, ``--set seg.iters=200``).
``summary.json`` records the plan as run (:func:`provenance` adds the code version, date and machine).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import subprocess
import typing
from collections.abc import Sequence
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any

from tool.cli import BadValueError, str2bool
from voc12.data import JITTER


@dataclass(frozen=True)
class Plan:
    """Sizes and schedules of stages 1-3 (the paper's schedules shortened for CPU on the generated data)."""

    num_train_aug: int  # generated data: train_aug (classifier and affinity nets) holds train (pseudo labels)
    num_train: int
    num_val: int  # held out: the classifier's mAP and the segmentation nets' scores
    min_size: int  # generated image sides, pixels
    max_size: int
    width: float  # backbone width of the classifier and the affinity nets
    cam_epochs: int
    cam_batch: int
    cam_crop: int  # pixels
    cam_resize_long: tuple[int, int]  # pixels
    cam_lr: float
    cam_optimizer: str
    cam_cls_only_epochs: int  # classification loss alone first (from scratch), then every SEAM loss ...
    cam_pcm_only_epochs: int  # ... then, for the last epochs, the PCM head alone (train_SEAM.py --pcm_only_epochs)
    cam_scales: tuple[float, ...]
    cam_sure_bg_score: float  # sure background seeds where (1 - max CAM)^24 exceeds it (infer_SEAM.py --sure_bg_score)
    cam_sure_bg_quantile: float  # and at each image's lowest max-CAM pixels (--sure_bg_quantile; 0 = off)
    jitter: tuple[float, float, float, float]  # colour jitter of stages 1 and 2 (brightness .. hue)
    aff_epochs: int
    aff_batch: int
    aff_crop: int  # pixels
    aff_lr: float
    box_epochs: int  # A2GNN epochs per phase (algorithm.md §3.5: 150 box, 50 others)
    others_epochs: int
    hidden: int
    box_constraint: bool  # box pseudo labels keep to their boxes (train_infer_A2GNN_box.py --box_constraint)


@dataclass(frozen=True)
class SegPlan:
    """Stage-4 networks of one run (``train_seg.py`` flags; the demo's backbone is the stage-1 classifier)."""

    arch: str
    iters: int  # training steps
    batch: int
    crop: int  # pixels
    lr: float
    optimizer: str
    scale_range: tuple[float, float]


# No colour jitter on the generated data: colour is what tells its classes apart (voc12/synthetic.py), and
# jitter 0.3 cost the from-scratch classifier 7 points of val mAP after 279 steps.
SYNTHETIC_JITTER = (0.0, 0.0, 0.0, 0.0)
# Sure background where every CAM is below 0.05 instead of the published 0.009 ((1 - 0.009)^24 = 0.8): a
# from-scratch classifier's CAMs are near zero on less of the background; and, in every image, its lowest 10 %
# of max-CAM pixels (below 0.5): the CRF at alpha 24 leaves a third of the images without any background
# seed otherwise (the background seed rule table of the seed-1 run, docs/results.md).
SYNTHETIC_SURE_BG = (1 - 0.05) ** 24

PLANS = {
    # the default run on the generated data (docs/results.md)
    "default": Plan(num_train_aug=800, num_train=60, num_val=200, min_size=112, max_size=176, width=0.125,
                    cam_epochs=12, cam_batch=16, cam_crop=128, cam_resize_long=(112, 176), cam_lr=1.5e-3,
                    cam_optimizer="adamw", cam_cls_only_epochs=11, cam_pcm_only_epochs=1,
                    cam_scales=(0.5, 1.0, 1.5), cam_sure_bg_score=SYNTHETIC_SURE_BG, cam_sure_bg_quantile=0.1,
                    jitter=SYNTHETIC_JITTER, aff_epochs=1, aff_batch=8, aff_crop=128, aff_lr=0.01,
                    box_epochs=30, others_epochs=30, hidden=256, box_constraint=True),
    # --quick: a smoke test of the wiring (CI size); its numbers are not quality figures
    "quick": Plan(num_train_aug=24, num_train=12, num_val=8, min_size=96, max_size=128, width=0.125,
                  cam_epochs=2, cam_batch=4, cam_crop=96, cam_resize_long=(96, 144), cam_lr=3e-3,
                  cam_optimizer="adamw", cam_cls_only_epochs=1, cam_pcm_only_epochs=1, cam_scales=(1.0,),
                  cam_sure_bg_score=SYNTHETIC_SURE_BG, cam_sure_bg_quantile=0.1,
                  jitter=SYNTHETIC_JITTER, aff_epochs=1, aff_batch=4, aff_crop=96, aff_lr=0.01,
                  box_epochs=20, others_epochs=10, hidden=64, box_constraint=True),
    # real VOC2012 (--voc12_root without --quick): the published schedules, algorithm.md §1.1, 1.2, 2.2, 3.5
    "voc": Plan(num_train_aug=0, num_train=0, num_val=0, min_size=0, max_size=0, width=1.0,
                cam_epochs=8, cam_batch=8, cam_crop=448, cam_resize_long=(448, 768), cam_lr=0.01,
                cam_optimizer="sgd", cam_cls_only_epochs=0, cam_pcm_only_epochs=0,
                cam_scales=(0.5, 1.0, 1.5, 2.0), cam_sure_bg_score=0.8, cam_sure_bg_quantile=0.0,
                jitter=JITTER, aff_epochs=12, aff_batch=4, aff_crop=448, aff_lr=0.01,
                box_epochs=150, others_epochs=50, hidden=256, box_constraint=False),
}

# Generated data: AdamW at lr 1e-4 (head x10), 100 steps, scales 0.75-1.5, chosen on the ground-truth net
# alone (seed-0 data of 46547fd, 60 train images, val mIoU, train_seg --seed 0 / 1): 60 steps at lr 6e-4 19.2,
# 3e-4 38.9 / 38.5, 2e-4 41.9, 1e-4 43.6 / 43.0, 5e-5 40.8; 100 steps at 3e-4 43.0, at 1e-4 46.5 / 45.7.
SEG_PLANS = {
    "default": SegPlan(arch="deeplabv2_resnet38", iters=100, batch=8, crop=128, lr=1e-4, optimizer="adamw",
                       scale_range=(0.75, 1.5)),
    "quick": SegPlan(arch="deeplabv2_resnet38", iters=6, batch=4, crop=96, lr=3e-4, optimizer="adamw",
                     scale_range=(0.75, 1.5)),
    # real VOC2012: the DeepLab v2 recipe (algorithm.md §4), ImageNet ResNet-101 from netWeights/
    "voc": SegPlan(arch="deeplabv2_resnet101", iters=20000, batch=10, crop=321, lr=2.5e-4, optimizer="sgd",
                   scale_range=(0.5, 2.0)),
}

PREFIXES = {"seg.": "seg", "inst.": "inst"}  # --set prefix -> the stage-4 plan it changes


@dataclass(frozen=True)
class InstPlan:
    """Stage-4 Mask R-CNN of one run (``train_inst.py`` flags; the demo's backbone is the stage-1 classifier)."""

    arch: str
    iters: int
    batch: int
    lr: float
    optimizer: str
    short_side: tuple[int, ...]
    long_side: int
    mask_context: float = 1.0  # infer_inst.py --mask_context


# Generated data: the frozen stage-1 ResNet-38 with light heads (network/maskrcnn.py), AdamW lr 1e-3. Chosen on the
# ground-truth net of seed-0 data (val AP50 / AP75): 300 steps 50.6 / 5.8, 600 steps 56.7 / 10.4; 500 keeps the stage
# within its 10 minutes on 2 CPU cores. Mask context 1.15, chosen on the same net's val AP among 1, 1.1, 1.15, 1.2,
# 1.25 (AP 19.1 at 1 -> 20.9, AP75 6.6 -> 11.5; docs/instances.md)
INST_PLANS = {
    "default": InstPlan(arch="maskrcnn_resnet38", iters=500, batch=4, lr=1e-3, optimizer="adamw", short_side=(160,),
                        long_side=224, mask_context=1.15),
    "quick": InstPlan(arch="maskrcnn_resnet38", iters=4, batch=2, lr=1e-3, optimizer="adamw", short_side=(96,),
                      long_side=128, mask_context=1.15),
    # real VOC2012: Detectron2's VOC Mask R-CNN recipe (train_inst.py), ImageNet ResNet-50 from netWeights/
    "voc": InstPlan(arch="maskrcnn_resnet50_fpn", iters=18000, batch=16, lr=0.02, optimizer="sgd",
                    short_side=(480, 512, 544, 576, 608, 640, 672, 704, 736, 768, 800), long_side=1333),
}

def default_plan_name(quick: bool, voc12_root: str | None) -> str:
    """``quick`` with ``--quick``; else ``voc`` on a real VOC root, ``default`` on the generated data."""
    return "quick" if quick else ("voc" if voc12_root else "default")


def _scalar(text: str, kind: type) -> Any:
    return str2bool(text) if kind is bool else kind(text.strip())


def _parse_value(key: str, text: str, kind: Any) -> Any:
    """``text`` as a value of the annotated type ``kind`` (int, float, str, bool or a tuple of them, written
    with commas); ``BadValueError`` naming ``key``, the text and the expected type otherwise."""
    name = kind.__name__ if isinstance(kind, type) else str(kind).replace("typing.", "")
    try:
        if typing.get_origin(kind) is not tuple:
            return _scalar(text, kind)
        args = typing.get_args(kind)
        parts = [part for part in text.split(",") if part.strip()]
        kinds = [args[0]] * len(parts) if args[-1] is Ellipsis else list(args)
        if not parts or len(parts) != len(kinds):
            raise ValueError(f"{len(parts)} comma-separated values")
        return tuple(_scalar(part, k) for part, k in zip(parts, kinds, strict=True))
    except (ValueError, TypeError, argparse.ArgumentTypeError) as err:  # the last: str2bool's
        raise BadValueError(f"--set {key}={text}: not a {name} ({err})") from None


def apply_overrides(plan: Plan, seg: SegPlan, inst: InstPlan, items: Sequence[str]
                    ) -> tuple[Plan, SegPlan, InstPlan, dict[str, Any]]:
    """``plan``, ``seg`` and ``inst`` with the ``key=value`` items applied (``seg.key=value`` for the semantic
    stage-4 part, ``inst.key=value`` for Mask R-CNN) and the typed overrides by key. An unknown key or a value
    of the wrong type raises ``BadValueError`` naming the key and the valid ones."""
    parts = {"plan": plan, "seg": seg, "inst": inst}
    overrides: dict[str, Any] = {}
    changes: dict[str, dict[str, Any]] = {part: {} for part in parts}
    for item in items:
        key, sep, text = item.partition("=")
        key = key.strip()
        prefix = next((p for p in PREFIXES if key.startswith(p)), "")
        target, name = PREFIXES.get(prefix, "plan"), key[len(prefix):]
        kinds = typing.get_type_hints(type(parts[target]))
        if not sep or name not in kinds:
            valid = "; ".join(", ".join(prefix + f.name for f in fields(part))
                              for prefix, part in (("", plan), *((p, parts[t]) for p, t in PREFIXES.items())))
            problem = "expected key=value" if not sep else f"unknown key {key!r}"
            raise BadValueError(f"--set {item}: {problem}; valid keys: {valid}")
        value = _parse_value(key, text, kinds[name])
        changes[target][name] = value
        overrides[key] = value
    return (*(replace(part, **changes[target]) for target, part in parts.items()), overrides)


def plan_record(name: str, plan: Plan, seg: SegPlan, inst: InstPlan, overrides: dict[str, Any]) -> dict:
    """The plan as run, for ``summary.json``: its name, every value (overrides applied) and the overrides."""
    record = {"name": name, "values": asdict(plan), "seg": asdict(seg), "inst": asdict(inst), "overrides": overrides}
    return json.loads(json.dumps(record))  # as summary.json holds it: tuples become lists


def code_version(repo: Path) -> str:
    """``git describe --always --dirty`` of ``repo``; the installed package's version without git."""
    try:
        out = subprocess.run(["git", "describe", "--always", "--dirty"], cwd=repo, capture_output=True,
                             text=True, timeout=10, check=True)
        return out.stdout.strip()
    except (OSError, subprocess.SubprocessError):
        from importlib import metadata

        try:
            return metadata.version("a2gnn")
        except metadata.PackageNotFoundError:
            return "unknown"


def cpu_model() -> str:
    """The CPU's model name (``/proc/cpuinfo`` on Linux, else ``platform.processor()``)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def provenance(repo: Path, device: str) -> dict:
    """Code version, date (UTC) and machine of a run: CPU model, the cores this process may use, torch
    threads, the device (with the GPU's name on CUDA) and the library versions."""
    import torch

    gpu = torch.cuda.get_device_name(torch.device(device)) if device.startswith("cuda") else None
    return {"code_version": code_version(repo),
            "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "machine": {"cpu": cpu_model(), "cores": len(os.sched_getaffinity(0)),
                        "torch_threads": torch.get_num_threads(), "device": device, "gpu": gpu,
                        "python": platform.python_version(), "torch": torch.__version__}}

