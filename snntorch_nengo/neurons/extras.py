"""NengoDL's extra neuron types: SoftLIFRate, LeakyReLU, SpikingLeakyReLU.

Each is an ordinary `nengo.neurons.NeuronType` with a numpy ``step`` (so
``nengo.Simulator`` runs networks that use them, through Nengo's generic neuron
builder) and a torch step here that computes the same thing (registered by its
spec, `snntorch_nengo.neurons.specs`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import nengo
import numpy as np
import torch
from nengo.params import NumberParam

from snntorch_nengo.neurons.spiking import spike_counts

if TYPE_CHECKING:
    from .streams import NeuronRng, NeuronState, NeuronStepResult
    from .surrogates import Surrogate


class SoftLIFRate(nengo.LIFRate):
    """LIF rate neuron whose tuning curve is smoothed around the threshold.

    The LIF rate curve has an infinite slope where it starts firing (``J = 1``)
    and a zero slope below it, which makes it hard to train. SoftLIFRate
    (Hunsberger & Eliasmith, 2015) replaces the rectification ``max(J - 1, 0)``
    in the LIF rate equation with a softplus of width ``sigma``::

        j    = sigma * log(1 + exp((J - 1) / sigma))
        rate = amplitude / (tau_ref + tau_rc * log(1 + 1 / j))

    (``rate = 0`` where ``j`` underflows to zero). As ``sigma -> 0`` this tends
    to `nengo.LIFRate`. It is the rate type LIF neurons train through when the
    ``lif_smoothing`` setting is given.

    Gains and biases are LIF's (``gain_bias``, ``max_rates_intercepts``
    inherited), so a SoftLIFRate ensemble has the tuning of the LIF ensemble it
    smooths; ``rates`` is the smoothed curve, so decoders are solved for it.

    Parameters
    ----------
    sigma : float
        Amount of smoothing around the firing threshold (in units of current).
    tau_rc, tau_ref, amplitude, initial_state
        As for `nengo.LIFRate`.
    """

    sigma = NumberParam("sigma", low=0, low_open=True)

    def __init__(
        self,
        sigma: float = 1.0,
        tau_rc: float = 0.02,
        tau_ref: float = 0.002,
        amplitude: float = 1,
        initial_state: dict | None = None,
    ) -> None:
        super().__init__(
            tau_rc=tau_rc, tau_ref=tau_ref, amplitude=amplitude, initial_state=initial_state
        )
        self.sigma = sigma

    def rates(self, x: np.ndarray, gain: np.ndarray, bias: np.ndarray) -> np.ndarray:
        J = self.current(x, gain, bias)
        out = np.zeros_like(J)
        SoftLIFRate.step(self, dt=1, J=J, output=out)
        return out

    def step(self, dt: float, J: np.ndarray, output: np.ndarray) -> None:
        """Implement the smoothed LIF rate nonlinearity."""
        j = self.sigma * np.logaddexp((J - 1) / self.sigma, 0)
        output[...] = 0
        active = j > 0
        with np.errstate(over="ignore", divide="ignore"):
            output[active] = self.amplitude / (
                self.tau_ref + self.tau_rc * np.log1p(1.0 / j[active])
            )


class LeakyReLU(nengo.RectifiedLinear):
    """Rectified linear neuron with a leaky (sloped) negative part.

    ``output = amplitude * J`` for ``J > 0``, else
    ``amplitude * negative_slope * J``.

    Parameters
    ----------
    negative_slope : float
        Slope of the response for negative input currents.
    amplitude : float
        Scaling factor on the neuron output.
    initial_state : {str: Distribution or array_like}
        As for every `nengo.neurons.NeuronType`.
    """

    negative = True

    negative_slope = NumberParam("negative_slope", low=0)

    def __init__(
        self,
        negative_slope: float = 0.3,
        amplitude: float = 1,
        initial_state: dict | None = None,
    ) -> None:
        super().__init__(amplitude=amplitude, initial_state=initial_state)
        self.negative_slope = negative_slope

    def step(self, dt: float, J: np.ndarray, output: np.ndarray) -> None:
        """Implement the leaky rectification."""
        output[...] = self.amplitude * np.where(J > 0, J, self.negative_slope * J)


class SpikingLeakyReLU(LeakyReLU):
    """Spiking version of `LeakyReLU`: integrate-and-fire with signed spikes.

    The voltage integrates the leaky-rectified current; each time it passes an
    integer away from zero (``+1`` or ``-1``) the neuron emits a spike of
    amplitude ``amplitude / dt`` with that sign and the voltage moves back by
    one. Its average output is the `LeakyReLU` rate; with ``negative_slope=0``
    it is `nengo.SpikingRectifiedLinear`.

    Parameters
    ----------
    negative_slope, amplitude, initial_state
        As for `LeakyReLU`.
    """

    state = {"voltage": nengo.dists.Uniform(low=0, high=1)}
    spiking = True

    def rates(self, x: np.ndarray, gain: np.ndarray, bias: np.ndarray) -> np.ndarray:
        """Use LeakyReLU to determine rates."""
        J = self.current(x, gain, bias)
        out = np.zeros_like(J)
        LeakyReLU.step(self, dt=1.0, J=J, output=out)
        return out

    def step(
        self, dt: float, J: np.ndarray, output: np.ndarray, voltage: np.ndarray
    ) -> None:
        """Implement the signed integrate-and-fire nonlinearity."""
        voltage += np.where(J > 0, J, self.negative_slope * J) * dt
        n_spikes = np.trunc(voltage)
        output[...] = (self.amplitude / dt) * n_spikes
        voltage -= n_spikes


# --- torch steps ---


def soft_lif_rate(neuron_type: SoftLIFRate, J: torch.Tensor) -> torch.Tensor:
    """SoftLIFRate's curve, with finite gradients everywhere."""
    sigma = neuron_type.sigma
    j = sigma * torch.logaddexp((J - 1) / sigma, torch.zeros_like(J))

    def rate(j):
        return neuron_type.amplitude / (
            neuron_type.tau_ref + neuron_type.tau_rc * torch.log1p(1.0 / j)
        )

    # far below threshold (j tiny) d(rate)/dj overflows: there the rate (a few
    # Hz at most, zero where j underflows) is computed without gradient
    tiny = torch.finfo(J.dtype).tiny ** 0.5
    small = j < tiny
    with torch.no_grad():
        far = rate(j.detach())
    near = rate(torch.where(small, torch.ones_like(j), j))
    return torch.where(small, far, near)


def soft_lif_rate_step(
    neuron_type: nengo.neurons.NeuronType,
    dt: float,
    J: torch.Tensor,
    state: NeuronState,
    rng: NeuronRng,
) -> NeuronStepResult:
    return soft_lif_rate(neuron_type, J), {}


def leaky_relu(
    neuron_type: LeakyReLU | SpikingLeakyReLU, J: torch.Tensor
) -> torch.Tensor:
    return neuron_type.amplitude * torch.where(J > 0, J, neuron_type.negative_slope * J)


def leaky_relu_step(
    neuron_type: nengo.neurons.NeuronType,
    dt: float,
    J: torch.Tensor,
    state: NeuronState,
    rng: NeuronRng,
) -> NeuronStepResult:
    return leaky_relu(neuron_type, J), {}


def spiking_leaky_relu_step(
    neuron_type: nengo.neurons.NeuronType,
    dt: float,
    J: torch.Tensor,
    state: NeuronState,
    rng: NeuronRng,
    surrogate: Surrogate | None = None,
) -> NeuronStepResult:
    voltage = state["voltage"] + torch.where(J > 0, J, neuron_type.negative_slope * J) * dt
    n_spikes = torch.trunc(voltage)
    output = (neuron_type.amplitude / dt) * spike_counts(voltage, n_spikes, surrogate)
    return output, {"voltage": voltage - n_spikes}
