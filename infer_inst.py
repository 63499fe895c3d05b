"""Stage 4 instances: Mask R-CNN predictions as COCO results and instance PNGs (docs/instances.md).

    python infer_inst.py --voc12_root $VOC --infer_list val.txt --weights netWeights/maskrcnn_box.pth \\
        --out_json out/maskrcnn_box_val.json --save_path out/maskrcnn_box_val
    python eval_inst.py --gt_json out/val_gt.json --pred_json out/maskrcnn_box_val.json

``--out_json``: every detection (``image_id``, ``category_id``, RLE ``segmentation`` of the mask
probability above 0.5, ``bbox``, ``score``), what COCOeval scores. ``--save_path``: VOC-style PNGs of the
detections scoring at least ``--png_score``: ``SegmentationObject/<id>.png`` (index 1 = the best, higher
scores drawn over lower ones) and ``SegmentationClass/<id>.png`` (their classes). Use the ``--arch``,
``--backbone_width``, ``--short_side`` and ``--long_side`` of training.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from stages.instances import add_model_args, build_from_args
from tool import cli
from tool.checkpoint import load_checkpoint
from tool.instances import coco_image_id, encode_mask, instance_map
from tool.label_io import atomic_path, read_image, save_label_png
from voc12.lists import read_list


def get_args_parser() -> argparse.ArgumentParser:
    p = cli.make_parser(__doc__)
    cli.add_voc12_root(p)
    cli.add_id_list(p, "--infer_list", what="images to predict")
    p.add_argument("--weights", required=True, type=str, help="a train_inst.py {session_name}.pth")
    add_model_args(p)
    p.add_argument("--detections", default=100, type=int, help="at most this many detections per image")
    p.add_argument("--out_json", required=True, type=str, help="COCO results file to write")
    p.add_argument("--save_path", default=None, type=str,
                   help="folder for SegmentationObject/ and SegmentationClass/ PNGs (default: none written)")
    p.add_argument("--png_score", default=0.5, type=float, help="lowest score (0..1) drawn in the PNGs")
    p.add_argument("--device", default=cli.default_device(), type=str, help="cpu, cuda or cuda:K")
    return p


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


def main(args: argparse.Namespace) -> list[dict]:
    device = torch.device(args.device)
    ids = read_list(args.infer_list, args.voc12_root)
    net = build_from_args(args, detections=args.detections)
    try:
        load_checkpoint(net, args.weights, strict=True)
    except (OSError, ValueError) as err:
        raise cli.UserError(f"--weights {args.weights}: {err} (pass the --arch / --backbone_width of training)") \
            from None
    net.to(device).eval()
    results, start = [], time.time()
    for voc_id in tqdm(ids, desc="infer_inst", dynamic_ncols=True):
        image = read_image(Path(args.voc12_root) / "JPEGImages" / f"{voc_id}.jpg")
        det = predict(net, image, device)
        results += coco_results(coco_image_id(voc_id), det)
        if args.save_path:
            inst = instance_map(det["masks"], det["scores"], args.png_score)
            kept = [i for i in np.argsort(-det["scores"], kind="stable") if det["scores"][i] >= args.png_score]
            classes = np.array([0, *det["labels"][kept][:255 - 1]], np.uint8)
            save_label_png(Path(args.save_path) / "SegmentationObject" / f"{voc_id}.png", inst)
            save_label_png(Path(args.save_path) / "SegmentationClass" / f"{voc_id}.png", classes[inst])
    with atomic_path(args.out_json) as tmp:
        tmp.write_text(json.dumps(results))
    print(f"infer_inst: {len(ids)} images, {len(results)} detections in {time.time() - start:.1f} s; "
          f"wrote {args.out_json}" + (f" and {args.save_path}/" if args.save_path else ""))
    return results


if __name__ == "__main__":
    sys.exit(cli.run(lambda: main(get_args_parser().parse_args())))
