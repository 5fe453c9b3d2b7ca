// Fused multi-step neuron + lowpass kernels: shared declarations.
//
// Every kernel runs T steps of a Nengo neuron update followed by Nengo's
// Lowpass (OneX) synapse on the neuron output, time-major with one neuron per
// column:
//
//   output[t], state = neuron_step(J[t], state)
//   filtered = decay * filtered + (1 - decay) * output[t]
//   filtered_seq[t] = filtered
//
// The semantics are defined by snntorch_nengo/kernels/reference.py; each
// operation here is the same IEEE operation, in the same order, as the torch
// reference, so float64 results are bitwise equal to it.
//
// The kernels are compiled once per CPU capability (kernels.cpp with
// -DCPU_CAPABILITY=DEFAULT, AVX2, AVX512 and matching -m flags), like ATen's
// own kernels, because at::vec::Vectorized<T>::expm1/log1p are Sleef on AVX2
// and AVX512 and std:: on DEFAULT: the op (ops.cpp) picks the table matching
// at::native::get_cpu_capability(), i.e. the code path torch itself uses.
//
// The neuron kinds, their states and parameters (kNeuronStates, LifParams,
// ...) come from neuron_specs.h, generated from the Python spec table
// (snntorch_nengo/neurons/specs.py).
#pragma once

#include <cstdint>

#include "neuron_specs.h"

namespace snntorch_nengo {

// Pointers of one fused call, states in their spec's order (neuron_specs.h).
// All contiguous: J/output/filtered_seq [T, N], states [N]; the three filter
// pointers all null for no lowpass (nothing of it computed or stored).
template <typename T>
struct FusedArgs {
  const T* J = nullptr;
  int64_t steps = 0;  // T
  int64_t n = 0;      // N
  const T* state_in[kMaxStates] = {};
  T* state_out[kMaxStates] = {};
  const T* filtered_in = nullptr;
  T* output = nullptr;
  T* filtered_seq = nullptr;
  T* filtered_out = nullptr;
  int num_threads = 1;
  // J is one row [N] held over every step (the op's J expanded over T)
  bool j_held = false;
};

// Pointers of one backward call (the gradients of a fused call's inputs from
// those of its outputs), states in their spec's order. The forward inputs as
// in FusedArgs; a null gradient of an output means zero. The kernel recomputes
// the forward pass from the inputs (only they are saved between the passes)
// and runs back through time: BPTT through the membrane, refractory and
// adaptation states, with `surrogate`'s derivative (kSurrogate*, of parameter
// `surrogate_param`) at the spike threshold.
template <typename T>
struct BackwardArgs {
  const T* J = nullptr;
  int64_t steps = 0;  // T
  int64_t n = 0;      // N
  const T* state_in[kMaxStates] = {};
  const T* filtered_in = nullptr;
  const T* grad_output = nullptr;        // [T, N] or null
  const T* grad_filtered_seq = nullptr;  // [T, N] or null
  const T* grad_state[kMaxStates] = {};  // [N] or null
  const T* grad_filtered = nullptr;      // [N] or null
  T* grad_J = nullptr;                   // [T, N]
  T* grad_state_in[kMaxStates] = {};     // [N]
  T* grad_filtered_in = nullptr;         // [N]
  int surrogate = 0;
  double surrogate_param = 0.0;
  int num_threads = 1;
};

// One linear_filter_scan call: T steps of a linear time-invariant filter of S
// states on each of N columns, time-major and contiguous. Per step t (t runs
// T-1 down to 0 when `reverse`), with x the [S] state of one column:
//
//   general:  y[t] = C x + D u[t];  x = A x + B u[t]   (output before the update)
//   else:     x = A x + B u[t];     y[t] = C x + D u[t] (output after it)
//
// the step variants of nengo's LinearFilter (General; OneX and NoD). A is
// [S, S] row-major; the sums run left to right over the states, and a zero D
// adds nothing (so that 0 * inf never makes a NaN the reference does not).
template <typename T>
struct ScanArgs {
  const T* u = nullptr;  // [T, N]
  int64_t u_step = 0;    // u's row stride: N, or 0 for an input held over time
  int64_t steps = 0;     // T
  int64_t n = 0;         // N
  int states = 0;        // S
  const T* x_in = nullptr;  // [S, N]
  T* y = nullptr;           // [T, N]
  T* x_out = nullptr;       // [S, N]
  const double* A = nullptr;  // [S * S]
  const double* B = nullptr;  // [S]
  const double* C = nullptr;  // [S]
  double D = 0.0;
  bool general = false;
  bool reverse = false;
  int num_threads = 1;
};

// Filter orders a scan supports (nengo's synapses have 1 or 2 states).
constexpr int kMaxScanStates = 8;

// One table per compiled CPU capability.
struct KernelTable {
  const char* name;
  void (*lif_f32)(const FusedArgs<float>&, const LifParams&);
  void (*lif_f64)(const FusedArgs<double>&, const LifParams&);
  void (*alif_f32)(const FusedArgs<float>&, const AdaptiveLifParams&);
  void (*alif_f64)(const FusedArgs<double>&, const AdaptiveLifParams&);
  void (*relu_f32)(const FusedArgs<float>&, const SpikingReluParams&);
  void (*relu_f64)(const FusedArgs<double>&, const SpikingReluParams&);
  // Y[M, N] = X[M, K] @ Wt[K, N], visiting only the nonzero entries of X;
  // false (Y not written) when more than max_density of X is nonzero
  bool (*spike_mm_f32)(const float* X, const float* Wt, float* Y, int64_t M, int64_t K,
                       int64_t N, double max_density, int num_threads);
  bool (*spike_mm_f64)(const double* X, const double* Wt, double* Y, int64_t M, int64_t K,
                       int64_t N, double max_density, int num_threads);
  void (*lif_backward_f32)(const BackwardArgs<float>&, const LifParams&);
  void (*lif_backward_f64)(const BackwardArgs<double>&, const LifParams&);
  void (*alif_backward_f32)(const BackwardArgs<float>&, const AdaptiveLifParams&);
  void (*alif_backward_f64)(const BackwardArgs<double>&, const AdaptiveLifParams&);
  void (*relu_backward_f32)(const BackwardArgs<float>&, const SpikingReluParams&);
  void (*relu_backward_f64)(const BackwardArgs<double>&, const SpikingReluParams&);
  // Y[K, N] = X[R, K]^T @ G[R, N] (a weight gradient), visiting only X's
  // nonzero entries, without transposing X; the sums run over r in order, as
  // spike_mm of X^T does (the same bits); false (Y not written) as spike_mm
  bool (*spike_mm_tn_f32)(const float* X, const float* G, float* Y, int64_t R, int64_t K,
                          int64_t N, double max_density, int num_threads);
  bool (*spike_mm_tn_f64)(const double* X, const double* G, double* Y, int64_t R, int64_t K,
                          int64_t N, double max_density, int num_threads);
  void (*linear_filter_scan_f32)(const ScanArgs<float>&);
  void (*linear_filter_scan_f64)(const ScanArgs<double>&);
};

const KernelTable& kernels_DEFAULT();
#ifdef SNN_HAVE_AVX2
const KernelTable& kernels_AVX2();
#endif
#ifdef SNN_HAVE_AVX512
const KernelTable& kernels_AVX512();
#endif

// The table torch's own CPU kernels use on this machine (see ops.cpp).
const KernelTable& active_kernels();

}  // namespace snntorch_nengo
