import numpy as np
import pytest
from PIL import Image

import visualize
from tool import cli
from tool.label_io import save_label_png
from voc12.synthetic import generate_sample, image_id, write_lists, write_sample
from vocabulary import voc_palette


def test_contact_sheet_tiles_and_size():
    image = np.zeros((20, 40, 3), np.uint8)
    image[:] = (10, 200, 30)
    label = np.zeros((20, 40), np.uint8)
    label[:, 20:] = 12
    label[0, 0] = 255
    sheet = visualize.contact_sheet([image, image], [[label, None], [label, label]],
                                    ["image", "pseudo", "gt"], ["a", "b"], tile=40)
    pad, header = visualize.PAD, visualize.HEADER
    legend_rows = 1  # background, dog, ignore
    assert sheet.size == (3 * (40 + pad) + pad, header + 2 * (40 + header + pad) + legend_rows * header + pad)
    arr = np.array(sheet)
    top = header + header  # first row's tiles start below the column header and the row name
    # the image is 40 wide, so it fills the tile width; 20 high, centred vertically in the 40 tile
    assert tuple(arr[top + 20, pad + 5]) == (10, 200, 30)
    dog = tuple(voc_palette()[12])
    assert tuple(arr[top + 20, pad + (40 + pad) + 30]) == dog
    assert tuple(arr[top + 20, pad + 2 * (40 + pad) + 5]) == visualize.MISSING_COLOUR


@pytest.fixture
def root(tmp_path):
    ids = [image_id(i) for i in range(3)]
    for i, name in enumerate(ids):
        write_sample(tmp_path, name, generate_sample(4, i, 64, 80))
    write_lists(tmp_path, ids, [])
    return tmp_path


def test_main_draws_the_chosen_ids(root, tmp_path):
    save_label_png(tmp_path / "pseudo" / f"{image_id(1)}.png", np.zeros((64, 64), np.uint8))
    out = tmp_path / "sheet.png"
    args = visualize.get_args_parser().parse_args(
        ["--voc12_root", str(root), "--list", "train", "--ids", f"{image_id(1)},{image_id(2)}",
         "--columns", f"scribbles={root / 'Scribbles'}", f"pseudo={tmp_path / 'pseudo'}",
         "--tile", "50", "--out", str(out)])
    visualize.main(args)
    sheet = Image.open(out)
    pad, header = visualize.PAD, visualize.HEADER
    assert sheet.size[0] == 4 * (50 + pad) + pad  # image, scribbles, pseudo, ground truth
    assert sheet.size[1] > header + 2 * (50 + header + pad)
    with pytest.raises(cli.UserError, match="not in --list"):
        visualize.main(visualize.get_args_parser().parse_args(
            ["--voc12_root", str(root), "--list", "train", "--ids", "nope", "--out", str(out)]))
