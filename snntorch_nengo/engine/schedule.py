"""Step order: Nengo's operator dependency graph, plus input feeds for nodes."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

import nengo
from nengo.builder.operator import SimPyFunc
from nengo.builder.processes import SimProcess
from nengo.utils.graphs import toposort
from nengo.utils.simulator import operator_dependency_graph

from .operators import NodeInput, SimTensorNode

if TYPE_CHECKING:
    from nengo.builder import Model, Operator

__all__ = ["ConstantNode", "NodeInput", "input_nodes", "step_order", "with_input_ops"]


class ConstantNode(nengo.Node):
    """A Node of constants that is part of the model, never an input to feed.

    The Converter's bias Node is one: a NengoDL user fits a converted network with
    one input array (``sim.fit(images, labels)``), so the bias must not count as a
    second input.
    """


def input_nodes(model: Model) -> list:
    """Nodes that can be fed: no input, an output. In build order.

    A node whose output a `SimTensorNode` computes (a TensorNode) runs its
    torch code: it is never fed.
    """
    torch_nodes = {op.node for op in model.operators if isinstance(op, SimTensorNode)}
    return [
        obj
        for obj in model.params
        if isinstance(obj, nengo.Node)
        and not isinstance(obj, ConstantNode)
        and obj not in torch_nodes
        and obj.size_in == 0
        and obj.size_out > 0
        and obj.output is not None
        and model.sig.get(obj, {}).get("out") is not None
    ]


def with_input_ops(model: Model, nodes: Iterable[nengo.Node]) -> list:
    """Nengo's operators with each input node's output op wrapped in `NodeInput`."""
    by_output = {model.sig[node]["out"]: node for node in nodes}
    operators, wrapped = [], set()
    for op in model.operators:
        out = _node_output(op)
        if out is not None and out in by_output:
            node = by_output[out]
            operators.append(NodeInput(node, out, original=op))
            wrapped.add(node)
        else:
            operators.append(op)
    for node in nodes:
        if node not in wrapped:
            operators.append(NodeInput(node, model.sig[node]["out"]))
    return operators


def _node_output(op):
    if isinstance(op, SimPyFunc) and op.x is None:
        return op.output
    if isinstance(op, SimProcess) and op.input is None and op.mode == "set":
        return op.output
    return None


def step_order(operators: Iterable[Operator]) -> list:
    """Operators in an order that respects Nengo's sets -> incs -> reads -> updates."""
    return list(toposort(operator_dependency_graph(operators)))
