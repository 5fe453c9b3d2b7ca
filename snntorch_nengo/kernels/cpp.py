"""The C++ CPU kernels (`snntorch_nengo._C`), when they were built.

Importing the extension module registers a forward torch op
``torch.ops.snntorch_nengo_cpp.<name>`` and its backward op ``<name>_backward``
per neuron spec with a fused kernel (`snntorch_nengo.neurons.specs`; sources
in ``csrc/``, built by ``pip install`` or, when that did not build it, just in
time on first use by `snntorch_nengo.kernels.jit`). The forward
ops take the arguments of the functions in `snntorch_nengo.kernels.reference`
(without the backward-only surrogate) for
float32/float64 CPU tensors and return the same tuples, bitwise equal to the
reference (the kernels use the expm1/log1p that torch's own CPU kernels use
on this machine: Sleef on AVX2/AVX512, the C library otherwise).

``AVAILABLE`` says whether they loaded (``IMPORT_ERROR`` says why not,
``SOURCE`` whether prebuilt or just in time).
`snntorch_nengo.kernels.ops` reads ``AVAILABLE`` at every call, so setting it
to False switches the ops to the torch reference.
"""

from __future__ import annotations

from typing import Callable, Optional, Sequence

import torch

from snntorch_nengo.neurons.specs import KERNEL_SPECS, NeuronSpec

from snntorch_nengo.kernels import jit

#: where the loaded extension came from: "prebuilt" (built at install),
#: "jit" (built on first use, `snntorch_nengo.kernels.jit`) or None
SOURCE: Optional[str] = None
try:
    # not loaded when built from older sources: its ops could not be
    # replaced by the current ones' once registered
    PREBUILT_ERROR = jit.check_prebuilt()
    if PREBUILT_ERROR is not None:
        raise ImportError(PREBUILT_ERROR)
    from snntorch_nengo import _C  # noqa: F401  (registers the ops)

    SOURCE = "prebuilt"
except (ImportError, OSError) as e:  # not built, stale, or built for another torch
    _C = None
    PREBUILT_ERROR = f"{type(e).__name__}: {e}"
    _C = jit.load()
    if _C is not None:
        SOURCE = "jit"
    else:
        jit.warn_missing(PREBUILT_ERROR, jit.STATE["error"])

AVAILABLE = _C is not None
#: why the extension did not load (None when it did)
IMPORT_ERROR = (
    None if AVAILABLE else f"prebuilt: {PREBUILT_ERROR}; just in time: {jit.STATE['error']}"
)
#: the file the extension was loaded from
PATH: Optional[str] = getattr(_C, "__file__", None)

DTYPES = (torch.float32, torch.float64)

# an extension built from older sources has the forward ops only: its ops
# then differentiate through the reference (rebuild to get the backward kernels)
HAS_BACKWARD = AVAILABLE and all(
    hasattr(torch.ops.snntorch_nengo_cpp, f"{s.kernel.name}_backward") for s in KERNEL_SPECS
)


def supports(J: torch.Tensor, *states: torch.Tensor, backward: bool = False) -> bool:
    """Whether the C++ kernels (``backward``: the backward kernels) can run
    these tensors (and were loaded)."""
    return (
        AVAILABLE
        and (HAS_BACKWARD or not backward)
        and J.device.type == "cpu"
        and J.dtype in DTYPES
        and all(s.device.type == "cpu" and s.dtype == J.dtype for s in states)
    )


def kernel_isa() -> Optional[str]:
    """The kernel variant in use ("DEFAULT", "AVX2", "AVX512"), or None."""
    return torch.ops.snntorch_nengo_cpp.kernel_isa() if AVAILABLE else None


def _wrapper(spec: NeuronSpec) -> Callable:
    """The C++ op of ``spec``'s fused kernel, with floats made Python floats."""
    name, n = spec.kernel.name, spec.n_tensors()
    signature = spec.kernel_signature(backward=False)

    def kernel(*args, **kwargs):
        args = tuple(signature.bind(*args, **kwargs).arguments.values())
        op = getattr(torch.ops.snntorch_nengo_cpp, name)
        return op(*args[:n], *(float(x) for x in args[n:]))

    kernel.__name__ = kernel.__qualname__ = name
    kernel.__signature__ = signature
    kernel.__doc__ = f"``torch.ops.snntorch_nengo_cpp.{name}``: {spec.nengo_type.__name__}."
    return kernel


#: the C++ forward kernels by name (``lif_lowpass``, ...)
KERNELS: dict[str, Callable] = {s.kernel.name: _wrapper(s) for s in KERNEL_SPECS}
globals().update(KERNELS)


def backward(
    name: str,
    inputs: Sequence[torch.Tensor],
    grads: Sequence[torch.Tensor | None],
    params: Sequence[float],
    surrogate: int,
    surrogate_param: float,
) -> Sequence[torch.Tensor]:
    """``torch.ops.snntorch_nengo_cpp.<name>_backward``: the gradients of the
    fused kernel ``name``'s tensor ``inputs`` from those of its outputs
    (``grads``, None for zero); ``params`` are its forward floats."""
    op = getattr(torch.ops.snntorch_nengo_cpp, f"{name}_backward")
    return op(
        *inputs, *grads, *(float(p) for p in params), int(surrogate), float(surrogate_param)
    )


# (an extension built before the scan kernel lacks it: the op runs the reference)
HAS_SCAN = AVAILABLE and hasattr(torch.ops.snntorch_nengo_cpp, "linear_filter_scan")


def linear_filter_scan(
    u: torch.Tensor,
    x0: torch.Tensor,
    A: Sequence[float],
    B: Sequence[float],
    C: Sequence[float],
    D: float,
    general: bool = False,
    reverse: bool = False,
    y0: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``torch.ops.snntorch_nengo_cpp.linear_filter_scan``: `reference.linear_filter_scan`
    (with ``y0``, as the first row of ``y``)."""
    return torch.ops.snntorch_nengo_cpp.linear_filter_scan(
        u, x0, [float(a) for a in A], [float(b) for b in B], [float(c) for c in C],
        float(D), bool(general), bool(reverse), y0,
    )


def spike_matmul(X: torch.Tensor, Wt: torch.Tensor, max_density: float) -> torch.Tensor:
    return torch.ops.snntorch_nengo_cpp.spike_matmul(X, Wt, float(max_density))


__all__ = [
    "AVAILABLE",
    "IMPORT_ERROR",
    "PATH",
    "SOURCE",
    "HAS_BACKWARD",
    "supports",
    "kernel_isa",
    "KERNELS",
    *KERNELS,
    "backward",
    "spike_matmul",
    "HAS_SCAN",
    "linear_filter_scan",
]
