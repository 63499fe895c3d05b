"""Segmentation scores from one confusion matrix accumulated over a whole list (algorithm.md §5).

Rows are ground-truth classes, columns predicted classes. Ground truth 255 is ignored. A prediction of
255 ("no label") counts as background (``pred_255_as='background'``), or as a miss
(``pred_255_as='wrong'``): then the matrix gets one extra last column, "unlabelled", that adds to the
ground-truth totals of its rows and to no class's predictions. Seed maps are scored from that form:
precision over the labelled pixels, coverage = share of ground-truth pixels that carry a seed.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from vocabulary import IGNORE, NUM_CLASSES

PRED_255_MODES = ("background", "wrong")


def confusion_matrix(pred: np.ndarray, gt: np.ndarray, num_classes: int = NUM_CLASSES,
                     pred_255_as: str = "background") -> np.ndarray:
    """Count ``(gt, pred)`` pixel pairs of two ``(H, W)`` integer label maps.

    ``gt`` holds ``0..num_classes-1`` or 255 (ignored); ``pred`` the same, its 255 handled by
    ``pred_255_as``. Returns int64 ``(C, C)`` for ``'background'``, ``(C, C + 1)`` for ``'wrong'`` (last
    column: ground-truth pixels the prediction left at 255).
    """
    if pred_255_as not in PRED_255_MODES:
        raise ValueError(f"pred_255_as must be one of {PRED_255_MODES}, got {pred_255_as!r}")
    pred = np.asarray(pred).astype(np.int64)
    gt = np.asarray(gt).astype(np.int64)
    if pred.shape != gt.shape:
        raise ValueError(f"prediction shape {pred.shape} differs from ground-truth shape {gt.shape}")
    for name, x in (("ground truth", gt), ("prediction", pred)):
        bad = (x < 0) | ((x >= num_classes) & (x != IGNORE))
        if bad.any():
            raise ValueError(f"{name} holds values outside 0..{num_classes - 1} and 255: "
                             f"{sorted(set(np.unique(x[bad]).tolist()))[:5]}")
    keep = gt != IGNORE
    gt, pred = gt[keep], pred[keep]
    cols = num_classes if pred_255_as == "background" else num_classes + 1
    pred = np.where(pred == IGNORE, 0 if pred_255_as == "background" else num_classes, pred)
    return np.bincount(gt * cols + pred, minlength=num_classes * cols).reshape(num_classes, cols)


def _ratio(num: np.ndarray, den: np.ndarray) -> list[float | None]:
    """``num / den`` elementwise as floats, ``None`` where ``den`` is 0."""
    return [float(n) / float(d) if d > 0 else None for n, d in zip(num, den, strict=True)]


def scores_from_confusion(conf: np.ndarray) -> dict:
    """Per-class IoU, mIoU and pixel accuracy from a ``(C, C)`` or ``(C, C + 1)`` confusion matrix.

    ``iou[c]`` is ``None`` for a class absent from both ground truth and prediction; those classes are
    left out of ``miou``. Returns ``{'miou': float, 'iou': list[float | None] (C,), 'pixel_acc': float}``
    (``miou`` and ``pixel_acc`` are ``nan`` for an empty matrix).
    """
    conf = np.asarray(conf, dtype=np.int64)
    c = conf.shape[0]
    if conf.shape not in ((c, c), (c, c + 1)):
        raise ValueError(f"confusion matrix must be (C, C) or (C, C + 1), got {conf.shape}")
    tp = np.diag(conf[:, :c])
    gt_total = conf.sum(axis=1)
    pred_total = conf[:, :c].sum(axis=0)
    iou = _ratio(tp, gt_total + pred_total - tp)
    present = [x for x in iou if x is not None]
    total = conf.sum()
    return {
        "miou": float(np.mean(present)) if present else float("nan"),
        "iou": iou,
        "pixel_acc": float(tp.sum() / total) if total else float("nan"),
    }


def seed_scores_from_confusion(conf: np.ndarray) -> dict:
    """Precision and coverage of seed maps from a ``(C, C + 1)`` matrix (``pred_255_as='wrong'``).

    ``precision`` = correct seed pixels / seed pixels; ``coverage`` = seed pixels / ground-truth pixels
    (both over non-255 ground truth). Per class: ``class_precision[c]`` = correct / seeds labelled c,
    ``class_coverage[c]`` = pixels of gt class c carrying any seed / pixels of gt class c (``None`` when
    the denominator is 0).
    """
    conf = np.asarray(conf, dtype=np.int64)
    c = conf.shape[0]
    if conf.shape != (c, c + 1):
        raise ValueError(f"seed scores need the (C, C + 1) matrix of pred_255_as='wrong', got {conf.shape}")
    labelled = conf[:, :c]
    tp = np.diag(labelled)
    seeds, total = labelled.sum(), conf.sum()
    return {
        "precision": float(tp.sum() / seeds) if seeds else float("nan"),
        "coverage": float(seeds / total) if total else float("nan"),
        "class_precision": _ratio(tp, labelled.sum(axis=0)),
        "class_coverage": _ratio(labelled.sum(axis=1), conf.sum(axis=1)),
    }


def average_precision(scores: np.ndarray, labels: np.ndarray) -> list[float | None]:
    """Per-class average precision of multi-label scores (classification, no pixels).

    ``scores`` ``(N, K)`` float, higher = more confident; ``labels`` ``(N, K)`` in {0, 1}. For class k,
    images are ranked by score (ties broken by image order, stable) and AP is the mean of the precision at
    the rank of every positive. ``None`` for a class with no positive image.
    """
    scores, labels = np.asarray(scores, dtype=np.float64), np.asarray(labels)
    if scores.shape != labels.shape or scores.ndim != 2:
        raise ValueError(f"scores {scores.shape} and labels {labels.shape} must both be (N, K)")
    order = np.argsort(-scores, axis=0, kind="stable")
    hits = np.take_along_axis(labels > 0, order, axis=0).astype(np.float64)
    precision = np.cumsum(hits, axis=0) / np.arange(1, len(hits) + 1)[:, None]
    positives = hits.sum(axis=0)
    return [float(p) / float(n) if n > 0 else None for p, n in zip((precision * hits).sum(axis=0), positives,
                                                                      strict=True)]


def grid_label(gt: np.ndarray, stride: int = 8, num_classes: int = NUM_CLASSES) -> np.ndarray:
    """The best label a ``stride``-grid prediction can give: ``(H, W)`` uint8 from ``(H, W)`` ground truth.

    The one-hot ground truth (255 pixels count for no class) is padded to multiples of ``stride``,
    averaged over each ``stride×stride`` cell, upsampled back bilinearly (half-pixel centres) and cropped;
    the argmax is the label (0 where a cell saw only 255). Its score is the upper bound that the feature
    grid of stages 2 and 3 sets before any learning.
    """
    gt = np.asarray(gt)
    h, w = gt.shape
    labels = torch.from_numpy(gt.astype(np.int64))
    onehot = F.one_hot(labels.clamp(max=num_classes), num_classes + 1)[..., :num_classes]  # 255 -> no class
    onehot = onehot.permute(2, 0, 1).float()
    hp, wp = -(-h // stride) * stride, -(-w // stride) * stride
    cells = F.avg_pool2d(F.pad(onehot, (0, wp - w, 0, hp - h))[None], stride)
    up = F.interpolate(cells, size=(hp, wp), mode="bilinear", align_corners=False)[0, :, :h, :w]
    return up.argmax(0).numpy().astype(np.uint8)
