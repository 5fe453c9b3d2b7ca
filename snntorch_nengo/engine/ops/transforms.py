"""Convolution operators (ConvInc, ConvTransposeInc) in torch.

Nengo's reference (``nengo.builder.transforms.GeneralConvInc``) computes, per
spatial axis with input size ``n``, kernel size ``k``, stride ``s`` and output
size ``m`` (``ceil(n / s)`` for "same", ``ceil((n - k + 1) / s)`` for "valid"):

* ``ConvInc``: a correlation of the input zero-padded by ``(floor(p / 2),
  ceil(p / 2))`` with ``p = max((m - 1) * s + k - n, 0)`` ("same") or 0 ("valid");
* ``ConvTransposeInc``: the exact transpose (adjoint) of that forward
  convolution, taken for the transform's ``output_shape`` as the forward input.

Kernels are stored as ``kernel_size + (in_channels // groups, n_filters)``. Here
the same maths runs with ``torch.nn.functional.conv{1,2,3}d`` and
``conv_transpose{1,2,3}d`` on ``(batch, channels, *spatial)`` tensors; the
asymmetric padding is applied with ``F.pad`` (negative pads crop).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from nengo.builder.transforms import ConvInc, ConvTransposeInc
from nengo.exceptions import BuildError

from . import FOLDED, OpRegistry

if TYPE_CHECKING:
    from ..signals import SignalValues
    from . import StepContext

_CONV = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}
_CONV_T = {1: F.conv_transpose1d, 2: F.conv_transpose2d, 3: F.conv_transpose3d}


def _forward_pads(conv, in_spatial, out_spatial):
    """(before, after) zero padding per spatial axis of the forward convolution."""
    pads = []
    for n, m, k, s in zip(in_spatial, out_spatial, conv.kernel_size, conv.strides):
        p = max((m - 1) * s + k - n, 0) if conv.padding == "same" else 0
        pads.append((p // 2, p - p // 2))
    return pads


def _to_channels_first(x, shape, channels_last):
    """``(B, size)`` flat values to ``(B, C, *spatial)``."""
    x = x.reshape((x.shape[0],) + tuple(shape))
    if channels_last:
        x = x.movedim(-1, 1)
    return x


def _from_channels_first(y, channels_last):
    """``(B, C, *spatial)`` to flat ``(B, size)`` in the signal's layout."""
    if channels_last:
        y = y.movedim(1, -1)
    return y.reshape(y.shape[0], -1)


def _torch_weights(w, dims, transpose):
    """Nengo kernel ``(*k, a, b)`` (``a`` input channels per group, ``b`` filters)
    as a torch weight: ``(b, a, *k)`` for conv, ``(a, b, *k)`` for conv
    transpose."""
    lead = w.dim() - dims - 2  # 1 if batched
    chans = (lead + dims, lead + dims + 1) if transpose else (
        lead + dims + 1, lead + dims)
    return w.permute(tuple(range(lead)) + chans + tuple(range(lead, lead + dims)))


def _check(op):
    conv = op.conv
    dims = conv.dimensions
    if dims not in _CONV:
        raise BuildError(f"{op}: {dims}-D convolution is not supported")
    if tuple(op.W.shape) != tuple(conv.kernel_shape):
        raise BuildError(
            f"{op}: kernel shape {op.W.shape} does not match {conv.kernel_shape}"
        )
    return conv, dims


def _make_general(op, ctx, apply):
    """Shared batching logic: ``apply(x, w)`` with x ``(B, C, *spatial)``."""
    conv = op.conv
    x_batched, w_batched = ctx.batched(op.X), ctx.batched(op.W)
    in_shape = tuple(conv.input_shape.shape)
    channels_last = conv.channels_last

    def step_conv(sv):
        x, w = sv.read(op.X), sv.read(op.W)
        if not x_batched:
            x = x.reshape(1, -1)
        x = _to_channels_first(x, in_shape, channels_last)
        if w.dtype != x.dtype:
            w = w.to(x.dtype)
        if w_batched:
            if x.shape[0] != w.shape[0]:
                x = x.expand((w.shape[0],) + tuple(x.shape[1:]))
            y = torch.cat([apply(x[b : b + 1], w[b]) for b in range(w.shape[0])])
        else:
            y = apply(x, w)
        y = _from_channels_first(y, channels_last)
        if x_batched or w_batched:
            sv.inc(op.Y, y.reshape((y.shape[0],) + tuple(op.Y.shape)))
        else:
            sv.inc(op.Y, y[0].reshape(op.Y.shape))

    return step_conv


@OpRegistry.declare(ConvInc, window=FOLDED)
def make_conv_inc(op: ConvInc, ctx: StepContext) -> Callable[[SignalValues], None]:
    conv, dims = _check(op)
    fn = _CONV[dims]
    in_spatial = conv.input_shape.spatial_shape
    out_spatial = conv.output_shape.spatial_shape
    pads = _forward_pads(conv, in_spatial, out_spatial)
    # F.pad lists pads from the last axis backwards
    flat_pads = tuple(p for pair in reversed(pads) for p in pair)
    needs_pad = any(flat_pads)
    strides = tuple(conv.strides)
    groups = conv.groups

    def apply(x, w):
        if needs_pad:
            x = F.pad(x, flat_pads)
        return fn(x, _torch_weights(w, dims, False), stride=strides, groups=groups)

    return _make_general(op, ctx, apply)


@OpRegistry.declare(ConvTransposeInc, window=FOLDED)
def make_conv_transpose_inc(
    op: ConvTransposeInc, ctx: StepContext
) -> Callable[[SignalValues], None]:
    conv, dims = _check(op)
    if conv.groups != 1:
        raise BuildError(f"{op}: grouped transposed convolution is not supported")
    fn = _CONV_T[dims]
    # the forward convolution maps output_shape -> input_shape
    in_spatial = conv.input_shape.spatial_shape
    out_spatial = conv.output_shape.spatial_shape
    pads = _forward_pads(conv, out_spatial, in_spatial)
    strides = tuple(conv.strides)
    # unpadded transpose has size (m - 1) * s + k; crop the forward padding
    # from the front and pad/crop the back to the requested output size
    flat_pads = []
    for (before, _), n, m, k, s in reversed(
        list(zip(pads, out_spatial, in_spatial, conv.kernel_size, strides))
    ):
        full = (m - 1) * s + k
        flat_pads += [-before, n + before - full]
    flat_pads = tuple(flat_pads)
    needs_pad = any(flat_pads)

    def apply(x, w):
        y = fn(x, _torch_weights(w, dims, True), stride=strides)
        return F.pad(y, flat_pads) if needs_pad else y

    return _make_general(op, ctx, apply)

