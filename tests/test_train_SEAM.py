import pytest
import torch
from killed_run import killed_after_epoch

import make_synthetic_voc
import train_SEAM
from network import resnet38d
from network.resnet38_SEAM import Net
from tool import cli
from tool.checkpoint import save_checkpoint


@pytest.fixture(scope="module")
def tiny_voc(tmp_path_factory):
    root = tmp_path_factory.mktemp("voc")
    make_synthetic_voc.main(make_synthetic_voc.get_args_parser().parse_args(
        ["--out", str(root), "--num_train", "8", "--num_val", "1", "--min_size", "40", "--max_size", "56"]))
    return root


@pytest.fixture(scope="module")
def init_weights(tmp_path_factory):
    """Trainable random weights: He init, last conv of every residual branch zeroed (identity blocks)."""
    torch.manual_seed(0)
    net = Net(width=0.0625)
    for m in net.modules():
        if isinstance(m, torch.nn.Conv2d) and all(m is not s for s in net.from_scratch_layers):
            torch.nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        if isinstance(m, resnet38d.ResBlock):
            torch.nn.init.zeros_(m.conv_branch2b1.weight)
        if isinstance(m, resnet38d.ResBlockBottleneck):
            torch.nn.init.zeros_(m.conv_branch2b2.weight)
    path = tmp_path_factory.mktemp("weights") / "init.pth"
    save_checkpoint(net, path)
    return path


def train_args(root, weights, out, *extra):
    return train_SEAM.get_args_parser().parse_args([
        "--voc12_root", str(root), "--train_list", "train.txt", "--weights", str(weights),
        "--backbone_width", "0.0625", "--crop_size", "48", "--resize_long", "40", "56",
        "--batch_size", "4", "--num_workers", "0", "--lr", "0.05", "--device", "cpu",
        "--save_dir", str(out), "--session_name", "tiny", *extra])


@pytest.mark.slow
def test_classification_loss_falls_checkpoint_loads_and_resume_continues(tiny_voc, init_weights, tmp_path):
    history = train_SEAM.main(train_args(tiny_voc, init_weights, tmp_path, "--max_epoches", "3"))
    assert len(history) == 3
    assert history[-1]["cls"] < history[0]["cls"] - 0.05
    state = torch.load(tmp_path / "tiny.pth", weights_only=True)
    assert not any(k.startswith("module.") for k in state)
    Net(width=0.0625).load_state_dict(state, strict=True)

    saved = torch.load(tmp_path / "tiny_state.pth", weights_only=True)
    assert saved["epoch"] == 3 and saved["step"] == 6  # 3 epochs done; 8 images / batch 4 = 2 steps per epoch

    with killed_after_epoch(2):
        train_SEAM.main(train_args(tiny_voc, init_weights, tmp_path / "b", "--max_epoches", "3"))
    history = train_SEAM.main(train_args(tiny_voc, init_weights, tmp_path / "b", "--max_epoches", "3",
                                         "--resume", "True"))
    assert len(history) == 1  # only the third epoch ran
    saved = torch.load(tmp_path / "b" / "tiny_state.pth", weights_only=True)
    assert saved["epoch"] == 3 and saved["step"] == 6
    resumed = torch.load(tmp_path / "b" / "tiny.pth", weights_only=True)
    for key, value in state.items():  # bit-identical to the uninterrupted run
        assert torch.equal(resumed[key], value), key


def test_from_scratch_with_classification_warm_up(tiny_voc, tmp_path):
    """``--weights none`` trains BatchNorm (running statistics move); during ``--cls_only_epochs`` (one view) the PCM
    head, reached only by the rvmin/ECR losses, gets no gradient and keeps its initial weights."""
    history = train_SEAM.main(train_args(tiny_voc, "none", tmp_path, "--max_epoches", "1", "--momentum", "0.9",
                                         "--cls_only_epochs", "1"))
    assert len(history) == 1
    state = torch.load(tmp_path / "tiny.pth", weights_only=True)
    torch.manual_seed(0)  # the script's --seed, set before it builds the network
    initial = Net(width=0.0625, from_scratch=True).state_dict()
    assert set(state) == set(initial)
    for name in ("f9.weight", "f8_3.weight", "f8_4.weight"):
        assert torch.equal(state[name], initial[name])
    for name in ("fc8.weight", "conv1a.weight", "b2.bn_branch2a.weight"):  # trained, conv1a/b2 not frozen
        assert not torch.equal(state[name], initial[name])
    assert state["bn7.num_batches_tracked"].item() == 2  # 2 steps of the batch itself (no second view)
    assert not torch.equal(state["bn7.running_mean"], initial["bn7.running_mean"])


def test_pcm_only_epochs_train_the_pcm_head_alone(tiny_voc, tmp_path):
    """``--pcm_only_epochs 1`` after a warm-up epoch changes f8_3/f8_4/f9 and nothing else: every backbone and
    classifier tensor, BatchNorm running statistics included, ends as the warm-up left it (the run is killed
    after the warm-up and resumed, so the PCM epoch also starts from a resume)."""
    argv = ["--max_epoches", "2", "--momentum", "0.9", "--cls_only_epochs", "1", "--pcm_only_epochs", "1"]
    with killed_after_epoch(1):
        train_SEAM.main(train_args(tiny_voc, "none", tmp_path, *argv))
    after_warm = torch.load(tmp_path / "tiny_state.pth", weights_only=True)["model"]
    history = train_SEAM.main(train_args(tiny_voc, "none", tmp_path, *argv, "--resume", "True"))
    assert len(history) == 1 and history[0]["loss"] > 0
    after_pcm = torch.load(tmp_path / "tiny.pth", weights_only=True)
    assert set(after_pcm) == set(after_warm)
    for name, value in after_warm.items():
        if name in ("f8_3.weight", "f8_4.weight", "f9.weight"):
            assert not torch.equal(after_pcm[name], value), name
        else:
            assert torch.equal(after_pcm[name], value), name


def test_cls_only_and_pcm_only_epochs_must_fit(tiny_voc, tmp_path):
    with pytest.raises(cli.UserError, match="--pcm_only_epochs"):
        train_SEAM.main(train_args(tiny_voc, "none", tmp_path, "--max_epoches", "2", "--cls_only_epochs", "2",
                                   "--pcm_only_epochs", "1"))
