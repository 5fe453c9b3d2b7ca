"""Probes: recorder hooks on a signal, optionally filtered and subsampled."""

from __future__ import annotations

import nengo

from . import ModuleBuilder
from .base import NengoObjectModule


@ModuleBuilder.register(nengo.Probe)
class ProbeModule(NengoObjectModule):
    """A `nengo.Probe`: the engine records its ``in`` signal after each step."""

    trainable = ()

    def extra_repr(self) -> str:
        probe = self.obj
        label = "" if probe.label is None else f"label={probe.label!r}, "
        return (
            f"{label}target={probe.target}, attr={probe.attr!r}, "
            f"synapse={probe.synapse!r}, sample_every={probe.sample_every}"
        )
