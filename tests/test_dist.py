"""tool.dist on a machine without GPUs: the worker count chosen in the parent, ``launch`` watching its workers
(gloo CPU workers stand in for GPUs), and frozen BatchNorm staying frozen under SyncBatchNorm."""

import torch
from torch import nn

from network.deeplab import build_seg_net


def test_frozen_batchnorm_stays_frozen_under_syncbatchnorm():
    """train_seg.py converts BatchNorm to SyncBatchNorm on several GPUs; ResNet-38's frozen BatchNorms must
    still normalise with their running statistics, which a training step leaves unchanged."""
    torch.manual_seed(0)
    net = build_seg_net("deeplabv2_resnet38", 21, width=1 / 16)
    with torch.no_grad():  # non-trivial running statistics
        for bn in (m for m in net.modules() if isinstance(m, nn.BatchNorm2d)):
            bn.running_mean.uniform_(-0.1, 0.1)
            bn.running_var.uniform_(0.5, 1.5)
    reference = build_seg_net("deeplabv2_resnet38", 21, width=1 / 16)
    reference.load_state_dict(net.state_dict())
    net = nn.SyncBatchNorm.convert_sync_batchnorm(net)
    syncs = [m for m in net.modules() if isinstance(m, nn.SyncBatchNorm)]
    assert len(syncs) == 37 and not any(isinstance(m, nn.BatchNorm2d) for m in net.modules())
    net.train()
    reference.train()
    assert net.training and not any(m.training for m in syncs)
    before = {k: v.clone() for k, v in net.state_dict().items()}
    x = torch.randn(2, 3, 40, 40)
    torch.manual_seed(1)  # the same dropout masks in both
    out = net(x)  # eval-mode SyncBatchNorm: running statistics, no process group needed
    torch.manual_seed(1)
    assert torch.allclose(out, reference(x), atol=1e-5)  # the same function as the frozen BatchNorm net
    optimizer = torch.optim.SGD([p for p in net.parameters() if p.requires_grad], lr=0.1)
    out.square().mean().backward()
    optimizer.step()
    after = net.state_dict()
    norms = [k for k in before if k.rsplit(".", 1)[0] in {n for n, m in net.named_modules() if m in syncs}]
    assert len(norms) == 37 * 5
    assert all(torch.equal(before[k], after[k]) for k in norms)  # weight, bias, running stats, counter
    assert not all(torch.equal(before[k], after[k]) for k in before)  # the step changed the rest
