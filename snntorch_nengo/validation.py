"""Checks on what users pass in, with errors that name the object and the problem.

The Simulator, `.NengoModule` and the training API call these before any
tensor is built or any state changes, so a bad call leaves everything as it was.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import nengo
import numpy as np
import torch
from nengo.exceptions import ValidationError

from .utils import torch_dtype

if TYPE_CHECKING:
    from nengo.builder import Model

# numpy kinds that convert to a float simulation without losing anything
_NUMERIC_KINDS = "biuf"


def check_network(network: nengo.Network | None, model: Model | None) -> None:
    """``network`` is a `nengo.Network` (or None when a built ``model`` is given)."""
    if network is None:
        if model is None:
            raise ValidationError(
                "give a nengo.Network to simulate (or a built model)", attr="network"
            )
        return
    if not isinstance(network, nengo.Network):
        raise ValidationError(
            f"must be a nengo.Network, got {type(network).__name__} {network!r:.60}",
            attr="network",
        )


def check_dt(dt: float) -> None:
    """``dt`` is a positive, finite number of seconds."""
    try:
        value = float(dt)
    except (TypeError, ValueError):
        raise ValidationError(f"must be a number of seconds, got {dt!r}", attr="dt")
    if not np.isfinite(value) or value <= 0:
        raise ValidationError(f"must be a positive time step in seconds, got {dt!r}", attr="dt")


def check_dtype(dtype: torch.dtype | np.dtype | type | str) -> torch.dtype:
    """A floating-point torch dtype from ``dtype`` (torch, numpy or a name)."""
    try:
        result = torch_dtype(dtype)
    except (TypeError, KeyError, ValueError):
        raise ValidationError(
            f"{dtype!r} is not a data type; use a float type such as 'float32' or "
            "'float64'",
            attr="dtype",
        ) from None
    if not isinstance(result, torch.dtype) or not result.is_floating_point:
        raise ValidationError(
            f"the simulation needs a floating-point dtype (float16/32/64), got {dtype!r}",
            attr="dtype",
        )
    return result


def check_device(device: torch.device | str | int | None) -> torch.device | None:
    """A `torch.device` that exists on this machine (None stays None)."""
    if device is None:
        return None
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError, ValueError) as e:
        raise ValidationError(
            f"{device!r} is not a torch device (e.g. 'cpu', 'cuda', 'cuda:1'): {e}",
            attr="device",
        ) from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ValidationError(
                f"device {str(dev)!r} asked for, but CUDA is not available here "
                "(torch built without CUDA, or no GPU visible)",
                attr="device",
            )
        count = torch.cuda.device_count()
        if dev.index is not None and dev.index >= count:
            raise ValidationError(
                f"device {str(dev)!r} does not exist: this machine has {count} CUDA "
                f"device(s), cuda:0 to cuda:{count - 1}",
                attr="device",
            )
    elif dev.type == "mps" and not torch.backends.mps.is_available():
        raise ValidationError(
            "device 'mps' asked for, but MPS is not available here", attr="device"
        )
    elif dev.type not in ("cpu", "cuda", "mps", "meta"):
        backend = getattr(torch, dev.type, None)
        available = getattr(backend, "is_available", None)
        if available is None or not available():
            raise ValidationError(
                f"device {str(dev)!r} is not available on this machine", attr="device"
            )
    return dev


def as_array(value: Any, name: str, attr: str = "x") -> np.ndarray | torch.Tensor:
    """``value`` as a numpy array of real numbers (tensors are checked, kept).

    Rejects ragged nested lists, strings, objects and complex numbers (a float
    simulation would drop their imaginary part).
    """
    if torch.is_tensor(value):
        if value.is_complex():
            raise ValidationError(
                f"{name} must hold real numbers, got a {value.dtype} tensor (complex "
                "numbers are not simulated)",
                attr=attr,
            )
        return value
    try:
        value = np.asarray(value)
    except ValueError as e:
        raise ValidationError(
            f"{name} is not a rectangular array (nested lists of different "
            f"lengths?): {e}",
            attr=attr,
        ) from None
    if any(stride < 0 for stride in value.strides):
        # torch cannot view reversed (negative-stride) arrays: copy them
        value = value.copy()
    if value.dtype.kind not in _NUMERIC_KINDS:
        complex_note = " (complex numbers are not simulated)" if value.dtype.kind == "c" else ""
        raise ValidationError(
            f"{name} must hold real numbers, got an array of dtype {value.dtype}"
            + complex_note,
            attr=attr,
        )
    return value


def as_tensor(
    value: Any,
    name: str,
    dtype: torch.dtype,
    device: torch.device | str | None,
    check_finite: bool = True,
    allow_nan: bool = False,
    attr: str = "x",
) -> torch.Tensor:
    """``value`` as a ``dtype`` tensor on ``device``; ``name`` says whose data it is.

    Checks what `as_array` checks, and with ``check_finite`` rejects NaN and
    infinite values (only infinite ones if ``allow_nan``).
    """
    array = as_array(value, name, attr)
    with warnings.catch_warnings():
        # read-only arrays (np.broadcast_to) are fine: the data is only read
        warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
        tensor = torch.as_tensor(array)
    # broadcast dimensions (np.broadcast_to: stride 0) stay broadcast, so an
    # input repeated over n_steps costs one step's memory and is known to be
    # the same at every step (engine/window.py)
    broadcast = [d for d in range(tensor.dim()) if tensor.stride(d) == 0 and tensor.shape[d] > 1]
    compact = tensor
    for d in broadcast:
        compact = compact.narrow(d, 0, 1)
    compact = compact.to(device=device, dtype=dtype)
    if check_finite:
        check_finite_values(compact, name, allow_nan=allow_nan, attr=attr)
    return compact.expand(tensor.shape) if broadcast else compact


def check_finite_values(
    tensor: torch.Tensor, name: str, allow_nan: bool = False, attr: str = "x"
) -> None:
    """Raise if ``tensor`` holds infinite values, or NaN (unless ``allow_nan``).

    A sum is finite only if every value is (NaN and infinities propagate, and
    with ``allow_nan`` `torch.nansum` skips NaN), so clean data costs one sum;
    the element-wise check runs only when the sum is not finite, which also
    catches a sum that overflowed.
    """
    if not tensor.is_floating_point():
        return
    if torch.compiler.is_compiling():
        # under torch.compile/torch.export the values are symbolic: a check on
        # them is a data-dependent branch that cannot be traced
        return
    tensor = tensor.detach()
    if torch.isfinite(tensor.nansum() if allow_nan else tensor.sum()):
        return
    bad = torch.isinf(tensor) if allow_nan else ~torch.isfinite(tensor)
    if bool(bad.any()):
        n_nan = 0 if allow_nan else int(torch.isnan(tensor).sum())
        n_inf = int(torch.isinf(tensor).sum())
        first = tuple(int(i) for i in bad.nonzero()[0])
        raise ValidationError(
            f"{name}: {n_nan} NaN and {n_inf} infinite values (first at index "
            f"{first}); clean the data, or let them through with "
            "configure_settings(check_finite=False)",
            attr=attr,
        )


def positive_steps(n_steps: int | None, where: str) -> int:
    """``n_steps`` as a positive int (``where`` names the call for the message)."""
    if n_steps is None:
        raise ValidationError(
            f"{where}: give n_steps, or input data whose second axis gives it",
            attr="n_steps",
        )
    try:
        # True == 1, but a bool is a flag given in the wrong place, not a count
        ok = not isinstance(n_steps, (bool, np.bool_)) and int(n_steps) == n_steps
    except (TypeError, ValueError):
        ok = False
    if not ok or n_steps < 1:
        raise ValidationError(
            f"{where}: n_steps must be a positive integer, got {n_steps!r}",
            attr="n_steps",
        )
    return int(n_steps)


def positive_epochs(epochs: int) -> int:
    """``epochs`` as a positive int (Lightning would read -1 as "train forever")."""
    try:
        ok = not isinstance(epochs, (bool, np.bool_)) and int(epochs) == epochs
    except (TypeError, ValueError):
        ok = False
    if not ok or epochs < 1:
        raise ValidationError(
            f"fit: epochs must be a positive integer (passes over the data), got "
            f"{epochs!r}",
            attr="epochs",
        )
    return int(epochs)


def check_save_path(path: str | os.PathLike) -> None:
    """The folder of ``path`` exists and ``path`` is not a folder."""
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise ValidationError(
            f"cannot save to {path}: the folder {folder} does not exist", attr="path"
        )
    if os.path.isdir(path):
        raise ValidationError(f"cannot save to {path}: it is a folder", attr="path")


def common_samples(arrays: Mapping[str, Any], where: str) -> int | None:
    """The number of samples (first axis) that all of ``{name: array}`` share."""
    counts = {name: np.shape(a)[0] if np.ndim(a) else None for name, a in arrays.items()}
    if len(set(counts.values())) > 1:
        shown = ", ".join(f"{name}: {n}" for name, n in counts.items())
        raise ValidationError(
            f"{where}: inputs have different numbers of samples ({shown})", attr="x"
        )
    return next(iter(counts.values()), None)
