"""What spiking neuron types do in training mode.

In eval mode every neuron type runs its exact Nengo step. In training mode
(``NengoModule.train()``, or the ``learning_phase`` setting) each SimNeurons
operator runs ``training_step(neuron_type, settings)`` instead:

**Rate swap** (the default, NengoDL's behaviour). Spiking types run their rate
counterpart in the forward pass, so the loss sees rates and the gradients are
the rate type's:

==============================  ==============================================
spiking type                    trains as
==============================  ==============================================
`nengo.LIF`                     `nengo.LIFRate`, or `.SoftLIFRate` with
                                ``sigma = lif_smoothing`` when that setting is
                                given
`nengo.AdaptiveLIF`             `nengo.AdaptiveLIFRate` (adaptation follows
                                the rate)
`nengo.SpikingRectifiedLinear`  `nengo.RectifiedLinear`
`.SpikingLeakyReLU`             `.LeakyReLU`
`nengo.RegularSpiking`,         ``amplitude * J`` (their input ``J`` is the
`nengo.StochasticSpiking`,      base type's rate, and their spikes average to
`nengo.PoissonSpiking`          ``amplitude`` times it)
`nengo.Izhikevich`              no rate counterpart: keeps spiking (one warning)
==============================  ==============================================

Each type's entry comes from its spec (`snntorch_nengo.neurons.specs`:
``rate``, ``rates_to_spikes``, ``surrogate``). The rate type has the spiking
type's parameters (``tau_rc``, ``tau_ref``,
``amplitude``, ...). State the rate type lacks (LIF voltage, refractory time) is
passed through unchanged.

**Surrogate gradients** (the ``surrogate`` setting, beyond NengoDL). The
forward pass stays the exact spiking one; the derivative of the spike threshold
(LIF/AdaptiveLIF ``voltage > 1``, the spike-count floor of
SpikingRectifiedLinear and trunc of SpikingLeakyReLU, Izhikevich's
``voltage >= 30``) becomes the surrogate's (see
`snntorch_nengo.neurons.surrogates`). RegularSpiking, StochasticSpiking and
PoissonSpiking output their exact spikes with the gradient of
``amplitude * J`` (a straight-through estimate of their rate). The surrogate
takes precedence over ``lif_smoothing``.

Rate types, and custom types running through their numpy step, do the same in
both modes.
"""

import functools
import warnings
from dataclasses import dataclass
from typing import Any, Callable, Optional

import nengo

from snntorch_nengo.neurons import _native_step, neuron_step
from snntorch_nengo.neurons.specs import spec_for_step
from snntorch_nengo.neurons.surrogates import Surrogate, get_surrogate

_warned = set()


def rate_type(
    neuron_type: nengo.neurons.NeuronType, lif_smoothing: Optional[float] = None
) -> Optional[nengo.neurons.NeuronType]:
    """The rate neuron type that ``neuron_type`` trains as, or None.

    None for types without one: rate types, RatesToSpikes types (they train as
    ``amplitude * J``), Izhikevich and custom types.
    """
    # by the native step that runs the type, so that subclasses which keep
    # their parent's math train like their parent
    spec = spec_for_step(_native_step(neuron_type))
    if spec is None or spec.rate is None:
        return None
    return spec.rate(neuron_type, lif_smoothing)


@dataclass(frozen=True)
class TrainingForm:
    """What a neuron type runs in training mode, and what that step is.

    ``step`` has `neuron_step`'s signature. ``rate_type``: the rate type it
    runs instead of the spiking one (a rate swap), else None. ``surrogate``:
    the `Surrogate` it puts on the spike threshold, else None. The engine's
    fused kernels read the last two: they compute the same forward pass and
    derivative, or run a stateless rate type once over a window.
    """

    step: Callable
    rate_type: Optional[nengo.neurons.NeuronType] = None
    surrogate: Optional[Surrogate] = None


def training_form(
    neuron_type: nengo.neurons.NeuronType, settings: Optional[dict[str, Any]] = None
) -> TrainingForm:
    """How ``neuron_type`` trains: its training step, and whether it is a rate
    swap or a surrogate gradient.

    ``settings`` holds the network's ``configure_settings`` values
    (``lif_smoothing``, ``surrogate``).
    """
    settings = settings or {}
    step = neuron_step(neuron_type)
    native = _native_step(neuron_type)
    if native is None or not neuron_type.spiking:
        return TrainingForm(step)

    spec = spec_for_step(native)
    rates_to_spikes = spec is not None and spec.rates_to_spikes
    surrogate = get_surrogate(settings.get("surrogate"))
    if surrogate is not None:
        if spec is not None and spec.surrogate is not None:
            return TrainingForm(functools.partial(native, surrogate=surrogate),
                                surrogate=surrogate)
        if rates_to_spikes:
            return TrainingForm(_straight_through_rate(native))

    if rates_to_spikes:
        return TrainingForm(_amplitude_times_rate)
    rate = rate_type(neuron_type, settings.get("lif_smoothing"))
    if rate is not None:
        return TrainingForm(_rate_swap(rate), rate_type=rate)
    return TrainingForm(_spiking_with_warning(native))


def training_step(
    neuron_type: nengo.neurons.NeuronType, settings: Optional[dict[str, Any]] = None
) -> Callable:
    """The step function ``neuron_type`` runs in training mode.

    Same signature as `neuron_step`'s; ``settings`` holds the network's
    ``configure_settings`` values (``lif_smoothing``, ``surrogate``).
    """
    return training_form(neuron_type, settings).step


def _rate_swap(rate):
    rate_step = neuron_step(rate)
    names = tuple(rate.state)

    def rate_swap_step(neuron_type, dt, J, state, rng):
        output, rate_state = rate_step(rate, dt, J, {k: state[k] for k in names}, rng)
        return output, {**state, **rate_state}

    return rate_swap_step


def _amplitude_times_rate(neuron_type, dt, J, state, rng):
    return neuron_type.amplitude * J, dict(state)


def _straight_through_rate(spiking_step):
    def straight_through_step(neuron_type, dt, J, state, rng):
        output, state = spiking_step(neuron_type, dt, J, state, rng)
        rate = neuron_type.amplitude * J
        return output + (rate - rate.detach()), state

    return straight_through_step


def _spiking_with_warning(spiking_step):
    def warn_and_spike(neuron_type, dt, J, state, rng):
        cls = type(neuron_type)
        if cls not in _warned:
            _warned.add(cls)
            warnings.warn(
                f"'{cls.__qualname__}' neurons have no rate counterpart: in training "
                "mode they keep spiking, and no gradient flows through their spikes. "
                "Use configure_settings(surrogate='fast_sigmoid') (or another "
                "surrogate) to train them with a surrogate gradient."
            )
        return spiking_step(neuron_type, dt, J, state, rng)

    return warn_and_spike
