"""Class activation maps: multi-scale inference, normalization, storage, CRF and confident seeds (algorithm.md §1.1).

CAMs are kept compact: ``classes`` ``(K,)`` int class ids in 1..20 (the image's labels) and ``cams``
``(K, H, W)`` float32 maps normalized per class to [0, 1] (see ``normalize_cam`` for the minimum).
``expand_cams`` gives the 20-channel form with absent classes 0.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from tool.cli import MissingFileError
from tool.crf import CAM_CRF, CRFParams, dense_crf
from tool.label_io import load_npz, save_npz
from vocabulary import NUM_CLASSES

NUM_FG = NUM_CLASSES - 1  # foreground classes, 1..20
EPS = 1e-5


def save_cams(path: str | os.PathLike, classes: np.ndarray, cams: np.ndarray) -> None:
    """Write ``classes`` ``(K,)`` int (1..20) and ``cams`` ``(K, H, W)`` float to an ``.npz``, atomically."""
    classes = np.asarray(classes, dtype=np.int64).reshape(-1)
    cams = np.asarray(cams, dtype=np.float32)
    if cams.ndim != 3 or cams.shape[0] != classes.size:
        raise ValueError(f"{path}: cams must be (K, H, W) with K = {classes.size}, got {cams.shape}")
    if classes.size and (classes.min() < 1 or classes.max() > NUM_FG):
        raise ValueError(f"{path}: class ids must lie in 1..{NUM_FG}, got {classes.tolist()}")
    save_npz(path, classes=classes, cams=cams)


def load_cams(path: str | os.PathLike, legacy_npy: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Read ``(classes (K,) int64 in 1..20, cams (K, H, W) float32)`` from a file of ``save_cams``.

    ``legacy_npy=True`` reads the published SEAM ``.npy`` dict ``{class index 0..19: (H, W) map}``. That
    format is a pickle: only use it on files you trust.
    """
    path = Path(path)
    if not legacy_npy:
        data = load_npz(path)
        if "classes" not in data or "cams" not in data:
            raise ValueError(f"{path}: expected arrays 'classes' and 'cams', found {sorted(data)}")
        return data["classes"].astype(np.int64), data["cams"].astype(np.float32)
    if not path.is_file():
        raise MissingFileError(f"CAM file not found: {path}")
    cam_dict = np.load(path, allow_pickle=True).item()
    keys = sorted(cam_dict)
    classes = np.array([k + 1 for k in keys], dtype=np.int64)
    if not keys:
        raise ValueError(f"{path}: legacy CAM dict is empty (no image size to recover)")
    return classes, np.stack([np.asarray(cam_dict[k], dtype=np.float32) for k in keys])


def expand_cams(classes: np.ndarray, cams: np.ndarray, hw: tuple[int, int] | None = None) -> np.ndarray:
    """The ``(20, H, W)`` float32 form of compact CAMs (channel ``c-1`` holds class ``c``; absent = 0)."""
    hw = tuple(cams.shape[1:]) if hw is None else hw
    full = np.zeros((NUM_FG, *hw), dtype=np.float32)
    full[np.asarray(classes, dtype=np.int64) - 1] = cams
    return full


def normalize_cam(cam_sum: torch.Tensor) -> torch.Tensor:
    """Per-class min-max normalization of summed CAMs, exactly in the published order.

    cam_sum: ``(C, H, W)``. Negatives → 0; then per class ``min``/``max``; values ``< min + 1e-5`` → 0;
    then ``(x − min − 1e-5) / (max − min + 1e-5)``. Values are at most 1; the pixels at a class's minimum
    come out as ``−(min + 1e-5)/(max − min + 1e-5)``: about ``−1e-5`` when the minimum is 0 (the usual
    case for a trained network), more negative when a class is positive everywhere (published behaviour).
    """
    x = cam_sum.clamp(min=0)
    flat = x.flatten(1)
    cmax = flat.max(dim=1).values.view(-1, 1, 1)
    cmin = flat.min(dim=1).values.view(-1, 1, 1)
    x = torch.where(x < cmin + EPS, torch.zeros_like(x), x)
    return (x - cmin - EPS) / (cmax - cmin + EPS)


@torch.no_grad()
def multiscale_cam(model: torch.nn.Module, inputs: Sequence[torch.Tensor], label: torch.Tensor,
                   size: tuple[int, int]) -> np.ndarray:
    """Summed multi-scale + flip CAMs of one image, normalized (algorithm.md §1.1).

    model: returns ``(cam, cam_rv)`` with ``cam_rv`` ``(N, 21, h, w)``. inputs: normalized ``(3, h_s, w_s)``
    tensors in the order scale0, scale0 flipped, scale1, ... (odd positions are flipped). label: ``(20,)``
    0/1 image label. size: ``(H, W)`` of the original image. Returns ``(20, H, W)`` float32 from
    :func:`normalize_cam`; classes not in the label come out as −1 (use only the label's classes).
    """
    device = next(model.parameters()).device
    label = torch.as_tensor(label, dtype=torch.float32, device=device).view(NUM_FG, 1, 1)
    total = torch.zeros((NUM_FG, *size), device=device)
    for i in range(0, len(inputs), 2):  # a scale and its flip share a size: one batch of two
        batch = torch.stack(list(inputs[i:i + 2])).to(device)
        _, cam_rv = model(batch)
        cams = F.interpolate(cam_rv[:, 1:], size, mode="bilinear", align_corners=False)
        total += cams[0] * label
        if cams.shape[0] == 2:
            total += cams[1].flip(-1) * label
    return normalize_cam(total).cpu().numpy()


def background_score(cams: np.ndarray, alpha: float) -> np.ndarray:
    """``(1 − max_k cams_k)^alpha`` as ``(H, W)`` float32; all ones when ``cams`` has no classes."""
    if cams.shape[0] == 0:
        return np.ones(cams.shape[1:], dtype=np.float32)
    return np.power(1.0 - cams.max(axis=0), alpha).astype(np.float32)


def cam_label(classes: np.ndarray, cams: np.ndarray, bg_score: float | None = None,
              bg_power: float | None = None) -> np.ndarray:
    """``(H, W)`` uint8 argmax of ``[background, cams]`` mapped to class ids (0 = background).

    The background score is the constant ``bg_score`` (the published ``--out_cam_pred_alpha``, e.g. 0.26:
    a pixel is background unless some CAM exceeds it) or, given ``bg_power``, ``(1 − max cam)^bg_power``.
    """
    if (bg_score is None) == (bg_power is None):
        raise ValueError("give exactly one of bg_score (a constant) and bg_power (an exponent)")
    background = (np.full(cams.shape[1:], bg_score, dtype=np.float32) if bg_power is None
                  else background_score(cams, bg_power))
    scores = np.concatenate([background[None], cams])
    ids = np.concatenate([[0], np.asarray(classes, dtype=np.int64)])
    return ids[scores.argmax(axis=0)].astype(np.uint8)


def crf_with_alpha(image: np.ndarray, classes: np.ndarray, cams: np.ndarray, alpha: float,
                   params: CRFParams = CAM_CRF) -> np.ndarray:
    """Dense CRF of ``[(1 − max cam)^alpha, cams]`` on ``image`` ``(H, W, 3)`` uint8.

    Returns the ``(21, H, W)`` float32 marginals with channel = class id (absent classes 0).
    """
    probs = np.concatenate([background_score(cams, alpha)[None], cams])
    marginals = dense_crf(image, probs, params)
    full = np.zeros((NUM_FG + 1, *cams.shape[1:]), dtype=np.float32)
    full[np.concatenate([[0], np.asarray(classes, dtype=np.int64)])] = marginals
    return full


def confident_seeds(classes: np.ndarray, cams: np.ndarray, crf_la: np.ndarray, crf_ha: np.ndarray,
                    high_alpha: float = 24, top: float = 0.4, bg_thresh: float = 0.8,
                    crf_thresh: float = 0.8, bg_quantile: float = 0.0,
                    bg_quantile_max_cam: float = 0.5) -> tuple[np.ndarray, np.ndarray]:
    """Confident ("top 40%") seeds and the full label of algorithm.md §1.1 steps 1–3 (step 4 with ``bg_quantile``).

    classes/cams: compact CAMs ``(K,)``, ``(K, H, W)``. crf_la, crf_ha: ``(21, H, W)`` CRF marginals at the
    low and high alpha. Returns ``(seed, full)``, both ``(H, W)`` uint8: ``full`` = argmax(crf_la) with its
    background → 255, then argmax(crf_ha) == 0 → 0; ``seed`` = ``full`` with 255 outside the CAM sure
    region and where ``max(crf_ha[0], crf_la[1:]) < crf_thresh``. With ``bg_quantile`` q > 0 (ours, §1.1 step
    4), the image's q-quantile of lowest max-CAM pixels below ``bg_quantile_max_cam`` also become background
    seeds where ``seed`` is not an object.
    """
    la_label = crf_la.argmax(axis=0)
    full = la_label.astype(np.uint8)
    full[la_label == 0] = 255
    full[crf_ha.argmax(axis=0) == 0] = 0

    cam_all = np.concatenate([background_score(cams, high_alpha)[None], expand_cams(classes, cams)])
    cam_img = cam_all.argmax(axis=0)
    sure = np.zeros(la_label.shape, dtype=bool)
    for c in np.unique(la_label):
        in_class = cam_img == c
        if c == 0:
            sure |= in_class & (cam_all[0] > bg_thresh)
            continue
        values = np.sort(cam_all[c][in_class & (cam_all[c] > 0.01)])
        position = int((1.0 - top) * values.size)
        if position >= 1:
            sure |= in_class & (cam_all[c] > values[position])

    confidence = np.concatenate([crf_ha[:1], crf_la[1:]]).max(axis=0)
    seed = full.copy()
    seed[~sure | (confidence < crf_thresh)] = 255
    if bg_quantile > 0 and cams.shape[0] > 0:
        max_cam = cams.max(axis=0)
        low = (max_cam <= np.quantile(max_cam, bg_quantile)) & (max_cam < bg_quantile_max_cam)
        seed[low & ((seed == 0) | (seed == 255))] = 0
    return seed, full


def seeds_from_cams(image: np.ndarray, classes: np.ndarray, cams: np.ndarray, low_alpha: float = 4,
                    high_alpha: float = 24, bg_thresh: float = 0.8, bg_quantile: float = 0.0,
                    bg_quantile_max_cam: float = 0.5) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The CRF at both alphas and :func:`confident_seeds` of compact CAMs on ``image`` ``(H, W, 3)``.

    Returns ``(crf_la, crf_ha, seed, full)``: ``(21, H, W)`` float32 marginals, ``(H, W)`` uint8 labels."""
    crf_la = crf_with_alpha(image, classes, cams, low_alpha)
    crf_ha = crf_with_alpha(image, classes, cams, high_alpha)
    seed, full = confident_seeds(classes, cams, crf_la, crf_ha, high_alpha=high_alpha, bg_thresh=bg_thresh,
                                 bg_quantile=bg_quantile, bg_quantile_max_cam=bg_quantile_max_cam)
    return crf_la, crf_ha, seed, full
