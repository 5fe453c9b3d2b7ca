"""The torch view of a Nengo object: its signals as parameters and buffers."""

from __future__ import annotations

import keyword
import re
from typing import TYPE_CHECKING

import torch
from torch import nn

if TYPE_CHECKING:
    from nengo.builder.signal import Signal


def attribute_name(text: object) -> str:
    """A readable attribute name made from a signal key or label."""
    # "<Ensemble (unlabeled) at 0x7f...>": addresses differ between processes
    text = re.sub(r"\s*at 0x[0-9a-fA-F]+", "", str(text))
    name = re.sub(r"\W+", "_", text).strip("_").lower()
    if keyword.iskeyword(name):
        # ("in"): torch.export writes attribute accesses as Python code
        name += "_"
    return name or "signal"


class NengoObjectModule(nn.Module):
    """Holds the tensors of one Nengo object.

    Trainable signals are `nn.Parameter`s, other built constants are buffers saved
    in the ``state_dict``, and simulation state (voltages, filter states, learned
    weights) lives in non-persistent buffers with a leading batch dimension.
    """

    def __init__(self, obj: object = None) -> None:
        super().__init__()
        self._obj = obj  # plain attribute: Nengo objects are not modules
        self.signal_names = {}  # base signal -> attribute name
        self.state_names = []

    @property
    def obj(self) -> object:
        return self._obj

    def add_signal(
        self,
        sig: Signal,
        name: str,
        value: torch.Tensor,
        trainable: bool = False,
        state: bool = False,
    ) -> str:
        name = self._unique(attribute_name(name))
        if trainable and not state and value.is_floating_point():
            self.register_parameter(name, nn.Parameter(value))
        else:
            self.register_buffer(name, value, persistent=not state)
        if state:
            self.state_names.append(name)
        self.signal_names[sig] = name
        return name

    def _unique(self, name):
        candidate, i = name, 1
        while hasattr(self, candidate) or candidate in self._buffers:
            candidate, i = f"{name}_{i}", i + 1
        return candidate

    def signal(self, sig: Signal) -> torch.Tensor:
        name = self.signal_names[sig]
        # straight from the dicts: nn.Module.__getattr__ costs microseconds, and
        # every run reads every signal
        value = self._parameters.get(name)
        return value if value is not None else self._buffers[name]

    def set_signal(self, sig: Signal, value: torch.Tensor) -> None:
        name = self.signal_names[sig]
        if name in self._parameters:
            raise TypeError(f"{name} is a parameter of {self.obj}")
        self._buffers[name] = value

    def extra_repr(self) -> str:
        return describe(self.obj)


def describe(obj: object) -> str:
    """One line naming a Nengo object, used by the module reprs."""
    if obj is None:
        return ""
    label = getattr(obj, "label", None)
    return f"label={label!r}" if label is not None else repr(obj)
