"""SEAM classifier: ResNet-38 + ``fc8`` CAM head + pixel correlation module (PCM), algorithm.md §0.2."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from network import resnet38d
from network.resnet38d import FROZEN_BLOCKS
from vocabulary import NUM_CLASSES


def winner_take_all_cam(cam: torch.Tensor) -> torch.Tensor:
    """Normalized CAM fed to the PCM, algorithm.md §0.2 step 2. ``(N, 21, h, w)`` → ``(N, 21, h, w)`` in [0, 1].

    With ``c = relu(cam)``: ``relu(c − 1e-5) / (max_spatial(c) + 1e-5)`` per channel, as the published
    SEAM forward computes it (1e-5 subtracted before dividing; not negligible at the small CAM values of a
    fresh network); channel 0 := 1 − max over 1..20; in channels 1..20 only the per-pixel maximum is kept
    (ties all kept), the others are 0.
    """
    cam = F.relu(cam)
    cam = F.relu(cam - 1e-5) / (cam.flatten(2).amax(dim=2)[:, :, None, None] + 1e-5)
    fg = cam[:, 1:]
    fg_max = fg.amax(dim=1, keepdim=True)
    return torch.cat([1 - fg_max, torch.where(fg < fg_max, torch.zeros_like(fg), fg)], dim=1)


def pixel_correlation(cam: torch.Tensor, f: torch.Tensor) -> torch.Tensor:
    """PCM refinement ``cam_rv = cam @ A``. ``cam (N, K, h, w)``, ``f (N, C, h, w)`` → ``(N, K, h, w)``.

    ``f`` is L2-normalized per pixel (+1e-5), ``A = relu(fᵀf)`` ``(N, hw, hw)``, each column of ``A``
    divided by its sum over rows (+1e-5).
    """
    n, k, h, w = cam.shape
    f = f.flatten(2)
    f = f / (f.norm(dim=1, keepdim=True) + 1e-5)
    aff = F.relu(f.transpose(1, 2) @ f)
    aff = aff / (aff.sum(dim=1, keepdim=True) + 1e-5)
    return (cam.flatten(2) @ aff).view(n, k, h, w)


class Net(resnet38d.Net):
    """SEAM network. ``forward(x (N, 3, H, W)) -> (cam, cam_rv)``, both ``(N, 21, H, W)`` raw scores.

    ``width`` scales the backbone only; the head keeps the published sizes (f8_3: 64, f8_4: 128, f9: 192).
    """

    def __init__(self, width: float = 1.0, from_scratch: bool = False):
        super().__init__(width=width, not_training=FROZEN_BLOCKS, from_scratch=from_scratch)
        self.dropout7 = nn.Dropout2d(0.0 if from_scratch else 0.5)  # as the backbone: none from scratch
        self.fc8 = nn.Conv2d(self.channels["conv6"], NUM_CLASSES, 1, bias=False)
        self.f8_3 = nn.Conv2d(self.channels["conv4"], 64, 1, bias=False)
        self.f8_4 = nn.Conv2d(self.channels["conv5"], 128, 1, bias=False)
        self.f9 = nn.Conv2d(3 + 64 + 128, 192, 1, bias=False)
        nn.init.xavier_uniform_(self.fc8.weight)
        nn.init.kaiming_normal_(self.f8_3.weight)
        nn.init.kaiming_normal_(self.f8_4.weight)
        nn.init.xavier_uniform_(self.f9.weight, gain=4)
        self.from_scratch_layers = [self.fc8, self.f8_3, self.f8_4, self.f9]

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        size = x.shape[2:]
        d = self.forward_as_dict(x)
        cam = self.fc8(self.dropout7(d["conv6"]))
        with torch.no_grad():
            cam_wta = winner_take_all_cam(cam.detach())
        image = F.interpolate(x, cam.shape[2:], mode="bilinear", align_corners=True)
        f8_3 = F.relu(self.f8_3(d["conv4"].detach()))
        f8_4 = F.relu(self.f8_4(d["conv5"].detach()))
        f = torch.cat([image, f8_3, f8_4], dim=1)
        cam_rv = pixel_correlation(cam_wta, self.f9(f))
        cam_rv = F.interpolate(cam_rv, size, mode="bilinear", align_corners=True)
        cam = F.interpolate(cam, size, mode="bilinear", align_corners=True)
        return cam, cam_rv

    def get_parameter_groups(self) -> tuple[list, list, list, list]:
        """(pretrained weights, pretrained biases, new-layer weights, new-layer biases), trainable only."""
        return resnet38d.parameter_groups(self, self.from_scratch_layers)
