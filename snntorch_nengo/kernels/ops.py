"""Differentiable torch custom ops over the fused neuron + lowpass kernels.

======================================  ========================================
op (``torch.ops.snntorch_nengo.*``)     semantics
======================================  ========================================
``lif_lowpass``                         `reference.lif_lowpass`
``spiking_relu_lowpass``                `reference.spiking_relu_lowpass`
``adaptive_lif_lowpass``                `reference.adaptive_lif_lowpass`
``spike_matmul``                        ``X @ Wt`` from X's nonzeros (spikes)
``linear_filter_scan``                  `reference.linear_filter_scan` (synapses)
======================================  ========================================

There is one op per neuron spec with a fused kernel
(`snntorch_nengo.neurons.specs`), defined from it (``OPS``). Each op takes
the reference function's arguments and returns its tuple. The
forward pass runs, by device:

- CPU: the C++ kernels (`snntorch_nengo.kernels.cpp`, float32/float64) when the
  extension ``snntorch_nengo._C`` was built, else the torch reference;
- CUDA: the Triton kernels (``snntorch_nengo.kernels.triton_kernels``) when
  they import, else the torch reference;
- other devices: the torch reference.

Each op's backward pass (``fused_lowpass_backward``, itself an opaque custom
op, so ``torch.compile(fullgraph=True)`` traces both passes) gives the
gradients of the torch step that training mode steps: BPTT through the
membrane, refractory and adaptation states and the lowpass, with the surrogate
of kernel id ``surrogate`` (`snntorch_nengo.neurons.surrogates.kernel_surrogate`;
0, the default, is none: the spikes' derivative is zero, as in eval mode) on
the spike threshold. Between the passes only the inputs, J and the initial
states, are saved; the backward kernels recompute the forward steps they need
(so memory is O(inputs) rather than O(T * N) of intermediate states). By
device, as the forward pass: the C++ backward kernels, the Triton ones, else
`reference_grads` (autograd through the torch reference). Double backward is
not supported.
"""

import contextlib
import functools
from typing import Callable, Optional, Sequence

import torch

from snntorch_nengo.kernels import cpp, reference
from snntorch_nengo.neurons.specs import (
    BACKWARD_ARGS,
    KERNEL_SPECS,
    NeuronSpec,
    kernel_spec_named,
)

Tensor = torch.Tensor

# the ops' signatures are the reference functions' (laid out by the specs)
_SIGNATURES = {s.kernel.name: s.kernel_signature() for s in KERNEL_SPECS}


@functools.lru_cache(maxsize=None)
def triton_functions() -> Optional[dict[str, Callable]]:
    """The Triton kernels by op name, or None when they can't be imported."""
    module = _triton_module()
    return None if module is None else dict(module.KERNELS)


def triton_backward_functions() -> Optional[dict[str, Callable]]:
    """The Triton backward kernels by op name, or None (no triton)."""
    module = _triton_module()
    return None if module is None else dict(module.BACKWARD)


@functools.lru_cache(maxsize=None)
def _triton_module():
    try:
        from snntorch_nengo.kernels import triton_kernels
    except Exception:  # noqa: BLE001 (no triton, or a broken install)
        return None
    return triton_kernels if triton_kernels.available else None


def _split(name, args, kwargs=None):
    """(tensor inputs, float parameters) of a call, defaults filled in."""
    bound = _SIGNATURES[name].bind(*args, **(kwargs or {}))
    bound.apply_defaults()
    values = tuple(bound.arguments.values())
    n = kernel_spec_named(name).n_tensors()
    return values[:n], values[n:]


def _check(name, tensors):
    J, states = tensors[0], tensors[1:]
    torch._check(J.dim() == 2, lambda: f"{name}: J must be [T, N], got {tuple(J.shape)}")
    for s in states:
        torch._check(
            s.dim() == 1 and s.shape[0] == J.shape[1],
            lambda: f"{name}: states must be [N] = [{J.shape[1]}], got {tuple(s.shape)}",
        )
        torch._check(
            s.dtype == J.dtype and s.device == J.device,
            lambda: f"{name}: states must have J's dtype and device "
            f"({J.dtype}, {J.device}), got ({s.dtype}, {s.device})",
        )


_N_BACKWARD_ARGS = len(BACKWARD_ARGS)


def _forward_params(name, params):
    """The forward kernels' floats: without the backward-only surrogate."""
    return tuple(float(p) for p in params[:-_N_BACKWARD_ARGS])


def _surrogate_args(params):
    surrogate, param = params[-_N_BACKWARD_ARGS:]
    return int(surrogate), float(param)


def _reference_forward(name, tensors, params):
    with torch.no_grad():
        outs = reference.KERNELS[name](*tensors, *_forward_params(name, params))
    return tuple(outs)


def _cpu_forward(name, tensors, params):
    _check(name, tensors)
    if cpp.supports(*tensors):
        return tuple(getattr(cpp, name)(*tensors, *_forward_params(name, params)))
    return _reference_forward(name, tensors, params)


def _cuda_forward(name, tensors, params):
    _check(name, tensors)
    fns = triton_functions()
    if fns is not None:
        return tuple(fns[name](*tensors, *_forward_params(name, params)))
    return _reference_forward(name, tensors, params)


def _default_forward(name, tensors, params):
    _check(name, tensors)
    return _reference_forward(name, tensors, params)


def _fake_forward(name, tensors):
    _check(name, tensors)
    J, states = tensors[0], tensors[1:]
    return (torch.empty_like(J), torch.empty_like(J)) + tuple(
        torch.empty_like(s) for s in states
    )


@contextlib.contextmanager
def _autograd_dispatch():
    """Autograd recording back on, inside a custom op's implementation.

    A custom op's kernels run with the autograd dispatch keys excluded (below
    autograd), where nothing records a graph even under ``enable_grad``; the
    backward op needs one to differentiate the reference.
    """
    keys = (
        torch._C.DispatchKey.AutogradFunctionality,
        torch._C.DispatchKey.AutogradOther,
        torch._C.DispatchKey.ADInplaceOrView,
    )
    with contextlib.ExitStack() as stack:
        for key in keys:
            stack.enter_context(torch._C._SetExcludeDispatchKeyGuard(key, False))
        yield


def reference_grads(
    name: str,
    inputs: Sequence[Tensor],
    grads: Sequence[Optional[Tensor]],
    params: Sequence[float],
    surrogate: int = 0,
    surrogate_param: float = 0.0,
) -> list[Tensor]:
    """Gradients w.r.t. ``inputs`` by recomputing the reference under autograd.

    ``grads`` holds one gradient (or None) per output of the op ``name``;
    ``params`` are its forward floats (dt, the parameters, decay), ``surrogate``
    and ``surrogate_param`` its surrogate. Inputs whose gradient is not
    connected get zeros. The backward kernels' definition (and their fallback).
    """
    fn = reference.KERNELS[name]
    with _autograd_dispatch(), torch.enable_grad():
        leaves = [x.detach().requires_grad_(True) for x in inputs]
        outs = fn(*leaves, *params, surrogate, surrogate_param)
        pairs = [
            (o, g) for o, g in zip(outs, grads) if g is not None and o.requires_grad
        ]
        if pairs:
            result = torch.autograd.grad(
                [o for o, _ in pairs],
                leaves,
                [g.to(o.dtype) for o, g in pairs],
                allow_unused=True,
            )
        else:
            result = [None] * len(leaves)
    # (with T = 0 the outputs are copies of the inputs, whose gradients may
    # be the incoming tensors themselves: an op must not return aliases)
    given = {g.untyped_storage().data_ptr() for g in grads if g is not None}
    return [
        torch.zeros_like(x)
        if r is None
        else (r.clone() if r.untyped_storage().data_ptr() in given else r.detach())
        for r, x in zip(result, inputs)
    ]


def _check_grads(name, inputs, grads):
    J = inputs[0]
    n_out = kernel_spec_named(name).n_tensors() + 1
    torch._check(
        len(grads) == n_out and len(inputs) == n_out - 1,
        lambda: f"{name}_backward: {n_out - 1} inputs and {n_out} gradients expected, "
        f"got {len(inputs)} and {len(grads)}",
    )
    for i, g in enumerate(grads):
        if g is None:
            continue
        shape = J.shape if i < 2 else J.shape[1:]
        torch._check(
            g.shape == shape and g.dtype == J.dtype and g.device == J.device,
            lambda: f"{name}_backward: gradient {i} must be {tuple(shape)} of J's dtype "
            f"and device ({J.dtype}, {J.device}), got {tuple(g.shape)} ({g.dtype}, "
            f"{g.device})",
        )


# --- the backward op: the backward kernels, by device ---


@torch.library.custom_op("snntorch_nengo::fused_lowpass_backward", mutates_args=())
def fused_lowpass_backward(
    name: str,
    inputs: list[Tensor],
    grads: list[Optional[Tensor]],
    params: list[float],
    surrogate: int,
    surrogate_param: float,
) -> list[Tensor]:
    """Gradients of the op ``name`` w.r.t. its tensor ``inputs`` (see the module
    docstring); ``params`` are its forward floats."""
    _check(name, inputs)
    _check_grads(name, inputs, grads)
    return reference_grads(name, inputs, grads, params, surrogate, surrogate_param)


@fused_lowpass_backward.register_kernel("cpu")
def _(name, inputs, grads, params, surrogate, surrogate_param):
    _check(name, inputs)
    _check_grads(name, inputs, grads)
    if cpp.supports(*inputs, backward=True):
        return list(cpp.backward(name, inputs, grads, params, surrogate, surrogate_param))
    return reference_grads(name, inputs, grads, params, surrogate, surrogate_param)


@fused_lowpass_backward.register_kernel("cuda")
def _(name, inputs, grads, params, surrogate, surrogate_param):
    _check(name, inputs)
    _check_grads(name, inputs, grads)
    backward = triton_backward_functions()
    if backward is not None:
        return list(backward[name](inputs, grads, params, surrogate, surrogate_param))
    return reference_grads(name, inputs, grads, params, surrogate, surrogate_param)


@fused_lowpass_backward.register_fake
def _(name, inputs, grads, params, surrogate, surrogate_param):
    _check(name, inputs)
    return [torch.empty_like(x) for x in inputs]


def _make_autograd(name):
    def setup_context(ctx, inputs, output):
        tensors, params = _split(name, inputs)
        ctx.save_for_backward(*tensors)
        # outputs nothing reads (the lowpass sequence when no synapse follows,
        # the final states) reach backward as None, which the kernels take as
        # zero, instead of as zero tensors made and then read at every step
        ctx.set_materialize_grads(False)
        ctx.params = list(_forward_params(name, params))
        ctx.surrogate = _surrogate_args(params)
        ctx.n_args = len(params)

    def backward(ctx, *grads):
        inputs = list(ctx.saved_tensors)
        grads_in = fused_lowpass_backward(
            name, inputs, list(grads), ctx.params, *ctx.surrogate
        )
        grads_in = [
            g if ctx.needs_input_grad[i] else None for i, g in enumerate(grads_in)
        ]
        return tuple(grads_in) + (None,) * ctx.n_args

    return setup_context, backward


def _register(op, name):
    op.register_kernel("cpu")(lambda *a, **k: _cpu_forward(name, *_split(name, a, k)))
    op.register_kernel("cuda")(lambda *a, **k: _cuda_forward(name, *_split(name, a, k)))
    op.register_fake(lambda *a, **k: _fake_forward(name, _split(name, a, k)[0]))
    setup_context, backward = _make_autograd(name)
    op.register_autograd(backward, setup_context=setup_context)
    return op


# --- forward ops: one per spec with a fused kernel, its schema from the spec ---


def _define(spec: NeuronSpec):
    name = spec.kernel.name

    def default(*args):
        return _default_forward(name, *_split(name, args))

    default.__name__ = default.__qualname__ = name
    default.__doc__ = (
        f"T steps of nengo ``{spec.nengo_type.__name__}`` + ``Lowpass`` (see "
        f"`reference.{name}`).\n\nReturns ``{spec.kernel_returns()}``."
    )
    op = torch.library.custom_op(
        f"snntorch_nengo::{name}", default, mutates_args=(), schema=spec.kernel_schema(named=False)
    )
    return _register(op, name)


#: the differentiable ops by name (``lif_lowpass``, ...)
OPS = {s.kernel.name: _define(s) for s in KERNEL_SPECS}
globals().update(OPS)


# --- event-driven product ---

# Above this fraction of nonzero entries in X, the C++ spike_matmul runs a
# dense product instead: for (4096, 256) spikes into 256 outputs on one AVX2
# core the event-driven loop took 3.3 ms at 10%, 5.4 ms at 20% and 8.4 ms at
# 30% density, against 8-10 ms for the dense product
SPIKE_DENSITY = 0.25


@torch.library.custom_op("snntorch_nengo::spike_matmul", mutates_args=())
def spike_matmul(X: Tensor, Wt: Tensor) -> Tensor:
    """``X @ Wt`` for 2-D ``X`` that is mostly zeros (spikes).

    On the CPU with the C++ extension, each row sums only the rows of ``Wt``
    that its nonzero entries pick (`reference.spike_matmul` elsewhere); the
    sums run in another order than a dense product's, so float32 results
    differ from ``X @ Wt`` by rounding. ``X``'s gradient is the dense
    product's; ``Wt``'s, ``X.t() @ grad``, is event-driven in the same way.
    """
    if cpp.supports(X, Wt):
        return cpp.spike_matmul(X, Wt, SPIKE_DENSITY)
    return reference.spike_matmul(X, Wt)


@spike_matmul.register_fake
def _(X, Wt):
    return X.new_empty((X.shape[0], Wt.shape[1]))


def _spike_matmul_setup(ctx, inputs, output):
    ctx.save_for_backward(*inputs)


def _spike_matmul_backward(ctx, grad):
    X, Wt = ctx.saved_tensors
    # X's gradient is dense (grad is); Wt's, X.t() @ grad, is again a product
    # whose left factor is mostly zeros: event-driven too (the dense product
    # where X is dense), differentiable for a second derivative
    return (
        grad @ Wt.t() if ctx.needs_input_grad[0] else None,
        spike_matmul(X.t(), grad) if ctx.needs_input_grad[1] else None,
    )


spike_matmul.register_autograd(_spike_matmul_backward, setup_context=_spike_matmul_setup)


# --- linear filters (synapses) over a window ---


def _scan_check(u, x0, A, B, C, y0=None):
    S = len(B)
    torch._check(
        y0 is None or (tuple(y0.shape) == (u.shape[1],) and y0.dtype == u.dtype
                       and y0.device == u.device),
        lambda: f"linear_filter_scan: y0 must be [N] = [{u.shape[1]}] of u's dtype and "
        f"device, got {tuple(y0.shape)} ({y0.dtype}, {y0.device})",
    )
    torch._check(
        u.dim() == 2 and x0.dim() == 2 and tuple(x0.shape) == (S, u.shape[1]),
        lambda: f"linear_filter_scan: u must be [T, N] and x0 [S, N] with S = len(B) = "
        f"{S}, got u {tuple(u.shape)} and x0 {tuple(x0.shape)}",
    )
    torch._check(
        len(A) == S * S and len(C) == S,
        lambda: f"linear_filter_scan: A must have S * S = {S * S} and C S = {S} entries, "
        f"got {len(A)} and {len(C)}",
    )
    torch._check(
        u.dtype == x0.dtype and u.device == x0.device,
        lambda: f"linear_filter_scan: x0 must have u's dtype and device ({u.dtype}, "
        f"{u.device}), got ({x0.dtype}, {x0.device})",
    )


# the C++ kernel keeps a block's states on its stack, the Triton one in
# registers (unrolled over the states): up to this many
SCAN_MAX_STATES = 8


@torch.library.custom_op("snntorch_nengo::linear_filter_scan", mutates_args=())
def linear_filter_scan(
    u: Tensor,
    x0: Tensor,
    A: list[float],
    B: list[float],
    C: list[float],
    D: float,
    general: bool = False,
    reverse: bool = False,
    y0: Optional[Tensor] = None,
) -> tuple[Tensor, Tensor]:
    """T steps of a linear filter of ``S = len(B)`` states on each of ``u``'s
    ``N`` columns, as `reference.linear_filter_scan` defines them: one call for
    a synapse (nengo's ``LinearFilter``: ``Lowpass``, ``Alpha``, ...) over a
    window. Returns ``(y[T, N], x_final[S, N])``; with ``y0`` (``[N]``), ``y``
    is ``[T + 1, N]``, ``y0`` its first row (a window's readers see the output
    one step late: ``y[:-1]``, without a copy).

    On the CPU the C++ kernel (float32/float64) runs it, bitwise equal to the
    reference; on CUDA the Triton kernel (float32/float64) when triton imports;
    elsewhere the reference. Its backward pass is the same scan run
    back in time over the output's gradient (the adjoint filter: ``A``
    transposed, the roles of ``B`` and ``C`` swapped), so it is differentiable
    to any order.
    """
    _scan_check(u, x0, A, B, C, y0)
    with torch.no_grad():
        return _reference_scan(u, x0, A, B, C, D, general, reverse, y0)


def _reference_scan(u, x0, A, B, C, D, general, reverse, y0):
    y, x = reference.linear_filter_scan(u, x0, A, B, C, D, general, reverse)
    return (y if y0 is None else torch.cat([y0[None], y])), x


@linear_filter_scan.register_kernel("cpu")
def _(u, x0, A, B, C, D, general=False, reverse=False, y0=None):
    _scan_check(u, x0, A, B, C, y0)
    if cpp.HAS_SCAN and len(B) <= SCAN_MAX_STATES and cpp.supports(u, x0):
        return cpp.linear_filter_scan(u, x0, A, B, C, D, general, reverse, y0)
    return _reference_scan(u, x0, A, B, C, D, general, reverse, y0)


def triton_scan() -> Optional[Callable]:
    """The Triton scan kernel (``linear_filter_scan_triton``), or None (no triton)."""
    module = _triton_module()
    return None if module is None else module.linear_filter_scan_triton


def _cuda_scan(u, x0, A, B, C, D, general=False, reverse=False, y0=None):
    # (a named function, so the tests run it on CPU tensors, interpreted)
    _scan_check(u, x0, A, B, C, y0)
    scan = triton_scan()
    if (scan is not None and len(B) <= SCAN_MAX_STATES
            and u.dtype in (torch.float32, torch.float64)):
        return scan(u, x0, A, B, C, D, general, reverse, y0)
    return _reference_scan(u, x0, A, B, C, D, general, reverse, y0)


linear_filter_scan.register_kernel("cuda")(_cuda_scan)


@linear_filter_scan.register_fake
def _(u, x0, A, B, C, D, general=False, reverse=False, y0=None):
    _scan_check(u, x0, A, B, C, y0)
    T = u.shape[0] + (0 if y0 is None else 1)
    return u.new_empty((T, u.shape[1])), torch.empty_like(x0)


def adjoint_filter(
    A: Sequence[float], B: Sequence[float], C: Sequence[float], D: float, general: bool
) -> tuple[list, list, list, float]:
    """The coefficients ``(A, B, C, D)`` of the ``general`` scan that, run back
    in time from the final state's gradient over the output's gradient, gives
    the input's gradient as its output and the initial state's as its final
    state."""
    S = len(B)
    At = [float(A[c * S + r]) for r in range(S) for c in range(S)]  # A transposed
    if general:
        # y = C x + D u, then x = A x + B u: the state's gradient goes back
        # through A^T and gathers C^T dy; du = B^T dx + D dy
        return At, [float(c) for c in C], [float(b) for b in B], float(D)
    # x = A x + B u, then y = C x + D u: with h the state's gradient less C^T dy
    # of the same step, h goes back through A^T and gathers A^T C^T dy, and
    # du = B^T h + (B . C + D) dy
    AtC = [sum(At[r * S + s] * float(C[s]) for s in range(S)) for r in range(S)]
    return At, AtC, [float(b) for b in B], sum(float(b) * float(c) for b, c in zip(B, C)) + float(D)


def _scan_setup(ctx, inputs, output):
    ctx.coefficients = inputs[2:6]
    ctx.general, ctx.reverse = inputs[6], inputs[7]
    ctx.shapes = (inputs[0].shape, inputs[1].shape)
    ctx.prepended = len(inputs) > 8 and inputs[8] is not None


def _scan_backward(ctx, grad_y, grad_x):
    A, B, C, D = ctx.coefficients
    n_args = 9
    if grad_y is None and grad_x is None:
        return (None,) * n_args
    grad_y0 = None
    if ctx.prepended and grad_y is not None:
        grad_y0, grad_y = grad_y[0], grad_y[1:]
    if grad_y is None:
        grad_y = grad_x.new_zeros(ctx.shapes[0])
    if grad_x is None:
        grad_x = grad_y.new_zeros(ctx.shapes[1])
    A2, B2, C2, D2 = adjoint_filter(A, B, C, D, ctx.general)
    grad_u, grad_x0 = linear_filter_scan(
        grad_y, grad_x, A2, B2, C2, D2, True, not ctx.reverse
    )
    if ctx.prepended and grad_y0 is None:
        grad_y0 = grad_u.new_zeros(ctx.shapes[0][1:])
    return (
        grad_u if ctx.needs_input_grad[0] else None,
        grad_x0 if ctx.needs_input_grad[1] else None,
    ) + (None,) * 6 + (grad_y0 if ctx.prepended and ctx.needs_input_grad[8] else None,)


linear_filter_scan.register_autograd(_scan_backward, setup_context=_scan_setup)


def scan_backend(u: Tensor, n_states: int = 1) -> str:
    """Which implementation `linear_filter_scan` uses (both passes: the backward
    is the same op) for ``u`` and ``n_states`` states."""
    if n_states > SCAN_MAX_STATES or u.dtype not in (torch.float32, torch.float64):
        return "reference"
    if u.device.type == "cpu":
        return "cpp" if cpp.HAS_SCAN and cpp.supports(u) else "reference"
    if u.device.type == "cuda":
        return "triton" if triton_scan() is not None else "reference"
    return "reference"


def _records(tensors) -> bool:
    """Whether autograd would record an op of ``tensors``, or a trace is being
    made (torch.compile, torch.export), which must see the custom op."""
    if torch.compiler.is_compiling() or torch.compiler.is_exporting():
        return True
    return torch.is_grad_enabled() and any(t.requires_grad for t in tensors)


def direct_unfiltered(name: str) -> Callable:
    """``OPS[name]`` without the lowpass, which the engine never uses:
    ``(J, *states, dt, *params, surrogate, surrogate_param) -> (output,
    *final states)``.

    Where nothing is recorded and the C++ kernels run, the kernel gets an
    empty filter and writes no filtered sequence (a ``[T, N]`` stream less to
    memory); elsewhere the custom op runs with a zero filter and decay 0 (its
    filtered output then equals the output) and the filter's results are
    dropped.
    """
    op = OPS[name]
    n_states = len(kernel_spec_named(name).states)

    def call(*args):
        tensors, rest = args[: 1 + n_states], args[1 + n_states :]
        J = tensors[0]
        # the op's floats: dt and the parameters, the decay, the surrogate
        params = rest[:-_N_BACKWARD_ARGS] + (0.0,) + rest[-_N_BACKWARD_ARGS:]
        if not _records(tensors) and cpp.supports(*tensors):
            _check(name, tensors)
            kernel = getattr(torch.ops.snntorch_nengo_cpp, name)
            result = kernel(*tensors, J.new_empty(0), *_forward_params(name, params))
        else:
            result = op(*tensors, J.new_zeros(J.shape[1]), *params)
        return (result[0],) + tuple(result[2 : 2 + n_states])

    call.__name__ = call.__qualname__ = f"{name}_unfiltered"
    return call


def spike_product(X: Tensor, Wt: Tensor) -> Tensor:
    """`spike_matmul`, calling the C++ kernel itself where nothing is recorded."""
    if _records((X, Wt)) or not cpp.supports(X, Wt):
        return spike_matmul(X, Wt)
    return cpp.spike_matmul(X, Wt, SPIKE_DENSITY)


def backend(J: Tensor, backward: bool = False) -> str:
    """Which forward (``backward``: backward) implementation the ops use for
    tensors like ``J``."""
    if J.device.type == "cpu":
        return "cpp" if cpp.supports(J, backward=backward) else "reference"
    if J.device.type == "cuda":
        fns = triton_backward_functions() if backward else triton_functions()
        return "triton" if fns is not None else "reference"
    return "reference"


__all__ = [
    "OPS",
    *OPS,
    "fused_lowpass_backward",
    "direct_unfiltered",
    "spike_product",
    "spike_matmul",
    "linear_filter_scan",
    "adjoint_filter",
    "reference_grads",
    "triton_functions",
    "triton_backward_functions",
    "triton_scan",
    "scan_backend",
    "backend",
]
