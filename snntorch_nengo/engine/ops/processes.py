"""SimProcess: synapses natively in torch, other processes through numpy."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import torch
from nengo.builder.processes import SimProcess
from nengo.synapses import LinearFilter

from ...kernels import ops as kernel_ops
from ...synapses import is_native_synapse, linear_filter_scan_form, synapse_step
from ...utils import to_numpy
from ..signals import SignalValues
from . import SCANNED, OpRegistry, Step

if TYPE_CHECKING:
    from . import StepContext


@OpRegistry.declare(SimProcess, window=SCANNED, lower="sim_process")
def make_sim_process(op: SimProcess, ctx: StepContext) -> Step:
    # consume the simulator's random state exactly as nengo's SimProcess does, so
    # every process sees the same random sequence as in the reference simulator
    rng = op.process.get_rng(ctx.rng)
    if op.input is not None and is_native_synapse(op.process):
        return _native_synapse(op, ctx)
    return _numpy_process(op, ctx, rng)


def _write(sv, op, value):
    if op.mode == "inc":
        sv.inc(op.output, value)
    else:
        sv.set(op.output, value)


def _native_synapse(op, ctx):
    update = synapse_step(op.process, ctx.dt)
    state_sigs = op.state

    def step_synapse(sv):
        x = sv.read(op.input)
        if not ctx.batched(op.input):
            x = x.expand((sv.batch_size,) + x.shape)
        state = {name: sv.read(sig) for name, sig in state_sigs.items()}
        y, state = update(x, state)
        for name, sig in state_sigs.items():
            sv.set(sig, state[name])
        _write(sv, op, y)

    series, series_held = _synapse_series(op, ctx, update)
    return Step(step_synapse, op, series=series, series_held=series_held)


def _synapse_series(op, ctx, update):
    """The synapse over a window: one scan kernel call for a LinearFilter, else
    its own loop, without per-step bookkeeping. With whether the series takes
    ``held`` (`.Step`'s ``series_held``)."""
    views = ctx.layout.views
    if op.mode != "update" or any(
        views[sig].kind != "full" for sig in [op.output, *op.state.values()]
    ):
        return None, False
    out_base = views[op.output].base
    state_bases = {name: views[sig].base for name, sig in op.state.items()}
    looped = _looped_series(op, ctx, update, out_base, state_bases)
    if not isinstance(op.process, LinearFilter) or set(op.state) != {"X"}:
        return looped, False
    scan = _scan_series(op, ctx, linear_filter_scan_form(op.process, ctx.dt), out_base,
                        state_bases["X"], looped)
    return scan, True


def _scan_series(op, ctx, form, out_base, state_base, looped):
    """A LinearFilter over a window as one `kernels.ops.linear_filter_scan` call
    (differentiable: training runs through it too)."""
    S = form.n_states
    # OneX keeps its output as its state: its states over the window are its outputs
    state_is_output = S == 1 and not form.general and form.C == [1.0] and form.D == 0.0
    state_sig = op.state["X"]
    batched_state = ctx.batched(state_sig)
    batched_output = ctx.batched(op.output)

    def series(fold, start, B, T, training, private, held=None):
        held = held or {}
        keep_state = state_base not in private
        if not batched_state or (keep_state and not state_is_output and S > 0):
            # (its state at every step is read elsewhere: only the loop has it)
            return looped(fold.with_held(held, T, B), start, B, T, training, private)
        x = SignalValues.read_held(ctx.layout, held, op.input, B)
        if x is not None:
            # the same input at every step: one row, expanded over the window
            shape = x.shape[1:]
            x = x.reshape((1, -1)).expand((T, -1))
        else:
            x = fold.with_held(held, T, B).read(op.input)  # step-major (T * B, *shape)
            shape = x.shape[1:] if ctx.batched(op.input) else x.shape
            x = x.reshape((T, -1)) if ctx.batched(op.input) else (
                x.expand((T, B) + x.shape).reshape((T, -1))
            )
        X0 = start.read(state_sig)  # (B, S, *shape)
        if S == 0:  # NoX: a passthrough
            y = form.D * x
            X = X0[None].expand((T,) + X0.shape)
            return {out_base: y.reshape((T, B) + shape), state_base: X}
        x0 = X0.reshape((B, S, -1)).transpose(0, 1).reshape((S, -1))
        # the output before the window as the scan's first row: the window's
        # readers see it one step late (`_WindowRun.store`), with no copy
        y0 = start.read(op.output).reshape(-1) if batched_output else None
        y, xT = kernel_ops.linear_filter_scan(
            x, x0, form.A, form.B, form.C, form.D, form.general, False, y0
        )
        y = y.reshape((-1, B) + shape)
        if keep_state:  # OneX: the state is the output
            X = y[-T:].unsqueeze(2)
        else:
            # only the final state matters: nothing else reads it
            final = xT.reshape((S, B) + shape).transpose(0, 1)
            X = final[None].expand((T,) + final.shape)
        return {out_base: y, state_base: X}

    return series


def _looped_series(op, ctx, update, out_base, state_bases):
    """The synapse's own step, looped over the window."""

    def series(fold, start, B, T, training, private):
        x = fold.read(op.input)  # step-major (T * B, ...)
        x = x.reshape((T, B) + x.shape[1:]) if ctx.batched(op.input) else (
            x.expand((T, B) + x.shape)
        )
        state = {name: start.read(sig) for name, sig in op.state.items()}
        ys, states = [], {name: [] for name in state}
        keep_states = not set(state_bases.values()) <= private
        for t in range(T):
            y, state = update(x[t], state)
            ys.append(y)
            if keep_states:
                for name, value in state.items():
                    states[name].append(value)
        out = {out_base: torch.stack(ys)}
        for name, base in state_bases.items():
            out[base] = (
                torch.stack(states[name]) if keep_states
                # only the final state matters: nothing else reads it
                else state[name][None].expand((T,) + state[name].shape)
            )
        return out

    return series


def _numpy_process(op, ctx, rng):
    """Run the process's own numpy step, one instance per batch item.

    Batch item 0 uses nengo's random state, so a batch of one reproduces the
    reference simulator. A process with its own ``seed`` gives every item that
    stream (nengo's ``Process.get_rng``: the seed names the signal); without one,
    further items get independent streams (docs/architecture.md, Batching).
    """
    process = op.process
    shape_in = op.input.shape if op.input is not None else (0,)
    shape_out = op.output.shape
    if process.seed is not None:
        rngs = [rng] + [
            np.random.RandomState(process.seed) for _ in range(1, ctx.batch_size)
        ]
    else:
        rngs = [rng] + [
            np.random.RandomState(ctx.batch_rng.randint(np.iinfo(np.int32).max))
            for _ in range(1, ctx.batch_size)
        ]
    steps = []
    for item_rng in rngs:
        state = {
            name: np.array(sig.initial_value, copy=True)
            for name, sig in op.state.items()
        }
        steps.append(process.make_step(shape_in, shape_out, ctx.dt, item_rng, state))
    x_batched = op.input is not None and ctx.batched(op.input)

    def step_process(sv):
        t = sv.read(op.t).item()
        if op.input is None:
            ys = [step(t) for step in steps]
        else:
            x = to_numpy(sv.read(op.input))
            xs = x if x_batched else [x] * len(steps)
            ys = [step(t, np.copy(xb)) for step, xb in zip(steps, xs)]
        current = sv.values[op.output.base]
        # np.asarray(None, float) is NaN, as nengo's `output[...] = None` gives
        y = np.stack([np.broadcast_to(np.asarray(y, dtype=float), shape_out) for y in ys])
        y = torch.tensor(y, dtype=current.dtype, device=current.device)
        _write(sv, op, y if ctx.batched(op.output) else y[0])

    # the numpy steps keep their own state: remade on reset
    return Step(step_process, op, private_state=True)
