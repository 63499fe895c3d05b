"""The stage-1 classifier learns the generated classes: multi-label AP clearly above the label-frequency
prior after a short from-scratch run, which an untrained network does not reach."""

import pytest
import torch

import eval_classifier
import make_synthetic_voc
import train_SEAM
from network.resnet38_SEAM import Net
from tool.checkpoint import save_checkpoint


@pytest.fixture(scope="module")
def voc(tmp_path_factory):
    root = tmp_path_factory.mktemp("voc")
    make_synthetic_voc.main(make_synthetic_voc.get_args_parser().parse_args(
        ["--out", str(root), "--num_train", "16", "--num_val", "0", "--min_size", "64", "--max_size", "80",
         "--seed", "3"]))
    return root


def score(root, weights):
    return eval_classifier.main(eval_classifier.get_args_parser().parse_args(
        ["--voc12_root", str(root), "--list", "train.txt", "--weights", str(weights), "--backbone_width", "0.125",
         "--device", "cpu"]))


@pytest.mark.slow
def test_classifier_learns_the_generated_classes(voc, tmp_path, one_thread):
    torch.manual_seed(0)
    untrained = tmp_path / "untrained.pth"
    save_checkpoint(Net(width=0.125, from_scratch=True), untrained)
    before = score(voc, untrained)
    train_SEAM.main(train_SEAM.get_args_parser().parse_args([
        "--voc12_root", str(voc), "--train_list", "train.txt", "--weights", "none", "--backbone_width", "0.125",
        "--crop_size", "64", "--resize_long", "64", "80", "--batch_size", "8", "--max_epoches", "40",
        "--cls_only_epochs", "40", "--optimizer", "adamw", "--lr", "3e-3", "--color_jitter", "0", "0", "0", "0",
        "--num_workers", "0", "--session_name", "cls", "--save_dir", str(tmp_path), "--device", "cpu"]))
    after = score(voc, tmp_path / "cls.pth")
    assert before["prior_map"] == after["prior_map"] < 0.2
    assert before["map"] < after["prior_map"] + 0.25  # an untrained net ranks the images near chance
    assert after["map"] > after["prior_map"] + 0.5, (before, after)
