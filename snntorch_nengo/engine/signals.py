"""Nengo signals as torch tensors.

Nengo's builder describes all simulation data as `~nengo.builder.Signal` objects:
base arrays and views (slices, reshapes) onto them. Here each base signal becomes
one tensor. A base that some operator writes is *dynamic*: it carries a leading
batch dimension and is part of the simulation state. A base that is only read is
*constant*: it has no batch dimension and is owned by the module tree (parameters
and buffers), so gradients reach it.

Writes are functional (a new tensor replaces the old one in the value dict), so
autograd sees an ordinary graph and the per-step semantics equal Nengo's in-place
updates as long as operators run in Nengo's dependency order.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING

import numpy as np
import torch
from nengo.builder.signal import is_sparse

from ..utils import torch_dtype

if TYPE_CHECKING:
    from nengo.builder.operator import Operator
    from nengo.builder.signal import Signal


class View:
    """How one signal maps onto its base tensor."""

    __slots__ = ("base", "base_ndim", "shape", "kind", "start", "stop", "index",
                 "same_shape")

    def __init__(self, sig: Signal) -> None:
        base = sig.base
        self.base = base
        # kept as an int: a Signal's ndim reads its numpy initial value, on
        # which torch.compile would guard at every call
        self.base_ndim = base.ndim
        self.shape = tuple(sig.shape)
        self.start = self.stop = self.index = None
        self.same_shape = self.shape == tuple(base.shape)
        if sig.sparse or not sig.is_view:
            self.kind = "full"
            return
        size = int(np.prod(self.shape, dtype=np.int64))
        flat = _element_indices(sig)
        if size == base.size and np.array_equal(flat, np.arange(base.size)):
            self.kind = "full"
            return
        elif size > 0 and np.array_equal(flat, np.arange(flat[0], flat[0] + size)):
            self.kind = "slice"
            self.start, self.stop = int(flat[0]), int(flat[0]) + size
        else:
            self.kind = "index"
            self.index = torch.as_tensor(flat, dtype=torch.long)
        self.same_shape = False


def _element_indices(sig):
    """Flat element indices of a view into its base (row-major)."""
    base_idx = np.arange(sig.base.size, dtype=np.int64)
    strides = tuple(s * base_idx.itemsize for s in sig.elemstrides)
    view = np.lib.stride_tricks.as_strided(
        base_idx[sig.elemoffset :], shape=sig.shape, strides=strides, writeable=False
    )
    return np.ascontiguousarray(view).reshape(-1)


class SignalLayout:
    """Static facts about the signals of a built model: bases, views, batching."""

    def __init__(
        self,
        operators: Iterable[Operator],
        dtype: torch.dtype,
        shared: Iterable[Signal] = (),
    ) -> None:
        self.dtype = dtype
        self.views = {}
        self.dynamic = set()
        # signals written by operators but identical across the batch (time, step)
        self.shared = {sig.base for sig in shared}
        for op in operators:
            for sig in op.all_signals:
                self.add(sig)
            for sig in op.sets + op.incs + op.updates:
                self.dynamic.add(sig.base)

    def add(self, sig: Signal) -> None:
        if sig not in self.views:
            self.views[sig] = View(sig)
            self.views.setdefault(sig.base, View(sig.base))

    @property
    def bases(self) -> list:
        return [sig for sig, view in self.views.items() if sig is view.base]

    def batched(self, base: Signal) -> bool:
        return base in self.dynamic and base not in self.shared

    def initial_value(
        self, base: Signal, device: torch.device | str | None = None
    ) -> torch.Tensor:
        """The unbatched initial tensor of a base signal."""
        value = base.initial_value
        if is_sparse(value):
            value = sparse_data(value)
        value = np.asarray(value)
        kind = value.dtype.kind
        dtype = self.dtype if kind in "fc" else torch_dtype(value.dtype)
        return torch.tensor(value, dtype=dtype, device=device)


def sparse_data(value: object) -> np.ndarray:
    """Nonzero values of a sparse initial value (nengo.SparseMatrix or scipy)."""
    if hasattr(value, "tocoo"):
        return np.asarray(value.tocoo().data)
    return np.asarray(value.data)


def sparse_indices(value: object) -> tuple[np.ndarray, np.ndarray]:
    """(rows, cols) of a sparse initial value, ordered as `sparse_data`."""
    if hasattr(value, "tocoo"):
        coo = value.tocoo()
        return np.asarray(coo.row), np.asarray(coo.col)
    idx = np.asarray(value.indices)
    return idx[:, 0], idx[:, 1]


class SignalValues:
    """The live tensors of one run: read and write signals, views included.

    ``values`` maps each base signal to a tensor, batched (``(B, *shape)``) when
    the layout says so; writes replace its entries. What the steps may ask of
    the run comes with it: ``feeds`` (input node -> data ``(B, n_steps, d)``),
    ``training`` (training behaviour on) and ``step_index`` (the step within
    this run that is being computed, advanced with `at_step`).

    ``zeros`` names bases whose current value stands for zeros (a window's
    increment-only bases, `window.WindowPlan`): the first increment of one is
    taken as its new value instead of being added, so no zeros are summed.
    """

    def __init__(
        self,
        layout: SignalLayout,
        values: dict,
        batch_size: int,
        feeds: dict | None = None,
        training: bool = False,
        step_index: int = 0,
        zeros: Iterable = (),
    ) -> None:
        self.layout = layout
        self.values = values
        self.batch_size = batch_size
        self.feeds = {} if feeds is None else feeds
        self.training = bool(training)
        self.step_index = step_index
        self._zeros = set(zeros)

    def at_step(self, k: int) -> "SignalValues":
        """Make ``k`` the step being computed (indexes ``feeds``); returns self."""
        self.step_index = k
        return self

    def is_batched(self, sig: Signal) -> bool:
        return self.layout.batched(sig.base)

    def with_held(
        self, held: Mapping[Signal, torch.Tensor], n_steps: int, batch_size: int
    ) -> SignalValues:
        """These step-major window values (``n_steps * batch_size`` rows), with
        ``held`` values, the same at every step (``(batch_size, ...)``), repeated
        over the steps as well (`engine.window`'s held inputs)."""
        if not held:
            return self
        values = dict(self.values)
        for base, value in held.items():
            values[base] = value[None].expand((n_steps,) + value.shape).reshape(
                (n_steps * batch_size,) + value.shape[1:])
        return SignalValues(self.layout, values, n_steps * batch_size)

    @staticmethod
    def read_held(
        layout: SignalLayout,
        held: Mapping[Signal, torch.Tensor],
        sig: Signal,
        batch_size: int,
    ) -> torch.Tensor | None:
        """``sig`` at any one step of a window whose ``held`` values are the
        same at every step, ``(batch_size, ...)``: one row per sample, which a
        kernel reads without a copy per step; None where its base is not held."""
        base = layout.views[sig].base
        if base not in held:
            return None
        return SignalValues(layout, {base: held[base]}, batch_size).read(sig)

    def read(self, sig: Signal) -> torch.Tensor:
        view = self.layout.views[sig]
        value = self.values[view.base]
        if view.same_shape or sig.sparse:
            return value
        lead = value.shape[: value.dim() - view.base_ndim]
        if view.kind == "full":
            return value.reshape(lead + view.shape)
        flat = value.reshape(lead + (-1,))
        if view.kind == "slice":
            part = flat[..., view.start : view.stop]
        else:
            part = flat.index_select(-1, view.index.to(flat.device))
        return part.reshape(lead + view.shape)

    def _write(self, sig, value, inc):
        view = self.layout.views[sig]
        base = view.base
        current = self.values[base]
        if value.dtype != current.dtype or value.device != current.device:
            value = value.to(current.device, current.dtype)
        if view.same_shape and value.shape == current.shape:
            # the whole base, already its shape (the common case): no view ops,
            # which would each be an autograd node
            if base in self._zeros:
                self._zeros.discard(base)
                self.values[base] = value
            else:
                self.values[base] = current + value if inc else value
            return
        if value.shape != current.shape or not view.same_shape:
            lead = current.shape[: current.dim() - view.base_ndim]
            value = value.broadcast_to(lead + view.shape)
        zeros = base in self._zeros
        self._zeros.discard(base)
        if view.kind == "full":
            if value.shape != current.shape:
                value = value.reshape(current.shape)
            if inc and not zeros:
                value = current + value
            self.values[base] = value
            return
        flat = current.reshape(lead + (-1,))
        value = value.reshape(lead + (-1,))
        if view.kind == "slice":
            part = flat[..., view.start : view.stop]
            new_part = part + value if inc else value
            flat = torch.cat(
                [flat[..., : view.start], new_part, flat[..., view.stop :]], dim=-1
            )
        else:
            index = view.index.to(flat.device)
            if inc:
                flat = flat.index_add(-1, index, value)
            else:
                flat = flat.index_copy(-1, index, value)
        self.values[base] = flat.reshape(current.shape)

    def set(self, sig: Signal, value: torch.Tensor) -> None:
        self._write(sig, value, inc=False)

    def set_zeros(self, sig: Signal, zeros: torch.Tensor) -> bool:
        """Set all of ``sig``'s base to ``zeros`` and mark it as zeros.

        Until the base is written again, `is_zeros` says so: a product of it
        may be skipped, and its first increment is taken as its new value.
        False (nothing done) where ``sig`` is not the whole base or ``zeros``
        is not the base's current shape (e.g. a window's rows).
        """
        view = self.layout.views[sig]
        current = self.values[view.base]
        if not view.same_shape or zeros.shape != current.shape:
            return False
        if zeros.dtype != current.dtype or zeros.device != current.device:
            return False
        self.values[view.base] = zeros
        self._zeros.add(view.base)
        return True

    def is_zeros(self, sig: Signal) -> bool:
        """Whether ``sig``'s base holds zeros set by `set_zeros` (or given as such)."""
        return self.layout.views[sig].base in self._zeros

    def inc(self, sig: Signal, value: torch.Tensor) -> None:
        self._write(sig, value, inc=True)
