"""Merged operators: Nengo's operator merger, with per-object tensors kept.

`merge_operators` runs nengo's `OpMergePass` until it merges nothing more, so
e.g. the 64 ensembles of an EnsembleArray step as one SimNeurons operator on one
concatenated state tensor. The module tree keeps one tensor per original signal
(per Nengo object); `MergedSignals` assembles the merged tensors from them at the
start of a run and splits the state back at the end.
"""

from __future__ import annotations

import operator
from collections.abc import Collection, Iterable, Mapping
from typing import TYPE_CHECKING

import numpy as np
import torch
from nengo.builder.neurons import SimNeurons
from nengo.builder.operator import ElementwiseInc, Operator
from nengo.builder.optimizer import OpMergePass
from nengo.utils.simulator import operator_dependency_graph
from nengo.utils.stdlib import OrderedSet

if TYPE_CHECKING:
    from nengo.builder.signal import Signal

    from .signals import SignalLayout, SignalValues


class _KeptApart(ElementwiseInc):
    """An ElementwiseInc the merger must leave alone (no merger is registered for it)."""


def merge_operators(
    operators: Iterable[Operator], keep_apart: Collection[Signal] = ()
) -> tuple[list[Operator], dict[Signal, Signal]]:
    """``(merged operators, replacements)``: ``replacements[old] = new`` signal.

    ``keep_apart`` holds base signals that must stay their own tensors
    (the trainable parameters). nengo merges ElementwiseIncs whose gains are
    single numbers of equal value into one operator with one gain (a 0-d gain
    becomes one merged 0-d signal, a ``(1,)`` gain the first operator's): right
    for constants, but trainable gains equal only at the start (the four
    ``1/sqrt(2)`` connections of ``nengo.networks.Product``) would then train
    and run as one, and which of them the run reads would depend on the merge
    order, which changes from build to build. Those operators are not merged.
    """
    kept = [
        op
        for op in operators
        if type(op) is ElementwiseInc and op.A.size == 1 and op.A.base in keep_apart
    ]
    for op in kept:
        op.__class__ = _KeptApart
    try:
        return _merge(operators)
    finally:
        for op in kept:
            op.__class__ = ElementwiseInc


def _merge(operators):
    # Neurons with their own random state (Poisson/StochasticSpiking) merge too:
    # nengo's merged operator draws for all of them from its first operator's
    # stream (nengo warns "Extra state has been modified"), and drawing the same
    # numbers as nengo.Simulator needs the same merge.
    merge_pass = OpMergePass(operator_dependency_graph(operators))
    # nengo keeps the candidates in a set, which iterates in the order of the
    # operators' ids: operators whose signals are not views of one base (two
    # separate stochastic Ensembles) then merge in an order that changes from
    # build to build, in nengo.Simulator too, and so does whose random stream
    # the merged operator draws from. The same candidates in build order merge
    # the same way every build; merges ordered by view offsets (an
    # EnsembleArray) stay nengo's.
    merge_pass.might_merge = OrderedSet(merge_pass.dg.forward)
    if any(isinstance(op, SimNeurons) and op.state_extra.get("rng") is not None
           for op in operators):
        _nengo_schedule(merge_pass)
    else:
        _view_first_schedule(merge_pass)
    return list(merge_pass.dg.forward), merge_pass.sig_replacements


def _nengo_schedule(merge_pass: OpMergePass) -> None:
    """nengo's `optimize` schedule: passes over views while they merge; then one
    over operators without views; back to views after any pass that merged (a
    merge makes new views), until a pass without views merges nothing.

    Which stochastic neurons merge decides whose random stream each draws from,
    so models with them take nengo's schedule exactly (another one merged two
    StochasticSpiking ensembles that nengo keeps apart).
    """
    before = after = None
    only_views = True
    while only_views or after < before:
        only_views = before is None or before != after
        before = len(merge_pass.dg.forward)
        merge_pass(only_views)
        after = len(merge_pass.dg.forward)


def _view_first_schedule(merge_pass: OpMergePass) -> None:
    """Passes over views until they merge nothing, then passes without views
    until those merge nothing.

    Models without random draws at run time may merge otherwise than nengo
    (results differ only in summation order): this schedule merges fewer of
    the decoded products of separate ensembles into block-sparse ones, which
    run slower in batches here than the separate products (the `random`
    network of benchmarks/ at batch 64, docs/benchmarks.md).
    """
    only_views = True
    while True:
        before = len(merge_pass.dg.forward)
        merge_pass(only_views)
        if len(merge_pass.dg.forward) == before:
            if not only_views:
                break
            only_views = False


def resolve(sig: Signal, replacements: Mapping[Signal, Signal]) -> Signal:
    """Where ``sig`` ended up after the merges (a view of a merged base, or itself)."""
    while sig in replacements:
        sig = replacements[sig]
    return sig


class MergedSignals:
    """Maps the original base signals (the modules' tensors) onto merged bases."""

    def __init__(
        self,
        originals: Iterable[Signal],
        replacements: Mapping[Signal, Signal],
        layout: SignalLayout,
    ) -> None:
        self.layout = layout
        self.location = {}
        pieces = {}
        for sig in originals:
            target = resolve(sig, replacements)
            layout.add(target)
            self.location[sig] = target
            if target is not sig:
                pieces.setdefault(target.base, []).append(sig)
        self.pieces = {}
        for base, sigs in pieces.items():
            sigs.sort(key=lambda s: self.location[s].elemoffset)
            self.pieces[base] = (sigs, self._contiguous(base, sigs))

    def _contiguous(self, base, sigs):
        """True when the pieces tile the base in order (then assembly is a cat)."""
        offset = 0
        for sig in sigs:
            view = self.layout.views[self.location[sig]]
            if view.kind == "index" or (view.kind == "slice" and view.start != offset):
                return False
            offset += sig.size
        return offset == base.size

    def assemble(
        self, values: Mapping[Signal, torch.Tensor], batch_size: int
    ) -> dict[Signal, torch.Tensor]:
        """Merged-base values from the originals' ``values``.

        A merged base is concatenated only when its pieces changed since it was
        last assembled or remembered (`remember`), as told by `_reuse_key`."""
        moved = self.__dict__.get("_moved")
        if moved is None:  # the originals that are pieces of a merged base
            moved = self.__dict__["_moved"] = frozenset(
                sig for sig, target in self.location.items() if target is not sig
            )
        merged = {sig: value for sig, value in values.items() if sig not in moved}
        tracing = torch.compiler.is_compiling()
        grad = torch.is_grad_enabled()
        kept = self.__dict__.setdefault("_kept", {})
        for base, (sigs, contiguous) in self.pieces.items():
            pieces = list(map(values.__getitem__, sigs))
            key = None if tracing else _reuse_key(pieces, batch_size, grad)
            hit = kept.get(base) if key is not None else None
            # (the merged tensor's version: nothing wrote into it meanwhile)
            if hit is not None and hit[0] == key and hit[2]._version == hit[3]:
                merged[base] = hit[2]
                continue
            merged[base] = self._assemble_base(base, sigs, contiguous, pieces, batch_size)
            if key is not None:
                self._keep(base, key, pieces, merged[base])
        return merged

    def _assemble_base(self, base, sigs, contiguous, pieces, batch_size):
        batched = self.layout.batched(base)
        flats = []
        for sig, value in zip(sigs, pieces):
            if batched and value.dim() == sig.ndim:
                value = value.expand((batch_size,) + value.shape)
            flats.append(value.reshape(value.shape[: value.dim() - sig.ndim] + (-1,)))
        lead = (batch_size,) if batched else ()
        if contiguous:
            flat = torch.cat(flats, dim=-1)
        else:
            flat = self._scatter(base, sigs, flats, lead)
        return flat.reshape(lead + tuple(base.shape))

    def remember(
        self,
        values: Mapping[Signal, torch.Tensor],
        merged: Mapping[Signal, torch.Tensor],
        batch_size: int,
    ) -> None:
        """Let `assemble` of exactly these ``values`` return ``merged``.

        For runs without autograd, whose results become the next run's start:
        the originals are then views of ``merged``, and assembling them again
        would only copy.
        """
        for base, (sigs, _) in self.pieces.items():
            pieces = list(map(values.__getitem__, sigs))
            key = _reuse_key(pieces, batch_size, grad=False)
            if key is not None:
                value = merged[base]
                self._keep(base, key, pieces, value.detach() if value.requires_grad else value)

    def _keep(self, base, key, pieces, value):
        # the pieces are kept so that their ids cannot be reused meanwhile
        self.__dict__.setdefault("_kept", {})[base] = (key, pieces, value, value._version)

    def _scatter(self, base, sigs, flats, lead):
        first = flats[0]
        initial = self.layout.initial_value(base, device=first.device).reshape(-1)
        flat = initial.to(first.dtype).expand(lead + initial.shape).clone()
        for sig, value in zip(sigs, flats):
            view = self.layout.views[self.location[sig]]
            index = _flat_index(view).to(flat.device)
            flat = flat.index_copy(-1, index, value)
        return flat

    def split(
        self, sv: SignalValues, originals: Iterable[Signal]
    ) -> dict[Signal, torch.Tensor]:
        """The originals' values read back from merged values ``sv``."""
        out = {}
        rows, rest = self._split_plan(originals)
        for base, sigs, sizes, shapes, ndim, vectors in rows:
            # one split per merged base, not one read per original
            value = sv.values[base]
            lead = value.shape[: value.dim() - ndim]
            parts = value.reshape(lead + (-1,)).split(sizes, dim=-1)
            if vectors:  # 1-D pieces: the parts, (*lead, n), have their shapes
                out.update(zip(sigs, parts))
                continue
            for sig, part, shape in zip(sigs, parts, shapes):
                shape = lead + shape
                out[sig] = part if part.shape == shape else part.reshape(shape)
        for sig, location in rest:
            out[sig] = sv.read(location)
        return out

    def _split_plan(self, originals):
        """`split`'s bases read by one split each, and the originals read alone.

        Made once for each collection of originals asked for (the modules'
        dynamic signals, at every run): Nengo's signal properties cost more
        than the split.
        """
        plans = self.__dict__.setdefault("_split_plans", {})
        plan = plans.get(id(originals))
        if plan is None or plan[0] is not originals:
            rows, covered = [], set()
            for base, (sigs, contiguous) in self.pieces.items():
                if contiguous and all(sig in originals for sig in sigs):
                    shapes = [tuple(s.shape) for s in sigs]
                    rows.append((base, sigs, [s.size for s in sigs], shapes, base.ndim,
                                 all(len(shape) == 1 for shape in shapes)))
                    covered.update(sigs)
            rest = [(sig, self.location.get(sig, sig)) for sig in originals
                    if sig not in covered]
            plan = plans[id(originals)] = (originals, rows, rest)
        return plan[1], plan[2]


def _reuse_key(pieces, batch_size, grad):
    """What identifies a merged base assembled from ``pieces``, or None where
    it must be assembled anew: with autograd on, a base with a trainable piece
    (each run's graph needs its own concatenation), and any base with an
    inference tensor (no version counter).

    Tensor ids, versions (an in-place change) and data pointers (a change
    through ``.data`` escapes the version, as it escapes autograd). Training
    resets to the same initial state tensors before every minibatch
    (`Engine.initial_state`), so their bases (the state of hundreds of small
    ensembles in nengo.networks) are assembled once, not per minibatch.
    """
    if grad and any(map(_REQUIRES_GRAD, pieces)):
        return None
    try:
        versions = tuple(map(_VERSION, pieces))
    except RuntimeError:  # an inference tensor: it has no version counter
        return None
    return batch_size, tuple(map(id, pieces)), versions, tuple(map(_DATA_PTR, pieces))


# (C-level attribute reads: this key is made for every merged base at every run)
_REQUIRES_GRAD = operator.attrgetter("requires_grad")
_VERSION = operator.attrgetter("_version")
_DATA_PTR = torch.Tensor.data_ptr


def _flat_index(view):
    if view.kind == "index":
        return view.index
    start = view.start or 0
    size = int(np.prod(view.shape, dtype=np.int64))
    return torch.arange(start, start + size)
