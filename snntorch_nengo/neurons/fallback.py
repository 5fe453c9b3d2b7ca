"""Fallback for neuron types without a native torch step.

Runs the type's own numpy ``step`` on detached copies, one batch item at a
time. It is slow, and no gradient flows through it.
"""

from __future__ import annotations

import warnings
from typing import TYPE_CHECKING

import nengo
import numpy as np
import torch

from .streams import row_rng

if TYPE_CHECKING:
    from .streams import NeuronRng, NeuronState, NeuronStepResult

_warned = set()


def _warn_once(neuron_type):
    cls = type(neuron_type)
    if cls not in _warned:
        _warned.add(cls)
        warnings.warn(
            f"Neuron type '{cls.__qualname__}' has no native torch implementation; "
            "it runs through its own numpy `step`, one batch item at a time, "
            "without gradients."
        )


def fallback_step(
    neuron_type: nengo.neurons.NeuronType,
    dt: float,
    J: torch.Tensor,
    state: NeuronState,
    rng: NeuronRng,
) -> NeuronStepResult:
    """Run ``neuron_type.step(dt, J, output, **state)`` for each batch item."""
    _warn_once(neuron_type)
    J_np = J.detach().cpu().numpy()
    state_np = {k: v.detach().cpu().numpy() for k, v in state.items()}

    outputs = np.zeros_like(J_np)
    new_state = {k: np.array(v, copy=True) for k, v in state_np.items()}
    for b in range(J_np.shape[0]):
        item_state = {k: np.array(v[b], copy=True) for k, v in state_np.items()}
        if rng is not None:
            item_state["rng"] = row_rng(rng, b)
        output = np.zeros_like(J_np[b])
        neuron_type.step(dt, np.array(J_np[b], copy=True), output, **item_state)
        outputs[b] = output
        for k in new_state:
            new_state[k][b] = item_state[k]

    def to_torch(a, like):
        return torch.as_tensor(a, dtype=like.dtype, device=like.device)

    return to_torch(outputs, J), {k: to_torch(v, state[k]) for k, v in new_state.items()}
