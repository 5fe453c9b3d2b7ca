"""Connections: a weighted synapse module with its filter state."""

from __future__ import annotations

import nengo

from . import ModuleBuilder
from .base import NengoObjectModule


@ModuleBuilder.register(nengo.Connection)
class ConnectionModule(NengoObjectModule):
    """A `nengo.Connection`: weights train; synapse state in buffers."""

    trainable = ("weights",)

    def __init__(self, obj: nengo.Connection | None = None) -> None:
        super().__init__(obj)
        if obj is not None and isinstance(obj.post_obj, nengo.Probe):
            # the connection nengo's builder adds from a probed object to its
            # probe (decoders of a decoded probe) belongs to no network: it reads
            # out, it does not train (as in NengoDL), so adding a probe leaves the
            # trainable parameters as they were
            self.trainable = ()

    def extra_repr(self) -> str:
        conn = self.obj
        parts = [f"{conn.pre_obj} -> {conn.post_obj}"]
        if conn.function is not None:
            parts.append(f"function={getattr(conn.function, '__name__', 'array')}")
        parts.append(f"transform={type(conn.transform).__name__}")
        parts.append(f"synapse={conn.synapse!r}")
        if conn.learning_rule_type is not None:
            parts.append(f"learning_rule={conn.learning_rule_type!r}")
        return ", ".join(parts)
