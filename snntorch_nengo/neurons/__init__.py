"""Torch implementations of Nengo neuron-type update steps.

Every step function has the signature::

    output, new_state = step(neuron_type, dt, J, state, rng)

``J`` is a ``(B, n)`` tensor (batch first), ``state`` maps Nengo's state names
(``neuron_type.state``) to ``(B, n)`` tensors and ``rng`` is the
``numpy.random.RandomState`` that Nengo passes as ``state_extra["rng"]`` (or
None). A step never modifies its inputs: it returns the output and a new dict
of new state tensors, so autograd can run through it.

Use :func:`neuron_step` to look up the step for a neuron type. Like Nengo's
``Builder``, implementations are registered per class and looked up along the
type's MRO: the supported types come from the spec table
(`snntorch_nengo.neurons.specs`, one `NeuronSpec` per type), users add their
own with :func:`register`; a subclass that overrides ``step`` runs
through :func:`~snntorch_nengo.neurons.fallback.fallback_step` instead.

:func:`training_step` gives the step a type runs in training mode (spiking
types swapped for their rate counterparts, or surrogate gradients; see
`snntorch_nengo.neurons.train_mode`). `SoftLIFRate`, `LeakyReLU` and
`SpikingLeakyReLU` are NengoDL's extra neuron types.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable

if TYPE_CHECKING:
    import nengo
    import torch

_REGISTRY = {}


def register(neuron_class: type) -> Callable[[Callable], Callable]:
    """Decorator registering a torch step function for ``neuron_class``."""

    def decorator(fn):
        _REGISTRY[neuron_class] = fn
        return fn

    return decorator


def _native_step(neuron_type):
    cls_type = type(neuron_type)
    for cls in cls_type.__mro__:
        if cls in _REGISTRY:
            # only use the native step if the subclass has not changed the math
            return _REGISTRY[cls] if cls_type.step is cls.step else None
    return None


def is_native(neuron_type: nengo.neurons.NeuronType) -> bool:
    """Whether ``neuron_type`` has a native (torch, differentiable) step."""
    return _native_step(neuron_type) is not None


def neuron_step(
    neuron_type: nengo.neurons.NeuronType,
) -> Callable[..., tuple[torch.Tensor, dict[str, torch.Tensor]]]:
    """Return the step function for ``neuron_type`` (never None).

    Falls back to running the type's own numpy ``step`` (with a warning, once
    per class) when there is no native implementation.
    """
    step = _native_step(neuron_type)
    return fallback_step if step is None else step


# import the spec table last: it fills ``_REGISTRY``
from snntorch_nengo.neurons import specs  # noqa: E402, F401
from snntorch_nengo.neurons.extras import (  # noqa: E402
    LeakyReLU,
    SoftLIFRate,
    SpikingLeakyReLU,
    leaky_relu_step,
    soft_lif_rate_step,
    spiking_leaky_relu_step,
)
from snntorch_nengo.neurons.fallback import fallback_step  # noqa: E402
from snntorch_nengo.neurons.rate import (  # noqa: E402
    adaptive_lif_rate_step,
    lif_rate_step,
    rectified_linear_step,
    sigmoid_step,
    tanh_step,
)
from snntorch_nengo.neurons.spiking import (  # noqa: E402
    adaptive_lif_step,
    izhikevich_step,
    lif_step,
    poisson_spiking_step,
    regular_spiking_step,
    spiking_rectified_linear_step,
    stochastic_spiking_step,
)
from snntorch_nengo.neurons.train_mode import (  # noqa: E402
    TrainingForm,
    rate_type,
    training_form,
    training_step,
)

__all__ = [
    "register",
    "neuron_step",
    "is_native",
    "fallback_step",
    "rectified_linear_step",
    "sigmoid_step",
    "tanh_step",
    "lif_rate_step",
    "adaptive_lif_rate_step",
    "spiking_rectified_linear_step",
    "lif_step",
    "adaptive_lif_step",
    "izhikevich_step",
    "regular_spiking_step",
    "stochastic_spiking_step",
    "poisson_spiking_step",
    "SoftLIFRate",
    "LeakyReLU",
    "SpikingLeakyReLU",
    "soft_lif_rate_step",
    "leaky_relu_step",
    "spiking_leaky_relu_step",
    "training_step",
    "training_form",
    "TrainingForm",
    "rate_type",
]
