"""Poly learning-rate optimizers over the four parameter groups of the stage networks (algorithm.md §1.2, §2.2).

The groups are (pretrained weights, pretrained biases, new weights, new biases), as returned by every
network's ``get_parameter_groups()``; their learning rates are ×1, ×2, ×10, ×20 the base rate and weight
decay applies to the two weight groups only. ``sgd`` is the published optimizer; ``adamw`` (**OURS**) is
for networks trained from scratch on a CPU, which learn far faster with it (lr about 1e-3..2e-3).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

# (lr multiplier, weight decay applies) for (pretrained weights, pretrained biases, new weights, new biases).
GROUP_SETTINGS = ((1.0, True), (2.0, False), (10.0, True), (20.0, False))
OPTIMIZERS = ("sgd", "adamw")


def _groups(param_groups: Sequence[Sequence[torch.nn.Parameter]], lr: float, weight_decay: float) -> list[dict]:
    if len(param_groups) != len(GROUP_SETTINGS):
        raise ValueError(f"expected {len(GROUP_SETTINGS)} parameter groups (pretrained w/b, new w/b), "
                         f"got {len(param_groups)}")
    return [{"params": list(params), "lr": lr * mult, "weight_decay": weight_decay if decay else 0.0}
            for params, (mult, decay) in zip(param_groups, GROUP_SETTINGS, strict=True)]


class PolySchedule:
    """Mixin: group ``i`` uses ``base_lr_i · (1 − step/max_step)^power`` at step ``step`` (0-based).

    After ``max_step`` steps the learning rate is 0. The step counter is part of the state dict.
    """

    def _start_schedule(self, max_step: int, power: float) -> None:
        if max_step <= 0:
            raise ValueError(f"max_step must be positive, got {max_step}")
        self.base_lrs = [group["lr"] for group in self.param_groups]
        self.max_step, self.power, self.global_step = max_step, power, 0

    def lr_factor(self, step: int) -> float:
        """``(1 − step/max_step)^power``, 0 from ``max_step`` on."""
        return max(0.0, 1.0 - step / self.max_step) ** self.power

    def step(self, closure: Any = None) -> Any:
        """Set each group's lr for the current step, take one optimizer step, advance the step counter."""
        factor = self.lr_factor(self.global_step)
        for group, base_lr in zip(self.param_groups, self.base_lrs, strict=True):
            group["lr"] = base_lr * factor
        loss = super().step(closure)
        self.global_step += 1
        return loss

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "global_step": self.global_step}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        state_dict = dict(state_dict)
        self.global_step = int(state_dict.pop("global_step", 0))
        super().load_state_dict(state_dict)


class PolyOptimizer(PolySchedule, torch.optim.SGD):
    """SGD with the poly schedule over the four groups (multipliers ×1, ×2, ×10, ×20).

    ``momentum`` has no default: the stage scripts choose it (the published SEAM/A2GNN optimizer passed
    the weight decay into SGD's momentum slot, so its effective momentum was 5e-4).
    """

    def __init__(self, param_groups: Sequence[Sequence[torch.nn.Parameter]], lr: float, weight_decay: float,
                 max_step: int, momentum: float, power: float = 0.9):
        super().__init__(_groups(param_groups, lr, weight_decay), lr=lr, momentum=momentum)
        self._start_schedule(max_step, power)


class PolyAdamW(PolySchedule, torch.optim.AdamW):
    """AdamW (decoupled weight decay, betas 0.9/0.999) with the poly schedule over the four groups."""

    def __init__(self, param_groups: Sequence[Sequence[torch.nn.Parameter]], lr: float, weight_decay: float,
                 max_step: int, power: float = 0.9):
        super().__init__(_groups(param_groups, lr, weight_decay), lr=lr)
        self._start_schedule(max_step, power)


def build_optimizer(name: str, param_groups: Sequence[Sequence[torch.nn.Parameter]], lr: float,
                    weight_decay: float, max_step: int, momentum: float) -> PolyOptimizer | PolyAdamW:
    """``'sgd'`` → :class:`PolyOptimizer` (with ``momentum``), ``'adamw'`` → :class:`PolyAdamW` (no momentum)."""
    if name == "sgd":
        return PolyOptimizer(param_groups, lr, weight_decay, max_step, momentum)
    if name == "adamw":
        return PolyAdamW(param_groups, lr, weight_decay, max_step)
    raise ValueError(f"--optimizer must be one of {OPTIMIZERS}, got {name!r}")
