"""Weight-initialisation distributions from deep learning, as Nengo distributions.

``transform=Glorot()`` on a Connection samples a ``(size_out, size_in)`` matrix,
so ``fan_in`` is the number of columns and ``fan_out`` the number of rows.
"""

from __future__ import annotations

import numpy as np
from nengo.dists import Distribution
from nengo.params import EnumParam, NumberParam


class VarianceScaling(Distribution):
    """Samples with variance ``scale / n``, ``n`` set by ``mode`` from the fans.

    Parameters
    ----------
    scale : float
        Variance scale.
    mode : "fan_in" or "fan_out" or "fan_avg"
        Which fan ``n`` is: the input size, the output size, or their mean.
    distribution : "uniform" or "normal"
        Uniform on ``[-limit, limit]`` with ``limit = sqrt(3 * scale / n)``, or a
        normal with standard deviation ``sqrt(scale / n)``.
    """

    scale = NumberParam("scale", low=0)
    mode = EnumParam("mode", values=["fan_in", "fan_out", "fan_avg"])
    distribution = EnumParam("distribution", values=["uniform", "normal"])

    def __init__(
        self, scale: float = 1, mode: str = "fan_avg", distribution: str = "uniform"
    ) -> None:
        super().__init__()
        self.scale = scale
        self.mode = mode
        self.distribution = distribution

    def sample(
        self, n: int, d: int | None = None, rng: np.random.RandomState = np.random
    ) -> np.ndarray:
        shape = self._sample_shape(n, d)
        fan_out, fan_in = (shape[0], shape[1]) if len(shape) > 1 else (shape[0],) * 2
        fans = {"fan_in": fan_in, "fan_out": fan_out, "fan_avg": (fan_in + fan_out) / 2}
        variance = self.scale / max(1.0, fans[self.mode])
        if self.distribution == "uniform":
            limit = np.sqrt(3.0 * variance)
            return rng.uniform(-limit, limit, size=shape)
        return rng.normal(0.0, np.sqrt(variance), size=shape)


class Glorot(VarianceScaling):
    """Glorot (Xavier) initialisation: variance ``2 / (fan_in + fan_out)``."""

    def __init__(self, scale: float = 1, distribution: str = "uniform") -> None:
        super().__init__(scale=scale, mode="fan_avg", distribution=distribution)


class He(VarianceScaling):
    """He initialisation: variance ``2 / fan_in``, for ReLU layers."""

    def __init__(self, scale: float = 2, distribution: str = "normal") -> None:
        super().__init__(scale=scale, mode="fan_in", distribution=distribution)


class TruncatedNormal(Distribution):
    """Normal distribution with values more than ``limit`` from the mean redrawn.

    Samples lie in ``[mean - limit, mean + limit]``: values outside are
    resampled (not clipped) until every value is inside, so the density is the
    normal's, truncated and renormalised.

    Parameters
    ----------
    mean : float
        Mean of the underlying normal.
    stddev : float
        Standard deviation of the underlying normal (the samples' is smaller).
    limit : float, optional
        Largest distance from the mean; ``2 * stddev`` when not given.
    """

    mean = NumberParam("mean")
    stddev = NumberParam("stddev", low=0, low_open=True)
    limit = NumberParam("limit", low=0, low_open=True)

    def __init__(
        self, mean: float = 0, stddev: float = 1, limit: float | None = None
    ) -> None:
        super().__init__()
        self.mean = mean
        self.stddev = stddev
        self.limit = 2 * stddev if limit is None else limit

    def sample(
        self, n: int, d: int | None = None, rng: np.random.RandomState = np.random
    ) -> np.ndarray:
        shape = self._sample_shape(n, d)
        samples = rng.normal(loc=self.mean, scale=self.stddev, size=shape)
        outside = np.abs(samples - self.mean) > self.limit
        while np.any(outside):
            samples[outside] = rng.normal(
                loc=self.mean, scale=self.stddev, size=int(np.sum(outside))
            )
            outside = np.abs(samples - self.mean) > self.limit
        return samples
