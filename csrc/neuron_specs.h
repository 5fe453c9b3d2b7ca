// GENERATED from snntorch_nengo/neurons/specs.py by
//   python -m snntorch_nengo.neurons --header > csrc/neuron_specs.h
// Do not edit: change the table and regenerate (tests/test_neuron_specs.py
// checks that this file matches it).
//
// The neuron types with fused kernels, by NEURON kind id (program.h): their
// state and parameter counts, parameter structs and op schemas. A kernel's
// floats are (dt, the neuron's parameters, decay); the NEURON instruction
// passes them without the decay.
#pragma once

#include <type_traits>

namespace snntorch_nengo {

constexpr int kNeuronKinds = 3;
constexpr int kLifLowpass = 0;  // LIF
constexpr int kAdaptiveLifLowpass = 1;  // AdaptiveLIF
constexpr int kSpikingReluLowpass = 2;  // SpikingRectifiedLinear
constexpr int kMaxStates = 3;

// per kind: the number of states, and of the NEURON instruction's floats
constexpr int kNeuronStates[kNeuronKinds] = {2, 3, 1};
constexpr int kNeuronFloats[kNeuronKinds] = {5, 7, 2};

// per kind: the C++ op's name and schema (torch.ops.snntorch_nengo_cpp.*)
constexpr const char* kNeuronOps[kNeuronKinds] = {
    "lif_lowpass",
    "adaptive_lif_lowpass",
    "spiking_relu_lowpass",
};
constexpr const char* kNeuronSchemas[kNeuronKinds] = {
    "lif_lowpass(Tensor J, Tensor voltage, Tensor refractory_time, Tensor filtered, float dt, float tau_rc, float tau_ref, float min_voltage, float amplitude, float decay) -> (Tensor, Tensor, Tensor, Tensor, Tensor)",
    "adaptive_lif_lowpass(Tensor J, Tensor voltage, Tensor refractory_time, Tensor adaptation, Tensor filtered, float dt, float tau_rc, float tau_ref, float min_voltage, float amplitude, float tau_n, float inc_n, float decay) -> (Tensor, Tensor, Tensor, Tensor, Tensor, Tensor)",
    "spiking_relu_lowpass(Tensor J, Tensor voltage, Tensor filtered, float dt, float amplitude, float decay) -> (Tensor, Tensor, Tensor, Tensor)",
};

// per kind: the backward op's name and schema: the forward inputs, an
// optional gradient per output (undefined: zero), the floats and the
// surrogate; returns the gradients of J, the states and filtered
constexpr const char* kNeuronBackwardOps[kNeuronKinds] = {
    "lif_lowpass_backward",
    "adaptive_lif_lowpass_backward",
    "spiking_relu_lowpass_backward",
};
constexpr const char* kNeuronBackwardSchemas[kNeuronKinds] = {
    "lif_lowpass_backward(Tensor J, Tensor voltage, Tensor refractory_time, Tensor filtered, Tensor? grad_output, Tensor? grad_filtered_seq, Tensor? grad_voltage, Tensor? grad_refractory_time, Tensor? grad_filtered, float dt, float tau_rc, float tau_ref, float min_voltage, float amplitude, float decay, int surrogate, float surrogate_param) -> (Tensor, Tensor, Tensor, Tensor)",
    "adaptive_lif_lowpass_backward(Tensor J, Tensor voltage, Tensor refractory_time, Tensor adaptation, Tensor filtered, Tensor? grad_output, Tensor? grad_filtered_seq, Tensor? grad_voltage, Tensor? grad_refractory_time, Tensor? grad_adaptation, Tensor? grad_filtered, float dt, float tau_rc, float tau_ref, float min_voltage, float amplitude, float tau_n, float inc_n, float decay, int surrogate, float surrogate_param) -> (Tensor, Tensor, Tensor, Tensor, Tensor)",
    "spiking_relu_lowpass_backward(Tensor J, Tensor voltage, Tensor filtered, Tensor? grad_output, Tensor? grad_filtered_seq, Tensor? grad_voltage, Tensor? grad_filtered, float dt, float amplitude, float decay, int surrogate, float surrogate_param) -> (Tensor, Tensor, Tensor)",
};

// the surrogate derivatives of the backward kernels, by id
// (snntorch_nengo/neurons/surrogates.py: KERNEL_SURROGATES)
constexpr int kSurrogateNone = 0;
constexpr int kSurrogateFastSigmoid = 1;
constexpr int kSurrogateSigmoid = 2;
constexpr int kSurrogateATan = 3;
constexpr int kSurrogateTriangle = 4;
constexpr int kSurrogateStraightThrough = 5;
constexpr int kSurrogates = 6;

// LIF: voltage, refractory_time
struct LifParams {
  double dt, tau_rc, tau_ref, min_voltage, amplitude, decay;
  // from (dt, parameters) and the decay
  static LifParams from(const double* f, double decay) {
    return {f[0], f[1], f[2], f[3], f[4], decay};
  }
};

// AdaptiveLIF: voltage, refractory_time, adaptation
struct AdaptiveLifParams {
  double dt, tau_rc, tau_ref, min_voltage, amplitude, tau_n, inc_n, decay;
  // from (dt, parameters) and the decay
  static AdaptiveLifParams from(const double* f, double decay) {
    return {f[0], f[1], f[2], f[3], f[4], f[5], f[6], decay};
  }
};

// SpikingRectifiedLinear: voltage
struct SpikingReluParams {
  double dt, amplitude, decay;
  // from (dt, parameters) and the decay
  static SpikingReluParams from(const double* f, double decay) {
    return {f[0], f[1], decay};
  }
};

// Runs kind `kind`'s kernel from `table` (a KernelTable, neurons.h); `f`
// holds dt and the neuron's parameters (kNeuronFloats[kind] of them).
template <typename Table, typename Args>
void run_kind(const Table& table, int kind, const Args& a, const double* f,
              double decay) {
  constexpr bool f64 = std::is_same_v<decltype(a.J), const double*>;
  switch (kind) {
    case kLifLowpass: {
      const auto p = LifParams::from(f, decay);
      if constexpr (f64) table.lif_f64(a, p);
      else table.lif_f32(a, p);
      return;
    }
    case kAdaptiveLifLowpass: {
      const auto p = AdaptiveLifParams::from(f, decay);
      if constexpr (f64) table.alif_f64(a, p);
      else table.alif_f32(a, p);
      return;
    }
    case kSpikingReluLowpass: {
      const auto p = SpikingReluParams::from(f, decay);
      if constexpr (f64) table.relu_f64(a, p);
      else table.relu_f32(a, p);
      return;
    }
  }
}

// The same for kind `kind`'s backward kernel (`a`: BackwardArgs).
template <typename Table, typename Args>
void run_backward_kind(const Table& table, int kind, const Args& a,
                       const double* f, double decay) {
  constexpr bool f64 = std::is_same_v<decltype(a.J), const double*>;
  switch (kind) {
    case kLifLowpass: {
      const auto p = LifParams::from(f, decay);
      if constexpr (f64) table.lif_backward_f64(a, p);
      else table.lif_backward_f32(a, p);
      return;
    }
    case kAdaptiveLifLowpass: {
      const auto p = AdaptiveLifParams::from(f, decay);
      if constexpr (f64) table.alif_backward_f64(a, p);
      else table.alif_backward_f32(a, p);
      return;
    }
    case kSpikingReluLowpass: {
      const auto p = SpikingReluParams::from(f, decay);
      if constexpr (f64) table.relu_backward_f64(a, p);
      else table.relu_backward_f32(a, p);
      return;
    }
  }
}

}  // namespace snntorch_nengo
