"""Rate (non-spiking) neuron types: same math as their ``nengo.neurons`` step."""

from __future__ import annotations

from typing import TYPE_CHECKING

import nengo
import torch

if TYPE_CHECKING:
    from .streams import NeuronRng, NeuronState, NeuronStepResult


def rectified_linear_step(
    neuron_type: nengo.neurons.NeuronType,
    dt: float,
    J: torch.Tensor,
    state: NeuronState,
    rng: NeuronRng,
) -> NeuronStepResult:
    # relu, not clamp: the same values, and a backward of one fused op where
    # clamp's takes a comparison and a select; its derivative at J == 0 is 0,
    # as in torch.nn.ReLU (and TensorFlow's relu in NengoDL)
    rates = torch.relu(J)
    if neuron_type.amplitude == 1:
        return rates, {}  # the same numbers as 1 * rates, one operation less
    return neuron_type.amplitude * rates, {}


def sigmoid_step(
    neuron_type: nengo.neurons.NeuronType,
    dt: float,
    J: torch.Tensor,
    state: NeuronState,
    rng: NeuronRng,
) -> NeuronStepResult:
    return (1.0 / neuron_type.tau_ref) / (1 + torch.exp(-J)), {}


def tanh_step(
    neuron_type: nengo.neurons.NeuronType,
    dt: float,
    J: torch.Tensor,
    state: NeuronState,
    rng: NeuronRng,
) -> NeuronStepResult:
    return (1.0 / neuron_type.tau_ref) * torch.tanh(J), {}


def lif_rate(neuron_type: nengo.neurons.NeuronType, J: torch.Tensor) -> torch.Tensor:
    """LIF rate curve; zero (with zero gradient) for ``J <= 1``."""
    j = J - 1
    active = j > 0
    # evaluate log1p(1 / j) on a safe value where inactive, so that the masked
    # branch produces neither NaN/inf values nor NaN gradients
    j_safe = torch.where(active, j, torch.ones_like(j))
    rate = neuron_type.amplitude / (
        neuron_type.tau_ref + neuron_type.tau_rc * torch.log1p(1.0 / j_safe)
    )
    return torch.where(active, rate, torch.zeros_like(rate))


def lif_rate_step(
    neuron_type: nengo.neurons.NeuronType,
    dt: float,
    J: torch.Tensor,
    state: NeuronState,
    rng: NeuronRng,
) -> NeuronStepResult:
    return lif_rate(neuron_type, J), {}


def adaptive_lif_rate_step(
    neuron_type: nengo.neurons.NeuronType,
    dt: float,
    J: torch.Tensor,
    state: NeuronState,
    rng: NeuronRng,
) -> NeuronStepResult:
    n = state["adaptation"]
    output = lif_rate(neuron_type, J - n)
    n = n + (dt / neuron_type.tau_n) * (neuron_type.inc_n * output - n)
    return output, {"adaptation": n}
