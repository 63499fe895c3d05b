import numpy as np
import pytest
from PIL import Image

from tool.label_io import (
    atomic_path,
    load_npz,
    read_image,
    read_label_png,
    save_image,
    save_label_png,
    save_npz,
    voc_palette,
)


def reference_voc_colour(index: int) -> tuple[int, int, int]:
    """The VOC colormap rule written bit by bit: bit 3k+j of the index goes to bit 7-k of channel j."""
    rgb = [0, 0, 0]
    for k in range(8):
        for j in range(3):
            if index & (1 << (3 * k + j)):
                rgb[j] |= 1 << (7 - k)
    return tuple(rgb)


def test_palette_matches_voc_rule_and_ignore_colour():
    palette = voc_palette()
    assert palette.shape == (256, 3) and palette.dtype == np.uint8
    for index in range(255):
        assert tuple(palette[index]) == reference_voc_colour(index)
    assert tuple(palette[1]) == (128, 0, 0) and tuple(palette[15]) == (192, 128, 128)
    assert tuple(palette[255]) == (224, 224, 192)


def test_palette_png_round_trip(tmp_path):
    rng = np.random.default_rng(0)
    label = rng.integers(0, 21, size=(37, 53)).astype(np.uint8)
    label[rng.random(label.shape) < 0.1] = 255
    path = tmp_path / "sub" / "x.png"
    save_label_png(path, label)
    with Image.open(path) as img:
        assert img.mode == "P"
        assert tuple(img.getpalette()[3 * 255: 3 * 256]) == (224, 224, 192)
    np.testing.assert_array_equal(read_label_png(path), label)


def test_read_grayscale_label(tmp_path):
    label = np.arange(20, dtype=np.uint8).reshape(4, 5)
    Image.fromarray(label, mode="L").save(tmp_path / "g.png")
    np.testing.assert_array_equal(read_label_png(tmp_path / "g.png"), label)


def test_read_errors_name_the_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.png"):
        read_label_png(tmp_path / "nope.png")
    Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(tmp_path / "rgb.png")
    with pytest.raises(ValueError, match="rgb.png"):
        read_label_png(tmp_path / "rgb.png")
    with pytest.raises(ValueError, match="2-D"):
        save_label_png(tmp_path / "bad.png", np.zeros((2, 2, 2), np.uint8))


def test_atomic_write_leaves_no_partial_file(tmp_path):
    target = tmp_path / "out.png"
    save_label_png(target, np.ones((3, 3), np.uint8))
    before = target.read_bytes()
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_bytes(b"half")
        raise RuntimeError("killed mid-write")
    assert target.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.png"]
    with pytest.raises(RuntimeError), atomic_path(tmp_path / "new.npz") as tmp:
        tmp.write_bytes(b"half")
        raise RuntimeError("killed mid-write")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.png"]


def test_npz_and_image_round_trip(tmp_path):
    arrays = {"a": np.arange(6, dtype=np.float32).reshape(2, 3), "b": np.array([1, 5], np.int64)}
    save_npz(tmp_path / "x.npz", **arrays)
    back = load_npz(tmp_path / "x.npz")
    assert set(back) == {"a", "b"}
    for key, value in arrays.items():
        np.testing.assert_array_equal(back[key], value)
    image = np.random.default_rng(1).integers(0, 256, (9, 7, 3)).astype(np.uint8)
    save_image(tmp_path / "i.png", image)
    np.testing.assert_array_equal(read_image(tmp_path / "i.png"), image)
