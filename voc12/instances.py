"""VOC instances: per-image instance labels from files, and the Mask R-CNN training set of a COCO file.

- :func:`pseudo_instances`: a label folder's class map (pseudo labels, a baseline, ...) split by the
  image's XML boxes (``tool.instances.instances_from_labels``).
- :func:`ground_truth_instances`: ``SegmentationObject`` + ``SegmentationClass`` (the class of an index is
  the most frequent class under it); for an id without a ``SegmentationObject`` PNG, SBD's ``inst/<id>.mat``
  (``GTinst``: its instance map and per-instance ``Categories``) when an SBD ``inst`` folder is given.
- :class:`InstanceTrainDataset`: the images and annotations of a COCO instances file, padded to one size so
  the training loop's default batching stacks them; :func:`split_batch` undoes the padding.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from tool.instances import (
    InstanceLabels,
    decode_mask,
    instances_from_ground_truth,
    instances_from_labels,
    read_instance_png,
)
from tool.label_io import read_image, read_label_png
from voc12.annotations import read_boxes
from voc12.prepare import read_sbd_inst
from vocabulary import Box


def pseudo_instances(voc12_root: str | os.PathLike, image_id: str, label_dir: str | os.PathLike
                     ) -> tuple[InstanceLabels, list[Box]]:
    """Instances of ``<label_dir>/<id>.png`` split by ``Annotations/<id>.xml``, and those boxes."""
    label = read_label_png(Path(label_dir) / f"{image_id}.png")
    boxes = read_boxes(Path(voc12_root) / "Annotations" / f"{image_id}.xml", label.shape)
    return instances_from_labels(label, boxes), boxes


def ground_truth_instances(voc12_root: str | os.PathLike, image_id: str,
                           sbd_inst: str | os.PathLike | None = None) -> InstanceLabels:
    """Ground-truth instances of one image from ``SegmentationObject`` and ``SegmentationClass``, or, where VOC
    has no ``SegmentationObject`` PNG and ``sbd_inst`` (SBD's ``dataset/inst`` folder) is given, from
    ``<sbd_inst>/<id>.mat``. ``FileNotFoundError`` names every file looked for."""
    root = Path(voc12_root)
    obj_png = root / "SegmentationObject" / f"{image_id}.png"
    if sbd_inst is not None and not obj_png.is_file():
        mat = Path(sbd_inst) / f"{image_id}.mat"
        if not mat.is_file():
            raise FileNotFoundError(f"no ground-truth instances: neither {obj_png} nor {mat} exists")
        inst, classes = read_sbd_inst(mat.read_bytes(), str(mat))
        return InstanceLabels(inst, classes)
    seg = read_label_png(root / "SegmentationClass" / f"{image_id}.png")
    return instances_from_ground_truth(seg, read_instance_png(obj_png, seg.shape))


def read_coco(path: str | os.PathLike) -> dict:
    """A COCO instances file or results list, as JSON (``ValueError`` naming the file otherwise)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"COCO file not found: {path}")
    try:
        return json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ValueError(f"{path}: not a JSON file ({err})") from None


class InstanceTrainDataset(Dataset):
    """Images of a COCO instances dict (``file_name`` under ``<voc12_root>/JPEGImages``) with their
    instances, random horizontal flip (torch's generator), zero-padded to the largest image and instance count.

    Item: ``{'image': (3, Hc, Wc) float32 in [0, 1], 'size': (2,) int64 H W, 'count': () int64 N,
    'boxes': (Nc, 4) float32 x0 y0 x1 y1, 'labels': (Nc,) int64 (0 = padding), 'masks': (Nc, Hc, Wc) uint8}``.
    A box is the annotation's ``bbox`` (the given box for pseudo labels), not the mask's extent.
    """

    def __init__(self, dataset: Mapping, voc12_root: str | os.PathLike, flip: bool = True):
        self.root = Path(voc12_root)
        self.images = list(dataset["images"])
        if not self.images:
            raise ValueError("the COCO file lists no images")
        self.annotations: dict[int, list[dict]] = {im["id"]: [] for im in self.images}
        for ann in dataset["annotations"]:
            if ann["image_id"] in self.annotations and not ann.get("iscrowd", 0):
                self.annotations[ann["image_id"]].append(ann)
        self.canvas = (max(im["height"] for im in self.images), max(im["width"] for im in self.images))
        self.max_count = max(1, *(len(a) for a in self.annotations.values()))
        self.flip = flip

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> dict:
        info = self.images[index]
        image = read_image(self.root / "JPEGImages" / info["file_name"])
        h, w = image.shape[:2]
        if (h, w) != (info["height"], info["width"]):
            raise ValueError(f"{info['file_name']}: the image is {h}x{w}, the COCO file says "
                             f"{info['height']}x{info['width']}")
        anns = self.annotations[info["id"]]
        masks = np.zeros((self.max_count, *self.canvas), np.uint8)
        boxes = np.zeros((self.max_count, 4), np.float32)
        labels = np.zeros(self.max_count, np.int64)
        for k, ann in enumerate(anns):
            masks[k, :h, :w] = decode_mask(ann["segmentation"], (h, w))
            x, y, bw, bh = ann["bbox"]
            boxes[k] = (x, y, x + bw, y + bh)
            labels[k] = ann["category_id"]
        if self.flip and torch.rand(()) < 0.5:
            image = image[:, ::-1]
            masks[:, :h, :w] = masks[:, :h, :w][:, :, ::-1].copy()
            boxes[:len(anns), [0, 2]] = w - boxes[:len(anns), [2, 0]]
        canvas = np.zeros((*self.canvas, 3), np.float32)
        canvas[:h, :w] = image / 255.0
        return {"image": torch.from_numpy(canvas).permute(2, 0, 1).contiguous(),
                "size": torch.tensor([h, w]), "count": torch.tensor(len(anns)),
                "boxes": torch.from_numpy(boxes), "labels": torch.from_numpy(labels),
                "masks": torch.from_numpy(masks)}


def split_batch(batch: Mapping[str, torch.Tensor]) -> tuple[list[torch.Tensor], list[dict[str, torch.Tensor]]]:
    """A padded batch of :class:`InstanceTrainDataset` as torchvision detection inputs: a list of ``(3, H, W)``
    images and a list of targets (``boxes``, ``labels``, ``masks``) without the padding."""
    images, targets = [], []
    for i in range(batch["image"].shape[0]):
        (h, w), n = batch["size"][i].tolist(), int(batch["count"][i])
        images.append(batch["image"][i, :, :h, :w])
        targets.append({"boxes": batch["boxes"][i, :n], "labels": batch["labels"][i, :n],
                        "masks": batch["masks"][i, :n, :h, :w]})
    return images, targets
