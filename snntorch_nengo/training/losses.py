"""Losses: torch's argument order ``loss(prediction, target)``, by name or callable."""

import torch
import torch.nn.functional as F
from nengo.exceptions import ValidationError


def nan_mse(prediction, target):
    """Mean squared error over the targets that are not NaN (NaN means "no target")."""
    mask = ~torch.isnan(target)
    if not mask.any():
        return prediction.sum() * 0.0
    return F.mse_loss(prediction[mask], target[mask])


def _cross_entropy(prediction, target):
    """Cross entropy on the last step's logits ``(batch, n_steps, classes)``.

    Targets are class indices ``(batch, n_steps, 1)`` or ``(batch,)``, or one-hot /
    probabilities with the prediction's shape.
    """
    logits = prediction.reshape(-1, prediction.shape[-1])
    if target.shape == prediction.shape:
        return F.cross_entropy(logits, target.reshape(logits.shape))
    return F.cross_entropy(logits, target.reshape(-1).long())


class Regularize(torch.nn.Module):
    """A loss on the output alone: ``weight * mean(|x| ** order)``, target ignored.

    Use it with a probe on parameters or activities to regularize them
    (``loss={probe: Regularize(order=2, weight=1e-3)}``; pass any target array).
    """

    def __init__(self, order=2, axis=None, weight=1.0):
        super().__init__()
        self.order = order
        self.axis = axis
        self.weight = weight

    def forward(self, prediction, target=None):
        norm = prediction.abs().pow(self.order)
        value = norm.mean() if self.axis is None else norm.sum(self.axis).mean()
        return self.weight * value

    def extra_repr(self):
        return f"order={self.order}, axis={self.axis}, weight={self.weight}"


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
# (batch, n_steps, 1)
SPARSE_TARGET_LOSSES = (_cross_entropy,)


def resolve_loss(loss, where="loss"):
    """A callable ``loss(prediction, target)`` from a name, function or module."""
    if isinstance(loss, str):
        if loss not in LOSSES:
            raise ValidationError(
                f"unknown loss '{loss}'; names are {sorted(LOSSES)}", attr=where
            )
        return LOSSES[loss]
    if callable(loss):
        return loss
    raise ValidationError(
        f"a loss must be a name, a callable loss(prediction, target) or a torch.nn "
        f"loss module, got {loss!r}",
        attr=where,
    )
