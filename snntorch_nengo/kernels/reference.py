"""Pure-torch reference of the fused multi-step kernels.

Each function runs ``T`` steps of a Nengo neuron update followed by Nengo's
``Lowpass`` synapse (the OneX step) on the neuron output::

    output[t], state = neuron_step(J[t], state)
    filtered = decay * filtered + (1 - decay) * output[t]      # decay = exp(-dt / tau)
    filtered_seq[t] = filtered

Layout is time-major with one neuron per column: ``J`` is ``[T, N]`` (``N`` =
batch * neurons, flattened) and every state is ``[N]``. There is one function
per neuron spec with a fused kernel (`snntorch_nengo.neurons.specs`), named
after the kernel (``lif_lowpass``, ``adaptive_lif_lowpass``,
``spiking_relu_lowpass``) with the argument list the spec lays out
(``J, *states, filtered, dt, *params, decay, surrogate=0,
surrogate_param=0.0``); each is `fused_lowpass`, which loops the spec's torch
step, so the forward pass equals Nengo spike for spike (bitwise in float64),
and these functions *define* the fused kernels' semantics and gradients: those
of the torch step that training mode steps (`snntorch_nengo.neurons.train_mode`),
with the surrogate of kernel id ``surrogate`` (`surrogates.kernel_surrogate`;
0: none, so the spikes' derivative is zero) on the spike threshold, and
gradients reaching ``J`` and the initial states.

The C++ (`snntorch_nengo._C`) and Triton kernels implement the same forward
passes and hand-derived backward passes; `snntorch_nengo.kernels.ops` falls
back to differentiating these functions under autograd where neither runs.
Scalar parameters are Python floats.
"""

from types import SimpleNamespace
from typing import Callable, Sequence

import torch

from snntorch_nengo.neurons.specs import KERNEL_SPECS, NeuronSpec
from snntorch_nengo.neurons.surrogates import from_kernel_surrogate


def lowpass_step(
    filtered: torch.Tensor, output: torch.Tensor, decay: float
) -> torch.Tensor:
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


def fused_lowpass(
    spec: NeuronSpec,
    J: torch.Tensor,
    states: Sequence[torch.Tensor],
    filtered: torch.Tensor,
    dt: float,
    params: Sequence[float],
    decay: float,
    surrogate: int = 0,
    surrogate_param: float = 0.0,
) -> tuple[torch.Tensor, ...]:
    """T steps of ``spec``'s neuron type + ``Lowpass``: its fused kernel's semantics.

    ``states`` and ``params`` are in the spec's order; ``surrogate`` is the
    kernel id of the spike threshold's surrogate derivative, of parameter
    ``surrogate_param``. Returns
    ``(output[T, N], filtered_seq[T, N], *states[N], filtered[N])``.
    """
    _check(J, *states, filtered)
    neuron = SimpleNamespace(**dict(zip(spec.params, map(float, params))))
    dt, decay = float(dt), float(decay)
    surrogate = from_kernel_surrogate(surrogate, surrogate_param)
    state = dict(zip(spec.states, states))
    outputs, filtereds = [], []
    for t in range(J.shape[0]):
        out, state = spec.step(neuron, dt, J[t], state, None, surrogate)
        filtered = lowpass_step(filtered, out, decay)
        outputs.append(out)
        filtereds.append(filtered)
    finals = [state[name] for name in spec.states]
    if not outputs:  # T == 0: fresh tensors, never aliases of the inputs
        finals = [s.clone() for s in finals]
        filtered = filtered.clone()
    return (_stack(outputs, J), _stack(filtereds, J), *finals, filtered)


def _public(spec: NeuronSpec) -> Callable:
    """`fused_lowpass` for ``spec``, with the kernel's flat signature."""
    signature = spec.kernel_signature()
    n = spec.n_tensors()
    m = len(spec.params)

    def kernel(*args, **kwargs):
        bound = signature.bind(*args, **kwargs)
        bound.apply_defaults()
        values = tuple(bound.arguments.values())
        floats = values[n:]
        return fused_lowpass(
            spec, values[0], values[1 : n - 1], values[n - 1], floats[0],
            floats[1 : 1 + m], *floats[1 + m :],
        )

    kernel.__name__ = kernel.__qualname__ = spec.kernel.name
    kernel.__signature__ = signature
    kernel.__doc__ = (
        f"T steps of nengo ``{spec.nengo_type.__name__}`` + ``Lowpass``.\n\n"
        f"Returns ``{spec.kernel_returns()}``."
    )
    return kernel


#: the reference of each fused kernel, by name (``lif_lowpass``, ...)
KERNELS: dict[str, Callable] = {s.kernel.name: _public(s) for s in KERNEL_SPECS}
globals().update(KERNELS)


def spike_matmul(X: torch.Tensor, Wt: torch.Tensor) -> torch.Tensor:
    """``X @ Wt``: the product the event-driven kernel computes from X's nonzeros."""
    return X @ Wt


def linear_filter_scan(
    u: torch.Tensor,
    x0: torch.Tensor,
    A: Sequence[float],
    B: Sequence[float],
    C: Sequence[float],
    D: float,
    general: bool = False,
    reverse: bool = False,
) -> tuple[torch.Tensor, torch.Tensor]:
    """T steps of a linear time-invariant filter of ``S`` states on each column.

    ``u`` is ``[T, N]``, ``x0`` the ``[S, N]`` initial state; ``A`` the
    ``S * S`` entries of the state matrix (row-major), ``B`` and ``C`` its ``S``
    input and output weights, ``D`` the feedthrough. Per step ``t`` (from
    ``T - 1`` down to 0 when ``reverse``), as nengo's LinearFilter steps::

        general:  y[t] = C x + D u[t];  x = A x + B u[t]   (nengo's General)
        else:     x = A x + B u[t];     y[t] = C x + D u[t] (OneX, NoD)

    Returns ``(y[T, N], x_final[S, N])``. Sums run left to right over the
    states and a zero ``D`` adds nothing, as in the C++ kernel
    (``linear_filter_scan`` in csrc/kernels_impl.h).
    """
    S = len(B)
    if u.dim() != 2 or x0.shape != (S, u.shape[1]) or len(A) != S * S or len(C) != S:
        raise ValueError(
            f"linear_filter_scan: u must be [T, N], x0 [S, N] with S = len(B) = {S}, A "
            f"S * S and C S entries; got u {tuple(u.shape)}, x0 {tuple(x0.shape)}, "
            f"{len(A)} and {len(C)}"
        )
    A = [[float(A[r * S + s]) for s in range(S)] for r in range(S)]
    B, C, D = [float(b) for b in B], [float(c) for c in C], float(D)

    def output(x, ut):
        # (1.0 * v is v: OneX's state is its output, with one operation less
        # per step where the reference runs, on devices without a kernel)
        y = x[0] if C[0] == 1.0 else C[0] * x[0]
        for s in range(1, S):
            y = y + C[s] * x[s]
        return y + D * ut if D != 0.0 else y

    def update(x, ut):
        new = []
        for r in range(S):
            acc = A[r][0] * x[0]
            for s in range(1, S):
                acc = acc + A[r][s] * x[s]
            new.append(acc + B[r] * ut)
        return new

    x = list(x0.unbind(0))
    ys = [None] * u.shape[0]
    steps = range(u.shape[0] - 1, -1, -1) if reverse else range(u.shape[0])
    for t in steps:
        if general:
            ys[t] = output(x, u[t])
            x = update(x, u[t])
        else:
            x = update(x, u[t])
            ys[t] = output(x, u[t])
    return _stack(ys, u), torch.stack(x) if u.shape[0] else x0.clone()


__all__ = [
    "lowpass_step", "fused_lowpass", "KERNELS", *KERNELS, "spike_matmul", "linear_filter_scan",
]
