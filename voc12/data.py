"""Datasets over a VOC2012-style root (``JPEGImages/<id>.jpg``) for the three stages.

Randomness: every augmented item draws its parameters from a fresh ``numpy.random.Generator`` seeded
by one draw from torch's default generator. DataLoader workers have their own torch seed
(``base_seed + worker_id``, with ``base_seed`` drawn anew every epoch), so workers and epochs differ
without a ``worker_init_fn``, and ``torch.manual_seed(seed)`` makes a run reproducible for a given
worker count. Distributed scripts should seed with ``seed + rank`` so ranks augment differently.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from tool.cli import MissingFileError, WrongFileError
from tool.label_io import read_image, read_label_png
from tool.transforms import (
    color_jitter,
    multiscale_flip_inputs,
    normalize,
    random_crop,
    random_hflip,
    random_resize_long,
    random_scale,
    to_chw_tensor,
)
from voc12 import IGNORE, NUM_CLASSES

JITTER = (0.3, 0.3, 0.3, 0.1)  # brightness, contrast, saturation, hue (algorithm.md §1.2, 2.2)
CAM_SCALES = (0.5, 1.0, 1.5, 2.0)  # algorithm.md §1.1


def item_rng() -> np.random.Generator:
    """A numpy generator seeded from torch's default generator (per process / DataLoader worker)."""
    return np.random.default_rng(int(torch.randint(2**62, (1,)).item()))


class ImageDataset(Dataset):
    """``{'id': str, 'image': (H, W, 3) uint8 RGB ndarray}`` for each id of ``voc12_root/JPEGImages``."""

    def __init__(self, ids: Sequence[str], voc12_root: str | os.PathLike):
        self.ids = list(ids)
        self.image_dir = Path(voc12_root) / "JPEGImages"
        if not self.image_dir.is_dir():
            raise MissingFileError(f"image folder not found: {self.image_dir} (check --voc12_root)")

    def __len__(self) -> int:
        return len(self.ids)

    def load_image(self, image_id: str) -> np.ndarray:
        """``(H, W, 3)`` uint8 RGB; ``FileNotFoundError`` names the missing path."""
        return read_image(self.image_dir / f"{image_id}.jpg")

    def __getitem__(self, index: int) -> dict:
        image_id = self.ids[index]
        return {"id": image_id, "image": self.load_image(image_id)}


def _check_labels(ids: Sequence[str], labels: Mapping[str, np.ndarray]) -> None:
    missing = [i for i in ids if i not in labels]
    if missing:
        raise WrongFileError(f"no image-level label for {len(missing)} ids, e.g. {missing[:5]}")


class ClsTrainDataset(ImageDataset):
    """Classifier training items (algorithm.md §1.2).

    Augmentation: long side random in ``resize_long`` (bicubic), horizontal flip, colour jitter
    ``jitter`` (None = off), ImageNet normalization, random ``crop_size`` crop padded with 0.
    Item: ``{'id', 'image': (3, crop, crop) float32, 'label': (20,) float32 multi-hot}``.
    """

    def __init__(self, ids: Sequence[str], voc12_root: str | os.PathLike, labels: Mapping[str, np.ndarray],
                 crop_size: int = 448, resize_long: tuple[int, int] = (448, 768),
                 jitter: tuple[float, float, float, float] | None = JITTER):
        super().__init__(ids, voc12_root)
        _check_labels(self.ids, labels)
        self.labels = labels
        self.crop_size = crop_size
        self.resize_long = resize_long
        self.jitter = jitter

    def __getitem__(self, index: int) -> dict:
        image_id = self.ids[index]
        rng = item_rng()
        image = random_resize_long(self.load_image(image_id), *self.resize_long, rng=rng)
        image, _ = random_hflip(image, rng=rng)
        if self.jitter is not None:
            image = color_jitter(image, *self.jitter, rng=rng)
        image, _, _ = random_crop(normalize(image), self.crop_size, rng=rng)
        return {
            "id": image_id,
            "image": to_chw_tensor(image),
            "label": torch.from_numpy(np.asarray(self.labels[image_id], dtype=np.float32)),
        }


class AffTrainDataset(ImageDataset):
    """Affinity-network training items (algorithm.md §2.1, 2.2) with seed labels ``label_dir/<id>.png``.

    Augmentation: horizontal flip of image and seeds together, colour jitter ``jitter`` (None = off),
    joint random ``crop_size`` crop, normalization. As in the published affinity training, the crop is
    taken before normalizing and its padding is 255 in every channel, so padded pixels reach the network
    as normalized white ``(1 − mean)/std`` (stage 1's :class:`ClsTrainDataset` pads with 0 after
    normalizing, as SEAM does). Item: ``{'id', 'image': (3, crop, crop) float32, 'label': (crop, crop)
    int64 (0..20, 255 = unknown or padding), 'valid': (crop, crop) float32 (1 on image pixels, 0 on
    padding)}``.
    """

    def __init__(self, ids: Sequence[str], voc12_root: str | os.PathLike, label_dir: str | os.PathLike,
                 crop_size: int = 448, jitter: tuple[float, float, float, float] | None = JITTER):
        super().__init__(ids, voc12_root)
        self.label_dir = Path(label_dir)
        if not self.label_dir.is_dir():
            raise MissingFileError(f"seed label folder not found: {self.label_dir} (check --label_dir)")
        self.crop_size = crop_size
        self.jitter = jitter

    def __getitem__(self, index: int) -> dict:
        image_id = self.ids[index]
        rng = item_rng()
        image = self.load_image(image_id)
        label_path = self.label_dir / f"{image_id}.png"
        label = read_label_png(label_path, image.shape[:2])  # size and values (0..20, 255) checked
        image, label = random_hflip(image, label, rng=rng)
        if self.jitter is not None:
            image = color_jitter(image, *self.jitter, rng=rng)
        image, label, valid = random_crop(image, self.crop_size, rng=rng, label=label, image_fill=255)
        return {
            "id": image_id,
            "image": to_chw_tensor(normalize(image)),
            "label": to_chw_tensor(label).long(),
            "valid": to_chw_tensor(valid),
        }


class MultiScaleFlipDataset(ImageDataset):
    """Multi-scale + flip inputs for CAM inference (algorithm.md §1.1); use with ``batch_size=1``.

    Scale ``s`` resizes the image bicubically to ``round(W·s) × round(H·s)``. Item: ``{'id', 'image':
    (H, W, 3) uint8, 'size': (H, W), 'inputs': list of 2·S normalized (3, h_s, w_s) float32 tensors in
    the order scale 0, scale 0 flipped, scale 1, ...}``, plus ``'label': (20,) float32`` if ``labels``.
    """

    def __init__(self, ids: Sequence[str], voc12_root: str | os.PathLike,
                 scales: Sequence[float] = CAM_SCALES, labels: Mapping[str, np.ndarray] | None = None):
        super().__init__(ids, voc12_root)
        if labels is not None:
            _check_labels(self.ids, labels)
        self.scales = tuple(scales)
        self.labels = labels

    def __getitem__(self, index: int) -> dict:
        image_id = self.ids[index]
        image = self.load_image(image_id)
        item = {"id": image_id, "image": image, "size": image.shape[:2],
                "inputs": multiscale_flip_inputs(image, self.scales)}
        if self.labels is not None:
            item["label"] = torch.from_numpy(np.asarray(self.labels[image_id], dtype=np.float32))
        return item


class SegTrainDataset(ImageDataset):
    """Segmentation-network training items (algorithm.md §4) with label maps ``label_dir/<id>.png``.

    Labels: 0..20 classes, 255 = ignore (pseudo labels, seeds, baselines or ground truth). Augmentation
    (DeepLab): random scale in ``scale_range`` (image bilinear, label nearest), horizontal flip,
    normalization, joint random ``crop_size`` crop padded with 0 (image) and 255 (label). Item: ``{'id',
    'image': (3, crop, crop) float32, 'label': (crop, crop) int64}``.
    """

    def __init__(self, ids: Sequence[str], voc12_root: str | os.PathLike, label_dir: str | os.PathLike,
                 crop_size: int = 321, scale_range: tuple[float, float] = (0.5, 2.0)):
        super().__init__(ids, voc12_root)
        self.label_dir = Path(label_dir)
        if not self.label_dir.is_dir():
            raise MissingFileError(f"label folder not found: {self.label_dir} (check --label_dir)")
        self.crop_size = crop_size
        self.scale_range = tuple(scale_range)

    def __getitem__(self, index: int) -> dict:
        image_id = self.ids[index]
        rng = item_rng()
        image = self.load_image(image_id)
        label_path = self.label_dir / f"{image_id}.png"
        label = read_label_png(label_path)
        if label.shape != image.shape[:2]:
            raise ValueError(f"{label_path}: label map is {label.shape}, image is {image.shape[:2]}")
        bad = (label >= NUM_CLASSES) & (label != IGNORE)
        if bad.any():
            raise ValueError(f"{label_path}: values outside 0..{NUM_CLASSES - 1} and {IGNORE}: "
                             f"{sorted(np.unique(label[bad]).tolist())[:5]}")
        image, label = random_scale(image, label, *self.scale_range, rng=rng)
        image, label = random_hflip(image, label, rng=rng)
        image, label, _ = random_crop(normalize(image), self.crop_size, rng=rng, label=label)
        return {"id": image_id, "image": to_chw_tensor(image), "label": to_chw_tensor(label).long()}
