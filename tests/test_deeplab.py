"""Stage-4 networks: the DeepLab v2 ASPP against a tap-by-tap reference, PSPNet's pyramid pooling against cell
means, output stride, parameter groups, backbone loading, strict checkpoints."""

import pytest
import torch
import torch.nn.functional as F
import torchvision
from torchvision.ops import FrozenBatchNorm2d

import train_seg
from network import resnet38_SEAM
from network.deeplab import ASPP, ASPP_RATES, PSP_BINS, PSPNet, PyramidPooling, build_seg_net
from tool.checkpoint import load_checkpoint, save_checkpoint
from tool.optim import PolyOptimizer


def dilated_conv_reference(x, weight, bias, rate):
    """3×3 convolution with dilation ``rate`` and zero padding ``rate``, written as a sum of nine taps."""
    n, c, h, w = x.shape
    padded = F.pad(x, (rate, rate, rate, rate))
    out = bias.view(1, -1, 1, 1).expand(n, -1, h, w).clone()
    for i in range(3):
        for j in range(3):
            window = padded[:, :, i * rate:i * rate + h, j * rate:j * rate + w]
            out += torch.einsum("nchw,oc->nohw", window, weight[:, :, i, j])
    return out


def test_aspp_is_the_sum_of_four_dilated_branches():
    torch.manual_seed(0)
    aspp = ASPP(6, 5)
    assert aspp.rates == ASPP_RATES == (6, 12, 18, 24)
    for conv in aspp.branches:
        torch.nn.init.normal_(conv.bias)  # non-zero biases, so they are checked too
    x = torch.randn(2, 6, 30, 27)
    expected = sum(dilated_conv_reference(x, conv.weight, conv.bias, rate)
                   for conv, rate in zip(aspp.branches, ASPP_RATES, strict=True))
    torch.testing.assert_close(aspp(x), expected, rtol=1e-4, atol=1e-5)
    assert all(conv.dilation == (r, r) and conv.kernel_size == (3, 3) for conv, r in zip(aspp.branches, ASPP_RATES,
                                                                                         strict=True))


@pytest.mark.parametrize("arch, channels", [("deeplabv2_resnet101", 2048), ("deeplabv3_resnet50", 2048),
                                            ("deeplabv2_resnet38", 512)])
def test_output_stride_8_scores_at_input_size_and_four_groups(arch, channels):
    net = build_seg_net(arch, 21, width=0.125).eval()
    x = torch.randn(1, 3, 65, 49)
    with torch.no_grad():
        assert net.features(x).shape == (1, channels, 9, 7)
        assert net(x).shape == (1, 21, 65, 49)
    groups = net.get_parameter_groups()
    head = {id(p) for p in net.head.parameters()}
    assert all(id(p) not in head for p in groups[0] + groups[1]) and groups[2] and groups[3]
    assert {id(p) for p in groups[2] + groups[3]} == head
    trainable = [p for p in net.parameters() if p.requires_grad]
    assert sum(len(g) for g in groups) == len(trainable)


def test_deeplabv2_resnet101_batchnorm_is_frozen():
    net = build_seg_net("deeplabv2_resnet101", 21).train()
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in net.modules())
    assert all(p.requires_grad for p in net.parameters())  # FrozenBatchNorm2d holds buffers only


def test_backbone_weights_fill_every_backbone_tensor_and_wrong_files_fail(tmp_path):
    resnet = torchvision.models.resnet50(weights=None)
    torch.save(resnet.state_dict(), tmp_path / "resnet50.pth")
    net = build_seg_net("deeplabv3_resnet50", 21)
    train_seg.load_backbone(net, tmp_path / "resnet50.pth")
    for key, value in resnet.state_dict().items():
        if not key.startswith("fc."):
            assert torch.equal(net.backbone.state_dict()[key], value), key
    with pytest.raises(ValueError, match="not a torchvision ResNet-101 file"):
        train_seg.load_backbone(build_seg_net("deeplabv2_resnet101", 21), tmp_path / "resnet50.pth")
    with pytest.raises(FileNotFoundError, match="download.pytorch.org"):
        train_seg.load_backbone(net, tmp_path / "resnet50-0676ba61.pth")

    seam = resnet38_SEAM.Net(width=0.125)
    torch.save(seam.state_dict(), tmp_path / "seam.pth")
    small = build_seg_net("deeplabv2_resnet38", 21, width=0.125)
    train_seg.load_backbone(small, tmp_path / "seam.pth")
    assert torch.equal(small.backbone.b7.conv_branch1.weight, seam.b7.conv_branch1.weight)
    with pytest.raises(ValueError, match="do not fit"):  # wrong width
        train_seg.load_backbone(build_seg_net("deeplabv2_resnet38", 21, width=0.25), tmp_path / "seam.pth")


def adaptive_bins(size, b):
    """PSPNet's pyramid cells along one axis: cell i spans [floor(i·size/b), ceil((i+1)·size/b))."""
    return [(i * size // b, -((-(i + 1) * size) // b)) for i in range(b)]


def test_pyramid_pooling_against_cell_means_conv_bn_relu_and_upsampling():
    torch.manual_seed(0)
    ppm = PyramidPooling(8).eval()
    assert ppm.bins == PSP_BINS == (1, 2, 3, 6)
    for stage in ppm.stages:  # non-trivial BatchNorm statistics, so they are checked too
        bn = stage[2]
        bn.running_mean.normal_(), bn.running_var.uniform_(0.5, 2), bn.weight.data.normal_(), bn.bias.data.normal_()
    x = torch.randn(2, 8, 13, 11)
    with torch.no_grad():
        pooled, out = ppm.pooled(x), ppm(x)
    assert [tuple(p.shape) for p in pooled] == [(2, 2, b, b) for b in PSP_BINS]
    assert out.shape == (2, 16, 13, 11) and torch.equal(out[:, :8], x)
    for b, stage, got, channels in zip(PSP_BINS, ppm.stages, pooled, (slice(8, 10), slice(10, 12), slice(12, 14),
                                                                     slice(14, 16)), strict=True):
        cells = torch.stack([torch.stack([x[:, :, y0:y1, x0:x1].mean((2, 3)) for x0, x1 in adaptive_bins(11, b)], -1)
                             for y0, y1 in adaptive_bins(13, b)], -2)  # (2, 8, b, b)
        conv, bn = stage[1], stage[2]
        reduced = torch.einsum("nchw,oc->nohw", cells, conv.weight[:, :, 0, 0])
        normed = (reduced - bn.running_mean.view(1, -1, 1, 1)) / torch.sqrt(bn.running_var.view(1, -1, 1, 1) + bn.eps)
        expected = torch.relu(normed * bn.weight.view(1, -1, 1, 1) + bn.bias.view(1, -1, 1, 1))
        torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-5)
        upsampled = F.interpolate(expected, (13, 11), mode="bilinear", align_corners=False)
        torch.testing.assert_close(out[:, channels], upsampled, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(out[:, 8:10], out[:, 8:10, :1, :1].expand(-1, -1, 13, 11))  # bin 1: one value


def test_pspnet_output_stride_8_aux_head_in_training_only_and_semseg_groups():
    torch.manual_seed(0)
    net = build_seg_net("pspnet_resnet50", 21)
    assert isinstance(net, PSPNet) and net.aux[0].in_channels == 1024 and net.head[1][0].in_channels == 4096
    x = torch.randn(2, 3, 65, 49)
    with torch.no_grad():
        layer3, layer4 = net.backbone.forward_layer3(x)
        assert layer3.shape == (2, 1024, 9, 7) and layer4.shape == (2, 2048, 9, 7)
        assert torch.equal(net.features(x), layer4)
        net.eval()
        assert net(x).shape == (2, 21, 65, 49)
        net.train()
        main, aux = net(x)
    assert main.shape == aux.shape == (2, 21, 65, 49)
    assert not any(isinstance(m, FrozenBatchNorm2d) for m in net.modules())  # trainable BatchNorm, as semseg's
    backbone, backbone_biases, new, new_biases = net.get_parameter_groups()
    assert backbone_biases == [] and new_biases == []  # every parameter decays, as in semseg
    assert {id(p) for p in backbone} == {id(p) for p in net.backbone.parameters()}
    assert {id(p) for p in new} == {id(p) for p in [*net.head.parameters(), *net.aux.parameters()]}
    assert len(backbone) + len(new) == len(list(net.parameters()))
    optimizer = PolyOptimizer(net.get_parameter_groups(), lr=0.01, weight_decay=1e-4, max_step=10, momentum=0.9)
    assert [g["lr"] for g in optimizer.param_groups if g["params"]] == [0.01, pytest.approx(0.1)]
    assert all(g["weight_decay"] == 1e-4 for g in optimizer.param_groups if g["params"])


def test_pspnet_backbone_from_torchvision_and_strict_checkpoints(tmp_path):
    resnet = torchvision.models.resnet50(weights=None)
    torch.save(resnet.state_dict(), tmp_path / "resnet50.pth")
    net = build_seg_net("pspnet_resnet50", 21)
    train_seg.load_backbone(net, tmp_path / "resnet50.pth")
    for key, value in resnet.state_dict().items():
        if not key.startswith("fc."):
            assert torch.equal(net.backbone.state_dict()[key], value), key
    with pytest.raises(ValueError, match="not a torchvision ResNet-101 file"):
        train_seg.load_backbone(build_seg_net("pspnet_resnet101", 21), tmp_path / "resnet50.pth")
    save_checkpoint(net, tmp_path / "psp.pth")  # what train_seg.py writes: the auxiliary head included
    assert any(k.startswith("aux.") for k in torch.load(tmp_path / "psp.pth", weights_only=True))
    again = build_seg_net("pspnet_resnet50", 21)
    load_checkpoint(again, tmp_path / "psp.pth", strict=True)
    for key, value in net.state_dict().items():
        assert torch.equal(again.state_dict()[key], value), key
    with pytest.raises(ValueError, match="does not match"):
        load_checkpoint(build_seg_net("deeplabv3_resnet50", 21), tmp_path / "psp.pth", strict=True)
