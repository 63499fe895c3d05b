"""Mask R-CNN for box-supervised instance segmentation (stage 4, **OURS**: the upstream README trains it in
Detectron2; this is torchvision's implementation).

- ``maskrcnn_resnet50_fpn``: torchvision's standard Mask R-CNN (ResNet-50-FPN, frozen BatchNorm, the
  three last ResNet stages trained: ``maskrcnn_resnet50_fpn``'s setting for an ImageNet backbone), built
  from its parts without weights so nothing is downloaded; ``train_inst.py`` fills its ResNet-50 from a
  local ImageNet file (torchvision's ``resnet50-0676ba61.pth``).
- ``maskrcnn_resnet38``: the stage-1 ResNet-38 (``network.resnet38d``, any width), **frozen**, with two feature
  levels of 128 channels made by trained 1×1 convs (:class:`ResNet38Features`: ``conv6`` at stride 8, ``conv3``
  plus the upsampled ``conv6`` at stride 4), anchors 16..48 at stride 4 and 64..256 at stride 8, light heads (a
  256-wide box head, two 128-channel mask convs on the stride-4 level), RoIAlign with one sample per bin and 64
  RoIs per image, for the CPU demo: initialised from the SEAM classifier, it is a network that saw
  image-level labels only, and only its heads learn the instances.

Both map a list of ``(3, H, W)`` float images in [0, 1] (any sizes; torchvision resizes them between
``min_size`` and ``max_size`` and normalizes with the ImageNet mean and std) to torchvision's detection
outputs: in training, a dict of five losses given targets (``boxes (N, 4)`` x0 y0 x1 y1 in pixels,
``labels (N,)`` 1..20, ``masks (N, H, W)`` uint8); in eval, per image ``boxes``, ``labels``, ``scores`` and
``masks (N, 1, H, W)`` probabilities at the input size. ``mask_context`` > 1 (an inference option, **OURS**) lets
the mask head see each detected box grown by that factor about its centre and pastes its mask there: a box that
cuts off part of its object no longer cuts the mask (docs/instances.md).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence

import torch
from torch import nn
from torch.nn import functional as F
from torchvision.models.detection import MaskRCNN
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.backbone_utils import resnet_fpn_backbone
from torchvision.models.detection.faster_rcnn import FastRCNNPredictor, TwoMLPHead
from torchvision.models.detection.mask_rcnn import MaskRCNNHeads, MaskRCNNPredictor
from torchvision.models.detection.roi_heads import maskrcnn_inference
from torchvision.models.detection.transform import resize_boxes
from torchvision.ops import FrozenBatchNorm2d, MultiScaleRoIAlign, clip_boxes_to_image

from network import resnet38d

ARCHITECTURES = ("maskrcnn_resnet50_fpn", "maskrcnn_resnet38")
RESNET38_CHANNELS = 128  # conv6 reduced to this many channels before the RPN and the RoI heads
RESNET38_BOX_FC = 256  # the box head's two fully connected layers (torchvision: 1024)
RESNET38_MASK_CONVS = (128, 128)  # the mask head's 3x3 convs (torchvision: four of 256)
RESNET38_ANCHORS = ((16, 32, 48), (64, 128, 256))  # stride 4, stride 8: the demo's objects are 10..170 px


class ResNet38Features(nn.Module):
    """ResNet-38 features for the RoI heads, each reduced to ``RESNET38_CHANNELS`` by a trained 1×1 conv:
    ``(N, 3, H, W)`` → ``{'0': (N, 128, H/4, W/4), '1': (N, 128, H/8, W/8)}``. ``'1'`` is ``relu(reduce(conv6))``;
    ``'0'`` adds it, upsampled ×2, to the reduced stride-4 ``conv3`` (a one-step FPN top-down path), so masks and
    small boxes see stride-4 detail."""

    def __init__(self, width: float):
        super().__init__()
        self.body = resnet38d.Net(width=width)
        self.reduce = nn.Conv2d(self.body.channels["conv6"], RESNET38_CHANNELS, 1)
        self.lateral = nn.Conv2d(self.body.channels["conv3"], RESNET38_CHANNELS, 1)
        self.out_channels = RESNET38_CHANNELS

    def forward(self, x: torch.Tensor) -> OrderedDict[str, torch.Tensor]:
        feats = self.body.forward_as_dict(x)
        top = self.reduce(feats["conv6"])
        fine = self.lateral(feats["conv3"]) + F.interpolate(top, size=feats["conv3"].shape[-2:], mode="nearest")
        return OrderedDict([("0", torch.relu(fine)), ("1", torch.relu(top))])

    def train(self, mode: bool = True) -> ResNet38Features:
        """The frozen body stays in eval mode (no dropout in b6 / b7: the features training sees are those of
        inference); the 1×1 convs follow ``mode``."""
        super().train(mode)
        self.body.eval()
        return self


class InstanceNet(nn.Module):
    """A torchvision ``MaskRCNN`` plus what the training loop needs (parameter groups, the backbone body) and the
    inference option ``mask_context`` (1 = torchvision's Mask R-CNN)."""

    def __init__(self, model: MaskRCNN, backbone_name: str, mask_context: float = 1.0):
        super().__init__()
        self.model = model
        self.backbone_name = backbone_name
        self.mask_context = mask_context

    @property
    def body(self) -> nn.Module:
        """The ResNet an ImageNet (or stage-1) file initialises: ``model.backbone.body``."""
        return self.model.backbone.body

    def forward(self, images: list[torch.Tensor], targets: list[dict] | None = None):
        return self.model(images, targets) if self.training else self.detect(images)

    def detect(self, images: list[torch.Tensor]) -> list[dict[str, torch.Tensor]]:
        """Eval detections by torchvision's steps, the mask head on the boxes grown by ``mask_context`` (clipped to
        the image): list of ``(3, H, W)`` → per image ``boxes (N, 4)``, ``labels (N,)``, ``scores (N,)``,
        ``masks (N, 1, H, W)``."""
        model, heads = self.model, self.model.roi_heads
        sizes = [tuple(image.shape[-2:]) for image in images]
        batch, _ = model.transform(images)
        features = model.backbone(batch.tensors)
        proposals, _ = model.rpn(batch, features)
        logits, deltas = heads.box_predictor(heads.box_head(heads.box_roi_pool(features, proposals,
                                                                               batch.image_sizes)))
        boxes, scores, labels = heads.postprocess_detections(logits, deltas, proposals, batch.image_sizes)
        grown = [clip_boxes_to_image(grow_boxes(b, self.mask_context), size)
                 for b, size in zip(boxes, batch.image_sizes, strict=True)]
        mask_logits = heads.mask_predictor(heads.mask_head(heads.mask_roi_pool(features, grown, batch.image_sizes)))
        probs = maskrcnn_inference(mask_logits, labels)
        pasted = model.transform.postprocess(
            [{"boxes": g, "masks": p} for g, p in zip(grown, probs, strict=True)], batch.image_sizes, sizes)
        return [{"boxes": resize_boxes(b, resized, size), "labels": lab, "scores": sc, "masks": out["masks"]}
                for b, lab, sc, out, resized, size in zip(boxes, labels, scores, pasted, batch.image_sizes, sizes,
                                                          strict=True)]

    def get_parameter_groups(self) -> tuple[list, list, list, list]:
        """Every trainable parameter in the first two groups (weights ×1, biases ×2 in ``tool.optim``): one
        learning rate for backbone and heads, as in Detectron2's Mask R-CNN recipes."""
        params = [(n, p) for n, p in self.model.named_parameters() if p.requires_grad]
        return [p for n, p in params if not n.endswith("bias")], [p for n, p in params if n.endswith("bias")], [], []


def grow_boxes(boxes: torch.Tensor, factor: float) -> torch.Tensor:
    """``(N, 4)`` x0 y0 x1 y1 → the same boxes with width and height times ``factor``, same centres (unclipped)."""
    centre, half = (boxes[:, :2] + boxes[:, 2:]) / 2, (boxes[:, 2:] - boxes[:, :2]) / 2 * factor
    return torch.cat([centre - half, centre + half], dim=1)


def build_instance_net(arch: str, num_classes: int, *, min_size: int | Sequence[int] = 800, max_size: int = 1333,
                       width: float = 1.0, detections: int = 100, mask_context: float = 1.0) -> InstanceNet:
    """The network ``arch`` (one of :data:`ARCHITECTURES`) with random weights; ``num_classes`` counts the
    background. ``min_size`` (a tuple: one drawn per training image) / ``max_size``: torchvision's resize
    of the shorter / longer side in pixels; ``width``: ResNet-38's channel multiplier; ``detections``: at
    most this many per image in eval; ``mask_context``: see :class:`InstanceNet`."""
    min_size = tuple(min_size) if isinstance(min_size, Sequence) else (min_size,)
    if arch == "maskrcnn_resnet50_fpn":
        # torchvision's maskrcnn_resnet50_fpn without weights would train every layer and its BatchNorm; the
        # standard (ImageNet init, frozen BatchNorm, conv1 and layer1 frozen) is built from its parts instead
        backbone = resnet_fpn_backbone(backbone_name="resnet50", weights=None, norm_layer=FrozenBatchNorm2d,
                                       trainable_layers=3)
        model = MaskRCNN(backbone, num_classes=num_classes, min_size=min_size, max_size=max_size,
                         box_detections_per_img=detections)
        return InstanceNet(model, "torchvision ResNet-50", mask_context)
    if arch == "maskrcnn_resnet38":
        backbone = ResNet38Features(width)
        backbone.body.requires_grad_(False)  # the classifier's features as they are: no backward through them
        model = MaskRCNN(
            backbone, num_classes=None, min_size=min_size, max_size=max_size,
            rpn_anchor_generator=AnchorGenerator(RESNET38_ANCHORS, ((0.5, 1.0, 2.0),) * len(RESNET38_ANCHORS)),
            box_roi_pool=MultiScaleRoIAlign(["0", "1"], output_size=7, sampling_ratio=1),
            box_head=TwoMLPHead(RESNET38_CHANNELS * 7 * 7, RESNET38_BOX_FC),
            box_predictor=FastRCNNPredictor(RESNET38_BOX_FC, num_classes),
            mask_roi_pool=MultiScaleRoIAlign(["0"], output_size=14, sampling_ratio=1),
            mask_head=MaskRCNNHeads(RESNET38_CHANNELS, RESNET38_MASK_CONVS, 1),
            mask_predictor=MaskRCNNPredictor(RESNET38_MASK_CONVS[-1], RESNET38_MASK_CONVS[-1], num_classes),
            rpn_pre_nms_top_n_train=600, rpn_post_nms_top_n_train=300, rpn_pre_nms_top_n_test=300,
            rpn_post_nms_top_n_test=150, rpn_batch_size_per_image=128, box_batch_size_per_image=64,
            box_detections_per_img=detections)
        return InstanceNet(model, "ResNet-38 (SEAM classifier or MXNet ImageNet)", mask_context)
    raise ValueError(f"--arch must be one of {ARCHITECTURES}, got {arch!r}")
