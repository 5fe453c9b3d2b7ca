"""SimNeurons: a neuron type's update, as a pure torch function of (J, state).

In training mode (``sv.training``) spiking types run their training step
instead (rate counterpart or surrogate gradient; see
`snntorch_nengo.neurons.train_mode`), chosen from the network's settings.

Its `Step`'s ``series`` runs the operator over a whole window (`engine.window`):
stateless updates (rate neurons, and spiking neurons swapped for their rates in
training) once on ``(batch * T, N)``; LIF, AdaptiveLIF and
SpikingRectifiedLinear through their fused multi-step kernels (`kernels.ops`),
in eval mode and when training with a surrogate gradient (the kernels' backward
pass computes the surrogate the training step would).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np
from nengo.builder.neurons import SimNeurons

from ...kernels import ops as kernel_ops
from ...neurons import neuron_step, training_form
from ...neurons.streams import RowStreams
from ...neurons.specs import kernel_spec
from ...neurons.surrogates import kernel_surrogate
from ..signals import SignalValues
from . import SCANNED, OpRegistry, Step

if TYPE_CHECKING:
    import nengo

    from . import StepContext


@OpRegistry.declare(SimNeurons, window=SCANNED, lower="sim_neurons")
def make_sim_neurons(op: SimNeurons, ctx: StepContext) -> Step:
    neuron_type = op.neurons
    update = neuron_step(neuron_type)
    train = training_form(neuron_type, ctx.settings)
    train_update = train.step
    rng = op.state_extra.get("rng")
    if rng is not None and ctx.batch_size > 1:
        rng = RowStreams([rng] + [
            np.random.RandomState(ctx.batch_rng.randint(np.iinfo(np.int32).max))
            for _ in range(1, ctx.batch_size)
        ])
    state_sigs = op.state
    dt = ctx.dt

    J_sig, output_sig = op.J, op.output

    def step_sim_neurons(sv):
        J = sv.read(J_sig)
        state = {name: sv.read(sig) for name, sig in state_sigs.items()}
        step = train_update if sv.training else update
        output, state = step(neuron_type, dt, J, state, rng)
        sv.set(output_sig, output)
        for name, sig in state_sigs.items():
            sv.set(sig, state[name])

    series = _series(op, ctx, update, train) if rng is None else None
    return Step(step_sim_neurons, op, series=series, series_held=series is not None)


def _series(op, ctx, update, train):
    neuron_type = op.neurons
    views = ctx.layout.views
    if any(views[sig].kind != "full" for sig in [op.output, *op.state.values()]):
        return None
    out_base = views[op.output].base
    state_bases = {name: views[sig].base for name, sig in op.state.items()}
    kernel = fused_kernel(neuron_type)

    def series(fold, start, B, T, training, private, held=None):
        """{base: (T, B, ...)} over the window, or why not (it is stepped).

        ``fold`` holds the window's values step-major, ``(T * B, ...)``;
        ``held`` those the same at every step, ``(B, ...)``."""
        held = held or {}
        step = train.step if training else update
        rate = train.rate_type if training else None
        stateless = not op.state or (rate is not None and not rate.state)
        if stateless:
            # the state passes through unchanged: leave it out of the result
            J = fold.with_held(held, T, B).read(op.J)
            state = {name: start.read(sig) for name, sig in op.state.items()}
            output, _ = step(neuron_type, ctx.dt, J, state, None)
            return {out_base: output.reshape((T, B) + output.shape[1:])}
        if kernel is None:
            return f"no fused multi-step kernel for {type(neuron_type).__name__}"
        # the kernels' backward pass puts the training step's surrogate on the
        # threshold (none in eval mode: the exact spikes' zero derivative)
        surrogate = kernel_surrogate(train.surrogate if training else None)
        if training and train.surrogate is None:
            return f"training: {_describe(train)} has no fused kernel"
        if surrogate is None:
            return f"training: the kernels have no form of the surrogate {train.surrogate!r}"
        if not set(state_bases.values()) <= private:
            return "its state is probed or read elsewhere (the kernel keeps the last)"
        rows = SignalValues.read_held(ctx.layout, held, op.J, B)
        J = rows if rows is not None else fold.with_held(held, T, B).read(op.J)
        if J.dim() != 2:
            return "its input is not (batch, neurons)"
        backend = _backend(J, backward=training)
        if backend == "reference":
            # the reference is a Python loop over time either way
            return "the kernels run their Python reference here"
        N = J.shape[1]
        if rows is None:
            J = J.reshape(T, B * N)  # time-major: a view of the step-major fold
        elif backend == "cpp":
            # the C++ kernels read a held input from its one row
            J = J.reshape(B * N)[None].expand(T, B * N)
        else:
            J = J.reshape(B * N)[None].expand(T, B * N).contiguous()
        states = [start.read(op.state[name]).reshape(B * N) for name in kernel[1]]
        output, *finals = kernel[0](J, *states, ctx.dt, *kernel[2](neuron_type), *surrogate)
        out = {out_base: output.reshape(T, B, N)}
        for name, final in zip(kernel[1], finals):
            # only the last step's state is kept: nothing else reads it (`private`)
            out[state_bases[name]] = final.reshape(1, B, N).expand(T, B, N)
        return out

    return series


def _describe(train):
    if train.rate_type is not None:
        return f"its rate counterpart {type(train.rate_type).__name__} (stateful)"
    return "its training step"


def _backend(J, backward=False):
    return kernel_ops.backend(J, backward)


def fused_kernel(
    neuron_type: nengo.neurons.NeuronType,
) -> (
    tuple[
        Callable,
        tuple[str, ...],
        Callable[[nengo.neurons.NeuronType], tuple[float, ...]],
    ]
    | None
):
    """(the kernel without its lowpass, `kernel_ops.direct_unfiltered`; state
    names in its order; params(neuron type)) or None."""
    spec = kernel_spec(neuron_type)
    if spec is None:
        return None
    return kernel_ops.direct_unfiltered(spec.kernel.name), spec.states, spec.param_values
