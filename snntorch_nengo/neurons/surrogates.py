"""Surrogate gradients for spiking neurons.

A spiking neuron emits a spike when its voltage crosses a threshold: the spike
is a Heaviside step ``H(x)`` of ``x = voltage - threshold``, whose derivative is
zero almost everywhere, so no gradient reaches the weights. A surrogate keeps
the exact step in the forward pass and uses a smooth bump ``surrogate'(x)`` as its
derivative in the backward pass.

Select one for a network with ``configure_settings(surrogate="fast_sigmoid")`` (a
name from `SURROGATES`) or ``configure_settings(surrogate=ATan(alpha=3))`` (an
instance). In training mode (``module.train()``) the spiking neuron types (LIF,
AdaptiveLIF, SpikingRectifiedLinear, SpikingLeakyReLU, Izhikevich) then keep
their exact spiking forward pass, with the surrogate as the derivative of their
spike threshold; without a surrogate, training mode swaps them for their rate
counterparts, as NengoDL does.

=====================  ======================================================
name                   derivative ``surrogate'(x)``
=====================  ======================================================
``"fast_sigmoid"``     ``1 / (slope * |x| + 1)**2`` (peak 1; slope=25)
``"sigmoid"``          ``slope * s * (1 - s)``, ``s = sigmoid(slope * x)``
``"atan"``             ``(alpha / 2) / (1 + (pi / 2 * alpha * x)**2)`` (alpha=2)
``"triangle"``         ``max(0, 1 - |x| / width) / width`` (width=1)
``"straight_through"`` ``1`` (the gradient passes unchanged)
=====================  ======================================================

``sigmoid``, ``atan`` and ``triangle`` integrate to one (they are the
derivatives of a smooth step from 0 to 1); ``fast_sigmoid`` integrates to
``2 / slope``, as in snnTorch.

The fused neuron kernels (`snntorch_nengo.kernels`) compute these derivatives
themselves: each built-in class has a kernel id (`kernel_surrogate`, and
``kSurrogate*`` in the generated ``csrc/neuron_specs.h``), 0 meaning no
surrogate (the exact spikes, whose derivative is zero). A user's own
`Surrogate` subclass has none, and trains through the stepped torch path.
"""

from __future__ import annotations

import math

import torch
from nengo.exceptions import ValidationError


class _SurrogateStep(torch.autograd.Function):
    """Forward: the given exact values; backward: ``grad * surrogate'(x)``."""

    @staticmethod
    def forward(ctx, x, value, surrogate):
        ctx.save_for_backward(x)
        ctx.surrogate = surrogate
        return value.clone()

    @staticmethod
    def backward(ctx, grad):
        (x,) = ctx.saved_tensors
        grad_x = None
        if ctx.needs_input_grad[0]:
            grad_x = grad * ctx.surrogate.derivative(x).to(grad.dtype)
        return grad_x, None, None


class Surrogate:
    """Base class: a Heaviside step with a custom derivative.

    Subclasses define `derivative`. ``surrogate(x)`` (`heaviside`) returns
    ``(x > 0)`` as floats, with ``derivative(x)`` as its gradient.
    """

    name = None
    #: its id in the fused kernels (`kernel_surrogate`); None: it has no kernel form
    kernel_id = None

    def derivative(self, x: torch.Tensor) -> torch.Tensor:
        """The surrogate derivative of the step at ``x`` (a tensor)."""
        raise NotImplementedError

    def heaviside(self, x: torch.Tensor) -> torch.Tensor:
        """``(x > 0)`` as ``x``'s dtype, differentiable through `derivative`."""
        return self.apply(x, x > 0)

    __call__ = heaviside

    def apply(self, x: torch.Tensor, value: torch.Tensor) -> torch.Tensor:
        """``value`` (exact, not differentiated) with gradient ``derivative(x)``.

        ``value`` is any step function of ``x`` (a spike mask, a spike count) and
        ``x`` the distance to its nearest threshold, increasing with the input.
        """
        value = value.detach().to(x.dtype)
        return _SurrogateStep.apply(x, value, self)

    def staircase(self, voltage: torch.Tensor, value: torch.Tensor) -> torch.Tensor:
        """Spike counts ``value = floor(voltage)`` or ``trunc(voltage)``.

        The steps sit at ``±1, ±2, ...``; the gradient is the surrogate of the
        distance to the nearest one.
        """
        with torch.no_grad():
            k = torch.clamp(torch.round(torch.abs(voltage)), min=1)
            threshold = torch.where(voltage >= 0, k, -k)
        return self.apply(voltage - threshold, value)

    def _params(self):
        return {}

    def _kernel_param(self):
        """The one float the kernels take with `kernel_id`."""
        return 0.0

    def __repr__(self):
        args = ", ".join(f"{k}={v!r}" for k, v in self._params().items())
        return f"{type(self).__name__}({args})"

    def __eq__(self, other):
        return type(self) is type(other) and self._params() == other._params()

    def __hash__(self):
        return hash((type(self), tuple(sorted(self._params().items()))))


class FastSigmoid(Surrogate):
    """Derivative of a fast sigmoid: ``1 / (slope * |x| + 1)**2``."""

    name = "fast_sigmoid"
    kernel_id = 1

    def __init__(self, slope: float = 25.0) -> None:
        self.slope = float(slope)

    def derivative(self, x: torch.Tensor) -> torch.Tensor:
        return 1.0 / (self.slope * torch.abs(x) + 1.0) ** 2

    def _params(self):
        return {"slope": self.slope}

    def _kernel_param(self):
        return self.slope


class Sigmoid(Surrogate):
    """Derivative of ``sigmoid(slope * x)``: ``slope * s * (1 - s)``."""

    name = "sigmoid"
    kernel_id = 2

    def __init__(self, slope: float = 25.0) -> None:
        self.slope = float(slope)

    def derivative(self, x: torch.Tensor) -> torch.Tensor:
        s = torch.sigmoid(self.slope * x)
        return self.slope * s * (1 - s)

    def _params(self):
        return {"slope": self.slope}

    def _kernel_param(self):
        return self.slope


class ATan(Surrogate):
    """Derivative of ``atan(pi / 2 * alpha * x) / pi + 1 / 2``."""

    name = "atan"
    kernel_id = 3

    def __init__(self, alpha: float = 2.0) -> None:
        self.alpha = float(alpha)

    def derivative(self, x: torch.Tensor) -> torch.Tensor:
        return (self.alpha / 2) / (1 + (math.pi / 2 * self.alpha * x) ** 2)

    def _params(self):
        return {"alpha": self.alpha}

    def _kernel_param(self):
        return self.alpha


class Triangle(Surrogate):
    """A triangle of half-width ``width`` and area one: ``max(0, 1 - |x|/w) / w``."""

    name = "triangle"
    kernel_id = 4

    def __init__(self, width: float = 1.0) -> None:
        if width <= 0:
            raise ValidationError("must be positive", attr="width", obj=self)
        self.width = float(width)

    def derivative(self, x: torch.Tensor) -> torch.Tensor:
        return torch.clamp(1 - torch.abs(x) / self.width, min=0) / self.width

    def _params(self):
        return {"width": self.width}

    def _kernel_param(self):
        return self.width


class StraightThrough(Surrogate):
    """The straight-through estimator: the gradient passes through unchanged."""

    name = "straight_through"
    kernel_id = 5

    def derivative(self, x: torch.Tensor) -> torch.Tensor:
        return torch.ones_like(x)


SURROGATES = {
    cls.name: cls for cls in (FastSigmoid, Sigmoid, ATan, Triangle, StraightThrough)
}
_ALIASES = {
    "arctan": "atan",
    "triangular": "triangle",
    "ste": "straight_through",
    "straight_through_estimator": "straight_through",
}


#: the kernels' surrogates by id (0: none, the exact spikes)
KERNEL_SURROGATES = (None, FastSigmoid, Sigmoid, ATan, Triangle, StraightThrough)
assert all(c.kernel_id == i for i, c in enumerate(KERNEL_SURROGATES) if c is not None)


def kernel_surrogate(surrogate: Surrogate | None) -> tuple[int, float] | None:
    """``(kernel id, parameter)`` of ``surrogate`` (None: ``(0, 0.0)``), or None
    when the kernels cannot compute its derivative.

    Only the built-in classes themselves: a subclass may change `derivative`.
    """
    if surrogate is None:
        return (0, 0.0)
    cls = type(surrogate)
    if cls.kernel_id is None or KERNEL_SURROGATES[cls.kernel_id] is not cls:
        return None
    return (cls.kernel_id, float(surrogate._kernel_param()))


def from_kernel_surrogate(kernel_id: int, param: float) -> Surrogate | None:
    """The `Surrogate` of a kernel id and parameter (None for id 0)."""
    kernel_id = int(kernel_id)
    if not 0 <= kernel_id < len(KERNEL_SURROGATES):
        raise ValidationError(
            f"unknown surrogate kernel id {kernel_id}; ids are 0 (none) to "
            f"{len(KERNEL_SURROGATES) - 1}",
            attr="surrogate",
        )
    cls = KERNEL_SURROGATES[kernel_id]
    if cls is None:
        return None
    if cls is StraightThrough:
        return cls()
    return cls(param)


def get_surrogate(spec: Surrogate | type | str | None) -> Surrogate | None:
    """A `Surrogate` from a setting value: None, a name, a class or an instance."""
    if spec is None or isinstance(spec, Surrogate):
        return spec
    if isinstance(spec, type) and issubclass(spec, Surrogate):
        return spec()
    if isinstance(spec, str):
        name = spec.strip().lower().replace("-", "_").replace(" ", "_")
        name = _ALIASES.get(name, name)
        if name in SURROGATES:
            return SURROGATES[name]()
    raise ValidationError(
        f"unknown surrogate {spec!r}; give a Surrogate instance or one of "
        f"{sorted(SURROGATES)}",
        attr="surrogate",
    )


__all__ = [
    "Surrogate",
    "FastSigmoid",
    "Sigmoid",
    "ATan",
    "Triangle",
    "StraightThrough",
    "SURROGATES",
    "KERNEL_SURROGATES",
    "get_surrogate",
    "kernel_surrogate",
    "from_kernel_surrogate",
]
