"""Ensembles: a neuron module; its state (voltage, ...) in buffers."""

from __future__ import annotations

import nengo

from . import ModuleBuilder
from .base import NengoObjectModule


@ModuleBuilder.register(nengo.Ensemble)
class EnsembleModule(NengoObjectModule):
    """An `nengo.Ensemble`: encoders and biases train, neuron state in buffers."""

    trainable = ("encoders", "bias")

    def extra_repr(self) -> str:
        ens = self.obj
        label = "" if ens.label is None else f"label={ens.label!r}, "
        return (
            f"{label}n_neurons={ens.n_neurons}, dimensions={ens.dimensions}, "
            f"neuron_type={ens.neuron_type!r}"
        )
