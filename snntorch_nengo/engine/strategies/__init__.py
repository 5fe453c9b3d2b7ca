"""Run strategies: four ways to advance a model, and the one function that chooses.

=============  ================================================================
strategy       when `choose` takes it
=============  ================================================================
``windowed``   several steps of a model without loops across time steps (and
               at most `windowed.MAX_OPERATORS` operators); with or without
               autograd; off with the ``windowed=False`` setting
``in_place``   several steps without autograd, on a device in
               `in_place.DEVICES`; off with ``in_place=False`` or
               ``torch_compile=True``
``compiled``   ``torch_compile=True``, without autograd, when neither of the
               above applies (e.g. single steps)
``functional`` everything else: runs autograd records (training, gradients),
               single steps, zero steps
=============  ================================================================

All take a `RunRequest` and return a `RunResult`; results are the same up to
the summation order of the larger matrix products.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from . import compiled, functional, in_place, windowed
from ..request import Fallback, RunRequest, RunResult
from .base import ProbeRecorder

if TYPE_CHECKING:
    from ..engine import Engine

__all__ = [
    "Choice", "Explanation", "Fallback", "ProbeRecorder", "RunRequest", "RunResult", "STRATEGIES",
    "choose",
]

STRATEGIES = {
    s.name: s for s in (windowed.STRATEGY, in_place.STRATEGY, compiled.STRATEGY,
                        functional.STRATEGY)
}


@dataclass
class Choice:
    """The strategy a run takes, why, and why each faster one was passed over."""

    strategy: object
    reason: str
    passed_over: dict = field(default_factory=dict)  # strategy name -> why not

    @property
    def name(self) -> str:
        return self.strategy.name


class Explanation:
    """A run's strategy, why it was taken, and what ran in a slower form.

    ``str()`` gives the text `.Simulator.explain` prints.
    """

    def __init__(self, choice: Choice, n_steps: int, fallbacks: list, ran: bool) -> None:
        self.strategy = choice.name
        self.reason = choice.reason
        self.passed_over = dict(choice.passed_over)
        self.n_steps = n_steps
        self.fallbacks = list(fallbacks)
        self.ran = ran

    def __str__(self) -> str:
        verb = "ran" if self.ran else "would run"
        steps = f"{self.n_steps} step{'s' * (self.n_steps != 1)}"
        lines = [f"{steps} {verb} {self.strategy}: {self.reason}"]
        for name, why in self.passed_over.items():
            lines.append(f"  not {name}: {why}")
        if self.fallbacks:
            lines.append(f"  {len(self.fallbacks)} operators in a slower form:")
            lines += [f"    {fallback}" for fallback in self.fallbacks]
        return "\n".join(lines)

    __repr__ = __str__


def choose(engine: Engine, request: RunRequest) -> Choice:
    """The strategy for ``request`` on ``engine``, in order of preference."""
    n = request.n_steps
    if n <= 1:
        # single steps (every training batch of a one-step network) choose by
        # these alone: made once per engine
        key = (n, request.grad, engine.torch_compile, engine.windowed)
        cache = engine.__dict__.setdefault("_single_step_choices", {})
        choice = cache.get(key)
        if choice is None:
            choice = cache[key] = _choose(engine, request)
        return choice
    return _choose(engine, request)


def _choose(engine, request: RunRequest) -> Choice:
    n = request.n_steps
    passed = {}
    if n > 1 and engine.windowed:
        return Choice(windowed.STRATEGY, f"{n} steps of a model without loops across "
                      "time steps: each operator runs once over the window", passed)
    passed[windowed.NAME] = (
        f"a run of {n} step{'s' * (n != 1)} has no window" if n <= 1
        else engine.window_unavailable
    )
    if n <= 1:
        passed[in_place.NAME] = f"a run of {n} step{'s' * (n != 1)}"
    elif engine.torch_compile:
        passed[in_place.NAME] = "torch_compile=True: the compiled step runs instead"
    elif request.grad:
        passed[in_place.NAME] = "autograd is recording (instructions write in place)"
    elif engine.settings.get("in_place") is False:
        passed[in_place.NAME] = "the in_place setting is False"
    elif not request.device_types <= set(in_place.DEVICES):
        passed[in_place.NAME] = (
            f"tensors on {sorted(request.device_types - set(in_place.DEVICES))}, "
            f"not on {list(in_place.DEVICES)}"
        )
    else:
        return Choice(in_place.STRATEGY, f"{n} steps without autograd on "
                      f"{sorted(request.device_types)}", passed)
    if not engine.torch_compile:
        passed[compiled.NAME] = "torch_compile is off"
    elif request.grad:
        passed[compiled.NAME] = "autograd is recording (the compiled step is eager-only)"
    elif n == 0:
        passed[compiled.NAME] = "a run of 0 steps"
    else:
        return Choice(compiled.STRATEGY, "torch_compile=True, without autograd", passed)
    if request.grad:
        reason = "autograd is recording"
    elif n <= 1:
        reason = f"a run of {n} step{'s' * (n != 1)}"
    else:
        reason = "the faster strategies are off or do not apply"
    return Choice(functional.STRATEGY, reason, passed)
