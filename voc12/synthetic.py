"""A generated VOC2012-style dataset whose 20 classes are shape families with class-specific textures.

Each class is a non-convex shape family (stars, rings, crescents, letters, spirals, ...) filled with a
class-specific texture (stripes, checkers, dots, grids, noise, ...) in random colours, so neither colour
nor box alone tells the class and a box holds plenty of background. Instances (1..4 per image) are drawn
at random size, aspect, rotation and mirror over a cluttered background (gradients, noise, strokes and
blobs that are not objects); later instances occlude earlier ones. Labels show visible pixels only.

Everything for image ``index`` comes from ``np.random.default_rng([seed, index])``: the same
``(seed, index)`` gives the same sample, byte for byte, whatever else is generated.

Files written per image (see :func:`write_sample`): ``JPEGImages/<id>.jpg``, ``SegmentationClass``
and ``SegmentationObject`` palette PNGs, ``Annotations/<id>.xml`` (VOC XML, 1-based inclusive boxes),
``Scribbles/<id>.png`` (class ids on strokes, 255 elsewhere), ``Points/<id>.json``
(``[{"class": c, "x": x, "y": y}]``, 0-based, class 0 = background click).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from xml.etree import ElementTree as ET

import cv2
import numpy as np
from skimage.morphology import skeletonize

from tool.label_io import atomic_path, save_image, save_label_png
from voc12 import CAT_LIST, IGNORE

ID_PREFIX = "2026"
MAX_INSTANCES = 4
MIN_VISIBLE_FRACTION = 0.4  # an earlier instance keeps at least this share of its pixels visible
MIN_VISIBLE_PIXELS = 40
MIN_INSIDE_FRACTION = 0.6  # share of an instance's pixels that must fall inside the image
PLACEMENT_TRIES = 12

Array = np.ndarray


# ----------------------------------------------------------------------------------------------------
# Shape families: boolean masks over shape-frame coordinates (u, v), the shape fits in about [-1, 1]².
# ----------------------------------------------------------------------------------------------------
def _segments(u: Array, v: Array, points: list[tuple[float, float]], width: float) -> Array:
    """Pixels within ``width`` of the polyline through ``points`` (a thick stroke)."""
    out = np.zeros(u.shape, dtype=bool)
    for (px, py), (qx, qy) in zip(points[:-1], points[1:], strict=True):
        dx, dy = qx - px, qy - py
        t = np.clip(((u - px) * dx + (v - py) * dy) / (dx * dx + dy * dy), 0.0, 1.0)
        out |= (u - px - t * dx) ** 2 + (v - py - t * dy) ** 2 <= width * width
    return out


def _polar(u: Array, v: Array) -> tuple[Array, Array]:
    return np.hypot(u, v), np.arctan2(v, u)


def _star(u: Array, v: Array, points: int, inner: float) -> Array:
    """A ``points``-pointed star: radius falls linearly in angle from 1 at a tip to ``inner`` between."""
    r, th = _polar(u, v)
    half = np.pi / points
    phase = np.abs(np.mod(th, 2 * half) - half)  # 0 between tips, ``half`` at a tip
    return r <= inner + (1.0 - inner) * phase / half


def _lobes(u: Array, v: Array, lobes: int, base: float, depth: float) -> Array:
    r, th = _polar(u, v)
    return r <= base + depth * np.cos(lobes * th)


def _annulus(u: Array, v: Array, r0: float, r1: float, cx: float = 0.0, cy: float = 0.0) -> Array:
    r = np.hypot(u - cx, v - cy)
    return (r >= r0) & (r <= r1)


def _aeroplane(u, v):
    return (_segments(u, v, [(-0.95, 0.0), (0.95, 0.0)], 0.14)
            | _segments(u, v, [(0.15, -0.9), (0.3, 0.0), (0.15, 0.9)], 0.13)
            | _segments(u, v, [(-0.85, -0.4), (-0.75, 0.0), (-0.85, 0.4)], 0.09))


def _bicycle(u, v):
    return (_annulus(u, v, 0.25, 0.4, -0.55, 0.25) | _annulus(u, v, 0.25, 0.4, 0.55, 0.25)
            | _segments(u, v, [(-0.55, 0.25), (-0.1, -0.45), (0.55, 0.25)], 0.08))


def _bird(u, v):  # crescent
    return (np.hypot(u, v) <= 0.92) & (np.hypot(u - 0.4, v + 0.15) > 0.72)


def _boat(u, v):  # U
    return _segments(u, v, [(-0.6, -0.85), (-0.6, 0.6), (0.6, 0.6), (0.6, -0.85)], 0.22)


def _bottle(u, v):  # L
    return _segments(u, v, [(-0.45, -0.9), (-0.45, 0.65), (0.75, 0.65)], 0.25)


def _bus(u, v):  # T
    return _segments(u, v, [(-0.85, -0.7), (0.85, -0.7)], 0.22) | _segments(u, v, [(0, -0.7), (0, 0.9)], 0.22)


def _car(u, v):  # ring
    return _annulus(u, v, 0.5, 0.92)


def _cat(u, v):
    return _star(u, v, 5, 0.42)


def _chair(u, v):  # H
    return (_segments(u, v, [(-0.6, -0.85), (-0.6, 0.85)], 0.2)
            | _segments(u, v, [(0.6, -0.85), (0.6, 0.85)], 0.2)
            | _segments(u, v, [(-0.6, 0.0), (0.6, 0.0)], 0.2))


def _cow(u, v):  # heart
    x, y = 1.25 * u, -1.25 * v + 0.25
    return (x * x + y * y - 1.0) ** 3 - x * x * y ** 3 <= 0


def _diningtable(u, v):  # ring with a gap
    return _annulus(u, v, 0.5, 0.92) & (np.abs(np.arctan2(v, u)) > 0.6)


def _dog(u, v):
    return _lobes(u, v, 3, 0.58, 0.38)


def _horse(u, v):  # arrow
    head = (u >= 0.15) & (np.abs(v) <= 0.65 * (0.95 - u) / 0.8)
    return _segments(u, v, [(-0.95, 0.0), (0.2, 0.0)], 0.16) | head


def _motorbike(u, v):
    return _star(u, v, 8, 0.3)


def _person(u, v):  # thick spiral, two turns
    r, th = _polar(u, v)
    pitch = 0.9 / 2.0
    phase = np.mod(r - pitch * (th + np.pi) / (2 * np.pi), pitch)
    return (phase < 0.5 * pitch) & (r <= 0.95) & (r >= 0.08)


def _pottedplant(u, v):
    return _lobes(u, v, 6, 0.66, 0.28)


def _sheep(u, v):  # Z
    return _segments(u, v, [(-0.7, -0.75), (0.7, -0.75), (-0.7, 0.75), (0.7, 0.75)], 0.2)


def _sofa(u, v):  # E
    return (_segments(u, v, [(0.65, -0.85), (-0.6, -0.85), (-0.6, 0.85), (0.65, 0.85)], 0.18)
            | _segments(u, v, [(-0.6, 0.0), (0.45, 0.0)], 0.18))


def _train(u, v):  # hollow square
    m = np.maximum(np.abs(u), np.abs(v))
    return (m >= 0.45) & (m <= 0.78)


def _tvmonitor(u, v):  # bullseye
    r = np.hypot(u, v)
    return (r <= 0.3) | ((r >= 0.55) & (r <= 0.92))


SHAPES: dict[int, Callable[[Array, Array], Array]] = dict(enumerate([
    _aeroplane, _bicycle, _bird, _boat, _bottle, _bus, _car, _cat, _chair, _cow, _diningtable, _dog,
    _horse, _motorbike, _person, _pottedplant, _sheep, _sofa, _train, _tvmonitor], start=1))
"""Class id 1..20 → ``mask(u, v) -> bool`` in the shape frame."""


# ----------------------------------------------------------------------------------------------------
# Textures: class id → (kind, period in pixels, angle in degrees relative to the shape, noise sigma).
# ----------------------------------------------------------------------------------------------------
TEXTURES: dict[int, tuple[str, float, float, float]] = {
    1: ("stripes", 6, 0, 5), 2: ("checker", 5, 0, 5), 3: ("dots", 7, 0, 6), 4: ("zigzag", 7, 0, 5),
    5: ("stripes", 10, 90, 8), 6: ("grid", 8, 0, 5), 7: ("rings", 6, 0, 6), 8: ("noise", 4, 0, 8),
    9: ("hatch", 7, 45, 5), 10: ("checker", 11, 30, 7), 11: ("stripes", 4, 45, 4), 12: ("noise", 9, 0, 6),
    13: ("dots", 4, 0, 5), 14: ("grid", 5, 20, 6), 15: ("plain", 1, 0, 14), 16: ("zigzag", 4, 90, 6),
    17: ("dots", 11, 30, 9), 18: ("hatch", 11, 0, 6), 19: ("stripes", 8, -30, 10), 20: ("rings", 11, 0, 4),
}


def _smooth_noise(rng: np.random.Generator, shape: tuple[int, int], scale: float) -> Array:
    """Noise in [0, 1] with blobs about ``scale`` pixels wide, ``(H, W)`` float32."""
    gh, gw = max(2, int(shape[0] / scale) + 2), max(2, int(shape[1] / scale) + 2)
    grid = rng.random((gh, gw), dtype=np.float32)
    return cv2.resize(grid, (shape[1], shape[0]), interpolation=cv2.INTER_CUBIC).clip(0.0, 1.0)


def texture(cls: int, x: Array, y: Array, rng: np.random.Generator) -> Array:
    """The class-``cls`` pattern at pixel offsets ``(x, y)`` in the shape's rotated frame, float32 [0, 1]."""
    kind, period, angle, _ = TEXTURES[cls]
    a = np.deg2rad(angle)
    s = (x * np.cos(a) + y * np.sin(a)) / period
    t = (-x * np.sin(a) + y * np.cos(a)) / period
    phase = rng.random(2)
    s, t = s + phase[0], t + phase[1]
    if kind == "stripes":
        out = np.mod(s, 1.0) < 0.5
    elif kind == "checker":
        out = (np.floor(s) + np.floor(t)) % 2 == 0
    elif kind == "dots":
        out = (np.mod(s, 1.0) - 0.5) ** 2 + (np.mod(t, 1.0) - 0.5) ** 2 < 0.09
    elif kind == "zigzag":
        out = np.mod(s + 0.35 * np.abs(np.mod(t / 2, 1.0) - 0.5) * 2, 1.0) < 0.5
    elif kind == "grid":
        out = (np.mod(s, 1.0) < 0.25) | (np.mod(t, 1.0) < 0.25)
    elif kind == "hatch":
        out = (np.mod(s + t, 1.0) < 0.22) | (np.mod(s - t, 1.0) < 0.22)
    elif kind == "rings":
        out = np.mod(np.hypot(s - phase[0], t - phase[1]), 1.0) < 0.5
    elif kind == "noise":
        return _smooth_noise(rng, x.shape, period)
    elif kind == "plain":
        return np.zeros(x.shape, dtype=np.float32)
    else:
        raise ValueError(f"unknown texture kind {kind!r}")
    return out.astype(np.float32)


def _random_colour(rng: np.random.Generator) -> Array:
    return rng.uniform(0, 255, 3).astype(np.float32)


def _colour_pair(rng: np.random.Generator, min_distance: float = 70.0) -> tuple[Array, Array]:
    """Two random RGB colours at least ``min_distance`` apart (so the texture is visible)."""
    c0 = _random_colour(rng)
    for _ in range(20):
        c1 = _random_colour(rng)
        if np.linalg.norm(c1 - c0) >= min_distance:
            break
    return c0, c1


# ----------------------------------------------------------------------------------------------------
# Background
# ----------------------------------------------------------------------------------------------------
def background(rng: np.random.Generator, h: int, w: int) -> Array:
    """A cluttered background ``(H, W, 3)`` float32 in [0, 255]: gradient, noise, random strokes/blobs."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    a = rng.uniform(0, 2 * np.pi)
    ramp = (xx * np.cos(a) + yy * np.sin(a)) / max(h, w) + 0.5
    c0, c1 = _random_colour(rng), _random_colour(rng)
    img = c0 + (c1 - c0) * ramp[..., None].clip(0, 1)
    low = np.stack([_smooth_noise(rng, (h, w), rng.uniform(20, 60)) for _ in range(3)], axis=-1)
    img += (low - 0.5) * rng.uniform(40, 110)
    img = np.ascontiguousarray(img.clip(0, 255))
    side = min(h, w)
    for _ in range(rng.integers(3, 10)):
        colour = tuple(float(c) for c in rng.uniform(0, 255, 3))
        kind = rng.integers(3)
        centre = rng.uniform((0, 0), (w, h))
        if kind == 0:  # a thick random polyline
            steps = rng.normal(0, side * 0.15, size=(int(rng.integers(2, 6)), 2)).cumsum(axis=0)
            pts = np.round(centre + steps).astype(np.int32)
            cv2.polylines(img, [pts], False, colour, int(rng.integers(1, 6)), lineType=cv2.LINE_AA)
        elif kind == 1:  # an ellipse, sometimes striped
            axes = tuple(int(x) for x in rng.uniform(side * 0.04, side * 0.2, 2))
            blob = np.zeros((h, w), np.uint8)
            cv2.ellipse(blob, tuple(int(c) for c in centre), axes, float(rng.uniform(0, 180)), 0, 360, 1, -1)
            m = blob.astype(bool)
            if rng.random() < 0.4:
                period = rng.uniform(3, 12)
                stripes = np.mod((xx * np.cos(a) - yy * np.sin(a)) / period, 1.0) < 0.5
                img[m & stripes] = colour
                img[m & ~stripes] = _random_colour(rng)
            else:
                img[m] = colour
        else:  # a convex polygon
            pts = centre + rng.normal(0, side * 0.08, size=(int(rng.integers(3, 6)), 2))
            hull = cv2.convexHull(np.round(pts).astype(np.int32))
            cv2.fillConvexPoly(img, hull, colour, lineType=cv2.LINE_AA)
    return img


# ----------------------------------------------------------------------------------------------------
# Instances
# ----------------------------------------------------------------------------------------------------
@dataclass
class Placement:
    """Where an instance is drawn: its mask over ``region`` (rows y0:y1, cols x0:x1) of the image."""

    cls: int
    y0: int
    x0: int
    mask: Array  # (h, w) bool, already clipped to the image
    full_area: int  # pixels of the whole shape, inside the image or not
    du: Array  # (h, w) rotated pixel offsets, for the texture
    dv: Array


def place_instance(rng: np.random.Generator, cls: int, h: int, w: int) -> Placement:
    """Random size, aspect, rotation, mirror and centre for one class-``cls`` shape in an ``h×w`` image."""
    radius = rng.uniform(0.16, 0.36) * min(h, w)
    aspect = np.sqrt(rng.uniform(0.65, 1.5))
    theta = rng.uniform(0, 2 * np.pi)
    mirror = -1.0 if rng.random() < 0.5 else 1.0
    cx, cy = rng.uniform(0.05, 0.95) * w, rng.uniform(0.05, 0.95) * h
    half = int(np.ceil(radius * 1.4 * max(aspect, 1 / aspect))) + 1
    xs = np.arange(int(cx) - half, int(cx) + half + 1)
    ys = np.arange(int(cy) - half, int(cy) + half + 1)
    dx, dy = xs[None, :] + 0.5 - cx, ys[:, None] + 0.5 - cy
    du = mirror * (np.cos(theta) * dx + np.sin(theta) * dy)
    dv = -np.sin(theta) * dx + np.cos(theta) * dy
    full = SHAPES[cls](du / (radius * aspect), dv * aspect / radius)
    keep_y = (ys >= 0) & (ys < h)
    keep_x = (xs >= 0) & (xs < w)
    sub = np.ix_(keep_y, keep_x)
    return Placement(cls, int(ys[keep_y][0]), int(xs[keep_x][0]), full[sub], int(full.sum()),
                     du[sub].astype(np.float32), dv[sub].astype(np.float32))


def paint_instance(rng: np.random.Generator, image: Array, p: Placement) -> None:
    """Draw the textured, randomly coloured instance ``p`` onto ``image`` ``(H, W, 3)`` float32 in place."""
    c0, c1 = _colour_pair(rng)
    t = texture(p.cls, p.du, p.dv, rng)[..., None]
    g = rng.uniform(-0.25, 0.25)  # soft shading along the shape's axis
    shade = 1.0 + g * np.tanh(p.dv / (np.abs(p.dv).max() + 1e-6))[..., None]
    noise = rng.normal(0, TEXTURES[p.cls][3], size=p.mask.shape + (3,)).astype(np.float32)
    colour = ((c0 + (c1 - c0) * t) * shade + noise).clip(0, 255)
    hh, ww = p.mask.shape
    region = image[p.y0:p.y0 + hh, p.x0:p.x0 + ww]
    region[p.mask] = colour[p.mask]


def sample_classes(rng: np.random.Generator, first: int) -> list[int]:
    """1..4 instance classes for one image; the first is given (class balancing), the others random."""
    count = int(rng.choice(np.arange(1, MAX_INSTANCES + 1), p=[0.2, 0.35, 0.3, 0.15]))
    classes = [first]
    for _ in range(count - 1):
        if rng.random() < 0.2:
            classes.append(int(rng.choice(classes)))  # a second instance of a class already present
        else:
            classes.append(int(rng.integers(1, 21)))
    return classes


# ----------------------------------------------------------------------------------------------------
# Weak annotations
# ----------------------------------------------------------------------------------------------------
def _instance_stroke(rng: np.random.Generator, mask: Array) -> Array:
    """A 3-px stroke along part of the medial axis of ``mask`` (bool crop); lies inside ``mask``."""
    skeleton = skeletonize(mask)
    ys, xs = np.nonzero(skeleton)
    if len(ys) == 0:
        ys, xs = np.nonzero(mask)
    k = rng.integers(len(ys))
    reach = rng.uniform(0.3, 0.6) * max(mask.shape)
    near = np.zeros_like(mask)
    close = (ys - ys[k]) ** 2 + (xs - xs[k]) ** 2 <= reach * reach
    near[ys[close], xs[close]] = True
    stroke = cv2.dilate(near.astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool)
    return stroke & mask


def _background_strokes(rng: np.random.Generator, free: Array, count: int) -> Array:
    """``count`` random 3-px polylines kept on ``free`` (background far from objects), bool ``(H, W)``."""
    h, w = free.shape
    canvas = np.zeros((h, w), np.uint8)
    ys, xs = np.nonzero(free)
    if len(ys) == 0:
        return canvas.astype(bool)
    for _ in range(count):
        k = rng.integers(len(ys))
        steps = rng.normal(0, min(h, w) * 0.08, size=(int(rng.integers(2, 5)), 2)).cumsum(axis=0)
        pts = np.round(np.array([xs[k], ys[k]]) + np.vstack([[0, 0], steps])).astype(np.int32)
        cv2.polylines(canvas, [pts], False, 1, 3)
    return canvas.astype(bool) & free


def _click(rng: np.random.Generator, mask: Array) -> tuple[int, int]:
    """A click ``(x, y)`` on ``mask`` (bool), away from its border: among pixels at ≥ half the max depth."""
    depth = cv2.distanceTransform(np.pad(mask, 1).astype(np.uint8), cv2.DIST_L2, 3)[1:-1, 1:-1]
    ys, xs = np.nonzero(depth >= 0.5 * depth.max())
    k = rng.integers(len(ys))
    return int(xs[k]), int(ys[k])


# ----------------------------------------------------------------------------------------------------
# One sample
# ----------------------------------------------------------------------------------------------------
@dataclass
class SyntheticSample:
    """One generated image with its labels and weak annotations.

    ``image`` (H, W, 3) uint8 RGB (before JPEG); ``seg`` (H, W) uint8 class ids 0..20; ``inst`` (H, W)
    uint8 instance ids 0 (background), 1..K in ``boxes`` order; ``boxes`` ``(cls, x0, y0, x1, y1)``
    0-based inclusive tight bounds of the visible instance masks; ``scribble`` (H, W) uint8 class ids on
    strokes, 255 elsewhere; ``points`` ``(cls, x, y)`` 0-based clicks, class 0 = background;
    ``jpeg_quality`` the quality the image is saved at.
    """

    image: Array
    seg: Array
    inst: Array
    boxes: list[tuple[int, int, int, int, int]]
    scribble: Array
    points: list[tuple[int, int, int]]
    jpeg_quality: int


def class_order(seed: int) -> Array:
    """The seed's permutation of classes 1..20; image ``i`` always contains class ``order[i % 20]``."""
    return np.random.default_rng(seed).permutation(20) + 1


def generate_sample(seed: int, index: int, min_size: int = 128, max_size: int = 256) -> SyntheticSample:
    """Generate image ``index`` of the dataset ``seed``; image sides are drawn in [min_size, max_size]."""
    if not 32 <= min_size <= max_size:
        raise ValueError(f"need 32 <= min_size <= max_size, got {min_size}, {max_size}")
    rng = np.random.default_rng([seed, index])
    h, w = (int(x) for x in rng.integers(min_size, max_size + 1, size=2))
    image = background(rng, h, w)

    owner = np.zeros((h, w), np.int32)  # 0 = background, k = k-th drawn instance
    visible: list[int] = []
    full: list[int] = []
    classes: list[int] = []
    for cls in sample_classes(rng, int(class_order(seed)[index % 20])):
        for _ in range(PLACEMENT_TRIES):
            p = place_instance(rng, cls, h, w)
            area = int(p.mask.sum())
            if area < max(MIN_VISIBLE_PIXELS, MIN_INSIDE_FRACTION * p.full_area):
                continue
            hh, ww = p.mask.shape
            region = owner[p.y0:p.y0 + hh, p.x0:p.x0 + ww]
            hidden = np.bincount(region[p.mask], minlength=len(visible) + 1)[1:]
            after = np.array(visible, dtype=np.int64) - hidden
            if np.all(after >= np.maximum(MIN_VISIBLE_PIXELS, MIN_VISIBLE_FRACTION * np.array(full))):
                region[p.mask] = len(visible) + 1
                visible = [*after.tolist(), area]
                full.append(area)
                classes.append(cls)
                paint_instance(rng, image, p)
                break

    image = cv2.GaussianBlur(image, (3, 3), 0.6)
    image = np.round(image).clip(0, 255).astype(np.uint8)
    seg = np.zeros((h, w), np.uint8)
    boxes = []
    for k, cls in enumerate(classes, start=1):
        m = owner == k
        seg[m] = cls
        ys, xs = np.nonzero(m)
        boxes.append((cls, int(xs.min()), int(ys.min()), int(xs.max()), int(ys.max())))

    scribble = np.full((h, w), IGNORE, np.uint8)
    points = []
    for k, (cls, x0, y0, x1, y1) in enumerate(boxes, start=1):
        crop = owner[y0:y1 + 1, x0:x1 + 1] == k
        scribble[y0:y1 + 1, x0:x1 + 1][_instance_stroke(rng, crop)] = cls
        x, y = _click(rng, crop)
        points.append((cls, x0 + x, y0 + y))
    bg = owner == 0
    if bg.any():
        depth = cv2.distanceTransform(bg.astype(np.uint8), cv2.DIST_L2, 3)
        free = depth >= min(5.0, 0.5 * depth.max())
        scribble[_background_strokes(rng, free, int(rng.integers(2, 5)))] = 0
        for _ in range(int(rng.integers(1, 4))):
            x, y = _click(rng, free)
            points.append((0, x, y))
    return SyntheticSample(image, seg, owner.astype(np.uint8), boxes, scribble, points,
                           int(rng.integers(85, 91)))


# ----------------------------------------------------------------------------------------------------
# Files
# ----------------------------------------------------------------------------------------------------
def image_id(index: int) -> str:
    """Dataset index 0.. → VOC-style id ``2026_000001`` (1-based)."""
    return f"{ID_PREFIX}_{index + 1:06d}"


def annotation_xml(image_id: str, sample: SyntheticSample) -> str:
    """VOC XML for ``sample``: size, one ``object`` per instance, 1-based inclusive ``bndbox``."""
    h, w = sample.seg.shape
    root = ET.Element("annotation")
    ET.SubElement(root, "folder").text = "VOC2012"
    ET.SubElement(root, "filename").text = f"{image_id}.jpg"
    ET.SubElement(ET.SubElement(root, "source"), "database").text = "A2GNN synthetic VOC"
    size = ET.SubElement(root, "size")
    for tag, value in (("width", w), ("height", h), ("depth", 3)):
        ET.SubElement(size, tag).text = str(value)
    ET.SubElement(root, "segmented").text = "1"
    for cls, x0, y0, x1, y1 in sample.boxes:
        obj = ET.SubElement(root, "object")
        ET.SubElement(obj, "name").text = CAT_LIST[cls - 1]
        ET.SubElement(obj, "pose").text = "Unspecified"
        truncated = x0 == 0 or y0 == 0 or x1 == w - 1 or y1 == h - 1
        ET.SubElement(obj, "truncated").text = str(int(truncated))
        ET.SubElement(obj, "difficult").text = "0"
        box = ET.SubElement(obj, "bndbox")
        for tag, value in (("xmin", x0), ("ymin", y0), ("xmax", x1), ("ymax", y1)):
            ET.SubElement(box, tag).text = str(value + 1)
    ET.indent(root)
    return ET.tostring(root, encoding="unicode") + "\n"


def _write_text(path: Path, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def write_sample(root: str | os.PathLike, image_id: str, sample: SyntheticSample) -> None:
    """Write every file of one sample under the VOC-style ``root`` (atomic writes)."""
    root = Path(root)
    save_image(root / "JPEGImages" / f"{image_id}.jpg", sample.image, quality=sample.jpeg_quality)
    save_label_png(root / "SegmentationClass" / f"{image_id}.png", sample.seg)
    save_label_png(root / "SegmentationObject" / f"{image_id}.png", sample.inst)
    save_label_png(root / "Scribbles" / f"{image_id}.png", sample.scribble)
    _write_text(root / "Annotations" / f"{image_id}.xml", annotation_xml(image_id, sample))
    clicks = [{"class": c, "x": x, "y": y} for c, x, y in sample.points]
    _write_text(root / "Points" / f"{image_id}.json", json.dumps(clicks) + "\n")


def write_lists(root: str | os.PathLike, train_ids: list[str], val_ids: list[str]) -> None:
    """``ImageSets/Segmentation/{train,train_aug,val,trainval}.txt`` (bare ids, one per line)."""
    folder = Path(root) / "ImageSets" / "Segmentation"
    for name, ids in (("train", train_ids), ("train_aug", train_ids), ("val", val_ids),
                      ("trainval", train_ids + val_ids)):
        _write_text(folder / f"{name}.txt", "".join(f"{i}\n" for i in ids))


def write_voc_download(root: str | os.PathLike, train_ids: list[str], aug_ids: list[str], val_ids: list[str],
                       seed: int = 0, min_size: int = 64, max_size: int = 96) -> None:
    """A root shaped like a PASCAL VOC 2012 download plus SBD, from generated samples under the given ids.

    ``JPEGImages``, ``Annotations``, ``SegmentationClass`` (train and val), ``SegmentationClassAug``
    (train_aug = train + aug), ``ImageSets/Segmentation/{train,val}.txt`` and no train_aug list (a VOC
    download has none), plus the weak annotations this repository reads, ``Scribbles`` and ``Points``.
    """
    root = Path(root)
    for index, name in enumerate([*train_ids, *aug_ids, *val_ids]):
        sample = generate_sample(seed, index, min_size, max_size)
        write_sample(root, name, sample)
        if name not in val_ids:
            save_label_png(root / "SegmentationClassAug" / f"{name}.png", sample.seg)
        if name in aug_ids:  # SBD images have no VOC segmentation
            (root / "SegmentationClass" / f"{name}.png").unlink()
            (root / "SegmentationObject" / f"{name}.png").unlink()
    folder = root / "ImageSets" / "Segmentation"
    for name, ids in (("train", train_ids), ("val", val_ids)):
        _write_text(folder / f"{name}.txt", "".join(f"{i}\n" for i in ids))
