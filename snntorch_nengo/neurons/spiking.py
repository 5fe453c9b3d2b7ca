"""Spiking neuron types: same operations, in the same order, as ``nengo.neurons``.

Spike masks are not differentiable (their gradient is zero); every branch that
is masked out is evaluated on safe values so gradients never become NaN.

The threshold-crossing types take an optional ``surrogate``
(`snntorch_nengo.neurons.surrogates.Surrogate`): the forward pass is unchanged
(exact Nengo spikes), but the spike output gets the surrogate's derivative with
respect to the voltage, so gradients flow through the spikes. Resets (voltage
set to zero, spike counts subtracted) stay non-differentiable, as in snnTorch's
default detached reset.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import nengo
import numpy as np
import torch

if TYPE_CHECKING:
    from .streams import NeuronRng, NeuronState, NeuronStepResult
    from .surrogates import Surrogate



def spike_counts(
    voltage: torch.Tensor, n_spikes: torch.Tensor, surrogate: Surrogate | None = None
) -> torch.Tensor:
    """``n_spikes`` (a floor/trunc of ``voltage``), with a surrogate gradient."""
    return n_spikes if surrogate is None else surrogate.staircase(voltage, n_spikes)


def spiking_rectified_linear_step(
    neuron_type: nengo.neurons.NeuronType,
    dt: float,
    J: torch.Tensor,
    state: NeuronState,
    rng: NeuronRng,
    surrogate: Surrogate | None = None,
) -> NeuronStepResult:
    voltage = state["voltage"] + torch.clamp(J, min=0.0) * dt
    n_spikes = torch.floor(voltage)
    output = (neuron_type.amplitude / dt) * spike_counts(voltage, n_spikes, surrogate)
    return output, {"voltage": voltage - n_spikes}


def lif(
    neuron_type: nengo.neurons.NeuronType,
    dt: float,
    J: torch.Tensor,
    voltage: torch.Tensor,
    refractory_time: torch.Tensor,
    surrogate: Surrogate | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One step of nengo's ``LIF.step``; returns (output, voltage, refractory)."""
    tau_rc = neuron_type.tau_rc
    refractory_time = refractory_time - dt
    delta_t = torch.clamp(dt - refractory_time, 0, dt)
    voltage = voltage - (J - voltage) * torch.expm1(-delta_t / tau_rc)

    spiked = voltage > 1
    spikes = spiked.to(J.dtype)
    if surrogate is not None:
        spikes = surrogate.apply(voltage - 1, spikes)
    output = spikes * (neuron_type.amplitude / dt)

    # spike time, evaluated on harmless values where no spike happened
    v_safe = torch.where(spiked, voltage, torch.ones_like(voltage))
    J_safe = torch.where(spiked, J, torch.full_like(J, 2.0))
    t_spike = dt + tau_rc * torch.log1p(-(v_safe - 1) / (J_safe - 1))

    voltage = torch.where(
        voltage < neuron_type.min_voltage,
        torch.full_like(voltage, neuron_type.min_voltage),
        voltage,
    )
    voltage = torch.where(spiked, torch.zeros_like(voltage), voltage)
    refractory_time = torch.where(
        spiked, neuron_type.tau_ref + t_spike, refractory_time
    )
    return output, voltage, refractory_time


def lif_step(
    neuron_type: nengo.neurons.NeuronType,
    dt: float,
    J: torch.Tensor,
    state: NeuronState,
    rng: NeuronRng,
    surrogate: Surrogate | None = None,
) -> NeuronStepResult:
    output, voltage, refractory_time = lif(
        neuron_type, dt, J, state["voltage"], state["refractory_time"], surrogate
    )
    return output, {"voltage": voltage, "refractory_time": refractory_time}


def adaptive_lif_step(
    neuron_type: nengo.neurons.NeuronType,
    dt: float,
    J: torch.Tensor,
    state: NeuronState,
    rng: NeuronRng,
    surrogate: Surrogate | None = None,
) -> NeuronStepResult:
    n = state["adaptation"]
    output, voltage, refractory_time = lif(
        neuron_type, dt, J - n, state["voltage"], state["refractory_time"], surrogate
    )
    n = n + (dt / neuron_type.tau_n) * (neuron_type.inc_n * output - n)
    return output, {
        "voltage": voltage,
        "refractory_time": refractory_time,
        "adaptation": n,
    }


def izhikevich_step(
    neuron_type: nengo.neurons.NeuronType,
    dt: float,
    J: torch.Tensor,
    state: NeuronState,
    rng: NeuronRng,
    surrogate: Surrogate | None = None,
) -> NeuronStepResult:
    voltage, recovery = state["voltage"], state["recovery"]
    J = torch.clamp(J, min=-30.0)

    dV = (0.04 * voltage**2 + 5 * voltage + 140 - recovery + J) * 1000
    voltage = voltage + dV * dt

    spiked = voltage >= 30
    spikes = spiked.to(J.dtype)
    if surrogate is not None:
        # distance to threshold in units of the spike's voltage swing (30 mV
        # peak to the reset voltage), so the surrogate's width is comparable to
        # LIF's (threshold 1, reset 0)
        scale = 30.0 - neuron_type.reset_voltage
        spikes = surrogate.apply((voltage - 30) / scale, spikes)
    output = spikes * (1.0 / dt)
    voltage = torch.where(
        spiked, torch.full_like(voltage, neuron_type.reset_voltage), voltage
    )

    dU = (neuron_type.tau_recovery * (neuron_type.coupling * voltage - recovery)) * 1000
    recovery = recovery + dU * dt
    recovery = torch.where(spiked, recovery + neuron_type.reset_recovery, recovery)
    return output, {"voltage": voltage, "recovery": recovery}


# --- RatesToSpikes types: the input ``J`` is the base type's output rate ---


def regular_spiking_step(
    neuron_type: nengo.neurons.NeuronType,
    dt: float,
    J: torch.Tensor,
    state: NeuronState,
    rng: NeuronRng,
) -> NeuronStepResult:
    voltage = state["voltage"] + dt * J
    n_spikes = torch.floor(voltage)
    output = (neuron_type.amplitude / dt) * n_spikes
    return output, {"voltage": voltage - n_spikes}


def _from_numpy(array, like):
    return torch.as_tensor(array, device=like.device)


def stochastic_spiking_step(
    neuron_type: nengo.neurons.NeuronType,
    dt: float,
    J: torch.Tensor,
    state: NeuronState,
    rng: NeuronRng,
) -> NeuronStepResult:
    negative = neuron_type.negative
    x = dt * (torch.abs(J) if negative else J)
    n_spikes = torch.trunc(x)
    frac = x - n_spikes  # == np.modf(x)[0]

    # draw in numpy, so that the stream matches nengo's (B=1: size=(n,))
    draws = _from_numpy(rng.random_sample(size=tuple(J.shape)), J)
    n_spikes = n_spikes + (draws < frac).to(J.dtype)

    output = (neuron_type.amplitude / dt) * n_spikes
    if negative:
        output = output * torch.sign(J)
    return output, {}


def poisson_spiking_step(
    neuron_type: nengo.neurons.NeuronType,
    dt: float,
    J: torch.Tensor,
    state: NeuronState,
    rng: NeuronRng,
) -> NeuronStepResult:
    negative = neuron_type.negative
    lam = (torch.abs(J) if negative else J) * dt
    lam = lam.detach().cpu().numpy()
    counts = rng.poisson(lam.reshape(-1), lam.size).reshape(lam.shape)

    # multiply in float64 like numpy does (int counts * python float)
    output = (neuron_type.amplitude / dt) * _from_numpy(counts.astype(np.float64), J)
    if negative:
        output = output * torch.sign(J).to(output.dtype)
    return output.to(J.dtype), {}
