import numpy as np
import pytest
import torch
import torch.nn.functional as F

from network.a2gnn import A2GNN
from tool.propagate import (
    CRF_WEIGHT,
    ImageInputs,
    PropagateConfig,
    image_generator,
    node_features,
    propagate,
    propagate_batch,
    train_a2gnn,
    train_step,
    training_batch,
)
from vocabulary import Box

H, W = 90, 124  # image size; padded to 96 x 128, grid 12 x 16


pytestmark = pytest.mark.usefixtures("one_thread")


def synthetic_scene(seed=0, radius=2):
    """A label map with two objects, noisy features and affinities made from it, partial seeds."""
    g = torch.Generator().manual_seed(seed)
    hp, wp = 96, 128
    gt = torch.zeros(hp, wp, dtype=torch.long)
    gt[16:64, 16:56] = 3
    gt[40:88, 72:120] = 8
    gt[H:], gt[:, W:] = 255, 255
    grid = gt[4::8, 4::8].clone()  # label of each cell (centre pixel)
    grid[grid == 255] = 0
    h, w = grid.shape
    features = F.one_hot(grid, 21).permute(2, 0, 1).float().repeat(2, 1, 1)  # (42, h, w)
    features = (features + 0.6 * torch.rand(features.shape, generator=g)).clamp(min=0)
    d = 2 * radius + 1
    same = F.unfold(grid[None, None].float(), d, padding=radius).view(d, d, h, w) == grid.float()
    aff = torch.where(same, 0.9, 0.2) + 0.1 * torch.rand(d, d, h, w, generator=g)
    seeds = torch.full((hp, wp), 255, dtype=torch.long)
    seeds[28:44, 28:40] = 3
    seeds[56:70, 88:100] = 8
    seeds[0:8, :W] = 0
    seeds[:H, 0:6] = 0
    colour = torch.tensor([[0.0, 0.0, 0.0], [1.0, -0.5, 0.2], [-0.8, 0.6, 0.9]])  # bg, class 3, class 8
    image = colour[(gt == 3) + 2 * (gt == 8)].permute(2, 0, 1) + 0.05 * torch.randn(3, hp, wp, generator=g)
    image[:, H:] = 0
    image[:, :, W:] = 0
    return features, aff, seeds, image, gt


def miou(pred, gt, classes=(0, 3, 8)):
    ious = []
    for c in classes:
        inter = ((pred == c) & (gt == c)).sum().item()
        union = ((pred == c) | (gt == c)).sum().item()
        ious.append(inter / union)
    return float(np.mean(ious))


@pytest.mark.parametrize("schedule", ["others", "box"])
def test_propagation_recovers_objects_beyond_the_seeds(schedule):
    features, aff, seeds, image, gt = synthetic_scene()
    boxes = [Box(3, 16, 16, 55, 63), Box(8, 72, 40, 119, 87)] if schedule == "box" else None
    cfg = PropagateConfig(schedule=schedule, epochs=40, lr=0.1, hidden=64, seed=0)
    probs = propagate(features, aff, seeds, image, (H, W), cfg, boxes=boxes)
    assert probs.shape == (21, H, W)
    torch.testing.assert_close(probs.sum(0), torch.ones(H, W))
    pred = probs.argmax(0)
    gt = gt[:H, :W]
    coverage = (seeds[:H, :W] != 255).float().mean().item()
    score = miou(pred, gt)
    assert score > 0.8 > coverage, (score, coverage)


def test_propagation_is_deterministic_under_a_seed():
    features, aff, seeds, image, _ = synthetic_scene(radius=1)
    cfg = PropagateConfig(schedule="others", epochs=3, hidden=16, seed=7)
    a = propagate(features, aff, seeds, image, (H, W), cfg)
    b = propagate(features, aff, seeds, image, (H, W), cfg)
    c = propagate(features, aff, seeds, image, (H, W), PropagateConfig(schedule="others", epochs=3,
                                                                        hidden=16, seed=8))
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


def test_random_walk_fusion_runs_on_unpadded_cams():
    features, aff, seeds, image, gt = synthetic_scene(radius=2)
    cams = torch.zeros(2, H, W)
    cams[0][gt[:H, :W] == 3] = 0.9
    cams[1][gt[:H, :W] == 8] = 0.8
    cfg = PropagateConfig(schedule="others", epochs=2, hidden=16, rw=True, logt=3)
    probs = propagate(features, aff, seeds, image, (H, W), cfg, cams=cams, cam_classes=torch.tensor([3, 8]))
    torch.testing.assert_close(probs.sum(0), torch.ones(H, W))
    no_rw = propagate(features, aff, seeds, image, (H, W), PropagateConfig(schedule="others", epochs=2,
                                                                            hidden=16))
    # the walk moves probability towards the CAM classes inside the objects
    inside = gt[:H, :W] == 8
    assert probs[8][inside].mean() > no_rw[8][inside].mean()


def test_node_features_are_l1_normalized_with_zero_guard():
    features = torch.rand(6, 3, 4)
    features[:, 1, 2] = 0
    x = node_features(features)
    assert x.shape == (12, 6)
    sums = x.abs().sum(1)
    assert sums[1 * 4 + 2] == 0
    torch.testing.assert_close(sums[torch.arange(12) != 6], torch.ones(11))


def test_inputs_are_checked():
    features, aff, seeds, image, _ = synthetic_scene()
    with pytest.raises(ValueError, match="seeds must be"):
        propagate(features, aff, seeds[:-8], image, (H, W), PropagateConfig(schedule="others"))
    with pytest.raises(ValueError, match="needs boxes"):
        propagate(features, aff, seeds, image, (H, W), PropagateConfig(schedule="box"))
    bad = seeds.clone()
    bad[0, 0] = 30
    with pytest.raises(ValueError, match="seed labels"):
        propagate(features, aff, bad, image, (H, W), PropagateConfig(schedule="others"))


def scene_inputs(seed, crop, boxes, key):
    """``synthetic_scene`` cut to ``crop`` (rows, cols of whole grid cells) with ``boxes`` of it."""
    features, aff, seeds, image, _ = synthetic_scene(seed=seed)
    rows, cols = crop
    height, width = 8 * rows - 3, 8 * cols - 5  # not multiples of 8
    seeds = seeds[:8 * rows, :8 * cols].clone()
    seeds[height:], seeds[:, width:] = 255, 255
    return ImageInputs(features[:, :rows, :cols], aff[..., :rows, :cols], seeds, image[:, :8 * rows, :8 * cols],
                       (height, width), boxes=boxes, key=key)


BATCH = [  # two grid sizes, one shared by two images; 2, 1, 0 and 3 boxes
    ((12, 16), [Box(3, 16, 16, 55, 63), Box(8, 72, 40, 119, 84)]),
    ((9, 13), [Box(3, 16, 16, 55, 63)]),
    ((12, 16), []),
    ((9, 13), [Box(8, 72, 40, 100, 70), Box(3, 10, 10, 40, 40), Box(3, 30, 5, 60, 66)]),
]


@pytest.mark.parametrize("schedule", ["box", "others"])
@pytest.mark.parametrize("dropout", [0.0, 0.5])
def test_batched_images_train_as_if_alone(schedule, dropout):
    """K images of different sizes and box counts trained together give each image's logits and labels
    of training it alone (1e-5), with dropout off and on (each image draws from its own generator)."""
    items = [scene_inputs(seed, crop, boxes, f"img{seed}") for seed, (crop, boxes) in enumerate(BATCH)]
    cfg = PropagateConfig(schedule=schedule, epochs=4, lr=0.05, hidden=16, dropout=dropout, seed=3)
    batched = train_a2gnn(items, cfg)
    for item, logits in zip(items, batched, strict=True):
        alone = train_a2gnn([item], cfg)[0]
        assert logits.shape == (item.features.shape[1] * item.features.shape[2], 21)
        torch.testing.assert_close(logits, alone, rtol=0, atol=1e-5)
        assert torch.equal(logits.argmax(1), alone.argmax(1))
    # the result depends on the image's key, not on its place in the batch
    shuffled = train_a2gnn(items[::-1], cfg)[::-1]
    for a, b in zip(batched, shuffled, strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-5)
    other_key = train_a2gnn([ImageInputs(**{**items[0].__dict__, "key": "another"})], cfg)[0]
    assert not torch.allclose(other_key, batched[0], atol=1e-3)


def test_batched_probabilities_equal_single_image_calls():
    items = [scene_inputs(seed, crop, boxes, f"img{seed}") for seed, (crop, boxes) in enumerate(BATCH[:2])]
    cfg = PropagateConfig(schedule="box", epochs=2, hidden=16, seed=1)
    for item, probs in zip(items, propagate_batch(items, cfg), strict=True):
        assert probs.shape == (21, *item.image_size)
        single = propagate(item.features, item.aff, item.seeds, item.image, item.image_size, cfg,
                           boxes=item.boxes, key=item.key)
        torch.testing.assert_close(probs, single, rtol=0, atol=1e-5)


# ops that make the host wait for the device (on CUDA): data-dependent shapes and reads of values
HOST_SYNC_OPS = {"aten::nonzero", "aten::item", "aten::_local_scalar_dense", "aten::is_nonzero", "aten::bincount",
                 "aten::masked_select", "aten::unique", "aten::_unique2", "aten::unique_consecutive",
                 "aten::repeat_interleave", "aten::equal"}


@pytest.mark.parametrize("schedule", ["box", "others"])
def test_an_epoch_does_not_wait_for_the_device(schedule, monkeypatch):
    """The first CPU epoch of each phase, profiled: no op of the epoch reads a value back to the host or makes a
    shape out of values (nonzero, item, bincount, …), and nothing calls ``tolist``. Adam's step counters
    are host tensors (their ``item`` in ``optimizer.step`` reads no device memory), so its ops are left out.
    Everything that depends only on the boxes and sizes is computed once, by ``training_batch``."""
    items = sorted([scene_inputs(seed, crop, boxes, f"img{seed}") for seed, (crop, boxes) in enumerate(BATCH)],
                   key=lambda item: tuple(item.features.shape[-2:]))
    cfg = PropagateConfig(schedule=schedule, hidden=16)
    batch = training_batch(items, cfg)
    model = A2GNN(batch.x.shape[1], cfg.hidden, cfg.num_class, cfg.nlayers, cfg.dropout,
                  [image_generator(0, item.key, "cpu") for item in items])
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    tolist = []
    original = torch.Tensor.tolist
    monkeypatch.setattr(torch.Tensor, "tolist", lambda self: tolist.append(self.shape) or original(self))
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
        for crf_weight in (None, CRF_WEIGHT[schedule]):
            train_step(model, batch, optimizer, crf_weight)
    monkeypatch.undo()

    def in_optimizer_step(event) -> bool:
        while event is not None:
            if event.name.startswith("Optimizer.step"):
                return True
            event = event.cpu_parent
        return False

    events = prof.events()
    assert any(e.name == "aten::bmm" for e in events)  # the epoch was profiled
    synced = sorted({e.name for e in events if e.name in HOST_SYNC_OPS and not in_optimizer_step(e)})
    assert synced == [] and tolist == []
