"""A contact sheet: one row per image, the image then one column per label folder, and a class legend.

    python visualize.py --voc12_root R --list train --first 6 \
        --columns seeds=out/seeds pseudo=out/pseudo --out sheet.png

Label maps are drawn with the VOC palette (255 in its ignore colour); the ground truth
(``<voc12_root>/SegmentationClass``) is the last column unless ``--gt False``. A missing file is drawn
as a grey tile marked "missing". The legend lists the classes present in the drawn label maps.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from tool import cli
from tool.cli import add_id_list, add_voc12_root, make_parser, str2bool
from tool.label_io import atomic_path, read_image, read_label_png
from voc12.lists import read_list
from vocabulary import CLASS_NAMES, IGNORE, voc_palette

HEADER = 18
PAD = 4
MISSING_COLOUR = (128, 128, 128)


def _fit(img: Image.Image, tile: int, resample: Image.Resampling) -> Image.Image:
    """``img`` scaled to fit a ``tile × tile`` square, centred on a white tile."""
    scale = tile / max(img.size)
    size = (max(1, round(img.width * scale)), max(1, round(img.height * scale)))
    out = Image.new("RGB", (tile, tile), (255, 255, 255))
    out.paste(img.resize(size, resample), ((tile - size[0]) // 2, (tile - size[1]) // 2))
    return out


def contact_sheet(images: Sequence[np.ndarray], labels: Sequence[Sequence[np.ndarray | None]],
                  column_names: Sequence[str], row_names: Sequence[str], tile: int = 160) -> Image.Image:
    """Draw the sheet: row ``i`` = ``images[i]`` ``(H, W, 3)`` uint8 then ``labels[i][j]`` ``(H, W)``
    uint8 (0..20, 255 ignore; ``None`` = missing), with headers ``column_names`` (image column first)
    and ``row_names``; a legend of the classes present (and "ignore" if 255 occurs) goes below.
    """
    palette = voc_palette()
    cols = len(column_names)
    present: set[int] = set()
    for row in labels:
        for lab in row:
            if lab is not None:
                present.update(np.unique(lab).tolist())
    legend = [c for c in sorted(present) if c < len(CLASS_NAMES) or c == IGNORE]
    legend_rows = (len(legend) + 3) // 4
    width = cols * (tile + PAD) + PAD
    height = HEADER + len(images) * (tile + HEADER + PAD) + legend_rows * HEADER + PAD
    sheet = Image.new("RGB", (width, height), (255, 255, 255))
    draw = ImageDraw.Draw(sheet)
    for j, name in enumerate(column_names):
        draw.text((PAD + j * (tile + PAD), 3), name, fill=(0, 0, 0))
    for i, (image, row) in enumerate(zip(images, labels, strict=True)):
        top = HEADER + i * (tile + HEADER + PAD)
        draw.text((PAD, top + 2), row_names[i], fill=(0, 0, 0))
        tiles = [_fit(Image.fromarray(image), tile, Image.Resampling.BILINEAR)]
        for lab in row:
            if lab is None:
                missing = Image.new("RGB", (tile, tile), MISSING_COLOUR)
                ImageDraw.Draw(missing).text((PAD, tile // 2), "missing", fill=(255, 255, 255))
                tiles.append(missing)
            else:
                tiles.append(_fit(Image.fromarray(palette[lab]), tile, Image.Resampling.NEAREST))
        for j, t in enumerate(tiles):
            sheet.paste(t, (PAD + j * (tile + PAD), top + HEADER))
    top = HEADER + len(images) * (tile + HEADER + PAD)
    entry = (width - PAD) // 4
    for k, c in enumerate(legend):
        x, y = PAD + (k % 4) * entry, top + (k // 4) * HEADER + 2
        draw.rectangle((x, y, x + 12, y + 12), fill=tuple(int(v) for v in palette[c]), outline=(0, 0, 0))
        draw.text((x + 16, y), f"{c} {CLASS_NAMES[c]}" if c != IGNORE else "255 ignore", fill=(0, 0, 0))
    return sheet


def parse_columns(specs: Sequence[str]) -> list[tuple[str, Path]]:
    """``['name=dir', ...]`` → ``[(name, Path(dir)), ...]``."""
    columns = []
    for spec in specs:
        name, sep, folder = spec.partition("=")
        if not sep or not name or not folder:
            raise cli.UserError(f"--columns expects name=dir entries, got {spec!r}")
        columns.append((name, Path(folder)))
    return columns


def get_args_parser() -> argparse.ArgumentParser:
    parser = make_parser(__doc__)
    add_voc12_root(parser)
    add_id_list(parser, "--list", what="images to draw from", required=True)
    parser.add_argument("--ids", default=None, help="comma-separated ids to draw (default: the first K)")
    parser.add_argument("--first", type=int, default=8, help="draw the first K ids of the list")
    parser.add_argument("--columns", nargs="*", default=[], help="name=dir label folders, left to right")
    parser.add_argument("--gt", type=str2bool, default=True, help="add the ground truth as the last column")
    parser.add_argument("--tile", type=int, default=160, help="tile side in pixels")
    parser.add_argument("--out", required=True, help="output PNG")
    return parser


def main(args: argparse.Namespace) -> None:
    root = Path(args.voc12_root)
    ids = read_list(args.list, root)
    if args.ids:
        wanted = [i.strip() for i in args.ids.split(",") if i.strip()]
        unknown = sorted(set(wanted) - set(ids))
        if unknown:
            raise cli.UserError(f"--ids not in --list {args.list}: {', '.join(unknown[:5])}")
        ids = wanted
    else:
        ids = ids[:args.first]
    columns = parse_columns(args.columns)
    if args.gt:
        columns.append(("ground truth", root / "SegmentationClass"))
    images, labels = [], []
    for image_id in ids:
        images.append(read_image(root / "JPEGImages" / f"{image_id}.jpg"))
        paths = [folder / f"{image_id}.png" for _, folder in columns]
        labels.append([read_label_png(p) if p.is_file() else None for p in paths])
    sheet = contact_sheet(images, labels, ["image", *(n for n, _ in columns)], ids, args.tile)
    with atomic_path(args.out) as tmp:
        sheet.save(tmp, format="PNG")
    print(f"contact sheet: {len(ids)} images x {len(columns) + 1} columns -> {args.out}")


if __name__ == "__main__":
    sys.exit(cli.run(lambda: main(get_args_parser().parse_args())))
