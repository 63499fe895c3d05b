"""Export a label folder for external segmentation code: grayscale class-id PNGs and its list file.

hszhao/semseg (PSPNet) and TreeFilter-Torch / TorchSeg (Tree-FCN) read label PNGs with OpenCV as
grayscale, which turns this project's palette PNGs into the luminance of the class colours (class 1 → 38,
15 → 147, 255 → 220): they would train on wrong classes without an error (kazuto1011/deeplab-pytorch reads
the palette indices with PIL and takes the palette PNGs as they are). This
script writes each ``--label_dir/<id>.png`` as a single-channel PNG whose pixel value is the class id
(255 kept as ignore) and a list file of image / label pairs in the format of the code that will read it
(absolute paths, which both formats accept whatever their data root):

- ``semseg``: ``<image> <label>`` per line (hszhao/semseg ``train_list``);
- ``torchseg``: ``<image>\\t<label>`` per line (TreeFilter-Torch ``C.train_source``).

    python export_labels.py --voc12_root $VOC --label_dir out/box_pred --infer_list train_aug.txt \\
        --out_dir out/box_pred_gray --list_format torchseg --list_path out/box_pred_train.txt

Per image, resumable (existing outputs are skipped); a missing or bad label file is named and the rest go on.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from tool import cli
from tool.label_io import atomic_path, read_label_png, save_index_png
from tool.runner import RunSummary, run_per_image
from voc12.lists import read_list

LIST_FORMATS = {"semseg": " ", "torchseg": "\t"}  # separator between the image and the label path


def get_args_parser() -> argparse.ArgumentParser:
    p = cli.make_parser(__doc__)
    cli.add_voc12_root(p)
    p.add_argument("--label_dir", required=True, type=str,
                   help="folder of <id>.png label maps of this project (palette PNGs: 0..20, 255 = ignore)")
    cli.add_id_list(p, "--infer_list", what="ids to export")
    p.add_argument("--out_dir", required=True, type=str, help="folder of the grayscale <id>.png files")
    p.add_argument("--list_format", default="semseg", choices=sorted(LIST_FORMATS),
                   help="semseg: '<image> <label>' lines; torchseg: tab-separated (TreeFilter-Torch)")
    p.add_argument("--list_path", default=None, type=str,
                   help="list file to write (default: <out_dir>.txt); only the exported ids are listed")
    p.add_argument("--overwrite", default=False, type=cli.str2bool, help="rewrite existing outputs")
    return p


def write_list(path: Path, pairs: list[tuple[Path, Path]], list_format: str) -> None:
    """Atomically write one ``<image><sep><label>`` line per pair (absolute paths)."""
    sep = LIST_FORMATS[list_format]
    with atomic_path(path) as tmp:
        tmp.write_text("".join(f"{image.resolve()}{sep}{label.resolve()}\n" for image, label in pairs))


def main(args: argparse.Namespace) -> RunSummary:
    ids = read_list(args.infer_list, args.voc12_root)
    label_dir, out_dir = Path(args.label_dir), Path(args.out_dir)
    if not label_dir.is_dir():
        raise cli.UserError(f"--label_dir not found: {label_dir} (a folder of <id>.png label maps)")

    def outputs(image_id: str) -> list[Path]:
        return [out_dir / f"{image_id}.png"]

    def process(image_id: str) -> None:
        save_index_png(out_dir / f"{image_id}.png", read_label_png(label_dir / f"{image_id}.png"))

    summary = run_per_image(ids, process, outputs, desc="export_labels", overwrite=args.overwrite)
    images = Path(args.voc12_root) / "JPEGImages"
    pairs = [(images / f"{i}.jpg", outputs(i)[0]) for i in ids if outputs(i)[0].is_file()]
    list_path = Path(args.list_path) if args.list_path else out_dir.with_name(out_dir.name + ".txt")
    write_list(list_path, pairs, args.list_format)
    print(f"{len(pairs)} of {len(ids)} ids listed in {list_path} ({args.list_format} format)")
    return summary


if __name__ == "__main__":
    sys.exit(cli.run(lambda: main(get_args_parser().parse_args())))
