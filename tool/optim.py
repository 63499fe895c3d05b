"""Poly learning-rate SGD over the four parameter groups of the ResNet-38 networks (algorithm.md §1.2, §2.2)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

# (lr multiplier, weight decay applies) for (pretrained weights, pretrained biases, new weights, new biases).
GROUP_SETTINGS = ((1.0, True), (2.0, False), (10.0, True), (20.0, False))


class PolyOptimizer(torch.optim.SGD):
    """SGD whose group ``i`` uses ``lr · mult_i · (1 − step/max_step)^power`` at step ``step`` (0-based).

    ``param_groups`` are the four lists of ``Net.get_parameter_groups()``; multipliers ×1, ×2, ×10, ×20;
    weight decay on the two weight groups only. After ``max_step`` steps the learning rate is 0.
    ``momentum`` has no default: the stage scripts choose it (the published SEAM/A2GNN optimizer passed
    the weight decay into SGD's momentum slot, so its effective momentum was 5e-4).
    """

    def __init__(self, param_groups: Sequence[Sequence[torch.nn.Parameter]], lr: float, weight_decay: float,
                 max_step: int, momentum: float, power: float = 0.9):
        if len(param_groups) != len(GROUP_SETTINGS):
            raise ValueError(f"expected {len(GROUP_SETTINGS)} parameter groups (pretrained w/b, new w/b), "
                             f"got {len(param_groups)}")
        if max_step <= 0:
            raise ValueError(f"max_step must be positive, got {max_step}")
        groups = [{"params": list(params), "lr": lr * mult, "weight_decay": weight_decay if decay else 0.0}
                  for params, (mult, decay) in zip(param_groups, GROUP_SETTINGS, strict=True)]
        super().__init__(groups, lr=lr, momentum=momentum)
        self.base_lrs = [group["lr"] for group in self.param_groups]
        self.max_step, self.power, self.global_step = max_step, power, 0

    def lr_factor(self, step: int) -> float:
        """``(1 − step/max_step)^power``, 0 from ``max_step`` on."""
        return max(0.0, 1.0 - step / self.max_step) ** self.power

    def step(self, closure: Any = None) -> Any:
        """Set each group's lr for the current step, take one SGD step, advance the step counter."""
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
