"""ResNet-38 backbone: published key names and shapes (algorithm.md §0.1 table), output sizes, frozen BatchNorm."""

import torch
import torch.nn.functional as F

from network import resnet38d

BN_KEYS = ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")


def _bn(name, c):
    return {f"{name}.{k}": (() if k == "num_batches_tracked" else (c,)) for k in BN_KEYS}


def spec_backbone_shapes() -> dict[str, tuple]:
    """Every state-dict key of the width-1 backbone with its shape, written from the algorithm.md §0.1 table."""
    shapes = {"conv1a.weight": (64, 3, 3, 3)}
    # (name, in, mid, out, stride) for the two-conv blocks
    blocks = [("b2", 64, 128, 128, 2), ("b2_1", 128, 128, 128, 1), ("b2_2", 128, 128, 128, 1),
              ("b3", 128, 256, 256, 2), ("b3_1", 256, 256, 256, 1), ("b3_2", 256, 256, 256, 1),
              ("b4", 256, 512, 512, 2)]
    blocks += [(f"b4_{i}", 512, 512, 512, 1) for i in range(1, 6)]
    blocks += [("b5", 512, 512, 1024, 1), ("b5_1", 1024, 512, 1024, 1), ("b5_2", 1024, 512, 1024, 1)]
    for name, cin, mid, cout, stride in blocks:
        shapes.update(_bn(f"{name}.bn_branch2a", cin))
        shapes[f"{name}.conv_branch2a.weight"] = (mid, cin, 3, 3)
        shapes.update(_bn(f"{name}.bn_branch2b1", mid))
        shapes[f"{name}.conv_branch2b1.weight"] = (cout, mid, 3, 3)
        if cin != cout or stride != 1:
            shapes[f"{name}.conv_branch1.weight"] = (cout, cin, 1, 1)
    for name, cin, cout in (("b6", 1024, 2048), ("b7", 2048, 4096)):
        shapes.update(_bn(f"{name}.bn_branch2a", cin))
        shapes[f"{name}.conv_branch2a.weight"] = (cout // 4, cin, 1, 1)
        shapes.update(_bn(f"{name}.bn_branch2b1", cout // 4))
        shapes[f"{name}.conv_branch2b1.weight"] = (cout // 2, cout // 4, 3, 3)
        shapes.update(_bn(f"{name}.bn_branch2b2", cout // 2))
        shapes[f"{name}.conv_branch2b2.weight"] = (cout, cout // 2, 1, 1)
        shapes[f"{name}.conv_branch1.weight"] = (cout, cin, 1, 1)
    shapes.update(_bn("bn7", 4096))
    return shapes


def state_shapes(model) -> dict[str, tuple]:
    return {k: tuple(v.shape) for k, v in model.state_dict().items()}


def test_width1_keys_and_shapes_match_spec():
    with torch.device("meta"):
        net = resnet38d.Net()
    assert state_shapes(net) == spec_backbone_shapes()
    assert net.channels == {"conv3": 256, "conv4": 512, "conv5": 1024, "conv6": 4096}


def test_forward_shapes_odd_input():
    torch.manual_seed(0)
    net = resnet38d.Net(width=1 / 8).eval()
    x = torch.randn(2, 3, 67, 93)
    with torch.no_grad():
        d = net.forward_as_dict(x)
        out = net(x)
    assert d["conv3"].shape == (2, 32, 17, 24)
    assert d["conv4"].shape == (2, 64, 9, 12)
    assert d["conv5"].shape == (2, 128, 9, 12)
    assert d["conv6"].shape == (2, 512, 9, 12)
    assert torch.equal(out, d["conv6"])
    assert net.channels == {"conv3": 32, "conv4": 64, "conv5": 128, "conv6": 512}


def test_width_scaling_keeps_at_least_one_channel():
    assert resnet38d.scaled(64, 1 / 8) == 8
    assert resnet38d.scaled(64, 1e-4) == 1
    net = resnet38d.Net(width=1 / 64)
    assert net.conv1a.weight.shape == (1, 3, 3, 3)
    assert set(net.state_dict()) == set(spec_backbone_shapes())


def test_batchnorm_frozen_in_train_mode():
    torch.manual_seed(0)
    net = resnet38d.Net(width=1 / 16)
    assert net.train() is net and net.eval() is net
    net.train()
    bns = [m for m in net.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    with torch.no_grad():  # non-trivial running statistics
        for bn in bns:
            bn.running_mean.uniform_(-0.1, 0.1)
            bn.running_var.uniform_(0.5, 1.5)
    before = {k: v.clone() for k, v in net.state_dict().items()}
    net(torch.randn(2, 3, 33, 41)).sum().backward()
    after = net.state_dict()
    assert net.training and all(not bn.training for bn in bns)
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert all(not p.requires_grad and p.grad is None for bn in bns for p in bn.parameters())


def test_not_training_layers_frozen():
    net = resnet38d.Net(width=1 / 16, not_training=("conv1a", "b2"))
    assert not net.conv1a.weight.requires_grad
    assert not net.b2.conv_branch2a.weight.requires_grad
    assert net.b2_1.conv_branch2a.weight.requires_grad
    default = resnet38d.Net(width=1 / 16)
    assert default.not_training == [default.conv1a] and not default.conv1a.weight.requires_grad


def _bn_eval(bn, x):
    return (x - bn.running_mean[:, None, None]) / torch.sqrt(bn.running_var[:, None, None] + bn.eps) \
        * bn.weight[:, None, None] + bn.bias[:, None, None]


def test_blocks_follow_spec_formula():
    torch.manual_seed(1)
    block = resnet38d.ResBlock(6, 5, 7, stride=2, first_dilation=1, dilation=2).eval()
    bot = resnet38d.ResBlockBottleneck(6, 8, dilation=4, dropout=0.3).eval()
    with torch.no_grad():
        for m in list(block.modules()) + list(bot.modules()):
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.normal_()
                m.running_var.uniform_(0.5, 2)
                m.weight.normal_()
                m.bias.normal_()
        x = torch.randn(1, 6, 11, 13)
        y = F.relu(_bn_eval(block.bn_branch2a, x))
        mid = F.conv2d(y, block.conv_branch2a.weight, stride=2, padding=1)
        mid = F.relu(_bn_eval(block.bn_branch2b1, mid))
        ref = F.conv2d(y, block.conv_branch1.weight, stride=2) + \
            F.conv2d(mid, block.conv_branch2b1.weight, padding=2, dilation=2)
        out, bn_relu_input = block.forward_with_input(x)
        assert torch.allclose(out, ref, atol=1e-5) and torch.allclose(bn_relu_input, y)

        y = F.relu(_bn_eval(bot.bn_branch2a, x))
        a = F.relu(_bn_eval(bot.bn_branch2b1, F.conv2d(y, bot.conv_branch2a.weight)))
        b = F.relu(_bn_eval(bot.bn_branch2b2, F.conv2d(a, bot.conv_branch2b1.weight, padding=4, dilation=4)))
        ref = F.conv2d(y, bot.conv_branch1.weight) + F.conv2d(b, bot.conv_branch2b2.weight)
        assert torch.allclose(bot(x), ref, atol=1e-5)


def test_from_scratch_default_off_keeps_frozen_net():
    torch.manual_seed(0)
    default = resnet38d.Net(width=1 / 16)
    torch.manual_seed(0)
    explicit = resnet38d.Net(width=1 / 16, from_scratch=False)
    torch.manual_seed(0)
    scratch = resnet38d.Net(width=1 / 16, from_scratch=True)
    assert not default.from_scratch
    a, b, c = default.state_dict(), explicit.state_dict(), scratch.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert state_shapes(scratch) == state_shapes(default)  # same names and shapes
    assert not torch.equal(a["b3.conv_branch2a.weight"], c["b3.conv_branch2a.weight"])  # different init


def test_from_scratch_he_init():
    torch.manual_seed(0)
    net = resnet38d.Net(width=1 / 16, from_scratch=True)
    for conv in (net.conv1a, net.b4_1.conv_branch2a, net.b7.conv_branch2b2):
        fan_out = conv.weight.shape[0] * conv.weight[0, 0].numel()
        expected = (2 / fan_out) ** 0.5
        assert abs(conv.weight.std().item() - expected) < 0.1 * expected


def _capture(module):
    seen = {}
    module.register_forward_hook(lambda m, inp, out: seen.update(x=inp[0].detach(), y=out.detach()))
    return seen


def test_from_scratch_trains_batchnorm_and_every_layer():
    torch.manual_seed(0)
    net = resnet38d.Net(width=1 / 16, not_training=("conv1a", "b2"), from_scratch=True)
    assert net.not_training == [] and all(p.requires_grad for p in net.parameters())
    bns = [m for m in net.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    bn = net.b3.bn_branch2a
    seen = _capture(bn)
    with torch.no_grad():
        for m in bns:
            m.weight.uniform_(0.5, 1.5)
            m.bias.uniform_(-0.2, 0.2)
    before = {k: v.clone() for k, v in net.state_dict().items() if "running" in k}

    assert net.train() is net and all(m.training for m in bns)
    net(torch.randn(4, 3, 33, 41) * 3 + 1).sum().backward()
    x = seen["x"]  # batch statistics: biased variance over (N, H, W)
    mean, var = x.mean(dim=(0, 2, 3)), x.var(dim=(0, 2, 3), unbiased=False)
    ref = (x - mean[:, None, None]) / torch.sqrt(var[:, None, None] + bn.eps) * bn.weight[:, None, None] \
        + bn.bias[:, None, None]
    assert torch.allclose(seen["y"], ref.detach(), atol=1e-4)
    after = net.state_dict()
    assert all(not torch.equal(before[k], after[k]) for k in before)  # running statistics updated
    assert all(m.num_batches_tracked.item() == 1 for m in bns)
    assert all(p.grad is not None for p in net.parameters())
    assert net.conv1a.weight.grad.abs().sum() > 0 and bn.weight.grad.abs().sum() > 0

    assert net.eval() is net and all(not m.training for m in bns)
    with torch.no_grad():
        net(torch.randn(2, 3, 33, 41))
    assert torch.allclose(seen["y"], _bn_eval(bn, seen["x"]), atol=1e-5)  # eval: running statistics
    assert all(m.num_batches_tracked.item() == 1 for m in bns)
