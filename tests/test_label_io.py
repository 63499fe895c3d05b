import errno
import os

import numpy as np
import pytest
from PIL import Image

from tool.label_io import (
    atomic_path,
    check_label,
    load_npz,
    probe_output_dir,
    read_image,
    read_label_png,
    remove_stale_temporaries,
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


@pytest.mark.parametrize("umask", [0o022, 0o002, 0o077])
def test_written_files_follow_the_umask(tmp_path, umask):
    old = os.umask(umask)
    try:
        save_label_png(tmp_path / "a.png", np.zeros((2, 2), np.uint8))
        save_npz(tmp_path / "b.npz", x=np.zeros(2))
        with atomic_path(tmp_path / "c.txt") as tmp:
            tmp.write_text("x")
        with open(tmp_path / "plain.txt", "w") as f:  # what an ordinary open gives
            f.write("x")
    finally:
        os.umask(old)
    expected = (tmp_path / "plain.txt").stat().st_mode & 0o777
    assert expected == 0o666 & ~umask
    for name in ("a.png", "b.npz", "c.txt"):
        assert (tmp_path / name).stat().st_mode & 0o777 == expected, name


def test_stale_temporaries_of_given_outputs_are_removed(tmp_path):
    out = tmp_path / "labels"
    out.mkdir()
    stale = [out / ".2007_000032.k3j_9xqz.png.tmp", out / ".a.b.abcdefgh.npz.tmp"]
    others = [out / ".2007_000033.k3j_9xqz.png.tmp",  # another image's (another shard may write it)
              out / ".2007_000032.short.png.tmp",     # not tempfile's 8 characters
              out / "2007_000032.png.tmp"]
    for p in stale + others:
        p.write_bytes(b"half")
    removed = remove_stale_temporaries([out / "2007_000032.png", out / "a.b.npz", tmp_path / "none" / "x.png"])
    assert sorted(removed) == sorted(stale)
    assert not any(p.exists() for p in stale) and all(p.exists() for p in others)
    # the name atomic_path really uses is recognized
    with pytest.raises(RuntimeError), atomic_path(out / "real.png") as tmp:
        tmp.write_bytes(b"x")
        os.link(tmp, out / f"{tmp.name}.keep")
        raise RuntimeError("killed")
    os.rename(out / f"{tmp.name}.keep", tmp)
    assert remove_stale_temporaries([out / "real.png"]) == [tmp] and not tmp.exists()


def test_full_disk_names_the_path(tmp_path):
    with pytest.raises(OSError, match="no space left.*out.png") as err, atomic_path(tmp_path / "out.png"):
        raise OSError(errno.ENOSPC, "No space left on device")
    assert err.value.errno == errno.ENOSPC
    assert list(tmp_path.iterdir()) == []


def test_probe_output_dir(tmp_path):
    probe_output_dir(tmp_path / "new" / "deep", "--save_path")
    assert (tmp_path / "new" / "deep").is_dir() and list((tmp_path / "new" / "deep").iterdir()) == []
    (tmp_path / "file").write_text("x")
    with pytest.raises(OSError, match="--save_path .*file/sub: cannot write there"):
        probe_output_dir(tmp_path / "file" / "sub", "--save_path")


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_probe_refuses_read_only_folder(tmp_path):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    try:
        with pytest.raises(PermissionError, match="--save_dir .*ro: cannot write there"):
            probe_output_dir(ro, "--save_dir")
    finally:
        ro.chmod(0o755)


def test_one_validator_for_label_maps(tmp_path):
    label = np.zeros((3, 4), np.uint8)
    label[0, 0], label[1, 1] = 20, 255
    assert check_label(label, (3, 4), "x.png").dtype == np.uint8
    bad = label.copy()
    bad[2, 2] = 37
    with pytest.raises(ValueError, match=r"x.png: unknown class values \[37\]"):
        check_label(bad, None, "x.png")
    with pytest.raises(ValueError, match="x.png: size"):
        check_label(label, (4, 3), "x.png")
    save_label_png(tmp_path / "seed.png", bad)
    with pytest.raises(ValueError, match=r"seed.png: unknown class values \[37\]"):
        read_label_png(tmp_path / "seed.png")
    save_label_png(tmp_path / "ok.png", label)
    with pytest.raises(ValueError, match="ok.png: size"):
        read_label_png(tmp_path / "ok.png", (5, 5))
    Image.fromarray(np.full((2, 2), 300, np.uint16)).save(tmp_path / "wide.png")
    with pytest.raises(ValueError, match=r"wide.png: unknown class values \[300\]"):
        read_label_png(tmp_path / "wide.png")
    (tmp_path / "junk.png").write_bytes(b"not a png")
    with pytest.raises(ValueError, match="junk.png"):
        read_label_png(tmp_path / "junk.png")


def test_corrupt_image_is_named(tmp_path):
    save_image(tmp_path / "a.jpg", np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8))
    data = (tmp_path / "a.jpg").read_bytes()
    (tmp_path / "cut.jpg").write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match="cut.jpg: corrupt or truncated image"):
        read_image(tmp_path / "cut.jpg")


def test_npz_with_object_arrays_or_garbage_is_named(tmp_path):
    np.savez(tmp_path / "obj.npz", classes=np.array([{"x": 1}], dtype=object))
    with pytest.raises(ValueError, match="obj.npz: holds object arrays"):
        load_npz(tmp_path / "obj.npz")
    save_npz(tmp_path / "ok.npz", x=np.arange(1000))
    data = (tmp_path / "ok.npz").read_bytes()
    (tmp_path / "cut.npz").write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match="cut.npz: not an .npz archive"):
        load_npz(tmp_path / "cut.npz")
    (tmp_path / "rand.npz").write_bytes(np.random.default_rng(0).bytes(500))
    with pytest.raises(ValueError, match="rand.npz"):
        load_npz(tmp_path / "rand.npz")
