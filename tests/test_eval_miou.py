import json

import numpy as np
import pytest

import eval_miou
from tool.label_io import save_label_png


@pytest.fixture
def root(tmp_path):
    """A root with two ground-truth maps, predictions, and a train list in the pair dialect."""
    gt = {"a": np.array([[0, 0, 1, 1], [0, 2, 2, 255]], np.uint8), "b": np.array([[1, 1, 0, 0]], np.uint8)}
    pred = {"a": np.array([[0, 1, 1, 255], [2, 2, 0, 1]], np.uint8), "b": np.array([[1, 0, 0, 0]], np.uint8)}
    for name in gt:
        save_label_png(tmp_path / "SegmentationClass" / f"{name}.png", gt[name])
        save_label_png(tmp_path / "pred" / f"{name}.png", pred[name])
    lists = tmp_path / "ImageSets" / "Segmentation"
    lists.mkdir(parents=True)
    (lists / "train.txt").write_text("/JPEGImages/a.jpg /SegmentationClass/a.png\n\n/JPEGImages/b.jpg x\n")
    return tmp_path


def _reference(root, names, wrong):
    """Dense per-class IoU over the listed images, computed pixel by pixel with the formula."""
    from PIL import Image
    def pixels(folder):
        return np.concatenate([np.array(Image.open(root / folder / f"{n}.png")).ravel() for n in names])

    gt, pred = pixels("SegmentationClass"), pixels("pred")
    keep = gt != 255
    gt, pred = gt[keep].astype(int), pred[keep].astype(int)
    if not wrong:
        pred[pred == 255] = 0
    iou = {}
    for c in range(21):
        inter = np.sum((gt == c) & (pred == c))
        union = np.sum((gt == c) | (pred == c))
        iou[c] = inter / union if union else None
    return iou, np.mean(gt == pred)


@pytest.mark.parametrize("wrong", [False, True])
def test_evaluate_matches_the_formula(root, wrong):
    result = eval_miou.evaluate(root / "pred", root / "SegmentationClass", ["a", "b"],
                                pred_255_as="wrong" if wrong else "background")
    iou, acc = _reference(root, ["a", "b"], wrong)
    assert list(result["iou"].values()) == pytest.approx(list(iou.values()))
    assert result["iou"]["aeroplane"] == iou[1] and result["iou"]["dog"] is None
    present = [v for v in iou.values() if v is not None]
    assert result["miou"] == pytest.approx(np.mean(present))
    assert result["pixel_acc"] == pytest.approx(acc)
    assert np.array(result["confusion"]).shape == (21, 22 if wrong else 21)


def test_main_resolves_list_names_and_writes_json(root, capsys):
    out = root / "scores.json"
    args = eval_miou.get_args_parser().parse_args(
        ["--pred_dir", str(root / "pred"), "--gt_dir", str(root / "SegmentationClass"), "--list", "train",
         "--json", str(out)])
    eval_miou.main(args)
    saved = json.loads(out.read_text())
    direct = eval_miou.evaluate(root / "pred", root / "SegmentationClass", ["a", "b"])
    assert saved["miou"] == pytest.approx(direct["miou"]) and saved["num_images"] == 2
    assert saved["iou"]["cat"] is None
    printed = capsys.readouterr().out
    assert "aeroplane" in printed and "mIoU" in printed


def test_seed_mode(root):
    result = eval_miou.evaluate(root / "pred", root / "SegmentationClass", ["a"], seeds=True)
    # image a: 7 gt pixels (one gt 255 ignored), 6 carry a label, 3 of them correct
    assert result["coverage"] == pytest.approx(6 / 7)
    assert result["precision"] == pytest.approx(3 / 6)
    assert result["class_coverage"]["aeroplane"] == pytest.approx(1 / 2)
    assert result["class_precision"]["aeroplane"] == pytest.approx(1 / 2)
    assert result["pred_255_as"] == "wrong"


def test_missing_predictions_are_listed(root):
    ids = ["a", "b"] + [f"gone{i}" for i in range(7)]
    for i in ids[2:]:
        save_label_png(root / "SegmentationClass" / f"{i}.png", np.zeros((2, 2), np.uint8))
    expected = r"--pred_dir .*7 of 9 .*gone0, gone1, gone2, gone3, gone4, \.\.\."
    with pytest.raises(FileNotFoundError, match=expected):
        eval_miou.evaluate(root / "pred", root / "SegmentationClass", ids)


def test_shape_mismatch_names_the_file(root):
    save_label_png(root / "pred" / "b.png", np.zeros((3, 3), np.uint8))
    with pytest.raises(ValueError, match=r"b\.png"):
        eval_miou.evaluate(root / "pred", root / "SegmentationClass", ["a", "b"])
