"""Torch step functions for Nengo's operators, one declaration per operator type.

Nengo's builder turns every object into operators (`~nengo.builder.Operator`).
Each operator type this engine runs is declared once, next to its maker, as an
`OperatorSpec` on `OpRegistry`: the maker that makes its step, how it runs in a
window (`engine.window`), and which in-place lowering it has
(`engine.program`), or that it has none. Like `nengo.builder.Builder`, lookups
follow the operator's MRO, so a subclass runs as its parent unless it is
declared itself.

A maker takes the operator and a `StepContext` and returns ``step(values)``, a
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

if TYPE_CHECKING:
    import torch
    from nengo.builder.signal import Signal

    from ..signals import SignalLayout


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


# how an operator type runs in a window (`engine.window`)
FOLDED = "folded"  # its step, once, on the rows of all the window's steps
SCANNED = "scanned"  # its `Step`'s series over the window, else its step per step
TIME = "time"  # the window makes the step and time series itself

_WINDOW_FORMS = {
    FOLDED: "folded in a window (its step runs once over all the window's steps)",
    SCANNED: "scanned in a window (its series form, else its step once per step)",
    TIME: "made by the window itself",
    None: "no windowed form (a model with it steps)",
}


@dataclass(frozen=True)
class OperatorSpec:
    """What the engine does with one operator type, declared in one place.

    ``op_type``: the Nengo operator class; its subclasses share the spec
    unless they are declared themselves.
    ``make_step(op, ctx)``: the maker. What it returns steps the operator (a
    `Step`, a bare step function, or None for operators that only order
    others); for a scanned operator its `Step`'s ``series``, where given, runs
    it over a whole window.
    ``window``: how it runs in a window: `FOLDED`, `SCANNED`, `TIME`, a
    function of the operator that says which (for types whose operators
    differ), or None: a model with it cannot run windowed.
    ``lower``: the name of its in-place lowering (a key of
    `engine.program.LOWERINGS`), which may still decline an operator; None
    when the type has none, for the reason ``no_lower`` (by default: no
    instruction form). An operator not lowered runs as a ``CALL`` of its step.
    """

    op_type: type
    make_step: Callable
    window: str | Callable | None = None
    lower: str | None = None
    no_lower: str | None = None

    @property
    def foreign(self) -> bool:
        """Whether the operator runs its own numpy ``make_step`` (`foreign`)."""
        return self.make_step is foreign.make_foreign

    def window_kind(self, op: Operator) -> str | None:
        """How ``op`` runs in a window: FOLDED, SCANNED, TIME, or None (it cannot)."""
        return self.window(op) if callable(self.window) else self.window

    def no_lower_reason(self, op: Operator) -> str:
        """Why ``op`` has no in-place lowering at all (`lower` is None)."""
        return self.no_lower or f"no instruction form for {type(op).__name__}"

    def describe(self, op: Operator | None = None) -> str:
        """What the engine does with ``op`` (or with any operator of the type)."""
        name = type(op).__name__ if op is not None else self.op_type.__name__
        if self.foreign:
            step = "its own numpy make_step, once per batch row (no torch implementation)"
        else:
            step = f"stepped by {self.make_step.__module__}.{self.make_step.__name__}"
        if op is None and callable(self.window):
            window = f"window kind per operator ({self.window.__qualname__})"
        else:
            window = _WINDOW_FORMS[self.window_kind(op)]
        if self.lower is None:
            reason = self.no_lower_reason(op) if op is not None else (
                self.no_lower or "no instruction form")
            lower = f"in place: a CALL of its step ({reason})"
        else:
            lower = (f"in place: lowered to instructions ('{self.lower}'), where the "
                     "lowering applies, else a CALL of its step")
        return f"{name}: {step}; {window}; {lower}"


class OpRegistry:
    """Operator type to its `OperatorSpec`, looked up along the operator's MRO."""

    specs = {}  # declared operator type -> OperatorSpec
    _found = {}  # operator type -> its spec (or None), as looked up so far

    @classmethod
    def declare(cls, op_type: type, window: str | Callable | None = None,
                lower: str | None = None, no_lower: str | None = None) -> Callable:
        """Declare ``op_type`` (see `OperatorSpec`); decorates its maker."""

        def declare_maker(make_step):
            cls.specs[op_type] = OperatorSpec(op_type, make_step, window, lower, no_lower)
            cls._found.clear()
            return make_step

        return declare_maker

    @classmethod
    def spec_for(cls, op_or_type: Operator | type) -> OperatorSpec | None:
        """The spec of an operator or operator type, None if it cannot run here.

        An undeclared type with its own numpy ``make_step`` (an extension's
        operator) gets the `foreign` spec: that step, no window, no lowering.
        """
        op_type = op_or_type if isinstance(op_or_type, type) else type(op_or_type)
        if op_type in cls._found:
            return cls._found[op_type]
        spec = next((cls.specs[c] for c in op_type.__mro__ if c in cls.specs), None)
        own_step = getattr(op_type, "make_step", Operator.make_step)
        if spec is None and own_step is not Operator.make_step:
            spec = OperatorSpec(op_type, foreign.make_foreign)
        cls._found[op_type] = spec
        return spec

    @classmethod
    def maker_for(cls, op: Operator) -> Callable:
        spec = cls.spec_for(op)
        if spec is None:
            raise BuildError(
                f"{op}: snntorch_nengo has no torch implementation of operator type "
                f"'{type(op).__name__}'"
            )
        if spec.foreign:
            foreign.warn_foreign(op)
        return spec.make_step

    @classmethod
    def make_step(cls, op: Operator, ctx: StepContext) -> Step | None:
        """``op``'s `Step` (None for operators that only order others)."""
        made = cls.maker_for(op)(op, ctx)
        if made is None or isinstance(made, Step):
            return made
        return Step(made, op)


def window_kind(op: Operator) -> str | None:
    """How ``op`` runs in a window: FOLDED, SCANNED, TIME, or None (it cannot)."""
    spec = OpRegistry.spec_for(op)
    return None if spec is None else spec.window_kind(op)


def describe_operator(op_or_type: Operator | type) -> str:
    """What the engine does with an operator, or with any operator of a type:
    how it steps, how it runs in a window, whether it lowers to in-place
    instructions (`OperatorSpec.describe`)."""
    spec = OpRegistry.spec_for(op_or_type)
    if spec is None:
        op_type = op_or_type if isinstance(op_or_type, type) else type(op_or_type)
        return f"{op_type.__name__}: no torch implementation and no make_step (a BuildError)"
    return spec.describe(None if isinstance(op_or_type, type) else op_or_type)


# declare the operator types
from . import core, foreign, learning, neurons, processes, tensor_node, transforms  # noqa: E402,F401
