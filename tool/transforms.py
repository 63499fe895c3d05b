"""Image and label transforms for training and inference (numpy / PIL / torch).

Images are ``(H, W, 3)`` uint8 RGB until :func:`normalize` turns them into float32; label maps are
``(H, W)`` uint8 with 255 = ignore. Random transforms draw from a ``numpy.random.Generator`` passed as
``rng`` (never from global state), so a dataset that owns one generator is reproducible.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
import torchvision.transforms.functional as TF
from PIL import Image

from vocabulary import IGNORE

IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32)
IMAGENET_STD = np.array([0.229, 0.224, 0.225], dtype=np.float32)


def normalize(image: np.ndarray) -> np.ndarray:
    """``(H, W, 3)`` uint8 RGB -> ``(H, W, 3)`` float32 ``(x/255 - mean)/std`` with ImageNet statistics."""
    return (np.asarray(image, dtype=np.float32) / 255.0 - IMAGENET_MEAN) / IMAGENET_STD


def to_chw_tensor(x: np.ndarray) -> torch.Tensor:
    """``(H, W, C)`` array -> ``(C, H, W)`` tensor; a ``(H, W)`` array becomes a ``(H, W)`` tensor."""
    x = np.asarray(x)
    if x.ndim == 3:
        x = x.transpose(2, 0, 1)
    elif x.ndim != 2:
        raise ValueError(f"expected an (H, W) or (H, W, C) array, got shape {x.shape}")
    return torch.from_numpy(np.ascontiguousarray(x))


def pad_to_multiple(x: np.ndarray | torch.Tensor, multiple: int = 8, value: float = 0):
    """Pad at the bottom and right so height and width become multiples of ``multiple``.

    numpy arrays are ``(H, W)`` or ``(H, W, C)``; torch tensors are ``(..., H, W)``. Padding takes
    ``value`` (0 for normalized images, 255 for label maps). Returns the same kind of array.
    """
    if isinstance(x, torch.Tensor):
        h, w = x.shape[-2:]
        ph, pw = -h % multiple, -w % multiple
        return F.pad(x, (0, pw, 0, ph), value=value) if ph or pw else x
    h, w = x.shape[:2]
    ph, pw = -h % multiple, -w % multiple
    if not (ph or pw):
        return x
    widths = [(0, ph), (0, pw)] + [(0, 0)] * (x.ndim - 2)
    return np.pad(x, widths, mode="constant", constant_values=value)


def resize_image(image: np.ndarray, size_hw: tuple[int, int]) -> np.ndarray:
    """Bicubic (PIL) resize of a ``(H, W, 3)`` uint8 image to ``size_hw = (h, w)``; same size is a copy."""
    h, w = size_hw
    return np.asarray(Image.fromarray(image).resize((w, h), resample=Image.BICUBIC))


def multiscale_flip_inputs(image: np.ndarray, scales: tuple[float, ...]) -> list[torch.Tensor]:
    """Normalized ``(3, round(H·s), round(W·s))`` float32 tensors of ``image`` ``(H, W, 3)`` uint8 at each
    scale (bicubic), each followed by its horizontal flip: the CAM inputs of algorithm.md §1.1."""
    h, w = image.shape[:2]
    inputs = []
    for s in scales:
        scaled = to_chw_tensor(normalize(resize_image(image, (round(h * s), round(w * s)))))
        inputs += [scaled, scaled.flip(-1)]
    return inputs


def random_resize_long(image: np.ndarray, min_long: int, max_long: int, *,
                       rng: np.random.Generator) -> np.ndarray:
    """Resize so the long side is a random integer in ``[min_long, max_long]`` (aspect kept, bicubic)."""
    target = int(rng.integers(min_long, max_long + 1))
    h, w = image.shape[:2]
    if w >= h:
        size = (max(1, round(h * target / w)), target)
    else:
        size = (target, max(1, round(w * target / h)))
    return resize_image(image, size)


def random_hflip(image: np.ndarray, label: np.ndarray | None = None, *,
                 rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray | None]:
    """Flip image ``(H, W, ...)`` and label ``(H, W)`` left-right together with probability 1/2."""
    if rng.random() < 0.5:
        image = np.ascontiguousarray(image[:, ::-1])
        if label is not None:
            label = np.ascontiguousarray(label[:, ::-1])
    return image, label


def color_jitter(image: np.ndarray, brightness: float, contrast: float, saturation: float, hue: float,
                 *, rng: np.random.Generator) -> np.ndarray:
    """torchvision-style colour jitter of a ``(H, W, 3)`` uint8 image with factors drawn from ``rng``.

    Brightness, contrast and saturation factors are uniform in ``[max(0, 1 - v), 1 + v]``, the hue shift
    uniform in ``[-hue, hue]``; the adjustments are applied in a random order, and one whose parameter
    is 0 is skipped (as in torchvision).
    """
    strengths = (brightness, contrast, saturation, hue)
    factors = [rng.uniform(max(0.0, 1 - v), 1 + v) for v in strengths[:3]] + [rng.uniform(-hue, hue)]
    ops = (TF.adjust_brightness, TF.adjust_contrast, TF.adjust_saturation, TF.adjust_hue)
    pil = Image.fromarray(image)
    for k in rng.permutation(4):
        if strengths[k] > 0:
            pil = ops[k](pil, float(factors[k]))
    return np.asarray(pil)


def _crop_window(size: int, crop: int, rng: np.random.Generator) -> tuple[int, int, int]:
    """(source start, destination start, length) along one axis; a short axis is placed at random."""
    space = size - crop
    if space >= 0:
        return int(rng.integers(space + 1)), 0, crop
    return 0, int(rng.integers(-space + 1)), size


def random_crop(image: np.ndarray, crop_size: int, *, rng: np.random.Generator,
                label: np.ndarray | None = None, image_fill: float = 0.0, label_fill: int = IGNORE,
                ) -> tuple[np.ndarray, np.ndarray | None, np.ndarray]:
    """Joint random ``crop_size`` square crop of image ``(H, W, C)`` and label ``(H, W)``.

    An axis longer than the crop is cut at a random offset; a shorter one is placed at a random offset
    inside the crop and the rest is padding: ``image_fill`` in the image (0 = the mean colour of a
    normalized image), ``label_fill`` in the label (255 = ignore). Returns ``(image, label or None,
    valid)`` with ``valid`` a ``(crop, crop)`` float32 map, 1 on image pixels and 0 on padding.
    """
    h, w = image.shape[:2]
    if label is not None and label.shape[:2] != (h, w):
        raise ValueError(f"label shape {label.shape[:2]} differs from image shape {(h, w)}")
    sy, dy, ch = _crop_window(h, crop_size, rng)
    sx, dx, cw = _crop_window(w, crop_size, rng)
    src = (slice(sy, sy + ch), slice(sx, sx + cw))
    dst = (slice(dy, dy + ch), slice(dx, dx + cw))

    out_image = np.full((crop_size, crop_size) + image.shape[2:], image_fill, dtype=image.dtype)
    out_image[dst] = image[src]
    valid = np.zeros((crop_size, crop_size), dtype=np.float32)
    valid[dst] = 1.0
    out_label = None
    if label is not None:
        out_label = np.full((crop_size, crop_size), label_fill, dtype=label.dtype)
        out_label[dst] = label[src]
    return out_image, out_label, valid


def random_scale(image: np.ndarray, label: np.ndarray, low: float, high: float, *,
                 rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Resize image ``(H, W, 3)`` uint8 (bilinear) and label ``(H, W)`` uint8 (nearest) by one factor drawn
    uniformly from ``[low, high]`` (DeepLab's random scale); sides are rounded, at least 1."""
    factor = rng.uniform(low, high)
    h, w = label.shape
    size = (max(1, round(w * factor)), max(1, round(h * factor)))
    image = np.asarray(Image.fromarray(image).resize(size, resample=Image.BILINEAR))
    label = np.asarray(Image.fromarray(label).resize(size, resample=Image.NEAREST))
    return image, label
