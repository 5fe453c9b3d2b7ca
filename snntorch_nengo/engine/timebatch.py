"""Time-batched runs: each operator once over all time steps, where Nengo allows.

Stepping runs every operator once per step. When the operators have no
dependency that crosses time in a loop (no recurrent connection, no learning
rule), the same results come from running each operator once over the whole
window, in a suitable order:

- *folded* operators (products, copies, resets, convolutions, fed inputs) have
  no memory: they run once on tensors whose batch dimension is ``T * batch``
  (step-major: row ``t * batch + b``), so a connection becomes one matrix
  product over ``(T * batch, d)``, and a neuron group's input is already the
  time-major ``[T, batch * N]`` its fused kernel takes;
- *scanned* operators (neurons, synapses and other processes, Python and torch
  nodes) have memory or per-step code: they loop over time on their own, and
  neurons whose type has a fused multi-step kernel (`kernels.ops`) run as one
  kernel call over ``[T, N]``.

Within a step Nengo orders each signal's writers as sets, then increments,
then reads, then updates; an update is seen only at the next step. Over a
window that becomes: run a signal's updater first, then let its readers see
the updater's output shifted by one step. The plan is a topological order of
that graph; if it has a cycle (a recurrent connection through a synapse, a
learning rule closing a loop), the model steps as before.

Results equal stepping up to the summation order of the larger matrix products.
"""

import numpy as np
import torch
from nengo.builder.neurons import SimNeurons
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
from nengo.builder.processes import SimProcess
from nengo.builder.probe import SimProbe
from nengo.builder.transforms import ConvInc, ConvTransposeInc

from .operators import SimTensorNode
from .schedule import NodeInput
from .signals import SignalValues

FOLDED = (Reset, Copy, DotInc, ElementwiseInc, SparseDotInc, BsrDotInc, ConvInc,
          ConvTransposeInc)
SCANNED = (SimNeurons, SimProcess, SimPyFunc, SimTensorNode)


class SeriesPlan:
    """Whether and how a model's operators run over a whole window at once.

    ``reason`` says why a model cannot (None when it can); ``order`` lists the
    operators in the window's execution order.
    """

    def __init__(self, step_order, layout, time_bases, dt, probed=()):
        self.layout = layout
        self.dt = dt
        self.probed = set(probed)  # bases that probes read
        self.time_bases = time_bases  # (step base, time base)
        self.order = None
        self.reason = None
        try:
            self._plan(step_order)
        except _Ineligible as e:
            self.reason = str(e)

    @property
    def eligible(self):
        return self.reason is None

    # -- analysis

    def _plan(self, step_order):
        views = self.layout.views
        ops = [op for op in step_order if not isinstance(op, SimProbe)]
        writers = {}  # base -> [(op, kind, sig)] in step order
        for op in ops:
            _check_type(op)
            for kind in ("sets", "incs", "updates"):
                for sig in getattr(op, kind):
                    writers.setdefault(views[sig].base, []).append((op, kind, sig))
        step_base, time_base = self.time_bases
        self.updated = set()
        for base, ws in writers.items():
            kinds = {k for _, k, _ in ws}
            if "updates" in kinds:
                if len(ws) != 1:
                    raise _Ineligible(f"{base} is updated and also written otherwise")
                self.updated.add(base)
            elif base not in self.time_bases and not _covers(base, ws, views):
                # its value before the first writer would come from the end of
                # the previous step, which the window does not have yet
                raise _Ineligible(
                    f"{base}: its first writers ({ws[0][0]}, ...) do not set all of it"
                )
        # so every other written base is set all over before anything reads it
        for op in ops:
            if isinstance(op, FOLDED) or (isinstance(op, NodeInput) and op.original is None):
                for sig in op.reads + op.sets + op.incs:
                    if views[sig].base in self.time_bases:
                        raise _Ineligible(f"{op} reads the simulation time")
        self.writers = writers

        # dependency graph over the window
        after = {op: set() for op in ops}  # op -> ops that must run before it
        for base, ws in writers.items():
            ordered = [op for op, _, _ in ws]
            for a, b in zip(ordered, ordered[1:]):
                if a is not b:
                    after[b].add(a)
        position = {op: i for i, op in enumerate(step_order)}
        for op in ops:
            for sig in op.reads + op.incs + op.sets:
                for w, _, _ in writers.get(views[sig].base, ()):
                    if w is not op and (
                        views[sig].base in self.updated or position[w] < position[op]
                    ):
                        after[op].add(w)
        self.order = _toposort(ops, after)
        self.touched = {op: {views[s].base for s in op.all_signals} for op in ops}
        self.inc_only = {
            op: {views[s].base for s in op.incs}
            - {views[s].base for s in op.reads + op.sets + op.updates}
            for op in ops
        }
        self.written_by = {}
        for base, ws in writers.items():
            for op, _, _ in ws:
                self.written_by.setdefault(op, set()).add(base)
        # bases an op alone writes and reads, unprobed: only their final value matters
        readers = {}
        for op in ops:
            for sig in op.reads + op.incs + op.sets + op.updates:
                readers.setdefault(views[sig].base, set()).add(op)
        self.private = {
            op: {
                base for base in bases
                if readers.get(base, set()) <= {op} and base not in self.probed
                and {w for w, _, _ in writers[base]} == {op}
            }
            for op, bases in self.written_by.items()
        }
        self.unread = set().union(*self.private.values())

    # -- running

    def run(self, values, steps, n_steps, batch_size, start_step, feeds, training,
            probes, periods, probe_signal):
        """Run the window; return (probe data, SignalValues of the final state)."""
        B, T = batch_size, n_steps
        layout = self.layout
        step_of = {getattr(step, "op", None): step for step in steps}
        series = {}  # base -> (T*B, *shape): value after the writers run so far
        ended = {}  # updated base -> (T, B, *shape): value at the end of each step
        step_base, time_base = self.time_bases
        first = values[step_base]
        step_series = first + 1 + torch.arange(T, dtype=first.dtype, device=first.device)
        time_series = step_series.to(values[time_base].dtype) * self.dt
        series[step_base] = step_series.repeat_interleave(B)
        series[time_base] = time_series.repeat_interleave(B)

        steady = {}  # base -> (B, *shape): its value, the same at every step

        def window(base):
            """The value every reader sees over the window, folded."""
            if base in series:
                return series[base]
            if base in steady:
                value = steady[base]
                return _fold_broadcast(value, T) if layout.batched(base) else value
            value = values[base]
            if not layout.batched(base):
                return value
            if base in self.writers and base not in self.updated:
                # sets overwrite all of it before anything reads it (see _plan)
                return value.new_empty((T * B,) + value.shape[1:])
            return _fold_broadcast(value, T)

        def rows(base):
            """The value over the window as ``(B, ...)`` if it is the same at
            every step (None if not): unwritten inputs, and outputs of folded
            operators whose inputs are all like that."""
            if base in series:
                return None
            if base in steady:
                return steady[base]
            value = values[base]
            if base in self.writers and base not in self.updated and layout.batched(base):
                return value.new_empty(value.shape)  # set before read (see _plan)
            return value

        folded = dict(values)  # what folded operators see; touched bases updated

        for op in self.order:
            written = self.written_by.get(op, ())
            if isinstance(op, TimeUpdate):
                continue
            if isinstance(op, NodeInput) and op.node in feeds:
                data = feeds[op.node][:, :T]
                base = layout.views[op.output].base
                current = rows(base)
                if current is not None and _same_every_step(data):
                    # e.g. an image shown for all n_steps: later products of it
                    # run once per sample instead of once per step
                    steady[base] = _set_folded(layout, op.output, current, data[:, 0])
                    continue
                series[base] = _set_folded(
                    layout, op.output, window(base),
                    data.transpose(0, 1).reshape((T * B,) + data.shape[2:]),
                )
                steady.pop(base, None)
                continue
            step = step_of.get(op)
            if step is None:
                continue
            if isinstance(op, FOLDED) or (isinstance(op, NodeInput) and op.original is None):
                now = {base: rows(base) for base in self.touched[op]}
                if all(value is not None for value in now.values()):
                    folded.update(now)
                    sv = SignalValues(layout, folded, B)
                    sv.training = training
                    step(sv)
                    for base in written:
                        steady[base] = sv.values[base]
                    continue
                held = {}  # bases it only increments, the same every step so far
                for base in self.touched[op]:
                    if (base in steady and base not in series and base in self.inc_only[op]
                            and layout.batched(base)):
                        # increment zeros instead of a copy of the value at every
                        # step, then add it back broadcast (increments are sums)
                        held[base] = steady[base]
                        folded[base] = zero_increments(steady[base], T)
                    else:
                        folded[base] = window(base)
                sv = SignalValues(layout, folded, T * B)
                sv.training = training
                step(sv)
                for base in written:
                    value = sv.values[base]
                    if base in held and bool(held[base].any()):
                        value = (value.reshape((T,) + held[base].shape) + held[base]).reshape(
                            value.shape
                        )
                    series[base] = value
                    steady.pop(base, None)
                continue
            fast = getattr(step, "series", None)
            if fast is not None:
                for base in self.touched[op]:
                    folded[base] = window(base)
                fold = SignalValues(layout, folded, T * B)
                start = SignalValues(layout, values, B)
                result = fast(fold, start, B, T, training, self.private.get(op, set()))
                if result is not None:
                    for base, value in result.items():
                        self._store(base, value, values, series, ended, B, T)
                        steady.pop(base, None)
                    continue
            outs = self._scan(op, step, values, window, written, B, T, feeds, training)
            for base, value in outs.items():
                self._store(base, value, values, series, ended, B, T)
                steady.pop(base, None)

        data = {}
        for probe in probes:
            sig = probe_signal(probe)
            base = layout.views[sig].base
            full = series.get(base)
            if base in ended:
                full = ended[base].reshape((T * B,) + ended[base].shape[2:])
            n = start_step + np.arange(1, T + 1)
            keep = np.flatnonzero(n % periods[probe] < 1)
            if full is None:  # the same all window: constant, initial or steady
                value = SignalValues(layout, {**values, **steady}, B).read(sig)
                if not layout.batched(base):
                    value = value.expand((B,) + value.shape)
                data[probe] = value[:, None].expand(
                    (B, len(keep)) + value.shape[1:]
                )
                continue
            value = SignalValues(layout, {base: full}, T * B).read(sig)
            value = value.reshape((T, B) + value.shape[1:])
            data[probe] = value[torch.as_tensor(keep, device=value.device)].transpose(0, 1)

        final = dict(values)
        for base in self.writers:
            if base in ended:
                last = ended[base][-1]
            elif base in series:
                last = series[base].reshape((T, B) + series[base].shape[1:])[-1]
            else:
                if base in steady:
                    final[base] = steady[base]
                continue
            final[base] = last[0] if not layout.batched(base) else last
        return data, SignalValues(layout, final, B)

    def _store(self, base, value, values, series, ended, B, T):
        """Record an op's per-step output ``(T, B, ...)`` of ``base``."""
        if base not in self.updated:
            series[base] = value.reshape((T * B,) + value.shape[2:])
            return
        ended[base] = value
        if base not in self.unread:
            # readers see the previous step's update: shift by one step
            shifted = torch.cat([values[base][None], value[:-1]], dim=0)
            series[base] = shifted.reshape((T * B,) + value.shape[2:])

    def _scan(self, op, step, values, window, written, B, T, feeds, training):
        """Run a stateful operator's step once per time step."""
        layout = self.layout
        # its own state carries over from its previous step (the window's value
        # before it is only meaningful for signals an earlier writer set)
        carry = {
            base: values[base]
            for base in written
            if self.writers[base][0][0] is op
        }
        inputs = {}  # the window's values, (T, B, ...), of what else it touches
        for base in self.touched[op]:
            if base not in carry and (layout.batched(base) or base in self.time_bases):
                seq = window(base)
                inputs[base] = seq.reshape((T, B) + seq.shape[1:])
        outs = {base: [] for base in written}
        vals = dict(values)
        sv = SignalValues(layout, vals, B)
        sv.feeds = feeds
        sv.training = training
        for t in range(T):
            sv.step_index = t
            vals.update(carry)
            for base, seq in inputs.items():
                vals[base] = seq[t, 0] if base in self.time_bases else seq[t]
            step(sv)
            for base in written:
                value = vals[base]
                outs[base].append(value)
                if base in carry:
                    carry[base] = value
        return {base: torch.stack(seq) for base, seq in outs.items()}


class _Ineligible(Exception):
    pass


def _check_type(op):
    if isinstance(op, (TimeUpdate, NodeInput) + FOLDED + SCANNED):
        return
    raise _Ineligible(f"{type(op).__name__} ({op}) has no windowed form")


def _toposort(ops, after):
    remaining = {op: set(deps) for op, deps in after.items()}
    order, ready = [], [op for op in ops if not remaining[op]]
    position = {op: i for i, op in enumerate(ops)}
    dependents = {op: [] for op in ops}
    for op, deps in after.items():
        for dep in deps:
            dependents[dep].append(op)
    while ready:
        ready.sort(key=position.get, reverse=True)  # keep step order where free
        op = ready.pop()
        order.append(op)
        for nxt in dependents[op]:
            remaining[nxt].discard(op)
            if not remaining[nxt]:
                ready.append(nxt)
    if len(order) != len(ops):
        stuck = [op for op in ops if remaining[op]]
        raise _Ineligible(f"a loop across time steps through {stuck[0]}")
    return order


def _covers(base, ws, views):
    """Whether the sets before any other write cover every element of ``base``."""
    covered = np.zeros(max(int(np.prod(base.shape, dtype=np.int64)), 1), dtype=bool)
    for _, kind, sig in ws:
        if kind != "sets":
            break
        view = views[sig]
        if view.kind == "full":
            return True
        if view.kind == "slice":
            covered[view.start:view.stop] = True
        else:
            covered[view.index.numpy()] = True
    return bool(covered.all())


def _fold_broadcast(value, T):
    """``(B, *shape)`` repeated over ``T`` steps, folded to ``(T*B, *shape)``."""
    B = value.shape[0]
    return value[None].expand((T,) + value.shape).reshape((T * B,) + value.shape[1:])


def zero_increments(value, T):
    """Zeros in the folded shape of ``value`` ``(B, ...)`` over ``T`` steps,
    without memory; `SignalValues` takes an increment of them as the result."""
    zeros = value.new_zeros(()).expand((T * value.shape[0],) + value.shape[1:])
    zeros.zero_increments = True
    return zeros


def _same_every_step(data):
    """Whether ``data`` ``(B, T, ...)`` holds the same values at every step."""
    if data.shape[1] == 1 or data.stride(1) == 0:
        return True
    if torch.compiler.is_compiling():
        # a value-dependent branch cannot be traced (torch.export); "varying"
        # is right for constant data too, only slower
        return False
    return torch.equal(
        data, data[:, :1].expand(data.shape)
    )


def _set_folded(layout, sig, current, data):
    sv = SignalValues(layout, {layout.views[sig].base: current}, current.shape[0])
    sv.set(sig, data)
    return sv.values[layout.views[sig].base]
