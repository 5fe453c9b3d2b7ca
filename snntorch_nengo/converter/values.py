"""Symbolic layer outputs: what a torch tensor becomes while a model is converted.

A torch layer's output is kept as a `Value`: a sum of `Term` s (a Nengo object,
optionally indexed, seen through a Nengo transform that is not built yet) plus
constant bias pieces, with the tensor's per-sample shape. Linear layers (Linear,
Conv, pooling, folded BatchNorm) only change a Value's transform and biases; the
Nengo objects appear where something needs them: an Ensemble where an activation
is, a passthrough Node where sums or several readers need a single object. This is
how ``Linear -> ReLU`` becomes one Connection into one Ensemble, as in NengoDL.

Flattened orders are torch's (channels first, C order), so reshapes and flattens
change only the shape.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
from nengo.transforms import Convolution, Dense, NoTransform, Sparse


class NotConvertible(Exception):
    """Raised by a layer's build function: the layer cannot become Nengo objects.

    The converter then falls back to a TensorNode (``allow_fallback=True``) or
    raises an error that includes this reason.
    """


class Term:
    """``transform(obj[idx])``: one Nengo object's output, indexed and transformed.

    Parameters
    ----------
    obj : nengo object
        A Node, an Ensemble's ``neurons``, or a TensorNode.
    idx : array of int, optional
        Which elements of ``obj``'s output (None: all of them).
    transform : nengo transform, optional
        Applied on the connection out of ``obj`` (None: identity).
    origin : torch.fx.Node, optional
        The layer whose weights ``transform`` holds (its connection is recorded in
        `.Converter.layers`).
    trainable : bool
        Whether the connection that carries ``transform`` trains.
    """

    def __init__(
        self,
        obj: Any,
        idx: Sequence[int] | np.ndarray | None = None,
        transform: Any = None,
        origin: Any = None,
        trainable: bool = True,
    ) -> None:
        self.obj = obj
        self.idx = None if idx is None else np.asarray(idx, dtype=np.int64)
        self.transform = transform
        self.origin = origin
        self.trainable = trainable

    @property
    def source(self) -> Any:
        """The connection's ``pre``: ``obj`` or ``obj[idx]``."""
        if self.idx is None:
            return self.obj
        return self.obj[list(self.idx)]

    @property
    def identity(self) -> bool:
        return self.transform is None


class Bias:
    """A constant added to a Value: per element, or per channel (broadcast).

    ``channel=True``: ``values`` has one entry per channel and element ``i`` of
    the flattened ``(C, *spatial)`` output gets ``values[i // spatial_size]``
    (a conv layer's bias, trainable once per channel). ``trainable=False`` for
    constants of the model's code (``x + 1``), which torch does not train either.
    """

    def __init__(self, values: Any, channel: bool = False, trainable: bool = True) -> None:
        self.values = np.asarray(values, dtype=np.float64).ravel()
        self.channel = channel
        self.trainable = trainable

    def full(self, size: int) -> np.ndarray:
        """The bias for every element (length ``size``)."""
        if not self.channel:
            return self.values
        return np.repeat(self.values, size // len(self.values))

    def scaled(self, scale: Scale, size: int) -> Bias:
        """This bias multiplied elementwise by ``scale`` (a `Scale`)."""
        factors = scale.per_channel(len(self.values), size) if self.channel else None
        if factors is not None:
            return Bias(self.values * factors, True, self.trainable)
        return Bias(self.full(size) * scale.full(size), trainable=self.trainable)


class Scale:
    """An elementwise factor: a scalar, or a vector over the flattened output."""

    def __init__(self, values: Any) -> None:
        self.values = np.asarray(values, dtype=np.float64)

    def full(self, size: int) -> np.ndarray:
        return np.broadcast_to(self.values.ravel(), (size,)) if self.values.size == 1 \
            else self.values.ravel()

    def per_channel(self, n_channels: int, size: int) -> np.ndarray | None:
        """One factor per channel if the factor is constant within channels."""
        full = self.full(size).reshape(n_channels, -1)
        if np.all(full == full[:, :1]):
            return full[:, 0].copy()
        return None


class Value:
    """A layer output: ``sum(terms) + sum(biases)`` with per-sample ``shape``."""

    def __init__(
        self,
        terms: Iterable[Term],
        biases: Iterable[Bias] = (),
        shape: Sequence[int] | None = None,
    ) -> None:
        self.terms = list(terms)
        self.biases = list(biases)
        self.shape = tuple(int(d) for d in shape)

    @property
    def size(self) -> int:
        return int(np.prod(self.shape))

    @property
    def plain(self) -> bool:
        """A single object's output, untransformed and without bias."""
        return len(self.terms) == 1 and self.terms[0].identity and not self.biases

    def reshaped(self, shape: Sequence[int]) -> Value:
        """The same elements in another shape (flattened order unchanged)."""
        shape = tuple(int(d) for d in shape)
        if int(np.prod(shape)) != self.size:
            raise NotConvertible(f"cannot reshape {self.shape} to {shape}")
        return Value(self.terms, self.biases, shape)

    def __repr__(self):
        return (
            f"Value(shape={self.shape}, terms={len(self.terms)}, "
            f"biases={len(self.biases)})"
        )


def scale_transform(
    transform: Any, scale: Scale, size_out: int
) -> Dense | Convolution | Sparse | None:
    """``transform`` followed by the elementwise ``scale``; None if not expressible.

    Only the transform kinds the converter makes are handled: Dense (matrix,
    diagonal or scalar), Convolution (a factor per output channel), Sparse.
    """
    if isinstance(transform, Dense):
        init = np.asarray(transform.init, dtype=np.float64)
        full = scale.full(size_out)
        if init.ndim == 2:
            return Dense(transform.shape, init=init * full[:, None])
        return Dense(transform.shape, init=np.broadcast_to(init, (size_out,)) * full)
    if isinstance(transform, Convolution):
        factors = scale.per_channel(transform.n_filters, size_out)
        if factors is None:
            return None
        init = np.asarray(transform.init, dtype=np.float64) * factors
        return Convolution(
            transform.n_filters,
            transform.input_shape.shape,
            kernel_size=transform.kernel_size,
            strides=transform.strides,
            padding=transform.padding,
            channels_last=transform.channels_last,
            init=init,
            groups=transform.groups,
        )
    if isinstance(transform, Sparse):
        indices = np.asarray(transform.indices)
        init = np.asarray(transform.init, dtype=np.float64)
        full = scale.full(size_out)
        return Sparse(transform.shape, indices=indices, init=init * full[indices[:, 0]])
    return None


def is_transform(transform: Any) -> bool:
    return transform is None or isinstance(transform, NoTransform)
