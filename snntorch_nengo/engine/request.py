"""What every run strategy takes and returns (`engine.strategies`)."""

from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from .signals import SignalValues


@dataclass
class RunRequest:
    """One call of `.Engine.run`: advance ``n_steps`` from ``values``.

    ``values`` maps every base signal to its tensor (parameters, constants and
    state); ``op_steps`` are the operators' `.Step` objects in step order
    (`.Engine.make_steps`); ``feeds`` maps input nodes to data
    ``(batch_size, n_steps, d)``; ``on_step`` is called after every step (a
    progress bar); ``training`` turns on training behaviour in the steps that
    have one. ``grad`` is whether autograd records the run (taken when the
    request is made).
    """

    values: dict
    op_steps: list
    n_steps: int
    batch_size: int
    start_step: int = 0
    feeds: dict = field(default_factory=dict)
    on_step: Callable[[], None] | None = None
    training: bool = False
    grad: bool = field(default_factory=torch.is_grad_enabled)

    @property
    def device_types(self) -> set[str]:
        return {value.device.type for value in self.values.values()}


@dataclass(frozen=True)
class Fallback:
    """An operator that ran in a slower form than its strategy's best, and why."""

    op: object
    form: str  # what it ran as, e.g. "stepped in the window", "CALL"
    reason: str

    def __str__(self) -> str:
        return f"{self.op}: {self.form} ({self.reason})"


@dataclass
class RunResult:
    """What a strategy returns: the probe data and the state after the run.

    ``data`` maps each probe to ``(batch, n_samples, *shape)``, sampled as Nengo
    samples (``sample_every``); ``values`` holds the final value of every base.
    ``fallbacks`` lists the operators that ran in a slower form.
    """

    data: dict
    values: SignalValues
    fallbacks: list = field(default_factory=list)
