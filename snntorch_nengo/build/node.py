"""Nodes: inputs fed from data or from their own function, and passthroughs."""

from __future__ import annotations

import nengo
from torch import nn

from ..tensor_node import TensorNode
from . import ModuleBuilder
from .base import NengoObjectModule


@ModuleBuilder.register(nengo.Node)
class NodeModule(NengoObjectModule):
    """A `nengo.Node`: holds its output signal (and input, for passthroughs)."""

    trainable = ()

    def extra_repr(self) -> str:
        node = self.obj
        label = "" if node.label is None else f"label={node.label!r}, "
        output = node.output
        kind = (
            "passthrough"
            if output is None
            else type(output).__name__ if not callable(output) else "function"
        )
        if isinstance(output, nengo.Process):
            kind = repr(output)
        return f"{label}size_in={node.size_in}, size_out={node.size_out}, output={kind}"


@ModuleBuilder.register(TensorNode)
class TensorNodeModule(NodeModule):
    """A `.TensorNode`: its signals, and its ``tensor_func`` when that is a module.

    A `torch.nn.Module` ``tensor_func`` is a child module here, so its parameters
    and buffers are part of the `.NengoModule`'s ``parameters()``/``state_dict()``,
    move with ``.to(device)`` and follow its ``train()``/``eval()`` mode.
    """

    def __init__(self, obj: TensorNode = None) -> None:
        super().__init__(obj)
        func = obj.tensor_func
        if isinstance(func, nn.Module):
            self.tensor_func = func

    def extra_repr(self) -> str:
        node = self.obj
        label = "" if node.label is None else f"label={node.label!r}, "
        func = node.tensor_func
        kind = (
            type(func).__name__
            if isinstance(func, nn.Module)
            else getattr(func, "__name__", type(func).__name__)
        )
        return (
            f"{label}shape_in={node.shape_in}, shape_out={node.shape_out}, "
            f"pass_time={node.pass_time}, tensor_func={kind}"
        )
