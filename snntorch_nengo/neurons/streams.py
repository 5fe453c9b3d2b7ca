"""One random stream per batch row for neuron types that draw random numbers.

Nengo gives a stochastic neuron type (PoissonSpiking, StochasticSpiking) one
``RandomState`` and draws ``n`` numbers from it per step. Drawing ``(B, n)``
from it would give row 0 the reference's numbers only on the first step (the
next step's row 0 would start at draw ``B * n``), so each row draws from its own
state: row 0 from nengo's, rows 1.. from states seeded from the simulator's
batch stream (as numpy processes' rows are, `engine.ops.processes`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Union

import numpy as np
import torch


class RowStreams:
    """The ``RandomState`` methods neuron steps use, split by batch row."""

    def __init__(self, rngs: Iterable[np.random.RandomState]) -> None:
        self.rngs = list(rngs)

    def __len__(self):
        return len(self.rngs)

    def row(self, b: int) -> np.random.RandomState:
        return self.rngs[b]

    def random_sample(self, size: int | tuple[int, ...] | None = None) -> np.ndarray:
        size = () if size is None else tuple(np.atleast_1d(size))
        if not size or size[0] != len(self.rngs):
            raise ValueError(f"expected draws of shape (B={len(self.rngs)}, ...), got {size}")
        return np.stack([rng.random_sample(size[1:]) for rng in self.rngs])

    def poisson(
        self, lam: np.ndarray, size: int | tuple[int, ...] | None = None
    ) -> np.ndarray:
        # the steps pass the row-major (B * n,) rates: row b is the b-th block
        lam = np.asarray(lam)
        rows = np.split(lam.reshape(-1), len(self.rngs))
        counts = [rng.poisson(r, r.size) for rng, r in zip(self.rngs, rows)]
        return np.concatenate(counts).reshape(lam.shape)


def row_rng(
    rng: np.random.RandomState | RowStreams | None, b: int
) -> np.random.RandomState | RowStreams | None:
    """The stream of batch row ``b`` (``rng`` itself when it is not split)."""
    return rng.row(b) if isinstance(rng, RowStreams) else rng


# the types of a neuron step, ``step(neuron_type, dt, J, state, rng)`` (every
# step of `neurons.specs`): its state by name, its random stream(s), its result
NeuronState = Mapping[str, torch.Tensor]
NeuronRng = Union[np.random.RandomState, RowStreams, None]
NeuronStepResult = tuple[torch.Tensor, dict[str, torch.Tensor]]
