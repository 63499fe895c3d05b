"""Fully connected CRF (Krähenbühl & Koltun) over class probability maps, via pydensecrf."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from tool.box_labels import box_class_mask
from vocabulary import Box

UNARY_CLIP = 1e-5  # probabilities are clipped to [UNARY_CLIP, 1] before -log


@dataclass(frozen=True)
class CRFParams:
    """Mean-field iterations and the two pairwise kernels (pixel units; colour in 0..255 units)."""

    iters: int
    gauss_sxy: float
    gauss_compat: float
    bi_sxy: float
    bi_srgb: float
    bi_compat: float


CAM_CRF = CRFParams(iters=10, gauss_sxy=3, gauss_compat=3, bi_sxy=80, bi_srgb=13, bi_compat=10)  # algorithm.md §1.1
A2GNN_CRF = CRFParams(iters=10, gauss_sxy=2, gauss_compat=3, bi_sxy=50, bi_srgb=5, bi_compat=10)  # algorithm.md §3.6
# DeepLab v2 (ResNet-101, VOC) test-time CRF, algorithm.md §4
SEG_CRF = CRFParams(iters=10, gauss_sxy=1, gauss_compat=3, bi_sxy=67, bi_srgb=3, bi_compat=4)


def _densecrf_module():
    try:
        import pydensecrf.densecrf as dcrf
    except ImportError as err:
        raise ImportError(
            "dense CRF needs the 'pydensecrf' module: pip install pydensecrf2 "
            "(or pip install git+https://github.com/lucasb-eyer/pydensecrf)"
        ) from err
    return dcrf


def dense_crf(image: np.ndarray, probs: np.ndarray, params: CRFParams = CAM_CRF) -> np.ndarray:
    """Refine ``probs`` with a dense CRF on ``image``.

    image: ``(H, W, 3)`` uint8 RGB. probs: ``(C, H, W)`` non-negative scores (need not sum to 1; the
    unary is ``-log(clip(probs, 1e-5, 1))``). Returns the ``(C, H, W)`` float32 marginals (sum to 1).
    """
    dcrf = _densecrf_module()
    image = np.asarray(image)
    probs = np.asarray(probs, dtype=np.float32)
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"dense_crf: image must be (H, W, 3) uint8, got {image.shape} {image.dtype}")
    if probs.ndim != 3 or probs.shape[1:] != image.shape[:2]:
        raise ValueError(f"dense_crf: probs must be (C, H, W) with (H, W) = {image.shape[:2]}, "
                         f"got {probs.shape}")
    num_classes, h, w = probs.shape
    unary = -np.log(np.clip(probs, UNARY_CLIP, 1.0)).reshape(num_classes, -1)
    crf = dcrf.DenseCRF2D(w, h, num_classes)
    crf.setUnaryEnergy(np.ascontiguousarray(unary, dtype=np.float32))
    crf.addPairwiseGaussian(sxy=params.gauss_sxy, compat=params.gauss_compat)
    crf.addPairwiseBilateral(sxy=params.bi_sxy, srgb=params.bi_srgb, rgbim=np.ascontiguousarray(image),
                             compat=params.bi_compat)
    q = crf.inference(params.iters)
    return np.asarray(q, dtype=np.float32).reshape(num_classes, h, w)


def box_constrained_crf(rgb: np.ndarray, probs: np.ndarray,
                        boxes: Sequence[Box] | None) -> tuple[np.ndarray, np.ndarray]:
    """Stage 3's dense CRF (``A2GNN_CRF``) of ``probs`` ``(C, H, W)`` on ``rgb`` ``(H, W, 3)`` uint8. With
    ``boxes`` (``--box_constraint``) only background and the classes of a pixel's boxes are allowed, before
    (``probs`` zeroed elsewhere and renormalized) and after the CRF. Returns the label ``(H, W)`` uint8 and
    the ``(C, H, W)`` probabilities the CRF was given."""
    allowed = None if boxes is None else box_class_mask(boxes, rgb.shape[:2], probs.shape[0])
    if allowed is not None:
        probs = np.where(allowed, probs, 0.0)
        probs = probs / np.maximum(probs.sum(axis=0, keepdims=True), 1e-12)
    marginals = dense_crf(rgb, probs, A2GNN_CRF)
    if allowed is not None:
        marginals = np.where(allowed, marginals, -1.0)
    return np.argmax(marginals, axis=0).astype(np.uint8), probs
