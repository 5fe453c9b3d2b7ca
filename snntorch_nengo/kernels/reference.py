"""Pure-torch reference of the fused multi-step kernels.

Each function runs ``T`` steps of a Nengo neuron update followed by Nengo's
``Lowpass`` synapse (the OneX step) on the neuron output::

    output[t], state = neuron_step(J[t], state)
    filtered = decay * filtered + (1 - decay) * output[t]      # decay = exp(-dt / tau)
    filtered_seq[t] = filtered

Layout is time-major with one neuron per column: ``J`` is ``[T, N]`` (``N`` =
batch * neurons, flattened) and every state is ``[N]``. The neuron steps are
the per-step functions of `snntorch_nengo.neurons.spiking`, looped, so the
forward pass equals Nengo spike for spike (bitwise in float64), and these
functions *define* the fused kernels' semantics and gradients:

- LIF / AdaptiveLIF spike thresholds get the fast-sigmoid surrogate derivative
  ``1 / (slope * |v - 1| + 1) ** 2`` (`FastSigmoid` with ``surrogate_slope``);
- SpikingRectifiedLinear's ``floor`` is straight-through for the output;
- gradients reach ``J`` and the initial states through autograd.

The C++ (`snntorch_nengo._C`) and Triton kernels implement the same forward
passes; `snntorch_nengo.kernels.ops` differentiates them by recomputing these
functions under autograd. Scalar parameters are Python floats.
"""

from types import SimpleNamespace

import torch

from snntorch_nengo.neurons.spiking import (
    adaptive_lif_step,
    lif,
    spiking_rectified_linear_step,
)
from snntorch_nengo.training.surrogates import FastSigmoid, StraightThrough


def lowpass_step(filtered, output, decay):
    """Nengo's OneX ``Lowpass`` step: ``decay * filtered + (1 - decay) * output``."""
    return decay * filtered + (1.0 - decay) * output


def _stack(values, like):
    if values:
        return torch.stack(values)
    return like.new_empty((0,) + tuple(like.shape[1:]))


def _check(J, *states):
    if J.dim() != 2:
        raise ValueError(f"J must be [T, N], got shape {tuple(J.shape)}")
    for s in states:
        if s.shape != J.shape[1:]:
            raise ValueError(
                f"states must be [N] = {tuple(J.shape[1:])}, got {tuple(s.shape)}"
            )


def lif_lowpass(
    J,
    voltage,
    refractory_time,
    filtered,
    dt,
    tau_rc,
    tau_ref,
    min_voltage,
    amplitude,
    decay,
    surrogate_slope=25.0,
):
    """T steps of nengo ``LIF`` + ``Lowpass``.

    Returns ``(output[T, N], filtered_seq[T, N], voltage[N], refractory_time[N],
    filtered[N])``.
    """
    _check(J, voltage, refractory_time, filtered)
    neuron = SimpleNamespace(
        tau_rc=float(tau_rc),
        tau_ref=float(tau_ref),
        min_voltage=float(min_voltage),
        amplitude=float(amplitude),
    )
    dt, decay = float(dt), float(decay)
    surrogate = FastSigmoid(surrogate_slope)
    outputs, filtereds = [], []
    for t in range(J.shape[0]):
        out, voltage, refractory_time = lif(
            neuron, dt, J[t], voltage, refractory_time, surrogate
        )
        filtered = lowpass_step(filtered, out, decay)
        outputs.append(out)
        filtereds.append(filtered)
    if not outputs:  # T == 0: fresh tensors, never aliases of the inputs
        voltage, refractory_time = voltage.clone(), refractory_time.clone()
        filtered = filtered.clone()
    return (
        _stack(outputs, J),
        _stack(filtereds, J),
        voltage,
        refractory_time,
        filtered,
    )


def spiking_relu_lowpass(J, voltage, filtered, dt, amplitude, decay):
    """T steps of nengo ``SpikingRectifiedLinear`` + ``Lowpass``.

    Returns ``(output[T, N], filtered_seq[T, N], voltage[N], filtered[N])``.
    """
    _check(J, voltage, filtered)
    neuron = SimpleNamespace(amplitude=float(amplitude))
    dt, decay = float(dt), float(decay)
    surrogate = StraightThrough()
    outputs, filtereds = [], []
    for t in range(J.shape[0]):
        out, state = spiking_rectified_linear_step(
            neuron, dt, J[t], {"voltage": voltage}, None, surrogate
        )
        voltage = state["voltage"]
        filtered = lowpass_step(filtered, out, decay)
        outputs.append(out)
        filtereds.append(filtered)
    if not outputs:
        voltage, filtered = voltage.clone(), filtered.clone()
    return _stack(outputs, J), _stack(filtereds, J), voltage, filtered


def adaptive_lif_lowpass(
    J,
    voltage,
    refractory_time,
    adaptation,
    filtered,
    dt,
    tau_rc,
    tau_ref,
    min_voltage,
    amplitude,
    tau_n,
    inc_n,
    decay,
    surrogate_slope=25.0,
):
    """T steps of nengo ``AdaptiveLIF`` + ``Lowpass``.

    Returns ``(output[T, N], filtered_seq[T, N], voltage[N], refractory_time[N],
    adaptation[N], filtered[N])``.
    """
    _check(J, voltage, refractory_time, adaptation, filtered)
    neuron = SimpleNamespace(
        tau_rc=float(tau_rc),
        tau_ref=float(tau_ref),
        min_voltage=float(min_voltage),
        amplitude=float(amplitude),
        tau_n=float(tau_n),
        inc_n=float(inc_n),
    )
    dt, decay = float(dt), float(decay)
    surrogate = FastSigmoid(surrogate_slope)
    outputs, filtereds = [], []
    for t in range(J.shape[0]):
        state = {
            "voltage": voltage,
            "refractory_time": refractory_time,
            "adaptation": adaptation,
        }
        out, state = adaptive_lif_step(neuron, dt, J[t], state, None, surrogate)
        voltage = state["voltage"]
        refractory_time = state["refractory_time"]
        adaptation = state["adaptation"]
        filtered = lowpass_step(filtered, out, decay)
        outputs.append(out)
        filtereds.append(filtered)
    if not outputs:
        voltage, refractory_time = voltage.clone(), refractory_time.clone()
        adaptation, filtered = adaptation.clone(), filtered.clone()
    return (
        _stack(outputs, J),
        _stack(filtereds, J),
        voltage,
        refractory_time,
        adaptation,
        filtered,
    )


def spike_matmul(X, Wt):
    """``X @ Wt``: the product the event-driven kernel computes from X's nonzeros."""
    return X @ Wt


__all__ = [
    "lowpass_step",
    "lif_lowpass",
    "spiking_relu_lowpass",
    "adaptive_lif_lowpass",
    "spike_matmul",
]
