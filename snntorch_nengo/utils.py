"""Small helpers shared across the package."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch

_NUMPY_TO_TORCH = {
    np.dtype(np.float16): torch.float16,
    np.dtype(np.float32): torch.float32,
    np.dtype(np.float64): torch.float64,
    np.dtype(np.int8): torch.int8,
    np.dtype(np.int16): torch.int16,
    np.dtype(np.int32): torch.int32,
    np.dtype(np.int64): torch.int64,
    np.dtype(np.uint8): torch.uint8,
    np.dtype(np.bool_): torch.bool,
    np.dtype(np.complex64): torch.complex64,
    np.dtype(np.complex128): torch.complex128,
}


def torch_dtype(dtype: torch.dtype | np.dtype | type | str) -> torch.dtype:
    """A torch dtype from a numpy dtype, a string or a torch dtype."""
    if isinstance(dtype, torch.dtype):
        return dtype
    if isinstance(dtype, str) and hasattr(torch, dtype):
        return getattr(torch, dtype)
    return _NUMPY_TO_TORCH[np.dtype(dtype)]


def to_numpy(tensor: torch.Tensor) -> np.ndarray:
    """A numpy copy of a tensor, detached from autograd and moved to the CPU."""
    return tensor.detach().cpu().numpy()


class Registry(dict):
    """Maps keys to implementations: ``@registry.register(key)`` on each."""

    def register(self, key: Any) -> Callable[[Any], Any]:
        def register_impl(impl):
            self[key] = impl
            return impl

        return register_impl


class TypeRegistry(Registry):
    """Maps types to implementations; lookups follow an object's MRO.

    The pattern of `nengo.builder.Builder`: ``@registry.register(Type)`` on the
    implementation, ``registry.lookup(obj)`` to find it (or None).
    """

    def lookup(self, obj: object) -> Any:
        for cls in type(obj).__mro__:
            if cls in self:
                return self[cls]
        return None
