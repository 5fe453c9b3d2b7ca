"""The stepping engine: runs a built Nengo model's operators on torch tensors."""

import numpy as np
import torch
from nengo.builder.neurons import SimNeurons
from nengo.builder.operator import TimeUpdate
from nengo.exceptions import ValidationError

from .ops import OpRegistry, StepContext
from .merge import MergedSignals, merge_operators, resolve
from .program import Program
from .schedule import NodeInput, input_nodes, step_order, with_input_ops
from .signals import SignalLayout, SignalValues
from .timebatch import SeriesPlan


# Windows pay for a few large operators (layers), whose products batch over
# time; networks of many small operators (nengo.networks: EnsembleArray,
# CircularConvolution) run faster merged and stepped in place, where each
# merged operator costs one instruction per step (measured on cconv: 1,541
# operators, 57 instructions merged; ff_mlp: 23 operators).
WINDOW_MAX_OPERATORS = 256

# Rows (batch x steps) per chunk of a windowed run on the CPU; see _run_windowed.
WINDOW_CHUNK_ROWS = 4096

# Devices whose runs without autograd step in place (engine/program.py). On CUDA
# the instructions run through the Python interpreter, one launch each; that
# was 3.6-7.8x faster than functional stepping on an H100 (docs/benchmarks.md).
IN_PLACE_DEVICES = ("cpu", "cuda")


def values_on_cpu(values):
    return all(value.device.type == "cpu" for value in values.values())


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
        self.compile = False  # NengoModule(compile=True): see `_run_compiled`
        self.input_nodes = input_nodes(model)
        self.probes = list(model.probes)
        self._set_operators(with_input_ops(model, self.input_nodes))
        # the module tree's view: one tensor per signal that Nengo's builder made
        self.module_layout = self.layout
        # runs of several steps go window by window (`timebatch`), or step
        self.windowed = (
            self.settings.get("time_batched") is not False
            and len(self.operators) <= WINDOW_MAX_OPERATORS
            and self.series_plan.eligible
        )
        self.merged = MergedSignals(self.layout.bases, {}, self.layout)
        for op in self.step_order:  # unsupported operators fail at build time
            if not isinstance(op, NodeInput) or op.original is not None:
                OpRegistry.maker_for(getattr(op, "original", op))

    def _set_operators(self, operators):
        self.operators = operators
        self.step_order = step_order(operators)
        self.layout = SignalLayout(
            operators, self.dtype, shared=[self.model.step, self.model.time]
        )
        for probe in self.probes:
            self.layout.add(self.probe_signal(probe))
        # bases that hold spikes (products of them may skip the zeros)
        self.spike_bases = {
            self.layout.views[op.output].base
            for op in self.step_order
            if isinstance(op, SimNeurons) and op.neurons.spiking
        }
        self._series_plan = None

    @property
    def series_plan(self):
        """How the operators run over a whole window at once (`timebatch`)."""
        if self._series_plan is None:
            layout = self.layout
            times = [op for op in self.step_order if isinstance(op, TimeUpdate)]
            if not times:
                plan = SeriesPlan([], layout, (None, None), self.model.dt)
                plan.reason = "no TimeUpdate operator"
            else:
                bases = (layout.views[times[0].step].base,
                         layout.views[times[0].time].base)
                probed = {layout.views[self.probe_signal(p)].base for p in self.probes}
                plan = SeriesPlan(self.step_order, layout, bases, self.model.dt, probed)
            self._series_plan = plan
        return self._series_plan

    def merge(self):
        """Merge operators with Nengo's optimizer (call after the module tree exists).

        Afterwards `layout` describes the merged signals the steps run on, while
        `module_layout` still has the original ones the modules own. Models that
        run window by window (`timebatch`) stay unmerged.
        """
        if self.windowed:
            # feed-forward: runs of several steps go window by window, where a
            # merged base costs a copy of all of it per slice written (slower,
            # measured on cconv and ff_mlp), and merged layers can even loop
            # across time steps (spiking_classifier)
            return
        originals = self.module_layout.bases
        operators, replacements = merge_operators(self.operators)
        for sigs in self.model.sig.values():
            for key, sig in sigs.items():
                if sig is not None:
                    sigs[key] = resolve(sig, replacements)
        for op in operators:
            if isinstance(op, NodeInput) and op.original is not None:
                # the merger moved NodeInput's signals: the wrapped op follows
                op.original.sets = list(op.sets)
                op.original.reads = list(op.reads)
                op.original.updates = list(op.updates)
        # as nengo's optimizer does, the model now holds the merged operators
        self.model.operators[:] = [
            getattr(op, "original", op)
            for op in operators
            if not isinstance(op, NodeInput) or op.original is not None
        ]
        self._set_operators(operators)
        self.replacements = replacements
        self.merged = MergedSignals(originals, replacements, self.layout)

    def probe_signal(self, probe):
        """The signal ``probe`` records (after merging, a view of a merged base)."""
        return self.model.sig[probe]["in"]

    def resolve(self, sig):
        """The signal the steps use for ``sig`` (a view of a merged base, maybe)."""
        return resolve(sig, getattr(self, "replacements", {}))

    def set_dtype(self, dtype):
        """Make float signals ``dtype`` from now on (`NengoModule.to`).

        Step functions made before hold constants of the old dtype: make new ones.
        """
        if dtype == self.dtype:
            return
        self.dtype = dtype
        for layout in (self.layout, self.module_layout):
            layout.dtype = dtype
        self.__dict__.pop("_initial_cache", None)
        self.__dict__.pop("_compiled", None)
        self.merged.__dict__.pop("_last", None)

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
        ctx.spike_bases = self.spike_bases
        steps = []
        for op in self.step_order:
            # constants made here must not be inference tensors, even when the
            # steps are remade inside torch.inference_mode (Lightning's validation)
            with torch.inference_mode(False):
                step = self._make_step(op, ctx)
            if step is not None:
                step.op = op  # the time-batched plan runs steps in its own order
                steps.append(step)
        return steps

    def _make_step(self, op, ctx):
        if not isinstance(op, NodeInput):
            return OpRegistry.make_step(op, ctx)
        original = op.original
        if original is not None:
            original = OpRegistry.make_step(original, ctx)
        node, output = op.node, op.output
        constant = None if original is not None else self.layout.initial_value(
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

        step_node_input.private_state = getattr(original, "private_state", False)
        return step_node_input

    def initial_state(self, batch_size, device=None):
        """Initial values of the modules' dynamic signals, batched as they run."""
        layout = self.module_layout
        state = {}
        for base in layout.dynamic:
            value = self._initial(base, device)
            if layout.batched(base):
                value = value.expand((batch_size,) + value.shape)
            state[base] = value.clone()
        return state

    def _initial(self, base, device):
        """A base's initial tensor, converted from numpy once per device."""
        cache = self.__dict__.setdefault("_initial_cache", {})
        key = (base, str(device))
        if key not in cache:
            cache[key] = self.module_layout.initial_value(base, device=device)
        return cache[key]

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
        """Advance ``n_steps``; return ``(probe data, SignalValues at the end)``.

        ``training`` selects training behaviour in the steps that have one (e.g.
        spiking neurons trained through their rate approximation).

        Probe data maps each probe to a tensor ``(batch, n_samples, *shape)``
        sampled as Nengo samples (``sample_every``).
        """
        periods = {
            probe: 1 if probe.sample_every is None else probe.sample_every / self.model.dt
            for probe in self.probes
        }
        if n_steps > 1 and self.windowed:
            return self._run_windowed(
                values, steps, n_steps, batch_size, start_step, feeds or {}, on_step,
                training, periods,
            )
        if (
            n_steps > 1
            and not self.compile
            and not torch.is_grad_enabled()
            and self.settings.get("in_place") is not False
            and all(value.device.type in IN_PLACE_DEVICES for value in values.values())
        ):
            return self._run_program(
                values, steps, n_steps, batch_size, start_step, feeds or {}, on_step,
                training, periods,
            )
        if self.compile and not torch.is_grad_enabled() and n_steps > 0:
            return self._run_compiled(
                values, steps, n_steps, batch_size, start_step, feeds or {}, on_step,
                training, periods,
            )
        sv = SignalValues(self.layout, dict(values), batch_size)
        sv.feeds = feeds or {}
        sv.training = training
        records = {probe: [] for probe in self.probes}
        for k in range(n_steps):
            sv.step_index = k
            for step in steps:
                step(sv)
            self._record(records, sv, start_step + k + 1, periods)
            if on_step is not None:
                on_step()
        return self._probe_data(records, batch_size), sv

    def _run_windowed(self, values, steps, n_steps, batch_size, start_step, feeds,
                      on_step, training, periods):
        """Windowed runs, in chunks of steps whose tensors stay in the CPU's caches.

        One window over thousands of steps makes every intermediate tensor
        tens of megabytes: each operator then streams it from memory (and
        the allocator maps fresh pages for it), which costs more than the
        arithmetic. Chunks of ``WINDOW_CHUNK_ROWS`` rows (batch x steps)
        carry their final state into the next, so results are the same.
        """
        chunk = max(1, WINDOW_CHUNK_ROWS // batch_size) if values_on_cpu(values) else n_steps
        values, parts = dict(values), []
        for k0 in range(0, n_steps, chunk):
            k1 = min(n_steps, k0 + chunk)
            part = {node: data[:, k0:k1] for node, data in feeds.items()}
            data, sv = self.series_plan.run(
                values, steps, k1 - k0, batch_size, start_step + k0, part,
                training, self.probes, periods, self.probe_signal,
            )
            values = sv.values
            parts.append(data)
            if on_step is not None:
                for _ in range(k1 - k0):
                    on_step()
        if len(parts) == 1:
            return parts[0], sv
        data = {probe: torch.cat([d[probe] for d in parts], dim=1) for probe in self.probes}
        return data, sv

    def _run_compiled(self, values, steps, n_steps, batch_size, start_step, feeds,
                      on_step, training, periods):
        """Stepping, with one step compiled by `torch.compile` (see NengoModule)."""
        key = (id(steps), batch_size, training, tuple(feeds))
        on_gpu = any(v.is_cuda for v in values.values())
        cached = getattr(self, "_compiled", None)
        if cached is None or cached[0] != key:
            layout = self.layout

            def one_step(values, feed_now):
                sv = SignalValues(layout, dict(values), batch_size)
                # each feed holds only this step's data, at index 0
                sv.feeds = {node: data[:, None] for node, data in feed_now.items()}
                sv.step_index = 0
                sv.training = training
                for step in steps:
                    step(sv)
                return sv.values

            fn = torch.compile(
                one_step, dynamic=False, mode="reduce-overhead" if on_gpu else None
            )
            self._compiled = cached = (key, fn)
        fn = cached[1]
        values = {k: v.detach() for k, v in values.items()}
        records = {probe: [] for probe in self.probes}
        for k in range(n_steps):
            values = fn(values, {node: data[:, k] for node, data in feeds.items()})
            if on_gpu:
                # a CUDA graph's outputs are overwritten by its next replay
                values = {base: value.clone() for base, value in values.items()}
            sv = SignalValues(self.layout, values, batch_size)
            self._record(records, sv, start_step + k + 1, periods)
            if on_step is not None:
                on_step()
        return self._probe_data(records, batch_size), sv

    def _run_program(self, values, steps, n_steps, batch_size, start_step, feeds,
                     on_step, training, periods):
        """Stepping without autograd: in-place instructions on buffers (`program`)."""
        buffers = {
            base: value.clone(memory_format=torch.contiguous_format)
            if base in self.layout.dynamic else value.contiguous()
            for base, value in values.items()
        }
        prog = Program(self, steps, buffers, batch_size, feeds, training)
        data = prog.record(
            self.probes, self.probe_signal, periods,
            start_step, n_steps,
        )
        # chunks, so that a progress bar moves; one chunk when nobody watches
        chunk = n_steps if on_step is None else max(1, n_steps // 100)
        for k0 in range(0, n_steps, chunk):
            k1 = min(n_steps, k0 + chunk)
            prog.run(k0, k1)
            if on_step is not None:
                for _ in range(k1 - k0):
                    on_step()
        return data, prog.sv  # reads are cached views: the split afterwards is cheap

    def _record(self, records, sv, n, periods):
        """Append the probes due after step ``n`` (Nengo's ``sample_every``)."""
        for probe in self.probes:
            if n % periods[probe] < 1:
                records[probe].append(self._probe_value(sv, probe))

    def _probe_data(self, records, batch_size):
        data = {}
        for probe, rec in records.items():
            sig = self.probe_signal(probe)
            data[probe] = (
                torch.stack(rec, dim=1)
                if rec
                else torch.zeros((batch_size, 0) + tuple(sig.shape), dtype=self.dtype)
            )
        return data

    def _probe_value(self, sv, probe):
        sig = self.probe_signal(probe)
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
