"""Simulator: a Nengo backend on PyTorch, with NengoDL's batched ``predict``."""

from __future__ import annotations

import contextlib
import os
import logging
import warnings
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import nengo
import numpy as np
import torch
from nengo.exceptions import ReadonlyError, SimulatorClosed, ValidationError
from nengo.utils.progress import Progress, ProgressTracker

from . import streaming, validation
from .config import default_dtype, note_ignored
from .persistence import ParamsMixin
from .module import NengoModule, deprecated_compile
from .training.api import TrainingMixin
from .utils import to_numpy

if TYPE_CHECKING:
    from nengo.builder import Model
    from nengo.builder.operator import Operator

    from .engine.strategies import Explanation

logger = logging.getLogger(__name__)


class Simulator(TrainingMixin, ParamsMixin):
    """Simulate a Nengo network with PyTorch.

    It has the interface of `nengo.Simulator` (``run``, ``run_steps``, ``step``,
    ``trange``, ``data``, ``reset``, ``close``) plus NengoDL's batched
    ``predict``/``predict_on_batch``. The network lives in `module`, a
    `.NengoModule`.

    Parameters
    ----------
    network : nengo.Network or None
        The network to simulate (None if ``model`` is given).
    dt : float
        Simulation time step, in seconds.
    seed : int, optional
        Seed for random processes; ``network.seed + 1`` or random by default.
    model : nengo.builder.Model, optional
        A pre-built model.
    device : torch.device or str, optional
        Where to simulate (e.g. ``"cuda"``).
    minibatch_size : int, optional
        Samples simulated in parallel; with ``None``, probe data has Nengo's
        shape ``(n_steps, d)``, otherwise NengoDL's ``(minibatch, n_steps, d)``.
    progress_bar : bool or nengo.utils.progress.ProgressBar
        Show build and run progress.
    dtype : torch.dtype or str, optional
        Float precision; defaults to the network's ``configure_settings(dtype=)``,
        else an nengorc's ``[snntorch_nengo] dtype``, else float32 (NengoDL's
        default; ``dtype="float64"`` for Nengo's precision).
    optimize : bool
        Merge operators with Nengo's optimizer (feed-forward models, which run
        window by window, stay unmerged).
    torch_compile : bool
        Compile one step with `torch.compile` for runs that step without
        gradients (see `.NengoModule`); costs seconds to a minute on the first run.
    unroll_simulation : int, optional
        NengoDL's TensorFlow loop unrolling: accepted, no effect (there is no
        graph to unroll; see docs/coming_from_nengodl.md).
        ``compile`` is its deprecated name (the method `compile`, which sets up
        training, is unrelated).

    `explain` tells which run strategy (windowed, in-place, compiled or
    functional) the last run took, and why.
    """

    def __init__(
        self,
        network: nengo.Network | None,
        dt: float = 0.001,
        seed: int | None = None,
        model: Model | None = None,
        device: torch.device | str | None = None,
        minibatch_size: int | None = None,
        progress_bar: bool | Any = True,
        dtype: torch.dtype | np.dtype | str | None = None,
        optimize: bool = True,
        compile: bool | None = None,  # noqa: A002  (deprecated name of torch_compile)
        unroll_simulation: int | None = None,
        torch_compile: bool = False,
    ) -> None:
        self.closed = True  # until built (NengoModule checks network, dt and device)
        if unroll_simulation is not None:
            note_ignored(["unroll_simulation"], "Simulator")
        self.progress_bar = progress_bar
        self.optimize = optimize  # merge operators (see NengoModule)
        validation.check_network(network, model)
        if dtype is None:
            dtype = default_dtype(network)
        self.dtype = validation.check_dtype(dtype)
        self.minibatch_size = minibatch_size
        with ProgressTracker(progress_bar, Progress("Building", "Build")):
            self.module = NengoModule(
                network,
                dt=dt,
                seed=seed,
                minibatch_size=minibatch_size,
                dtype=self.dtype,
                device=device,
                model=model,
                optimize=optimize,
                torch_compile=deprecated_compile(compile, torch_compile),
            )
        self.model = self.module.model
        self._sim_data = dict(self.model.params)
        self.data = SimulationData(
            self._sim_data, minibatch_size is not None, module=self.module
        )
        self.closed = False
        self.reset()

    # -- context manager and lifetime

    def __enter__(self):
        if self.closed:
            raise SimulatorClosed("Cannot re-open after simulator is closed")
        return self

    def __exit__(self, exc_type, exc_value, traceback):
        self.close()

    def __del__(self):
        if not getattr(self, "closed", True):
            warnings.warn(
                f"Simulator with model={self.model} was deallocated while open. Please "
                "close simulators manually to ensure resources are properly freed.",
                ResourceWarning,
            )

    def __getstate__(self):
        module = self.module
        return {
            "model": self.model,
            # state of the signals the steps use: a restored simulator is built
            # from the (already merged) model and owns exactly those
            "state": {
                base: to_numpy(sv.values[base])
                for sv in [module.signal_values()]
                for base in module.engine.layout.dynamic
            },
            "n_steps": module.n_steps,
            "probe_outputs": {p: self._sim_data[p] for p in self.model.probes},
            "dt": self.dt,
            "seed": self.seed,
            "minibatch_size": self.minibatch_size,
            "dtype": str(self.dtype).replace("torch.", ""),
            "progress_bar": self.progress_bar,
            "optimize": self.optimize,
            "torch_compile": self.module.engine.torch_compile,
            "closed": self.closed,
        }

    def __setstate__(self, state):
        self.__init__(
            network=None,
            model=state["model"],
            dt=state["dt"],
            seed=state["seed"],
            minibatch_size=state["minibatch_size"],
            progress_bar=state["progress_bar"],
            dtype=state["dtype"],
            optimize=False,  # the pickled model is already merged
            torch_compile=state.get("torch_compile", state.get("compile", False)),
        )
        self.optimize = state["optimize"]
        device = self.module.device
        self.module.load_state(
            {sig: torch.as_tensor(v, device=device) for sig, v in state["state"].items()}
        )
        self.module.n_steps = state["n_steps"]
        self._sim_data.update(state["probe_outputs"])
        if state["closed"]:
            self.close()

    def close(self) -> None:
        """Close the simulator; data stays readable, running raises an error."""
        self.closed = True

    def _check_open(self, action):
        if self.closed:
            raise SimulatorClosed(f"Cannot {action} closed Simulator")

    # -- properties

    @property
    def dt(self) -> float:
        """(float) Simulation time step."""
        return self.model.dt

    @dt.setter
    def dt(self, dummy: Any) -> None:
        raise ReadonlyError(attr="dt", obj=self)

    @property
    def n_steps(self) -> int:
        """(int) Number of steps simulated."""
        return self.module.n_steps

    @property
    def time(self) -> float:
        """(float) Current simulation time."""
        return self.module.n_steps * self.dt

    @property
    def seed(self) -> int:
        return self.module.seed

    @property
    def signals(self) -> SignalReader:
        """Current signal values, ``sim.signals[sig]``, as numpy arrays."""
        return SignalReader(self.module, batched=self.minibatch_size is not None)

    @property
    def step_order(self) -> list[Operator]:
        return self.module.engine.step_order

    def explain(self, n_steps: int | None = None) -> Explanation | None:
        """Which run strategy the last run took (or a run of ``n_steps`` would).

        Returns an explanation that prints as text: the strategy (``windowed``,
        ``in_place``, ``compiled`` or ``functional``), why it was taken and why
        each faster one was not, and the operators that ran in a slower form
        (stepped inside a window instead of over it, a ``CALL`` of their step
        instead of in-place instructions) with the reason. ``run_steps`` runs
        without autograd, and so does the run ``n_steps`` asks about. None
        before the first run when ``n_steps`` is not given.
        """
        return self.module.explain(n_steps, grad=False if n_steps is not None else None)

    def __repr__(self):
        label = None if self.model.toplevel is None else self.model.toplevel.label
        last = self.module.engine.last_run
        strategy = "no run yet" if last is None else f"last run {last.strategy}"
        return (
            f"<Simulator network={label!r} dt={self.dt} n_steps={self.n_steps} "
            f"({strategy})>"
        )

    # -- nengo API

    def reset(self, seed: int | None = None) -> None:
        """Reset state and probe data; a new ``seed`` changes random processes."""
        self._check_open("reset")
        self.module.reset(seed=seed)
        self.clear_probes()

    def clear_probes(self) -> None:
        """Clear all probe data."""
        for probe in self.model.probes:
            self._sim_data[probe] = []
        self.data.reset()

    def run(
        self, time_in_seconds: float, progress_bar: bool | Any | None = None, **kwargs: Any
    ) -> None:
        """Simulate for ``time_in_seconds`` (rounded to whole steps).

        ``kwargs`` (``data``, ``chunk_steps``, ``probe_callback``) go to `run_steps`.
        """
        if time_in_seconds < 0:
            raise ValidationError(
                f"Must be positive (got {time_in_seconds:g})", attr="time_in_seconds"
            )
        steps = int(np.round(float(time_in_seconds) / self.dt))
        if steps == 0:
            warnings.warn(
                f"{time_in_seconds} results in running for 0 timesteps. Simulator "
                f"still at time {self.time}."
            )
        else:
            self.run_steps(steps, progress_bar=progress_bar, **kwargs)

    def run_steps(
        self,
        steps: int,
        progress_bar: bool | Any | None = None,
        data: Any = None,
        chunk_steps: int | None = None,
        probe_callback: Callable | None = None,
    ) -> None:
        """Simulate ``steps`` steps, appending probe data to ``sim.data``.

        ``data`` optionally feeds input nodes, as in `predict`. For long runs
        (see `.streaming.run_chunked`): ``chunk_steps`` simulates that many
        steps per engine call, so memory does not grow with ``steps``;
        ``probe_callback(data, n_steps)`` receives each chunk's probe data
        instead of ``sim.data`` (e.g. a `.ProbeStream` writing ``.npy`` files).
        With ``keep_history=False`` runs are chunked and ``sim.data`` keeps only
        the latest sample.
        """
        self._check_open("run")
        if isinstance(steps, (bool, np.bool_)) or int(steps) != steps or steps < 0:
            raise ValidationError(
                f"Must be a non-negative integer (got {steps})", attr="steps", obj=self
            )
        if type(self).step is not Simulator.step:
            # a subclass that changes what one step does (nengo_extras'
            # RealTimeSimulator sleeps in it) must see every step, as in nengo,
            # whose run_steps calls step(): give up the multi-step engine calls
            self._run_through_step(int(steps), data, progress_bar, probe_callback)
            return
        self._advance(int(steps), data, progress_bar, chunk_steps, probe_callback)

    def step(self, **kwargs: Any) -> None:
        """Advance one step; ``kwargs`` (``data``, ``probe_callback``) as in `run_steps`."""
        self._check_open("run")
        self._advance(1, kwargs.pop("data", None), kwargs.pop("progress_bar", False),
                      None, kwargs.pop("probe_callback", None), **kwargs)

    def _advance(self, steps, data, progress_bar, chunk_steps, probe_callback, **kwargs):
        if kwargs:
            raise TypeError(f"unexpected keyword arguments {sorted(kwargs)}")
        streaming.run_chunked(
            self,
            steps,
            data=data,
            progress_bar=progress_bar,
            chunk_steps=chunk_steps,
            probe_callback=probe_callback,
        )

    def _run_through_step(self, steps, data, progress_bar, probe_callback):
        # validated for the whole run first, so a bad input fails before step 1
        feeds = self.module.prepare_inputs(data, steps)[0] if data else None
        kwargs = {} if probe_callback is None else {"probe_callback": probe_callback}
        if progress_bar is None:
            progress_bar = self.progress_bar
        with ProgressTracker(progress_bar, Progress("Simulating", "Simulation", steps)) as pt:
            for i in range(steps):
                if feeds is not None:
                    kwargs["data"] = {node: v[:, i : i + 1] for node, v in feeds.items()}
                self.step(**kwargs)
                pt.total_progress.step()

    def trange(
        self, dt: float | None = None, sample_every: float | None = None
    ) -> np.ndarray:
        """Times of the probed samples (starting at ``dt``, not 0)."""
        if dt is not None:
            if sample_every is not None:
                raise ValidationError(
                    "Cannot specify both `dt` and `sample_every`. "
                    "Use `sample_every` only.",
                    attr="dt",
                    obj=self,
                )
            warnings.warn(
                "`dt` is deprecated. Use `sample_every` instead.", DeprecationWarning
            )
            sample_every = dt
        period = 1 if sample_every is None else sample_every / self.dt
        steps = np.arange(1, self.n_steps + 1)
        return self.dt * steps[steps % period < 1]

    # -- NengoDL's batched API

    def predict(
        self,
        x: (
            np.ndarray | torch.Tensor | Mapping[Any, np.ndarray | torch.Tensor] | None
        ) = None,
        n_steps: int | None = None,
        stateful: bool = False,
        verbose: int = 1,
        progress_bar: bool | Any | None = None,
    ) -> dict[nengo.Probe, np.ndarray]:
        """Run the network on inputs ``x``; return ``{probe: (batch, n_steps, d)}``.

        ``x`` is a dict from input Node (or its label) to an array
        ``(batch, n_steps, node.size_out)``, or one array for a network with one
        input Node. A batch larger than ``minibatch_size`` runs in minibatches. With
        ``stateful=False`` every minibatch starts from the initial state and the
        simulator's state is left as it was.

        Several minibatches show a progress bar, as `fit` and `evaluate` do;
        ``verbose=0`` (Keras' argument) or ``progress_bar=False`` hides it.
        ``progress_bar`` None follows the simulator's ``progress_bar``.
        """
        self._check_open("run")
        inputs = self._input_dict(x)
        for key, value in inputs.items():
            # checked before splitting into minibatches: a (n_steps, d) array
            # would otherwise be read as n_steps samples
            if np.ndim(value) != 3:
                node = self.module.find_node(key)
                raise ValidationError(
                    f"input for {node} must have shape (batch, n_steps, "
                    f"{node.size_out}), got {np.shape(value)} (add the batch axis: "
                    "x[None] for one sample)",
                    attr="x",
                    obj=self,
                )
        batch = self.minibatch_size or 1
        n_samples = validation.common_samples(
            {str(k): v for k, v in inputs.items()}, "predict"
        )
        n_samples = batch if n_samples is None else n_samples
        if n_samples == 0:
            raise ValidationError(
                "predict: the inputs hold no samples (their first axis is 0); give "
                "at least one sample, shaped (batch, n_steps, d)",
                attr="x",
                obj=self,
            )
        if n_samples % batch != 0:
            raise ValidationError(
                f"number of samples ({n_samples}) is not a multiple of "
                f"minibatch_size ({batch})",
                attr="x",
                obj=self,
            )
        n_batches = n_samples // batch
        if progress_bar is None:
            progress_bar = self.progress_bar
        if not verbose or n_batches < 2:
            progress_bar = False
        chunks = []
        with ProgressTracker(
            progress_bar, Progress("Predicting", "Prediction", n_batches)
        ) as tracker:
            for i in range(0, n_samples, batch):
                chunks.append(
                    self.predict_on_batch(
                        {k: v[i : i + batch] for k, v in inputs.items()} or None,
                        n_steps=n_steps,
                        stateful=stateful,
                    )
                )
                tracker.total_progress.step()
        return {p: np.concatenate([c[p] for c in chunks]) for p in self.model.probes}

    def predict_on_batch(
        self,
        x: (
            np.ndarray | torch.Tensor | Mapping[Any, np.ndarray | torch.Tensor] | None
        ) = None,
        n_steps: int | None = None,
        stateful: bool = False,
    ) -> dict[nengo.Probe, np.ndarray]:
        """`predict` for exactly one minibatch."""
        self._check_open("run")
        self._check_stateful(stateful)
        inputs = self._input_dict(x)
        steps = validation.positive_steps(_steps_of(inputs, n_steps), "predict")
        self._check_output_fits(steps)
        module = self.module
        with contextlib.ExitStack() as stack:
            if not stateful:
                stack.enter_context(module.preserved_state())
                module.reset()
            with torch.no_grad():
                out = module(inputs=inputs or None, n_steps=n_steps)
        if stateful:
            for probe, value in out.items():
                self._sim_data[probe].append(to_numpy(value))
            self.data.reset()
        return {probe: to_numpy(value) for probe, value in out.items()}

    def _check_output_fits(self, n_steps):
        """Refuse a predict whose probe output could never be allocated."""
        if self.module.settings["keep_history"] is False:
            return
        batch = self.minibatch_size or 1
        per_step = sum(
            int(np.prod(self.model.sig[p]["in"].shape)) for p in self.model.probes
        )
        needed = batch * n_steps * per_step * self.dtype.itemsize
        try:
            memory = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        except (AttributeError, OSError, ValueError):
            return  # no way to know this machine's memory: let torch try
        if needed > memory:
            raise ValidationError(
                f"predict: n_steps={n_steps} needs {needed / 2**30:.3g} GiB of probe "
                f"output, more than this machine's {memory / 2**30:.3g} GiB of "
                "memory; run fewer steps, or use run_steps(..., chunk_steps=, "
                "probe_callback=) to stream long runs",
                attr="n_steps",
                obj=self,
            )

    def _check_stateful(self, stateful):
        if stateful and self.module.settings["stateful"] is False:
            raise ValidationError(
                "stateful=True, but the network was configured with "
                "configure_settings(stateful=False)",
                attr="stateful",
                obj=self,
            )

    def _input_dict(self, x):
        if x is None:
            return {}
        if isinstance(x, Mapping):
            return {
                k: validation.as_array(v, f"input for {k}") for k, v in x.items()
            }
        nodes = self.module.input_nodes
        if len(nodes) != 1:
            raise ValidationError(
                f"a single input array needs exactly one input Node, but the network "
                f"has {len(nodes)}; pass a dict keyed by Node",
                attr="x",
                obj=self,
            )
        return {nodes[0]: validation.as_array(x, f"input for {nodes[0]}")}


def _steps_of(inputs, n_steps):
    """``n_steps``, or the time axis of the first 3-d input when it is None."""
    if n_steps is not None:
        return n_steps
    shapes = [np.shape(v) for v in inputs.values()]
    # not 3-d: NengoModule names the input and the shape it needs
    return next((s[1] for s in shapes if len(s) == 3), None if not shapes else 1)


class SignalReader(Mapping):
    """Read-only numpy view of any signal's current value (views included)."""

    def __init__(self, module: NengoModule, batched: bool) -> None:
        self.module = module
        self.batched = batched
        self.layout = module.engine.layout

    def __getitem__(self, sig):
        sig = self.module.engine.resolve(sig)
        if sig not in self.layout.views:
            raise KeyError(sig)
        sv = self.module.signal_values()
        # a copy: the state tensors may be shared (resets hand out the same
        # initial tensors), so writing into a view would change later runs
        value = to_numpy(sv.read(sig)).copy()
        if sv.is_batched(sig) and not self.batched:
            value = value[0]
        return value

    def __iter__(self):
        return iter(self.layout.views)

    def __len__(self):
        return len(self.layout.views)


class SimulationData(Mapping):
    """Probe data and built parameters, as ``sim.data[obj]``.

    Probe data is kept in chunks, one per run, and joined along time on access:
    ``(n_samples, d)`` without a minibatch (as in Nengo), else
    ``(minibatch, n_samples, d)`` (as in NengoDL). Built Ensembles and
    Connections show their current (trained) parameters, as in NengoDL.
    """

    def __init__(
        self, raw: Mapping, batched: bool, module: NengoModule | None = None
    ) -> None:
        self.raw = raw
        self.batched = batched
        self.module = module
        self._cache = {}

    def __getitem__(self, key):
        if key not in self._cache:
            value = self.raw[key]
            if isinstance(value, list):
                value = self._join(key, value)
                value.setflags(write=False)
            self._cache[key] = value
        value = self._cache[key]
        return self._trained(key, value) if self.module is not None else value

    def _trained(self, obj, built):
        """``built`` with the values of the object's trained parameters."""
        trained = {
            name: param
            for name, param in getattr(
                self.module._modules_by_obj.get(obj), "_parameters", {}
            ).items()
            if param is not None
        }
        if isinstance(obj, nengo.Ensemble) and trained:
            scaled = to_numpy(trained["encoders"]) if "encoders" in trained else None
            changes = {}
            bias = to_numpy(trained["bias"]) if "bias" in trained else None
            if bias is not None and not np.array_equal(bias, built.bias):
                changes["bias"] = bias
            if scaled is not None and not np.array_equal(scaled, built.scaled_encoders):
                changes["scaled_encoders"] = scaled
                changes["encoders"] = scaled * (obj.radius / built.gain)[:, None]
            return built._replace(**changes) if changes else built
        if isinstance(obj, nengo.Connection) and "weights" in trained:
            weights = to_numpy(trained["weights"])
            same_shape = np.shape(built.weights) == weights.shape
            if same_shape and not np.array_equal(weights, built.weights):
                return built._replace(weights=weights)
        return built

    def _join(self, probe, chunks):
        if chunks:
            data = np.concatenate(chunks, axis=1)
        else:
            data = np.zeros((1, 0) + tuple(np.shape(probe.size_in)), dtype=float)
            data = data.reshape((1, 0, probe.size_in))
        return data if self.batched else data[0]

    def __iter__(self):
        return iter(self.raw)

    def __len__(self):
        return len(self.raw)

    def __repr__(self):
        return repr(self.raw)

    def reset(self) -> None:
        self._cache.clear()
