"""Nodes: inputs fed from data or from their own function, and passthroughs."""

import nengo

from . import ModuleBuilder
from .base import NengoObjectModule


@ModuleBuilder.register(nengo.Node)
class NodeModule(NengoObjectModule):
    """A `nengo.Node`: holds its output signal (and input, for passthroughs)."""

    trainable = ()

    def extra_repr(self):
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
