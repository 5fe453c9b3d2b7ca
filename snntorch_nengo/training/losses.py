"""Losses: torch's argument order ``loss(prediction, target)``, by name or callable."""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from nengo.exceptions import ValidationError


def nan_mse(prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean squared error over the targets that are not NaN (NaN means "no target")."""
    mask = ~torch.isnan(target)
    if not mask.any():
        return prediction.sum() * 0.0
    return F.mse_loss(prediction[mask], target[mask])


def flat_targets(
    prediction: torch.Tensor, target: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """NengoDL-shaped ``(batch, n_steps, d)`` pairs as torch's classification shapes.

    The one place that reads target shapes for classification (cross entropy,
    accuracy, torchmetrics objects): batch and time are flattened into one sample
    axis, giving predictions ``(N, d)``; targets of the prediction's shape become
    ``(N, d)`` (one-hot, probabilities, regression values), and targets with one
    value per sample (``(batch, n_steps, 1)``, ``(batch, n_steps)``, ``(batch,)``)
    when the prediction has more features are class indices ``(N,)`` as integers.
    """
    features = prediction.shape[-1] if prediction.dim() else 1
    flat = prediction.reshape(-1, features)
    if target.shape == prediction.shape:
        return flat, target.reshape(flat.shape)
    if target.numel() == flat.shape[0] and features > 1:
        indices = target.reshape(-1)
        if indices.is_floating_point():
            indices = indices.round()
        return flat, indices.long()
    raise ValidationError(
        f"targets of shape {tuple(target.shape)} fit neither the predictions' shape "
        f"{tuple(prediction.shape)} nor one class index per sample and step",
        attr="targets",
    )


def _cross_entropy(prediction, target):
    """Cross entropy on the logits ``(batch, n_steps, classes)``.

    Targets are class indices ``(batch, n_steps, 1)`` or ``(batch,)``, or one-hot /
    probabilities with the prediction's shape (see `flat_targets`).
    """
    return F.cross_entropy(*flat_targets(prediction, target))


class Regularize(torch.nn.Module):
    """A loss on the output alone: ``weight * mean(|x| ** order)``, target ignored.

    Use it with a probe on parameters or activities to regularize them
    (``loss={probe: Regularize(order=2, weight=1e-3)}``; pass any target array).
    """

    def __init__(
        self, order: float = 2, axis: int | None = None, weight: float = 1.0
    ) -> None:
        super().__init__()
        self.order = order
        self.axis = axis
        self.weight = weight

    def forward(
        self, prediction: torch.Tensor, target: torch.Tensor | None = None
    ) -> torch.Tensor:
        norm = prediction.abs().pow(self.order)
        value = norm.mean() if self.axis is None else norm.sum(self.axis).mean()
        return self.weight * value

    def extra_repr(self) -> str:
        return f"order={self.order}, axis={self.axis}, weight={self.weight}"


class ClassAxisLast(torch.nn.Module):
    """torch's class-index losses on NengoDL's shapes, the class axis last.

    ``torch.nn.CrossEntropyLoss()`` (or ``NLLLoss``, ``F.cross_entropy``,
    ``F.nll_loss``) reads axis 1 as the classes; NengoDL's predictions are
    ``(batch, n_steps, classes)`` with targets ``(batch, n_steps, 1)`` class
    indices (its sparse categorical cross entropy) or one-hot ``(batch, n_steps,
    classes)``. `resolve_loss` wraps those losses in this, which flattens batch
    and time (`flat_targets`) and calls the loss unchanged (its weights,
    ``ignore_index``, ``label_smoothing`` and reduction hold).
    """

    def __init__(self, loss: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]) -> None:
        super().__init__()
        self.loss = loss

    def forward(self, prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return self.loss(*flat_targets(prediction, target))

    def extra_repr(self) -> str:
        return "" if isinstance(self.loss, torch.nn.Module) else repr(self.loss)


_CLASS_INDEX_LOSSES = (torch.nn.CrossEntropyLoss, torch.nn.NLLLoss)
_CLASS_INDEX_FUNCTIONS = (F.cross_entropy, F.nll_loss)


def takes_class_indices(loss: Callable) -> bool:
    """Whether a resolved loss accepts ``(batch, n_steps, 1)`` class-index targets."""
    return loss is _cross_entropy or isinstance(loss, ClassAxisLast)


LOSSES = {
    "mse": F.mse_loss,
    "mean_squared_error": F.mse_loss,
    "mae": F.l1_loss,
    "mean_absolute_error": F.l1_loss,
    "cross_entropy": _cross_entropy,
    "sparse_categorical_crossentropy": _cross_entropy,
    "categorical_crossentropy": _cross_entropy,
    "nan_mse": nan_mse,
}

# losses whose targets must have the prediction's shape, or may be class indices
KNOWN_LOSSES = tuple(LOSSES.values()) + (F.mse_loss, F.l1_loss)


def resolve_loss(
    loss: str | Callable, where: str = "loss"
) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """A callable ``loss(prediction, target)`` from a name, function or module."""
    if isinstance(loss, str):
        if loss not in LOSSES:
            raise ValidationError(
                f"unknown loss '{loss}'; names are {sorted(LOSSES)}", attr=where
            )
        return LOSSES[loss]
    if isinstance(loss, _CLASS_INDEX_LOSSES) or any(
        loss is f for f in _CLASS_INDEX_FUNCTIONS
    ):
        return ClassAxisLast(loss)
    if callable(loss):
        return loss
    raise ValidationError(
        f"a loss must be a name, a callable loss(prediction, target) or a torch.nn "
        f"loss module, got {loss!r}",
        attr=where,
    )
