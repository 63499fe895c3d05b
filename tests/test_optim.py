"""PolyOptimizer: per-group learning rates ×1/×2/×10/×20 with poly decay, weight decay on weights only."""

import pytest
import torch

from tool.optim import PolyOptimizer


def make(max_step=10, momentum=0.0, weight_decay=0.0):
    params = [[torch.nn.Parameter(torch.zeros(3))] for _ in range(4)]
    opt = PolyOptimizer(params, lr=0.01, weight_decay=weight_decay, max_step=max_step, momentum=momentum)
    return params, opt


def test_poly_schedule_values_used_by_each_step():
    params, opt = make(max_step=10)
    for step in range(12):
        before = [p[0].detach().clone() for p in params]
        opt.zero_grad()
        sum(p[0].sum() for p in params).backward()  # gradient 1 everywhere
        opt.step()
        factor = max(0.0, 1 - step / 10) ** 0.9
        for group, mult, p, b in zip(opt.param_groups, (1, 2, 10, 20), params, before, strict=True):
            expected = 0.01 * mult * factor
            assert group["lr"] == pytest.approx(expected, abs=1e-15)
            assert torch.allclose(b - p[0].detach(), torch.full((3,), expected), atol=1e-7)
    assert opt.global_step == 12


def test_weight_decay_on_weight_groups_and_momentum():
    _, opt = make(weight_decay=5e-4, momentum=5e-4)
    assert [g["weight_decay"] for g in opt.param_groups] == [5e-4, 0.0, 5e-4, 0.0]
    assert all(g["momentum"] == 5e-4 for g in opt.param_groups)
    assert opt.lr_factor(5) == pytest.approx(0.5 ** 0.9)


def test_state_dict_keeps_step_and_errors():
    _, opt = make()
    for _ in range(3):
        opt.step()
    _, fresh = make()
    fresh.load_state_dict(opt.state_dict())
    assert fresh.global_step == 3
    with pytest.raises(ValueError, match="expected 4 parameter groups"):
        PolyOptimizer([[torch.nn.Parameter(torch.zeros(1))]], 0.1, 0.0, 10, 0.9)
    with pytest.raises(ValueError, match="max_step"):
        make(max_step=0)


def test_accepts_network_groups():
    from network import resnet38_SEAM

    net = resnet38_SEAM.Net(width=1 / 16)
    opt = PolyOptimizer(net.get_parameter_groups(), lr=0.01, weight_decay=5e-4, max_step=5, momentum=0.9)
    assert [len(g["params"]) for g in opt.param_groups] == [len(g) for g in net.get_parameter_groups()]


def test_adamw_follows_the_same_schedule_and_groups():
    from tool.optim import PolyAdamW, build_optimizer

    params = [[torch.nn.Parameter(torch.zeros(3))] for _ in range(4)]
    opt = build_optimizer("adamw", params, lr=1e-3, weight_decay=0.01, max_step=4, momentum=0.9)
    assert isinstance(opt, PolyAdamW)
    assert [g["weight_decay"] for g in opt.param_groups] == [0.01, 0.0, 0.01, 0.0]
    for step in range(4):
        opt.zero_grad()
        sum(p[0].sum() for p in params).backward()
        opt.step()
        assert [g["lr"] for g in opt.param_groups] == pytest.approx(
            [1e-3 * m * (1 - step / 4) ** 0.9 for m in (1, 2, 10, 20)])
    with pytest.raises(ValueError, match="--optimizer"):
        build_optimizer("lbfgs", params, 1e-3, 0.0, 4, 0.9)
