"""Stage 3 as the two ``train_infer_A2GNN_*.py`` scripts run it: their shared flags, the job (read
images' files in ``--num_workers`` loader processes, run the affinity network, train their A2GNNs with
``tool.propagate.propagate_batch`` ``--batch_images`` at a time, dense CRF, write each label PNG) and the
loop over the id list.
"""

from __future__ import annotations

import argparse
import functools
import importlib
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from tool.cam import load_cams
from tool.checkpoint import load_checkpoint
from tool.cli import DEVICE_HELP, BadValueError, add_id_list, add_voc12_root, default_device, str2bool
from tool.crf import box_constrained_crf
from tool.dist import add_gpus_argument, process_group
from tool.label_io import read_image, read_label_png, save_label_png, save_npz
from tool.propagate import STRIDE, ImageInputs, PropagateConfig, check_inputs, propagate_batch
from tool.runner import (
    RunSummary,
    add_cpu_workers_argument,
    add_load_workers_argument,
    resolve_cpu_workers,
    resolve_load_workers,
    run_per_image,
)
from tool.transforms import normalize, pad_to_multiple, to_chw_tensor
from voc12.annotations import read_boxes
from voc12.lists import read_list
from vocabulary import IGNORE, NUM_CLASSES

SCRIPT_DEFAULTS = {
    "box": {"weights": "./netWeights/final_model/aff_box.pth", "save_path": "./out/box_pred",
            "seed_label_root": "./data/Init_Label/SEAM_Box", "radius": 4, "epochs": 150, "lr": 0.035},
    "others": {"weights": "./netWeights/final_model/aff_scribble.pth", "save_path": "./out/scribble_pred",
               "seed_label_root": "./data/Init_Label/Scribble_SuperPixel", "radius": 3, "epochs": 50,
               "lr": 0.03},
}


GPU_BATCH_IMAGES = 32  # --batch_images on CUDA, chosen by benchmarks/bench_a2gnn.py (docs/gpu.md)


def resolve_batch_images(value: int | None, device: torch.device | str) -> int:
    """``--batch_images`` as given, or its default for ``device``: ``GPU_BATCH_IMAGES`` on CUDA, 1 on a CPU."""
    if value is not None:
        return value
    return GPU_BATCH_IMAGES if torch.device(device).type == "cuda" else 1


def add_a2gnn_arguments(parser: argparse.ArgumentParser, schedule: str) -> argparse.ArgumentParser:
    """The flags both stage-3 scripts share (upstream names and meanings), with ``schedule``'s defaults."""
    d = SCRIPT_DEFAULTS[schedule]
    add_voc12_root(parser)
    parser.add_argument("--weights", default=d["weights"], type=str, help="trained affinity network")
    parser.add_argument("--network", default="network.resnet38_aff_gated", type=str,
                        help="module with the affinity network class Net")
    parser.add_argument("--backbone_width", default=1.0, type=float,
                        help="width multiplier of the affinity network (1 for the published weights)")
    add_id_list(parser, "--infer_list", what="images to write pseudo labels for")
    add_load_workers_argument(parser)
    parser.add_argument("--seed_label_root", default=d["seed_label_root"], type=str,
                        help="folder of seed PNGs <id>.png (255 = unknown)")
    parser.add_argument("--save_path", default=d["save_path"], type=str, help="output folder of label PNGs")
    parser.add_argument("--save_probs", default=None, type=str,
                        help="also write the probabilities before the dense CRF to DIR/<id>.npz (float16)")
    parser.add_argument("--radius", default=d["radius"], type=int, help="affinity window radius")
    parser.add_argument("--epochs", default=d["epochs"], type=int, help="epochs of each of the two phases")
    parser.add_argument("--hidden", default=256, type=int, help="hidden units")
    parser.add_argument("--num_class", default=NUM_CLASSES, type=int, help="output classes, background included")
    parser.add_argument("--dropout", default=0.5, type=float, help="dropout rate")
    parser.add_argument("--lr", default=d["lr"], type=float, help="Adam learning rate")
    parser.add_argument("--weight_decay", default=5e-4, type=float, help="Adam weight decay (L2 factor)")
    parser.add_argument("--device", default=default_device(), type=str, help=DEVICE_HELP)
    parser.add_argument("--amp", default=False, type=str2bool,
                        help="bf16 autocast of the A2GNN embedding product (True/False; off by default: its "
                             "effect on the pseudo labels is measured by benchmarks/bench_amp_quality.py). On "
                             "CUDA for speed; on CPU for measuring that effect only (not faster there)")
    parser.add_argument("--seed", default=0, type=int,
                        help="random seed; each image's generator is seeded by (seed, image id)")
    parser.add_argument("--batch_images", default=None, type=int,
                        help="images trained together in one step, one A2GNN each (the same labels as 1, "
                             "up to float rounding; memory grows with it). Default: 1 on a CPU; "
                             f"{GPU_BATCH_IMAGES} on CUDA (H200, VOC size, from the step times: 12x the images/s of "
                             "1 with the box schedule, 8x with the others; 7.7 GB of GPU memory; docs/gpu.md)")
    parser.add_argument("--shard", default=None, type=str,
                        help="process shard i/n of the list (default: torchrun RANK/WORLD_SIZE, else all)")
    parser.add_argument("--overwrite", default=False, type=str2bool, help="redo images whose output exists")
    add_cpu_workers_argument(parser)
    return add_gpus_argument(parser)


@dataclass(frozen=True)
class InputLoader:
    """``loader(image_id)``: the inputs of one image (``run_per_image``'s ``load``, run in the loader
    processes): the RGB image, padded tensors, and boxes (``box_dir``) and CAMs (``cam_dir``) if given."""

    root: Path
    seed_label_root: Path
    box_dir: Path | None = None
    cam_dir: Path | None = None

    def __call__(self, image_id: str) -> dict:
        image = read_image(self.root / "JPEGImages" / f"{image_id}.jpg")
        seed_path = self.seed_label_root / f"{image_id}.png"
        seeds = read_label_png(seed_path)
        if seeds.shape != image.shape[:2]:
            raise ValueError(f"{seed_path}: seed map is {seeds.shape}, image is {image.shape[:2]}")
        inputs = {
            "rgb": image,
            "image": pad_to_multiple(to_chw_tensor(normalize(image)), STRIDE, 0),
            "seeds": pad_to_multiple(torch.from_numpy(seeds).long(), STRIDE, IGNORE),
            "boxes": None, "cams": None, "cam_classes": None,
        }
        if self.box_dir is not None:
            inputs["boxes"] = read_boxes(self.box_dir / f"{image_id}.xml", image_size=image.shape[:2])
        if self.cam_dir is not None:
            classes, cams = load_cams(self.cam_dir / f"{image_id}.npz")
            inputs["cams"], inputs["cam_classes"] = torch.from_numpy(cams), torch.from_numpy(classes)
        return inputs


class A2GNNJob:
    """``job.prepare(ids, inputs)`` runs the affinity network on the images' inputs (``job.load``, one
    call per padded size) and trains their A2GNNs together; ``job(image_id, inputs)`` then returns the CPU
    part of one of them (``write_labels``: dense CRF, ``save_path/<id>.png``) for ``run_per_image`` to run.
    An image whose inputs or training fail raises in ``job(image_id, inputs)``, the others of its batch
    still finish (a batch that fails as a whole is retried image by image). ``job.outputs(image_id)``
    lists the files it writes (resume)."""

    def __init__(self, args: argparse.Namespace, schedule: str, device: torch.device):
        self.args = args
        self.schedule = schedule
        self.device = device
        self.root = Path(args.voc12_root)
        self.net = importlib.import_module(args.network).Net(width=args.backbone_width)
        load_checkpoint(self.net, args.weights, strict=True)
        self.net.eval().to(device)
        rw = getattr(args, "rw", False)
        self.cfg = PropagateConfig(
            schedule=schedule, epochs=args.epochs, lr=args.lr, weight_decay=args.weight_decay,
            hidden=args.hidden, dropout=args.dropout, num_class=args.num_class, rw=rw, seed=args.seed,
            amp=args.amp, **({k: getattr(args, k) for k in ("alpha", "beta", "logt", "rw_weight")} if rw else {}))
        if rw and not getattr(args, "cam_dir", None):
            raise BadValueError("--rw True needs --cam_dir (folder of <id>.npz CAM files from infer_SEAM.py)")
        box_dir = Path(args.BoxXmlpath or self.root / "Annotations") if schedule == "box" else None
        self.load = InputLoader(self.root, Path(args.seed_label_root), box_dir=box_dir,
                                cam_dir=Path(args.cam_dir) if rw else None)
        self.box_constraint = getattr(args, "box_constraint", False)
        self.results: dict[str, tuple[np.ndarray, np.ndarray, list | None] | Exception] = {}

    def outputs(self, image_id: str) -> list[Path]:
        paths = [Path(self.args.save_path) / f"{image_id}.png"]
        if self.args.save_probs:
            paths.append(Path(self.args.save_probs) / f"{image_id}.npz")
        return paths

    def prepare(self, image_ids: list[str], inputs: list[dict]) -> None:
        """Train the A2GNNs of ``image_ids`` (their ``inputs``, from ``self.load``) together; keep each image's
        RGB image and probabilities (or the exception it raised) for ``__call__``."""
        self.results = {}
        loaded = dict(zip(image_ids, inputs, strict=True))
        by_size = defaultdict(list)
        for image_id, inputs in loaded.items():
            by_size[tuple(inputs["image"].shape)].append(image_id)
        items = []
        for group in by_size.values():
            try:
                with torch.no_grad():
                    images = torch.stack([loaded[i]["image"] for i in group]).to(self.device)
                    features, aff, _ = self.net(images, self.args.radius)
            except Exception as err:  # noqa: BLE001 - e.g. out of memory: this size group fails, the rest go on
                self.results.update(dict.fromkeys(group, err))
                continue
            for k, image_id in enumerate(group):
                inputs = loaded[image_id]
                item = ImageInputs(features[k], aff[k], inputs["seeds"], inputs["image"], inputs["rgb"].shape[:2],
                                   boxes=inputs["boxes"], cams=inputs["cams"], cam_classes=inputs["cam_classes"],
                                   key=image_id)
                try:
                    check_inputs(item, self.cfg)
                    items.append(item)
                except ValueError as err:
                    self.results[image_id] = err
        if not items:
            return
        try:
            probs = propagate_batch(items, self.cfg)
        except Exception as err:  # noqa: BLE001 - find the image(s) at fault by training each alone
            probs = [err] if len(items) == 1 else [self._alone(item) for item in items]
        for item, prob in zip(items, probs, strict=True):
            self.results[item.key] = prob if isinstance(prob, Exception) else (loaded[item.key]["rgb"],
                                                                               prob.cpu().numpy(), item.boxes)

    def _alone(self, item: ImageInputs) -> torch.Tensor | Exception:
        try:
            return propagate_batch([item], self.cfg)[0]
        except Exception as err:  # noqa: BLE001 - raised again by __call__ for this image only
            return err

    def __call__(self, image_id: str, inputs: dict) -> functools.partial:
        """The CPU part of ``image_id`` (``write_labels``), after its training by ``prepare``."""
        result = self.results.pop(image_id)
        if isinstance(result, Exception):
            raise result
        rgb, probs, boxes = result
        save_probs = Path(self.args.save_probs) / f"{image_id}.npz" if self.args.save_probs else None
        return functools.partial(write_labels, Path(self.args.save_path) / f"{image_id}.png", rgb, probs,
                                 boxes if self.box_constraint else None, save_probs)


def write_labels(path: Path, rgb: np.ndarray, probs: np.ndarray, boxes: list | None,
                 save_probs: Path | None) -> None:
    """An image's CPU part: dense CRF of ``probs`` ``(C, H, W)`` on ``rgb`` ``(H, W, 3)``, its label PNG at
    ``path``; ``boxes`` (``--box_constraint``): only background and the classes of a pixel's boxes;
    ``save_probs``: also the probabilities before the CRF there (float16 npz)."""
    label, probs = box_constrained_crf(rgb, probs, boxes)
    if save_probs is not None:
        save_npz(save_probs, probs=probs.astype(np.float16))
    save_label_png(path, label)


def run_a2gnn(args: argparse.Namespace, schedule: str) -> RunSummary:
    """``main`` of the stage-3 scripts: the per-image job over the id list. Returns the ``RunSummary``."""
    ids = read_list(args.infer_list, args.voc12_root)
    with process_group(args.device) as device:
        job = A2GNNJob(args, schedule, device)
        return run_per_image(ids, job, job.outputs, desc=f"A2GNN {schedule}", shard=args.shard,
                             overwrite=args.overwrite, prepare=job.prepare,
                             batch_size=resolve_batch_images(args.batch_images, device),
                             cpu_workers=resolve_cpu_workers(args.cpu_workers, device), load=job.load,
                             load_workers=resolve_load_workers(args.num_workers, device))
