"""The engine: runs a built Nengo model's operators on torch tensors."""

from __future__ import annotations

import logging
from collections.abc import Callable, Collection
from typing import TYPE_CHECKING

import numpy as np
import torch
from nengo.builder.neurons import SimNeurons
from nengo.builder.operator import TimeUpdate
from nengo.exceptions import ValidationError

from .. import heap
from .merge import MergedSignals, merge_operators, resolve
from .ops import OpRegistry, Step, StepContext
from .schedule import NodeInput, input_nodes, step_order, with_input_ops
from .signals import SignalLayout, SignalValues
from .strategies import Explanation, RunRequest, choose, windowed
from .window import WindowPlan

if TYPE_CHECKING:
    import nengo
    from nengo.builder import Model
    from nengo.builder.signal import Signal

logger = logging.getLogger("snntorch_nengo")


class Engine:
    """Executes a `nengo.builder.Model` step by step, batched, in torch.

    The engine owns no tensors: `run` takes the value of every base signal
    (parameters, constants, state) and returns the new state and the probe data,
    so the module tree stays the single owner of the data. How a run executes
    is one of the strategies in `engine.strategies`; `last_run` says which the
    last run took, `explain` which a run would take.

    ``torch_compile``: runs without autograd that would step functionally
    compile one step with `torch.compile` (`strategies.compiled`).
    """

    def __init__(
        self,
        model: Model,
        dtype: torch.dtype,
        settings: dict | None = None,
        torch_compile: bool = False,
    ) -> None:
        heap.warm()  # once per process (see heap.py: windows' big temporaries)
        self.model = model
        self.dtype = dtype
        self.settings = dict(settings or {})
        self.torch_compile = bool(torch_compile)
        self.strategy_cache = {}  # strategy name -> what it keeps between runs
        self._last_run = None  # what makes the Explanation of the last run
        self.input_nodes = input_nodes(model)
        self.probes = list(model.probes)
        self._set_operators(with_input_ops(model, self.input_nodes))
        # the module tree's view: one tensor per signal that Nengo's builder made
        self.module_layout = self.layout
        # runs of several steps go window by window (`window`), or step; decided
        # before merging, which windowed models skip
        self.window_unavailable = windowed.unavailable(self)
        self.windowed = self.window_unavailable is None
        self.merged = MergedSignals(self.layout.bases, {}, self.layout)
        for op in self.step_order:  # unsupported operators fail at build time
            OpRegistry.maker_for(getattr(op, "original", None) or op)

    def _set_operators(self, operators) -> None:
        self.__dict__.pop("_probe_signals", None)
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
        self._window_plan = None

    @property
    def window_plan(self) -> WindowPlan:
        """How the operators run over a whole window at once (`window`)."""
        if self._window_plan is None:
            layout = self.layout
            times = [op for op in self.step_order if isinstance(op, TimeUpdate)]
            if not times:
                plan = WindowPlan([], layout, (None, None), self.model.dt)
                plan.reason = "no TimeUpdate operator"
            else:
                bases = (layout.views[times[0].step].base,
                         layout.views[times[0].time].base)
                probes = {p: self.probe_signal(p) for p in self.probes}
                plan = WindowPlan(self.step_order, layout, bases, self.model.dt, probes)
            self._window_plan = plan
        return self._window_plan

    def merge(self, trainable: Collection[Signal] = ()) -> None:
        """Merge operators with Nengo's optimizer (call after the module tree exists).

        Afterwards `layout` describes the merged signals the steps run on, while
        `module_layout` still has the original ones the modules own. Models that
        run window by window (`window`) stay unmerged. ``trainable``: the base
        signals that are parameters (see `merge_operators`' ``keep_apart``).
        """
        if self.windowed:
            # feed-forward: runs of several steps go window by window, where a
            # merged base costs a copy of all of it per slice written (slower,
            # measured on cconv and ff_mlp), and merged layers can even loop
            # across time steps (spiking_classifier)
            return
        originals = self.module_layout.bases
        operators, replacements = merge_operators(self.operators, keep_apart=trainable)
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

    def probe_signal(self, probe: nengo.Probe) -> Signal:
        """The signal ``probe`` records (after merging, a view of a merged base)."""
        # asked at every run; `_set_operators` (after a merge) forgets them
        known = self.__dict__.setdefault("_probe_signals", {})
        sig = known.get(probe)
        if sig is None:
            sig = known[probe] = self.model.sig[probe]["in"]
        return sig

    def resolve(self, sig: Signal) -> Signal:
        """The signal the steps use for ``sig`` (a view of a merged base, maybe)."""
        return resolve(sig, getattr(self, "replacements", {}))

    def set_dtype(self, dtype: torch.dtype) -> None:
        """Make float signals ``dtype`` from now on (`NengoModule.to`).

        Step functions made before hold constants of the old dtype: make new ones.
        """
        if dtype == self.dtype:
            return
        self.dtype = dtype
        for layout in (self.layout, self.module_layout):
            layout.dtype = dtype
        self.__dict__.pop("_initial_cache", None)
        self.strategy_cache.clear()
        self.merged.__dict__.pop("_kept", None)  # merged bases of the old dtype

    def make_steps(
        self, batch_size: int, seed: int | None, device: torch.device | str | None
    ) -> list[Step]:
        """Fresh `Step` objects (Nengo's ``make_step``), in step order."""
        ctx = StepContext(
            dt=self.model.dt,
            rng=np.random.RandomState(seed),
            batch_size=batch_size,
            layout=self.layout,
            device=device,
            dtype=self.dtype,
            seed=seed,
            settings=self.settings,
            spike_bases=self.spike_bases,
        )
        op_steps = []
        for op in self.step_order:
            # constants made here must not be inference tensors, even when the
            # steps are remade inside torch.inference_mode (Lightning's validation)
            with torch.inference_mode(False):
                step = OpRegistry.make_step(op, ctx)
            if step is not None:
                op_steps.append(step)
        return op_steps

    def initial_state(
        self, batch_size: int, device: torch.device | str | None = None
    ) -> dict:
        """Initial values of the modules' dynamic signals, batched as they run."""
        # made once per batch size and device: every write is functional (a new
        # tensor), and the in-place strategy copies what it writes into, so
        # each reset may hand out the same initial tensors
        cache = self.__dict__.setdefault("_initial_cache", {})
        key = ("state", batch_size, str(device))
        # tensors made while tracing (torch.export) are the trace's: never kept
        tracing = torch.compiler.is_compiling() or torch.compiler.is_exporting()
        state = None if tracing else cache.get(key)
        if state is None:
            layout = self.module_layout
            state = {}
            with torch.inference_mode(False):  # usable by autograd later
                for base in layout.dynamic:
                    value = self._initial(base, device)
                    if layout.batched(base):
                        value = value.expand((batch_size,) + value.shape)
                    state[base] = value.clone()
            if not tracing:
                cache[key] = state
        return dict(state)

    def _initial(self, base, device):
        """A base's initial tensor, converted from numpy once per device."""
        cache = self.__dict__.setdefault("_initial_cache", {})
        key = (base, str(device))
        if key not in cache:
            cache[key] = self.module_layout.initial_value(base, device=device)
        return cache[key]

    def run(
        self,
        values: dict,
        op_steps: list,
        n_steps: int,
        batch_size: int,
        start_step: int,
        feeds: dict | None = None,
        on_step: Callable[[], None] | None = None,
        training: bool = False,
    ) -> tuple[dict, SignalValues]:
        """Advance ``n_steps``; return ``(probe data, SignalValues at the end)``.

        ``op_steps`` are the operators' `Step` objects (`make_steps`).
        ``training`` selects training behaviour in the steps that have one (e.g.
        spiking neurons trained through their rate approximation). The run
        takes the strategy `strategies.choose` picks; `last_run` says which.

        Probe data maps each probe to a tensor ``(batch, n_samples, *shape)``
        sampled as Nengo samples (``sample_every``).
        """
        request = RunRequest(
            values, op_steps, n_steps, batch_size, start_step, feeds or {}, on_step,
            training,
        )
        choice = choose(self, request)
        if not torch.compiler.is_compiling():  # logging breaks a torch.compile graph
            logger.debug(
                "%d steps (batch %d) run %s: %s", n_steps, batch_size, choice.name,
                choice.reason,
            )
        result = choice.strategy.run(self, request)
        # made into an Explanation when asked for, not at every run
        self._last_run = (choice, n_steps, result.fallbacks)
        return result.data, result.values

    @property
    def last_run(self) -> "Explanation | None":
        """The `Explanation` of the last run (None before any)."""
        last = self._last_run
        if last is None or isinstance(last, Explanation):
            return last
        self._last_run = Explanation(*last, ran=True)
        return self._last_run

    @last_run.setter
    def last_run(self, value: Explanation | None) -> None:
        self._last_run = value

    def explain(self, request: RunRequest | None = None) -> "Explanation | None":
        """Which strategy a run takes and why, with the operators that fall back.

        Without ``request``: the last run (None before any). With one: the
        choice a run of it would get, nothing run.
        """
        if request is None:
            return self.last_run
        choice = choose(self, request)
        fallbacks = choice.strategy.fallbacks(self, request)
        return Explanation(choice, request.n_steps, fallbacks, ran=False)

    def probe_period(self, probe: nengo.Probe) -> float:
        """Steps per sample of ``probe`` (Nengo's ``sample_every``)."""
        return 1 if probe.sample_every is None else probe.sample_every / self.model.dt


def check_steps(n_steps: int | None) -> int:
    if n_steps is None or int(n_steps) != n_steps or n_steps < 0:
        raise ValidationError(
            f"Number of steps must be a non-negative integer (got {n_steps!r})",
            attr="n_steps",
        )
    return int(n_steps)
