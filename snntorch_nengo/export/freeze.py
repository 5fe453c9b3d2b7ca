"""Trained values as Nengo parameters: ``sim.get_nengo_params`` and ``freeze_params``.

The module tree holds what Nengo's builder computed, possibly changed by training:

- an Ensemble's *scaled* encoders (``encoders * gain / radius``) and its bias;
- a Connection's ``weights``: the decoders combined with the transform for a
  decoded connection (``(size_out, pre.n_neurons)``), the full weight matrix for a
  connection with a weight solver (``(post.n_neurons, pre.n_neurons)``), and the
  transform's sampled value otherwise (the dense matrix, scalar or diagonal; the
  nonzero values of a sparse transform; a convolution kernel).

This file turns those values back into arguments of `nengo.Ensemble` and
`nengo.Connection` such that Nengo's builder, given them, rebuilds exactly the
same tensors.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Optional

import nengo
import numpy as np
from nengo.exceptions import ValidationError
from nengo.neurons import Direct
from nengo.solvers import NoSolver
from nengo.transforms import (
    Convolution,
    ConvolutionTranspose,
    Dense,
    NoTransform,
    Sparse,
)

from ..engine.signals import sparse_indices
from ..module import NengoModule

if TYPE_CHECKING:
    from nengo.builder.signal import Signal


class ZeroFunction:
    """A connection function returning zeros of size ``size``.

    Decoded connections rebuilt from trained decoders (`nengo.solvers.NoSolver`)
    never evaluate their function; it only fixes the decoded size. Unlike a lambda,
    this can be pickled.
    """

    def __init__(self, size: int) -> None:
        self.size = int(size)

    def __call__(self, x):
        return np.zeros(self.size)

    def __repr__(self):
        return f"ZeroFunction(size={self.size})"

    def __eq__(self, other):
        return type(other) is type(self) and other.size == self.size

    def __hash__(self):
        return hash((type(self), self.size))


class FullWeightsSolver(NoSolver):
    """A `nengo.solvers.NoSolver` giving a full ``(pre, post)`` weight matrix.

    For connections between Ensembles whose solver had ``weights=True``: being
    non-compositional, Nengo's builder uses ``values.T`` directly as the weight
    matrix from the pre-neurons to the post-neurons, without combining it with the
    transform or the post Ensemble's encoders.
    """

    compositional = False

    def __init__(self, values: np.ndarray | None = None, weights: bool = True) -> None:
        if not weights:
            raise ValidationError(
                "FullWeightsSolver always solves for weights", attr="weights", obj=self
            )
        super().__init__(values=values, weights=True)


ENSEMBLE_KEYS = (
    "normalize_encoders",
    "encoders",
    "gain",
    "bias",
    "max_rates",
    "intercepts",
)
CONNECTION_KEYS = ("function", "transform", "solver")  # order in which they are set
PROBE_KEYS = ("solver",)


# -- reading the live values


def _check_member(sim, obj):
    if obj not in sim.model.params:
        raise ValidationError(
            f"{obj} is not part of the network simulated by this Simulator",
            attr="objs",
            obj=sim,
        )


def read_signal(sim: Any, sig: Signal, obj: object) -> np.ndarray:
    """The current value of a signal as a numpy array (without a batch dimension)."""
    values = sim.module.signal_values()
    value = values.read(sig).detach()
    if values.is_batched(sig):
        if value.shape[0] > 1 and not bool((value == value[:1]).all()):
            raise ValidationError(
                f"the value of {sig} differs across the {value.shape[0]} items of the "
                "minibatch (learning rules change it during a run); reset() the "
                "simulator or use a minibatch of one",
                attr="objs",
                obj=obj,
            )
        value = value[0]
    return value.cpu().numpy()


def is_simulator(obj: object) -> bool:
    """Whether ``obj`` is a simulator of this package (it holds a `.NengoModule`).

    Exporters take a simulator or a network; they sit below the `.Simulator`
    class, so they know one by the module it runs.
    """
    return isinstance(getattr(obj, "module", None), NengoModule)


class BuiltValues:
    """Built (or trained) weights, gains and biases of a network's objects."""

    def __init__(self, sim_or_net: Any, dt: float) -> None:
        if is_simulator(sim_or_net):
            self.sim = sim_or_net
            self.model = sim_or_net.model
            self.net = sim_or_net.module.network
        elif isinstance(sim_or_net, nengo.Network):
            self.sim = None
            self.net = sim_or_net
            self.model = nengo.builder.Model(dt=dt)
            self.model.build(sim_or_net)
        else:
            raise ValidationError(
                "expected a snntorch_nengo.Simulator or a nengo.Network, got "
                f"{sim_or_net!r} (type '{type(sim_or_net).__name__}')",
                attr="sim_or_net",
            )

    def signal(self, obj: object, key: str) -> Optional[np.ndarray]:
        sig = self.model.sig.get(obj, {}).get(key)
        if sig is None:
            return None
        if self.sim is not None:
            return np.asarray(read_signal(self.sim, sig, obj), dtype=float)
        return np.asarray(sig.initial_value, dtype=float)

    def gain(self, ens: nengo.Ensemble) -> Optional[np.ndarray]:
        built = self.model.params.get(ens)
        return None if built is None or built.gain is None else np.asarray(built.gain)

    def bias(self, ens: nengo.Ensemble) -> Optional[np.ndarray]:
        return self.signal(ens.neurons, "bias")


def unscale_encoders(scaled: np.ndarray, gain: np.ndarray, radius: float) -> np.ndarray:
    """Encoders that Nengo's builder scales into ``scaled`` (given gain, radius).

    Nengo computes ``encoders * (gain / radius)[:, None]``. The plain inverse,
    ``scaled / (gain / radius)``, can be one unit in the last place off after that
    multiplication, so each element is moved by up to two units in the last place
    to the value whose product is exactly ``scaled`` (or closest to it, where no
    float gives it exactly).
    """
    gain = np.asarray(gain)
    dtype = np.result_type(gain.dtype, np.float32)
    scaled = np.asarray(scaled, dtype=dtype)
    factor = (gain.astype(dtype) / radius)[:, np.newaxis]
    factor = np.broadcast_to(factor, scaled.shape)
    if not np.all(np.isfinite(factor)):
        raise ValidationError(
            "cannot recover the encoders: gain / radius is not finite",
            attr="encoders",
        )
    zero = factor == 0
    if np.any(zero & (scaled != 0)):
        rows = sorted(set(np.nonzero(zero & (scaled != 0))[0].tolist()))
        raise ValidationError(
            f"cannot recover the encoders of neurons {rows}: their gain is zero but "
            "their trained scaled encoders are not",
            attr="encoders",
        )
    with np.errstate(divide="ignore", invalid="ignore"):
        base = np.where(zero, 0.0, scaled / np.where(zero, 1.0, factor)).astype(dtype)
    candidates = [base]
    for direction in (np.inf, -np.inf):
        value = base
        for _ in range(2):
            value = np.nextafter(value, dtype.type(direction))
            candidates.append(value)
    candidates = np.stack(candidates)
    errors = np.abs(candidates * factor - scaled)
    errors[~np.isfinite(errors)] = np.inf
    best = np.argmin(errors, axis=0)  # the first minimum: `base` when it is exact
    return np.take_along_axis(candidates, best[np.newaxis], axis=0)[0]


def ensemble_params(sim: Any, ens: nengo.Ensemble) -> dict[str, Any]:
    model = sim.model
    if isinstance(ens.neuron_type, Direct):
        encoders = read_signal(sim, model.sig[ens]["encoders"], ens)
        if not np.array_equal(encoders, np.eye(ens.dimensions)):
            raise ValidationError(
                f"{ens} has neuron type Direct, whose encoders Nengo fixes to the "
                "identity; its trained encoders cannot be expressed as Nengo "
                "parameters",
                attr="objs",
                obj=ens,
            )
        return {}
    built = model.params[ens]
    scaled = read_signal(sim, model.sig[ens]["encoders"], ens)
    bias = read_signal(sim, model.sig[ens.neurons]["bias"], ens)
    gain = np.array(built.gain, copy=True)
    try:
        encoders = unscale_encoders(scaled, gain, ens.radius)
    except ValidationError as e:
        raise ValidationError(f"{ens}: {e.args[0]}", attr="objs", obj=ens) from None
    return {
        "encoders": encoders,
        "normalize_encoders": False,
        "gain": gain,
        "bias": np.array(bias, dtype=gain.dtype, copy=True),
        "max_rates": nengo.Ensemble.max_rates.default,
        "intercepts": nengo.Ensemble.intercepts.default,
    }


def _with_weights(conn, sig, weights):
    """``conn.transform`` with its sampled value replaced by ``weights``."""
    transform = conn.transform
    if weights is None:
        return None
    if isinstance(transform, (Dense, NoTransform)):
        return weights
    if isinstance(transform, Sparse):
        rows, cols = sparse_indices(sig.initial_value)
        indices = np.stack([rows, cols], axis=1).astype(np.int64)
        return Sparse(transform.shape, indices=indices, init=weights)
    if isinstance(transform, ConvolutionTranspose):
        return ConvolutionTranspose(
            transform.n_filters,
            transform.input_shape,
            output_shape=transform.output_shape,
            kernel_size=transform.kernel_size,
            strides=transform.strides,
            padding=transform.padding,
            channels_last=transform.channels_last,
            init=weights,
        )
    if isinstance(transform, Convolution):
        return Convolution(
            transform.n_filters,
            transform.input_shape,
            kernel_size=transform.kernel_size,
            strides=transform.strides,
            padding=transform.padding,
            channels_last=transform.channels_last,
            init=weights,
            groups=transform.groups,
        )
    raise ValidationError(
        f"{conn}: transforms of type {type(transform).__name__} cannot be frozen",
        attr="objs",
        obj=conn,
    )


def connection_params(sim: Any, conn: nengo.Connection) -> dict[str, Any]:
    sig = sim.model.sig[conn].get("weights")
    weights = None if sig is None else read_signal(sim, sig, conn)
    pre = conn.pre_obj
    if isinstance(pre, nengo.Ensemble) and not isinstance(pre.neuron_type, Direct):
        # decoded: `weights` already holds the transform (and the post encoders
        # for a weight solver), so the rebuilt connection gets no transform and a
        # function that only fixes the decoded size
        if conn.solver.weights and isinstance(conn.post_obj, nengo.Ensemble):
            solver = FullWeightsSolver(weights.T)
        else:
            solver = NoSolver(weights.T, weights=False)
        return {
            "solver": solver,
            "function": ZeroFunction(conn.size_out),
            "transform": None,
        }
    return {"transform": _with_weights(conn, sig, weights)}


def probe_connection(sim: Any, probe: nengo.Probe) -> nengo.Connection | None:
    """The connection Nengo's builder made for ``probe``, if any."""
    for obj in sim.model.params:
        if isinstance(obj, nengo.Connection) and obj.post_obj is probe:
            return obj
    return None


def probe_params(sim: Any, probe: nengo.Probe) -> dict[str, Any]:
    # a probe of an Ensemble's decoded output decodes through a connection of its
    # own, whose decoders (trainable here) Nengo takes from ``probe.solver``
    conn = probe_connection(sim, probe)
    if conn is None:
        return {}
    sig = sim.model.sig[conn].get("weights")
    pre = conn.pre_obj
    if (
        sig is None
        or not isinstance(pre, nengo.Ensemble)
        or isinstance(pre.neuron_type, Direct)
    ):
        return {}
    return {"solver": NoSolver(read_signal(sim, sig, probe).T, weights=False)}


def nengo_params(
    sim: Any, obj: nengo.Ensemble | nengo.Connection | nengo.Probe
) -> dict[str, Any]:
    """The Nengo parameters that rebuild ``obj``'s trained values."""
    if isinstance(obj, nengo.Ensemble):
        _check_member(sim, obj)
        return ensemble_params(sim, obj)
    if isinstance(obj, nengo.Connection):
        _check_member(sim, obj)
        return connection_params(sim, obj)
    if isinstance(obj, nengo.Probe):
        _check_member(sim, obj)
        return probe_params(sim, obj)
    raise ValidationError(
        f"{obj}: only Ensembles, Connections and Probes have parameters (got "
        f"{type(obj).__name__})",
        attr="nengo_objs",
        obj=sim,
    )


def get_nengo_params(
    sim: Any, nengo_objs: Any, as_dict: bool = False
) -> dict[str, Any] | list[dict[str, Any]] | dict[object, dict[str, Any]]:
    single = not isinstance(nengo_objs, (list, tuple))
    objs = [nengo_objs] if single else list(nengo_objs)
    params = [nengo_params(sim, obj) for obj in objs]
    if as_dict:
        keys = [_key(sim, obj) for obj in objs]
        repeated = sorted({k for k in keys if keys.count(k) > 1})
        if repeated:
            raise ValidationError(
                f"as_dict=True needs a unique key per object, but {repeated} name more "
                "than one; give the objects unique labels",
                attr="as_dict",
                obj=sim,
            )
        return dict(zip(keys, params))
    return params[0] if single else params


def _key(sim, obj):
    """An object's label, or its key in the module tree if it has none."""
    if obj.label is not None:
        return str(obj.label)
    module = sim.module.module_of(obj)
    for kind in ("ensembles", "connections", "probes"):
        for key, child in getattr(sim.module, kind).items():
            if child is module:
                return key
    return str(obj)


# -- freezing


def _targets(sim, objs):
    """The Ensembles and Connections to freeze, in order, without repeats."""
    objs = objs if isinstance(objs, (list, tuple)) else [objs]
    out = []
    for obj in objs:
        if isinstance(obj, nengo.Network):
            _check_network(sim, obj)
            out.extend(obj.all_ensembles)
            out.extend(obj.all_connections)
            out.extend(obj.all_probes)
        elif isinstance(obj, (nengo.Ensemble, nengo.Connection, nengo.Probe)):
            _check_member(sim, obj)
            out.append(obj)
        else:
            raise ValidationError(
                f"{obj}: freeze_params takes Networks, Ensembles, Connections and "
                f"Probes (got {type(obj).__name__})",
                attr="objs",
                obj=sim,
            )
    seen, unique = set(), []
    for obj in out:
        if obj not in seen:
            seen.add(obj)
            unique.append(obj)
    return unique


def _check_network(sim, net):
    root = sim.module.network
    if root is not None:
        member = net is root or any(net is sub for sub in root.all_networks)
    else:
        member = all(
            obj in sim.model.params
            for obj in net.all_ensembles + net.all_nodes + net.all_connections
        )
    if not member:
        raise ValidationError(
            f"{net} is not the network simulated by this Simulator nor one of its "
            "subnetworks",
            attr="objs",
            obj=sim,
        )


def _current(obj, key):
    if isinstance(obj, nengo.Connection) and key == "function":
        return obj.function_info
    return getattr(obj, key)


def _assign(obj, key, value):
    if isinstance(obj, nengo.Connection) and key == "function":
        obj.function_info = value
    else:
        setattr(obj, key, value)


def freeze_params(sim: Any, objs: Any) -> None:
    """Write the trained values into the Nengo objects (all or nothing)."""
    updates = []
    for obj in _targets(sim, objs):
        params = nengo_params(sim, obj)
        if isinstance(obj, nengo.Ensemble):
            order = ENSEMBLE_KEYS
        elif isinstance(obj, nengo.Connection):
            order = CONNECTION_KEYS
        else:
            order = PROBE_KEYS
        updates.append((obj, [(k, params[k]) for k in order if k in params]))
    done = []  # (obj, {key: old value}) in the order applied
    try:
        for obj, items in updates:
            old = {}
            done.append((obj, old))
            for key, value in items:
                previous = _current(obj, key)
                _assign(obj, key, value)
                old[key] = previous
    except Exception:
        # undo object by object, each in the forward key order (a connection's
        # function decides which transforms are valid)
        for obj, old in reversed(done):
            for key, value in old.items():
                try:
                    _assign(obj, key, value)
                except Exception:  # pragma: no cover - best effort
                    pass
        raise
