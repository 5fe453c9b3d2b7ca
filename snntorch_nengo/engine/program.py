"""In-place stepping: the operators as a program of instructions on fixed buffers.

Runs without autograd (``run_steps``, ``predict``) spend most of their time on
per-step bookkeeping in the functional engine (`SignalValues`), not on
arithmetic. Here every base signal gets one contiguous buffer for the run, each
signal a fixed view onto it, and each operator becomes a few in-place tensor
instructions (``dst.addmm_(x, w)``, ``dst.copy_(src)``, ...) bound to those
views once. The program then runs step after step in C++ (``csrc/program.h``)
or, without the compiled extension, in the Python loop `run_python`; both
execute the same instruction list.

Which lowering an operator type has is declared with the type
(`ops.OperatorSpec`'s ``lower``, a key of `LOWERINGS`). Operators without one
(Python nodes, numpy processes, learning rules, most neuron types), and those
their lowering declines, run their ordinary step function as a ``CALL``
instruction, on `InPlaceValues`: reads see the buffers, writes go into them. So
every model can run this way; lowered operators just run faster.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING

import nengo
import numpy as np
import torch

from ..kernels import cpp as _cpp_kernels
from ..kernels import ops as kernel_ops
from ..neurons.specs import KERNEL_SPECS, kernel_spec
from ..synapses import is_native_synapse
from ..utils import Registry
from .ops import OpRegistry
from .ops.core import as_index
from .ops.neurons import fused_kernel
from .signals import SignalValues
from .request import Fallback

if TYPE_CHECKING:
    from nengo.builder.neurons import SimNeurons
    from nengo.builder.operator import (
        BsrDotInc,
        Copy,
        DotInc,
        ElementwiseInc,
        Reset,
        TimeUpdate,
    )
    from nengo.builder.processes import SimProcess
    from nengo.builder.signal import Signal

    from .operators import NodeInput
    from .ops import Step
    from .signals import SignalLayout

# opcodes, shared with csrc/program.h
CALL, FILL, COPY, ADD, GATHER, INDEX_COPY, INDEX_ADD = 0, 1, 2, 3, 4, 5, 6
(ADDMM, BADDBMM, ADDCMUL, RELU, AXPBY, TIME, FEED, RECORD, BMM, MUL, SUM, NEURON,
 ROWDOT) = range(7, 20)
# NEURON's kinds: the neuron types with fused kernels, by kind id (neurons/specs.py)
NEURON_KINDS = tuple(spec.nengo_type for spec in KERNEL_SPECS)

# products up to this many multiply-adds run as plain loops in C++ (csrc/program.cpp)
RAW_MACS = 1 << 16


def _record(k, t, i, f):
    j = i[k]  # the sample index due after local step k, or -1
    if j >= 0:
        t[0].select(1, j).copy_(t[1])


def _relu(k, t, i, f):
    torch.clamp_min(t[1], 0.0, out=t[0])
    if f[0] != 1.0:
        t[0].mul_(f[0])


def _time(k, t, i, f):
    t[0].add_(1)
    t[1].copy_(t[0]).mul_(f[0])


def _neuron(k, t, i, f):
    kernel = kernel_ops.OPS[KERNEL_SPECS[i[0]].kernel.name]
    out, J, states, scratch = t[0], t[1], t[2:-2], t[-2]
    # f: the instruction's floats (dt, parameters); the kernel's decay, 0, after them
    result = kernel(
        J.reshape(1, -1), *(s.reshape(-1) for s in states), scratch.reshape(-1), *f, 0.0
    )
    out.copy_(result[0].reshape(out.shape))
    for state, new in zip(states, result[2 : 2 + len(states)]):
        state.copy_(new.reshape(state.shape))


# the Python interpreter: one function per opcode, (k, tensors, ints, floats)
_EXEC = {
    FILL: lambda k, t, i, f: t[0].fill_(f[0]),
    COPY: lambda k, t, i, f: t[0].copy_(t[1]),
    ADD: lambda k, t, i, f: t[0].add_(t[1]),
    GATHER: lambda k, t, i, f: torch.index_select(t[1], i[0], t[2], out=t[0]),
    INDEX_COPY: lambda k, t, i, f: t[0].index_copy_(i[0], t[1], t[2]),
    INDEX_ADD: lambda k, t, i, f: t[0].index_add_(i[0], t[1], t[2]),
    ADDMM: lambda k, t, i, f: t[0].addmm_(t[1], t[2]),
    BADDBMM: lambda k, t, i, f: t[0].baddbmm_(t[1], t[2]),
    BMM: lambda k, t, i, f: torch.bmm(t[1], t[2], out=t[0]),
    MUL: lambda k, t, i, f: torch.mul(t[1], t[2], out=t[0]),
    SUM: lambda k, t, i, f: torch.sum(t[1], -1, out=t[0]),
    ADDCMUL: lambda k, t, i, f: t[0].addcmul_(t[1], t[2]),
    RELU: _relu,
    AXPBY: lambda k, t, i, f: t[0].mul_(f[0]).add_(t[1], alpha=f[1]),
    TIME: _time,
    FEED: lambda k, t, i, f: t[0].copy_(t[1].select(1, k)),
    RECORD: _record,
    NEURON: _neuron,
    ROWDOT: lambda k, t, i, f: torch.sum(t[1] * t[2], -1, out=t[0]),
}


class Unlowerable(Exception):
    """This operator (or this use of it) has no instruction form: CALL its step."""


class InPlaceValues(SignalValues):
    """`SignalValues` whose reads are views of the buffers and writes go into them."""

    def __init__(
        self,
        layout: SignalLayout,
        values: dict,
        batch_size: int,
        views: "Views",
        feeds: dict | None = None,
        training: bool = False,
    ) -> None:
        super().__init__(layout, values, batch_size, feeds=feeds, training=training)
        self._views = views

    def read(self, sig: Signal) -> torch.Tensor:
        ref = self._views.ref(sig)
        if isinstance(ref, torch.Tensor):
            return ref
        flat, index, shape = ref
        return flat.index_select(-1, index).reshape(flat.shape[:-1] + shape)

    def _write(self, sig, value, inc):
        ref = self._views.ref(sig)
        target = ref if isinstance(ref, torch.Tensor) else ref[0]
        if _same_buffer(value, target):
            value = value.clone()  # in-place ops refuse partial overlap
        if isinstance(ref, torch.Tensor):
            (ref.add_ if inc else ref.copy_)(value)
            return
        flat, index, shape = ref
        value = value.to(flat.dtype).broadcast_to(flat.shape[:-1] + shape)
        value = value.reshape(flat.shape[:-1] + (-1,))
        (flat.index_add_ if inc else flat.index_copy_)(-1, index, value)


class Views:
    """Fixed tensors for the signals of one run, over contiguous base buffers."""

    def __init__(self, layout: SignalLayout, values: dict) -> None:
        self.layout = layout
        self.values = values
        self._refs = {}

    def lead(self, base: Signal) -> tuple:
        return self.values[base].shape[: self.values[base].dim() - base.ndim]

    def ref(
        self, sig: Signal
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor, tuple[int, ...]]:
        """A view tensor, or ``(flat, index, shape)`` for a gathered signal."""
        if sig not in self._refs:
            view = self.layout.views[sig]
            buf = self.values[view.base]
            lead = self.lead(view.base)
            if view.same_shape or view.kind == "full" or sig.sparse:
                ref = buf.view(lead + view.shape) if not sig.sparse else buf
            elif view.kind == "slice":
                ref = buf.view(lead + (-1,))[..., view.start : view.stop]
                ref = ref.view(lead + view.shape)
            else:
                flat = buf.view(lead + (-1,))
                ref = (flat, view.index.to(flat.device), view.shape)
            self._refs[sig] = ref
        return self._refs[sig]

    def batched(self, sig: Signal) -> bool:
        return self.layout.batched(sig.base)


class Program:
    """The instructions of one run: lowered operators over `Views`' buffers.

    ``values`` are the run's buffers (contiguous, written in place);
    ``fallbacks`` lists the operators that run as a ``CALL`` of their step.
    """

    def __init__(
        self,
        layout: SignalLayout,
        dt: float,
        op_steps: list,
        values: dict,
        batch_size: int,
        feeds: dict,
        training: bool,
    ) -> None:
        self.layout = layout
        self.dt = dt
        self.batch_size = batch_size
        self.training = training
        # the program's own dict: `load` refills it for the next run
        self.feeds = dict(feeds)
        self.views = Views(self.layout, values)
        self.sv = InPlaceValues(self.layout, values, batch_size, self.views,
                                feeds=self.feeds, training=training)
        self.code = []  # (opcode, tensors, ints, floats)
        self.calls = []
        self.fallbacks = []
        self.n_lowered = 0
        # what each run brings, rebound by `load` and `emit_probe_records`:
        # FEED instructions (code index, node) and RECORDs (probe -> index)
        self._feed_slots = []
        self._record_slots = {}
        for step in op_steps:
            self.add_step(step)

    # -- building

    def emit(
        self,
        opcode: int,
        tensors: Iterable[torch.Tensor] = (),
        ints: Iterable[int] = (),
        floats: Iterable[float] = (),
    ) -> None:
        self.code.append((opcode, tuple(tensors), tuple(int(x) for x in ints),
                          tuple(float(x) for x in floats)))

    def add_step(self, step: Step) -> None:
        """The instructions of one `.Step`: its lowering, else a CALL of it."""
        op = step.op
        spec = OpRegistry.spec_for(op)
        if spec.lower is None:
            reason = spec.no_lower_reason(op)
        else:
            lower = LOWERINGS[spec.lower]
            mark = len(self.code)
            try:
                lower(self, op, step)
                self.n_lowered += 1
                return
            except Unlowerable as e:
                del self.code[mark:]
                reason = str(e)
        self.fallbacks.append(Fallback(op, "CALL", reason))
        self.emit(CALL, ints=(len(self.calls),))
        self.calls.append(self._call(step))

    def _call(self, step):
        sv = self.sv

        def call(k):
            step(sv.at_step(k))

        return call

    def read(self, sig: Signal) -> torch.Tensor:
        """A tensor holding ``sig``'s value when the next instruction runs."""
        ref = self.views.ref(sig)
        if isinstance(ref, torch.Tensor):
            return ref
        flat, index, shape = ref
        tmp = flat.new_empty(flat.shape[:-1] + (len(index),))
        self.emit(GATHER, (tmp, flat, index), (flat.dim() - 1,))
        return _view(tmp, flat.shape[:-1] + shape)

    def write(
        self, sig: Signal, emit_into: Callable[[torch.Tensor, bool], None], inc: bool
    ) -> None:
        """Run ``emit_into(dst, accumulate)`` on ``sig``'s view, or via a scatter.

        ``emit_into`` emits instructions that write ``dst`` (``accumulate``:
        add to it, else overwrite it).
        """
        ref = self.views.ref(sig)
        if isinstance(ref, torch.Tensor):
            emit_into(ref, inc)
            return
        flat, index, shape = ref
        tmp = flat.new_empty(flat.shape[:-1] + (len(index),))
        emit_into(_view(tmp, flat.shape[:-1] + shape), False)
        self.emit(INDEX_ADD if inc else INDEX_COPY, (flat, index, tmp), (flat.dim() - 1,))

    def emit_feed(self, dst: torch.Tensor, node: nengo.Node, data: torch.Tensor) -> None:
        """FEED ``data`` of input ``node`` into ``dst``; `load` rebinds it."""
        self._feed_slots.append((len(self.code), node))
        self.emit(FEED, (dst, data))

    def emit_probe_records(
        self,
        probes: Sequence[nengo.Probe],
        sig_of: Callable[[nengo.Probe], Signal],
        period: Callable[[nengo.Probe], float],
        start_step: int,
        n_steps: int,
    ) -> dict:
        """RECORD instructions for the probes; ``{probe: buffer they fill}``.

        ``period(probe)``: steps per sample (Nengo's sample_every). Called
        again before a later run of the same program, it gives the RECORDs
        that run's buffers and schedule.
        """
        data = {}
        for probe in probes:
            sig = sig_of(probe)
            # Nengo's sample_every, as `strategies.ProbeRecorder` applies it
            after = start_step + np.arange(1, n_steps + 1)  # steps done, after each
            due = np.flatnonzero(after % period(probe) < 1)
            sched = np.full(n_steps, -1)
            sched[due] = np.arange(len(due))
            base = self.views.values[sig.base]
            buf = base.new_empty((self.batch_size, len(due)) + tuple(sig.shape))
            slot = self._record_slots.get(probe)
            if slot is None:
                # a program's first records; every probe gets one (a run
                # without samples records nothing: its schedule is all -1)
                self._record_slots[probe] = len(self.code)
                self.emit(RECORD, (buf, self.read(sig)), sched)
            else:
                self.rebind(slot, (buf, self.code[slot][1][1]), sched)
            data[probe] = buf
        return data

    # -- running again

    def load(self, values: dict, feeds: dict) -> None:
        """Start the next run from ``values`` with input ``feeds``.

        The dynamic bases' values are copied into the program's buffers (what
        a user holds of an earlier state is never written); constants are
        those the program was built with (`strategies.in_place` keeps a
        program only while they are the same tensors, unchanged).
        """
        buffers = self.views.values
        for base in self.layout.dynamic:
            buffers[base].copy_(values[base])
        self.feeds.clear()
        self.feeds.update(feeds)
        for index, node in self._feed_slots:
            dst = self.code[index][1][0]
            self.rebind(index, (dst, feeds[node].to(dst.dtype)), ())

    def rebind(self, index: int, tensors: Sequence[torch.Tensor], ints: Iterable[int]) -> None:
        """New operands for instruction ``index`` (its opcode and floats stay)."""
        opcode, _, _, floats = self.code[index]
        ints = tuple(int(x) for x in ints)
        self.code[index] = (opcode, tuple(tensors), ints, floats)
        native = getattr(self, "_native", None)
        if native is not None and hasattr(native, "set"):
            native.set(index, list(tensors), list(ints))
        elif native is not None:  # an extension built before `set`: remade from code
            self._native = None

    def final_values(self) -> SignalValues:
        """The values after a run, the state copied out of the buffers that
        the next run of this program writes into."""
        buffers = self.views.values
        dynamic = self.layout.dynamic
        values = {
            base: value.clone() if base in dynamic else value
            for base, value in buffers.items()
        }
        return SignalValues(self.layout, values, self.batch_size,
                            feeds=dict(self.feeds), training=self.training)

    # -- running

    def run(self, k0: int, k1: int) -> None:
        """Steps ``k0 .. k1 - 1`` of the run."""
        if _native is not None:
            native = getattr(self, "_native", None)
            if native is None:
                native = self._native = _native.Program()
                for opcode, tensors, ints, floats in self.code:
                    if opcode == CALL:  # numbered in order, as here
                        native.add_call(self.calls[ints[0]])
                    else:
                        native.add(opcode, list(tensors), list(ints), list(floats))
            native.run(k0, k1)
        else:
            run_python(self.code, self.calls, k0, k1)


def run_python(code: list, calls: list, k0: int, k1: int) -> None:
    """Steps ``k0 .. k1 - 1`` of a program, in Python (the C++ loop's reference)."""
    ex = _EXEC
    for k in range(k0, k1):
        for opcode, t, i, f in code:
            if opcode == CALL:
                calls[i[0]](k)
            else:
                ex[opcode](k, t, i, f)


def _view(tensor, shape):
    """``tensor.view(shape)``; Unlowerable where only a copy could reshape it."""
    try:
        return tensor.view(shape)
    except RuntimeError as e:
        raise Unlowerable(str(e)) from e


def _same_buffer(a, b):
    """Whether ``a`` and ``b`` may share elements."""
    if a.untyped_storage().data_ptr() != b.untyped_storage().data_ptr():
        return False
    if a.numel() == 0 or b.numel() == 0:
        return False
    if a.dim() > 1 and b.dim() > 1 and a.shape[0] == b.shape[0] == 1:
        return _same_buffer(a[0], b[0])  # the stride of a size-1 dim means nothing
    if a.dim() > 1 and b.dim() > 1 and a.shape[0] == b.shape[0] and (
        a.stride(0) == b.stride(0)
    ):
        # batched views of one base: compare the elements within a sample
        row = a.stride(0)
        ra, rb = _extent(a, row), _extent(b, row)
        if ra is not None and rb is not None:
            return ra[0] <= rb[1] and rb[0] <= ra[1]
    ea, eb = _extent(a), _extent(b)
    return ea[0] <= eb[1] and eb[0] <= ea[1]


def _extent(t, row=None):
    """First and last storage element of ``t`` (of each sample, given ``row``)."""
    if row is None:
        first, dims = t.storage_offset(), zip(t.shape, t.stride())
    else:
        first, dims = t.storage_offset() % row, zip(t.shape[1:], t.stride()[1:])
    last = first + sum((n - 1) * s for n, s in dims)
    return None if row is not None and last >= row else (first, last)


@functools.lru_cache(maxsize=1024)
def _state_space(process, dt):
    """Nengo's discretised (A, B, C, D), computed once per process (it costs ~1 ms)."""
    return process._get_ss(dt)


# the C++ interpreter, when the extension was built (with it)
_native = _cpp_kernels._C if hasattr(_cpp_kernels._C, "Program") else None


# -- lowerings, by the name an operator type's spec gives (`ops.OperatorSpec`) --

# name -> lower(program, op, step): emits the op's instructions, or raises
# Unlowerable (the op then runs as a CALL of its step)
LOWERINGS = Registry()
lowering = LOWERINGS.register


@lowering("time_update")
def lower_time_update(prog: Program, op: TimeUpdate, step: Step) -> None:
    s, t = prog.views.ref(op.step), prog.views.ref(op.time)
    if not (isinstance(s, torch.Tensor) and isinstance(t, torch.Tensor)):
        raise Unlowerable("time signals are gathered")
    prog.emit(TIME, (s, t), floats=(prog.dt,))


@lowering("reset")
def lower_reset(prog: Program, op: Reset, step: Step) -> None:
    value = float(op.value)
    prog.write(op.dst, lambda dst, acc: prog.emit(FILL, (dst,), floats=(value,)), False)


@lowering("node_input")
def lower_node_input(prog: Program, op: NodeInput, step: Step) -> None:
    buf = prog.views.values[op.output.base]
    data = prog.feeds.get(op.node)
    if data is not None:
        opcode, data = FEED, data.to(buf.dtype)
    elif op.original is None:  # a constant node
        opcode = COPY
        data = prog.layout.initial_value(op.output, device=buf.device).to(buf.dtype)
    else:
        raise Unlowerable("the node's own function runs")

    def emit_into(dst, acc):
        if opcode == FEED:
            prog.emit_feed(dst, op.node, data)
        else:
            prog.emit(COPY, (dst, data))

    prog.write(op.output, emit_into, False)


@lowering("copy")
def lower_copy(prog: Program, op: Copy, step: Step) -> None:
    src = prog.read(op.src)
    lead = 1 if prog.views.batched(op.src) else 0
    if op.src_slice is not None:
        index = torch.as_tensor(as_index(op.src_slice, op.src.shape))
        tmp = src.new_empty(src.shape[:lead] + (len(index),) + src.shape[lead + 1 :])
        prog.emit(GATHER, (tmp, src, index.to(src.device)), (lead,))
        src = tmp
    dst_index = as_index(op.dst_slice, op.dst.shape)
    if dst_index is not None and not op.inc and len(np.unique(dst_index)) < len(dst_index):
        raise Unlowerable("repeated indices (the step raises the error)")

    def emit_into(dst, acc):
        if _same_buffer(dst, src):
            raise Unlowerable("source and destination share a buffer")
        if dst_index is None:
            prog.emit(ADD if acc else COPY, (dst, src))
            return
        dlead = dst.dim() - op.dst.ndim
        value = src if src.dim() == dst.dim() else src.expand(dst.shape[:dlead] + src.shape)
        index = torch.as_tensor(dst_index).to(dst.device)
        prog.emit(INDEX_ADD if acc else INDEX_COPY, (dst, index, value), (dlead,))

    if dst_index is not None and not op.inc:
        # index_copy_ onto the view: the rest of dst keeps its values
        ref = prog.views.ref(op.dst)
        if not isinstance(ref, torch.Tensor):
            raise Unlowerable("sliced copy into a gathered signal")
        emit_into(ref, False)
        return
    prog.write(op.dst, emit_into, op.inc)


@lowering("dot_inc")
def lower_dot_inc(prog: Program, op: DotInc, step: Step) -> None:
    if op.A.sparse:
        raise Unlowerable("sparse matrix (SparseDotInc)")
    if not (op.A.ndim == 2 and op.X.ndim == 1 and op.Y.ndim == 1):
        raise Unlowerable("not a matrix-vector product")
    if prog.views.batched(op.A) or not prog.views.batched(op.X):
        raise Unlowerable("not a weight matrix times a batch of vectors")
    A, X = prog.read(op.A), prog.read(op.X)

    def emit_into(dst, acc):
        if _same_buffer(dst, X):
            raise Unlowerable("product reads its own output")
        if not acc:
            prog.emit(FILL, (dst,), floats=(0.0,))
        prog.emit(ADDMM, (dst, X, A.t()))

    prog.write(op.Y, emit_into, True)


@lowering("bsr_dot_inc")
def lower_bsr_dot_inc(prog: Program, op: BsrDotInc, step: Step) -> None:
    indptr = np.asarray(op.indptr)
    if not (np.diff(indptr) == 1).all():
        raise Unlowerable("block rows with other than one block")
    if prog.views.batched(op.A) or not prog.views.batched(op.X):
        raise Unlowerable("not a weight matrix times a batch of vectors")
    A, X = prog.read(op.A), prog.read(op.X)  # (k, r, c), (B, n_cols * c)
    k, r, c = op.A.shape
    B = X.shape[0]
    xb = _view(X, (B, -1, c))
    indices = np.asarray(op.indices, dtype=np.int64)
    if xb.shape[1] != k or not np.array_equal(indices, np.arange(k)):
        tmp = X.new_empty((B, k, c))
        prog.emit(GATHER, (tmp, xb, torch.as_tensor(indices).to(X.device)), (1,))
        xb = tmp

    small = k * B * r * c <= RAW_MACS
    if not small and r == 1:  # decoders: y[b, k] = sum_c x[b, k, c] A[k, 0, c]
        product = X.new_empty((B, k, 1))
        prog.emit(ROWDOT, (product.view(B, k), xb, A.view(k, c)))
    elif not small and c > 1:
        # ATen's baddbmm_ on these strided operands runs block by block: copy
        # x to block-major and make it one batched product
        xt, product = X.new_empty((k, B, c)), X.new_empty((k, B, r))
        prog.emit(COPY, (xt, xb.transpose(0, 1)))
        prog.emit(BMM, (product, xt, A.transpose(1, 2).contiguous()))
        product = product.transpose(0, 1)

    def emit_into(dst, acc):
        if _same_buffer(dst, X):
            raise Unlowerable("product reads its own output")
        y3 = _view(dst, (B, k, r))
        if not small and (r == 1 or c > 1):
            prog.emit(ADD if acc else COPY, (y3, product))
            return
        if not acc:
            prog.emit(FILL, (dst,), floats=(0.0,))
        if small:
            prog.emit(BADDBMM, (y3.transpose(0, 1), xb.transpose(0, 1), A.transpose(1, 2)))
        else:  # encoders (c == 1): y[b, k, :] += x[b, k] A[k, :, 0]
            prog.emit(ADDCMUL, (y3, xb, A.view(k, r)))

    prog.write(op.Y, emit_into, True)


@lowering("elementwise_inc")
def lower_elementwise_inc(prog: Program, op: ElementwiseInc, step: Step) -> None:
    shapes = {sig: tuple(sig.shape) or (1,) for sig in (op.A, op.X, op.Y)}
    ndim = max(len(shape) for shape in shapes.values())

    def padded(sig, tensor):
        lead = tensor.shape[: tensor.dim() - sig.ndim]
        return _view(tensor, lead + (1,) * (ndim - len(shapes[sig])) + shapes[sig])

    a, x = padded(op.A, prog.read(op.A)), padded(op.X, prog.read(op.X))

    def emit_into(dst, acc):
        if _same_buffer(dst, a) or _same_buffer(dst, x):
            raise Unlowerable("product reads its own output")
        if not acc:
            prog.emit(FILL, (dst,), floats=(0.0,))
        prog.emit(ADDCMUL, (padded(op.Y, dst), a, x))

    prog.write(op.Y, emit_into, True)


@lowering("sim_neurons")
def lower_sim_neurons(prog: Program, op: SimNeurons, step: Step) -> None:
    if type(op.neurons) in NEURON_KINDS and not prog.training:
        return _lower_fused_neurons(prog, op)
    if type(op.neurons) is not nengo.RectifiedLinear or op.state:
        raise Unlowerable("no instruction for this neuron type")
    J = prog.read(op.J)
    amplitude = float(op.neurons.amplitude)

    def emit_into(dst, acc):
        if _same_buffer(dst, J):
            raise Unlowerable("neuron output overlaps its input")
        prog.emit(RELU, (dst, J), floats=(amplitude,))

    prog.write(op.output, emit_into, False)


def _lower_fused_neurons(prog, op):
    if fused_kernel(op.neurons) is None:
        raise Unlowerable("the fused kernels are unavailable")
    spec = kernel_spec(op.neurons)
    names = spec.states
    out, J = prog.views.ref(op.output), prog.read(op.J)
    states = [prog.views.ref(op.state[name]) for name in names]
    tensors = [out, J] + states
    if not all(isinstance(t, torch.Tensor) for t in tensors) or (
        len({t.numel() for t in tensors}) != 1 or J.device.type != "cpu"
        or len({t.dtype for t in tensors}) != 1
        or J.dtype not in (torch.float32, torch.float64)
        or not all(s.is_contiguous() for s in states)
    ):
        raise Unlowerable("neuron signals are not CPU float tensors of one size")
    for state in states:
        if _same_buffer(state, out) or _same_buffer(state, J):
            raise Unlowerable("neuron state overlaps its input or output")
    # slices of merged bases (batch > 1): through contiguous copies
    if not J.is_contiguous():
        J = torch.empty_like(J, memory_format=torch.contiguous_format)
        prog.emit(COPY, (J, tensors[1]))
    result = out if out.is_contiguous() else torch.empty_like(
        out, memory_format=torch.contiguous_format
    )
    scratch = [result.new_zeros(result.shape) for _ in range(2)]
    floats = (prog.dt,) + spec.param_values(op.neurons)  # spec.instruction_floats()
    prog.emit(NEURON, [result, J] + states + scratch, (spec.kernel.kind,), floats)
    if result is not out:
        prog.emit(COPY, (out, result))


@lowering("sim_process")
def lower_sim_process(prog: Program, op: SimProcess, step: Step) -> None:
    if op.input is None or not is_native_synapse(op.process):
        raise Unlowerable("not a native synapse")
    if not isinstance(op.process, nengo.LinearFilter):
        raise Unlowerable("Triangle is an FIR filter, not a state-space one")
    A, B, C, D = _state_space(op.process, prog.dt)
    if not (len(A) == 1 and (D == 0).all()) or set(op.state) != {"X"}:
        raise Unlowerable("only one-state filters (Lowpass) have an instruction")
    a, b = float(A.item()), float(C.item() * B.item())
    X = prog.views.ref(op.state["X"])  # (B, 1, *shape)
    x = prog.read(op.input)
    if not isinstance(X, torch.Tensor) or _same_buffer(X, x):
        raise Unlowerable("filter state is gathered or overlaps the input")
    if prog.views.batched(op.input):
        x = x.unsqueeze(1)
    prog.emit(AXPBY, (X, x), floats=(a, b))
    y = X.select(1, 0)

    def emit_into(dst, acc):
        if _same_buffer(dst, X):
            raise Unlowerable("filter output overlaps its state")
        prog.emit(ADD if acc else COPY, (dst, y))

    prog.write(op.output, emit_into, op.mode == "inc")
