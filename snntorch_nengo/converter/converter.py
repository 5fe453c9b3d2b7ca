"""Converter: a torch model as a native Nengo network (NengoDL's Converter).

The model is traced with `torch.fx` and run once on an example input to learn
every tensor's shape. Each fx node is then built, in graph order, by the build
function registered for its module type, function or method name
(`layers.py`), on symbolic `Value` s (`values.py`). Nodes that cannot be
converted run their torch code in a `TensorNode` (``allow_fallback=True``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import nengo
import numpy as np
import torch
from nengo.ensemble import Neurons
from nengo.exceptions import ValidationError
from nengo.transforms import Dense, Sparse
from torch import fx, nn

from ..config import configure_settings
from ..engine.schedule import ConstantNode
from ..tensor_node import TensorNode
from . import layers as _layers
from .recorder import Recorder
from .values import NotConvertible, Term, Value, scale_transform
from .verify import verify

if TYPE_CHECKING:
    from .values import Bias, Scale

EXAMPLE_BATCH = 2  # example batch for tracing; 2 so that batch-mixing ops show up
EXAMPLE_STEPS = 3  # example number of steps (temporal models)


class Endpoints(Mapping):
    """Input Nodes or output Probes, by name, position, torch.fx node or layer.

    A layer is the torch module that computes an output, or one that reads an
    input directly: ``converter.outputs[model.fc]``, as NengoDL's
    ``converter.outputs[keras_layer]``.
    """

    def __init__(
        self,
        items: Iterable[tuple[fx.Node, Any]],
        layers: Mapping[fx.Node, list[nn.Module]] | None = None,
    ) -> None:
        self._items = list(items)  # [(fx node, nengo object)]
        self._layers = dict(layers or {})  # fx node -> [torch modules]

    def __getitem__(self, key):
        for i, (node, obj) in enumerate(self._items):
            if key is node or key == i and isinstance(key, int) or key == node.name:
                return obj
        if isinstance(key, nn.Module):
            found = [
                obj
                for node, obj in self._items
                if any(key is m for m in self._layers.get(node, ()))
            ]
            if len(found) == 1:
                return found[0]
            if len(found) > 1:
                raise KeyError(
                    f"{key!r} is at several of these; use a name or position: "
                    f"{[node.name for node, _ in self._items]}"
                )
        names = [node.name for node, _ in self._items]
        raise KeyError(
            f"{key!r} is not one of {names} (or a position, fx node, or the torch "
            "layer that computes it or reads it)"
        )

    def __iter__(self):
        return iter(node.name for node, _ in self._items)

    def __len__(self):
        return len(self._items)

    def __repr__(self):
        return "{" + ", ".join(f"{n.name!r}: {o}" for n, o in self._items) + "}"


class _Tracer(fx.Tracer):
    """fx tracer that keeps registered and untraceable modules whole."""

    def __init__(self, leaves=()):
        super().__init__()
        self.leaves = set(id(m) for m in leaves)

    def is_leaf_module(self, m, module_qualified_name):
        if id(m) in self.leaves or _layers.lookup_module(m) is not None:
            return True
        return super().is_leaf_module(m, module_qualified_name)


class _FxCall(nn.Module):
    """One fx node's torch code, called on a TensorNode's (flattened) inputs."""

    def __init__(self, node, target, args, kwargs, shapes, params, several=False):
        super().__init__()
        self.several = several  # the code returns several tensors: concatenate them
        self.op = node.op
        if isinstance(target, nn.Module):
            self.layer = target  # a child: its parameters train with the network
            self.target = None
        else:
            self.target = target
        self.params = nn.ParameterList(params)
        self.template = (args, kwargs)
        self.shapes = [tuple(s) for s in shapes]

    def forward(self, x):
        if len(self.shapes) == 1:
            inputs = [x]
        else:
            sizes = [int(np.prod(s)) for s in self.shapes]
            inputs = [
                part.reshape((x.shape[0],) + shape)
                for part, shape in zip(torch.split(x, sizes, dim=1), self.shapes)
            ]
        args, kwargs = _fill(self.template, inputs, list(self.params))
        if self.op == "call_module":
            out = self.layer(*args, **kwargs)
        elif self.op == "call_method":
            out = getattr(args[0], self.target)(*args[1:], **kwargs)
        else:
            out = self.target(*args, **kwargs)
        if self.several:
            return torch.cat([o.reshape(o.shape[0], -1) for o in out], dim=1)
        return out


class _Slot:
    """Where a TensorNode input (``kind="input"``) or parameter goes in a call."""

    def __init__(self, kind, index):
        self.kind = kind
        self.index = index


def _fill(obj, inputs, params):
    if isinstance(obj, _Slot):
        return inputs[obj.index] if obj.kind == "input" else params[obj.index]
    if isinstance(obj, tuple):
        return tuple(_fill(o, inputs, params) for o in obj)
    if isinstance(obj, list):
        return [_fill(o, inputs, params) for o in obj]
    if isinstance(obj, dict):
        return {k: _fill(v, inputs, params) for k, v in obj.items()}
    return obj


class Converter:
    """Convert a torch model into a native Nengo network.

    Parameters
    ----------
    model : torch.nn.Module
        An ``nn.Sequential`` or any module that `torch.fx` can trace. Its
        submodules that fx cannot trace are kept whole (and fall back to a
        TensorNode). Inputs are ``(batch, *input_shape)`` tensors, channels first.
    input_shape : tuple of int, or list or dict of them, optional
        Shape of one sample of each model input, without the batch axis (and
        without the time axis when ``temporal_model``): a tuple for one input, a
        list in argument order or a dict by argument name for several. Needed
        unless the first layer is an ``nn.Linear`` (then ``(in_features,)``).
    allow_fallback : bool
        Run layers that cannot be converted as TensorNodes (else raise an error
        naming the layer).
    inference_only : bool
        The network will only run inference: BatchNorm is always folded and biases
        go straight into Ensembles. Sets ``configure_settings(inference_only=True)``.
    max_to_avg_pool : bool
        Convert max pooling to average pooling (else max pooling falls back).
    split_shared_weights : bool
        A module with weights that is called several times becomes independent
        connections (they train separately); else that is an error.
    swap_activations : dict, optional
        Replace activations: keys are torch activations (``nn.ReLU``, an instance,
        or ``F.relu``/``torch.relu``) or Nengo neuron types (instances or
        classes); values are Nengo neuron types or torch activations.
    scale_firing_rates : float or dict, optional
        Neuron layers get ``gain * scale`` and their output ``/ scale``; a dict
        maps activation layers (module, fx node or fx node name) to their scale.
    synapse : nengo.synapses.Synapse or float, optional
        Synapse on every connection out of a neuron layer.
    temporal_model : bool
        The model's inputs and outputs are ``(batch, n_steps, ...)`` and every
        layer acts on each step; the Nengo network runs one step per time step.

    Attributes
    ----------
    net : nengo.Network
    inputs : mapping
        Input Nodes, by model argument name (``"input"`` for ``nn.Sequential``),
        position or fx placeholder node.
    outputs : mapping
        Output Probes (``synapse=None``), by name of the fx node computing each
        output, position, or that fx node.
    layers : dict
        fx node (and module called once) -> Nengo object: the Node, TensorNode or
        Ensemble ``neurons`` carrying its output or, for a linear layer that was
        folded into a connection, that `nengo.Connection`.
    fallbacks : dict
        fx node -> why it runs as a TensorNode.
    folded : list
        BatchNorm fx nodes folded into the network.
    input_shapes : list of tuple
        Per-sample shape of each input.
    """

    def __init__(
        self,
        model: nn.Module,
        allow_fallback: bool = True,
        inference_only: bool = False,
        max_to_avg_pool: bool = False,
        split_shared_weights: bool = False,
        swap_activations: Mapping[Any, Any] | None = None,
        scale_firing_rates: float | Mapping[Any, float] | None = None,
        synapse: nengo.synapses.Synapse | float | None = None,
        temporal_model: bool = False,
        input_shape: (
            Sequence[int] | Sequence[Sequence[int]] | Mapping[str, Sequence[int]] | None
        ) = None,
    ) -> None:
        if not isinstance(model, nn.Module):
            raise TypeError(
                f"model must be a torch.nn.Module, got {type(model).__name__}"
            )
        self.model = model
        self.allow_fallback = allow_fallback
        self.inference_only = inference_only
        self.max_to_avg_pool = max_to_avg_pool
        self.split_shared_weights = split_shared_weights
        self.swap_activations = dict(swap_activations or {})
        self.scale_firing_rates = scale_firing_rates
        self.synapse = synapse
        self.temporal_model = temporal_model

        self.graph_module = self._trace(model)
        self.graph = self.graph_module.graph
        placeholders = [n for n in self.graph.nodes if n.op == "placeholder"]
        # arguments with defaults are inputs only when input_shape names them
        named = input_shape if isinstance(input_shape, Mapping) else {}
        placeholders = [p for p in placeholders if not p.args or p.name in named]
        self._inputs = placeholders
        self.input_shapes = self._input_shapes(placeholders, input_shape)
        self._record()

        self.net = nengo.Network(label=type(model).__name__)
        with self.net:
            configure_settings(trainable=None)
            if inference_only:
                configure_settings(inference_only=True)
        self._values = {}
        self._objects = {}
        self._conns = {}
        self._bias_node = None
        self.fallbacks = {}  # fx node -> reason it fell back
        self.folded = []  # BatchNorm nodes folded into the network
        inputs, outputs = [], []
        with self.net:
            for node in self.graph.nodes:
                if node.op == "placeholder" and node in self._inputs:
                    inputs.append((node, self._build_input(node)))
                elif node.op == "output":
                    outputs = self._build_outputs(node)
                elif self._dynamic[node] and _tensors(self._recorded[node]):
                    self._build_node(node)
                # other nodes are constants or shape information (x.shape): their
                # recorded values stand for them
        self.inputs = Endpoints(
            inputs,
            {
                node: [self._module(user) for user in node.users
                       if user.op == "call_module"]
                for node, _ in inputs
            },
        )
        self.outputs = Endpoints(
            outputs,
            {node: [self._module(node)] for node, _ in outputs
             if node.op == "call_module"},
        )
        self.layers = self._layer_map()

    # -- registry

    @classmethod
    def register(
        cls, torch_layer: type
    ) -> Callable[[Callable[..., Value]], Callable[..., Value]]:
        """Decorator registering a build function for a torch layer.

        ``torch_layer`` is a module type (subclasses included; such modules are
        kept whole when tracing), a function (``torch.cat``) or a method name
        (``"view"``). The function is called as
        ``build(converter, node, layer, args, kwargs)`` inside ``converter.net``
        with the fx node, the module (or function, or method name) and its
        arguments, in which every tensor that depends on the input is a `Value`.
        It returns a `Value` (see `Converter.linear`, `Converter.neurons`,
        `Converter.materialize`, `Converter.value_of`) or raises
        `NotConvertible` to fall back.
        """

        def decorator(build):
            _layers.LAYERS[torch_layer] = build
            return build

        return decorator

    # -- tracing

    def _trace(self, model):
        if isinstance(model, fx.GraphModule):
            return model
        leaves = []
        for name, sub in model.named_modules():
            if sub is model or _layers.lookup_module(sub) is not None:
                continue
            if type(sub).__module__.startswith("torch.nn"):
                continue
            try:
                _Tracer(leaves).trace(sub)
            except Exception:  # noqa: BLE001 - any trace failure: keep it whole
                leaves.append(sub)
        try:
            graph = _Tracer(leaves).trace(model)
        except Exception as e:
            raise ValidationError(
                f"{type(model).__name__} cannot be traced by torch.fx ({type(e).__name__}"
                f": {e}); move the untraceable code into a submodule (it is then "
                "kept whole as a TensorNode) or register a converter for it",
                attr="model",
                obj=self,
            ) from e
        return fx.GraphModule(model, graph)

    def _input_shapes(self, placeholders, input_shape):
        if input_shape is None:
            shapes = []
            for node in placeholders:
                first = next(iter(node.users), None)
                module = self._module(first) if first is not None else None
                if not isinstance(module, nn.Linear):
                    raise ValidationError(
                        f"input_shape is needed to convert {type(self.model).__name__}"
                        f" (its input '{node.name}' does not go straight into an "
                        "nn.Linear): give the shape of one sample without the batch "
                        "axis, e.g. input_shape=(1, 8, 8)",
                        attr="input_shape",
                        obj=self,
                    )
                shapes.append((module.in_features,))
            return shapes
        if isinstance(input_shape, Mapping):
            missing = [n.name for n in placeholders if n.name not in input_shape]
            if missing:
                raise ValidationError(
                    f"input_shape has no shape for inputs {missing}",
                    attr="input_shape",
                    obj=self,
                )
            return [tuple(input_shape[n.name]) for n in placeholders]
        if len(input_shape) > 0 and all(isinstance(d, (int, np.integer)) for d in input_shape):
            input_shape = [input_shape]
        if len(input_shape) != len(placeholders):
            raise ValidationError(
                f"input_shape gives {len(input_shape)} shapes for "
                f"{len(placeholders)} model inputs",
                attr="input_shape",
                obj=self,
            )
        return [tuple(int(d) for d in s) for s in input_shape]

    def _example(self, shape, generator):
        lead = (EXAMPLE_BATCH, EXAMPLE_STEPS) if self.temporal_model else (EXAMPLE_BATCH,)
        like = _float_like(self.model)
        x = torch.randn(lead + tuple(shape), generator=generator, dtype=like)
        return x.to(_device(self.model))

    def _record(self):
        """Run the model once (eval mode, no grad) to record every node's value."""
        gen = torch.Generator().manual_seed(0)
        example = [self._example(s, gen) for s in self.input_shapes]
        recorder = Recorder(self.graph_module)
        saved = [(m, m.training) for m in self.model.modules()]
        try:
            self.model.eval()
            self.graph_module.eval()
            with torch.no_grad():
                recorder.run(*example)
        except Exception as e:
            raise ValidationError(
                f"running {type(self.model).__name__} on an example input of shape "
                f"{tuple(example[0].shape)} failed ({type(e).__name__}: {e}); check "
                "input_shape",
                attr="input_shape",
                obj=self,
            ) from e
        finally:
            for m, mode in saved:
                m.training = mode
        self._recorded = recorder.values
        self._dynamic = {}
        for node in self.graph.nodes:
            self._dynamic[node] = node in self._inputs or any(
                self._dynamic[a] for a in node.all_input_nodes
            )

    def _module(self, node):
        if node.op != "call_module":
            return None
        return self.graph_module.get_submodule(node.target)

    # -- helpers for build functions

    def shape_of(self, node: fx.Node, value: torch.Tensor | None = None) -> tuple[int, ...]:
        """Shape of one sample of ``node``'s output (no batch or time axis)."""
        value = self._recorded[node] if value is None else value
        if not torch.is_tensor(value):
            raise NotConvertible(f"its output is a {type(value).__name__}, not a tensor")
        lead = 2 if self.temporal_model else 1
        expected = (EXAMPLE_BATCH, EXAMPLE_STEPS)[:lead]
        if tuple(value.shape[:lead]) != expected:
            raise NotConvertible(
                "it changes the batch" + (" or time" if self.temporal_model else "")
                + " axis"
            )
        return tuple(value.shape[lead:])

    def value_of(self, obj: Any, shape: tuple[int, ...]) -> Value:
        """A `Value` for a Nengo object's whole output, with per-sample ``shape``."""
        return Value([Term(obj)], shape=shape)

    def recorded(self, node: fx.Node) -> Any:
        """``node``'s value on the example input (a constant, for constant nodes)."""
        return self._recorded[node]

    @property
    def bias_node(self) -> nengo.Node:
        """The Node of constant 1 that biases not held by Ensembles come from."""
        if self._bias_node is None:
            self._bias_node = ConstantNode(np.ones(1), label="bias")
        return self._bias_node

    def _connection(self, pre, post, transform=None, synapse=None, trainable=True):
        conn = nengo.Connection(pre, post, transform=transform, synapse=synapse)
        if not trainable:
            self.net.config[conn].trainable = False
        return conn

    def connect(self, value: Value, post: Any, skip_bias: Bias | None = None) -> None:
        """Connect every term and bias of ``value`` into ``post`` (its size)."""
        for term in value.terms:
            synapse = self.synapse if isinstance(term.obj, Neurons) else None
            conn = self._connection(
                term.source, post, term.transform, synapse, term.trainable
            )
            if term.origin is not None and term.transform is not None:
                self._conns.setdefault(term.origin, conn)
        for bias in value.biases:
            if bias is skip_bias:
                continue
            self._connect_bias(bias, post, value.size)

    def _connect_bias(self, bias, post, size):
        if bias.channel and not self.inference_only:
            # one trainable value per channel, as in torch: constant -> relay of
            # size C (trainable weights) -> fixed broadcast over positions
            n_channels = len(bias.values)
            per = size // n_channels
            relay = nengo.Node(size_in=n_channels, label="channel_bias")
            self._connection(
                self.bias_node,
                relay,
                Dense((n_channels, 1), init=bias.values[:, None]),
                trainable=bias.trainable,
            )
            rows = np.arange(size)
            broadcast = Sparse(
                (size, n_channels),
                indices=np.stack([rows, rows // per], axis=1),
                init=np.ones(size),
            )
            self._connection(relay, post, broadcast, trainable=False)
        else:
            full = bias.full(size)
            self._connection(
                self.bias_node,
                post,
                Dense((size, 1), init=full[:, None]),
                trainable=bias.trainable,
            )

    def materialize(self, value: Value, label: str | None = None) -> Any:
        """A Nengo object whose output is ``value`` (a new Node unless plain)."""
        if value.plain:
            return value.terms[0].source
        node = nengo.Node(size_in=value.size, label=label)
        self.connect(value, node)
        return node

    def as_plain(self, value: Value, label: str | None = None) -> Value:
        """``value`` as a single untransformed, unbiased term."""
        if value.plain:
            return value
        obj = self.materialize(value, label)
        return Value([Term(obj)], shape=value.shape)

    def linear(
        self,
        value: Value,
        transform: Any,
        biases: Sequence[Bias] = (),
        shape: tuple[int, ...] | None = None,
        origin: fx.Node | None = None,
        trainable: bool = True,
        label: str | None = None,
    ) -> Value:
        """``value`` through a linear map (a Nengo transform) plus ``biases``."""
        if label is None and origin is not None:
            label = origin.name
        base = self.as_plain(value, label=f"{label}.in" if label else None)
        term = base.terms[0]
        new = Term(term.obj, term.idx, transform, origin=origin, trainable=trainable)
        return Value([new], biases, shape)

    def affine(
        self,
        value: Value,
        scale: Scale,
        shift: Bias | None = None,
        origin: fx.Node | None = None,
        fold: bool = False,
    ) -> Value:
        """``value * scale + shift`` elementwise (`Scale` and `Bias`).

        With ``fold`` (or ``inference_only``) the scale is folded into the weights
        of transformed terms (BatchNorm after a conv); otherwise it is a fixed
        diagonal transform after them, so the weights train as torch's do.
        """
        size = value.size
        fold = fold or self.inference_only
        terms = []
        for term in value.terms:
            transform = None
            if term.transform is not None and (fold or not term.trainable):
                transform = scale_transform(term.transform, scale, size)
            if transform is not None:
                terms.append(Term(term.obj, term.idx, transform,
                                  origin=origin or term.origin, trainable=term.trainable))
                continue
            if term.transform is not None:
                term = Term(self.materialize(Value([term], shape=value.shape)))
            diagonal = Dense((size, size), init=scale.full(size).copy())
            terms.append(Term(term.obj, term.idx, diagonal, origin=origin,
                              trainable=fold and origin is not None))
        biases = [b.scaled(scale, size) for b in value.biases]
        if shift is not None:
            biases.append(shift)
        return Value(terms, biases, value.shape)

    def gather(
        self, value: Value, idx: np.ndarray | Sequence[int], shape: tuple[int, ...]
    ) -> Value:
        """Elements ``idx`` of ``value``'s flattened output, in a new shape."""
        base = self.as_plain(value)
        term = base.terms[0]
        idx = np.asarray(idx, dtype=np.int64)
        if term.idx is not None:
            idx = term.idx[idx]
        size = term.obj.size_out
        if idx.size == size and np.array_equal(idx, np.arange(size)):
            idx = None
        return Value([Term(term.obj, idx)], shape=shape)

    def place(
        self,
        values: Sequence[Value],
        positions: Sequence[np.ndarray],
        shape: tuple[int, ...],
        label: str | None = None,
    ) -> Value:
        """A Node of ``shape`` whose elements ``positions[i]`` are ``values[i]``."""
        node = nengo.Node(size_in=int(np.prod(shape)), label=label)
        for value, pos in zip(values, positions):
            self.connect(value, node[list(np.asarray(pos))])
        return Value([Term(node)], shape=shape)

    def neurons(
        self,
        value: Value,
        neuron_type: nengo.neurons.NeuronType,
        label: str | None = None,
        scale: float = 1.0,
    ) -> Value:
        """An Ensemble of ``neuron_type`` (one neuron per element) driven by ``value``.

        Returns its ``neurons`` output as a Value. ``scale`` is the firing-rate
        scale (gain ``* scale``, output ``/ scale``).
        """
        n = value.size
        biases = list(value.biases)
        if self.inference_only:
            bias = sum((b.full(n) for b in biases), np.zeros(n))
            own = biases
        else:
            own = [b for b in biases if not b.channel and b.trainable][:1]
            bias = own[0].full(n) if own else np.zeros(n)
        if scale != 1:
            neuron_type = _scaled_neuron_type(neuron_type, scale, label)
        ens = nengo.Ensemble(
            n,
            1,
            neuron_type=neuron_type,
            gain=np.full(n, float(scale)),
            bias=bias * scale,
            label=label,
        )
        if not own and not self.inference_only:
            # its biases are fixed or come in per channel: they must not train
            self.net.config[ens].trainable = False
        rest = Value(value.terms, [b for b in biases if not any(b is o for o in own)],
                     value.shape)
        self.connect(rest, ens.neurons)
        return Value([Term(ens.neurons)], shape=value.shape)

    # -- activations

    def activation(
        self, node: fx.Node, kind: type | None, neuron_type: nengo.neurons.NeuronType | None
    ) -> tuple[nengo.neurons.NeuronType | None, float]:
        """Neurons for an activation of torch ``kind`` (e.g. ``nn.ReLU``) at ``node``.

        Applies ``swap_activations`` and ``scale_firing_rates``; a swap to None (or
        to ``nn.Identity``) makes the activation linear.
        """
        neuron_type = self._swapped(kind, neuron_type)
        return neuron_type, self._scale_for(node)

    def _swapped(self, kind, neuron_type):
        for key, new in self.swap_activations.items():
            if _layers.activation_kind(key) is kind and kind is not None:
                neuron_type = _layers.as_neuron_type(new)
                break
        for key, new in self.swap_activations.items():
            if isinstance(key, nengo.neurons.NeuronType) and key == neuron_type or (
                isinstance(key, type)
                and issubclass(key, nengo.neurons.NeuronType)
                and type(neuron_type) is key
            ):
                return _layers.as_neuron_type(new)
        return neuron_type

    def _scale_for(self, node):
        scale = self.scale_firing_rates
        if scale is None:
            return 1.0
        if not isinstance(scale, Mapping):
            return float(scale)
        module = self._module(node)
        for key in (node, node.name, module):
            try:
                if key is not None and key in scale:
                    return float(scale[key])
            except TypeError:
                continue
        return 1.0

    # -- building

    def _build_input(self, node):
        shape = self.input_shapes[len([n for n in self._values if n.op == "placeholder"])]
        inp = nengo.Node(np.zeros(int(np.prod(shape))), label=node.name)
        self._values[node] = Value([Term(inp)], shape=shape)
        return inp

    def _resolve(self, node):
        """``node``'s args and kwargs: Values for dynamic tensors, else constants."""

        def resolve(arg):
            if self._dynamic[arg] and arg in self._values:
                return self._values[arg]
            return self._recorded[arg]

        return fx.node.map_arg(node.args, resolve), fx.node.map_arg(node.kwargs, resolve)

    def _build_node(self, node):
        target = self._module(node) if node.op == "call_module" else node.target
        build = self._lookup(node, target)
        reason = None
        value = None
        if build is None:
            reason = "no converter is registered for it"
        else:
            try:
                self._check_shared(node, target)
                args, kwargs = self._resolve(node)
                value = build(self, node, target, args, kwargs)
            except NotConvertible as e:
                reason = str(e)
        if value is None:
            if not self.allow_fallback:
                raise ValidationError(
                    f"cannot convert layer {_describe(node, target)}: {reason} "
                    "(allow_fallback=True would run it as a TensorNode)",
                    attr="model",
                    obj=self,
                )
            self.fallbacks[node] = reason
            value = self._fallback(node, target)
        if isinstance(value, (list, tuple)):  # several tensors (torch.split)
            self._values[node] = list(value)
            return
        if len(node.users) > 1 and not value.plain:
            # several readers: one Node, so weights and biases exist once
            obj = self.materialize(value, label=node.name)
            self._objects[node] = obj
            value = Value([Term(obj)], shape=value.shape)
        self._values[node] = value

    def _lookup(self, node, target):
        if node.op == "call_module":
            return _layers.lookup_module(target)
        if node.op == "call_function":
            return _layers.LAYERS.get(target)
        if node.op == "call_method":
            return _layers.LAYERS.get(target) if isinstance(target, str) else None
        return None

    def _check_shared(self, node, module):
        if not isinstance(module, nn.Module) or self.split_shared_weights:
            return
        if not any(True for _ in module.parameters()):
            return
        calls = [n for n in self.graph.nodes if n.op == "call_module" and n.target == node.target]
        if len(calls) > 1:
            raise ValidationError(
                f"layer {_describe(node, module)} is called {len(calls)} times; its "
                "weights cannot be shared between Nengo connections. Pass "
                "split_shared_weights=True to give each call its own copy",
                attr="split_shared_weights",
                obj=self,
            )

    def _fallback(self, node, target):
        """A TensorNode running ``node``'s torch code."""
        inputs, params = [], []

        def slot(arg):
            if self._dynamic[arg]:
                value = self._values.get(arg)
                if isinstance(value, list):
                    start = len(inputs)
                    inputs.extend(value)
                    return tuple(_Slot("input", start + i) for i in range(len(value)))
                if value is None:
                    raise ValidationError(
                        f"cannot run layer {_describe(node, target)} as a TensorNode: "
                        f"its argument '{arg.name}' is not a tensor",
                        attr="model",
                        obj=self,
                    )
                inputs.append(value)
                return _Slot("input", len(inputs) - 1)
            const = self._recorded[arg]
            if isinstance(const, nn.Parameter):
                params.append(const)
                return _Slot("param", len(params) - 1)
            return const

        args = fx.node.map_arg(node.args, slot)
        kwargs = fx.node.map_arg(node.kwargs, slot)
        recorded = self._recorded[node]
        several = isinstance(recorded, (tuple, list))
        try:
            shapes_out = [
                self.shape_of(node, value=r)
                for r in (recorded if several else [recorded])
            ]
        except NotConvertible as e:
            raise ValidationError(
                f"cannot run layer {_describe(node, target)} as a TensorNode: {e}",
                attr="model",
                obj=self,
            ) from None
        shapes = [v.shape for v in inputs]
        func = _FxCall(node, target, args, kwargs, shapes, params, several=several)
        shape_in = shapes[0] if len(shapes) == 1 else (sum(v.size for v in inputs),)
        sizes = [int(np.prod(sh)) for sh in shapes_out]
        shape_out = shapes_out[0] if not several else (sum(sizes),)
        tnode = TensorNode(
            func, shape_in=shape_in, shape_out=shape_out, pass_time=False, label=node.name
        )
        offset = 0
        for value in inputs:
            post = tnode if len(inputs) == 1 else tnode[offset : offset + value.size]
            self.connect(value, post)
            offset += value.size
        self._objects[node] = tnode
        whole = Value([Term(tnode)], shape=shape_out)
        if not several:
            return whole
        starts = np.cumsum([0] + sizes)
        return [
            self.gather(whole, np.arange(a, a + n), sh)
            for a, n, sh in zip(starts, sizes, shapes_out)
        ]

    def _build_outputs(self, node):
        outputs = []
        leaves = []
        fx.node.map_arg(node.args, leaves.append)
        for leaf in leaves:
            if not self._dynamic[leaf]:
                raise ValidationError(
                    f"model output '{leaf.name}' does not depend on the input",
                    attr="model",
                    obj=self,
                )
            value = self._values.get(leaf)
            if value is None or isinstance(value, list):
                # a layer that returns a tuple (nn.LSTM: output, (h, c)) handed
                # on whole: no one tensor to probe
                recorded = self._recorded.get(leaf)
                raise ValidationError(
                    f"model output '{leaf.name}' is a {type(recorded).__name__}, not "
                    "a tensor: return the tensors to probe from forward (e.g. "
                    "`output, _ = self.lstm(x); return output`)",
                    attr="model",
                    obj=self,
                )
            obj = self.materialize(value, label=f"{leaf.name}.out")
            if not value.plain:
                self._objects.setdefault(leaf, obj)
            outputs.append((leaf, nengo.Probe(obj, synapse=None, label=leaf.name)))
        return outputs

    def _layer_map(self):
        layers = {}
        counts = {}
        for node in self.graph.nodes:
            if node.op == "call_module":
                counts[node.target] = counts.get(node.target, 0) + 1
        for node, value in self._values.items():
            if node in self._objects:
                obj = self._objects[node]
            elif isinstance(value, list):
                obj = None
            elif value.plain:
                obj = value.terms[0].source
            else:
                obj = self._conns.get(node)
            layers[node] = obj
            if node.op == "call_module" and counts[node.target] == 1:
                layers[self._module(node)] = obj
        return layers

    # -- verification

    def verify(
        self,
        training: bool = False,
        inputs: Any = None,
        atol: float = 1e-6,
        rtol: float = 1e-5,
    ) -> bool:
        """Check that the network computes what the torch model computes.

        The network runs in `snntorch_nengo.Simulator` (``predict``, float64, one
        step per sample or the model's steps with ``temporal_model``) and its
        outputs are compared with a float64 copy of the model in eval mode.
        Spiking neurons, synapses or firing-rate scaling of non-linear neurons
        make the outputs differ, as they should.

        Parameters
        ----------
        training : bool
            Also check training: a copy of the model and a network converted from
            another copy take one SGD step on the same batch and mean squared
            error; their training-mode outputs before the step and their outputs
            after it must agree (Dropout is inactive in both).
        inputs : array or list or dict of arrays, optional
            Input samples ``(batch, *input_shape)`` (``(batch, n_steps, ...)`` for
            temporal models), by input position or name; by default 4 standard
            normal samples (seed 0).
        atol, rtol : float
            Tolerances of `numpy.allclose`.

        Returns
        -------
        True, or raises ValueError naming the output that differs and by how much.
        """
        return verify(self, training=training, inputs=inputs, atol=atol, rtol=rtol)


def _tensors(value):
    """Whether ``value`` is a tensor or a non-empty tuple/list of tensors."""
    if isinstance(value, (tuple, list)):
        return len(value) > 0 and all(torch.is_tensor(v) for v in value)
    return torch.is_tensor(value)


def _describe(node, target):
    if isinstance(target, nn.Module):
        return f"'{node.target}' ({type(target).__name__})"
    if node.op == "call_method":
        return f"'{node.name}' (method .{target}())"
    name = getattr(target, "__name__", repr(target))
    return f"'{node.name}' (function {name})"


def _float_like(model):
    for t in list(model.parameters()) + list(model.buffers()):
        if t.is_floating_point():
            return t.dtype
    return torch.float32


def _device(model):
    for t in list(model.parameters()) + list(model.buffers()):
        return t.device
    return torch.device("cpu")


def _scaled_neuron_type(neuron_type, scale, label):
    """``neuron_type`` with its output divided by ``scale``."""
    params = {p.name: getattr(neuron_type, p.name) for p in neuron_type._params}
    if "amplitude" in params:
        params["amplitude"] = params["amplitude"] / scale
    elif isinstance(neuron_type, (nengo.Sigmoid, nengo.Tanh)):
        params["tau_ref"] = params["tau_ref"] * scale  # output is 1 / tau_ref * f(J)
    else:
        raise ValidationError(
            f"scale_firing_rates cannot scale the output of {neuron_type} (layer "
            f"{label}): it has no amplitude",
            attr="scale_firing_rates",
        )
    return type(neuron_type)(**params)
