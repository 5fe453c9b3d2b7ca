"""One spec per supported Nengo neuron type: the table everything else reads.

A `NeuronSpec` says, for one Nengo neuron class, everything the rest of the
package needs to know about it:

- ``states``: Nengo's state names, in the order the fused kernels take them;
- ``params``: the float parameters, attribute names of the Nengo object, in the
  order the kernels take them (`NeuronSpec.param_values` reads them);
- ``step``: the pure torch step (``output, state = step(neuron_type, dt, J,
  state, rng[, surrogate])``), registered for the class (`neuron_step`);
- ``rate``: how training mode builds its rate counterpart (None: none);
  ``rates_to_spikes`` marks RatesToSpikes types, which train as ``amplitude *
  J`` (`snntorch_nengo.neurons.train_mode`);
- ``surrogate``: the spike threshold a surrogate gradient replaces (the step
  then takes ``surrogate=``), or None;
- ``kernel``: its fused multi-step kernel (`FusedKernel`), or None.

A fused kernel runs ``T`` steps of the neuron and a Lowpass on its output. Its
arguments are always laid out from the spec (`NeuronSpec.kernel_args`)::

    J[T, N], *states[N], filtered[N], dt, *params, decay, surrogate, surrogate_param

``decay`` is the Lowpass's ``exp(-dt / tau)``; it comes last among the
forward parameters, and the in-place program's NEURON instruction passes the
floats without it (``dt, *params``, `NeuronSpec.instruction_floats`).
``surrogate`` and ``surrogate_param`` (`BACKWARD_ARGS`) only shape the
backward pass: the derivative the spike threshold gets
(`snntorch_nengo.neurons.surrogates.kernel_surrogate`; 0, the default, is
none: the exact spikes' zero derivative). Its backward kernel
(`NeuronSpec.backward_schema`) takes the forward inputs, one optional gradient
per output and the same floats, and returns the gradients of the tensor
inputs. The
kernel's name is that of its torch reference (`snntorch_nengo.kernels.reference`),
its custom op (``torch.ops.snntorch_nengo.<name>``), its C++ op
(``torch.ops.snntorch_nengo_cpp.<name>``) and its Triton wrapper
(``<name>_triton``); ``kind`` is its NEURON kind id.

The C++ side reads the same table through ``csrc/neuron_specs.h``, generated
from it::

    python -m snntorch_nengo.neurons --header > csrc/neuron_specs.h

(``tests/test_neuron_specs.py`` fails when the checked-in header is stale).
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Callable, Optional

import nengo
import torch

from snntorch_nengo.neurons import _REGISTRY, extras, rate, spiking
from snntorch_nengo.neurons.surrogates import KERNEL_SURROGATES

RateFactory = Callable[[nengo.neurons.NeuronType, Optional[float]], nengo.neurons.NeuronType]


@dataclass(frozen=True)
class FusedKernel:
    """A neuron type's fused multi-step (neuron + Lowpass) kernel.

    ``name`` names it in every backend (see the module docstring); ``kind`` is
    its NEURON kind id in the in-place program (``csrc/program.cpp``);
    ``cpp_params`` and ``cpp_table`` name its C++ parameter struct and its
    entries (``<cpp_table>_f32``, ``<cpp_table>_f64``) in ``KernelTable``
    (``csrc/neurons.h``).
    """

    name: str
    kind: int
    cpp_params: str
    cpp_table: str


#: the fused kernels' backward-only arguments, their schema types and defaults
BACKWARD_ARGS = (("surrogate", "int", 0), ("surrogate_param", "float", 0.0))


@dataclass(frozen=True)
class NeuronSpec:
    """Everything the package knows about one Nengo neuron class (module docstring)."""

    nengo_type: type
    states: tuple[str, ...]
    params: tuple[str, ...]
    step: Callable
    rate: Optional[RateFactory] = None
    rates_to_spikes: bool = False
    surrogate: Optional[str] = None
    kernel: Optional[FusedKernel] = None

    def param_values(self, neuron_type: nengo.neurons.NeuronType) -> tuple[float, ...]:
        """``neuron_type``'s float parameters, in kernel order."""
        return tuple(float(getattr(neuron_type, name)) for name in self.params)

    def instruction_floats(self) -> tuple[str, ...]:
        """Names of the NEURON instruction's floats: ``dt`` and the parameters."""
        return ("dt",) + self.params

    def kernel_args(self, backward: bool = True) -> tuple[str, ...]:
        """Names of the fused kernel's arguments, in order.

        ``backward=False``: without the backward-only `BACKWARD_ARGS` (the
        forward kernels' arguments: C++ and Triton).
        """
        extra = tuple(name for name, _, _ in BACKWARD_ARGS) if backward else ()
        return ("J",) + self.states + ("filtered",) + self.instruction_floats() + (
            "decay",
        ) + extra

    def n_tensors(self) -> int:
        """Number of tensor arguments of the fused kernel (J, states, filtered)."""
        return len(self.states) + 2

    def kernel_signature(self, backward: bool = True) -> inspect.Signature:
        """The fused kernel's Python signature (see `kernel_args`)."""
        n = self.n_tensors()
        extra = {name: (int if kind == "int" else float, default)
                 for name, kind, default in BACKWARD_ARGS}
        parameters = [
            inspect.Parameter(
                name,
                inspect.Parameter.POSITIONAL_OR_KEYWORD,
                annotation=torch.Tensor if i < n else extra.get(name, (float,))[0],
                default=extra[name][1] if name in extra else inspect.Parameter.empty,
            )
            for i, name in enumerate(self.kernel_args(backward))
        ]
        returns = tuple[(torch.Tensor,) * (n + 1)]
        return inspect.Signature(parameters, return_annotation=returns)

    def kernel_schema(self, backward: bool = True, named: bool = True) -> str:
        """The fused kernel's torch op schema (without a namespace; ``named=False``:
        without its name either, as `torch.library.custom_op` takes it)."""
        n = self.n_tensors()
        extra = {name: (kind, default) for name, kind, default in BACKWARD_ARGS}
        args = []
        for i, name in enumerate(self.kernel_args(backward)):
            if i < n:
                args.append(f"Tensor {name}")
            elif name in extra:
                kind, default = extra[name]
                args.append(f"{kind} {name}={default!r}")
            else:
                args.append(f"float {name}")
        outs = ", ".join(["Tensor"] * (n + 1))
        name = self.kernel.name if named else ""
        return f"{name}({', '.join(args)}) -> ({outs})"

    def output_names(self) -> tuple[str, ...]:
        """Names of the fused kernel's outputs, in order."""
        return ("output", "filtered_seq") + self.states + ("filtered",)

    def backward_schema(self) -> str:
        """The C++ backward kernel's schema (``<name>_backward``): the forward
        inputs, an optional gradient per output, then the floats and the
        surrogate; it returns the gradients of the tensor inputs."""
        inputs = self.kernel_args(backward=False)
        n = self.n_tensors()
        args = [f"Tensor {name}" for name in inputs[:n]]
        args += [f"Tensor? grad_{name}" for name in self.output_names()]
        args += [f"float {name}" for name in inputs[n:]]
        args += [f"{kind} {name}" for name, kind, _ in BACKWARD_ARGS]
        outs = ", ".join(["Tensor"] * n)
        return f"{self.kernel.name}_backward({', '.join(args)}) -> ({outs})"

    def kernel_returns(self) -> str:
        """The fused kernel's return tuple, for docstrings."""
        names = ("output[T, N]", "filtered_seq[T, N]")
        names += tuple(f"{s}[N]" for s in self.states) + ("filtered[N]",)
        return "(" + ", ".join(names) + ")"


# --- rate counterparts (training mode) ---


def _lif_rate(neuron_type, lif_smoothing):
    kwargs = dict(
        tau_rc=neuron_type.tau_rc,
        tau_ref=neuron_type.tau_ref,
        amplitude=neuron_type.amplitude,
    )
    if lif_smoothing is not None and lif_smoothing > 0:
        return extras.SoftLIFRate(sigma=lif_smoothing, **kwargs)
    return nengo.LIFRate(**kwargs)


def _adaptive_lif_rate(neuron_type, lif_smoothing):
    return nengo.AdaptiveLIFRate(
        tau_n=neuron_type.tau_n,
        inc_n=neuron_type.inc_n,
        tau_rc=neuron_type.tau_rc,
        tau_ref=neuron_type.tau_ref,
        amplitude=neuron_type.amplitude,
    )


def _relu_rate(neuron_type, lif_smoothing):
    return nengo.RectifiedLinear(amplitude=neuron_type.amplitude)


def _leaky_relu_rate(neuron_type, lif_smoothing):
    return extras.LeakyReLU(
        negative_slope=neuron_type.negative_slope, amplitude=neuron_type.amplitude
    )


# --- the table ---

_LIF_PARAMS = ("tau_rc", "tau_ref", "min_voltage", "amplitude")

SPECS: dict[type, NeuronSpec] = {
    spec.nengo_type: spec
    for spec in (
        # rate types: the same step in training mode
        NeuronSpec(nengo.RectifiedLinear, (), ("amplitude",), rate.rectified_linear_step),
        NeuronSpec(nengo.Sigmoid, (), ("tau_ref",), rate.sigmoid_step),
        NeuronSpec(nengo.Tanh, (), ("tau_ref",), rate.tanh_step),
        NeuronSpec(nengo.LIFRate, (), ("tau_rc", "tau_ref", "amplitude"), rate.lif_rate_step),
        NeuronSpec(
            nengo.AdaptiveLIFRate,
            ("adaptation",),
            ("tau_rc", "tau_ref", "amplitude", "tau_n", "inc_n"),
            rate.adaptive_lif_rate_step,
        ),
        NeuronSpec(
            extras.SoftLIFRate,
            (),
            ("sigma", "tau_rc", "tau_ref", "amplitude"),
            extras.soft_lif_rate_step,
        ),
        NeuronSpec(extras.LeakyReLU, (), ("negative_slope", "amplitude"), extras.leaky_relu_step),
        # spiking types
        NeuronSpec(
            nengo.LIF,
            ("voltage", "refractory_time"),
            _LIF_PARAMS,
            spiking.lif_step,
            rate=_lif_rate,
            surrogate="voltage > 1",
            kernel=FusedKernel("lif_lowpass", 0, "LifParams", "lif"),
        ),
        NeuronSpec(
            nengo.AdaptiveLIF,
            ("voltage", "refractory_time", "adaptation"),
            _LIF_PARAMS + ("tau_n", "inc_n"),
            spiking.adaptive_lif_step,
            rate=_adaptive_lif_rate,
            surrogate="voltage > 1",
            kernel=FusedKernel("adaptive_lif_lowpass", 1, "AdaptiveLifParams", "alif"),
        ),
        NeuronSpec(
            nengo.SpikingRectifiedLinear,
            ("voltage",),
            ("amplitude",),
            spiking.spiking_rectified_linear_step,
            rate=_relu_rate,
            surrogate="floor(voltage)",
            kernel=FusedKernel("spiking_relu_lowpass", 2, "SpikingReluParams", "relu"),
        ),
        NeuronSpec(
            extras.SpikingLeakyReLU,
            ("voltage",),
            ("negative_slope", "amplitude"),
            extras.spiking_leaky_relu_step,
            rate=_leaky_relu_rate,
            surrogate="trunc(voltage)",
        ),
        NeuronSpec(
            nengo.Izhikevich,
            ("voltage", "recovery"),
            ("tau_recovery", "coupling", "reset_voltage", "reset_recovery"),
            spiking.izhikevich_step,
            surrogate="voltage >= 30",
        ),
        # RatesToSpikes types: their input J is the base type's rate
        NeuronSpec(
            nengo.RegularSpiking, ("voltage",), ("amplitude",), spiking.regular_spiking_step,
            rates_to_spikes=True,
        ),
        NeuronSpec(
            nengo.StochasticSpiking, (), ("amplitude",), spiking.stochastic_spiking_step,
            rates_to_spikes=True,
        ),
        NeuronSpec(
            nengo.PoissonSpiking, (), ("amplitude",), spiking.poisson_spiking_step,
            rates_to_spikes=True,
        ),
    )
}

# the registry `neuron_step` looks types up in (users add their own with
# `register`)
_REGISTRY.update({cls: spec.step for cls, spec in SPECS.items()})

# by step function, so that subclasses keeping their parent's math (same
# registered step) behave like their parent
_BY_STEP = {spec.step: spec for spec in SPECS.values()}

#: the specs with a fused kernel, by NEURON kind id
KERNEL_SPECS: tuple[NeuronSpec, ...] = tuple(
    sorted((s for s in SPECS.values() if s.kernel), key=lambda s: s.kernel.kind)
)
assert [s.kernel.kind for s in KERNEL_SPECS] == list(range(len(KERNEL_SPECS)))


def spec_for_step(step: Optional[Callable]) -> Optional[NeuronSpec]:
    """The spec whose torch step is ``step`` (None for users' registered steps)."""
    return _BY_STEP.get(step)


def kernel_spec(neuron_type: nengo.neurons.NeuronType) -> Optional[NeuronSpec]:
    """The spec of ``neuron_type`` if it runs a fused kernel, else None.

    Only the exact classes: a subclass may change what the kernel hard-codes.
    """
    spec = SPECS.get(type(neuron_type))
    return spec if spec is not None and spec.kernel is not None else None


def kernel_spec_named(name: str) -> NeuronSpec:
    """The spec whose fused kernel is called ``name`` (e.g. ``"lif_lowpass"``)."""
    for spec in KERNEL_SPECS:
        if spec.kernel.name == name:
            return spec
    raise KeyError(f"no fused kernel named {name!r}")


# --- csrc/neuron_specs.h ---


def _camel(name: str) -> str:
    return "".join(part.capitalize() for part in name.split("_"))


def cpp_header() -> str:
    """The text of ``csrc/neuron_specs.h``, generated from `KERNEL_SPECS`."""
    n = len(KERNEL_SPECS)
    lines = [
        "// GENERATED from snntorch_nengo/neurons/specs.py by",
        "//   python -m snntorch_nengo.neurons --header > csrc/neuron_specs.h",
        "// Do not edit: change the table and regenerate (tests/test_neuron_specs.py",
        "// checks that this file matches it).",
        "//",
        "// The neuron types with fused kernels, by NEURON kind id (program.h): their",
        "// state and parameter counts, parameter structs and op schemas. A kernel's",
        "// floats are (dt, the neuron's parameters, decay); the NEURON instruction",
        "// passes them without the decay.",
        "#pragma once",
        "",
        "#include <type_traits>",
        "",
        "namespace snntorch_nengo {",
        "",
        f"constexpr int kNeuronKinds = {n};",
    ]
    for spec in KERNEL_SPECS:
        lines.append(
            f"constexpr int k{_camel(spec.kernel.name)} = {spec.kernel.kind};"
            f"  // {spec.nengo_type.__name__}"
        )
    states = ", ".join(str(len(s.states)) for s in KERNEL_SPECS)
    floats = ", ".join(str(len(s.instruction_floats())) for s in KERNEL_SPECS)
    lines += [
        f"constexpr int kMaxStates = {max(len(s.states) for s in KERNEL_SPECS)};",
        "",
        "// per kind: the number of states, and of the NEURON instruction's floats",
        f"constexpr int kNeuronStates[kNeuronKinds] = {{{states}}};",
        f"constexpr int kNeuronFloats[kNeuronKinds] = {{{floats}}};",
        "",
        "// per kind: the C++ op's name and schema (torch.ops.snntorch_nengo_cpp.*)",
        "constexpr const char* kNeuronOps[kNeuronKinds] = {",
    ]
    lines += [f'    "{s.kernel.name}",' for s in KERNEL_SPECS]
    lines += ["};", "constexpr const char* kNeuronSchemas[kNeuronKinds] = {"]
    for spec in KERNEL_SPECS:
        lines.append(f'    "{spec.kernel_schema(backward=False)}",')
    lines += [
        "};",
        "",
        "// per kind: the backward op's name and schema: the forward inputs, an",
        "// optional gradient per output (undefined: zero), the floats and the",
        "// surrogate; returns the gradients of J, the states and filtered",
        "constexpr const char* kNeuronBackwardOps[kNeuronKinds] = {",
    ]
    lines += [f'    "{s.kernel.name}_backward",' for s in KERNEL_SPECS]
    lines += ["};", "constexpr const char* kNeuronBackwardSchemas[kNeuronKinds] = {"]
    lines += [f'    "{s.backward_schema()}",' for s in KERNEL_SPECS]
    lines += [
        "};",
        "",
        "// the surrogate derivatives of the backward kernels, by id",
        "// (snntorch_nengo/neurons/surrogates.py: KERNEL_SURROGATES)",
    ]
    for i, cls in enumerate(KERNEL_SURROGATES):
        name = "None" if cls is None else cls.__name__
        lines.append(f"constexpr int kSurrogate{name} = {i};")
    lines += [f"constexpr int kSurrogates = {len(KERNEL_SURROGATES)};", ""]
    for spec in KERNEL_SPECS:
        fields = spec.instruction_floats() + ("decay",)
        values = ", ".join(f"f[{i}]" for i in range(len(fields) - 1))
        lines += [
            f"// {spec.nengo_type.__name__}: {', '.join(spec.states)}",
            f"struct {spec.kernel.cpp_params} {{",
            f"  double {', '.join(fields)};",
            "  // from (dt, parameters) and the decay",
            f"  static {spec.kernel.cpp_params} from(const double* f, double decay) {{",
            f"    return {{{values}, decay}};",
            "  }",
            "};",
            "",
        ]
    lines += [
        "// Runs kind `kind`'s kernel from `table` (a KernelTable, neurons.h); `f`",
        "// holds dt and the neuron's parameters (kNeuronFloats[kind] of them).",
        "template <typename Table, typename Args>",
        "void run_kind(const Table& table, int kind, const Args& a, const double* f,",
        "              double decay) {",
        "  constexpr bool f64 = std::is_same_v<decltype(a.J), const double*>;",
        "  switch (kind) {",
    ]
    for spec in KERNEL_SPECS:
        k = spec.kernel
        lines += [
            f"    case k{_camel(k.name)}: {{",
            f"      const auto p = {k.cpp_params}::from(f, decay);",
            f"      if constexpr (f64) table.{k.cpp_table}_f64(a, p);",
            f"      else table.{k.cpp_table}_f32(a, p);",
            "      return;",
            "    }",
        ]
    lines += [
        "  }",
        "}",
        "",
        "// The same for kind `kind`'s backward kernel (`a`: BackwardArgs).",
        "template <typename Table, typename Args>",
        "void run_backward_kind(const Table& table, int kind, const Args& a,",
        "                       const double* f, double decay) {",
        "  constexpr bool f64 = std::is_same_v<decltype(a.J), const double*>;",
        "  switch (kind) {",
    ]
    for spec in KERNEL_SPECS:
        k = spec.kernel
        lines += [
            f"    case k{_camel(k.name)}: {{",
            f"      const auto p = {k.cpp_params}::from(f, decay);",
            f"      if constexpr (f64) table.{k.cpp_table}_backward_f64(a, p);",
            f"      else table.{k.cpp_table}_backward_f32(a, p);",
            "      return;",
            "    }",
        ]
    lines += ["  }", "}", "", "}  // namespace snntorch_nengo", ""]
    return "\n".join(lines)


__all__ = [
    "BACKWARD_ARGS",
    "FusedKernel",
    "NeuronSpec",
    "SPECS",
    "KERNEL_SPECS",
    "spec_for_step",
    "kernel_spec",
    "kernel_spec_named",
    "cpp_header",
]
