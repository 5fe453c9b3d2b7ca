"""Checking a (frozen) network against Loihi's constraints, for ``nengo_loihi``.

`check_loihi` says, object by object, what will not map onto a Loihi chip and
why, and what will map but behave differently from ``nengo.Simulator`` (weight
quantization, spike encoding of host inputs, ...). `to_loihi` freezes a trained
`snntorch_nengo.Simulator` into its network, checks it and hands the network on
for ``nengo_loihi.Simulator``.

This module imports without ``nengo_loihi``. With it installed, the hardware
limits are read from it and ``check_loihi(..., build=True)`` also runs
nengo_loihi's own builder (which discretizes and validates every block);
without it, the limits below are those of nengo_loihi 1.1.0 (``block.py`` and
``builder/discretize.py``).

The rules follow nengo_loihi 1.1.0's builder: Nodes run on the host; Ensembles
go on the chip unless ``net.config[ens].on_chip = False`` (after
``nengo_loihi.add_params``), their neuron type is Direct, or they are the post
of a learned connection or the source of an error signal.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import warnings
from collections.abc import Iterable, Mapping
from types import ModuleType
from typing import Any

import nengo
import numpy as np
from nengo.exceptions import ValidationError

from .freeze import BuiltValues, is_simulator

_UNSET = object()
_nengo_loihi_module = _UNSET


def nengo_loihi_module() -> ModuleType | None:
    """nengo_loihi if it is installed (imported on first use), else None."""
    global _nengo_loihi_module
    if _nengo_loihi_module is _UNSET:
        try:
            with warnings.catch_warnings():
                # 1.1.0 warns that it was tested up to nengo 3.2 only
                warnings.simplefilter("ignore")
                import nengo_loihi
        except Exception:  # noqa: BLE001 (not installed, or broken with this nengo)
            nengo_loihi = None
        _nengo_loihi_module = nengo_loihi
    return _nengo_loihi_module


@functools.lru_cache(maxsize=None)
def limits() -> dict[str, Any]:
    """Loihi's limits: nengo_loihi's if installed, else documented constants."""
    limits = {
        # one neuron core: compartments, input/output axons, synapse memory bits
        "max_compartments": 1024,
        "max_in_axons": 4096,
        "max_out_axons": 4096,
        "max_synapse_bits": 16384 * 64,
        # weights are 8-bit (sign + up to 8 magnitude bits, 255 levels) with a
        # shared exponent per block
        "weight_levels": 255,
        # a decoded connection between on-chip ensembles passes through
        # 10 on/off pairs of decode neurons per dimension
        "decode_neurons_per_dim": 20,
        # on/off input neurons per dimension for values sent from the host
        "node_neurons_per_dim": 2,
        "decode_tau": 0.005,
        "source": "documented constants of nengo_loihi 1.1.0",
    }
    nengo_loihi = nengo_loihi_module()
    if nengo_loihi is not None:
        from nengo_loihi import block

        limits.update(
            max_compartments=block.MAX_COMPARTMENTS,
            max_in_axons=block.MAX_IN_AXONS,
            max_out_axons=block.MAX_OUT_AXONS,
            max_synapse_bits=block.MAX_SYNAPSE_BITS,
            source=f"nengo_loihi {nengo_loihi.__version__}",
        )
    return limits


ERROR, WARNING, HOST = "error", "warning", "host"


@dataclasses.dataclass
class LoihiIssue:
    """One finding: ``obj`` (a Nengo object), ``reason``, and ``level``.

    ``level`` is ``"error"`` (will not build or map onto the chip),
    ``"warning"`` (maps, but behaves differently from ``nengo.Simulator``) or
    ``"host"`` (runs on the host CPU, not on the chip).
    """

    obj: object
    reason: str
    level: str = ERROR

    def __str__(self):
        return f"[{self.level}] {self.obj}: {self.reason}"


class LoihiReport:
    """The findings of `check_loihi`.

    Attributes
    ----------
    issues : list of LoihiIssue
        All findings, in network order.
    on_chip : dict
        ``{Ensemble/Node/Probe: bool}``, where each object will run.
    limits : dict
        The hardware limits used, and where they came from (``"source"``).
    """

    def __init__(
        self,
        issues: Iterable[LoihiIssue],
        on_chip: Mapping[object, bool],
        limits: Mapping[str, Any],
    ) -> None:
        self.issues = list(issues)
        self.on_chip = dict(on_chip)
        self.limits = dict(limits)

    def _level(self, level):
        return [i for i in self.issues if i.level == level]

    @property
    def errors(self) -> list[LoihiIssue]:
        return self._level(ERROR)

    @property
    def warnings(self) -> list[LoihiIssue]:
        return self._level(WARNING)

    @property
    def host(self) -> list[LoihiIssue]:
        return self._level(HOST)

    @property
    def ok(self) -> bool:
        """True when nothing prevents the network from mapping."""
        return not self.errors

    def issues_for(self, obj: object) -> list[LoihiIssue]:
        return [i for i in self.issues if i.obj is obj]

    def raise_if_errors(self) -> None:
        if self.errors:
            raise ValidationError(
                "the network cannot be mapped onto Loihi:\n"
                + "\n".join(f"  {i.obj}: {i.reason}" for i in self.errors),
                attr="network",
            )

    def __str__(self):
        n_chip = sum(1 for v in self.on_chip.values() if v)
        head = (
            f"LoihiReport: {len(self.errors)} errors, {len(self.warnings)} warnings, "
            f"{len(self.host)} host objects, {n_chip} objects on chip "
            f"(limits: {self.limits['source']})"
        )
        return "\n".join([head] + [f"  {i}" for i in self.issues])

    __repr__ = __str__


# -- which neuron types the chip runs


def _supported_neuron(nt):
    """None if ``nt`` runs on the chip, else the reason it does not."""
    t = type(nt)
    if t in (nengo.LIF, nengo.SpikingRectifiedLinear):
        return None
    if t.__module__.startswith("nengo_loihi") and t.__name__ in (
        "LoihiLIF",
        "LoihiSpikingRectifiedLinear",
    ):
        return None
    if t is nengo.RegularSpiking:
        base = nt.base_type
        if type(base) not in (nengo.LIFRate, nengo.RectifiedLinear):
            return (
                f"RegularSpiking with base type {type(base).__name__} is not supported "
                "(only LIFRate and RectifiedLinear)"
            )
        if base.amplitude != 1:
            return "RegularSpiking base types must have amplitude 1 on Loihi"
        return None
    spiking = {
        nengo.LIFRate: "LIF",
        nengo.RectifiedLinear: "SpikingRectifiedLinear",
    }
    hint = (
        "use a supported spiking type (LIF, SpikingRectifiedLinear) or set "
        "net.config[ens].on_chip = False"
    )
    if t in spiking:
        return (
            f"rate neuron type {t.__name__} cannot run on Loihi (it only spikes); "
            f"use its spiking form {spiking[t]}, or set net.config[ens].on_chip = False"
        )
    if not getattr(nt, "spiking", True):
        return f"rate neuron type {t.__name__} cannot run on Loihi; {hint}"
    return f"neuron type {t.__name__} cannot run on Loihi; {hint}"


def _base(obj):
    if isinstance(obj, nengo.base.ObjView):
        obj = obj.obj
    if isinstance(obj, nengo.ensemble.Neurons):
        obj = obj.ensemble
    return obj


def placement(net: nengo.Network) -> dict[object, bool]:
    """``{Ensemble/Node/Probe: bool}``: where nengo_loihi 1.1.0 puts each object."""
    on_chip = {}
    for node in net.all_nodes:
        on_chip[node] = False
    for ens in net.all_ensembles:
        try:
            configured = net.config[ens].on_chip
        except Exception:  # noqa: BLE001 (no nengo_loihi.add_params on this net)
            configured = None
        on_chip[ens] = configured is not False and not isinstance(
            ens.neuron_type, nengo.Direct
        )
    for conn in net.all_connections:
        pre, post = _base(conn.pre), conn.post_obj
        if conn.learning_rule_type is not None and isinstance(post, nengo.Ensemble):
            on_chip[post] = False
        elif isinstance(post, nengo.connection.LearningRule) and isinstance(
            pre, nengo.Ensemble
        ):
            on_chip[pre] = False
    for probe in net.all_probes:
        on_chip[probe] = on_chip.get(_base(probe.target), False)
    return on_chip


# -- reading built values


def _weight_precision(w):
    """(fraction of nonzero weights lost, relative RMS error) at 8-bit precision."""
    w = np.asarray(w, dtype=float).ravel()
    w_max = np.abs(w).max() if w.size else 0.0
    if w_max == 0 or not np.isfinite(w_max):
        return 0.0, 0.0
    step = w_max / limits()["weight_levels"]
    q = np.round(w / step) * step
    nonzero = w != 0
    lost = float(np.mean(q[nonzero] == 0)) if nonzero.any() else 0.0
    rms = float(np.sqrt(np.sum((q - w) ** 2) / np.sum(w**2)))
    return lost, rms


def _synapse_bits(n_axons, n_targets):
    """Synapse memory of dense ``n_axons x n_targets`` weights, as nengo_loihi
    stores them (dense compression: 8 bits a weight, chunks of 64 weights with
    a 10-bit header, each rounded up to 64-bit words)."""
    full, rest = divmod(n_targets, 64)
    words = full * math.ceil((64 * 8 + 10) / 64)
    if rest:
        words += math.ceil((rest * 8 + 10) / 64)
    return n_axons * words * 64


def check_loihi(
    sim_or_net: Any,
    dt: float | None = None,
    build: bool = False,
    max_weight_error: float = 0.05,
    max_weights_lost: float = 0.1,
    max_bias_error: float = 0.05,
) -> LoihiReport:
    """Check a network against Loihi's constraints (nengo_loihi 1.1.0's rules).

    Parameters
    ----------
    sim_or_net : nengo.Network or snntorch_nengo.Simulator
        A network (its built values are used), or a simulator (its current,
        possibly trained values are used: no need to freeze first).
    dt : float, optional
        The Loihi time step (default: the simulator's, else 0.001).
    build : bool
        Also build the network with nengo_loihi (needs it installed), which
        discretizes every block: a build failure becomes an error, and biases
        that the discretization changes by more than ``max_bias_error`` (of
        the ensemble's largest |bias|) a warning.
    max_weight_error, max_weights_lost : float
        Thresholds above which the 8-bit quantization of a connection's weights
        is reported: relative RMS error, and the fraction of nonzero weights
        that round to zero.

    Returns
    -------
    LoihiReport
    """
    if dt is None:
        dt = getattr(sim_or_net, "dt", None) or 0.001
    values = BuiltValues(sim_or_net, dt)
    net = values.net
    on_chip = placement(net)
    issues = []

    def add(obj, reason, level=ERROR):
        issues.append(LoihiIssue(obj, reason, level))

    for node in net.all_nodes:
        if node.output is None:
            continue
        what = "a Python function" if callable(node.output) else "its output"
        add(node, f"Nodes run on the host: {what} is computed off-chip", HOST)
    for ens in net.all_ensembles:
        if not on_chip[ens]:
            add(ens, "placed on the host (on_chip=False, Direct, or learning)", HOST)
            continue
        _check_ensemble(ens, values, add, dt)

    fan_in = {}  # post ensemble -> [(conn, axons, dense)]
    fan_out = {}  # pre ensemble -> axons
    for conn in net.all_connections:
        _check_connection(
            conn, values, on_chip, add, fan_in, fan_out, max_weight_error, max_weights_lost
        )

    for ens, items in fan_in.items():
        n_post = min(ens.n_neurons, limits()["max_compartments"])
        axons = sum(a for _, a, _ in items)
        if axons > limits()["max_in_axons"]:
            add(
                ens,
                f"fan-in too large: {axons} input axons per core "
                f"(max {limits()['max_in_axons']}) from "
                + ", ".join(f"{c} ({a})" for c, a, _ in items),
            )
        # dense weights only: a convolution's kernel is shared (much smaller)
        bits = sum(_synapse_bits(a, n_post) for _, a, dense in items if dense)
        if bits > limits()["max_synapse_bits"]:
            cores = math.ceil(bits / limits()["max_synapse_bits"])
            add(
                ens,
                f"synapse memory: about {bits} bits for its {axons} input axons x "
                f"{n_post} neurons, over the {limits()['max_synapse_bits']} of one "
                f"core: nengo_loihi splits it across at least {cores} cores",
                WARNING,
            )
    for ens, axons in fan_out.items():
        if axons > limits()["max_out_axons"]:
            add(
                ens,
                f"fan-out too large: {axons} output axons per core (max "
                f"{limits()['max_out_axons']})",
            )

    _check_host_round_trips(net, on_chip, add)

    if build:
        _check_build(net, dt, add, on_chip, max_bias_error)
    return LoihiReport(issues, on_chip, limits())


def _check_ensemble(ens, values, add, dt):
    reason = _supported_neuron(ens.neuron_type)
    if reason is not None:
        add(ens, reason)
        return
    if ens.noise is not None:
        add(ens, "Ensemble noise is not supported on Loihi")
    n_cores = math.ceil(ens.n_neurons / limits()["max_compartments"])
    if n_cores > 1:
        add(
            ens,
            f"{ens.n_neurons} neurons > {limits()['max_compartments']} per core: "
            f"split across {n_cores} cores",
            WARNING,
        )
    nt = ens.neuron_type
    tau_ref = getattr(nt, "tau_ref", 0.0)
    if tau_ref and not np.isclose(tau_ref / dt, round(tau_ref / dt)):
        add(
            ens,
            f"tau_ref={tau_ref} is not a multiple of dt={dt}: Loihi rounds the "
            "refractory period to whole steps",
            WARNING,
        )
    state = nt.make_state(ens.n_neurons, rng=np.random.RandomState(0))
    nonzero = [k for k, v in state.items() if np.any(np.asarray(v) != 0)]
    if nonzero:
        add(
            ens,
            f"initial {', '.join(nonzero)} not zero: the chip starts every neuron at "
            "zero (set initial_state to Choice([0]) to match)",
            WARNING,
        )
    bias, gain = values.bias(ens), values.gain(ens)
    for name, v in (("bias", bias), ("gain", gain)):
        if v is not None and not np.all(np.isfinite(v)):
            add(ens, f"{name} has non-finite values")


def _check_connection(
    conn, values, on_chip, add, fan_in, fan_out, max_weight_error, max_weights_lost
):
    pre, post = _base(conn.pre), conn.post_obj
    if isinstance(post, nengo.connection.LearningRule):
        return  # an error signal, computed on the host
    pre_chip, post_chip = on_chip.get(pre, False), on_chip.get(_base(post), False)
    if not (pre_chip or post_chip):
        return
    transform = conn.transform
    conv = isinstance(transform, nengo.Convolution)
    if post_chip and not (conn.synapse is None or type(conn.synapse) is nengo.Lowpass):
        add(
            conn,
            f"synapse {type(conn.synapse).__name__} is not supported on Loihi "
            "(only Lowpass or None)",
        )
    if conv:
        if transform.dimensions != 2:
            add(conn, f"{transform.dimensions}-D convolution: Loihi only has 2-D")
        if not (
            isinstance(conn.pre_obj, nengo.ensemble.Neurons)
            and isinstance(post, nengo.ensemble.Neurons)
        ):
            add(conn, "convolutions on Loihi connect Neurons to Neurons only")
    elif not isinstance(
        transform, (nengo.transforms.NoTransform, nengo.Dense, nengo.Sparse)
    ):
        add(conn, f"transform {type(transform).__name__} is not supported on Loihi")
    decoded = isinstance(conn.pre_obj, nengo.Ensemble)
    if decoded and isinstance(transform, nengo.Sparse) and post_chip:
        add(conn, "a Sparse transform on a decoded connection is not supported")
    rule = conn.learning_rule_type
    if rule is not None:
        rules = list(rule.values()) if isinstance(rule, dict) else (
            list(rule) if isinstance(rule, (list, tuple)) else [rule]
        )
        for r in rules:
            if not isinstance(r, nengo.PES) or not decoded:
                add(
                    conn,
                    f"learning rule {type(r).__name__}: Loihi only learns PES on "
                    "decoded connections",
                )
            elif type(r.pre_synapse) is not nengo.Lowpass:
                add(conn, "PES pre_synapse must be Lowpass on Loihi")

    if not post_chip:
        return
    # on-chip input: weights, fan-in
    post_ens = _base(post)
    if not isinstance(post_ens, nengo.Ensemble):
        return
    if isinstance(conn.pre_obj, nengo.ensemble.Neurons):
        if conv:  # population axons: one per input pixel
            axons = int(np.prod(transform.input_shape.spatial_shape))
        else:
            axons = conn.size_in
    elif decoded and not conn.solver.weights:
        axons = limits()["decode_neurons_per_dim"] * conn.size_out
        if pre_chip:
            add(
                conn,
                "decoded connection between on-chip ensembles: it passes through "
                f"{axons} extra spiking decode neurons and an extra "
                f"{limits()['decode_tau']} s lowpass (connect Neurons to Neurons, or "
                "use a solver with weights=True, to avoid them)",
                WARNING,
            )
    elif decoded:
        axons = pre.n_neurons
    else:  # from a Node
        axons = limits()["node_neurons_per_dim"] * conn.size_out
        add(
            conn,
            "values sent from the host are encoded into spikes by on/off input "
            "neurons (quantization noise); an off-chip first layer "
            "(on_chip=False) sends exact spikes instead",
            WARNING,
        )
    fan_in.setdefault(post_ens, []).append((conn, axons, not conv))
    if pre_chip and isinstance(pre, nengo.Ensemble):
        blocks = math.ceil(post_ens.n_neurons / limits()["max_compartments"])
        per_core = min(pre.n_neurons, limits()["max_compartments"])
        fan_out[pre] = fan_out.get(pre, 0) + per_core * blocks

    weights = values.signal(conn, "weights")
    if weights is None:
        return
    if not np.all(np.isfinite(weights)):
        add(conn, "weights have non-finite values")
        return
    gain = values.gain(post_ens)
    if isinstance(post, nengo.ensemble.Neurons) and gain is not None:
        if conv:
            if not np.all(gain == gain[0]):
                add(
                    conn,
                    f"a Convolution into {post_ens} needs equal gains on all its "
                    "neurons (Loihi folds one gain into the shared kernel)",
                )
        elif weights.ndim == 2 and weights.shape[0] == gain.size:
            weights = weights * gain[:, None]
        elif weights.ndim == 1 and weights.size == gain.size:
            weights = weights * gain
    lost, rms = _weight_precision(weights)
    if rms > max_weight_error or lost > max_weights_lost:
        add(
            conn,
            f"8-bit weights lose precision: relative RMS error {rms:.3f}, "
            f"{lost:.0%} of nonzero weights round to zero (Loihi shares one "
            "exponent per connection; very small weights next to large ones vanish)",
            WARNING,
        )


def _check_host_round_trips(net, on_chip, add):
    """Nodes that both read from and write to the chip."""
    from_chip, to_chip = set(), set()
    for conn in net.all_connections:
        pre, post = _base(conn.pre), _base(conn.post_obj)
        if isinstance(post, nengo.Node) and on_chip.get(pre, False):
            from_chip.add(post)
        if isinstance(pre, nengo.Node) and on_chip.get(post, False):
            to_chip.add(pre)
    for node in net.all_nodes:
        if node in from_chip and node in to_chip:
            what = "its function" if callable(node.output) else "it"
            add(
                node,
                f"Node between on-chip objects: {what} cannot run on the chip, so "
                "every step its input goes chip -> host and its output host -> chip "
                "(spike-encoded, one step late)",
                WARNING,
            )


def _check_build(net, dt, add, on_chip, max_bias_error):
    nengo_loihi = nengo_loihi_module()
    if nengo_loihi is None:
        raise ImportError("check_loihi(build=True) needs nengo_loihi installed")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            sim = nengo_loihi.Simulator(net, dt=dt, target="sim", progress_bar=False)
    except Exception as e:  # noqa: BLE001 (reported, with the object if named)
        obj = _named_object(net, str(e)) or net
        add(obj, f"nengo_loihi could not build it: {type(e).__name__}: {e}")
        return
    try:
        for ens in net.all_ensembles:
            if on_chip.get(ens):
                _check_discrete_bias(ens, sim.model, add, max_bias_error)
    finally:
        sim.close()


def _check_discrete_bias(ens, model, add, max_bias_error):
    """Compare the biases nengo_loihi discretized with the float ones."""
    blocks = model.objs.get(ens, {}).get("out")
    built = model.params.get(ens)
    if blocks is None or built is None or built.bias is None:
        return
    blocks = blocks if isinstance(blocks, (list, tuple)) else [blocks]
    chip = []
    for block in blocks:
        info = getattr(block.compartment, "discretize_info", None)
        if info is None:
            return
        chip.append(block.compartment.bias.astype(float) / info["b_scale"])
    chip = np.concatenate(chip)
    bias = np.asarray(built.bias, dtype=float)
    scale = np.abs(bias).max() if bias.size else 0.0
    if chip.shape != bias.shape or scale == 0:
        return
    error = float(np.abs(chip - bias).max() / scale)
    if error > max_bias_error:
        add(
            ens,
            f"biases lose precision on the chip: error up to {error:.0%} of the "
            "largest |bias| (Loihi stores them in units set by the largest input "
            "weight, so large weights make small biases vanish)",
            WARNING,
        )


def _named_object(net, message):
    for obj in net.all_ensembles + net.all_connections + net.all_nodes:
        if str(obj) in message or repr(obj) in message:
            return obj
    return None


def to_loihi(
    sim_or_net: Any,
    freeze: bool = True,
    strict: bool = True,
    on_chip: Mapping[nengo.Ensemble, bool] | None = None,
    add_params: bool = True,
    **check_kw: Any
) -> nengo.Network:
    """A trained network, checked and prepared for ``nengo_loihi.Simulator``.

    Parameters
    ----------
    sim_or_net : snntorch_nengo.Simulator or nengo.Network
        A simulator: with ``freeze=True`` its trained values are first written
        into its network (`Simulator.freeze_params`). A network is used as is.
    strict : bool
        Raise a `nengo.exceptions.ValidationError` listing every error of
        `check_loihi` (else the errors are given as a warning).
    on_chip : dict, optional
        ``{Ensemble: bool}`` to set ``net.config[ens].on_chip``.
    add_params : bool
        Call ``nengo_loihi.add_params(net)`` (if nengo_loihi is installed; it is
        required when ``on_chip`` is given).
    **check_kw
        Passed to `check_loihi`.

    Returns
    -------
    net : nengo.Network
        The network, to run with ``nengo_loihi.Simulator(net, ...)``; its report
        is ``check_loihi(net)``. Warnings of the report are issued as one
        Python warning.
    """
    if is_simulator(sim_or_net):
        net = sim_or_net.module.network
        if net is None:
            raise ValidationError(
                "this Simulator was built from a Model, not a Network", attr="sim_or_net"
            )
        if freeze:
            sim_or_net.freeze_params(net)
        check_kw.setdefault("dt", sim_or_net.dt)
    else:
        net = sim_or_net
    nengo_loihi = nengo_loihi_module()
    if on_chip and nengo_loihi is None:
        raise ImportError("to_loihi(on_chip=...) needs nengo_loihi installed")
    if nengo_loihi is not None and (add_params or on_chip):
        nengo_loihi.add_params(net)
        for ens, value in (on_chip or {}).items():
            net.config[ens].on_chip = bool(value)
    report = check_loihi(net, **check_kw)
    if report.errors:
        if strict:
            report.raise_if_errors()
        warnings.warn(str(report))
    elif report.warnings:
        warnings.warn(
            "the network maps onto Loihi with differences:\n"
            + "\n".join(f"  {i.obj}: {i.reason}" for i in report.warnings)
        )
    return net
