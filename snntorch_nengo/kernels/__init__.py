"""Fused multi-step neuron + lowpass kernels.

T steps of a Nengo neuron update followed by Nengo's Lowpass synapse on the
neuron output, in one call, time-major (``J`` is ``[T, N]``, states ``[N]``):

- `reference`: the semantics, in pure torch (loops of the per-step functions of
  `snntorch_nengo.neurons.spiking`; forward equals Nengo spike for spike);
- `cpp`: the C++ CPU kernels of the extension ``snntorch_nengo._C`` (csrc/),
  prebuilt at install or built on first use (`jit`, with the recipe of
  `extension`);
- ``triton_kernels``: the Triton (CUDA) kernels;
- `ops`: the differentiable torch custom ops ``torch.ops.snntorch_nengo.*``
  choosing among them by device, with the reference's gradients.

``from snntorch_nengo.kernels import lif_lowpass`` gives the op; the submodules
are imported on first use (importing `reference` alone loads no extension).
"""

import importlib

_OPS = (
    "lif_lowpass",
    "spiking_relu_lowpass",
    "adaptive_lif_lowpass",
)


def __getattr__(name):
    if name in _OPS:
        return getattr(importlib.import_module(f"{__name__}.ops"), name)
    if name in ("reference", "cpp", "ops", "triton_kernels", "jit", "extension"):
        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = list(_OPS)
