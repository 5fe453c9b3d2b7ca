// Fused neuron + lowpass kernels, compiled once per CPU capability.
//
// Included by kernels_default.cpp / kernels_avx2.cpp / kernels_avx512.cpp,
// which define CPU_CAPABILITY (the inline namespace of at::vec, so the
// per-capability copies never collide), CPU_CAPABILITY_<ISA> and
// SNN_TABLE_FN, and are compiled with the matching -m flags. Must be built
// with -ffp-contract=off: a fused multiply-add would round differently from
// torch's separate mul and add kernels.
//
// Layout: neurons are processed in blocks of kVecs vectors (a few cache
// lines of each [T, N] row); one block keeps its states in registers and
// walks all T steps. Blocks are independent and run in parallel (OpenMP).
#pragma once

#ifndef CPU_CAPABILITY
#error "define CPU_CAPABILITY before including kernels_impl.h"
#endif

#include <ATen/cpu/vec/functional.h>
#include <ATen/cpu/vec/vec.h>

#include <algorithm>
#include <vector>

#ifdef _OPENMP
#include <omp.h>
#endif

#include "neurons.h"

namespace snntorch_nengo {
inline namespace CPU_CAPABILITY {

using at::vec::Vectorized;

// Blocks of this many vectors per thread task (4 x 256 bit = 2 cache lines).
constexpr int kVecs = 4;

// Parallelise only when there is enough work per call (elements * steps).
constexpr int64_t kParallelWork = 1 << 15;

template <typename T>
struct Lif {
  using Vec = Vectorized<T>;
  static constexpr int kStates = 2;  // voltage, refractory_time
  // zero_mask() of a vector with no lane set
  static constexpr int kNoLane = (1 << Vec::size()) - 1;
  Vec dt, tau_rc, tau_ref, min_voltage, amp_over_dt;
  Vec zero, one, two;

  explicit Lif(const LifParams& p)
      : dt(static_cast<T>(p.dt)),
        tau_rc(static_cast<T>(p.tau_rc)),
        tau_ref(static_cast<T>(p.tau_ref)),
        min_voltage(static_cast<T>(p.min_voltage)),
        amp_over_dt(static_cast<T>(p.amplitude / p.dt)),
        zero(T(0)),
        one(T(1)),
        two(T(2)) {}

  // nengo.LIF.step, as snntorch_nengo.neurons.spiking.lif:
  //   refractory_time -= dt
  //   delta_t = clip(dt - refractory_time, 0, dt)
  //   voltage -= (J - voltage) * expm1(-delta_t / tau_rc)
  //   spiked = voltage > 1; output = spiked * (amplitude / dt)
  //   t_spike = dt + tau_rc * log1p(-(voltage - 1) / (J - 1))
  //   voltage[voltage < min_voltage] = min_voltage
  //   voltage[spiked] = 0; refractory_time[spiked] = tau_ref + t_spike
  inline Vec step(const Vec& J, Vec& v, Vec& r) const {
    r = r - dt;
    Vec delta_t = at::vec::clamp(dt - r, zero, dt);
    v = v - (J - v) * (delta_t.neg() / tau_rc).expm1();

    Vec spiked = v > one;  // all-ones lanes where spiked
    Vec output = Vec::blendv(zero, one, spiked) * amp_over_dt;

    // spike times only where some lane spiked (spikes are sparse; log1p is
    // the most expensive operation of the step)
    if (spiked.zero_mask() != kNoLane) {
      Vec v_safe = Vec::blendv(one, v, spiked);
      Vec J_safe = Vec::blendv(two, J, spiked);
      Vec t_spike = dt + tau_rc * ((v_safe - one).neg() / (J_safe - one)).log1p();
      r = Vec::blendv(r, tau_ref + t_spike, spiked);
    }

    v = Vec::blendv(v, min_voltage, v < min_voltage);
    v = Vec::blendv(v, zero, spiked);
    return output;
  }

  inline Vec operator()(const Vec& J, Vec* s) const { return step(J, s[0], s[1]); }
};

template <typename T>
struct AdaptiveLif {
  using Vec = Vectorized<T>;
  static constexpr int kStates = 3;  // voltage, refractory_time, adaptation
  Lif<T> lif;
  Vec dt_over_tau_n, inc_n;

  explicit AdaptiveLif(const AdaptiveLifParams& p)
      : lif(LifParams{p.dt, p.tau_rc, p.tau_ref, p.min_voltage, p.amplitude, p.decay}),
        dt_over_tau_n(static_cast<T>(p.dt / p.tau_n)),
        inc_n(static_cast<T>(p.inc_n)) {}

  // nengo.AdaptiveLIF.step: LIF on J - n, then
  //   n += (dt / tau_n) * (inc_n * output - n)
  inline Vec operator()(const Vec& J, Vec* s) const {
    Vec& n = s[2];
    Vec output = lif.step(J - n, s[0], s[1]);
    n = n + dt_over_tau_n * (inc_n * output - n);
    return output;
  }
};

template <typename T>
struct SpikingRelu {
  using Vec = Vectorized<T>;
  static constexpr int kStates = 1;  // voltage
  Vec dt, amp_over_dt, zero;

  explicit SpikingRelu(const SpikingReluParams& p)
      : dt(static_cast<T>(p.dt)),
        amp_over_dt(static_cast<T>(p.amplitude / p.dt)),
        zero(T(0)) {}

  // nengo.SpikingRectifiedLinear.step:
  //   voltage += max(J, 0) * dt; n = floor(voltage)
  //   output = (amplitude / dt) * n; voltage -= n
  inline Vec operator()(const Vec& J, Vec* s) const {
    Vec& v = s[0];
    v = v + at::vec::clamp_min(J, zero) * dt;
    Vec n_spikes = v.floor();
    v = v - n_spikes;
    return amp_over_dt * n_spikes;
  }
};

// One block of up to kVecs vectors starting at neuron n0; `count` valid
// neurons (count == kVecs * Vec::size() for full blocks).
template <bool Full, typename T, typename Neuron>
inline void run_block(
    const FusedArgs<T>& a,
    const Neuron& neuron,
    const Vectorized<T>& decay,
    const Vectorized<T>& one_minus_decay,
    int64_t n0,
    int count) {
  using Vec = Vectorized<T>;
  constexpr int W = Vec::size();
  constexpr int S = Neuron::kStates;
  const int n_vecs = Full ? kVecs : (count + W - 1) / W;
  int lanes[kVecs];
  for (int k = 0; k < kVecs; ++k) {
    lanes[k] = Full ? W : std::max(0, std::min(W, count - k * W));
  }
  auto load = [&](const T* p, int k) {
    return Full || lanes[k] == W ? Vec::loadu(p) : Vec::loadu(p, lanes[k]);
  };
  auto store = [&](const Vec& x, T* p, int k) {
    if (Full || lanes[k] == W) {
      x.store(p);
    } else {
      x.store(p, lanes[k]);
    }
  };

  Vec state[kVecs][kMaxStates];
  Vec filtered[kVecs];
  for (int k = 0; k < n_vecs; ++k) {
    const int64_t off = n0 + k * W;
    for (int s = 0; s < S; ++s) state[k][s] = load(a.state_in[s] + off, k);
    filtered[k] = load(a.filtered_in + off, k);
  }
  for (int64_t t = 0; t < a.steps; ++t) {
    const int64_t row = t * a.n + n0;
    for (int k = 0; k < n_vecs; ++k) {
      const int64_t off = row + k * W;
      Vec output = neuron(load(a.J + off, k), state[k]);
      // nengo's OneX lowpass: decay * filtered + (1 - decay) * output
      filtered[k] = decay * filtered[k] + one_minus_decay * output;
      store(output, a.output + off, k);
      store(filtered[k], a.filtered_seq + off, k);
    }
  }
  for (int k = 0; k < n_vecs; ++k) {
    const int64_t off = n0 + k * W;
    for (int s = 0; s < S; ++s) store(state[k][s], a.state_out[s] + off, k);
    store(filtered[k], a.filtered_out + off, k);
  }
}

template <typename T, typename Neuron>
void run_fused(const FusedArgs<T>& a, const Neuron& neuron, double decay_) {
  using Vec = Vectorized<T>;
  constexpr int64_t block = kVecs * Vec::size();
  const Vec decay(static_cast<T>(decay_));
  const Vec one_minus_decay(static_cast<T>(1.0 - decay_));
  const int64_t n_full = a.n / block;
  const int64_t rest = a.n - n_full * block;
  const int64_t n_blocks = n_full + (rest > 0 ? 1 : 0);

  auto body = [&](int64_t b) {
    if (b < n_full) {
      run_block<true>(a, neuron, decay, one_minus_decay, b * block, int(block));
    } else {
      run_block<false>(a, neuron, decay, one_minus_decay, b * block, int(rest));
    }
  };

#ifdef _OPENMP
  const bool parallel = a.num_threads > 1 && n_blocks > 1 &&
      a.n * std::max<int64_t>(a.steps, 1) >= kParallelWork && !omp_in_parallel();
  if (parallel) {
    const int threads = int(std::min<int64_t>(a.num_threads, n_blocks));
#pragma omp parallel for schedule(static) num_threads(threads)
    for (int64_t b = 0; b < n_blocks; ++b) body(b);
    return;
  }
#endif
  for (int64_t b = 0; b < n_blocks; ++b) body(b);
}

template <typename T>
void lif_entry(const FusedArgs<T>& a, const LifParams& p) {
  run_fused(a, Lif<T>(p), p.decay);
}

template <typename T>
void alif_entry(const FusedArgs<T>& a, const AdaptiveLifParams& p) {
  run_fused(a, AdaptiveLif<T>(p), p.decay);
}

template <typename T>
void relu_entry(const FusedArgs<T>& a, const SpikingReluParams& p) {
  run_fused(a, SpikingRelu<T>(p), p.decay);
}

// Event-driven product: each row of Y sums the rows of Wt picked by the
// nonzero entries of X's row (spikes: most entries are zero), scaled by them,
// in order of k. A first pass counts X's nonzeros; above max_density of
// M * K it returns false without writing Y (a dense product is faster then).
// Rows are independent and run in parallel.
template <typename T>
bool spike_matmul(const T* X, const T* Wt, T* Y, int64_t M, int64_t K, int64_t N,
                  double max_density, int num_threads) {
  using Vec = Vectorized<T>;
  constexpr int64_t W = Vec::size();
  constexpr int kTile = 8;  // vectors of a Y row accumulated in registers
  int64_t nnz = 0;
  for (int64_t i = 0; i < M * K; ++i) nnz += X[i] != T(0);
  if (static_cast<double>(nnz) > max_density * static_cast<double>(M * K)) return false;

  auto row = [&](int64_t m, int64_t* idx) {
    const T* x = X + m * K;
    int64_t n = 0;
    for (int64_t k = 0; k < K; ++k) {  // branch-free list of the nonzero k
      idx[n] = k;
      n += x[k] != T(0);
    }
    T* y = Y + m * N;
    int64_t j = 0;
    for (; j + kTile * W <= N; j += kTile * W) {
      Vec acc[kTile];
      for (int a = 0; a < kTile; ++a) acc[a] = Vec(T(0));
      for (int64_t i = 0; i < n; ++i) {
        const Vec xv(x[idx[i]]);
        const T* w = Wt + idx[i] * N + j;
        for (int a = 0; a < kTile; ++a) acc[a] = acc[a] + xv * Vec::loadu(w + a * W);
      }
      for (int a = 0; a < kTile; ++a) acc[a].store(y + j + a * W);
    }
    for (; j < N; j += W) {
      const int lanes = int(std::min<int64_t>(W, N - j));
      Vec acc(T(0));
      for (int64_t i = 0; i < n; ++i) {
        acc = acc + Vec(x[idx[i]]) * Vec::loadu(Wt + idx[i] * N + j, lanes);
      }
      acc.store(y + j, lanes);
    }
  };
#ifdef _OPENMP
  if (num_threads > 1 && M > 1 && M * K >= kParallelWork && !omp_in_parallel()) {
    const int threads = int(std::min<int64_t>(num_threads, M));
#pragma omp parallel num_threads(threads)
    {
      std::vector<int64_t> idx(K);
#pragma omp for schedule(static)
      for (int64_t m = 0; m < M; ++m) row(m, idx.data());
    }
    return true;
  }
#endif
  std::vector<int64_t> idx(K);
  for (int64_t m = 0; m < M; ++m) row(m, idx.data());
  return true;
}

}  // namespace CPU_CAPABILITY

#define SNN_STR2(x) #x
#define SNN_STR(x) SNN_STR2(x)

const KernelTable& SNN_TABLE_FN() {
  static const KernelTable table{
      SNN_STR(CPU_CAPABILITY),
      &CPU_CAPABILITY::lif_entry<float>,
      &CPU_CAPABILITY::lif_entry<double>,
      &CPU_CAPABILITY::alif_entry<float>,
      &CPU_CAPABILITY::alif_entry<double>,
      &CPU_CAPABILITY::relu_entry<float>,
      &CPU_CAPABILITY::relu_entry<double>,
      &CPU_CAPABILITY::spike_matmul<float>,
      &CPU_CAPABILITY::spike_matmul<double>,
  };
  return table;
}

}  // namespace snntorch_nengo
