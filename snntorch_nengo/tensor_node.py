"""TensorNode and Layer: torch code inside a Nengo network.

A `TensorNode` is a `nengo.Node` whose output is computed by a torch function or
`torch.nn.Module` on the batched input, so it takes part in autograd and training
like the rest of the network. `Layer` builds TensorNodes (or neuron layers) and
connects them in one call, in the style of a Keras/torch functional model.

TensorNodes run only in `snntorch_nengo.Simulator` / `.NengoModule`. Nengo's
builder knows how to build them (a `SimTensorNode` operator), so a network that
contains them can still be built elsewhere, but Nengo's reference simulator
refuses to run that operator with a clear error.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np
import torch
from nengo.base import NengoObject, ObjView
from nengo.connection import Connection
from nengo.builder import Builder
from nengo.builder.operator import Reset
from nengo.builder.signal import Signal
from nengo.ensemble import Ensemble, Neurons
from nengo.exceptions import NetworkContextError, SimulationError, ValidationError
from nengo.network import Network
from nengo.neurons import NeuronType
from nengo.node import Node
from nengo.params import BoolParam, Default, Parameter, ShapeParam
from torch import nn

from .engine.operators import NOT_SIMULATED, SimTensorNode
from .engine.ops.tensor_node import ModuleMode, call_tensor_func

if TYPE_CHECKING:
    from nengo.builder import Model

class TensorFuncParam(Parameter):
    """A callable or `torch.nn.Module`; infers the node's ``shape_out``."""

    def coerce(
        self, node: TensorNode, func: Callable
    ) -> Callable:  # pylint: disable=arguments-renamed
        func = super().coerce(node, func)
        if not callable(func):
            raise ValidationError(
                f"tensor_func must be callable or a torch.nn.Module (got type "
                f"'{type(func).__name__}')",
                attr=self.name,
                obj=node,
            )
        if node.shape_out is None:
            node.shape_out = self.infer_shape_out(node, func)
        return func

    def infer_shape_out(self, node: TensorNode, func: Callable) -> tuple[int, ...]:
        """Call ``func`` once on zeros (float32, no grad, modules in eval mode)."""
        t = torch.tensor(0.0, dtype=torch.float32)
        x = (
            None
            if node.shape_in is None
            else torch.zeros((1,) + tuple(node.shape_in), dtype=torch.float32)
        )
        spec = _FuncSpec(func, node.shape_in, node.pass_time)
        try:
            with torch.no_grad(), ModuleMode(func, False):
                y = call_tensor_func(spec, t, x, name_errors=False)
        except Exception as e:
            raise ValidationError(
                f"{node}: calling tensor_func on zeros of shape (1,) + shape_in to "
                f"infer shape_out failed ({type(e).__name__}: {e}); pass shape_out "
                "explicitly",
                attr=self.name,
                obj=node,
            ) from e
        if not torch.is_tensor(y) or y.dim() < 1 or y.shape[0] != 1:
            got = tuple(y.shape) if torch.is_tensor(y) else type(y).__name__
            raise ValidationError(
                f"{node}: tensor_func must return a torch.Tensor of shape "
                f"(batch,) + shape_out; on an input of batch size 1 it returned {got}",
                attr=self.name,
                obj=node,
            )
        return tuple(int(d) for d in y.shape[1:])


class _FuncSpec:
    """What `call_tensor_func` needs, before the node's attributes are all set."""

    def __init__(self, tensor_func, shape_in, pass_time):
        self.tensor_func = tensor_func
        self.shape_in = shape_in
        self.pass_time = pass_time


class TensorNode(Node):
    """A Node whose output is computed by torch code on the batched input.

    Parameters
    ----------
    tensor_func : callable or torch.nn.Module
        Computes the node's output. It is called as ``f(t, x)``; as ``f(x)`` with
        ``pass_time=False``; as ``f(t)`` when ``shape_in`` is None. ``t`` is a
        scalar tensor of the current time, ``x`` a tensor of shape
        ``(batch,) + shape_in``, and the result must have shape
        ``(batch,) + shape_out`` (a leading 1 broadcasts over the batch). A
        `torch.nn.Module` becomes a child of the node's module in the
        `.NengoModule`, so its parameters train, save and move with it, and it
        follows the NengoModule's ``train()``/``eval()`` mode.
    shape_in : tuple of int, optional
        Shape of one input sample (the node's ``size_in`` is its product); None for
        a node without input.
    shape_out : tuple of int, optional
        Shape of one output sample; inferred by calling ``tensor_func`` on zeros
        of shape ``(1,) + shape_in`` when None.
    pass_time : bool
        Whether ``tensor_func`` receives the time ``t`` as first argument.
    label : str, optional
        A name for the node.
    """

    tensor_func = TensorFuncParam("tensor_func")
    shape_in = ShapeParam("shape_in", default=None, low=1, optional=True)
    shape_out = ShapeParam("shape_out", default=None, low=1, optional=True)
    pass_time = BoolParam("pass_time", default=True)

    # order matters for copying/pickling: tensor_func may infer shape_out
    _param_init_order = ["shape_in", "shape_out", "pass_time", "tensor_func"]

    def __init__(
        self,
        tensor_func: Callable,
        shape_in: int | tuple[int, ...] | None = Default,
        shape_out: int | tuple[int, ...] | None = Default,
        pass_time: bool = Default,
        label: str | None = Default,
    ) -> None:
        # Node.__init__ would validate ``output``; a TensorNode has no numpy output
        NengoObject.__init__(self, label=label, seed=None)  # pylint: disable=W0233
        self.shape_in = shape_in
        self.shape_out = shape_out
        self.pass_time = pass_time
        if self.shape_in is None and not self.pass_time:
            raise ValidationError(
                "a TensorNode needs an input (shape_in) or the time (pass_time=True)",
                attr="pass_time",
                obj=self,
            )
        self.tensor_func = tensor_func

    @property
    def output(self) -> Callable:
        """A function that refuses to run: TensorNodes have no numpy output.

        It is not None, so Nengo does not mistake a TensorNode for a passthrough
        Node, and anything that calls it (another simulator) fails clearly.
        """

        def output(*args):
            raise SimulationError(NOT_SIMULATED.format(simulator="this simulator"))

        return output

    @property
    def size_in(self) -> int:
        return 0 if self.shape_in is None else int(np.prod(self.shape_in))

    @property
    def size_out(self) -> int:
        return 0 if self.shape_out is None else int(np.prod(self.shape_out))


@Builder.register(TensorNode)
def build_tensor_node(model: Model, node: TensorNode) -> None:
    """Build a `TensorNode`: input signal (reset each step), output, `SimTensorNode`.

    Sets ``model.sig[node]["in"]`` (None without input), ``model.sig[node]["out"]``
    and ``model.params[node] = None``, as Nengo's Node builder does.
    """
    if node.shape_in is not None:
        sig_in = Signal(shape=(node.size_in,), name=f"{node}.in")
        model.add_op(Reset(sig_in))
    else:
        sig_in = None
    sig_out = Signal(shape=(node.size_out,), name=f"{node}.out")
    model.sig[node]["in"] = sig_in
    model.sig[node]["out"] = sig_out
    model.params[node] = None
    model.add_op(
        SimTensorNode(node, model.time if node.pass_time else None, sig_in, sig_out)
    )


class Layer:
    """Add a layer to a network and connect it, in one call.

    ``Layer(layer_func)(input, ...)`` makes a `TensorNode` running ``layer_func``
    (a callable or `torch.nn.Module`, called on ``x`` alone) or, when
    ``layer_func`` is a `nengo.neurons.NeuronType`, an Ensemble of those neurons
    (one per input dimension), and connects ``input`` to it.

    Parameters
    ----------
    layer_func : callable or torch.nn.Module or nengo.neurons.NeuronType
        What the layer computes.
    """

    def __init__(self, layer_func: Callable | NeuronType) -> None:
        if not (isinstance(layer_func, NeuronType) or callable(layer_func)):
            raise ValidationError(
                "layer_func must be callable, a torch.nn.Module or a NeuronType (got "
                f"type '{type(layer_func).__name__}')",
                attr="layer_func",
                obj=self,
            )
        self.layer_func = layer_func

    def __call__(
        self,
        input,  # pylint: disable=redefined-builtin
        transform=1,
        shape_in=None,
        synapse=None,
        return_conn=False,
        **kwargs,
    ):
        """Add the layer and connect ``input`` to it; return it (and the connection).

        Parameters
        ----------
        input : nengo.base.NengoObject or nengo.ensemble.Neurons or ObjView
            What feeds the layer.
        transform : nengo transform or array_like
            Transform of the connection from ``input``.
        shape_in : tuple of int, optional
            Shape of one input sample of the layer (after ``transform``); by
            default ``(size,)`` with ``size`` the transform's output size (or
            ``input``'s size).
        synapse : nengo.synapses.Synapse, optional
            Synapse of the connection from ``input``.
        return_conn : bool
            Also return the connection.
        **kwargs
            Passed to `TensorNode` (e.g. ``label``, ``shape_out``) or to
            `nengo.Ensemble` (e.g. ``label``, ``gain``, ``bias``).

        Returns
        -------
        `TensorNode` or `nengo.ensemble.Neurons`, and the `nengo.Connection` if
        ``return_conn``.
        """
        if len(Network.context) == 0:
            raise NetworkContextError(
                f"{self} must be called inside a network context (`with net:`)"
            )
        if not isinstance(input, (NengoObject, ObjView, Neurons)):
            raise ValidationError(
                f"input must be a Nengo object (got type '{type(input).__name__}')",
                attr="input",
                obj=self,
            )
        if shape_in is None:
            shape_in = (self._size_after(input, transform),)
        if isinstance(self.layer_func, NeuronType):
            obj = Ensemble(
                int(np.prod(shape_in)), 1, neuron_type=self.layer_func, **kwargs
            ).neurons
        else:
            obj = TensorNode(
                self.layer_func, shape_in=shape_in, pass_time=False, **kwargs
            )
        conn = Connection(input, obj, transform=transform, synapse=synapse)
        return (obj, conn) if return_conn else obj

    @staticmethod
    def _size_after(input, transform):  # pylint: disable=redefined-builtin
        size_out = getattr(transform, "size_out", None)
        if isinstance(size_out, (int, np.integer)):
            return int(size_out)
        array = np.asarray(transform) if not hasattr(transform, "sample") else None
        if array is not None and array.dtype.kind in "biuf" and array.ndim == 2:
            return int(array.shape[0])
        return int(input.size_out)

    def __str__(self):
        func = self.layer_func
        name = (
            type(func).__name__
            if isinstance(func, (nn.Module, NeuronType))
            else getattr(func, "__name__", type(func).__name__)
        )
        return f"Layer({name})"

    __repr__ = __str__
