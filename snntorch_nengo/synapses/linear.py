"""Torch steps for ``nengo.LinearFilter`` (all of nengo's Step variants) and
``nengo.synapses.Triangle``.

A step has the signature ``y, new_state = step(x, state)`` where ``x`` is
``(B, *shape)`` and ``state`` holds nengo's state (``make_state``) with a
leading batch dimension. Inputs are never modified.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable, NamedTuple

import numpy as np
import torch
from nengo.synapses import LinearFilter, Triangle

if TYPE_CHECKING:
    from nengo.processes import Process


class _Coefficients:
    """Numpy arrays converted to tensors lazily, once per (dtype, device)."""

    def __init__(self, **arrays):
        self.arrays = arrays
        self.cache = {}

    def get(self, like):
        key = (like.dtype, like.device)
        if key not in self.cache:
            self.cache[key] = {
                k: torch.as_tensor(v, dtype=like.dtype, device=like.device)
                for k, v in self.arrays.items()
            }
        return self.cache[key]


def _state_dot(M, X):
    """``M @ X`` along dim 1 of ``X`` (B, n_states, *shape)."""
    return torch.tensordot(X, M, dims=([1], [1])).movedim(-1, 1)


def _column(v, x):
    """Reshape a (n_states,) vector to broadcast against (B, n_states, *shape)."""
    return v.reshape((1, -1) + (1,) * (x.dim() - 1))


def linear_filter_step(
    synapse: LinearFilter, dt: float
) -> Callable[[torch.Tensor, dict], tuple[torch.Tensor, dict]]:
    """Step for a LinearFilter, choosing the same variant as nengo's make_step."""
    A, B, C, D = synapse._get_ss(dt)
    if A.size == 0:  # NoX: passthrough only
        d = D.item()

        def step_nox(x, state):
            return d * x, dict(state)

        return step_nox

    if len(A) == 1 and (D == 0).all():  # OneX (and OneXScalar)
        a, b = A.item(), C.item() * B.item()

        def step_onex(x, state):
            X = state["X"] * a + b * x.unsqueeze(1)
            return X[:, 0], {"X": X}

        return step_onex

    coefs = _Coefficients(A=A, B=np.ravel(B), C=np.ravel(C))
    d = D.item()

    if (D == 0).all():  # NoD: x[t] = A x[t-1] + B u[t]; y[t] = C x[t]

        def step_nod(x, state):
            c = coefs.get(x)
            X = _state_dot(c["A"], state["X"]) + _column(c["B"], x) * x.unsqueeze(1)
            return _state_dot(c["C"][None], X)[:, 0], {"X": X}

        return step_nod

    def step_general(x, state):  # y[t] = C x[t] + D u[t]; x[t+1] = A x[t] + B u[t]
        c = coefs.get(x)
        X = state["X"]
        y = _state_dot(c["C"][None], X)[:, 0] + d * x
        X = _state_dot(c["A"], X) + _column(c["B"], x) * x.unsqueeze(1)
        return y, {"X": X}

    return step_general


class ScanForm(NamedTuple):
    """A LinearFilter's step as the coefficients of a scan over time steps
    (`kernels.reference.linear_filter_scan`): ``A`` (``S * S``, row-major),
    ``B``, ``C`` (``S`` each), ``D``, and whether the output comes before the
    state update (``general``: nengo's General step) or after it (OneX, NoD).
    ``S = 0`` (nengo's NoX) is a passthrough ``y = D u``.
    """

    A: list
    B: list
    C: list
    D: float
    general: bool

    @property
    def n_states(self) -> int:
        return len(self.B)


def linear_filter_scan_form(synapse: LinearFilter, dt: float) -> ScanForm:
    """``synapse``'s step at ``dt`` as a `ScanForm`, the variant nengo's
    make_step (and `linear_filter_step`) picks, with the same state: OneX keeps
    the output itself (its ``b`` is ``C * B``), the others nengo's ``X``."""
    A, B, C, D = synapse._get_ss(dt)
    if A.size == 0:  # NoX
        return ScanForm([], [], [], float(D.item()), False)
    if len(A) == 1 and (D == 0).all():  # OneX
        return ScanForm([float(A.item())], [float(C.item() * B.item())], [1.0], 0.0, False)
    floats = lambda m: [float(v) for v in np.ravel(m)]  # noqa: E731
    if (D == 0).all():  # NoD
        return ScanForm(floats(A), floats(B), floats(C), 0.0, False)
    return ScanForm(floats(A), floats(B), floats(C), float(D.item()), True)


def triangle_step(
    synapse: Triangle, dt: float
) -> Callable[[torch.Tensor, dict], tuple[torch.Tensor, dict]]:
    """Step for nengo's Triangle FIR filter (minimal-multiply form)."""
    n_taps, n0, ndiff = synapse._get_coefficients(dt)
    n0, ndiff = float(n0), float(ndiff)

    def step_triangle(x, state):
        X, Xi = state["X"], state["Xi"]
        Y = state["Y"] + n0 * x
        Y = Y - _tap_sum(X)
        Xi = torch.remainder(Xi + 1, n_taps)
        taps = torch.arange(n_taps, device=x.device)
        write = taps[None, :] == Xi[:, :1].to(torch.long)  # (B, n_taps)
        write = write.reshape(write.shape + (1,) * (x.dim() - 1))
        X = torch.where(write, (ndiff * x).unsqueeze(1), X)
        return Y, {"Y": Y, "X": X, "Xi": Xi}

    return step_triangle


def _tap_sum(X: torch.Tensor) -> torch.Tensor:
    """``X.sum(dim=1)`` over the taps of ``X`` ``(batch, taps, *shape)``, added
    in the order numpy's ``X.sum(axis=0)`` adds nengo's ``(taps, *shape)``
    state, so that float64 results on the CPU equal the reference's bits (the
    order of torch's own reduction differs by an ulp now and then, which
    neurons such as Izhikevich's amplify to a different spike).

    numpy adds a one-element signal's taps pairwise (`_pairwise_sum`), a
    longer signal's one after the other (the reduction runs over the outer
    axis); ``cumsum`` adds one after the other on the CPU.
    """
    if X[0, 0].numel() == 1:
        return _pairwise_sum(X)
    return X.cumsum(dim=1)[:, -1]


def _pairwise_sum(X: torch.Tensor) -> torch.Tensor:
    """numpy's pairwise summation over dim 1: below 8 terms one after the
    other; up to 128 in 8 interleaved partial sums, added as a tree, then the
    rest one by one; longer halves (at a multiple of 8) summed apart."""
    n = X.shape[1]
    if n < 8:
        return X.cumsum(dim=1)[:, -1]
    if n > 128:
        half = n // 2
        half -= half % 8
        return _pairwise_sum(X[:, :half]) + _pairwise_sum(X[:, half:])
    blocks = n - n % 8
    lanes = X[:, :blocks].reshape((X.shape[0], blocks // 8, 8) + X.shape[2:])
    r = lanes.cumsum(dim=1)[:, -1]  # r[j] = x[j] + x[j + 8] + ..., in order
    total = ((r[:, 0] + r[:, 1]) + (r[:, 2] + r[:, 3])) + (
        (r[:, 4] + r[:, 5]) + (r[:, 6] + r[:, 7]))
    for i in range(blocks, n):
        total = total + X[:, i]
    return total


def is_native_synapse(process: Process) -> bool:
    """Whether ``process`` has a native torch step (see :func:`synapse_step`)."""
    if isinstance(process, LinearFilter):
        return type(process).make_step is LinearFilter.make_step
    if isinstance(process, Triangle):
        return type(process).make_step is Triangle.make_step
    return False


def synapse_step(
    synapse: Process, dt: float
) -> Callable[[torch.Tensor, dict], tuple[torch.Tensor, dict]]:
    """Return ``step(x, state) -> (y, new_state)`` for ``synapse`` at ``dt``.

    Raises ``TypeError`` for processes without a native step (check first with
    :func:`is_native_synapse`).
    """
    if not is_native_synapse(synapse):
        raise TypeError(f"No native torch step for synapse {synapse!r}")
    if isinstance(synapse, LinearFilter):
        return linear_filter_step(synapse, dt)
    return triangle_step(synapse, dt)

