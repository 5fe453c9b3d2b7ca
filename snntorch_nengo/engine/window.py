"""Windowed runs: each operator once over all time steps, where Nengo allows.

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
  kernel call over ``[T, N]`` (their `.Step`'s ``series``), and so do linear
  synapses (`kernels.ops.linear_filter_scan`); the others are stepped inside
  the window, and listed as fallbacks of the run.

Within a step Nengo orders each signal's writers as sets, then increments,
then reads, then updates; an update is seen only at the next step. Over a
window that becomes: run a signal's updater first, then let its readers see
the updater's output shifted by one step. The plan is a topological order of
that graph; if it has a cycle (a recurrent connection through a synapse, a
learning rule closing a loop), the model steps as before.

Results equal stepping up to the summation order of the larger matrix products.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING

import numpy as np
import torch
from nengo.builder.probe import SimProbe

from .ops import FOLDED, SCANNED, TIME, window_kind  # each type's, declared in ops/
from .schedule import NodeInput
from .signals import SignalValues
from .request import Fallback, RunResult

if TYPE_CHECKING:
    from nengo.builder.operator import Operator
    import nengo
    from nengo.builder.signal import Signal

    from .ops import Step
    from .signals import SignalLayout

# how a scanned operator without a series form runs in a window
STEPPED = "stepped in the window"


class WindowPlan:
    """Whether and how a model's operators run over a whole window at once.

    ``reason`` says why a model cannot (None when it can); ``order`` lists the
    operators in the window's execution order. ``probes`` maps each probe to
    the signal it records.
    """

    def __init__(
        self,
        step_order: Sequence[Operator],
        layout: SignalLayout,
        time_bases: tuple[Signal | None, Signal | None],
        dt: float,
        probes: Mapping[nengo.Probe, Signal] | None = None,
    ) -> None:
        self.layout = layout
        self.dt = dt
        self.probes = dict(probes or {})
        self.probed = {layout.views[sig].base for sig in self.probes.values()}
        self.time_bases = time_bases  # (step base, time base)
        self.order = None
        self.reason = None
        try:
            self._plan(step_order)
        except _Ineligible as e:
            self.reason = str(e)

    @property
    def eligible(self) -> bool:
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
            if window_kind(op) == FOLDED:
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

    def static_fallbacks(self, op_steps: Sequence[Step]) -> list:
        """Scanned operators whose `Step` has no series form: stepped in any window."""
        has_step = {step.op: step for step in op_steps}
        return [
            Fallback(op, STEPPED, f"{type(op).__name__} has no series form")
            for op in self.order or ()
            if window_kind(op) == SCANNED and op in has_step
            and has_step[op].series is None
            and not (isinstance(op, NodeInput) and op.original is None)
        ]

    # -- running

    def run(
        self,
        values: dict,
        op_steps: list,
        n_steps: int,
        batch_size: int,
        start_step: int,
        feeds: dict,
        training: bool,
        period: Callable[[nengo.Probe], float],
    ) -> RunResult:
        """Run the window; probes are sampled every ``period(probe)`` steps."""
        window = _WindowRun(self, values, n_steps, batch_size, feeds, training)
        step_of = {step.op: step for step in op_steps}
        for op in self.order:
            window.run_op(op, step_of.get(op))
        return RunResult(
            window.probe_data(start_step, period), window.final_state(), window.fallbacks
        )


class _WindowRun:
    """One window's values as the operators run over it, in the plan's order.

    Each written base is in at most one of three forms: ``series`` ``(T*B, ...)``,
    its value after the writers run so far, step-major; ``steady`` ``(B, ...)``,
    its value when it is the same at every step (unwritten inputs, and outputs of
    folded operators whose inputs are all like that); ``ended`` ``(T, B, ...)``,
    an updated base's value at the end of each step. ``folded`` is the value
    dict folded operators run on.
    """

    def __init__(self, plan: WindowPlan, values: dict, n_steps: int, batch_size: int,
                 feeds: dict, training: bool) -> None:
        self.plan = plan
        self.layout = plan.layout
        self.values = values
        self.T, self.B = n_steps, batch_size
        self.feeds = feeds
        self.training = training
        self.series = {}
        self.ended = {}
        self.steady = {}
        self.folded = dict(values)
        self.fallbacks = []
        T, B = self.T, self.B
        step_base, time_base = plan.time_bases
        first = values[step_base]
        step_series = first + 1 + torch.arange(T, dtype=first.dtype, device=first.device)
        time_series = step_series.to(values[time_base].dtype) * plan.dt
        self.series[step_base] = step_series.repeat_interleave(B)
        self.series[time_base] = time_series.repeat_interleave(B)

    # -- the values readers see

    def window(self, base):
        """The value every reader sees over the window, folded."""
        if base in self.series:
            return self.series[base]
        if base in self.steady:
            value = self.steady[base]
            return _fold_broadcast(value, self.T) if self.layout.batched(base) else value
        value = self.values[base]
        if not self.layout.batched(base):
            return value
        if base in self.plan.writers and base not in self.plan.updated:
            # sets overwrite all of it before anything reads it (see _plan)
            return value.new_empty((self.T * self.B,) + value.shape[1:])
        return _fold_broadcast(value, self.T)

    def rows(self, base):
        """The value over the window as ``(B, ...)`` if it is the same at every
        step, else None."""
        if base in self.series:
            return None
        if base in self.steady:
            return self.steady[base]
        value = self.values[base]
        plan = self.plan
        if base in plan.writers and base not in plan.updated and self.layout.batched(base):
            return value.new_empty(value.shape)  # set before read (see _plan)
        return value

    # -- the operators

    def run_op(self, op, step) -> None:
        kind = window_kind(op)
        if kind == TIME:
            return  # the window's step and time series are made up front
        if isinstance(op, NodeInput) and op.node in self.feeds:
            self.feed(op)
        elif step is None:
            return
        elif kind == FOLDED:
            self.fold(op, step)
        elif not self.run_series(op, step):
            self.scan(op, step)

    def feed(self, op) -> None:
        """An input node's fed data, held once per sample when it never changes."""
        T, B, layout = self.T, self.B, self.layout
        data = self.feeds[op.node][:, :T]
        base = layout.views[op.output].base
        current = self.rows(base)
        if current is not None and _same_every_step(data):
            # e.g. an image shown for all n_steps: later products of it run once
            # per sample instead of once per step
            self.steady[base] = _set_folded(layout, op.output, current, data[:, 0])
            return
        self.series[base] = _set_folded(
            layout, op.output, self.window(base),
            data.transpose(0, 1).reshape((T * B,) + data.shape[2:]),
        )
        self.steady.pop(base, None)

    def fold(self, op, step) -> None:
        """A folded operator: once on its steady inputs, else once over the window."""
        now = {base: self.rows(base) for base in self.plan.touched[op]}
        if all(value is not None for value in now.values()):
            self.folded.update(now)
            sv = SignalValues(self.layout, self.folded, self.B, training=self.training)
            step(sv)
            for base in self.plan.written_by.get(op, ()):
                self.steady[base] = sv.values[base]
            return
        T, B, layout, steady = self.T, self.B, self.layout, self.steady
        held = {}  # bases it only increments, the same every step so far
        zeros = set()
        for base in self.plan.touched[op]:
            if (base in steady and base not in self.series
                    and base in self.plan.inc_only[op] and layout.batched(base)):
                # increment zeros instead of a copy of the value at every step,
                # then add it back broadcast (increments are sums)
                held[base] = steady[base]
                self.folded[base] = _folded_zeros(steady[base], T)
                zeros.add(base)
            else:
                self.folded[base] = self.window(base)
        sv = SignalValues(layout, self.folded, T * B, training=self.training, zeros=zeros)
        step(sv)
        for base in self.plan.written_by.get(op, ()):
            value = sv.values[base]
            # adding zeros is skipped in eager runs unless they carry a gradient
            # (a trained bias initialised to zero); a traced run (torch.export)
            # cannot branch on values, and adds them
            if base in held and (torch.compiler.is_compiling() or held[base].requires_grad
                                 or bool(held[base].any())):
                value = (value.reshape((T,) + held[base].shape) + held[base]).reshape(
                    value.shape
                )
            self.series[base] = value
            steady.pop(base, None)

    def run_series(self, op, step) -> bool:
        """A scanned operator through its series form; False if it has none here."""
        if step.series is None:
            reason = f"{type(op).__name__} has no series form"
            if isinstance(op, NodeInput):
                reason = "the node's own function runs, unfed"
            self.fallbacks.append(Fallback(op, STEPPED, reason))
            return False
        held = {}
        for base in self.plan.touched[op]:
            if (step.series_held and base in self.steady and base not in self.series
                    and self.layout.batched(base)):
                held[base] = self.steady[base]
            else:
                self.folded[base] = self.window(base)
        fold = SignalValues(self.layout, self.folded, self.T * self.B)
        start = SignalValues(self.layout, self.values, self.B)
        extra = {"held": held} if step.series_held else {}
        result = step.series(fold, start, self.B, self.T, self.training,
                             self.plan.private.get(op, set()), **extra)
        if not isinstance(result, dict):
            reason = result if isinstance(result, str) else "its series form declined"
            self.fallbacks.append(Fallback(op, STEPPED, reason))
            return False
        for base, value in result.items():
            self.store(base, value)
        return True

    def scan(self, op, step) -> None:
        """Run a stateful operator's step once per time step."""
        layout, plan, T, B = self.layout, self.plan, self.T, self.B
        written = plan.written_by.get(op, ())
        # its own state carries over from its previous step (the window's value
        # before it is only meaningful for signals an earlier writer set)
        carry = {
            base: self.values[base]
            for base in written
            if plan.writers[base][0][0] is op
        }
        inputs = {}  # the window's values, (T, B, ...), of what else it touches
        for base in plan.touched[op]:
            if base not in carry and (layout.batched(base) or base in plan.time_bases):
                seq = self.window(base)
                inputs[base] = seq.reshape((T, B) + seq.shape[1:])
        outs = {base: [] for base in written}
        vals = dict(self.values)
        sv = SignalValues(layout, vals, B, feeds=self.feeds, training=self.training)
        for t in range(T):
            sv.at_step(t)
            vals.update(carry)
            for base, seq in inputs.items():
                vals[base] = seq[t, 0] if base in plan.time_bases else seq[t]
            step(sv)
            for base in written:
                value = vals[base]
                outs[base].append(value)
                if base in carry:
                    carry[base] = value
        for base, seq in outs.items():
            self.store(base, torch.stack(seq))

    def store(self, base, value) -> None:
        """Record an op's per-step output ``(T, B, ...)`` of ``base``; of an
        updated base also ``(T + 1, B, ...)``, its value before the window
        first, which its readers see shifted by one step without a copy."""
        T, B = self.T, self.B
        self.steady.pop(base, None)
        if base in self.plan.updated and value.shape[0] == T + 1:
            self.ended[base] = value[1:]
            if base not in self.plan.unread:
                self.series[base] = value[:-1].reshape((T * B,) + value.shape[2:])
            return
        if base not in self.plan.updated:
            if T > 1 and value.stride(0) == 0 and self.layout.batched(base):
                # the same at every step (a kernel's final state, see
                # ops/neurons.py): held, so that no copy of it is made per step
                self.series.pop(base, None)
                self.steady[base] = value[0]
                return
            self.series[base] = value.reshape((T * B,) + value.shape[2:])
            return
        self.ended[base] = value
        if base not in self.plan.unread:
            # readers see the previous step's update: shift by one step
            shifted = torch.cat([self.values[base][None], value[:-1]], dim=0)
            self.series[base] = shifted.reshape((T * B,) + value.shape[2:])

    # -- the results

    def probe_data(self, start_step: int, period) -> dict:
        """``{probe: (B, n_samples, ...)}``, sampled every ``period(probe)`` steps."""
        layout, T, B = self.layout, self.T, self.B
        data = {}
        for probe, sig in self.plan.probes.items():
            base = layout.views[sig].base
            full = self.series.get(base)
            if base in self.ended:
                full = self.ended[base].reshape((T * B,) + self.ended[base].shape[2:])
            keep = _sampled_steps(start_step, T, period(probe))
            if full is None:  # the same all window: constant, initial or steady
                value = SignalValues(layout, {**self.values, **self.steady}, B).read(sig)
                if not layout.batched(base):
                    value = value.expand((B,) + value.shape)
                data[probe] = value[:, None].expand((B, len(keep)) + value.shape[1:])
                continue
            value = SignalValues(layout, {base: full}, T * B).read(sig)
            value = value.reshape((T, B) + value.shape[1:])
            if isinstance(keep, range):
                index = torch.arange(keep.stop, device=value.device)
            else:
                index = torch.as_tensor(keep, dtype=torch.int64, device=value.device)
            data[probe] = value[index].transpose(0, 1)
        return data

    def final_state(self) -> SignalValues:
        """Every base's value at the end of the window's last step."""
        layout, T, B = self.layout, self.T, self.B
        final = dict(self.values)
        for base in self.plan.writers:
            if base in self.ended:
                last = self.ended[base][-1]
            elif base in self.series:
                last = self.series[base].reshape((T, B) + self.series[base].shape[1:])[-1]
            else:
                if base in self.steady:
                    final[base] = self.steady[base]
                continue
            final[base] = last[0] if not layout.batched(base) else last
        return SignalValues(layout, final, B)


class _Ineligible(Exception):
    pass


def _check_type(op):
    if window_kind(op) is not None:
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


def _sampled_steps(start_step, n_steps, period):
    """The window's steps after which a probe of ``period`` steps samples.

    Python integers, not numpy: torch.compile folds them into constants, where
    numpy's would become tensors whose count depends on their values.
    """
    if period == 1:
        return range(n_steps)
    return [t for t in range(n_steps) if (start_step + t + 1) % period < 1]


def _fold_broadcast(value, T):
    """``(B, *shape)`` repeated over ``T`` steps, folded to ``(T*B, *shape)``."""
    B = value.shape[0]
    return value[None].expand((T,) + value.shape).reshape((T * B,) + value.shape[1:])


def _folded_zeros(value, T):
    """Zeros in the folded shape of ``value`` ``(B, ...)`` over ``T`` steps,
    without memory (`SignalValues` is told to take an increment of them as the
    result: its ``zeros``)."""
    return value.new_zeros(()).expand((T * value.shape[0],) + value.shape[1:])


def held_feeds(feeds: dict) -> dict:
    """``feeds``, with data the same at every step replaced by its first step
    expanded (stride 0 over time).

    A window runs such data once per sample (`_WindowRun.feed`). Eager runs
    compare the values there; a torch.compile graph cannot, and sees only
    strides, so traced runs call this before their graph
    (`untraced_held_feeds`). The values are the same either way.
    """
    return {
        node: data[:, :1].expand(data.shape) if _same_every_step(data) else data
        for node, data in feeds.items()
    }


def untraced_held_feeds() -> Callable[[dict], dict]:
    """`held_feeds`, run outside a torch.compile graph.

    Made on first use, not at import: `torch.compiler.disable` imports
    torch._dynamo, which takes seconds. (The first trace, which makes it,
    breaks once more there.) Not `functools.cache`: dynamo will not trace a
    cached function, and breaks the graph at every call.
    """
    global _UNTRACED_HELD_FEEDS
    if _UNTRACED_HELD_FEEDS is None:
        _UNTRACED_HELD_FEEDS = torch.compiler.disable(held_feeds)
    return _UNTRACED_HELD_FEEDS


_UNTRACED_HELD_FEEDS = None


def _same_every_step(data):
    """Whether ``data`` ``(B, T, ...)`` holds the same values at every step."""
    if data.shape[1] == 1 or data.stride(1) == 0:
        return True
    if torch.compiler.is_compiling():
        # a value-dependent branch cannot be traced (torch.export; torch.compile
        # checks before, `held_feeds`); "varying" is right for constant data
        # too, only slower
        return False
    return torch.equal(
        data, data[:, :1].expand(data.shape)
    )


def _set_folded(layout, sig, current, data):
    sv = SignalValues(layout, {layout.views[sig].base: current}, current.shape[0])
    sv.set(sig, data)
    return sv.values[layout.views[sig].base]
