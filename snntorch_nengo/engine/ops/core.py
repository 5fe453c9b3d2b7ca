"""Nengo's basic operators: time, reset, copy, products, Python functions, and
the input nodes' `NodeInput`."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

import numpy as np
import torch
from nengo.builder.probe import SimProbe
from nengo.builder.operator import (
    BsrDotInc,
    Copy,
    DotInc,
    ElementwiseInc,
    Reset,
    SimPyFunc,
    SparseDotInc,
    TimeUpdate,
)
from nengo.exceptions import BuildError, SimulationError

from ...kernels import ops as kernel_ops
from ...utils import to_numpy
from ..operators import NodeInput
from ..signals import sparse_indices
from . import FOLDED, SCANNED, TIME, OpRegistry, Step

if TYPE_CHECKING:
    from nengo.builder.signal import Signal

    from ..signals import SignalValues
    from . import StepContext


# rows (batch x steps in a window) from which a product of spikes is event-driven
SPIKE_ROWS = 256


def per_sample(tensor: torch.Tensor, batched: bool, ndim: int) -> torch.Tensor:
    """``tensor`` with per-sample dims left-padded to ``ndim`` (batch dim kept)."""
    shape = tensor.shape[1:] if batched else tensor.shape
    pad = (1,) * (ndim - len(shape))
    return tensor.reshape((tensor.shape[0],) + pad + shape if batched else pad + shape)


@OpRegistry.declare(TimeUpdate, window=TIME, lower="time_update")
def make_time_update(
    op: TimeUpdate, ctx: StepContext
) -> Callable[[SignalValues], None]:
    dt = ctx.dt
    step_sig, time_sig = op.step, op.time

    def step_time_update(sv):
        step = sv.read(step_sig) + 1
        sv.set(step_sig, step)
        sv.set(time_sig, step.to(sv.read(time_sig).dtype) * dt)

    return step_time_update


@OpRegistry.declare(SimProbe)
def make_sim_probe(op: SimProbe, ctx: StepContext) -> None:
    """Probes are recorded by the engine after each step; the op only orders."""
    return None


@OpRegistry.declare(Reset, window=FOLDED, lower="reset")
def make_reset(op: Reset, ctx: StepContext) -> Callable[[SignalValues], None]:
    value = torch.full(
        op.dst.shape, float(op.value), dtype=ctx.dtype, device=ctx.device
    )
    zeros = None
    if float(op.value) == 0:
        # a reset to zeros marks them (`SignalValues.set_zeros`): products of
        # them are skipped, and the first increment is the new value
        shape = tuple(op.dst.base.shape)
        if ctx.batched(op.dst):
            shape = (ctx.batch_size,) + shape
        zeros = torch.zeros(shape, dtype=ctx.dtype, device=ctx.device)

    dst = op.dst

    def step_reset(sv):
        if zeros is None or not sv.set_zeros(dst, zeros):
            sv.set(dst, value)

    return step_reset


class _ZeroGradient(torch.autograd.Function):
    """``y`` unchanged, and a zero gradient for ``a``.

    What a product ``y + a @ 0`` gives autograd, without the product: ``a``
    still gets its (zero) gradient, as optimizers and DDP expect of a
    parameter the loss reaches.
    """

    @staticmethod
    def forward(ctx, y, a):
        ctx.a_shape = a.shape
        return y.view_as(y)

    @staticmethod
    def backward(ctx, grad):
        return grad, grad.new_zeros(ctx.a_shape)


def skip_zero_product(sv: SignalValues, a: torch.Tensor, y_sig: Signal) -> None:
    """``y_sig += a @ 0`` without the product: only ``a``'s zero gradient."""
    if not (a.requires_grad and torch.is_grad_enabled()):
        return
    base = sv.layout.views[y_sig].base
    sv._zeros.discard(base)
    sv.values[base] = _ZeroGradient.apply(sv.values[base], a)


@OpRegistry.declare(Copy, window=FOLDED, lower="copy")
def make_copy(op: Copy, ctx: StepContext) -> Callable[[SignalValues], None]:
    src_batched, dst_batched = ctx.batched(op.src), ctx.batched(op.dst)
    src_index = as_index(op.src_slice, op.src.shape)
    dst_index = as_index(op.dst_slice, op.dst.shape)
    if dst_index is not None and not op.inc and len(np.unique(dst_index)) < len(
        dst_index
    ):
        raise BuildError(
            f"{op}: Cannot have repeated indices in ``dst_slice`` when copy is not "
            "an increment"
        )
    src_index = None if src_index is None else torch.as_tensor(src_index)
    dst_index = None if dst_index is None else torch.as_tensor(dst_index)

    src, dst_sig, inc = op.src, op.dst, op.inc

    def step_copy(sv):
        value = sv.read(src)
        if src_index is not None:
            value = value.index_select(int(src_batched), src_index.to(value.device))
        if dst_index is None:
            (sv.inc if inc else sv.set)(dst_sig, value)
            return
        dst = sv.read(dst_sig)
        axis = int(dst_batched)
        if dst_batched and not src_batched:
            value = value.expand((dst.shape[0],) + value.shape)
        index = dst_index.to(dst.device)
        value = value.to(dst.dtype)
        dst = dst.index_add(axis, index, value) if inc else dst.index_copy(
            axis, index, value
        )
        sv.set(dst_sig, dst)

    return step_copy


def as_index(
    sl: slice | Sequence[int] | np.ndarray | None, shape: tuple[int, ...]
) -> np.ndarray | None:
    """A list/array slice on a signal's first axis as positive int indices."""
    if sl is None:
        return None
    index = np.asarray(sl)
    if index.dtype.kind == "b":
        return np.flatnonzero(index)
    index = index.astype(np.int64)
    return np.where(index < 0, index + shape[0], index)


@OpRegistry.declare(ElementwiseInc, window=FOLDED, lower="elementwise_inc")
def make_elementwise_inc(
    op: ElementwiseInc, ctx: StepContext
) -> Callable[[SignalValues], None]:
    shapes = [(1,) if s.shape == () else s.shape for s in (op.A, op.X, op.Y)]
    ndim = max(len(s) for s in shapes)
    for da, dx, dy in zip(*[(1,) * (ndim - len(s)) + s for s in shapes]):
        if not (da in [1, dy] and dx in [1, dy] and max(da, dx) == dy):
            raise BuildError(
                "Incompatible shapes in ElementwiseInc: "
                f"Trying to do {op.Y.shape} += {op.A.shape} * {op.X.shape}"
            )
    a_batched, x_batched = ctx.batched(op.A), ctx.batched(op.X)
    ndim = max(op.A.ndim, op.X.ndim, op.Y.ndim)
    # constant gains of 1 (Nengo's neuron gains on a connection to neurons with
    # gain 1) add x as it is: the same numbers and gradients as 1 * x
    may_be_ones = not a_batched and tuple(op.X.shape) == tuple(op.Y.shape)
    ones = _OnesCheck()

    A, X, Y = op.A, op.X, op.Y
    y_shape = tuple(Y.shape)

    def step_elementwise_inc(sv):
        a = sv.read(A)
        if may_be_ones and ones(a):
            sv.inc(Y, sv.read(X))
            return
        a = per_sample(a, a_batched, ndim)
        x = per_sample(sv.read(X), x_batched, ndim)
        sv.inc(Y, _reshape_to(a * x, y_shape, a_batched or x_batched))

    return step_elementwise_inc


class _OnesCheck:
    """Whether a constant tensor is all ones, checked once per tensor version.

    Never under tracing (torch.compile/export: no branch on values), and never
    for a tensor autograd records (a trained gain needs its product).
    """

    def __init__(self):
        self.tensor = self.version = self.result = None

    def __call__(self, a):
        if a.requires_grad or torch.compiler.is_compiling() or torch.compiler.is_exporting():
            return False
        if a is not self.tensor or a._version != self.version:
            self.tensor, self.version = a, a._version
            self.result = bool((a == 1).all())
        return self.result


def _reshape_to(value, shape, batched):
    shape = tuple(shape)
    shape = (value.shape[0],) + shape if batched else shape
    # an unneeded reshape would still be an autograd node
    return value if value.shape == shape else value.reshape(shape)


def sample_dot(a: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """``np.dot`` semantics for one sample."""
    if a.dim() == 0 or x.dim() == 0:
        return a * x
    if x.dim() == 1:
        return torch.matmul(a, x)
    return torch.tensordot(a, x, dims=([-1], [-2]))


@OpRegistry.declare(DotInc, window=FOLDED, lower="dot_inc")
def make_dot_inc(op: DotInc, ctx: StepContext) -> Callable[[SignalValues], None]:
    a_batched, x_batched = ctx.batched(op.A), ctx.batched(op.X)
    batched_dot = torch.vmap(
        sample_dot, in_dims=(0 if a_batched else None, 0 if x_batched else None)
    )
    matvec = op.A.ndim == 2 and op.X.ndim == 1 and not a_batched
    # spikes through weights: the event-driven product skips the zeros (it
    # pays for windows of many rows into layers at least one tile wide)
    spikes = (
        matvec and x_batched and op.A.shape[0] >= 64
        and ctx.layout.views[op.X].base in ctx.spike_bases
    )

    A, X, Y = op.A, op.X, op.Y  # nengo's properties cost a lookup each
    y_shape = tuple(Y.shape)

    def step_dot_inc(sv):
        if sv.is_zeros(X):
            # e.g. an ensemble's input when only its neurons are connected
            skip_zero_product(sv, sv.read(A), Y)
            return
        a, x = sv.read(A), sv.read(X)
        if spikes and x.shape[0] >= SPIKE_ROWS and x.device.type == "cpu":
            y = kernel_ops.spike_product(x, a.t())
        elif matvec:
            # the common case: a weight matrix times a batch of vectors
            # (linear without a bias is matmul(x, a.t()), in one call)
            y = torch.nn.functional.linear(x, a) if x_batched else torch.matmul(a, x)
        elif a_batched or x_batched:
            y = batched_dot(a, x)
        else:
            y = sample_dot(a, x)
        sv.inc(Y, _reshape_to(y, y_shape, a_batched or x_batched))

    return step_dot_inc


@OpRegistry.declare(SparseDotInc, window=FOLDED,
                     no_lower="sparse matrix (SparseDotInc)")
def make_sparse_dot_inc(
    op: SparseDotInc, ctx: StepContext
) -> Callable[[SignalValues], None]:
    rows, cols = sparse_indices(op.A.initial_value)
    rows, cols = torch.tensor(rows), torch.tensor(cols)
    n_rows = op.A.shape[0]
    a_batched, x_batched = ctx.batched(op.A), ctx.batched(op.X)

    def step_sparse_dot_inc(sv):
        data, x = sv.read(op.A), sv.read(op.X)
        r, c = rows.to(x.device), cols.to(x.device)
        if not x_batched:
            x = x[None]
        x = x.reshape(x.shape[:2] + (-1,))  # (B, n_cols, k)
        data = data.reshape((data.shape[0] if a_batched else 1, -1, 1))
        terms = x.index_select(1, c) * data
        y = x.new_zeros((x.shape[0], n_rows, x.shape[2])).index_add(1, r, terms)
        y = y.reshape((y.shape[0],) + tuple(op.Y.shape))
        sv.inc(op.Y, y if x_batched or a_batched else y[0])

    return step_sparse_dot_inc


@OpRegistry.declare(BsrDotInc, window=FOLDED, lower="bsr_dot_inc")
def make_bsr_dot_inc(op: BsrDotInc, ctx: StepContext) -> Callable[[SignalValues], None]:
    indices = torch.as_tensor(np.asarray(op.indices, dtype=np.int64))
    indptr = np.asarray(op.indptr)
    block_rows = torch.as_tensor(
        np.repeat(np.arange(len(indptr) - 1), np.diff(indptr)), dtype=torch.long
    )
    n_block_rows = len(indptr) - 1
    a_batched, x_batched = ctx.batched(op.A), ctx.batched(op.X)
    _, r, c = op.A.shape

    def step_bsr_dot_inc(sv):
        a, x = sv.read(op.A), sv.read(op.X)
        if not x_batched:
            x = x[None]
        xb = x.reshape(x.shape[0], -1, c).index_select(1, indices.to(x.device))
        # a batched A (learned weights merged with a decoder) has one matrix
        # per row: its batch dim pairs with x's, it must not be summed over
        terms = torch.einsum("bkrc,bkc->bkr" if a_batched else "krc,bkc->bkr", a, xb)
        y = terms.new_zeros((terms.shape[0], n_block_rows, r))
        y = y.index_add(1, block_rows.to(y.device), terms).reshape(y.shape[0], -1)
        batched = a_batched or x_batched
        sv.inc(op.Y, _reshape_to(y if batched else y[0], op.Y.shape, batched))

    return step_bsr_dot_inc


def _checked_output(fn, y, shape):
    """Validate a node function's return value as nengo's SimPyFunc does."""
    name = getattr(fn, "__name__", repr(fn))
    try:
        if y is None or not np.all(np.isfinite(y)):
            raise SimulationError(f"Function '{name}' returned non-finite value")
        return np.broadcast_to(np.asarray(y, dtype=np.float64), shape)
    except (TypeError, ValueError) as e:
        raise SimulationError(
            f"Function '{name}' returned a value {y!r} of invalid type {type(y)!r}"
        ) from e


@OpRegistry.declare(SimPyFunc, window=SCANNED)
def make_sim_py_func(op: SimPyFunc, ctx: StepContext) -> Callable[[SignalValues], None]:
    """Python functions run in numpy, once per batch item (once if x is shared)."""
    fn = op.fn
    x_batched = op.x is not None and ctx.batched(op.x)
    out_shape = None if op.output is None else tuple(op.output.shape)

    def call(t, x):
        args = () if x is None else (np.copy(x),)
        y = fn(t, *args) if op.t is not None else fn(*args)
        return None if out_shape is None else _checked_output(fn, y, out_shape)

    def step_sim_py_func(sv):
        t = sv.read(op.t).item() if op.t is not None else None
        x = None if op.x is None else to_numpy(sv.read(op.x))
        if x_batched:
            ys = [call(t, x[b]) for b in range(x.shape[0])]
            y = None if out_shape is None else np.stack(ys)
        else:
            y = call(t, x)
        if out_shape is not None:
            current = sv.values[op.output.base]
            sv.set(op.output, torch.tensor(y, dtype=current.dtype, device=current.device))

    return step_sim_py_func



def node_input_window(op: NodeInput) -> str:
    """A constant node's output is folded; a node running its own operator scans."""
    return FOLDED if op.original is None else SCANNED


@OpRegistry.declare(NodeInput, window=node_input_window, lower="node_input")
def make_node_input(op: NodeInput, ctx: StepContext) -> Step:
    """The fed data when the node is fed, else the node's own operator (or its
    constant output)."""
    original = op.original
    if original is not None:
        original = OpRegistry.make_step(original, ctx)
    node, output = op.node, op.output
    constant = None if original is not None else ctx.layout.initial_value(
        output, device=ctx.device
    )

    def step_node_input(sv):
        data = sv.feeds.get(node)
        if data is not None:
            sv.set(output, data[:, sv.step_index])
        elif original is not None:
            original(sv)
        else:
            sv.set(output, constant)

    private = original is not None and original.private_state
    return Step(step_node_input, op, private_state=private)
