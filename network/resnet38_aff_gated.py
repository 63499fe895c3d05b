"""Affinity network (stages 2 and 3): ResNet-38 + 448-channel embedding + window affinities, algorithm.md §0.3."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from network import resnet38d
from network.resnet38d import FROZEN_BLOCKS


class WindowL1Distance(torch.autograd.Function):
    """``f (N, C, h, w) -> (N, 2r+1, 2r+1, h, w)``: ``mean_c |f_i − f_{i+(dy,dx)}|`` with zero padding.

    One shifted slice per offset instead of an unfolded ``(N, C, (2r+1)², h, w)`` tensor: memory stays at
    a few copies of ``f`` and both passes run about 10x faster on CPU (``benchmarks/bench_window_affinity.py``).
    The backward pass recomputes the signs; at a zero difference (the centre) the gradient is 0, as for
    ``abs``.
    """

    @staticmethod
    def forward(ctx, f: torch.Tensor, radius: int) -> torch.Tensor:
        n, c, h, w = f.shape
        k = 2 * radius + 1
        padded = F.pad(f, (radius,) * 4)
        out = f.new_empty(n, k, k, h, w)
        for dy in range(k):
            for dx in range(k):
                out[:, dy, dx] = (f - padded[:, :, dy:dy + h, dx:dx + w]).abs_().mean(dim=1)
        ctx.save_for_backward(f)
        ctx.radius = radius
        return out

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        (f,) = ctx.saved_tensors
        r = ctx.radius
        n, c, h, w = f.shape
        padded = F.pad(f, (r,) * 4)
        grad_f = torch.zeros_like(f)
        grad_padded = torch.zeros_like(padded)  # gradient reaching each neighbour (padding discarded)
        for dy in range(2 * r + 1):
            for dx in range(2 * r + 1):
                g = torch.sign(f - padded[:, :, dy:dy + h, dx:dx + w]).mul_(grad[:, None, dy, dx] / c)
                grad_f += g
                grad_padded[:, :, dy:dy + h, dx:dx + w] -= g
        return grad_f + grad_padded[:, :, r:r + h, r:r + w], None


def window_affinity(f: torch.Tensor, radius: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Affinities of every pixel to its ``(2r+1)²`` window. ``f (N, C, h, w)`` → ``(aff, aff_crf)``.

    ``aff_crf[n, dy+r, dx+r, y, x] = mean_c |f[n, c, y, x] − f[n, c, y+dy, x+dx]|`` (centre included) and
    ``aff = exp(−aff_crf)``, both ``(N, 2r+1, 2r+1, h, w)``. Neighbours outside the grid are read from
    zero padding (as published); callers treat those entries as invalid.
    """
    if radius < 0:
        raise ValueError(f"radius must be >= 0, got {radius}")
    aff_crf = WindowL1Distance.apply(f, radius)
    return torch.exp(-aff_crf), aff_crf


class Net(resnet38d.Net):
    """Affinity network. ``forward(x (N, 3, H, W), radius) -> (features, aff, aff_crf)``.

    ``features = cat(conv4, conv5, conv6)`` ``(N, 5632·width, h, w)``; ``aff``/``aff_crf`` as in
    ``window_affinity`` over the embedding ``elu(f9(cat(elu(f8_3(conv4)), elu(f8_4(conv5)),
    elu(f8_5(conv6)))))`` (448 channels at every width).
    """

    def __init__(self, width: float = 1.0, from_scratch: bool = False):
        super().__init__(width=width, not_training=FROZEN_BLOCKS, from_scratch=from_scratch)
        self.f8_3 = nn.Conv2d(self.channels["conv4"], 64, 1, bias=False)
        self.f8_4 = nn.Conv2d(self.channels["conv5"], 128, 1, bias=False)
        self.f8_5 = nn.Conv2d(self.channels["conv6"], 256, 1, bias=False)
        self.f9 = nn.Conv2d(448, 448, 1, bias=False)
        for conv in (self.f8_3, self.f8_4, self.f8_5):
            nn.init.kaiming_normal_(conv.weight)
        nn.init.xavier_uniform_(self.f9.weight, gain=4)
        self.from_scratch_layers = [self.f8_3, self.f8_4, self.f8_5, self.f9]
        self.feature_channels = sum(self.channels[k] for k in ("conv4", "conv5", "conv6"))

    def embedding(self, d: dict[str, torch.Tensor]) -> torch.Tensor:
        """The 448-channel embedding ``(N, 448, h, w)`` from ``forward_as_dict`` output."""
        parts = [F.elu(self.f8_3(d["conv4"])), F.elu(self.f8_4(d["conv5"])), F.elu(self.f8_5(d["conv6"]))]
        return F.elu(self.f9(torch.cat(parts, dim=1)))

    def forward(self, x: torch.Tensor, radius: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        d = self.forward_as_dict(x)
        aff, aff_crf = window_affinity(self.embedding(d), radius)
        features = torch.cat([d["conv4"], d["conv5"], d["conv6"]], dim=1)
        return features, aff, aff_crf

    def get_parameter_groups(self) -> tuple[list, list, list, list]:
        """(pretrained weights, pretrained biases, new-layer weights, new-layer biases), trainable only."""
        return resnet38d.parameter_groups(self, self.from_scratch_layers)
