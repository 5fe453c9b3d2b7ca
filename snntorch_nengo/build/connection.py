"""Connections: a weighted synapse module with its filter state."""

import nengo

from . import ModuleBuilder
from .base import NengoObjectModule


@ModuleBuilder.register(nengo.Connection)
class ConnectionModule(NengoObjectModule):
    """A `nengo.Connection`: weights train; synapse state in buffers."""

    trainable = ("weights",)

    def extra_repr(self):
        conn = self.obj
        parts = [f"{conn.pre_obj} -> {conn.post_obj}"]
        if conn.function is not None:
            parts.append(f"function={getattr(conn.function, '__name__', 'array')}")
        parts.append(f"transform={type(conn.transform).__name__}")
        parts.append(f"synapse={conn.synapse!r}")
        if conn.learning_rule_type is not None:
            parts.append(f"learning_rule={conn.learning_rule_type!r}")
        return ", ".join(parts)
