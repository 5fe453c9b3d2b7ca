"""Operators this package has no torch step for: their own numpy ``make_step``.

Nengo extensions (nengo_extras' ``SimAML``, a user's 10-line `Operator`
subclass) add operator types with a numpy ``make_step(signals, dt, rng)``.
Running that step keeps the drop-in promise for every extension, at numpy's
speed: each batch row gets its own numpy arrays (written operators keep
per-row state, like the reference's one simulation per row), the current
values are copied in before the step and its writes copied out after it.

Row 0 gets the simulator's random state, as the reference does; further rows
get independent streams (docs/architecture.md, Batching). Nengo's signal
semantics decide what is copied: reads, sets and updates start from the
current value; increments start from zeros and are added, so the other
operators' increments of the same signal stay.
"""

from __future__ import annotations

import warnings
from typing import TYPE_CHECKING

import numpy as np
import torch

from ...utils import to_numpy
from . import Step

if TYPE_CHECKING:
    from nengo.builder.operator import Operator

    from . import StepContext

class RowSignals(dict):
    """One batch row's numpy arrays, keyed by signal, as nengo's SignalDict."""

    def __missing__(self, sig):
        raise KeyError(
            f"{sig} is not among the operator's declared signals (reads, sets, "
            "incs, updates): snntorch_nengo only gives an operator those"
        )


def warn_foreign(op: Operator) -> None:
    """Say that ``op`` runs its numpy step (Python shows it once per type)."""
    warnings.warn(
        f"snntorch_nengo has no torch implementation of operator type "
        f"'{type(op).__name__}'; running its own numpy make_step every step, once "
        "per batch row (numpy speed, no windowed run, and no gradient flows through it)",
        stacklevel=3,
    )


def make_foreign(op: Operator, ctx: StepContext) -> Step:
    """A `Step` running ``op.make_step`` once per batch row on numpy copies."""
    rngs = [ctx.rng] + [
        np.random.RandomState(ctx.batch_rng.randint(np.iinfo(np.int32).max))
        for _ in range(1, ctx.batch_size)
    ]
    signals = list(dict.fromkeys(op.all_signals))
    writes = list(dict.fromkeys(op.sets + op.updates))
    incs = list(dict.fromkeys(op.incs))
    rows = []
    for rng in rngs:
        arrays = RowSignals(
            (sig, np.array(sig.initial_value, dtype=np.float64 if _is_float(sig) else None))
            for sig in signals
        )
        rows.append((arrays, op.make_step(arrays, ctx.dt, rng)))

    def step_foreign(sv):
        current = {sig: to_numpy(sv.read(sig)) for sig in signals if sig not in incs}
        outs = {sig: [] for sig in writes + incs}
        for b, (arrays, step) in enumerate(rows):
            for sig, value in current.items():
                arrays[sig][...] = value[b] if sv.is_batched(sig) else value
            for sig in incs:
                arrays[sig][...] = 0
            step()
            for sig in outs:
                outs[sig].append(np.array(arrays[sig]))
        for sig, values in outs.items():
            value = torch.as_tensor(np.stack(values))
            if not sv.is_batched(sig):
                value = value[0]
            (sv.inc if sig in incs else sv.set)(sig, value)

    # the numpy arrays hold the operator's own view of its state: remade on reset
    return Step(step_foreign, op, private_state=True)


def _is_float(sig) -> bool:
    return np.asarray(sig.initial_value).dtype.kind in "fc"
