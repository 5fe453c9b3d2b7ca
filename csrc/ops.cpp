// torch custom ops over the fused kernels (namespace snntorch_nengo_cpp).
//
//   torch.ops.snntorch_nengo_cpp.<name>(J, *states, filtered, dt, *params, decay)
//     -> (output, filtered_seq, *states, filtered)
//       one op per neuron kind: names and schemas in neuron_specs.h (generated
//       from snntorch_nengo/neurons/specs.py), e.g. lif_lowpass; J may be one
//       row expanded over T (stride 0: an input held over the window);
//       filtered [0] (N > 0): no lowpass, filtered_seq [T, 0] and filtered [0]
//   torch.ops.snntorch_nengo_cpp.<name>_backward(J, *states, filtered,
//       grad_output?, grad_filtered_seq?, *grad_states?, grad_filtered?, dt,
//       *params, decay, surrogate, surrogate_param) -> (grad_J, *grad_states,
//       grad_filtered): the gradients of the inputs (BPTT, recomputing the
//       forward pass; see BackwardArgs in neurons.h)
//   torch.ops.snntorch_nengo_cpp.spike_matmul(X, Wt, max_density) -> X @ Wt,
//       visiting only X's nonzero entries (spikes: mostly zero); a dense
//       product when more than max_density of X is nonzero; X may be the
//       transpose of a contiguous tensor (read in place, not copied)
//       product when more than max_density of X is nonzero
//   torch.ops.snntorch_nengo_cpp.linear_filter_scan(u, x0, A, B, C, D, general,
//       reverse, y0=None) -> (y, x_final): T steps of a linear filter of S
//       states (nengo's LinearFilter; ScanArgs in neurons.h), u and y [T, N],
//       x0 and x_final [S, N], A [S * S], B and C [S] as float lists; with
//       y0 [N], y is [T + 1, N] with y0 as its first row; u may be one row
//       expanded over T (stride 0: an input held over the window)
//   torch.ops.snntorch_nengo_cpp.kernel_isa() -> str
//
// CPU only, float32/float64; J is [T, N], states [N]. The
// differentiable, device-generic ops are snntorch_nengo::* in
// snntorch_nengo/kernels/ops.py, which call these on CPU.
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>
#include <ATen/Version.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/mm.h>
#include <c10/util/Exception.h>
#include <torch/library.h>

#include <optional>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include "neurons.h"

namespace snntorch_nengo {

const KernelTable& active_kernels() {
  // torch's own choice ("DEFAULT", "AVX2", "AVX512", ...; ATEN_CPU_CAPABILITY
  // overrides it), fixed at startup.
  static const std::string cap = at::get_cpu_capability();
#if defined(SNN_HAVE_AVX512)
  if (cap == "AVX512") return kernels_AVX512();
#endif
#if defined(SNN_HAVE_AVX2)
  // (torch on AVX512 without our AVX512 build: the AVX2 kernels run the same
  // Sleef algorithms, at half the width)
  if (cap == "AVX2" || cap == "AVX512") return kernels_AVX2();
#endif
  return kernels_DEFAULT();
}

namespace {

void check_inputs(const char* op, const at::Tensor& J, const std::vector<at::Tensor>& states) {
  TORCH_CHECK(J.dim() == 2, op, ": J must be [T, N], got ", J.sizes());
  TORCH_CHECK(J.device().is_cpu(), op, ": J must be on the CPU");
  TORCH_CHECK(
      J.scalar_type() == at::kFloat || J.scalar_type() == at::kDouble,
      op, ": only float32 and float64 are supported, got ", J.scalar_type());
  for (const auto& s : states) {
    TORCH_CHECK(s.dim() == 1 && s.size(0) == J.size(1), op,
                ": states must be [N] = [", J.size(1), "], got ", s.sizes());
    TORCH_CHECK(s.scalar_type() == J.scalar_type(), op,
                ": states must have J's dtype ", J.scalar_type(), ", got ", s.scalar_type());
    TORCH_CHECK(s.device().is_cpu(), op, ": states must be on the CPU");
  }
}

// Runs `kernel` on contiguous copies; returns (output, filtered_seq,
// *states, filtered). An empty `filtered` ([0] for N > 0) means no lowpass:
// filtered_seq comes back [T, 0] and filtered [0], and the kernel writes
// neither (a whole [T, N] stream less; the engine never uses the filter).
template <typename Fn>
std::vector<at::Tensor> run(const char* op, const at::Tensor& J_, const std::vector<at::Tensor>& states_,
                            const at::Tensor& filtered_, Fn&& kernel) {
  const bool no_filter = filtered_.dim() == 1 && filtered_.numel() == 0;
  std::vector<at::Tensor> all = states_;
  if (!no_filter) all.push_back(filtered_);
  check_inputs(op, J_, all);
  // J the same at every step (a window's held input, expanded over T) is read
  // from its one row rather than copied T times
  const bool held = J_.size(0) > 1 && J_.stride(0) == 0;
  const at::Tensor J = held ? J_.select(0, 0).contiguous() : J_.contiguous();
  std::vector<at::Tensor> states;
  for (const auto& s : states_) states.push_back(s.contiguous());
  const at::Tensor filtered = filtered_.contiguous();

  auto opts = J.options();
  const int64_t T = J_.size(0), N = J_.size(1);
  std::vector<at::Tensor> result;
  result.push_back(at::empty({T, N}, opts));  // output
  const int64_t F = no_filter ? 0 : N;
  result.push_back(at::empty({T, F}, opts));  // filtered_seq
  for (size_t i = 0; i < states.size(); ++i) result.push_back(at::empty({N}, opts));
  result.push_back(at::empty({F}, opts));  // filtered

  AT_DISPATCH_FLOATING_TYPES(J.scalar_type(), "snntorch_nengo_cpp", [&] {
    FusedArgs<scalar_t> a;
    a.J = J.const_data_ptr<scalar_t>();
    a.j_held = held;
    a.steps = T;
    a.n = N;
    for (size_t i = 0; i < states.size(); ++i) {
      a.state_in[i] = states[i].const_data_ptr<scalar_t>();
      a.state_out[i] = result[2 + i].mutable_data_ptr<scalar_t>();
    }
    a.output = result[0].mutable_data_ptr<scalar_t>();
    if (!no_filter) {  // else null: the kernels skip the lowpass
      a.filtered_in = filtered.const_data_ptr<scalar_t>();
      a.filtered_seq = result[1].mutable_data_ptr<scalar_t>();
      a.filtered_out = result.back().mutable_data_ptr<scalar_t>();
    }
    a.num_threads = at::get_num_threads();
    kernel(a);
  });
  return result;
}

// The C++ op of neuron kind `Kind`, boxed: its schema (neuron_specs.h) fixes
// the arguments, (J, the states, filtered, dt, the parameters, decay).
template <int Kind>
void fused_op(const c10::OperatorHandle&, torch::jit::Stack* stack) {
  constexpr int S = kNeuronStates[Kind];
  constexpr int F = kNeuronFloats[Kind];  // dt and the parameters
  constexpr int n_args = 2 + S + F + 1;
  auto args = torch::jit::last(*stack, n_args);
  const at::Tensor J = args[0].toTensor();
  std::vector<at::Tensor> states;
  for (int s = 0; s < S; ++s) states.push_back(args[1 + s].toTensor());
  const at::Tensor filtered = args[1 + S].toTensor();
  double f[F];
  for (int i = 0; i < F; ++i) f[i] = args[2 + S + i].toDouble();
  const double decay = args[2 + S + F].toDouble();
  torch::jit::drop(*stack, n_args);
  const KernelTable& table = active_kernels();
  auto result = run(kNeuronOps[Kind], J, states, filtered,
                    [&](const auto& a) { run_kind(table, Kind, a, f, decay); });
  for (auto& r : result) torch::jit::push(*stack, std::move(r));
}

// The backward op of neuron kind `Kind`, boxed (schema in neuron_specs.h):
// (J, the states, filtered, an optional gradient per output, dt, the
// parameters, decay, surrogate, surrogate_param) -> (grad J, grad states,
// grad filtered).
template <int Kind>
void backward_op(const c10::OperatorHandle&, torch::jit::Stack* stack) {
  constexpr int S = kNeuronStates[Kind];
  constexpr int F = kNeuronFloats[Kind];
  constexpr int n_in = 2 + S;       // J, states, filtered
  constexpr int n_grads = 3 + S;    // output, filtered_seq, states, filtered
  constexpr int n_args = n_in + n_grads + F + 3;
  const char* op = kNeuronBackwardOps[Kind];
  auto args = torch::jit::last(*stack, n_args);
  std::vector<at::Tensor> inputs;
  for (int i = 0; i < n_in; ++i) inputs.push_back(args[i].toTensor().contiguous());
  std::vector<at::Tensor> grads;  // undefined: zero
  for (int i = 0; i < n_grads; ++i) {
    const auto& g = args[n_in + i];
    grads.push_back(g.isNone() ? at::Tensor() : g.toTensor().contiguous());
  }
  double f[F];
  for (int i = 0; i < F; ++i) f[i] = args[n_in + n_grads + i].toDouble();
  const double decay = args[n_in + n_grads + F].toDouble();
  const int64_t surrogate = args[n_in + n_grads + F + 1].toInt();
  const double surrogate_param = args[n_in + n_grads + F + 2].toDouble();
  torch::jit::drop(*stack, n_args);

  const at::Tensor& J = inputs[0];
  check_inputs(op, J, std::vector<at::Tensor>(inputs.begin() + 1, inputs.end()));
  TORCH_CHECK(surrogate >= 0 && surrogate < kSurrogates, op, ": unknown surrogate id ",
              surrogate, " (0 to ", kSurrogates - 1, ")");
  for (int i = 0; i < n_grads; ++i) {
    if (!grads[i].defined()) continue;
    const bool sequence = i < 2;
    TORCH_CHECK(sequence ? grads[i].sizes() == J.sizes()
                         : (grads[i].dim() == 1 && grads[i].size(0) == J.size(1)),
                op, ": gradient ", i, " must have shape ",
                sequence ? J.sizes() : at::IntArrayRef{J.size(1)}, ", got ", grads[i].sizes());
    TORCH_CHECK(grads[i].scalar_type() == J.scalar_type() && grads[i].device().is_cpu(),
                op, ": gradients must be CPU tensors of J's dtype ", J.scalar_type());
  }

  auto opts = J.options();
  std::vector<at::Tensor> result;
  result.push_back(at::empty(J.sizes(), opts));
  for (int i = 1; i < n_in; ++i) result.push_back(at::empty({J.size(1)}, opts));

  const KernelTable& table = active_kernels();
  AT_DISPATCH_FLOATING_TYPES(J.scalar_type(), "snntorch_nengo_cpp_backward", [&] {
    auto ptr = [](const at::Tensor& t) {
      return t.defined() ? t.const_data_ptr<scalar_t>() : nullptr;
    };
    BackwardArgs<scalar_t> a;
    a.J = J.const_data_ptr<scalar_t>();
    a.steps = J.size(0);
    a.n = J.size(1);
    for (int s = 0; s < S; ++s) {
      a.state_in[s] = inputs[1 + s].const_data_ptr<scalar_t>();
      a.grad_state[s] = ptr(grads[2 + s]);
      a.grad_state_in[s] = result[1 + s].mutable_data_ptr<scalar_t>();
    }
    a.filtered_in = inputs[1 + S].const_data_ptr<scalar_t>();
    a.grad_output = ptr(grads[0]);
    a.grad_filtered_seq = ptr(grads[1]);
    a.grad_filtered = ptr(grads[2 + S]);
    a.grad_J = result[0].mutable_data_ptr<scalar_t>();
    a.grad_filtered_in = result[1 + S].mutable_data_ptr<scalar_t>();
    a.surrogate = int(surrogate);
    a.surrogate_param = surrogate_param;
    a.num_threads = at::get_num_threads();
    run_backward_kind(table, Kind, a, f, decay);
  });
  for (auto& r : result) torch::jit::push(*stack, std::move(r));
}

template <int... Kinds>
void register_fused(torch::Library& m, std::integer_sequence<int, Kinds...>) {
  (m.impl(kNeuronOps[Kinds], torch::CppFunction::makeFromBoxedFunction<&fused_op<Kinds>>()),
   ...);
  (m.impl(kNeuronBackwardOps[Kinds],
          torch::CppFunction::makeFromBoxedFunction<&backward_op<Kinds>>()),
   ...);
}

}  // namespace

at::Tensor spike_matmul(const at::Tensor& X_, const at::Tensor& Wt_, double max_density) {
  TORCH_CHECK(X_.dim() == 2 && Wt_.dim() == 2, "spike_matmul: X and Wt must be 2-D, got ",
              X_.sizes(), " and ", Wt_.sizes());
  TORCH_CHECK(X_.size(1) == Wt_.size(0), "spike_matmul: X ", X_.sizes(),
              " and Wt ", Wt_.sizes(), " do not multiply");
  TORCH_CHECK(X_.device().is_cpu() && Wt_.device().is_cpu(), "spike_matmul: CPU tensors only");
  TORCH_CHECK(X_.scalar_type() == Wt_.scalar_type() &&
                  (X_.scalar_type() == at::kFloat || X_.scalar_type() == at::kDouble),
              "spike_matmul: X and Wt must both be float32 or float64, got ",
              X_.scalar_type(), " and ", Wt_.scalar_type());
  const KernelTable& table = active_kernels();
  const int threads = at::get_num_threads();
  if (!X_.is_contiguous() && X_.t().is_contiguous()) {
    // X is a transpose (a weight gradient, X.t() @ grad): scatter from it in
    // place rather than copy it (the same sums, in the same order)
    const at::Tensor A = X_.t();
    const at::Tensor G = Wt_.contiguous();
    at::Tensor Y = at::empty({A.size(1), G.size(1)}, A.options());
    const bool done = A.scalar_type() == at::kFloat
        ? table.spike_mm_tn_f32(A.const_data_ptr<float>(), G.const_data_ptr<float>(),
                                Y.mutable_data_ptr<float>(), A.size(0), A.size(1), G.size(1),
                                max_density, threads)
        : table.spike_mm_tn_f64(A.const_data_ptr<double>(), G.const_data_ptr<double>(),
                                Y.mutable_data_ptr<double>(), A.size(0), A.size(1), G.size(1),
                                max_density, threads);
    return done ? Y : at::mm_out(Y, X_, G);
  }
  const at::Tensor X = X_.contiguous();
  const at::Tensor Wt = Wt_.contiguous();
  at::Tensor Y = at::empty({X.size(0), Wt.size(1)}, X.options());
  const bool done = X.scalar_type() == at::kFloat
      ? table.spike_mm_f32(X.const_data_ptr<float>(), Wt.const_data_ptr<float>(),
                           Y.mutable_data_ptr<float>(), X.size(0), X.size(1), Wt.size(1),
                           max_density, threads)
      : table.spike_mm_f64(X.const_data_ptr<double>(), Wt.const_data_ptr<double>(),
                           Y.mutable_data_ptr<double>(), X.size(0), X.size(1), Wt.size(1),
                           max_density, threads);
  return done ? Y : at::mm_out(Y, X, Wt);
}

namespace {
void scan_entry(const KernelTable& table, const ScanArgs<float>& a) {
  table.linear_filter_scan_f32(a);
}
void scan_entry(const KernelTable& table, const ScanArgs<double>& a) {
  table.linear_filter_scan_f64(a);
}
}  // namespace

std::tuple<at::Tensor, at::Tensor> linear_filter_scan(
    const at::Tensor& u_, const at::Tensor& x0_, at::ArrayRef<double> A,
    at::ArrayRef<double> B, at::ArrayRef<double> C, double D, bool general, bool reverse,
    const std::optional<at::Tensor>& y0_) {
  const char* op = "linear_filter_scan";
  const int64_t S = static_cast<int64_t>(B.size());
  TORCH_CHECK(S >= 1 && S <= kMaxScanStates, op, ": 1 to ", kMaxScanStates,
              " states supported, got B of length ", S);
  TORCH_CHECK(static_cast<int64_t>(A.size()) == S * S && static_cast<int64_t>(C.size()) == S,
              op, ": A must have S * S = ", S * S, " and C S = ", S, " entries, got ",
              A.size(), " and ", C.size());
  TORCH_CHECK(u_.dim() == 2, op, ": u must be [T, N], got ", u_.sizes());
  TORCH_CHECK(x0_.dim() == 2 && x0_.size(0) == S && x0_.size(1) == u_.size(1), op,
              ": x0 must be [S, N] = [", S, ", ", u_.size(1), "], got ", x0_.sizes());
  TORCH_CHECK(u_.device().is_cpu() && x0_.device().is_cpu(), op, ": CPU tensors only");
  TORCH_CHECK(u_.scalar_type() == x0_.scalar_type() &&
                  (u_.scalar_type() == at::kFloat || u_.scalar_type() == at::kDouble),
              op, ": u and x0 must both be float32 or float64, got ", u_.scalar_type(),
              " and ", x0_.scalar_type());
  // an input the same at every step (a window's held input, expanded over
  // time) is read from its one row, not copied T times
  const bool held = u_.size(0) > 1 && u_.stride(0) == 0;
  const at::Tensor u = held ? u_.select(0, 0).contiguous().expand(u_.sizes()) : u_.contiguous();
  const at::Tensor x0 = x0_.contiguous();
  // with y0, y has it as its first row: a window's readers of the output see
  // the previous step's, so the rows before and after each step are both views
  const bool prepend = y0_.has_value() && y0_->defined();
  if (prepend) {
    TORCH_CHECK(y0_->dim() == 1 && y0_->size(0) == u.size(1) &&
                    y0_->scalar_type() == u.scalar_type() && y0_->device().is_cpu(),
                op, ": y0 must be a CPU [N] = [", u.size(1), "] tensor of u's dtype, got ",
                y0_->sizes(), " ", y0_->scalar_type());
  }
  at::Tensor y_all = at::empty({u.size(0) + (prepend ? 1 : 0), u.size(1)}, u.options());
  if (prepend) y_all[0].copy_(*y0_);
  at::Tensor x = at::empty(x0.sizes(), x0.options());
  const KernelTable& table = active_kernels();
  AT_DISPATCH_FLOATING_TYPES(u.scalar_type(), "linear_filter_scan", [&] {
    ScanArgs<scalar_t> a;
    a.u = u.const_data_ptr<scalar_t>();
    a.u_step = held ? 0 : u.size(1);
    a.steps = u.size(0);
    a.n = u.size(1);
    a.states = int(S);
    a.x_in = x0.const_data_ptr<scalar_t>();
    a.y = y_all.mutable_data_ptr<scalar_t>() + (prepend ? u.size(1) : 0);
    a.x_out = x.mutable_data_ptr<scalar_t>();
    a.A = A.data();
    a.B = B.data();
    a.C = C.data();
    a.D = D;
    a.general = general;
    a.reverse = reverse;
    a.num_threads = at::get_num_threads();
    scan_entry(table, a);
  });
  return {y_all, x};
}

std::string kernel_isa() { return active_kernels().name; }

}  // namespace snntorch_nengo

TORCH_LIBRARY(snntorch_nengo_cpp, m) {
  for (const char* schema : snntorch_nengo::kNeuronSchemas) m.def(schema);
  for (const char* schema : snntorch_nengo::kNeuronBackwardSchemas) m.def(schema);
  m.def("spike_matmul(Tensor X, Tensor Wt, float max_density) -> Tensor");
  m.def(
      "linear_filter_scan(Tensor u, Tensor x0, float[] A, float[] B, float[] C, float D, "
      "bool general, bool reverse, Tensor? y0=None) -> (Tensor, Tensor)");
  m.def("kernel_isa() -> str", &snntorch_nengo::kernel_isa);
}

TORCH_LIBRARY_IMPL(snntorch_nengo_cpp, CPU, m) {
  snntorch_nengo::register_fused(
      m, std::make_integer_sequence<int, snntorch_nengo::kNeuronKinds>{});
  m.impl("spike_matmul", &snntorch_nengo::spike_matmul);
  m.impl("linear_filter_scan", &snntorch_nengo::linear_filter_scan);
}
