"""Torch step functions for Nengo's operators, one maker per operator type.

Nengo's builder turns every object into operators (`~nengo.builder.Operator`).
Like `nengo.builder.Builder`, `OpRegistry` maps operator types to *makers*: a
maker takes the operator and a `StepContext` and returns ``step(values)``, a
function that advances the operator by one time step on a `.SignalValues`, or a
`Step` that says more about it. Makers run again on every reset, as Nengo's
``make_step`` does, so operators with private state (numpy processes, node
functions) start afresh.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
from nengo.builder.operator import Operator
from nengo.exceptions import BuildError

from ...utils import TypeRegistry

if TYPE_CHECKING:
    import torch
    from nengo.builder.signal import Signal

    from ..signals import SignalLayout, SignalValues


@dataclass(frozen=True)
class Step:
    """One operator's step function, with what the run strategies may use.

    ``fn(sv)`` advances ``op`` by one time step on a `.SignalValues`.
    ``series(fold, start, B, T, training, private)``, where given, runs the
    operator over a whole window (`engine.window`) and returns its outputs
    ``{base: (T, B, ...)}``, or a string saying why it cannot here (then it is
    stepped inside the window).
    ``private_state``: the step keeps state outside the signals (numpy
    processes), so it must be made afresh on every reset.
    ``series_held``: ``series`` also takes ``held``, ``{base: (B, ...)}`` of
    the inputs that are the same at every step of the window, which are then
    not folded (no copy per step; it reads them from ``held``).
    """

    fn: Callable
    op: object
    series: Callable | None = None
    private_state: bool = False
    series_held: bool = False

    def __call__(self, sv) -> None:
        self.fn(sv)


class StepContext:
    """What makers may need: time step, random state, batch size, tensor options."""

    def __init__(
        self,
        dt: float,
        rng: np.random.RandomState,
        batch_size: int,
        layout: SignalLayout,
        device: torch.device | str | None,
        dtype: torch.dtype,
        seed: int | None,
        settings: dict | None = None,
        spike_bases: frozenset | set = frozenset(),
    ) -> None:
        self.dt = dt
        self.rng = rng
        self.batch_size = batch_size
        self.layout = layout
        self.device = device
        self.dtype = dtype
        self.seed = seed
        self.settings = settings or {}  # from `configure_settings`
        self.spike_bases = spike_bases  # bases that spiking neurons write
        # streams for batch items beyond the first, kept apart from `rng` so that
        # item 0 sees exactly the reference simulator's random numbers; seeded
        # from (seed, 1), as RandomState(seed) would replay `rng`'s draws and give
        # item 1 item 0's stream
        self.batch_rng = np.random.RandomState(
            None
            if seed is None
            else np.random.SeedSequence([seed % 2**32, 1]).generate_state(1)[0]
        )

    def batched(self, sig: Signal) -> bool:
        return self.layout.batched(sig.base)


class OpRegistry:
    """Operator type to step maker, looked up along the operator's MRO."""

    makers = TypeRegistry()
    register = makers.register

    @classmethod
    def maker_for(
        cls, op: Operator
    ) -> Callable[[Operator, StepContext], Step | Callable[[SignalValues], None] | None]:
        maker = cls.makers.lookup(op)
        if maker is not None:
            return maker
        if type(op).make_step is not Operator.make_step:
            # an extension's operator: its own numpy step (`foreign`)
            foreign.warn_foreign(op)
            return foreign.make_foreign
        raise BuildError(
            f"{op}: snntorch_nengo has no torch implementation of operator type "
            f"'{type(op).__name__}'"
        )

    @classmethod
    def make_step(
        cls, op: Operator, ctx: StepContext
    ) -> Step | Callable[[SignalValues], None] | None:
        return cls.maker_for(op)(op, ctx)


# register the makers
from . import core, foreign, learning, neurons, processes, tensor_node, transforms  # noqa: E402,F401
