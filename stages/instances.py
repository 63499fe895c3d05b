"""Stage 4 instances: the network flags ``train_inst.py`` and ``infer_inst.py`` share (docs/instances.md)."""

from __future__ import annotations

import argparse

from network.maskrcnn import ARCHITECTURES, InstanceNet, build_instance_net
from vocabulary import NUM_CLASSES


def add_model_args(parser: argparse.ArgumentParser) -> None:
    """``--arch``, ``--backbone_width``, ``--short_side``, ``--long_side``: what builds the network."""
    parser.add_argument("--arch", default="maskrcnn_resnet50_fpn", choices=ARCHITECTURES,
                        help="maskrcnn_resnet50_fpn: torchvision's standard; maskrcnn_resnet38: the stage-1 "
                             "ResNet-38 with light heads (CPU demo)")
    parser.add_argument("--backbone_width", default=1.0, type=float,
                        help="ResNet-38 channel multiplier (maskrcnn_resnet38 only; 1 = published)")
    parser.add_argument("--short_side", default=[480, 512, 544, 576, 608, 640, 672, 704, 736, 768, 800], type=int,
                        nargs="+", help="shorter image side in pixels after resizing; training draws one per "
                                        "image, inference uses the last")
    parser.add_argument("--long_side", default=1333, type=int, help="longer image side at most (pixels)")


def build_from_args(args: argparse.Namespace, detections: int = 100, mask_context: float = 1.0) -> InstanceNet:
    """The network of ``--arch``, ``--backbone_width``, ``--short_side``, ``--long_side`` (random weights);
    ``detections`` and ``mask_context``: the inference options of :func:`network.maskrcnn.build_instance_net`."""
    return build_instance_net(args.arch, NUM_CLASSES, min_size=args.short_side, max_size=args.long_side,
                              width=args.backbone_width, detections=detections, mask_context=mask_context)
