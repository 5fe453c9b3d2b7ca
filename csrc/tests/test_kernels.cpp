// C++ unit tests of the fused neuron + lowpass kernels (run by ctest).
//
// The kernels are compared with a scalar re-implementation of nengo's numpy
// neuron steps (nengo/neurons.py, written out below with std::expm1 and
// std::log1p) and with a few values computed by hand. The DEFAULT kernels use
// std::expm1/log1p too, so they must match the scalar code bit for bit; the
// AVX2/AVX512 kernels use Sleef (as torch's own kernels do there), which can
// differ in the last bit: spikes must match and values be within 1e-12.
#include <ATen/ATen.h>
#include <ATen/core/dispatch/Dispatcher.h>
#include <c10/util/Exception.h>

#include <cmath>
#include <cstdint>
#include <algorithm>
#include <cstdio>
#include <functional>
#include <random>
#include <string>
#include <vector>

#include "neurons.h"

using namespace snntorch_nengo;

namespace {

int g_failures = 0;
int g_checks = 0;

#define EXPECT(cond, ...)                                                     \
  do {                                                                       \
    ++g_checks;                                                              \
    if (!(cond)) {                                                           \
      ++g_failures;                                                          \
      std::fprintf(stderr, "%s:%d: EXPECT failed: %s ", __FILE__, __LINE__, #cond); \
      std::fprintf(stderr, __VA_ARGS__);                                     \
      std::fprintf(stderr, "\n");                                            \
    }                                                                        \
  } while (0)

bool close(double a, double b, double rtol, double atol) {
  return std::fabs(a - b) <= atol + rtol * std::fabs(b);
}

// ---- scalar nengo (one neuron at a time; same casts as the torch reference) ----

template <typename T>
struct ScalarState {
  std::vector<T> v, r, n, f;
};

template <typename T>
T scalar_lif(const LifParams& p, T J, T& v, T& r) {
  const T dt = T(p.dt), tau_rc = T(p.tau_rc);
  r = r - dt;                                                   // refractory_time -= dt
  T delta_t = std::min(std::max(dt - r, T(0)), dt);             // clip(dt - r, 0, dt)
  v = v - (J - v) * std::expm1(-delta_t / tau_rc);              // voltage -= ...
  const bool spiked = v > T(1);
  const T output = (spiked ? T(1) : T(0)) * T(p.amplitude / p.dt);
  if (spiked) {
    const T t_spike = dt + tau_rc * std::log1p(-(v - T(1)) / (J - T(1)));
    r = T(p.tau_ref) + t_spike;
  }
  if (v < T(p.min_voltage)) v = T(p.min_voltage);
  if (spiked) v = T(0);
  return output;
}

template <typename T>
T scalar_alif(const AdaptiveLifParams& p, T J, T& v, T& r, T& n) {
  const LifParams lp{p.dt, p.tau_rc, p.tau_ref, p.min_voltage, p.amplitude, p.decay};
  const T output = scalar_lif<T>(lp, J - n, v, r);
  n = n + T(p.dt / p.tau_n) * (T(p.inc_n) * output - n);
  return output;
}

template <typename T>
T scalar_relu(const SpikingReluParams& p, T J, T& v) {
  v = v + std::max(J, T(0)) * T(p.dt);
  const T n_spikes = std::floor(v);
  v = v - n_spikes;
  return T(p.amplitude / p.dt) * n_spikes;
}

template <typename T>
T lowpass(T f, T out, double decay) {
  return T(decay) * f + T(1.0 - decay) * out;
}

// ---- running a kernel on std::vectors ----

template <typename T>
struct Run {
  int64_t steps, n;
  std::vector<T> J, output, filtered_seq, filtered_in, filtered_out;
  std::vector<std::vector<T>> state_in, state_out;

  Run(int64_t steps_, int64_t n_, int n_states)
      : steps(steps_), n(n_), J(steps_ * n_), output(steps_ * n_), filtered_seq(steps_ * n_),
        filtered_in(n_), filtered_out(n_), state_in(n_states, std::vector<T>(n_)),
        state_out(n_states, std::vector<T>(n_)) {}

  FusedArgs<T> args(int threads = 1) {
    FusedArgs<T> a;
    a.J = J.data();
    a.steps = steps;
    a.n = n;
    for (size_t s = 0; s < state_in.size(); ++s) {
      a.state_in[s] = state_in[s].data();
      a.state_out[s] = state_out[s].data();
    }
    a.filtered_in = filtered_in.data();
    a.output = output.data();
    a.filtered_seq = filtered_seq.data();
    a.filtered_out = filtered_out.data();
    a.num_threads = threads;
    return a;
  }
};

// Random currents: mostly in [-1, 3], some exactly 1 (rheobase), some just
// around the threshold, some large.
template <typename T>
void fill_inputs(Run<T>& run, uint32_t seed, bool adaptation, double J_scale = 1.0) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<double> uni(0.0, 1.0);
  for (int64_t i = 0; i < run.steps * run.n; ++i) {
    double u = uni(rng), J;
    if (u < 0.05) J = 1.0;
    else if (u < 0.15) J = 1.0 + (uni(rng) - 0.5) * 1e-6;
    else if (u < 0.2) J = 20.0 * uni(rng);
    else J = -1.0 + 4.0 * uni(rng);
    run.J[i] = T(J * J_scale);
  }
  for (int64_t i = 0; i < run.n; ++i) {
    run.state_in[0][i] = T(uni(rng));                                         // voltage
    if (run.state_in.size() > 1) run.state_in[1][i] = T(0.004 * uni(rng) - 0.001);  // refractory
    if (adaptation) run.state_in[2][i] = T(0.5 * uni(rng));                   // adaptation
    run.filtered_in[i] = T(uni(rng) * 10 - 5);
  }
}

// Scalar reference on the same inputs: `step(J, states) -> output`.
template <typename T>
Run<T> scalar_reference(const Run<T>& in, double decay,
                        const std::function<T(T, std::vector<T*>&)>& step) {
  Run<T> out = in;
  for (int64_t i = 0; i < in.n; ++i) {
    std::vector<T> s(in.state_in.size());
    for (size_t k = 0; k < s.size(); ++k) s[k] = in.state_in[k][i];
    std::vector<T*> ptrs;
    for (auto& x : s) ptrs.push_back(&x);
    T f = in.filtered_in[i];
    for (int64_t t = 0; t < in.steps; ++t) {
      const T o = step(in.J[t * in.n + i], ptrs);
      f = lowpass(f, o, decay);
      out.output[t * in.n + i] = o;
      out.filtered_seq[t * in.n + i] = f;
    }
    for (size_t k = 0; k < s.size(); ++k) out.state_out[k][i] = s[k];
    out.filtered_out[i] = f;
  }
  return out;
}

// exact: bitwise equal; otherwise spikes equal and values within rtol.
template <typename T>
void compare(const char* what, const Run<T>& got, const Run<T>& want, bool exact, double rtol) {
  int64_t bad = 0, bad_spikes = 0;
  auto eq = [&](T a, T b) {
    return exact ? (a == b || (std::isnan(a) && std::isnan(b))) : close(a, b, rtol, rtol);
  };
  for (size_t i = 0; i < got.output.size(); ++i) {
    if (got.output[i] != want.output[i]) ++bad_spikes;
    if (!eq(got.filtered_seq[i], want.filtered_seq[i])) ++bad;
  }
  for (size_t k = 0; k < got.state_out.size(); ++k)
    for (int64_t i = 0; i < got.n; ++i)
      if (!eq(got.state_out[k][i], want.state_out[k][i])) ++bad;
  for (int64_t i = 0; i < got.n; ++i)
    if (!eq(got.filtered_out[i], want.filtered_out[i])) ++bad;
  EXPECT(bad_spikes == 0 && bad == 0, "[%s] %lld spike mismatches, %lld value mismatches", what,
        (long long)bad_spikes, (long long)bad);
}

const LifParams kLif{0.001, 0.03, 0.003, -0.5, 0.7, 0.93};
const AdaptiveLifParams kAlif{0.001, 0.03, 0.003, -0.5, 0.7, 0.4, 0.08, 0.93};
const SpikingReluParams kRelu{0.001, 0.7, 0.93};

// the table entry for T
template <typename T, typename P>
void call(void (*f32)(const FusedArgs<float>&, const P&),
          void (*f64)(const FusedArgs<double>&, const P&), const FusedArgs<T>& a, const P& p) {
  if constexpr (sizeof(T) == 8) {
    f64(a, p);
  } else {
    f32(a, p);
  }
}

template <typename T>
void test_against_scalar(const KernelTable& table, bool exact, double rtol) {
  const char* tname = sizeof(T) == 8 ? "f64" : "f32";
  for (int64_t n : {1, 7, 16, 33, 130}) {
    const int64_t steps = 700;
    std::string tag = std::string(table.name) + " " + tname + " N=" + std::to_string(n);
    {
      Run<T> run(steps, n, 2);
      fill_inputs(run, 1 + n, false);
      auto want = scalar_reference<T>(run, kLif.decay, [](T J, std::vector<T*>& s) {
        return scalar_lif<T>(kLif, J, *s[0], *s[1]);
      });
      call(table.lif_f32, table.lif_f64, run.args(), kLif);
      compare(("lif " + tag).c_str(), run, want, exact, rtol);
    }
    {
      Run<T> run(steps, n, 3);
      fill_inputs(run, 100 + n, true);
      auto want = scalar_reference<T>(run, kAlif.decay, [](T J, std::vector<T*>& s) {
        return scalar_alif<T>(kAlif, J, *s[0], *s[1], *s[2]);
      });
      call(table.alif_f32, table.alif_f64, run.args(), kAlif);
      compare(("alif " + tag).c_str(), run, want, exact, rtol);
    }
    {
      Run<T> run(steps, n, 1);
      fill_inputs(run, 200 + n, false, 300.0);
      auto want = scalar_reference<T>(run, kRelu.decay, [](T J, std::vector<T*>& s) {
        return scalar_relu<T>(kRelu, J, *s[0]);
      });
      call(table.relu_f32, table.relu_f64, run.args(), kRelu);
      compare(("relu " + tag).c_str(), run, want, exact, rtol);
    }
  }
}

// ---- hand-computed values ----

void test_hand_computed() {
  const KernelTable& k = kernels_DEFAULT();
  const LifParams p{0.001, 0.02, 0.002, 0.0, 1.0, 0.9};

  {  // one sub-threshold step from rest: v = J * (1 - exp(-dt / tau_rc))
    Run<double> run(1, 1, 2);
    run.J[0] = 2.0;
    k.lif_f64(run.args(), p);
    EXPECT(close(run.state_out[0][0], 2.0 * (1.0 - std::exp(-0.05)), 1e-15, 0), "v=%.17g",
          run.state_out[0][0]);
    EXPECT(run.output[0] == 0.0, "output=%g", run.output[0]);
    EXPECT(close(run.state_out[1][0], -0.001, 1e-15, 0), "r=%.17g", run.state_out[1][0]);
    EXPECT(run.filtered_out[0] == 0.0, "filtered=%g", run.filtered_out[0]);
  }
  {  // a spike: v0 = 0.99, J = 2 -> v = 0.99 + 1.01 (1 - e^-0.05) > 1
    Run<double> run(1, 1, 2);
    run.J[0] = 2.0;
    run.state_in[0][0] = 0.99;
    run.filtered_in[0] = 10.0;
    k.lif_f64(run.args(), p);
    const double v = 0.99 + 1.01 * (1.0 - std::exp(-0.05));
    const double t_spike = 0.001 + 0.02 * std::log(1.0 - (v - 1.0) / (2.0 - 1.0));
    EXPECT(run.output[0] == 1000.0, "output=%g", run.output[0]);
    EXPECT(run.state_out[0][0] == 0.0, "v=%g", run.state_out[0][0]);
    EXPECT(close(run.state_out[1][0], 0.002 + t_spike, 1e-12, 0), "r=%.17g want %.17g",
          run.state_out[1][0], 0.002 + t_spike);
    EXPECT(t_spike > 0 && t_spike < 0.001, "t_spike=%g", t_spike);
    EXPECT(close(run.filtered_out[0], 0.9 * 10.0 + 0.1 * 1000.0, 1e-15, 0), "filtered=%.17g",
          run.filtered_out[0]);
  }
  {  // steady firing rate 1 / (tau_ref + tau_rc log(1 + 1 / (J - 1))) over 10 s
    const int64_t steps = 10000;
    Run<double> run(steps, 3, 2);
    const double Js[3] = {1.5, 2.0, 5.0};
    for (int64_t t = 0; t < steps; ++t)
      for (int i = 0; i < 3; ++i) run.J[t * 3 + i] = Js[i];
    k.lif_f64(run.args(), p);
    for (int i = 0; i < 3; ++i) {
      double count = 0;
      for (int64_t t = 0; t < steps; ++t) count += run.output[t * 3 + i] * p.dt;
      const double rate = 1.0 / (0.002 + 0.02 * std::log1p(1.0 / (Js[i] - 1.0)));
      EXPECT(std::fabs(count - rate * 10.0) <= 1.5, "J=%g: %g spikes, rate*10s=%g", Js[i], count,
            rate * 10.0);
    }
  }
  {  // below rheobase (J <= 1) never spikes; voltage floors at min_voltage
    const LifParams q{0.001, 0.02, 0.002, -0.3, 1.0, 0.5};
    Run<double> run(2000, 2, 2);
    for (int64_t t = 0; t < 2000; ++t) {
      run.J[t * 2] = 1.0;
      run.J[t * 2 + 1] = -50.0;
    }
    run.filtered_in = {8.0, 8.0};
    k.lif_f64(run.args(), q);
    double spikes = 0;
    for (double o : run.output) spikes += o;
    EXPECT(spikes == 0.0, "spikes=%g", spikes);
    EXPECT(run.state_out[0][0] <= 1.0 && run.state_out[0][0] > 0.99, "v=%g", run.state_out[0][0]);
    EXPECT(run.state_out[0][1] == -0.3, "v=%g", run.state_out[0][1]);
    // no input: the lowpass halves each step
    EXPECT(run.filtered_seq[0] == 4.0 && run.filtered_seq[2] == 2.0 && run.filtered_seq[4] == 1.0,
          "filtered=%g %g %g", run.filtered_seq[0], run.filtered_seq[2], run.filtered_seq[4]);
  }
  {  // spiking relu: J = 250 Hz spikes every 4th step, with amplitude / dt
    const SpikingReluParams q{0.001, 0.5, 0.0};
    Run<double> run(12, 1, 1);
    for (auto& j : run.J) j = 250.0;
    k.relu_f64(run.args(), q);
    for (int t = 0; t < 12; ++t) {
      const double want = (t % 4 == 3) ? 500.0 : 0.0;
      EXPECT(run.output[t] == want, "t=%d output=%g", t, run.output[t]);
      EXPECT(run.filtered_seq[t] == want, "t=%d filtered=%g", t, run.filtered_seq[t]);  // decay 0
    }
    EXPECT(run.state_out[0][0] == 0.0, "v=%g", run.state_out[0][0]);
    // negative input is clipped to zero; 2.5 spikes per step: 2 then 3
    Run<double> r2(2, 2, 1);
    r2.J = {-100.0, 2500.0, -100.0, 2500.0};
    r2.state_in[0] = {0.25, 0.0};
    k.relu_f64(r2.args(), q);
    EXPECT(r2.output[0] == 0.0 && r2.output[2] == 0.0 && r2.state_out[0][0] == 0.25, "clip");
    EXPECT(r2.output[1] == 1000.0 && r2.output[3] == 1500.0 && r2.state_out[0][1] == 0.0,
          "counts %g %g", r2.output[1], r2.output[3]);
  }
  {  // adaptive LIF: adaptation jumps by (dt / tau_n) * inc_n * amplitude / dt on a spike
    const AdaptiveLifParams q{0.001, 0.02, 0.002, 0.0, 1.0, 0.5, 0.1, 0.9};
    Run<double> run(1, 1, 3);
    run.J[0] = 2.0;
    run.state_in[0][0] = 0.99;
    run.state_in[2][0] = 0.2;
    k.alif_f64(run.args(), q);
    // J - n = 1.8: v = 0.99 + 0.81 (1 - e^-0.05) > 1
    EXPECT(run.output[0] == 1000.0, "output=%g", run.output[0]);
    const double n = 0.2 + (0.001 / 0.5) * (0.1 * 1000.0 - 0.2);
    EXPECT(close(run.state_out[2][0], n, 1e-15, 0), "n=%.17g want %.17g", run.state_out[2][0], n);
  }
}

// ---- threading, partial blocks, the registered ops ----

void test_threads() {
  const KernelTable& k = active_kernels();
  Run<double> a(50, 4099, 2);
  fill_inputs(a, 7, false);
  Run<double> b = a;
  k.lif_f64(a.args(1), kLif);
  k.lif_f64(b.args(2), kLif);
  compare("threads 1 vs 2", a, b, true, 0);
}

void test_registered_ops() {
  auto op = c10::Dispatcher::singleton()
                .findSchemaOrThrow("snntorch_nengo_cpp::lif_lowpass", "")
                .typed<std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor>(
                    const at::Tensor&, const at::Tensor&, const at::Tensor&, const at::Tensor&,
                    double, double, double, double, double, double)>();
  Run<double> run(300, 21, 2);
  fill_inputs(run, 3, false);
  auto opts = at::TensorOptions().dtype(at::kDouble);
  at::Tensor J = at::from_blob(run.J.data(), {run.steps, run.n}, opts).clone();
  at::Tensor v = at::from_blob(run.state_in[0].data(), {run.n}, opts).clone();
  at::Tensor r = at::from_blob(run.state_in[1].data(), {run.n}, opts).clone();
  at::Tensor f = at::from_blob(run.filtered_in.data(), {run.n}, opts).clone();
  auto res = op.call(J, v, r, f, kLif.dt, kLif.tau_rc, kLif.tau_ref, kLif.min_voltage,
                     kLif.amplitude, kLif.decay);
  active_kernels().lif_f64(run.args(), kLif);
  auto same = [](const at::Tensor& t, const std::vector<double>& x) {
    const double* p = t.const_data_ptr<double>();
    for (size_t i = 0; i < x.size(); ++i)
      if (p[i] != x[i]) return false;
    return static_cast<size_t>(t.numel()) == x.size();
  };
  EXPECT(same(std::get<0>(res), run.output), "op output");
  EXPECT(same(std::get<1>(res), run.filtered_seq), "op filtered_seq");
  EXPECT(same(std::get<2>(res), run.state_out[0]), "op voltage");
  EXPECT(same(std::get<3>(res), run.state_out[1]), "op refractory_time");
  EXPECT(same(std::get<4>(res), run.filtered_out), "op filtered");
  // inputs untouched
  EXPECT(same(v, run.state_in[0]), "op modified voltage");

  // non-contiguous J (a transposed view) works; wrong shapes and dtypes throw
  at::Tensor Jt = J.t().contiguous().t();
  auto res2 = op.call(Jt, v, r, f, kLif.dt, kLif.tau_rc, kLif.tau_ref, kLif.min_voltage,
                      kLif.amplitude, kLif.decay);
  EXPECT(same(std::get<0>(res2), run.output), "op on strided J");
  bool threw = false;
  try {
    op.call(J.to(at::kHalf), v.to(at::kHalf), r.to(at::kHalf), f.to(at::kHalf), 0.001, 0.02,
            0.002, 0.0, 1.0, 0.9);
  } catch (const c10::Error&) {
    threw = true;
  }
  EXPECT(threw, "float16 should be rejected");
  threw = false;
  try {
    op.call(J, v.slice(0, 0, 3), r, f, 0.001, 0.02, 0.002, 0.0, 1.0, 0.9);
  } catch (const c10::Error&) {
    threw = true;
  }
  EXPECT(threw, "a wrong state shape should be rejected");
  // T = 0
  auto res0 = op.call(J.slice(0, 0, 0), v, r, f, 0.001, 0.02, 0.002, 0.0, 1.0, 0.9);
  EXPECT(std::get<0>(res0).size(0) == 0 && same(std::get<2>(res0), run.state_in[0]), "T=0");
}

bool cpu_supports(const std::string& name) {
#if defined(__x86_64__) || defined(__i386__)
  if (name == "AVX2") return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  if (name == "AVX512")
    return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
           __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq");
#endif
  return name == "DEFAULT";
}

}  // namespace

// ---- the event-driven product ----

// Each table's spike_mm against a plain triple loop over the same k order;
// above max_density it must leave Y alone and report false.
void test_spike_matmul(const KernelTable& table) {
  const int64_t M = 37, K = 70, N = 83;  // N: full tiles, a partial vector, a tail
  std::vector<double> X(M * K, 0.0), Wt(K * N), Y(M * N, -1.0), want(M * N, 0.0);
  uint32_t state = 12345;
  auto next = [&]() { state = state * 1664525u + 1013904223u; return (state >> 8) / 16777216.0; };
  for (auto& w : Wt) w = next() - 0.5;
  for (auto& x : X) x = next() < 0.1 ? std::floor(next() * 4.0 - 1.0) * 1000.0 : 0.0;
  for (int64_t m = 0; m < M; ++m)
    for (int64_t k = 0; k < K; ++k)
      for (int64_t j = 0; j < N; ++j) want[m * N + j] += X[m * K + k] * Wt[k * N + j];
  for (int threads : {1, 2}) {
    EXPECT(table.spike_mm_f64(X.data(), Wt.data(), Y.data(), M, K, N, 1.0, threads),
           "%s: spike_mm declined at max_density 1", table.name);
    double worst = 0;
    for (int64_t i = 0; i < M * N; ++i) worst = std::max(worst, std::abs(Y[i] - want[i]));
    EXPECT(worst < 1e-9, "%s: spike_mm differs from the plain loop by %g", table.name, worst);
  }
  std::vector<double> untouched(M * N, 7.0);
  EXPECT(!table.spike_mm_f64(X.data(), Wt.data(), untouched.data(), M, K, N, 0.01, 1),
         "%s: spike_mm ran above max_density", table.name);
  EXPECT(untouched[0] == 7.0 && untouched[M * N - 1] == 7.0, "%s: Y written when declined",
         table.name);
}

int main() {
  std::printf("active kernels: %s\n", active_kernels().name);
  test_hand_computed();

  // DEFAULT: std::expm1/log1p, bitwise equal to the scalar nengo code
  test_against_scalar<double>(kernels_DEFAULT(), true, 0);
  test_against_scalar<float>(kernels_DEFAULT(), true, 0);

  std::vector<const KernelTable*> simd;
#ifdef SNN_HAVE_AVX2
  if (cpu_supports("AVX2")) simd.push_back(&kernels_AVX2());
#endif
#ifdef SNN_HAVE_AVX512
  if (cpu_supports("AVX512")) simd.push_back(&kernels_AVX512());
#endif
  for (const KernelTable* t : simd) {
    std::printf("testing %s kernels\n", t->name);
    test_against_scalar<double>(*t, false, 1e-12);
  }

  test_threads();
  test_registered_ops();
  test_spike_matmul(kernels_DEFAULT());
  for (const KernelTable* t : simd) test_spike_matmul(*t);

  std::printf("%d checks, %d failures\n", g_checks, g_failures);
  return g_failures == 0 ? 0 : 1;
}
