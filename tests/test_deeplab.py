"""Stage-4 networks: the DeepLab v2 ASPP against a tap-by-tap reference, output stride, backbone loading."""

import pytest
import torch
import torch.nn.functional as F
import torchvision

import train_seg
from network import resnet38_SEAM
from network.deeplab import ASPP, ASPP_RATES, build_seg_net


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
