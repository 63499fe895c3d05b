"""ResNet-38 backbone (pre-activation wide ResNet, output stride 8), algorithm.md §0.1.

Parameter names equal the published checkpoints (``conv1a``, ``b2`` .. ``b7``, ``bn7``), so their state
dicts load strictly. Every BatchNorm is frozen: it always normalizes with its running statistics (also in
``train()`` mode) and its affine parameters never receive gradients, so batch size and GPU count do not
change results. That suits ImageNet-initialised weights only; ``Net(from_scratch=True)`` (**OURS**, for
demos without pretrained weights) instead trains every layer with ordinary BatchNorm and He-initialised
convs, without dropout (a from-scratch run of a few thousand steps underfits, and dropout slowed it).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

# algorithm.md §0.1 channel counts at width 1.
STAGE_CHANNELS = {"conv1a": 64, "b2": 128, "b3": 256, "b4": 512, "b5": (512, 1024), "b6": 2048, "b7": 4096}
# Top-level modules holding the backbone parameters (their keys are "backbone keys").
BACKBONE_MODULES = (
    "conv1a",
    "b2", "b2_1", "b2_2",
    "b3", "b3_1", "b3_2",
    "b4", "b4_1", "b4_2", "b4_3", "b4_4", "b4_5",
    "b5", "b5_1", "b5_2",
    "b6", "b7", "bn7",
)  # fmt: skip
# Blocks the SEAM classifier and the affinity network keep frozen (their ``not_training`` list).
FROZEN_BLOCKS = ("conv1a", "b2", "b2_1", "b2_2")
# The BatchNorm kinds ``Net.train`` keeps in eval mode: its own, and what SyncBatchNorm conversion makes of them.
FROZEN_NORMS = (nn.BatchNorm2d, nn.SyncBatchNorm)


def scaled(channels: int, width: float) -> int:
    """A backbone channel count times the width multiplier, rounded, at least 1."""
    return max(1, int(round(channels * width)))


def parameter_groups(model: nn.Module, from_scratch: list[nn.Module]) -> tuple[list, list, list, list]:
    """Split the trainable parameters into (pretrained weights, pretrained biases, new weights, new biases).

    "New" means a parameter of a module in ``from_scratch``; frozen parameters are left out. These are the
    four groups of ``tool.optim.PolyOptimizer`` (lr ×1, ×2, ×10, ×20). A model built with
    ``from_scratch=True`` has no pretrained part, so nothing is "new" in it: every layer gets ×1 (×2 biases).
    """
    new_ids = set() if getattr(model, "from_scratch", False) else {id(p) for m in from_scratch for p in m.parameters()}
    groups: tuple[list, list, list, list] = ([], [], [], [])
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        is_bias = name.endswith("bias")
        groups[2 * (id(param) in new_ids) + is_bias].append(param)
    return groups


class ResBlock(nn.Module):
    """Pre-activation block of two 3×3 convs; ``conv_branch1`` (1×1) only when the shape changes."""

    def __init__(self, in_channels: int, mid_channels: int, out_channels: int, stride: int = 1,
                 first_dilation: int | None = None, dilation: int = 1):
        super().__init__()
        first_dilation = dilation if first_dilation is None else first_dilation
        self.same_shape = in_channels == out_channels and stride == 1
        self.bn_branch2a = nn.BatchNorm2d(in_channels)
        self.conv_branch2a = nn.Conv2d(in_channels, mid_channels, 3, stride, padding=first_dilation,
                                       dilation=first_dilation, bias=False)
        self.bn_branch2b1 = nn.BatchNorm2d(mid_channels)
        self.conv_branch2b1 = nn.Conv2d(mid_channels, out_channels, 3, padding=dilation, dilation=dilation,
                                        bias=False)
        if not self.same_shape:
            self.conv_branch1 = nn.Conv2d(in_channels, out_channels, 1, stride, bias=False)

    def forward_with_input(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Return ``(block output, relu(bn_branch2a(x)))``, the second being the "bn-relu input"."""
        y = F.relu(self.bn_branch2a(x))
        shortcut = x if self.same_shape else self.conv_branch1(y)
        branch2 = self.conv_branch2b1(F.relu(self.bn_branch2b1(self.conv_branch2a(y))))
        return shortcut + branch2, y

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_with_input(x)[0]


class ResBlockBottleneck(nn.Module):
    """Pre-activation bottleneck 1×1 → 3×3 → 1×1 (out/4, out/2, out) with Dropout2d before the inner convs."""

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1, dilation: int = 1,
                 dropout: float = 0.0):
        super().__init__()
        quarter, half = max(1, out_channels // 4), max(1, out_channels // 2)
        self.bn_branch2a = nn.BatchNorm2d(in_channels)
        self.conv_branch2a = nn.Conv2d(in_channels, quarter, 1, stride, bias=False)
        self.bn_branch2b1 = nn.BatchNorm2d(quarter)
        self.dropout_2b1 = nn.Dropout2d(dropout)
        self.conv_branch2b1 = nn.Conv2d(quarter, half, 3, padding=dilation, dilation=dilation, bias=False)
        self.bn_branch2b2 = nn.BatchNorm2d(half)
        self.dropout_2b2 = nn.Dropout2d(dropout)
        self.conv_branch2b2 = nn.Conv2d(half, out_channels, 1, bias=False)
        self.conv_branch1 = nn.Conv2d(in_channels, out_channels, 1, stride, bias=False)

    def forward_with_input(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Return ``(block output, relu(bn_branch2a(x)))``."""
        y = F.relu(self.bn_branch2a(x))
        branch2 = self.conv_branch2a(y)
        branch2 = self.conv_branch2b1(self.dropout_2b1(F.relu(self.bn_branch2b1(branch2))))
        branch2 = self.conv_branch2b2(self.dropout_2b2(F.relu(self.bn_branch2b2(branch2))))
        return self.conv_branch1(y) + branch2, y

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_with_input(x)[0]


class Net(nn.Module):
    """ResNet-38, output stride 8.

    ``width`` multiplies every backbone channel count (``scaled``); names do not change. Modules listed in
    ``not_training`` (by attribute name, default ``("conv1a",)``) get ``requires_grad=False``.
    Input ``(N, 3, H, W)`` ImageNet-normalized; ``conv4``..``conv6`` are ``(N, C, ceil(H/8), ceil(W/8))``.

    ``from_scratch=True`` is for training without pretrained weights: ``not_training`` is ignored (nothing
    frozen), BatchNorm normalizes with batch statistics in train mode (updating its running statistics for
    eval mode) and its affine parameters train, and every backbone conv gets He init (kaiming normal,
    fan_out, ReLU gain); b6 and b7 have no dropout. Names and shapes are the same in both modes.
    """

    def __init__(self, width: float = 1.0, not_training: Sequence[str] = ("conv1a",), from_scratch: bool = False):
        super().__init__()
        if width <= 0:
            raise ValueError(f"width must be positive, got {width}")
        self.width = width
        self.from_scratch = from_scratch
        c1, c2, c3, c4 = (scaled(STAGE_CHANNELS[k], width) for k in ("conv1a", "b2", "b3", "b4"))
        c5a, c5 = (scaled(c, width) for c in STAGE_CHANNELS["b5"])
        c6, c7 = scaled(STAGE_CHANNELS["b6"], width), scaled(STAGE_CHANNELS["b7"], width)

        self.conv1a = nn.Conv2d(3, c1, 3, padding=1, bias=False)
        self.b2 = ResBlock(c1, c2, c2, stride=2)
        self.b2_1, self.b2_2 = ResBlock(c2, c2, c2), ResBlock(c2, c2, c2)
        self.b3 = ResBlock(c2, c3, c3, stride=2)
        self.b3_1, self.b3_2 = ResBlock(c3, c3, c3), ResBlock(c3, c3, c3)
        self.b4 = ResBlock(c3, c4, c4, stride=2)
        self.b4_1, self.b4_2, self.b4_3, self.b4_4, self.b4_5 = (ResBlock(c4, c4, c4) for _ in range(5))
        self.b5 = ResBlock(c4, c5a, c5, first_dilation=1, dilation=2)
        self.b5_1, self.b5_2 = ResBlock(c5, c5a, c5, dilation=2), ResBlock(c5, c5a, c5, dilation=2)
        keep = 0.0 if from_scratch else 1.0  # no dropout from scratch: a short training underfits
        self.b6 = ResBlockBottleneck(c5, c6, dilation=4, dropout=0.3 * keep)
        self.b7 = ResBlockBottleneck(c6, c7, dilation=4, dropout=0.5 * keep)
        self.bn7 = nn.BatchNorm2d(c7)
        self.channels = {"conv3": c3, "conv4": c4, "conv5": c5, "conv6": c7}

        if from_scratch:
            self.not_training: list[nn.Module] = []
            for module in self.modules():
                if isinstance(module, nn.Conv2d):
                    nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
        else:
            self.not_training = [getattr(self, name) for name in not_training]
            for module in self.not_training:
                module.requires_grad_(False)
            for module in self.modules():
                if isinstance(module, nn.BatchNorm2d):
                    module.requires_grad_(False)
        self.train()

    def forward_as_dict(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Backbone features by name.

        ``conv3``: bn-relu input of b4 (stride 4); ``conv4``, ``conv5``: bn-relu inputs of b5, b6 (stride 8);
        ``conv6 = relu(bn7(b7 output))`` (stride 8).
        """
        x = self.conv1a(x)
        for block in (self.b2, self.b2_1, self.b2_2, self.b3, self.b3_1, self.b3_2):
            x = block(x)
        x, conv3 = self.b4.forward_with_input(x)
        for block in (self.b4_1, self.b4_2, self.b4_3, self.b4_4, self.b4_5):
            x = block(x)
        x, conv4 = self.b5.forward_with_input(x)
        x = self.b5_2(self.b5_1(x))
        x, conv5 = self.b6.forward_with_input(x)
        conv6 = F.relu(self.bn7(self.b7(x)))
        return {"conv3": conv3, "conv4": conv4, "conv5": conv5, "conv6": conv6}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(N, 3, H, W)`` → ``conv6`` ``(N, 4096·width, ceil(H/8), ceil(W/8))``."""
        return self.forward_as_dict(x)["conv6"]

    def train(self, mode: bool = True) -> Net:
        """Set train/eval mode but keep every BatchNorm in eval mode (running statistics only), also after
        ``nn.SyncBatchNorm.convert_sync_batchnorm`` (several GPUs) replaced them by ``SyncBatchNorm``.

        With ``from_scratch`` BatchNorm follows ``mode`` like any other module.
        """
        super().train(mode)
        if self.from_scratch:
            return self
        for module in self.modules():
            if isinstance(module, FROZEN_NORMS):
                module.eval()
        return self
