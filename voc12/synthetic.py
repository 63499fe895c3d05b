"""A generated VOC2012-style dataset whose 20 classes look alike in their bodies and differ in one part.

Every class belongs to one of three groups (vehicle, animal, indoor). An object is a body of its group --
the group's outline, muted colours and fine texture, shared by all the group's classes -- plus one
distinctive part: a saturated hue, a pattern (plain, stripes, dots), a shape and a place on the body that
only its class has (:data:`CATEGORIES`). So a classifier can learn the classes from image-level labels,
while the evidence that tells them apart covers only part of each object, as on real images, and
class activation maps are partial. Instances (1..3 per image) vary in size, aspect, tilt, mirror,
hue and brightness, are truncated at the image border and occlude each other (the part stays at least
half visible); the body of one instance in two fades, on one side, into what lies behind it. The
background is muted gradients and noise with clutter that shares the bodies' colours and textures, and
blobs in a body's look are drawn against the objects, so colour models (GrabCut) and box filling are far
from perfect. Bodies and clutter are muted; only the parts are saturated. Labels show visible pixels only.

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
from dataclasses import dataclass
from pathlib import Path
from xml.etree import ElementTree as ET

import cv2
import numpy as np
from skimage.morphology import skeletonize

from tool.label_io import atomic_path, save_image, save_label_png
from vocabulary import CAT_LIST, IGNORE

ID_PREFIX = "2026"
MAX_INSTANCES = 3
MIN_VISIBLE_FRACTION = 0.4  # an earlier instance keeps at least this share of its pixels visible
MIN_VISIBLE_PIXELS = 40
MIN_INSIDE_FRACTION = 0.6  # share of an instance's pixels that must fall inside the image
MIN_PART_FRACTION = 0.5  # share of the distinctive part that stays inside the image and unoccluded
PLACEMENT_TRIES = 12
FADE_PROBABILITY = 0.5  # share of instances whose body fades, on one side, into what lies behind it
FADE_STRENGTH = (0.3, 0.7)  # blend weight of the background at the faded edge
DISTRACTOR_PROBABILITY = 0.6  # per instance: a background blob in a body's look drawn against it

Array = np.ndarray


# ----------------------------------------------------------------------------------------------------
# Categories: every class is a body of its group (shape, muted colours and a fine texture that the
# group's classes share) plus one distinctive part (a saturated hue, a pattern, a shape and a place on
# the body that only this class has). The part is what tells the classes apart, so class activation
# maps cover it and little of the body, as real CAMs cover a head or a wheel.
# ----------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Category:
    """Appearance of one class: ``group`` body, part ``hue`` index, ``pattern``, ``shape``, ``place``."""

    group: str
    hue: int
    pattern: str
    shape: str
    place: str


CATEGORIES: dict[int, Category] = {
    1: Category("vehicle", 5, "solid", "triangle", "top"),        # aeroplane
    2: Category("vehicle", 3, "stripes", "disc", "bottom"),       # bicycle
    3: Category("animal", 1, "solid", "triangle", "front"),       # bird
    4: Category("vehicle", 4, "dots", "square", "back"),          # boat
    5: Category("indoor", 3, "solid", "disc", "top"),             # bottle
    6: Category("vehicle", 2, "solid", "square", "front"),        # bus
    7: Category("vehicle", 0, "solid", "disc", "bottom"),         # car
    8: Category("animal", 2, "stripes", "triangle", "top"),       # cat
    9: Category("indoor", 5, "stripes", "square", "back"),        # chair
    10: Category("animal", 6, "dots", "disc", "front"),           # cow
    11: Category("indoor", 1, "dots", "square", "bottom"),        # diningtable
    12: Category("animal", 4, "solid", "diamond", "front"),       # dog
    13: Category("animal", 0, "stripes", "square", "back"),       # horse
    14: Category("vehicle", 6, "stripes", "diamond", "top"),      # motorbike
    15: Category("animal", 3, "dots", "disc", "top"),             # person
    16: Category("indoor", 0, "dots", "triangle", "top"),         # pottedplant
    17: Category("animal", 5, "dots", "diamond", "bottom"),       # sheep
    18: Category("indoor", 6, "solid", "square", "front"),        # sofa
    19: Category("vehicle", 1, "stripes", "diamond", "back"),     # train
    20: Category("indoor", 4, "stripes", "disc", "front"),        # tvmonitor
}
"""Class id 1..20 → its appearance; no two classes share the part's (hue, pattern) pair."""

PART_HUES = (0.0, 0.08, 0.16, 0.33, 0.5, 0.62, 0.8)  # red, orange, yellow, green, cyan, blue, magenta
PART_RADIUS = 0.5  # part size in body-frame units (the body spans about [-0.95, 0.95])
PART_PERIOD = {"stripes": 9.0, "dots": 10.0}  # pattern period in pixels

# group → (body hue, hue jitter, saturation range, value range, texture kind, texture period px, contrast)
GROUPS: dict[str, tuple[float, float, tuple[float, float], tuple[float, float], str, float, float]] = {
    "vehicle": (0.58, 0.05, (0.04, 0.2), (0.45, 0.8), "stripes", 7.0, 0.16),
    "animal": (0.08, 0.04, (0.12, 0.32), (0.35, 0.7), "mottle", 5.0, 0.22),
    "indoor": (0.2, 0.06, (0.06, 0.25), (0.4, 0.75), "grid", 8.0, 0.16),
}


def _body(group: str, u: Array, v: Array) -> Array:
    """The group's body mask over frame coordinates ``(u, v)``."""
    if group == "vehicle":  # a long rounded rectangle
        return (u / 0.95) ** 4 + (v / 0.5) ** 4 <= 1.0
    if group == "animal":  # an ellipse
        return (u / 0.9) ** 2 + (v / 0.58) ** 2 <= 1.0
    if group == "indoor":  # a trapezoid, wider at the bottom
        return (np.abs(v) <= 0.72) & (np.abs(u) <= 0.5 + 0.3 * (v + 0.72) / 1.44)
    raise ValueError(f"unknown group {group!r}")


BODY_EXTENT = {"vehicle": (0.95, 0.5), "animal": (0.9, 0.58), "indoor": (0.65, 0.72)}
PLACES = {"front": (0.95, -0.3), "back": (-0.95, -0.3), "top": (0.15, -1.0), "bottom": (0.45, 0.95)}
"""Part centre as a fraction of the body's half extents (u right, v down)."""


def _part_shape(shape: str, u: Array, v: Array) -> Array:
    """A unit-size part mask over part-frame coordinates."""
    if shape == "disc":
        return u * u + v * v <= 1.0
    if shape == "square":
        return np.maximum(np.abs(u), np.abs(v)) <= 0.85
    if shape == "diamond":
        return np.abs(u) + np.abs(v) <= 1.15
    if shape == "triangle":  # apex up
        return (v <= 0.8) & (v >= -1.0 + 1.8 * np.abs(u) / 1.05)
    raise ValueError(f"unknown part shape {shape!r}")


def object_masks(cls: int, u: Array, v: Array) -> tuple[Array, Array]:
    """Body and part masks (bool) of class ``cls`` over frame coordinates ``(u, v)``."""
    cat = CATEGORIES[cls]
    ex, ey = BODY_EXTENT[cat.group]
    fx, fy = PLACES[cat.place]
    part = _part_shape(cat.shape, (u - fx * ex) / PART_RADIUS, (v - fy * ey) / PART_RADIUS)
    return _body(cat.group, u, v), part


def _hsv(h: float, s: float, v: float) -> Array:
    """One RGB colour in [0, 255] from hue, saturation, value in [0, 1]."""
    px = np.array([[[h * 180.0, s * 255.0, v * 255.0]]], np.float32)
    return cv2.cvtColor(px.astype(np.uint8), cv2.COLOR_HSV2RGB)[0, 0].astype(np.float32)


def _smooth_noise(rng: np.random.Generator, shape: tuple[int, int], scale: float) -> Array:
    """Noise in [0, 1] with blobs about ``scale`` pixels wide, ``(H, W)`` float32."""
    gh, gw = max(2, int(shape[0] / scale) + 2), max(2, int(shape[1] / scale) + 2)
    grid = rng.random((gh, gw), dtype=np.float32)
    return cv2.resize(grid, (shape[1], shape[0]), interpolation=cv2.INTER_CUBIC).clip(0.0, 1.0)


def pattern(kind: str, x: Array, y: Array, period: float, rng: np.random.Generator) -> Array:
    """A pattern in [0, 1] at pixel offsets ``(x, y)`` in the object's rotated frame, float32."""
    phase = rng.random(2)
    s, t = x / period + phase[0], y / period + phase[1]
    if kind == "solid":
        return np.zeros(x.shape, np.float32)
    if kind == "stripes":
        return (np.mod(s, 1.0) < 0.5).astype(np.float32)
    if kind == "dots":
        return ((np.mod(s, 1.0) - 0.5) ** 2 + (np.mod(t, 1.0) - 0.5) ** 2 < 0.1).astype(np.float32)
    if kind == "grid":
        return ((np.mod(s, 1.0) < 0.3) | (np.mod(t, 1.0) < 0.3)).astype(np.float32)
    if kind == "mottle":
        return _smooth_noise(rng, x.shape, period)
    raise ValueError(f"unknown pattern {kind!r}")


def body_paint(rng: np.random.Generator, group: str, x: Array, y: Array) -> Array:
    """Colours ``(h, w, 3)`` float32 of a ``group`` body (its muted colour and fine texture) at ``(x, y)``."""
    hue, jitter, sat, val, kind, period, contrast = GROUPS[group]
    base = _hsv((hue + rng.uniform(-jitter, jitter)) % 1.0, rng.uniform(*sat), rng.uniform(*val))
    t = pattern(kind, x, y, period, rng)[..., None]
    return base * (1.0 - contrast + 2.0 * contrast * t)


def part_paint(rng: np.random.Generator, cat: Category, x: Array, y: Array) -> Array:
    """Colours ``(h, w, 3)`` float32 of the distinctive part of ``cat``: its hue, dark where patterned."""
    hue = (PART_HUES[cat.hue] + rng.uniform(-0.015, 0.015)) % 1.0
    bright = _hsv(hue, rng.uniform(0.85, 1.0), rng.uniform(0.8, 1.0))
    t = pattern(cat.pattern, x, y, PART_PERIOD.get(cat.pattern, 1.0), rng)[..., None]
    return bright * (1.0 - 0.7 * t)


# ----------------------------------------------------------------------------------------------------
# Background: muted gradients and noise, with clutter that shares the bodies' colours and textures.
# ----------------------------------------------------------------------------------------------------
def _muted(rng: np.random.Generator) -> Array:
    return _hsv(rng.random(), rng.uniform(0.05, 0.35), rng.uniform(0.3, 0.85))


def background(rng: np.random.Generator, h: int, w: int) -> Array:
    """A cluttered background ``(H, W, 3)`` float32 in [0, 255]."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    a = rng.uniform(0, 2 * np.pi)
    ramp = ((xx * np.cos(a) + yy * np.sin(a)) / max(h, w) + 0.5).clip(0, 1)[..., None]
    c0, c1 = _muted(rng), _muted(rng)
    img = c0 + (c1 - c0) * ramp
    low = np.stack([_smooth_noise(rng, (h, w), rng.uniform(15, 50)) for _ in range(3)], axis=-1)
    img = np.ascontiguousarray((img + (low - 0.5) * rng.uniform(25, 60)).clip(0, 255))
    side = min(h, w)
    for _ in range(rng.integers(3, 9)):
        kind = rng.choice(4, p=[0.35, 0.25, 0.2, 0.2])
        centre = rng.uniform((0, 0), (w, h))
        if kind == 3:  # a thick polyline
            steps = rng.normal(0, side * 0.15, size=(int(rng.integers(2, 6)), 2)).cumsum(axis=0)
            pts = np.round(centre + steps).astype(np.int32)
            colour = tuple(float(c) for c in _muted(rng))
            cv2.polylines(img, [pts], False, colour, int(rng.integers(1, 5)), lineType=cv2.LINE_AA)
            continue
        blob = np.zeros((h, w), np.uint8)
        if rng.random() < 0.5:
            axes = tuple(int(x) for x in rng.uniform(side * 0.05, side * 0.22, 2))
            cv2.ellipse(blob, tuple(int(c) for c in centre), axes, float(rng.uniform(0, 180)), 0, 360, 1, -1)
        else:
            pts = centre + rng.normal(0, side * 0.1, size=(int(rng.integers(3, 7)), 2))
            cv2.fillConvexPoly(blob, cv2.convexHull(np.round(pts).astype(np.int32)), 1)
        m = blob.astype(bool)
        if kind == 0:  # the colours and texture of an object body: confuses colour models and GrabCut
            group = str(rng.choice(list(GROUPS)))
            img[m] = body_paint(rng, group, xx, yy)[m]
        elif kind == 1:  # a plain muted blob
            img[m] = _muted(rng)
        else:  # a striped blob of two muted colours
            period = rng.uniform(3, 10)
            stripes = np.mod((xx * np.cos(a) - yy * np.sin(a)) / period, 1.0) < 0.5
            img[m & stripes] = _muted(rng)
            img[m & ~stripes] = _muted(rng)
    return img


# ----------------------------------------------------------------------------------------------------
# Instances
# ----------------------------------------------------------------------------------------------------
@dataclass
class Placement:
    """Where an instance is drawn: its masks over the region (rows y0:, cols x0:) of the image."""

    cls: int
    y0: int
    x0: int
    mask: Array  # (h, w) bool, body or part, already clipped to the image
    part: Array  # (h, w) bool, the distinctive part (a subset of mask)
    full_area: int  # pixels of the whole object, inside the image or not
    part_area: int  # pixels of the whole part, inside the image or not
    du: Array  # (h, w) rotated pixel offsets from the object centre, for the textures
    dv: Array


def place_instance(rng: np.random.Generator, cls: int, h: int, w: int) -> Placement:
    """Random size, aspect, tilt, mirror and centre for one class-``cls`` object in an ``h×w`` image."""
    radius = rng.uniform(0.3, 0.5) * min(h, w)
    aspect = np.sqrt(rng.uniform(0.7, 1.4))
    theta = rng.uniform(-0.6, 0.6)
    mirror = -1.0 if rng.random() < 0.5 else 1.0
    cx, cy = rng.uniform(0.05, 0.95) * w, rng.uniform(0.05, 0.95) * h
    half = int(np.ceil(radius * 1.45 * max(aspect, 1 / aspect))) + 1
    xs = np.arange(int(cx) - half, int(cx) + half + 1)
    ys = np.arange(int(cy) - half, int(cy) + half + 1)
    dx, dy = xs[None, :] + 0.5 - cx, ys[:, None] + 0.5 - cy
    du = mirror * (np.cos(theta) * dx + np.sin(theta) * dy)
    dv = -np.sin(theta) * dx + np.cos(theta) * dy
    body, part = object_masks(cls, du / (radius * aspect), dv * aspect / radius)
    full = body | part
    keep_y = (ys >= 0) & (ys < h)
    keep_x = (xs >= 0) & (xs < w)
    sub = np.ix_(keep_y, keep_x)
    return Placement(cls, int(ys[keep_y][0]), int(xs[keep_x][0]), full[sub], part[sub], int(full.sum()),
                     int(part.sum()), du[sub].astype(np.float32), dv[sub].astype(np.float32))


def paint_instance(rng: np.random.Generator, image: Array, p: Placement) -> None:
    """Draw instance ``p`` (body, then its part) onto ``image`` ``(H, W, 3)`` float32, in place."""
    cat = CATEGORIES[p.cls]
    colour = np.where(p.part[..., None], part_paint(rng, cat, p.du, p.dv), body_paint(rng, cat.group, p.du, p.dv))
    g = rng.uniform(-0.2, 0.2)  # soft shading along the object's axis
    shade = 1.0 + g * np.tanh(p.dv / (np.abs(p.dv).max() + 1e-6))[..., None]
    noise = rng.normal(0, 6.0, size=p.mask.shape + (3,)).astype(np.float32)
    colour = (colour * shade * rng.uniform(0.85, 1.1) + noise).clip(0, 255)
    hh, ww = p.mask.shape
    region = image[p.y0:p.y0 + hh, p.x0:p.x0 + ww]
    if rng.random() < FADE_PROBABILITY:  # one side of the body fades into what lies behind it
        a = rng.uniform(0, 2 * np.pi)
        side = np.cos(a) * p.du + np.sin(a) * p.dv
        side = (side / (np.abs(side[p.mask]).max() + 1e-6)).clip(0, 1)
        fade = (rng.uniform(*FADE_STRENGTH) * side)[..., None] * ~p.part[..., None]
        colour = colour * (1.0 - fade) + region * fade
    region[p.mask] = colour[p.mask]


def sample_classes(rng: np.random.Generator, first: int) -> list[int]:
    """1..3 instance classes for one image; the first is given (class balancing), the others random."""
    count = int(rng.choice(np.arange(1, MAX_INSTANCES + 1), p=[0.45, 0.35, 0.2]))
    classes = [first]
    for _ in range(count - 1):
        if rng.random() < 0.2:
            classes.append(int(rng.choice(classes)))  # a second instance of a class already present
        else:
            classes.append(int(rng.integers(1, 21)))
    return classes


def add_distractors(rng: np.random.Generator, image: Array, owner: Array) -> None:
    """Paint background blobs in a body's look that touch the instances of ``owner`` ``(H, W)`` (0 = free),
    onto the background pixels of ``image`` ``(H, W, 3)`` float32, in place: inside an object's box they look
    like more object to colour models (GrabCut, box filling)."""
    h, w = owner.shape
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    side = min(h, w)
    for k in range(1, int(owner.max()) + 1):
        if rng.random() >= DISTRACTOR_PROBABILITY:
            continue
        ys, xs = np.nonzero(owner == k)
        j = rng.integers(len(ys))
        blob = np.zeros((h, w), np.uint8)
        axes = tuple(int(x) for x in rng.uniform(side * 0.06, side * 0.16, 2))
        cv2.ellipse(blob, (int(xs[j]), int(ys[j])), axes, float(rng.uniform(0, 180)), 0, 360, 1, -1)
        m = blob.astype(bool) & (owner == 0)
        image[m] = body_paint(rng, str(rng.choice(list(GROUPS))), xx, yy)[m]


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
    part_owner = np.zeros((h, w), np.int32)  # k where the visible pixel belongs to instance k's part
    visible: list[int] = []
    full: list[int] = []
    part_visible: list[int] = []
    part_full: list[int] = []
    classes: list[int] = []
    for cls in sample_classes(rng, int(class_order(seed)[index % 20])):
        for _ in range(PLACEMENT_TRIES):
            p = place_instance(rng, cls, h, w)
            area, part_area = int(p.mask.sum()), int(p.part.sum())
            if (area < max(MIN_VISIBLE_PIXELS, MIN_INSIDE_FRACTION * p.full_area)
                    or part_area < MIN_PART_FRACTION * p.part_area):
                continue
            hh, ww = p.mask.shape
            region = owner[p.y0:p.y0 + hh, p.x0:p.x0 + ww]
            part_region = part_owner[p.y0:p.y0 + hh, p.x0:p.x0 + ww]
            k = len(visible) + 1
            after = np.array(visible, dtype=np.int64) - np.bincount(region[p.mask], minlength=k)[1:]
            part_after = np.array(part_visible, dtype=np.int64) - np.bincount(part_region[p.mask], minlength=k)[1:]
            if (np.all(after >= np.maximum(MIN_VISIBLE_PIXELS, MIN_VISIBLE_FRACTION * np.array(full)))
                    and np.all(part_after >= MIN_PART_FRACTION * np.array(part_full))):
                region[p.mask] = k
                part_region[p.mask] = 0
                part_region[p.part] = k
                visible, part_visible = [*after.tolist(), area], [*part_after.tolist(), part_area]
                full.append(area)
                part_full.append(part_area)
                classes.append(cls)
                paint_instance(rng, image, p)
                break

    add_distractors(rng, image, owner)
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


def write_lists(root: str | os.PathLike, train_ids: list[str], val_ids: list[str],
                train_aug_ids: list[str] | None = None) -> None:
    """``ImageSets/Segmentation/{train,train_aug,val,trainval}.txt`` (bare ids, one per line).

    As on VOC, ``train_aug`` (what the classifier and the affinity nets train on) holds ``train`` (what
    gets pseudo labels and their scores); ``train_aug_ids`` defaults to ``train_ids``.
    """
    train_aug_ids = list(train_ids) if train_aug_ids is None else list(train_aug_ids)
    if not set(train_ids) <= set(train_aug_ids):
        raise ValueError("train ids must be a subset of train_aug ids")
    folder = Path(root) / "ImageSets" / "Segmentation"
    for name, ids in (("train", train_ids), ("train_aug", train_aug_ids), ("val", val_ids),
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
