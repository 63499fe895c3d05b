import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader

from tool import cli
from tool.label_io import save_label_png
from voc12.data import AffTrainDataset, ClsTrainDataset, ImageDataset, MultiScaleFlipDataset

MEAN = np.array([0.485, 0.456, 0.406], np.float32)
STD = np.array([0.229, 0.224, 0.225], np.float32)
# label value -> colour of its pixels in the fake images (255 = unknown seed pixels)
COLOURS = {0: (0, 200, 0), 1: (200, 0, 0), 2: (0, 0, 200), 255: (200, 200, 200)}
SIZES = {"small": (20, 28), "tall": (45, 25), "odd": (33, 45)}
# published affinity crops pad with 255 before normalizing: padding is normalized white
WHITE = torch.from_numpy((1.0 - MEAN) / STD)


def _seed_label(h, w):
    """Asymmetric layout so a horizontal flip is visible: class 1 on the left third, 0 on top."""
    label = np.full((h, w), 2, np.uint8)
    label[:, : w // 3] = 1
    label[: h // 4] = 0
    label[-4:, -5:] = 255
    return label


@pytest.fixture
def voc(tmp_path):
    root = tmp_path / "VOC2012"
    (root / "JPEGImages").mkdir(parents=True)
    for image_id, (h, w) in SIZES.items():
        label = _seed_label(h, w)
        image = np.zeros((h, w, 3), np.uint8)
        for value, colour in COLOURS.items():
            image[label == value] = colour
        Image.fromarray(image).save(root / "JPEGImages" / f"{image_id}.jpg", quality=100, subsampling=0)
        save_label_png(tmp_path / "seeds" / f"{image_id}.png", label)
    return root, tmp_path / "seeds"


def _decode(image_chw):
    """Denormalize and map every pixel to the label of the nearest fake colour."""
    rgb = (image_chw.permute(1, 2, 0).numpy() * STD + MEAN) * 255
    values = np.array(list(COLOURS))
    palette = np.array(list(COLOURS.values()), np.float32)
    return values[np.argmin(((rgb[:, :, None] - palette) ** 2).sum(-1), axis=-1)]


def test_image_dataset_and_missing_files(voc, tmp_path):
    root, _ = voc
    item = ImageDataset(["tall"], root)[0]
    assert item["id"] == "tall" and item["image"].shape == (45, 25, 3) and item["image"].dtype == np.uint8
    with pytest.raises(FileNotFoundError, match="nothere.jpg"):
        ImageDataset(["nothere"], root)[0]
    with pytest.raises(FileNotFoundError, match="JPEGImages"):
        ImageDataset(["tall"], tmp_path / "elsewhere")


def test_cls_dataset_shapes_padding_and_label(voc):
    root, _ = voc
    labels = {"small": np.eye(20, dtype=np.float32)[3]}
    ds = ClsTrainDataset(["small"], root, labels, crop_size=32, resize_long=(24, 24))
    torch.manual_seed(0)
    for _ in range(5):
        item = ds[0]
        image = item["image"]
        assert image.shape == (3, 32, 32) and image.dtype == torch.float32
        assert torch.equal(item["label"], torch.from_numpy(labels["small"]))
        # 20x28 resized to long side 24 is 17x24, the rest of the 32x32 crop is exactly 0
        inside = (image != 0).any(0)
        ys, xs = torch.nonzero(inside, as_tuple=True)
        assert inside.sum() == 17 * 24
        assert (ys.max() - ys.min() + 1, xs.max() - xs.min() + 1) == (17, 24)
        low, high = torch.from_numpy(-MEAN / STD), torch.from_numpy((1 - MEAN) / STD)
        assert torch.all(image[:, inside] >= low[:, None] - 1e-5)
        assert torch.all(image[:, inside] <= high[:, None] + 1e-5)
    with pytest.raises(cli.UserError, match="tall"):
        ClsTrainDataset(["small", "tall"], root, labels)


def test_cls_dataset_random_long_side_and_reproducible(voc):
    root, _ = voc
    ds = ClsTrainDataset(["tall"], root, {"tall": np.zeros(20, np.float32)}, crop_size=64,
                         resize_long=(30, 60))
    torch.manual_seed(1)
    first = ds[0]["image"]
    heights = {int((ds[0]["image"] != 0).any(0).any(1).sum()) for _ in range(20)}
    assert len(heights) > 5 and all(30 <= h <= 60 for h in heights)
    torch.manual_seed(1)
    assert torch.equal(ds[0]["image"], first)


@pytest.mark.parametrize("crop", [16, 64])
def test_aff_dataset_image_label_valid_agree(voc, crop):
    """Crop (16: cut, 64: padded) and flip keep image and seed pixels aligned; padding is white/255/0."""
    root, seeds = voc
    ds = AffTrainDataset(list(SIZES), root, seeds, crop_size=crop, jitter=None)
    torch.manual_seed(0)
    flips = set()
    for index in range(3):
        for _ in range(6):
            item = ds[index]
            image, label, valid = item["image"], item["label"], item["valid"]
            assert image.shape == (3, crop, crop) and image.dtype == torch.float32
            assert label.shape == (crop, crop) and label.dtype == torch.int64
            assert valid.shape == (crop, crop) and valid.dtype == torch.float32
            inside = valid == 1
            assert torch.all((valid == 0) | inside)
            assert torch.all(image[:, ~inside] == WHITE[:, None]) and torch.all(label[~inside] == 255)
            np.testing.assert_array_equal(_decode(image)[inside.numpy()], label[inside].numpy())
            if crop == 64:  # whole image visible: class 1 on the left third unless flipped
                h, w = SIZES[item["id"]]
                ys, xs = torch.nonzero(inside, as_tuple=True)
                assert inside.sum() == h * w
                row = label[ys.min() + h - 6, xs.min(): xs.min() + w]
                flips.add(bool(row[-1] == 1))
                assert bool(row[0] == 1) != bool(row[-1] == 1)
    if crop == 64:
        assert flips == {True, False}


def test_aff_dataset_jitter_keeps_padding_and_errors(voc, tmp_path):
    root, seeds = voc
    ds = AffTrainDataset(["small"], root, seeds, crop_size=40)
    torch.manual_seed(0)
    item = ds[0]
    assert torch.all(item["image"][:, item["valid"] == 0] == WHITE[:, None])
    assert set(item["label"].unique().tolist()) <= {0, 1, 2, 255}
    with pytest.raises(FileNotFoundError, match="label_dir"):
        AffTrainDataset(["small"], root, tmp_path / "no_seeds")
    (tmp_path / "other").mkdir()
    with pytest.raises(FileNotFoundError, match="small.png"):
        AffTrainDataset(["small"], root, tmp_path / "other")[0]
    save_label_png(tmp_path / "other" / "small.png", np.zeros((5, 5), np.uint8))
    with pytest.raises(ValueError, match="small.png"):
        AffTrainDataset(["small"], root, tmp_path / "other")[0]


def test_dataloader_workers_draw_different_augmentations(voc):
    root, seeds = voc
    ds = AffTrainDataset(["small"] * 4, root, seeds, crop_size=16, jitter=None)
    torch.manual_seed(0)
    loader = DataLoader(ds, batch_size=1, num_workers=2)
    crops = [batch["image"][0] for batch in loader]
    assert len(crops) == 4
    assert any(not torch.equal(crops[0], c) for c in crops[1:])


def test_multi_scale_flip_sizes_and_values(voc):
    root, _ = voc
    labels = {"odd": np.ones(20, np.float32)}
    scales = (0.5, 1.0, 1.5, 2.0)
    item = MultiScaleFlipDataset(["odd"], root, scales, labels=labels)[0]
    h, w = SIZES["odd"]
    image = item["image"]
    assert item["size"] == (h, w) and image.shape == (h, w, 3) and image.dtype == np.uint8
    assert torch.equal(item["label"], torch.ones(20))
    inputs = item["inputs"]
    assert len(inputs) == 2 * len(scales)
    # round half to even, as published: 33 x 45 at 0.5 -> 16 x 22, at 1.5 -> 50 x 68
    assert [tuple(t.shape) for t in inputs[::2]] == [(3, 16, 22), (3, 33, 45), (3, 50, 68), (3, 66, 90)]
    for k, s in enumerate(scales):
        size = (round(w * s), round(h * s))
        resized = np.asarray(Image.fromarray(image).resize(size, Image.BICUBIC), np.float32)
        reference = torch.from_numpy(((resized / 255 - MEAN) / STD).transpose(2, 0, 1))
        torch.testing.assert_close(inputs[2 * k], reference, rtol=1e-6, atol=1e-6)
        assert inputs[2 * k].dtype == torch.float32
        assert torch.equal(inputs[2 * k + 1], torch.flip(inputs[2 * k], dims=[2]))


def test_multi_scale_collates_with_batch_size_1(voc):
    root, _ = voc
    ds = MultiScaleFlipDataset(["small", "tall"], root, scales=(1.0, 0.5))
    batches = list(DataLoader(ds, batch_size=1))
    assert [b["id"] for b in batches] == [["small"], ["tall"]]
    assert batches[1]["inputs"][2].shape == (1, 3, 22, 12)
    assert "label" not in batches[0]
