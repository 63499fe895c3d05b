"""Stage 4 instances: Mask R-CNN predictions as COCO results and instance PNGs (docs/instances.md).

    python infer_inst.py --voc12_root $VOC --infer_list val.txt --weights netWeights/maskrcnn_box.pth \\
        --out_json out/maskrcnn_box_val.json --save_path out/maskrcnn_box_val
    python eval_inst.py --gt_json out/val_gt.json --pred_json out/maskrcnn_box_val.json

``--out_json``: every detection (``image_id``, ``category_id``, RLE ``segmentation`` of the mask
probability above 0.5, ``bbox``, ``score``), what COCOeval scores. ``--save_path``: VOC-style PNGs of the
detections scoring at least ``--png_score``: ``SegmentationObject/<id>.png`` (index 1 = the best, higher
scores drawn over lower ones) and ``SegmentationClass/<id>.png`` (their classes). Use the ``--arch``,
``--backbone_width``, ``--short_side`` and ``--long_side`` of training.

Per image, sharded (``--shard i/n``, torchrun, or a plain ``python`` run over every visible GPU, one worker
each: ``--gpus`` limits it) and resumable like the other per-image stages: each image's results go to
``<out_json without .json>.parts/<id>.json`` (atomic; existing ones are skipped), and once every image of
the list has its part, the one that finishes last writes ``--out_json``, complete, in list order. A failed
image is named and leaves ``--out_json`` unwritten until a rerun completes it.
"""

from __future__ import annotations

import argparse
import functools
import json
import sys
from pathlib import Path

import numpy as np
import torch

from stages.instances import add_model_args, build_from_args
from tool import cli
from tool.checkpoint import load_checkpoint
from tool.dist import add_gpus_argument, launch, process_group
from tool.instances import coco_image_id, encode_mask, instance_map
from tool.label_io import atomic_path, read_image, save_label_png
from tool.runner import RunSummary, add_load_workers_argument, resolve_load_workers, run_per_image
from voc12.lists import read_list


def get_args_parser() -> argparse.ArgumentParser:
    p = cli.make_parser(__doc__)
    cli.add_voc12_root(p)
    cli.add_id_list(p, "--infer_list", what="images to predict")
    p.add_argument("--weights", required=True, type=str, help="a train_inst.py {session_name}.pth")
    add_model_args(p)
    p.add_argument("--detections", default=100, type=int, help="at most this many detections per image")
    p.add_argument("--mask_context", default=1.0, type=float,
                   help="the mask head sees each detected box grown by this factor (same centre) and its mask is "
                        "pasted there; 1 = torchvision's Mask R-CNN; the demo uses 1.15 (docs/instances.md)")
    p.add_argument("--out_json", required=True, type=str, help="COCO results file to write")
    p.add_argument("--save_path", default=None, type=str,
                   help="folder for SegmentationObject/ and SegmentationClass/ PNGs (default: none written)")
    p.add_argument("--png_score", default=0.5, type=float, help="lowest score (0..1) drawn in the PNGs")
    p.add_argument("--device", default=cli.default_device(), type=str, help=cli.DEVICE_HELP)
    p.add_argument("--shard", default=None, type=str, help="i/n: process ids[i::n] (default: torchrun)")
    p.add_argument("--overwrite", default=False, type=cli.str2bool, help="recompute existing per-image results")
    add_load_workers_argument(p)
    return add_gpus_argument(p)


@torch.no_grad()
def predict(net: torch.nn.Module, image: np.ndarray, device: torch.device) -> dict[str, np.ndarray]:
    """Detections of one ``(H, W, 3)`` uint8 image: ``boxes (N, 4)`` x0 y0 x1 y1, ``labels (N,)``,
    ``scores (N,)``, ``masks (N, H, W)`` bool (probability above 0.5)."""
    tensor = torch.from_numpy(image).permute(2, 0, 1).float().div(255).to(device)
    out = net([tensor])[0]
    return {"boxes": out["boxes"].cpu().numpy(), "labels": out["labels"].cpu().numpy(),
            "scores": out["scores"].cpu().numpy(), "masks": (out["masks"][:, 0] > 0.5).cpu().numpy()}


def coco_results(image_id: int, det: dict[str, np.ndarray]) -> list[dict]:
    """COCO result entries of one image's detections."""
    results = []
    for box, label, score, mask in zip(det["boxes"], det["labels"], det["scores"], det["masks"], strict=True):
        x0, y0, x1, y1 = (float(v) for v in box)
        results.append({"image_id": image_id, "category_id": int(label), "segmentation": encode_mask(mask),
                        "bbox": [x0, y0, x1 - x0, y1 - y0], "score": float(score)})
    return results


def parts_dir(out_json: str | Path) -> Path:
    """The folder of the per-image result files of ``out_json``: ``<out_json without .json>.parts``."""
    return Path(out_json).with_suffix(".parts")


def load_image(voc12_root: str, voc_id: str) -> np.ndarray:
    """``JPEGImages/<id>.jpg`` as ``(H, W, 3)`` uint8 (``run_per_image``'s ``load``)."""
    return read_image(Path(voc12_root) / "JPEGImages" / f"{voc_id}.jpg")


def merge_parts(ids: list[str], out_json: str | Path) -> list[dict] | None:
    """Every image's results in list order, written to ``out_json`` (atomic); ``None`` (nothing written) while
    an image of ``ids`` has no part yet."""
    parts = [parts_dir(out_json) / f"{voc_id}.json" for voc_id in ids]
    if not all(p.is_file() for p in parts):
        return None
    results = [r for p in parts for r in json.loads(p.read_text())]
    with atomic_path(out_json) as tmp:
        tmp.write_text(json.dumps(results))
    return results


def main(args: argparse.Namespace) -> RunSummary:
    # first, so that every worker reaches the rendezvous even if a later step fails in one of them
    with process_group(args.device) as device:  # cuda:LOCAL_RANK for each of several workers
        ids = read_list(args.infer_list, args.voc12_root)
        if args.mask_context <= 0:
            raise cli.UserError(f"--mask_context must be above 0 (1 = the detected box), got {args.mask_context}")
        net = build_from_args(args, detections=args.detections, mask_context=args.mask_context)
        try:
            load_checkpoint(net, args.weights, strict=True)
        except (OSError, ValueError) as err:
            raise cli.UserError(f"--weights {args.weights}: {err} (pass the --arch / --backbone_width of training)") \
                from None
        net.to(device).eval()
        save = Path(args.save_path) if args.save_path else None

        def outputs(voc_id: str) -> list[Path]:
            kinds = ("SegmentationObject", "SegmentationClass") if save else ()
            return [parts_dir(args.out_json) / f"{voc_id}.json", *(save / kind / f"{voc_id}.png" for kind in kinds)]

        def process(voc_id: str, image: np.ndarray) -> None:
            det = predict(net, image, device)
            results = coco_results(coco_image_id(voc_id), det)
            if save:
                inst = instance_map(det["masks"], det["scores"], args.png_score)
                kept = [i for i in np.argsort(-det["scores"], kind="stable") if det["scores"][i] >= args.png_score]
                classes = np.array([0, *det["labels"][kept][:255 - 1]], np.uint8)
                save_label_png(save / "SegmentationObject" / f"{voc_id}.png", inst)
                save_label_png(save / "SegmentationClass" / f"{voc_id}.png", classes[inst])
            with atomic_path(parts_dir(args.out_json) / f"{voc_id}.json") as tmp:  # last: marks the image done
                tmp.write_text(json.dumps(results))

        summary = run_per_image(ids, process, outputs, desc="infer_inst", shard=args.shard, overwrite=args.overwrite,
                                load=functools.partial(load_image, args.voc12_root),
                                load_workers=resolve_load_workers(args.num_workers, device))
    results = merge_parts(ids, args.out_json)
    if results is None:
        print(f"{args.out_json} not written yet: not every image of the list has its results in "
              f"{parts_dir(args.out_json)}/ (other shards running, or failures above)")
    else:
        print(f"infer_inst: {len(ids)} images, {len(results)} detections; wrote {args.out_json}"
              + (f" and {args.save_path}/" if args.save_path else ""))
    return summary


if __name__ == "__main__":
    args = get_args_parser().parse_args()
    sys.exit(cli.run(lambda: launch(main, args, args.gpus, args.device)))
