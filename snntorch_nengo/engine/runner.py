"""The stepping engine: runs a built Nengo model's operators on torch tensors."""

import numpy as np
import torch
from nengo.exceptions import ValidationError

from .ops import OpRegistry, StepContext
from .schedule import NodeInput, input_nodes, step_order, with_input_ops
from .signals import SignalLayout, SignalValues


class Engine:
    """Executes a `nengo.builder.Model` step by step, batched, in torch.

    The engine owns no tensors: `run` takes the value of every base signal
    (parameters, constants, state) and returns the new state and the probe data,
    so the module tree stays the single owner of the data.
    """

    def __init__(self, model, dtype, settings=None):
        self.model = model
        self.dtype = dtype
        self.settings = dict(settings or {})
        self.input_nodes = input_nodes(model)
        self.operators = with_input_ops(model, self.input_nodes)
        self.step_order = step_order(self.operators)
        self.layout = SignalLayout(
            self.operators, dtype, shared=[model.step, model.time]
        )
        self.probes = list(model.probes)
        for probe in self.probes:
            self.layout.add(model.sig[probe]["in"])
        for op in self.step_order:  # unsupported operators fail at build time
            if not isinstance(op, NodeInput) or op.original is not None:
                OpRegistry.maker_for(getattr(op, "original", op))

    def make_steps(self, batch_size, seed, device):
        """Fresh step functions (Nengo's ``make_step``), in step order."""
        ctx = StepContext(
            dt=self.model.dt,
            rng=np.random.RandomState(seed),
            batch_size=batch_size,
            layout=self.layout,
            device=device,
            dtype=self.dtype,
            seed=seed,
            settings=self.settings,
        )
        steps = (self._make_step(op, ctx) for op in self.step_order)
        return [step for step in steps if step is not None]

    def _make_step(self, op, ctx):
        if not isinstance(op, NodeInput):
            return OpRegistry.make_step(op, ctx)
        original = None if op.original is None else OpRegistry.make_step(op.original, ctx)
        node, output = op.node, op.output

        def step_node_input(sv):
            data = sv.feeds.get(node)
            if data is not None:
                sv.set(output, data[:, sv.step_index])
            elif original is not None:
                original(sv)
            else:
                sv.set(output, self.initial_value(output.base, sv.values[output.base]))

        return step_node_input

    def initial_value(self, base, like=None):
        device = None if like is None else like.device
        return self.layout.initial_value(base, device=device)

    def initial_state(self, batch_size, device=None):
        """Initial values of the dynamic signals, batched where the layout says."""
        state = {}
        for base in self.layout.dynamic:
            value = self.layout.initial_value(base, device=device)
            if self.layout.batched(base):
                value = value.expand((batch_size,) + value.shape).clone()
            state[base] = value
        return state

    def run(
        self,
        values,
        steps,
        n_steps,
        batch_size,
        start_step,
        feeds=None,
        on_step=None,
        training=False,
    ):
        """Advance ``n_steps``; return ``(probe data, new values)``.

        ``training`` selects training behaviour in the steps that have one (e.g.
        spiking neurons trained through their rate approximation).

        Probe data maps each probe to a tensor ``(batch, n_samples, *shape)``
        sampled as Nengo samples (``sample_every``).
        """
        sv = SignalValues(self.layout, dict(values), batch_size)
        sv.feeds = feeds or {}
        sv.training = training
        records = {probe: [] for probe in self.probes}
        periods = {
            probe: 1 if probe.sample_every is None else probe.sample_every / self.model.dt
            for probe in self.probes
        }
        for k in range(n_steps):
            sv.step_index = k
            for step in steps:
                step(sv)
            n = start_step + k + 1
            for probe in self.probes:
                if n % periods[probe] < 1:
                    records[probe].append(self._probe_value(sv, probe))
            if on_step is not None:
                on_step()
        data = {}
        for probe, rec in records.items():
            sig = self.model.sig[probe]["in"]
            data[probe] = (
                torch.stack(rec, dim=1)
                if rec
                else torch.zeros((batch_size, 0) + tuple(sig.shape), dtype=self.dtype)
            )
        return data, sv.values

    def _probe_value(self, sv, probe):
        sig = self.model.sig[probe]["in"]
        value = sv.read(sig)
        if not sv.is_batched(sig):
            value = value.expand((sv.batch_size,) + value.shape)
        return value


def check_steps(n_steps):
    if n_steps is None or int(n_steps) != n_steps or n_steps < 0:
        raise ValidationError(
            f"Number of steps must be a non-negative integer (got {n_steps!r})",
            attr="n_steps",
        )
    return int(n_steps)
