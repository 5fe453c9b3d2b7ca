"""Metrics: torchmetrics objects, or names resolved to them."""

from __future__ import annotations

import copy

import torch
import torchmetrics
from nengo.exceptions import ValidationError

from .losses import flat_targets


class LastStepAccuracy(torchmetrics.Metric):
    """Classification accuracy of the last time step's output.

    Predictions are ``(batch, n_steps, classes)``; targets are class indices
    ``(batch, n_steps, 1)`` or one-hot ``(batch, n_steps, classes)``.
    """

    higher_is_better = True
    full_state_update = False

    def __init__(self) -> None:
        super().__init__()
        self.add_state("correct", default=torch.tensor(0.0), dist_reduce_fx="sum")
        self.add_state("total", default=torch.tensor(0.0), dist_reduce_fx="sum")

    def update(self, prediction: torch.Tensor, target: torch.Tensor) -> None:
        logits, labels = flat_targets(prediction[:, -1:], target[:, -1:])
        predicted = logits.argmax(dim=-1)
        if labels.dim() > 1:
            labels = labels.argmax(dim=-1)  # one-hot
        self.correct += (predicted == labels).sum().to(self.correct.dtype)
        self.total += labels.numel()

    def compute(self) -> torch.Tensor:
        return self.correct / self.total.clamp(min=1)


METRICS = {
    "accuracy": LastStepAccuracy,
    "mse": torchmetrics.MeanSquaredError,
    "mae": torchmetrics.MeanAbsoluteError,
}


class FlatMetric(torchmetrics.Metric):
    """A torchmetrics object on NengoDL-shaped ``(batch, n_steps, d)`` tensors.

    Batch and time become one sample axis, and a class-index target
    ``(batch, n_steps, 1)`` beside ``d > 1`` predictions becomes integer labels
    ``(N,)`` (`.losses.flat_targets`), the shapes torchmetrics' classification
    and regression metrics expect.
    """

    full_state_update = False

    def __init__(self, metric: torchmetrics.Metric) -> None:
        super().__init__()
        self.metric = metric

    @property
    def higher_is_better(self) -> bool | None:
        return self.metric.higher_is_better

    def update(self, prediction: torch.Tensor, target: torch.Tensor) -> None:
        self.metric.update(*flat_targets(prediction, target))

    def forward(self, prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        # the wrapped metric keeps the state; Metric.forward would reset this
        # wrapper (and with it the wrapped metric's running totals)
        return self.metric(*flat_targets(prediction, target))

    def compute(self) -> torch.Tensor:
        return self.metric.compute()

    def reset(self) -> None:
        super().reset()
        self.metric.reset()


def resolve_metric(
    metric: str | torchmetrics.Metric, where: str = "metrics"
) -> tuple[str, torchmetrics.Metric]:
    """A fresh `torchmetrics.Metric` from a name or a metric object; its name."""
    if isinstance(metric, str):
        if metric not in METRICS:
            raise ValidationError(
                f"unknown metric '{metric}'; names are {sorted(METRICS)}", attr=where
            )
        made = METRICS[metric]()
        if not isinstance(made, LastStepAccuracy):
            made = FlatMetric(made)
        return metric, made
    if isinstance(metric, torchmetrics.Metric):
        name = _snake(type(metric).__name__)
        return name, FlatMetric(copy.deepcopy(metric))
    raise ValidationError(
        f"a metric must be a name or a torchmetrics.Metric, got {metric!r}", attr=where
    )


def _snake(name):
    out = []
    for i, c in enumerate(name):
        if c.isupper() and i and not name[i - 1].isupper():
            out.append("_")
        out.append(c.lower())
    return "".join(out)
