"""A training run killed right after it saved a given epoch's state (for the resume tests)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import pytest

from tool import trainer


class Interrupt(Exception):
    """Stands in for the kill."""


@contextlib.contextmanager
def killed_after_epoch(epoch: int) -> Iterator[None]:
    """The training run inside the block stops, as if killed, right after ``tool.trainer`` writes the state
    of ``epoch``; the block fails if it does not. The trainer's saving is restored on leaving."""
    save_state = trainer.save_training_state

    def save_then_stop(path, **state):
        save_state(path, **state)
        if state["epoch"] == epoch:
            raise Interrupt

    trainer.save_training_state = save_then_stop
    try:
        with pytest.raises(Interrupt):
            yield
    finally:
        trainer.save_training_state = save_state
