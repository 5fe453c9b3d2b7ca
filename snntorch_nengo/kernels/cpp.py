"""The C++ CPU kernels (`snntorch_nengo._C`), when they were built.

Importing the extension module registers the forward-only torch ops
``torch.ops.snntorch_nengo_cpp.{lif_lowpass, spiking_relu_lowpass,
adaptive_lif_lowpass}`` (sources in ``csrc/``; built by ``pip install
--no-build-isolation -e .``). They take the arguments of the functions in
`snntorch_nengo.kernels.reference` (without ``surrogate_slope``) for
float32/float64 CPU tensors and return the same tuples, bitwise equal to the
reference (the kernels use the expm1/log1p that torch's own CPU kernels use
on this machine: Sleef on AVX2/AVX512, the C library otherwise).

``AVAILABLE`` says whether they loaded (``IMPORT_ERROR`` says why not).
`snntorch_nengo.kernels.ops` reads ``AVAILABLE`` at every call, so setting it
to False switches the ops to the torch reference.
"""

import torch

try:
    from snntorch_nengo import _C  # noqa: F401  (registers the ops)

    AVAILABLE = True
    IMPORT_ERROR = None
except (ImportError, OSError) as e:  # not built, or built for another torch
    _C = None
    AVAILABLE = False
    IMPORT_ERROR = f"{type(e).__name__}: {e}"

DTYPES = (torch.float32, torch.float64)


def supports(J, *states):
    """Whether the C++ kernels can run these tensors (and were loaded)."""
    return (
        AVAILABLE
        and J.device.type == "cpu"
        and J.dtype in DTYPES
        and all(s.device.type == "cpu" and s.dtype == J.dtype for s in states)
    )


def kernel_isa():
    """The kernel variant in use ("DEFAULT", "AVX2", "AVX512"), or None."""
    return torch.ops.snntorch_nengo_cpp.kernel_isa() if AVAILABLE else None


def lif_lowpass(J, voltage, refractory_time, filtered, dt, tau_rc, tau_ref,
                min_voltage, amplitude, decay):
    return torch.ops.snntorch_nengo_cpp.lif_lowpass(
        J, voltage, refractory_time, filtered,
        float(dt), float(tau_rc), float(tau_ref), float(min_voltage),
        float(amplitude), float(decay),
    )


def spiking_relu_lowpass(J, voltage, filtered, dt, amplitude, decay):
    return torch.ops.snntorch_nengo_cpp.spiking_relu_lowpass(
        J, voltage, filtered, float(dt), float(amplitude), float(decay)
    )


def adaptive_lif_lowpass(J, voltage, refractory_time, adaptation, filtered, dt,
                         tau_rc, tau_ref, min_voltage, amplitude, tau_n, inc_n,
                         decay):
    return torch.ops.snntorch_nengo_cpp.adaptive_lif_lowpass(
        J, voltage, refractory_time, adaptation, filtered,
        float(dt), float(tau_rc), float(tau_ref), float(min_voltage),
        float(amplitude), float(tau_n), float(inc_n), float(decay),
    )


def spike_matmul(X, Wt, max_density):
    return torch.ops.snntorch_nengo_cpp.spike_matmul(X, Wt, float(max_density))


__all__ = [
    "AVAILABLE",
    "IMPORT_ERROR",
    "supports",
    "kernel_isa",
    "lif_lowpass",
    "spiking_relu_lowpass",
    "adaptive_lif_lowpass",
    "spike_matmul",
]
