"""Segmentation networks of stage 4 (algorithm.md §4): DeepLab v2 / v3 and PSPNet heads on ResNet backbones.

Every network maps ``(N, 3, H, W)`` ImageNet-normalized images to ``(N, C, H, W)`` class scores at the
input resolution (bilinear upsampling of the stride-8 scores; PSPNet in training mode also returns its
auxiliary scores) and offers ``get_parameter_groups()`` (the four groups of ``tool.optim``: backbone
weights ×1, backbone biases ×2, head weights ×10, head biases ×20; PSPNet: backbone ×1, new layers ×10,
weight decay on all, as hszhao/semseg). ``train_seg.load_backbone`` fills the backbone from a local
ImageNet (or stage-1) file. Architectures:

- ``deeplabv2_resnet101``: torchvision's ResNet-101 at output stride 8 (dilation 2 in layer3, 4 in
  layer4), frozen BatchNorm (``FrozenBatchNorm2d``: batch size and GPU count do not change results, as
  in DeepLab v2), and the four-branch ASPP of DeepLab v2 (3×3 convs, dilations 6/12/18/24, summed).
- ``deeplabv3_resnet50`` / ``deeplabv3_resnet101``: torchvision's DeepLab v3 (output stride 8, ASPP with
  image pooling and trainable BatchNorm), built with ``weights=None`` and no download.
- ``deeplabv2_resnet38``: the stage-1 ResNet-38 (``network.resnet38d``, any ``width``; BatchNorm and
  ``conv1a`` frozen) with the DeepLab v2 ASPP; initialised from the SEAM classifier, it is a network that
  saw image-level labels only (the CPU demo), or from the MXNet ImageNet file.
- ``pspnet_resnet50`` / ``pspnet_resnet101``: PSPNet as in hszhao/semseg: torchvision's ResNet at output
  stride 8 (dilation 2 in layer3, 4 in layer4) with trainable BatchNorm (SyncBatchNorm on several GPUs),
  the pyramid pooling module (bins 1, 2, 3, 6), a 3×3-conv classifier, and an auxiliary classifier on
  layer3 whose loss (weight ``PSP_AUX_WEIGHT`` = 0.4) is added in training only. Difference: torchvision's
  7×7 stem (semseg's ResNets have a deep stem of three 3×3 convs, with ImageNet weights of their own).

Backbone files (loaded by ``train_seg.py --backbone_weights``): torchvision's ImageNet ResNet checkpoints
(``resnet101-63fe2227.pth``, ``resnet50-0676ba61.pth``; their ``fc`` is ignored), or a SEAM ``.pth`` /
MXNet ``.params`` for ResNet-38 (``classifier_keys = True``: the file may hold other heads too).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
import torchvision
from torch import nn
from torchvision.ops import FrozenBatchNorm2d

from network import resnet38d

ARCHITECTURES = ("deeplabv2_resnet101", "deeplabv3_resnet50", "deeplabv3_resnet101", "deeplabv2_resnet38",
                 "pspnet_resnet50", "pspnet_resnet101")
ASPP_RATES = (6, 12, 18, 24)  # DeepLab v2
PSP_BINS = (1, 2, 3, 6)  # PSPNet's pyramid: 1×1, 2×2, 3×3 and 6×6 average pools
PSP_AUX_WEIGHT = 0.4  # hszhao/semseg's aux_weight: loss = main + 0.4 · auxiliary
PSP_DROPOUT = 0.1  # Dropout2d before each PSPNet classifier's last 1×1 conv
TORCHVISION_FILES = {"resnet50": "resnet50-0676ba61.pth", "resnet101": "resnet101-63fe2227.pth"}


class ASPP(nn.Module):
    """DeepLab v2 atrous spatial pyramid pooling: the sum of parallel 3×3 convs (with bias) at ``rates``.

    ``(N, in_channels, h, w)`` → ``(N, num_classes, h, w)``; weights N(0, 0.01), biases 0 (DeepLab v2).
    """

    def __init__(self, in_channels: int, num_classes: int, rates: Sequence[int] = ASPP_RATES):
        super().__init__()
        self.rates = tuple(rates)
        self.branches = nn.ModuleList(nn.Conv2d(in_channels, num_classes, 3, padding=r, dilation=r)
                                      for r in self.rates)
        for conv in self.branches:
            nn.init.normal_(conv.weight, std=0.01)
            nn.init.zeros_(conv.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.branches[0](x)
        for branch in self.branches[1:]:
            out = out + branch(x)
        return out


def _split(params: list[tuple[str, nn.Parameter]]) -> tuple[list, list]:
    weights = [p for name, p in params if p.requires_grad and not name.endswith("bias")]
    biases = [p for name, p in params if p.requires_grad and name.endswith("bias")]
    return weights, biases


class SegNet(nn.Module):
    """A backbone (``(N, 3, H, W)`` → ``(N, C_feat, H/8, W/8)``) and a head; scores upsampled to the input."""

    def __init__(self, backbone: nn.Module, head: nn.Module):
        super().__init__()
        self.backbone, self.head = backbone, head

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.backbone(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        scores = self.head(self.features(x))
        return F.interpolate(scores, x.shape[2:], mode="bilinear", align_corners=False)

    def get_parameter_groups(self) -> tuple[list, list, list, list]:
        """(backbone weights, backbone biases, head weights, head biases), trainable parameters only."""
        return (*_split(list(self.backbone.named_parameters())), *_split(list(self.head.named_parameters())))

    backbone_name = "backbone"  # what a --backbone_weights file must be, for messages
    classifier_keys = False  # True: a backbone file may hold heads beyond a torchvision ``fc``


class TorchvisionBackbone(nn.Module):
    """A torchvision ResNet without avgpool / fc: ``(N, 3, H, W)`` → ``layer4`` output ``(N, 2048, h, w)``."""

    def __init__(self, resnet: torchvision.models.ResNet):
        super().__init__()
        for name in ("conv1", "bn1", "relu", "maxpool", "layer1", "layer2", "layer3", "layer4"):
            setattr(self, name, getattr(resnet, name))

    def forward_layer3(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(layer3 output (N, 1024, h, w), layer4 output (N, 2048, h, w))``."""
        x = self.layer3(self.layer2(self.layer1(self.maxpool(self.relu(self.bn1(self.conv1(x)))))))
        return x, self.layer4(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_layer3(x)[1]


class DeepLabV2ResNet101(SegNet):
    """DeepLab v2: ResNet-101 (output stride 8, frozen BatchNorm) + ASPP 6/12/18/24."""

    backbone_name = "torchvision ResNet-101"

    def __init__(self, num_classes: int):
        resnet = torchvision.models.resnet101(weights=None, replace_stride_with_dilation=[False, True, True],
                                              norm_layer=FrozenBatchNorm2d)
        super().__init__(TorchvisionBackbone(resnet), ASPP(2048, num_classes))


class DeepLabV3(SegNet):
    """torchvision's ``deeplabv3_resnet50`` / ``deeplabv3_resnet101`` (no aux head, no download)."""

    def __init__(self, depth: int, num_classes: int):
        build = {50: torchvision.models.segmentation.deeplabv3_resnet50,
                 101: torchvision.models.segmentation.deeplabv3_resnet101}[depth]
        model = build(weights=None, weights_backbone=None, num_classes=num_classes, aux_loss=False)
        super().__init__(model.backbone, model.classifier)
        self.backbone_name = f"torchvision ResNet-{depth}"

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.backbone(x)["out"]


class DeepLabV2ResNet38(SegNet):
    """ResNet-38 (``width``, BatchNorm and ``conv1a`` frozen) + ASPP 6/12/18/24 on its ``conv6`` features."""

    backbone_name = "ResNet-38 (SEAM classifier or MXNet ImageNet)"
    classifier_keys = True  # a SEAM classifier also holds its CAM and PCM heads

    def __init__(self, num_classes: int, width: float = 1.0):
        backbone = resnet38d.Net(width=width)
        super().__init__(backbone, ASPP(backbone.channels["conv6"], num_classes))


class PyramidPooling(nn.Module):
    """PSPNet's pyramid pooling module: ``(N, C, h, w)`` → ``(N, 2C, h, w)``.

    For each bin count ``b``: adaptive average pooling to ``b × b``, a 1×1 conv to ``C / len(bins)``
    channels (no bias), BatchNorm, ReLU, and bilinear upsampling back to ``h × w``; the input and the
    upsampled maps are concatenated along channels.
    """

    def __init__(self, in_channels: int, bins: Sequence[int] = PSP_BINS):
        super().__init__()
        if in_channels % len(bins):
            raise ValueError(f"in_channels {in_channels} is not divisible by the {len(bins)} bins")
        self.bins, reduced = tuple(bins), in_channels // len(bins)
        self.stages = nn.ModuleList(
            nn.Sequential(nn.AdaptiveAvgPool2d(b), nn.Conv2d(in_channels, reduced, 1, bias=False),
                          nn.BatchNorm2d(reduced), nn.ReLU(inplace=True)) for b in self.bins)

    def pooled(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The reduced pyramid before upsampling: ``(N, C / len(bins), b, b)`` for each bin ``b``."""
        return [stage(x) for stage in self.stages]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        size = x.shape[2:]
        return torch.cat([x, *(F.interpolate(p, size, mode="bilinear", align_corners=False)
                               for p in self.pooled(x))], 1)


def psp_classifier(in_channels: int, hidden: int, num_classes: int, dropout: float = PSP_DROPOUT) -> nn.Sequential:
    """3×3 conv to ``hidden`` (no bias), BatchNorm, ReLU, Dropout2d, 1×1 conv to class scores."""
    return nn.Sequential(nn.Conv2d(in_channels, hidden, 3, padding=1, bias=False), nn.BatchNorm2d(hidden),
                         nn.ReLU(inplace=True), nn.Dropout2d(dropout), nn.Conv2d(hidden, num_classes, 1))


class PSPNet(SegNet):
    """PSPNet: dilated ResNet-50/101 (stride 8) + pyramid pooling + classifier; auxiliary classifier on layer3.

    ``forward`` in eval mode: ``(N, C, H, W)`` scores; in training mode: ``(scores, auxiliary scores)``,
    both ``(N, C, H, W)`` (``tool.segmentation.seg_training_loss`` weighs them 1 and ``PSP_AUX_WEIGHT``).
    The auxiliary head is kept in inference too (not run), so checkpoints load strictly either way.
    """

    def __init__(self, depth: int, num_classes: int):
        build = {50: torchvision.models.resnet50, 101: torchvision.models.resnet101}[depth]
        resnet = build(weights=None, replace_stride_with_dilation=[False, True, True])
        head = nn.Sequential(PyramidPooling(2048), psp_classifier(4096, 512, num_classes))
        super().__init__(TorchvisionBackbone(resnet), head)
        self.aux = psp_classifier(1024, 256, num_classes)
        self.backbone_name = f"torchvision ResNet-{depth}"

    def forward(self, x: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        layer3, layer4 = self.backbone.forward_layer3(x)
        scores = F.interpolate(self.head(layer4), x.shape[2:], mode="bilinear", align_corners=False)
        if not self.training:
            return scores
        return scores, F.interpolate(self.aux(layer3), x.shape[2:], mode="bilinear", align_corners=False)

    def get_parameter_groups(self) -> tuple[list, list, list, list]:
        """hszhao/semseg's groups: every backbone parameter at lr ×1, every pyramid pooling / classifier /
        auxiliary parameter at ×10, weight decay on all (so the two bias groups are empty)."""
        backbone = [p for p in self.backbone.parameters() if p.requires_grad]
        new = [p for p in (*self.head.parameters(), *self.aux.parameters()) if p.requires_grad]
        return backbone, [], new, []


def build_seg_net(arch: str, num_classes: int, width: float = 1.0) -> SegNet:
    """The network ``arch`` (one of ``ARCHITECTURES``) with random weights; ``width`` is ResNet-38's only."""
    if arch == "deeplabv2_resnet101":
        return DeepLabV2ResNet101(num_classes)
    if arch in ("deeplabv3_resnet50", "deeplabv3_resnet101"):
        return DeepLabV3(int(arch.rsplit("resnet", 1)[1]), num_classes)
    if arch == "deeplabv2_resnet38":
        return DeepLabV2ResNet38(num_classes, width)
    if arch in ("pspnet_resnet50", "pspnet_resnet101"):
        return PSPNet(int(arch.rsplit("resnet", 1)[1]), num_classes)
    raise ValueError(f"--arch must be one of {ARCHITECTURES}, got {arch!r}")
