"""From a built Nengo model to a tree of torch modules, one per Nengo object.

As in `nengo.builder.Builder`, each Nengo object type registers the module class
that represents it (``ensemble.py``, ``node.py``, ``connection.py``,
``probe.py``). `build_modules` then hangs every signal of the built model on the
module of the object that owns it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

import nengo
import torch
from nengo.exceptions import BuildError

from ..config import is_trainable
from ..utils import TypeRegistry
from .base import NengoObjectModule, attribute_name

if TYPE_CHECKING:
    from nengo.builder import Model
    from nengo.builder.signal import Signal

    from ..engine.signals import SignalLayout


class ModuleBuilder:
    """Nengo object type to module class."""

    modules = TypeRegistry()
    register = modules.register

    @classmethod
    def build(cls, obj: object) -> NengoObjectModule:
        module_cls = cls.modules.lookup(obj)
        if module_cls is None:
            raise BuildError(f"{obj}: no torch module for objects of type {type(obj)}")
        return module_cls(obj)


from . import connection, ensemble, node, probe  # noqa: E402,F401

KINDS = (
    ("ensembles", nengo.Ensemble),
    ("nodes", nengo.Node),
    ("connections", nengo.Connection),
    ("probes", nengo.Probe),
)


def owner_of(obj: object) -> tuple[object | None, str]:
    """The Ensemble/Node/Connection/Probe a built object belongs to, and a prefix."""
    if isinstance(obj, nengo.ensemble.Neurons):
        return obj.ensemble, "neuron_"
    if isinstance(obj, nengo.connection.LearningRule):
        return obj.connection, f"{type(obj.learning_rule_type).__name__}_"
    if any(isinstance(obj, kind) for _, kind in KINDS):
        return obj, ""
    return None, ""


def signal_owners(
    model: Model, layout: SignalLayout
) -> dict[Signal, tuple[object | None, str]]:
    """Map each base signal to ``(owner object or None, attribute name)``."""
    owners = {}
    for obj, sigs in model.sig.items():
        owner, prefix = owner_of(obj)
        if owner is None:
            continue
        for key, sig in sigs.items():
            if sig is not None and sig.base is sig and sig in layout.views:
                name = key if key in ("bias",) or not prefix else prefix + key
                owners.setdefault(sig, (owner, name))
    op_owner = getattr(model, "op_owner", {})
    for op in model.operators:
        owner = op_owner.get(op)
        for sig in op.all_signals:
            if sig.base not in owners:
                owners[sig.base] = (owner, _signal_label(op, sig))
    for base in layout.bases:
        owners.setdefault(base, (None, _signal_label(None, base)))
    for name, sig in (("step", model.step), ("time", model.time)):
        owners[sig] = (None, name)
    return owners


def _signal_label(op, sig):
    state = getattr(op, "state", None)
    if isinstance(state, dict):
        for name, state_sig in state.items():
            if state_sig.base is sig.base:
                kind = "synapse" if isinstance(op.process, nengo.synapses.Synapse) else (
                    "process"
                )
                return f"{kind}_{name}" if hasattr(op, "process") else name
    return attribute_name(sig.base.name)


def build_modules(
    model: Model,
    layout: SignalLayout,
    initial_state: Mapping[Signal, torch.Tensor],
    network: nengo.Network | None = None,
    device: torch.device | str | None = None,
) -> tuple[
    dict[str, dict],
    NengoObjectModule,
    dict[Signal, NengoObjectModule],
    dict[object, NengoObjectModule],
]:
    """The module tree: ``{kind: {key: module}}`` and ``{base signal: module}``.

    Trainable signals (see each module's ``trainable``) of objects that
    `.is_trainable` become parameters.
    """
    owners = signal_owners(model, layout)
    modules, slots = {}, {}
    shared = NengoObjectModule(None)
    for base in layout.bases:
        obj, name = owners[base]
        module = shared if obj is None else modules.get(obj)
        if module is None:
            module = modules[obj] = ModuleBuilder.build(obj)
        state = base in layout.dynamic
        value = (
            initial_state[base] if state else layout.initial_value(base, device=device)
        )
        trainable = name in getattr(module, "trainable", ()) and is_trainable(
            network, obj
        )
        module.add_signal(base, name, value, trainable=trainable, state=state)
        slots[base] = module
    tree = {kind: {} for kind, _ in KINDS}
    for kind, obj_type in KINDS:
        objs = [obj for obj in model.params if isinstance(obj, obj_type)]
        for i, obj in enumerate(objs):
            module = modules.get(obj)
            if module is None:
                module = modules[obj] = ModuleBuilder.build(obj)
            tree[kind][_key(obj, i, obj_type, tree[kind])] = module
    return tree, shared, slots, modules


def _key(obj, i, obj_type, taken):
    base = attribute_name(obj.label) if obj.label else f"{obj_type.__name__.lower()}_{i}"
    key, j = base, 1
    while key in taken:
        key, j = f"{base}_{j}", j + 1
    return key
