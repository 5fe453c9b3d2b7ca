"""Nengo's builder, recording which Nengo object each operator was built for."""

from __future__ import annotations

from typing import Any

import nengo
from nengo.builder import Model
from nengo.cache import get_default_decoder_cache

OWNER_TYPES = (nengo.Ensemble, nengo.Node, nengo.Connection, nengo.Probe)


class OwnedModel(Model):
    """A `nengo.builder.Model` that remembers the object behind every operator.

    Parameters are computed by Nengo's own build functions and solvers, so they
    equal the reference simulator's; the record only lets us hang each signal on
    the module of the Ensemble, Node, Connection or Probe that made it.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.op_owner = {}
        self._building = []
        super().__init__(*args, **kwargs)

    def build(self, obj: object, *args: Any, **kwargs: Any) -> Any:
        owns = isinstance(obj, OWNER_TYPES)
        if owns:
            self._building.append(obj)
        try:
            return super().build(obj, *args, **kwargs)
        finally:
            if owns:
                self._building.pop()

    def add_op(self, op: nengo.builder.Operator) -> None:
        super().add_op(op)
        self.op_owner[op] = self._building[-1] if self._building else None


def build_model(
    network: nengo.Network | None, dt: float, model: Model | None = None
) -> Model:
    """Build ``network`` with Nengo's builder (into ``model`` if given)."""
    if model is None:
        model = OwnedModel(
            dt=float(dt),
            label=f"{network}, dt={dt:f}",
            decoder_cache=get_default_decoder_cache(),
        )
    if network is not None:
        model.build(network)
    return model
