"""NengoModule: a Nengo network as a `torch.nn.Module`."""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Callable, Iterator, Mapping
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from nengo.exceptions import ValidationError
from torch import nn

from . import validation
from .build import build_modules
from .config import SETTINGS, get_setting
from .build.model import build_model
from .engine.engine import Engine, check_steps
from .engine.request import RunRequest
from .engine.signals import SignalValues
from .engine.window import untraced_held_feeds

if TYPE_CHECKING:
    from nengo.builder import Model
    import nengo
    from nengo.builder.signal import Signal

    from .build.base import NengoObjectModule
    from .engine.strategies import Explanation


class NengoModule(nn.Module):
    """A `nengo.Network` as a torch module.

    It starts in eval mode, which simulates exactly what Nengo would; ``.train()``
    switches on training behaviour (spiking neurons trained through their rate
    approximation, or a surrogate gradient).

    Parameters (gains, biases, encoders, decoders) come from Nengo's own builder,
    so they equal the reference simulator's for the same seed. Each Ensemble,
    Node, Connection and Probe gets a child module holding its tensors;
    `forward` steps the network with the engine and returns the probe data.

    Parameters
    ----------
    network : nengo.Network
        The network to build (None if ``model`` is given).
    dt : float
        Simulation time step, in seconds.
    seed : int, optional
        Seed for the simulation's random processes (``network.seed + 1`` or random
        when not given, as in ``nengo.Simulator``).
    minibatch_size : int, optional
        Number of samples simulated in parallel; ``None`` means one, or whatever
        batch size the inputs of the first call have.
    dtype : torch.dtype, optional
        Float type of all float signals: the network's ``configure_settings(dtype=)``
        if set, else ``torch.float32``.
    device : torch.device or str, optional
        Where the tensors live.
    model : nengo.builder.Model, optional
        A pre-built model to use instead of building ``network``.
    optimize : bool
        Merge operators with Nengo's optimizer (much faster stepping; the child
        modules still hold one tensor per Nengo object).
    torch_compile : bool
        Compile one simulation step with `torch.compile` for runs without
        gradients (``torch.no_grad()``: `Simulator.run_steps`, ``predict``) that
        step; windowed runs (`engine.window`) and training stay eager, and the
        in-place program is off. The first run pays the compilation (seconds to
        a minute); on CUDA the step is compiled with ``mode="reduce-overhead"``,
        i.e. captured in a CUDA graph. ``compile`` is its deprecated name.

    Which run strategy each run takes (`engine.strategies`) is told by
    `explain`.

    ``torch.compile(module)`` traces a windowed run as one graph, with and
    without autograd; it compiles once per batch size and number of steps
    (and once more for runs that start where the last ended). Whether fed
    data is the same at every step is checked before the graph (a graph
    break with nothing before it), since a graph cannot look at values.
    """

    def __init__(
        self,
        network: nengo.Network | None,
        dt: float = 0.001,
        seed: int | None = None,
        minibatch_size: int | None = None,
        dtype: torch.dtype | np.dtype | str | None = None,
        device: torch.device | str | None = None,
        model: Model | None = None,
        optimize: bool = True,
        torch_compile: bool = False,
        compile: bool | None = None,  # noqa: A002  (deprecated name of torch_compile)
    ) -> None:
        super().__init__()
        torch_compile = deprecated_compile(compile, torch_compile)
        validation.check_network(network, model)
        validation.check_dt(dt)
        device = validation.check_device(device)
        if minibatch_size is not None and int(minibatch_size) < 1:
            raise ValidationError(
                f"must be a positive integer (got {minibatch_size})",
                attr="minibatch_size",
                obj=self,
            )
        self.network = network
        self.settings = {name: get_setting(network, name) for name in SETTINGS}
        if dtype is None:
            dtype = self.settings["dtype"] or torch.float32
        dtype = validation.check_dtype(dtype)
        self.model = build_model(network, dt, model=model)
        self.dt = self.model.dt
        self.dtype = dtype
        self.minibatch_size = None if minibatch_size is None else int(minibatch_size)
        if seed is None:
            if network is not None and network.seed is not None:
                seed = network.seed + 1
            else:
                seed = np.random.randint(np.iinfo(np.int32).max)
        self.seed = seed
        self.engine = Engine(self.model, dtype, self.settings, torch_compile=torch_compile)
        self.batch_size = self.minibatch_size or 1
        tree, network_module, self._slots, self._modules_by_obj = build_modules(
            self.model,
            self.engine.module_layout,
            self.engine.initial_state(self.batch_size),
            network=network,
        )
        if optimize:
            self.engine.merge(
                trainable={
                    base
                    for base, owner in self._slots.items()
                    if owner.signal_names[base] in owner._parameters
                }
            )
        for kind, modules in tree.items():
            setattr(self, kind, nn.ModuleDict(modules))
        self.signals = network_module
        if device is not None:
            self.to(device)
        # Nengo semantics (spikes, no training behaviour) until `.train()`
        self.eval()
        self.reset()

    # plain values set at every reset and run: nn.Module.__setattr__'s checks
    # (is it a parameter, buffer or module?) cost more than the rest of a reset
    _PLAIN = frozenset({"n_steps", "_fresh", "_steps", "_steps_key", "batch_size"})

    def __setattr__(self, name, value):
        if name in NengoModule._PLAIN and not isinstance(value, (torch.Tensor, nn.Module)):
            self.__dict__[name] = value
        else:
            super().__setattr__(name, value)

    # -- the Nengo objects' modules

    def module_of(self, obj: object) -> NengoObjectModule:
        """The child module of a Nengo object."""
        return self._modules_by_obj[obj]

    @property
    def input_nodes(self) -> list[nengo.Node]:
        return self.engine.input_nodes

    @property
    def device(self) -> torch.device:
        # asked several times per batch; moves go through `_apply`, which forgets it
        device = self.__dict__.get("_device")
        if device is None:
            device = torch.device("cpu")
            for tensor in self._tensors():
                device = tensor.device
                break
            self.__dict__["_device"] = device
        return device

    def _apply(self, fn, *args, **kwargs):
        # `.to(dtype/device)`, `.double()`, `.cuda()` convert the module tree's
        # tensors; the engine's dtype and the step functions' constants (made
        # for one dtype and device) must follow them
        before = (self.device, self.dtype)
        out = super()._apply(fn, *args, **kwargs)
        self.__dict__.pop("_device", None)
        self.__dict__["_maybe_inference"] = True  # new tensors, made in any mode
        floats = [t for t in self._tensors() if t.is_floating_point()]
        dtype = floats[0].dtype if floats else self.dtype
        if (self.device, dtype) != before and getattr(self, "_steps", None) is not None:
            self.dtype = dtype
            self.engine.set_dtype(dtype)
            # simulation state carries over; step functions are made anew
            # (processes with their own numpy state restart their streams)
            self._steps = self.engine.make_steps(self.batch_size, self.seed, self.device)
            self._steps_key = (self.batch_size, self.seed, self.device)
        return out

    def _tensors(self):
        yield from self.parameters()
        yield from self.buffers()

    # -- state

    def reset(self, seed: int | None = None, batch_size: int | None = None) -> None:
        """Return to the initial state (a new ``seed`` changes random processes)."""
        if seed is not None:
            self.seed = seed
        if batch_size is not None:
            self.batch_size = int(batch_size)
        # never inference tensors (`Engine.initial_state`)
        self._store_state(self.engine.initial_state(self.batch_size, device=self.device))
        key = (self.batch_size, self.seed, self.device)
        steps = getattr(self, "_steps", None)
        # step functions are pure except those with private state (numpy
        # processes): remake only when they or the batch, seed or device change
        if steps is None or self._steps_key != key or self._private_state(steps):
            self._steps = self.engine.make_steps(self.batch_size, self.seed, self.device)
            self._steps_key = key
        self.n_steps = 0
        self._fresh = True

    def _private_state(self, steps):
        # asked at every reset: remembered for the list of steps last asked about
        known = self.__dict__.get("_private")
        if known is None or known[0] is not steps:
            known = self.__dict__["_private"] = (
                steps, any(step.private_state for step in steps)
            )
        return known[1]

    def state(self) -> dict[Signal, torch.Tensor]:
        """The current simulation state: ``{base signal: tensor}``."""
        return {
            base: self._slots[base].signal(base)
            for base in self.engine.module_layout.dynamic
        }

    def signal_values(self) -> SignalValues:
        """The current value of every signal, readable with ``.read(sig)``.

        Signals are the ones the steps use (see `.Engine.resolve`).
        """
        merged = self.engine.merged.assemble(self._signal_dict(), self.batch_size)
        return SignalValues(self.engine.layout, merged, self.batch_size)

    def _slot_table(self):
        """``(base, slot module, attribute name)`` of every signal.

        Reading the slot's dicts with these equals ``slot.signal(base)``, minus
        the calls and the lookup of the name (done for every signal at every
        run). The dicts are looked up each time: tracing (torch.export) may
        swap them for its own while it runs.
        """
        table = self.__dict__.get("_slot_rows")
        if table is None:
            table = self.__dict__["_slot_rows"] = [
                (base, slot, slot.signal_names[base])
                for base, slot in self._slots.items()
            ]
        return table

    def _signal_dict(self):
        values = {}
        for base, slot, name in self._slot_table():
            value = slot._parameters.get(name)
            values[base] = value if value is not None else slot._buffers[name]
        return values

    @contextlib.contextmanager
    def preserved_state(self) -> Iterator[NengoModule]:
        """Run something on this module, then put its simulation back as it was.

        Restores the state tensors, step count, batch size, step functions and
        train/eval mode.
        """
        saved = (
            self.state(),
            self.n_steps,
            self._steps,
            self._steps_key,
            self.batch_size,
            self._fresh,
            self.training,
        )
        try:
            yield self
        finally:
            state, self.n_steps, self._steps, self._steps_key = saved[:4]
            self.batch_size, self._fresh, mode = saved[4:]
            self.load_state(state)
            self.train(mode)

    def load_state(self, state: Mapping[Signal, torch.Tensor]) -> None:
        self._store_state(state)
        # the tensors may come from a run in inference mode
        self.__dict__["_maybe_inference"] = True

    def _store_state(self, state):
        rows = self.__dict__.get("_state_rows")
        if rows is None:
            rows = self.__dict__["_state_rows"] = {
                base: (slot, name)
                for base, slot, name in self._slot_table()
                if name in slot._buffers and name not in slot._parameters
            }
        for base, value in state.items():
            row = rows.get(base)
            if row is None:
                self._slots[base].set_signal(base, value)  # its error, if any
            else:
                row[0]._buffers[row[1]] = value

    # -- running

    def forward(
        self,
        inputs: (
            np.ndarray | torch.Tensor | Mapping[Any, np.ndarray | torch.Tensor] | None
        ) = None,
        n_steps: int | None = None,
        on_step: Callable[[], None] | None = None,
    ) -> dict[nengo.Probe, torch.Tensor]:
        """Run ``n_steps`` steps; return ``{probe: tensor(batch, n_steps, d)}``.

        ``inputs`` maps input Nodes (or their labels) to tensors
        ``(batch, n_steps, node.size_out)``; nodes not given run their own output.
        State carries over to the next call until `reset`. With the settings
        ``keep_history=False`` probes return only the last sample, and with
        ``inference_only=True`` no autograd graph is built.
        """
        feeds, batch_size, n_steps = self.prepare_inputs(inputs, n_steps)
        if batch_size != self.batch_size:
            if not self._fresh:
                raise ValidationError(
                    f"inputs have batch size {batch_size}, but the simulation state "
                    f"has batch size {self.batch_size}; call reset() first",
                    attr="inputs",
                    obj=self,
                )
            if torch.compiler.is_compiling():
                # making the step functions (numpy, scipy) is setup, not traced:
                # it runs eagerly, outside the graph, once per new batch size
                torch.compiler.disable(self.reset)(batch_size=batch_size)
            else:
                self.reset(batch_size=batch_size)
        grad = not self.settings["inference_only"] and torch.is_grad_enabled()
        originals = self._signal_dict()
        values = self.engine.merged.assemble(originals, self.batch_size)
        # torch.compile cannot ask about inference mode or tensors (a graph
        # break): a traced run copies nothing, and afterwards its state counts
        # as maybe made in inference mode
        traced = torch.compiler.is_compiling()
        inference = not traced and torch.is_inference_mode_enabled()
        if not inference and not traced and self.__dict__.get("_maybe_inference", True):
            # state left by a run in inference mode (e.g. Lightning's validation)
            # cannot enter autograd: copy it out
            found = [base for base, value in values.items() if value.is_inference()]
            if found:
                values = dict(values)
            for base in found:
                values[base] = values[base].clone()
            # after a run outside inference mode, none of its state is one
            self.__dict__["_maybe_inference"] = bool(found)
        start_step = self._start_step(traced)
        if traced and feeds and n_steps > 1 and self.engine.windowed:
            # whether fed data is the same at every step decides how a window
            # runs it: a graph cannot branch on values, so it is decided
            # outside (a graph break before any tensor work)
            feeds = untraced_held_feeds()(feeds)
        with torch.set_grad_enabled(grad):
            data, sv = self.engine.run(
                values,
                self._steps,
                n_steps,
                batch_size=self.batch_size,
                start_step=start_step,
                feeds=feeds,
                on_step=on_step,
                training=self.learning_phase,
            )
        if self.settings["keep_history"] is False:
            data = {probe: value[:, -1:] for probe, value in data.items()}
        dynamic = self.engine.module_layout.dynamic
        state = {
            base: value.detach() if value.requires_grad else value
            for base, value in self.engine.merged.split(sv, dynamic).items()
        }
        self._store_state(state)
        if inference or traced:  # (a trace cannot tell whether it made inference tensors)
            self.__dict__["_maybe_inference"] = True
        if not grad and not traced:
            # the key of what is remembered holds tensor ids and versions, which a
            # trace has not (and remembered tensors would be the trace's). The
            # modules' tensors now: the state just stored, the rest as they were
            # (a base `_store_state` kept otherwise only misses the next reuse)
            originals.update(state)
            self.engine.merged.remember(originals, sv.values, self.batch_size)
        self.n_steps = start_step + n_steps
        self._fresh = False
        return data

    def _start_step(self, traced: bool) -> int:
        if not traced:
            return self.n_steps
        patch = getattr(torch._dynamo, "patch_dynamo_config", None)  # newer torch
        if patch is None:
            return self.n_steps
        # torch.compile takes an integer attribute of an nn.Module for a
        # constant, compiling `forward` anew for each step count a run starts
        # at (until its limit of recompilations, then running eagerly): read
        # as an input instead, it only guards what the run's code asks of it
        with patch(allow_unspec_int_on_nn_module=True):
            # (an attribute is looked at when first used: used here, under the patch)
            return int(self.n_steps)

    def explain(
        self, n_steps: int | None = None, grad: bool | None = None
    ) -> Explanation | None:
        """Which run strategy a run takes, why, and which operators fall back.

        Without ``n_steps``: the last run (None before the first). With it: what
        a run of ``n_steps`` from the current state would take, nothing run;
        ``grad`` says whether autograd would record it (default: as `forward`
        would now, i.e. ``torch.is_grad_enabled()`` unless ``inference_only``).
        The result prints as a few lines of text (see `engine.strategies`).
        """
        if n_steps is None:
            return self.engine.last_run
        n_steps = check_steps(n_steps)
        if grad is None:
            grad = not self.settings["inference_only"] and torch.is_grad_enabled()
        request = RunRequest(
            self.signal_values().values, self._steps, n_steps, self.batch_size,
            self.n_steps, training=self.learning_phase, grad=bool(grad),
        )
        return self.engine.explain(request)

    @property
    def learning_phase(self) -> bool:
        """Training behaviour: `training` unless the ``learning_phase`` setting says."""
        forced = self.settings["learning_phase"]
        return self.training if forced is None else bool(forced)

    def prepare_inputs(
        self,
        inputs: np.ndarray | torch.Tensor | Mapping[Any, np.ndarray | torch.Tensor] | None,
        n_steps: int | None,
    ) -> tuple[dict[nengo.Node, torch.Tensor], int, int]:
        """Validate inputs; return ``(feeds by node, batch size, n_steps)``."""
        feeds = {}
        inputs = {} if inputs is None else inputs
        if not isinstance(inputs, dict):
            if len(self.input_nodes) != 1:
                raise ValidationError(
                    "a single input array needs exactly one input Node, but the "
                    f"network has {len(self.input_nodes)}; pass a dict keyed by Node",
                    attr="inputs",
                    obj=self,
                )
            inputs = {self.input_nodes[0]: inputs}
        batch_size = None
        for key, value in inputs.items():
            node = self.find_node(key)
            if node in feeds:
                raise ValidationError(
                    f"input for {node} given twice (by the Node and by its label "
                    f"{node.label!r}); give each input once",
                    attr="inputs",
                    obj=self,
                )
            value = self._input_tensor(value, node)
            if value.dim() != 3 or value.shape[2] != node.size_out:
                raise ValidationError(
                    f"input for {node} must have shape (batch, n_steps, "
                    f"{node.size_out}), got {tuple(value.shape)}",
                    attr="inputs",
                    obj=self,
                )
            if n_steps is None:
                n_steps = value.shape[1]
            if value.shape[1] != n_steps:
                raise ValidationError(
                    f"input for {node} has {value.shape[1]} steps, expected {n_steps}",
                    attr="inputs",
                    obj=self,
                )
            if batch_size is not None and value.shape[0] != batch_size:
                raise ValidationError(
                    f"input for {node} has batch size {value.shape[0]}, other inputs "
                    f"have {batch_size}",
                    attr="inputs",
                    obj=self,
                )
            batch_size = value.shape[0]
            feeds[node] = value
        if self.minibatch_size is not None and batch_size not in (
            None,
            self.minibatch_size,
        ):
            raise ValidationError(
                f"inputs have batch size {batch_size}, but minibatch_size is "
                f"{self.minibatch_size}",
                attr="inputs",
                obj=self,
            )
        n_steps = check_steps(n_steps)
        return feeds, batch_size or self.batch_size, n_steps

    def _input_tensor(self, value, node):
        """``value`` as a checked tensor of this module's dtype, on its device."""
        check = self.settings["check_finite"] is not False
        if not (
            torch.is_tensor(value)
            and value.dtype == self.dtype
            and value.device == self.device
        ):
            return validation.as_tensor(
                value, f"input for {node}", self.dtype, self.device,
                check_finite=check, attr="inputs",
            )
        # already a tensor as it runs (e.g. a training batch): only the finiteness
        # check is left, unless the data were checked as a whole before
        if check and not self.__dict__.get("_inputs_checked"):
            validation.check_finite_values(value, f"input for {node}", attr="inputs")
        return value

    @contextlib.contextmanager
    def checked_inputs(self) -> Iterator[NengoModule]:
        """Inputs given as tensors inside need no finiteness check per call.

        For loops over data checked as a whole beforehand (``sim.fit``'s).
        """
        before = self.__dict__.get("_inputs_checked", False)
        self.__dict__["_inputs_checked"] = True
        try:
            yield self
        finally:
            self.__dict__["_inputs_checked"] = before

    def find_node(self, key: nengo.Node | str) -> nengo.Node:
        """An input Node from itself or its label."""
        if isinstance(key, str):
            matches = [n for n in self.input_nodes if n.label == key]
            if len(matches) != 1:
                raise ValidationError(
                    f"{'no' if not matches else 'more than one'} input Node labelled "
                    f"{key!r}; input nodes: {[str(n) for n in self.input_nodes]}",
                    attr="inputs",
                    obj=self,
                )
            return matches[0]
        if key not in self.input_nodes:
            raise ValidationError(
                f"{key} is not an input Node of this network (input Nodes have no "
                "input connections and an output)",
                attr="inputs",
                obj=self,
            )
        return key

    def extra_repr(self) -> str:
        label = None if self.network is None else self.network.label
        last = self.engine.last_run
        return (
            f"network={label!r}, dt={self.dt}, minibatch_size={self.minibatch_size}, "
            f"dtype={self.dtype}, last_run={None if last is None else last.strategy!r}"
        )


def deprecated_compile(compile: bool | None, torch_compile: bool) -> bool:  # noqa: A002
    """``torch_compile``, or the deprecated ``compile`` keyword's value if given."""
    if compile is None:
        return bool(torch_compile)
    warnings.warn(
        "the keyword 'compile' is now called 'torch_compile' (sim.compile(...), "
        "the Keras-style training setup, is unchanged)",
        DeprecationWarning,
        stacklevel=3,
    )
    return bool(compile) or bool(torch_compile)
