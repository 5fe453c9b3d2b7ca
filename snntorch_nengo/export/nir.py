"""Nengo networks to and from NIR (the Neuromorphic Intermediate Representation).

`export_nir` turns a (trained) network into a `nir.NIRGraph`; `import_nir`
builds a `nengo.Network` from one. See docs/nir.md for the mapping, what is not
expressible, and the differences in time discretization (NIR is continuous
time; Nengo steps with ``dt``).

Spikes: a NIR spike is a unit impulse (area 1); a Nengo spike is one step of
height ``amplitude / dt`` (area ``amplitude``). Weights therefore carry over
unchanged and amplitudes are folded into the weights after the neurons.
Simulators that read NIR their own way (a spike counts 1 per step, forward
Euler, time constants in steps) are served by ``spike_scale``, ``euler_dt``
and ``tau_scale`` on both sides; docs/nir.md lists what each tool needs.

Everything a NIR graph cannot hold (refractory periods, voltage floors, Node
functions, learning rules, other synapses, ...) is listed as a `NIRIssue`
(object + reason): a `NIRWarning` by default, a ValidationError with
``strict=True``. Nengo-only parameters are also stored in each node's
``metadata["nengo"]`` (other NIR tools ignore it), so that ``import_nir``
restores them when ``use_metadata=True``.
"""

from __future__ import annotations

import copy
import dataclasses
import os
import re
import warnings
from typing import TYPE_CHECKING, Any

import nengo
import numpy as np
from nengo.exceptions import ValidationError

from .freeze import BuiltValues

if TYPE_CHECKING:
    import nir

try:
    import nir
except ImportError:  # pragma: no cover - optional dependency
    nir = None


class NIRWarning(UserWarning):
    """Something of the network is not expressible in NIR (or in Nengo)."""


@dataclasses.dataclass
class NIRIssue:
    obj: object
    reason: str

    def __str__(self):
        return f"{self.obj}: {self.reason}"


def _need_nir():
    if nir is None:
        raise ImportError(
            "the 'nir' package is needed: pip install nir (or snntorch_nengo[nir])"
        )


def _report(issues, strict, what):
    if not issues:
        return
    text = f"{what}:\n" + "\n".join(f"  {i}" for i in issues)
    if strict:
        raise ValidationError(text, attr="strict")
    warnings.warn(text, NIRWarning, stacklevel=3)


def _base(obj):
    return obj.obj if isinstance(obj, nengo.base.ObjView) else obj


def _owner(obj):
    obj = _base(obj)
    return obj.ensemble if isinstance(obj, nengo.ensemble.Neurons) else obj


def _full_rows(matrix, sl, size):
    """``matrix`` (rows for ``range(size)[sl]``) as ``size`` rows."""
    idx = np.arange(size)[sl]
    out = np.zeros((size,) + matrix.shape[1:])
    np.add.at(out, idx, matrix)
    return out


def _full_cols(matrix, sl, size):
    idx = np.arange(size)[sl]
    out = np.zeros(matrix.shape[:-1] + (size,))
    out[..., idx] += matrix
    return out


def _dense(conn, weights):
    """A connection's weights as a ``(size_out, size_in)`` matrix."""
    w = np.asarray(weights, dtype=float)
    if w.ndim == 0:
        return w * np.eye(conn.size_out, conn.size_in)
    if w.ndim == 1:
        return np.diag(w)
    return w


# -- export


class _Exporter:
    def __init__(
        self, values, use_names, bias="input", spike_scale=1.0, tau_scale=1.0,
        euler_dt=None,
    ):
        self.v = values
        self.euler_dt = euler_dt
        self.tau_scale = tau_scale
        self.bias_mode = bias
        self.spike_scale = spike_scale
        self.pending_bias = {}  # LIF node name -> (ensemble, bias in front of it)
        self.nodes = {}
        self.edges = []
        self.issues = []
        self.names = {}
        self.used = set()
        self.use_names = use_names
        self.shapes = {}  # object -> channels-first shape (convolutions)
        self.flats = {}  # NIR node name -> its Flatten node

    def flat(self, name, obj):
        """``name``'s output as a vector (a Flatten node after shaped nodes)."""
        shape = self.shapes.get(obj)
        if shape is None or len(shape) == 1:
            return name
        if name not in self.flats:
            self.flats[name] = self.add(
                self.name(obj, "_flat"),
                nir.Flatten(
                    input_type={"input": np.array(shape)}, start_dim=0, end_dim=-1
                ),
            )
            self.edge(name, self.flats[name])
        return self.flats[name]

    def issue(self, obj, reason):
        self.issues.append(NIRIssue(obj, reason))

    def name(self, obj, suffix=""):
        key = (obj, suffix)
        if key not in self.names:
            label = getattr(obj, "label", None)
            base = type(obj).__name__.lower()
            if label and self.use_names:
                base = re.sub(r"[^0-9A-Za-z_]+", "_", str(label)).strip("_") or base
            base += suffix
            name, i = base, 1
            while name in self.used:
                name, i = f"{base}_{i}", i + 1
            self.used.add(name)
            self.names[key] = name
        return self.names[key]

    def add(self, name, node):
        self.nodes[name] = node
        return name

    def edge(self, src, dst):
        self.edges.append((src, dst))

    def tau(self, tau):
        """A time constant as written (``euler_dt``, ``tau_scale``)."""
        if self.euler_dt is not None:
            # Euler's decay 1 - h / tau' equals Nengo's exact exp(-h / tau)
            tau = self.euler_dt / -np.expm1(-self.euler_dt / tau)
        return tau * self.tau_scale

    def amplitude(self, ens):
        """What one spike of ``ens`` weighs in the graph (see ``spike_scale``)."""
        return float(ens.neuron_type.amplitude) * self.spike_scale

    def place_biases(self):
        """Put each deferred LIF bias in front of its node, v_leak staying 0.

        With NIR's ``tau v' = (v_leak - v) + r I`` and ``r = 1``, ``v_leak = b``
        is the same equation as ``v_leak = 0`` with ``I + b``: the bias joins
        the input current exactly, at every instant (no filter in between: a
        synapse, when there is one, is an LI node before this point).
        """
        for name, (ens, bias) in self.pending_bias.items():
            srcs = [s for s, d in self.edges if d == name]
            node = self.nodes[name]
            if not srcs:
                # nothing to add it to: keep NIR's own form
                node.v_leak = bias.copy()
                continue
            src = self.nodes[srcs[0]]
            if (
                len(srcs) == 1
                and type(src) is nir.Linear
                and sum(s == srcs[0] for s, _ in self.edges) == 1
                and not (src.metadata or {}).get("nengo")
            ):
                # the one connection's weights carry the bias: Affine -> LIF
                self.nodes[srcs[0]] = nir.Affine(weight=src.weight, bias=bias.ravel())
                continue
            inp = self.add(
                self.name(ens, "_bias"),
                nir.Affine(weight=np.eye(bias.size), bias=bias.ravel(),
                           metadata={"nengo": {"role": "bias"}}),
            )
            self.edges = [(s, inp if d == name else d) for s, d in self.edges]
            self.edge(inp, name)

    # neurons

    def ensemble(self, ens):
        """Add the neuron node of ``ens``; returns (input name, output name)."""
        nt = ens.neuron_type
        n = ens.n_neurons
        bias = self.v.bias(ens)
        meta = {"nengo_type": type(nt).__name__}
        meta["amplitude"] = float(getattr(nt, "amplitude", 1.0))
        name = self.name(ens)
        shape = self.shapes.get(ens, (n,))
        ones = np.ones(shape)
        bias = bias.reshape(shape)
        synapse = self.input_synapse(ens)
        if type(nt) is nengo.LIF:
            if nt.tau_ref > 0:
                self.issue(
                    ens,
                    f"refractory period tau_ref={nt.tau_ref} is not expressible in "
                    "NIR LIF (kept in metadata)",
                )
            if nt.min_voltage > -np.inf:
                self.issue(
                    ens,
                    f"voltage floor min_voltage={nt.min_voltage} is not expressible "
                    "in NIR LIF (kept in metadata)",
                )
            meta.update(tau_ref=float(nt.tau_ref), min_voltage=float(nt.min_voltage))
            # bias="input": v_leak stays 0 (what snnTorch, SpikingJelly and
            # sinabs accept) and the bias goes in front (place_biases); a
            # shaped population would need an Affine of its shape, which NIR
            # lacks, so it keeps v_leak
            deferred = (
                self.bias_mode == "input" and len(shape) == 1 and np.any(bias != 0)
            )
            if deferred:
                self.pending_bias[name] = (ens, bias.copy())
                bias = np.zeros(shape)
                # a CubaLIF's synapse would filter the bias: an LI node per
                # connection instead, then the bias, then a LIF
                synapse = None
            if synapse is not None:
                node = nir.CubaLIF(
                    tau_syn=ones * self.tau(synapse),
                    tau_mem=ones * self.tau(nt.tau_rc),
                    r=ones,
                    v_leak=bias.copy(),
                    v_threshold=ones.copy(),
                    v_reset=np.zeros(shape),
                    metadata={"nengo": meta},
                )
            else:
                node = nir.LIF(
                    tau=ones * self.tau(nt.tau_rc),
                    r=ones,
                    v_leak=bias.copy(),
                    v_threshold=ones.copy(),
                    v_reset=np.zeros(shape),
                    metadata={"nengo": meta},
                )
            self.add(name, node)
            return name, name, synapse
        if type(nt) is nengo.SpikingRectifiedLinear:
            self.issue(
                ens,
                "SpikingRectifiedLinear rectifies its input and resets by subtracting "
                "the threshold (several spikes per step possible); NIR IF resets to "
                "v_reset (kept in metadata)",
            )
            self.add(
                name,
                nir.IF(r=ones, v_threshold=ones.copy(), v_reset=np.zeros(shape),
                       metadata={"nengo": meta}),
            )
            if np.any(bias != 0) and len(shape) > 1:
                self.issue(
                    ens,
                    "a biased IF population after a convolution needs an Affine of "
                    "its shape, which NIR lacks: exported without its bias",
                )
            elif np.any(bias != 0):  # IF has no leak potential: bias via an Affine
                inp = self.add(
                    self.name(ens, "_bias"),
                    nir.Affine(weight=np.eye(n), bias=bias.ravel(),
                               metadata={"nengo": {"role": "bias"}}),
                )
                self.edge(inp, name)
                return inp, name, None
            return name, name, None
        self.issue(
            ens,
            f"neuron type {type(nt).__name__} has no NIR node (NIR has LIF, IF, LI, "
            "CubaLIF); the ensemble and its connections are not exported",
        )
        return None, None, None

    def input_synapse(self, ens):
        """The one Lowpass tau on every connection into ``ens``, else None."""
        taus = set()
        for conn in self.v.net.all_connections:
            if _owner(conn.post) is ens:
                s = conn.synapse
                taus.add(s.tau if type(s) is nengo.Lowpass else ("other", id(s)))
        if len(taus) == 1:
            tau = next(iter(taus))
            if isinstance(tau, float) and tau > 0:
                return tau
        return None


def export_nir(
    net_or_sim: Any,
    strict: bool = False,
    dt: float | None = None,
    use_names: bool = True,
    bias: str = "input",
    spike_scale: float = 1.0,
    tau_scale: float = 1.0,
    euler_dt: float | None = None,
) -> nir.NIRGraph:
    """A `nir.NIRGraph` of a Nengo network.

    Parameters
    ----------
    net_or_sim : nengo.Network or snntorch_nengo.Simulator
        A network (its built values are used) or a simulator (its current,
        possibly trained values).
    strict : bool
        Raise a ValidationError listing everything that NIR cannot express,
        instead of a `NIRWarning`.
    dt : float, optional
        The step used to build a network (default 0.001); NIR itself has none.
    use_names : bool
        Name NIR nodes after the objects' labels (else after their types).
    bias : "input" or "v_leak"
        Where a LIF population's bias goes. ``"input"`` (the default): into
        the input current, as the bias of the Affine in front of the LIF node
        (the incoming connection's, or an ``Affine(I, bias)`` where several
        connections or synapses meet), with ``v_leak = 0``; exact (``r = 1``)
        and what snnTorch, SpikingJelly and sinabs require. ``"v_leak"``: as
        the LIF's ``v_leak`` (NIR's own leak potential; Norse and nirtorch
        read it). Populations shaped by a convolution keep ``v_leak`` either
        way (NIR has no shaped Affine).
    spike_scale : float
        Factor on every weight after spiking neurons. NIR's spike is a unit
        impulse (1, the default). Simulators that count a spike as 1 in a step
        of length ``dt`` (Norse, snnTorch, SpikingJelly, sinabs) need
        ``1 / dt`` of *their* step (docs/nir.md lists each one's).
    tau_scale : float
        Factor on every time constant written (1: seconds, NIR's unit; sinabs
        reads time constants in steps: ``1 / dt``).
    euler_dt : float, optional
        For simulators that integrate NIR's equations with forward Euler at
        this step (Norse, snnTorch, SpikingJelly): time constants ``tau' = h / (1 -
        exp(-h / tau))``, so that their decay per step ``1 - h / tau'`` is
        Nengo's exact ``exp(-h / tau)`` and, at ``h = dt``, their membranes
        and synapses follow Nengo's step for step (the graph then means,
        in continuous time, taus longer by about ``h / 2``).

    Returns
    -------
    nir.NIRGraph
        Input nodes for Nodes without input (their values are fed as data),
        Output nodes for Probes (named after them). ``graph.metadata`` holds
        ``"issues"``: one string per problem (object: reason).

    Mapping: an Ensemble's neurons become a LIF (or CubaLIF, when all its input
    connections share one Lowpass synapse and the bias is not in the way; IF
    for SpikingRectifiedLinear) node with ``r=1``, threshold 1, reset 0 and
    its bias as chosen by ``bias``; a connection
    becomes a Linear node holding its full weights (decoders, transform,
    the post encoders and gains); a 1-D/2-D Convolution (channels first) a
    Conv1d/Conv2d and a Scale (post gains); a Lowpass synapse an LI node; a
    passthrough Node a Linear identity.
    """
    _need_nir()
    if dt is None:
        dt = getattr(net_or_sim, "dt", None) or 0.001
    if bias not in ("input", "v_leak"):
        raise ValidationError(
            f"export_nir: bias={bias!r}; use 'input' (the bias in the current in "
            "front of each LIF node, v_leak = 0) or 'v_leak'",
            attr="bias",
        )
    spike_scale = _positive("export_nir", "spike_scale", spike_scale)
    tau_scale = _positive("export_nir", "tau_scale", tau_scale)
    values = BuiltValues(net_or_sim, dt)
    net = values.net
    if euler_dt is not None:
        euler_dt = _positive("export_nir", "euler_dt", euler_dt)
    ex = _Exporter(
        values, use_names, bias=bias, spike_scale=spike_scale, tau_scale=tau_scale,
        euler_dt=euler_dt,
    )
    for conn in net.all_connections:
        if isinstance(conn.transform, nengo.Convolution):
            _conv_shapes(ex, conn)
    ports = {}  # nengo object -> (input node name or None, output name, cuba tau)

    for node in net.all_nodes:
        if node.size_in == 0:
            shape = ex.shapes.get(node, (node.size_out,))
            if callable(node.output):
                ex.issue(
                    node,
                    "its Python function is not exported: the Node becomes a graph "
                    "Input, fed with data",
                )
            name = ex.add(ex.name(node), nir.Input(np.array(shape)))
            ports[node] = (None, name, None)
        elif node.output is None:
            name = ex.add(
                ex.name(node),
                nir.Linear(
                    np.eye(node.size_in), metadata={"nengo": {"role": "passthrough"}}
                ),
            )
            ports[node] = (name, name, None)
        else:
            ex.issue(
                node,
                "Node functions are not expressible in NIR: the Node and its "
                "connections are not exported",
            )
    for ens in net.all_ensembles:
        if isinstance(ens.neuron_type, nengo.Direct):
            ex.issue(ens, "Direct ensembles are not expressible in NIR: not exported")
            continue
        if ens.noise is not None:
            ex.issue(ens, "ensemble noise is not expressible in NIR: exported without it")
        inp, out, cuba = ex.ensemble(ens)
        if out is not None:
            ports[ens] = (inp, out, cuba)

    for conn in net.all_connections:
        _export_connection(ex, conn, ports)
    for probe in net.all_probes:
        _export_probe(ex, probe, ports)
    ex.place_biases()

    graph = nir.NIRGraph(
        nodes=ex.nodes,
        edges=ex.edges,
        metadata={
            "issues": [str(i) for i in ex.issues],
            "dt": float(dt),
            "spike_scale": spike_scale,
            "tau_scale": tau_scale,
            "euler_dt": float(euler_dt or 0),
        },
        # NIR infers types from the Output nodes: a graph without any (nothing
        # probed, or only what NIR cannot express) cannot be type-checked
        type_check=any(isinstance(n, nir.Output) for n in ex.nodes.values()),
    )
    graph.issues = ex.issues
    _report(ex.issues, strict, "not expressible in NIR")
    return graph


def _positive(func, name, value):
    why = (
        "1 for NIR's unit impulse, 1 / dt for a simulator that counts a spike as 1 "
        "per step" if name == "spike_scale" else "seconds"
    )
    try:
        out = float(value)
    except (TypeError, ValueError):
        out = None
    if out is None or not np.isfinite(out) or out <= 0:
        raise ValidationError(
            f"{func}: {name}={value!r} must be a positive number ({why})", attr=name
        )
    return out


def _synapse_node(ex, obj, synapse, size, suffix):
    """An LI node for a Lowpass synapse (None: no node, other: an issue)."""
    if synapse is None or (type(synapse) is nengo.Lowpass and synapse.tau == 0):
        return None
    if type(synapse) is not nengo.Lowpass:
        ex.issue(
            obj,
            f"synapse {synapse} is not expressible in NIR (only Lowpass, as LI): "
            "exported without it",
        )
        return None
    ones = np.ones(size)  # size may be a shape
    return ex.add(
        ex.name(obj, suffix),
        nir.LI(
            tau=ones * ex.tau(synapse.tau), r=ones.copy(), v_leak=np.zeros_like(ones)
        ),
    )


def _source(ex, conn, ports):
    """(output name, matrix mapping the source's output to conn's input)."""
    pre = _owner(conn.pre)
    if pre not in ports:
        return None, None
    _, out, _ = ports[pre]
    if isinstance(pre, nengo.Ensemble):
        return out, ex.amplitude(pre)
    return out, 1.0


def _export_connection(ex, conn, ports):
    if isinstance(conn.post_obj, nengo.connection.LearningRule):
        ex.issue(conn, "error connections of learning rules are not exported")
        return
    pre, post = _owner(conn.pre), _owner(conn.post)
    if pre not in ports or post not in ports:
        ex.issue(
            conn,
            "not exported: its "
            + ("pre" if pre not in ports else "post")
            + " object is not expressible in NIR",
        )
        return
    if conn.learning_rule_type is not None:
        ex.issue(
            conn,
            f"learning rule {conn.learning_rule_type} is not expressible in NIR: "
            "exported with its current weights",
        )
    if isinstance(conn.transform, nengo.Convolution):
        _export_conv(ex, conn, ports)
        return
    if isinstance(conn.transform, nengo.Sparse):
        ex.issue(conn, "Sparse transforms are not exported yet")
        return
    if len(ex.shapes.get(post, (0,))) > 1:
        ex.issue(
            conn,
            f"{post} is shaped by a convolution; a dense input to it would need a "
            "reshape, which NIR lacks: not exported",
        )
        return
    if isinstance(conn.pre_obj, nengo.Node) and conn.function is not None:
        ex.issue(conn, "connection functions on Nodes are not expressible in NIR")
        return
    src, amp = _source(ex, conn, ports)
    w = ex.v.signal(conn, "weights")
    decoded = isinstance(conn.pre_obj, nengo.Ensemble)
    if decoded:
        # (size_out, pre.n_neurons): decoders with function and transform
        mat = np.asarray(w, dtype=float)
    else:
        mat = _dense(conn, w if w is not None else 1.0)
        mat = _full_cols(mat, conn.pre_slice, conn.pre_obj.size_out)
    mat = mat * amp
    # into the post object's input space
    post_obj = conn.post_obj
    post_size = post_obj.size_in
    mat = _full_rows(mat, conn.post_slice, post_size)
    inp, _, cuba = ports[post]
    if isinstance(post_obj, nengo.Ensemble):
        enc = ex.v.model.params[post_obj].scaled_encoders  # gain / radius included
        mat = np.asarray(enc, dtype=float) @ mat
    elif isinstance(post_obj, nengo.ensemble.Neurons):
        mat = ex.v.gain(post_obj.ensemble)[:, None] * mat
    lin = ex.add(ex.name(conn), nir.Linear(mat))
    ex.edge(ex.flat(src, pre), lin)
    if cuba is not None:  # the synapse is the CubaLIF's own
        ex.edge(lin, inp)
        return
    syn = _synapse_node(ex, conn, conn.synapse, mat.shape[0], "_synapse")
    if syn is None:
        ex.edge(lin, inp)
    else:
        ex.edge(lin, syn)
        ex.edge(syn, inp)


def _conv_shapes(ex, conn):
    t = conn.transform
    if t.channels_last:
        return  # reported by _export_conv
    for obj, shape in (
        (_owner(conn.pre), t.input_shape.shape),
        (_owner(conn.post), t.output_shape.shape),
    ):
        shape = tuple(int(v) for v in shape)
        if ex.shapes.setdefault(obj, shape) != shape:
            ex.issue(obj, f"used with two convolution shapes {ex.shapes[obj]} and {shape}")


def _export_conv(ex, conn, ports):
    t = conn.transform
    pre, post = _owner(conn.pre), _owner(conn.post)
    why = None
    if t.channels_last:
        why = "channels_last=True (NIR convolutions are channels first)"
    elif t.dimensions not in (1, 2):
        why = f"{t.dimensions}-D convolution (NIR has Conv1d and Conv2d)"
    elif isinstance(conn.pre, nengo.base.ObjView) or isinstance(
        conn.post, nengo.base.ObjView
    ):
        why = "sliced convolution"
    elif not isinstance(conn.post_obj, nengo.ensemble.Neurons):
        why = "convolutions are exported into Neurons only"
    elif isinstance(pre, nengo.Node) and pre.size_in > 0:
        why = "convolutions are exported from input Nodes and Neurons only"
    elif t.padding == "same" and (
        any(s != 1 for s in t.strides) or any(k % 2 == 0 for k in t.kernel_size)
    ):
        why = "'same' padding with strides or an even kernel can be asymmetric"
    if why is not None:
        ex.issue(conn, f"{why}: not exported")
        return
    kernel = np.asarray(ex.v.signal(conn, "weights"), dtype=float)
    if isinstance(pre, nengo.Ensemble):
        kernel = kernel * ex.amplitude(pre)
    # Nengo: kernel_size + (in_channels / groups, filters); NIR: (out, in, *kernel)
    weight = np.moveaxis(kernel, (-1, -2), (0, 1))
    pad = [(k - 1) // 2 if t.padding == "same" else 0 for k in t.kernel_size]
    spatial = tuple(int(v) for v in t.input_shape.spatial_shape)
    bias = np.zeros(t.n_filters)
    if t.dimensions == 1:
        node = nir.Conv1d(
            input_shape=spatial[0], weight=weight, stride=int(t.strides[0]),
            padding=pad[0], dilation=1, groups=int(t.groups), bias=bias,
        )
    else:
        node = nir.Conv2d(
            input_shape=spatial, weight=weight, stride=tuple(int(s) for s in t.strides),
            padding=tuple(pad), dilation=1, groups=int(t.groups), bias=bias,
        )
    conv = ex.add(ex.name(conn), node)
    ex.edge(ports[pre][1], conv)
    gain = ex.v.gain(post).reshape(t.output_shape.shape)
    scale = ex.add(ex.name(conn, "_gain"), nir.Scale(gain))
    ex.edge(conv, scale)
    inp, _, cuba = ports[post]
    if cuba is None:
        syn = _synapse_node(ex, conn, conn.synapse, gain.shape, "_synapse")
        if syn is not None:
            ex.edge(scale, syn)
            scale = syn
    ex.edge(scale, inp)


def _export_probe(ex, probe, ports):
    target = _owner(probe.target)
    if target not in ports:
        ex.issue(probe, "its target is not exported")
        return
    _, out, _ = ports[target]
    out = ex.flat(out, target)
    src = out
    obj = _base(probe.target)
    if isinstance(obj, nengo.Ensemble) and probe.attr == "decoded_output":
        conn = next(
            (c for c in ex.v.model.params if isinstance(c, nengo.Connection)
             and c.post_obj is probe),
            None,
        )
        decoders = ex.v.signal(conn, "weights")
        amp = ex.amplitude(target)
        src = ex.add(ex.name(probe, "_decoders"), nir.Linear(np.asarray(decoders) * amp))
        ex.edge(out, src)
        size = decoders.shape[0]
        sl = None  # the probe's decoders already select its dimensions
    elif isinstance(obj, nengo.ensemble.Neurons) and probe.attr == "output":
        size = target.n_neurons
        amp = ex.amplitude(target)
        if amp != 1:
            src = ex.add(ex.name(probe, "_amplitude"), nir.Scale(np.full(size, amp)))
            ex.edge(out, src)
        sl = probe.slice
    elif isinstance(obj, nengo.Node) and probe.attr == "output":
        size = obj.size_out
        sl = probe.slice
    else:
        ex.issue(
            probe,
            f"probing {probe.attr!r} of {probe.target} is not expressible in NIR "
            "(only spikes, decoded outputs and Node outputs)",
        )
        return
    if sl is not None and not (isinstance(sl, slice) and sl == slice(None)):
        sel = np.eye(size)[sl]
        s2 = ex.add(ex.name(probe, "_slice"), nir.Linear(sel))
        ex.edge(src, s2)
        src, size = s2, sel.shape[0]
    syn = _synapse_node(ex, probe, probe.synapse, size, "_synapse")
    if syn is not None:
        ex.edge(src, syn)
        src = syn
    name = ex.add(ex.name(probe), nir.Output(np.array([size])))
    ex.edge(src, name)


# -- import


def _meta(node):
    meta = getattr(node, "metadata", None) or {}
    meta = meta.get("nengo", {}) if isinstance(meta, dict) else {}
    out = {}
    for k, v in meta.items():
        if isinstance(v, bytes):
            v = v.decode()
        elif isinstance(v, np.ndarray) and v.shape == ():
            v = v.item()
            v = v.decode() if isinstance(v, bytes) else v
        elif isinstance(v, np.generic):
            v = v.item()
        out[k] = v
    return out


def _uniform(node_name, field, values):
    values = np.asarray(values, dtype=float).ravel()
    if not np.allclose(values, values[0]):
        raise ValidationError(
            f"NIR node {node_name!r}: {field} differs between neurons; Nengo neuron "
            "types have one value per ensemble",
            attr=field,
        )
    return float(values[0])


def _as_numpy(node):
    """A shallow copy of ``node`` with torch tensors as numpy arrays.

    Norse (and nirtorch's tracer) write parameters as torch tensors; the NIR
    classes accept them, numpy functions do not all do so.
    """
    if not dataclasses.is_dataclass(node):
        return node
    out = copy.copy(node)
    for f in dataclasses.fields(node):
        v = getattr(node, f.name, None)
        if hasattr(v, "detach") and hasattr(v, "numpy"):
            setattr(out, f.name, v.detach().cpu().numpy())
        elif isinstance(v, dict):
            setattr(out, f.name, {
                k: (x.detach().cpu().numpy() if hasattr(x, "detach") else x)
                for k, x in v.items()
            })
    return out


_NEURON_FIELDS = {
    "LIF": ("tau", "r", "v_leak", "v_threshold", "v_reset"),
    "CubaLIF": ("tau_syn", "tau_mem", "r", "v_leak", "v_threshold", "v_reset", "w_in"),
    "IF": ("r", "v_threshold", "v_reset"),
    "LI": ("tau", "r", "v_leak"),
}


class _Sizes:
    """Output sizes of the nodes of a graph, followed along its edges.

    snnTorch writes one scalar per LIF parameter for a whole layer: the size
    of such a node is that of what feeds it.
    """

    def __init__(self, nodes, edges):
        self.nodes = nodes
        self.inputs = {}
        for src, dst in edges:
            self.inputs.setdefault(dst.split(".")[0], []).append(src.split(".")[0])
        self.memo = {}

    def own(self, name):
        node = self.nodes[name]
        t = type(node).__name__
        if t == "Input":
            return int(np.prod(node.input_type["input"]))
        if t in ("Linear", "Affine"):
            return int(np.asarray(node.weight).shape[0])
        if t == "Scale":
            return int(np.asarray(node.scale).size)
        if t in _NEURON_FIELDS:
            n = max(np.asarray(getattr(node, f)).size for f in _NEURON_FIELDS[t])
            return n if n > 1 else None
        if t in ("Conv1d", "Conv2d") and node.input_shape is not None:
            w = np.asarray(node.weight)
            dims = w.ndim - 2
            k = np.array(w.shape[2:])
            size = np.broadcast_to(np.atleast_1d(node.input_shape), (dims,))
            pad = node.padding
            if isinstance(pad, bytes):
                pad = pad.decode()
            if isinstance(pad, str):
                pad = k // 2 if pad == "same" else 0
            pad, stride, dil = (
                np.broadcast_to(np.atleast_1d(v), (dims,))
                for v in (pad, node.stride, node.dilation)
            )
            out = (size + 2 * pad - dil * (k - 1) - 1) // stride + 1
            return int(w.shape[0] * np.prod(out))
        out = (getattr(node, "output_type", None) or {}).get("output")
        if out is not None and np.size(out) > 0 and np.all(np.asarray(out) > 0):
            return int(np.prod(out))
        return None

    def __call__(self, name, seen=()):
        if name not in self.memo:
            n = self.own(name)
            if n is None and name not in seen:
                for src in self.inputs.get(name, []):
                    if src in self.nodes:
                        n = self(src, seen + (name,))
                        if n is not None:
                            break
            if n is None:
                n = 1 if type(self.nodes[name]).__name__ in _NEURON_FIELDS else None
            self.memo[name] = n
        return self.memo[name]


def _broadcast(name, node, size):
    """``node`` with its per-neuron parameters at ``size`` (from scalars)."""
    t = type(node).__name__
    for f in _NEURON_FIELDS.get(t, ()):
        v = np.asarray(getattr(node, f), dtype=float)
        if v.size == size:
            setattr(node, f, v.ravel())
        elif v.size == 1:
            setattr(node, f, np.full(size, v.ravel()[0]))
        else:
            raise ValidationError(
                f"NIR node {name!r}: {t}.{f} has {v.size} values for {size} neurons "
                "(the size of its input)",
                attr=f,
            )
    return node


def import_nir(
    graph: nir.NIRGraph | str | os.PathLike,
    strict: bool = False,
    use_metadata: bool = True,
    label: str | None = "nir",
    spike_scale: float | None = None,
    tau_scale: float | None = None,
    euler_dt: float | None = None,
) -> nengo.Network:
    """A `nengo.Network` from a `nir.NIRGraph` (or a file written by ``nir.write``).

    Returns
    -------
    nengo.Network
        With ``net.inputs`` (``{input name: Node}``, constant-zero Nodes to feed
        with data, e.g. ``sim.predict({net.inputs["x"]: data})``),
        ``net.outputs`` (``{output name: Probe}``, unfiltered), ``net.nir_objects``
        (``{node name: Nengo object}``) and ``net.issues`` (`NIRIssue` list).

    Neurons: LIF and CubaLIF become `nengo.LIF` ensembles, IF
    `nengo.SpikingRectifiedLinear`, with ``gain = r / (v_threshold - v_reset)``
    and ``bias = (v_leak - v_reset) / (v_threshold - v_reset)``; tau_ref,
    min_voltage and amplitude come from ``metadata["nengo"]`` when present and
    ``use_metadata`` (else 0, -inf and 1: NIR's model). LI becomes a Lowpass,
    Linear/Affine/Scale connection transforms, Conv2d a `nengo.Convolution`.
    Parameters may be numpy arrays or torch tensors (Norse writes those);
    scalar neuron parameters (snnTorch writes those) apply to every neuron of
    the node, whose size is that of its input.

    spike_scale : float, optional
        What a spike weighs in the graph's weights relative to NIR's unit
        impulse (see `export_nir`): a graph written by a simulator that counts
        a spike as 1 per step of ``dt`` has ``1 / dt`` (docs/nir.md). Imported
        neurons get ``amplitude = 1 / spike_scale``. Default: the graph's
        ``metadata["spike_scale"]`` (written by `export_nir`) with
        ``use_metadata``, else 1.
    tau_scale : float, optional
        What the graph's time constants are in seconds times: imported time
        constants are divided by it (Norse 1.1's ``to_nir`` writes ``dt`` times
        its time constants: ``dt``; sinabs writes steps: ``1 / dt``). Default:
        ``metadata["tau_scale"]`` with ``use_metadata``, else 1.
    euler_dt : float, optional
        The graph is for a simulator that integrates it with forward Euler at
        this step (snnTorch, Norse, SpikingJelly): each time constant becomes
        ``tau_rc = -h / log(1 - h / tau)``, so that Nengo's exact step
        (``exp(-h / tau_rc) = 1 - h / tau``) equals theirs when run at ``dt =
        h``; only spike timing within a step then differs. Default:
        ``metadata["euler_dt"]`` with ``use_metadata`` (0: none).
    """
    _need_nir()
    if not isinstance(graph, nir.NIRGraph):
        graph = nir.read(graph)
    meta = graph.metadata if use_metadata and graph.metadata else {}
    if spike_scale is None:
        spike_scale = np.asarray(meta.get("spike_scale", 1.0)).item()
    if tau_scale is None:
        tau_scale = np.asarray(meta.get("tau_scale", 1.0)).item()
    if euler_dt is None:
        euler_dt = np.asarray(meta.get("euler_dt", 0.0)).item() or None
    spike_scale = _positive("import_nir", "spike_scale", spike_scale)
    tau_scale = _positive("import_nir", "tau_scale", tau_scale)
    if euler_dt is not None:
        euler_dt = _positive("import_nir", "euler_dt", euler_dt)
    nodes = {name: _as_numpy(node) for name, node in graph.nodes.items()}
    sizes = _Sizes(nodes, graph.edges)
    for name, node in nodes.items():
        if type(node).__name__ in _NEURON_FIELDS:
            _broadcast(name, node, sizes(name))
            for f in ("tau", "tau_syn", "tau_mem"):
                if hasattr(node, f):
                    tau = np.asarray(getattr(node, f), dtype=float) / tau_scale
                    if euler_dt is not None:
                        if np.any(tau <= euler_dt):
                            raise ValidationError(
                                f"NIR node {name!r}: {f} = {tau.min()} is not above "
                                f"euler_dt = {euler_dt} (forward Euler decays to "
                                "zero or below in one step)",
                                attr="euler_dt",
                            )
                        tau = -euler_dt / np.log1p(-euler_dt / tau)
                    setattr(node, f, tau)
    issues = []
    objs = {}
    ports = {}  # name -> (input: (obj, transform, synapse) or None, output obj)
    with nengo.Network(label=label) as net:
        net.inputs, net.outputs = {}, {}
        for name, node in nodes.items():
            ports[name] = _import_node(
                name, node, objs, issues, net, use_metadata, 1.0 / spike_scale
            )
        for src, dst in graph.edges:
            src_port, dst_port = ports.get(src.split(".")[0]), ports.get(dst.split(".")[0])
            if src_port is None or dst_port is None or dst_port[0] is None:
                issues.append(NIRIssue(f"edge {src} -> {dst}", "endpoint not imported"))
                continue
            post, transform, synapse = dst_port[0]
            pre = src_port[1]
            kwargs = {}
            if transform is not None:
                kwargs["transform"] = transform
            nengo.Connection(pre, post, synapse=synapse, **kwargs)
    net.nir_objects = objs
    net.issues = issues
    _report(issues, strict, "not expressible in Nengo")
    return net


def _import_node(name, node, objs, issues, net, use_metadata, amplitude=1.0):
    meta = _meta(node) if use_metadata else {}
    t = type(node).__name__
    if t == "Input":
        size = int(np.prod(node.input_type["input"]))
        obj = nengo.Node(np.zeros(size), label=name)
        net.inputs[name] = obj
        objs[name] = obj
        return None, obj
    if t == "Output":
        size = int(np.prod(node.output_type["output"]))
        obj = nengo.Node(size_in=size, label=name)
        net.outputs[name] = nengo.Probe(obj, synapse=None, label=name)
        objs[name] = obj
        return (obj, None, None), obj
    if t in ("Linear", "Affine", "Scale"):
        if t == "Scale":
            transform = np.asarray(node.scale, dtype=float).ravel()
            size = transform.size
        else:
            transform = np.asarray(node.weight, dtype=float)
            if transform.ndim != 2:
                raise ValidationError(
                    f"NIR node {name!r}: {t} weights of shape {transform.shape} "
                    "(only 2-D)",
                    attr="weight",
                )
            size = transform.shape[0]
        obj = nengo.Node(size_in=size, label=name)
        if t == "Affine" and np.any(node.bias != 0):
            bias = nengo.Node(
                np.asarray(node.bias, dtype=float).ravel(), label=f"{name}_bias"
            )
            nengo.Connection(bias, obj, synapse=None)
        objs[name] = obj
        return (obj, transform, None), obj
    if t == "Flatten":
        size = int(np.prod(node.input_type["input"]))  # channels first: Nengo's order
        obj = nengo.Node(size_in=size, label=name)
        objs[name] = obj
        return (obj, None, None), obj
    if t in ("Conv1d", "Conv2d"):
        return _import_conv(name, node, objs, t)
    if t == "LI":
        size = np.asarray(node.tau).size
        tau = _uniform(name, "tau", node.tau)
        obj = nengo.Node(size_in=size, label=name)
        leak = np.asarray(node.v_leak, dtype=float).ravel()
        if np.any(leak != 0):
            c = nengo.Node(leak, label=f"{name}_leak")
            nengo.Connection(c, obj, synapse=nengo.Lowpass(tau))
        objs[name] = obj
        r = np.asarray(node.r, dtype=float).ravel()
        return (obj, r, nengo.Lowpass(tau)), obj
    if t in ("LIF", "CubaLIF", "IF"):
        v_th = np.asarray(node.v_threshold, dtype=float).ravel()
        v_reset = np.asarray(node.v_reset, dtype=float).ravel()
        span = v_th - v_reset
        if np.any(span <= 0):
            raise ValidationError(
                f"NIR node {name!r}: v_threshold must be above v_reset", attr="v_threshold"
            )
        r = np.asarray(node.r, dtype=float).ravel()
        n = r.size
        # amplitudes were folded into the weights after the neurons on export
        if t == "IF":
            if meta.get("nengo_type") != "SpikingRectifiedLinear":
                issues.append(
                    NIRIssue(
                        name,
                        "IF becomes SpikingRectifiedLinear, which rectifies its input "
                        "and resets by subtracting the threshold",
                    )
                )
            bias = np.zeros(n)
            v0 = np.zeros(n)
            nt = nengo.SpikingRectifiedLinear(
                amplitude=amplitude, initial_state={"voltage": _init(v0)}
            )
        else:
            tau = _uniform(name, "tau", node.tau if t == "LIF" else node.tau_mem)
            bias = (np.asarray(node.v_leak, dtype=float).ravel() - v_reset) / span
            v0 = -v_reset / span  # NIR starts at v = 0; Nengo's default is random
            nt = nengo.LIF(
                tau_rc=tau,
                tau_ref=float(meta.get("tau_ref", 0.0)),
                min_voltage=float(meta.get("min_voltage", -np.inf)),
                amplitude=amplitude,
                initial_state={"voltage": _init(v0)},
            )
        ens = nengo.Ensemble(
            n,
            1,
            neuron_type=nt,
            gain=r / span,
            bias=bias,
            encoders=np.ones((n, 1)),
            normalize_encoders=False,
            label=name,
        )
        objs[name] = ens
        synapse = None
        transform = None
        if t == "CubaLIF":
            synapse = nengo.Lowpass(_uniform(name, "tau_syn", node.tau_syn))
            w_in = np.asarray(node.w_in, dtype=float).ravel()
            transform = None if np.all(w_in == 1) else w_in
        return (ens.neurons, transform, synapse), ens.neurons
    raise ValidationError(
        f"NIR node {name!r} of type {t} cannot be imported (supported: Input, "
        "Output, Linear, Affine, Scale, Flatten, Conv1d, Conv2d, LI, LIF, CubaLIF, "
        "IF)",
        attr="graph",
    )


def _import_conv(name, node, objs, t):
    dims = 1 if t == "Conv1d" else 2
    weight = np.asarray(node.weight, dtype=float)  # (out, in / groups, *kernel)
    if node.input_shape is None:
        raise ValidationError(f"NIR node {name!r}: {t} without input_shape", attr="graph")
    spatial = tuple(np.atleast_1d(node.input_shape).astype(int).tolist())
    kernel_size = weight.shape[2:]
    groups = int(node.groups)
    dilation = np.atleast_1d(node.dilation)
    if np.any(dilation != 1):
        raise ValidationError(
            f"NIR node {name!r}: dilation {node.dilation} (Nengo convolutions have none)",
            attr="dilation",
        )
    padding = node.padding
    if isinstance(padding, bytes):
        padding = padding.decode()
    if not isinstance(padding, str):
        pad = np.broadcast_to(np.atleast_1d(padding), (dims,))
        if np.all(pad == 0):
            padding = "valid"
        elif np.all(pad == [(k - 1) // 2 for k in kernel_size]) and all(
            k % 2 == 1 for k in kernel_size
        ) and np.all(np.atleast_1d(node.stride) == 1):
            padding = "same"
        else:
            raise ValidationError(
                f"NIR node {name!r}: padding {node.padding} (Nengo has 'valid' and "
                "'same')",
                attr="padding",
            )
    strides = np.broadcast_to(np.atleast_1d(node.stride), (dims,))
    strides = tuple(int(s) for s in strides)
    transform = nengo.Convolution(
        n_filters=weight.shape[0],
        input_shape=(weight.shape[1] * groups,) + spatial,
        kernel_size=kernel_size,
        strides=strides,
        padding=padding,
        channels_last=False,
        groups=groups,
        init=np.moveaxis(weight, (0, 1), (-1, -2)),
    )
    obj = nengo.Node(size_in=transform.size_out, label=name)
    bias = np.asarray(node.bias, dtype=float).ravel()
    if np.any(bias != 0):
        per_pixel = int(np.prod(transform.output_shape.spatial_shape))
        b = nengo.Node(np.repeat(bias, per_pixel), label=f"{name}_bias")
        nengo.Connection(b, obj, synapse=None)
    objs[name] = obj
    return (obj, transform, None), obj


def _init(v0):
    return nengo.dists.Choice([v0[0]]) if np.all(v0 == v0[0]) else v0
