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
#include <limits>
#include <type_traits>
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

// The threads to share `tasks` independent tasks of `work` elements in all:
// 1 (serial) for too little work or too few tasks, and inside an enclosing
// parallel region, whose threads are already busy.
inline int parallel_threads(int num_threads, int64_t tasks, int64_t work) {
#ifdef _OPENMP
  if (num_threads > 1 && tasks > 1 && work >= kParallelWork && !omp_in_parallel()) {
    return int(std::min<int64_t>(num_threads, tasks));
  }
#endif
  return 1;
}

// body(b) for each block b, on `threads` threads (static schedule).
template <typename Body>
inline void for_each_block(int threads, int64_t n_blocks, const Body& body) {
#ifdef _OPENMP
  if (threads > 1) {
#pragma omp parallel for schedule(static) num_threads(threads)
    for (int64_t b = 0; b < n_blocks; ++b) body(b);
    return;
  }
#endif
  for (int64_t b = 0; b < n_blocks; ++b) body(b);
}

// The vectors of one block of up to kVecs vectors: `count` valid neurons, all
// kVecs vectors full when Full. Loads and stores touch only the valid lanes;
// padding lanes load zeros, harmless values (no spike, no NaN), never stored.
template <bool Full, typename T>
struct BlockLanes {
  using Vec = Vectorized<T>;
  static constexpr int W = Vec::size();
  int n_vecs;
  int lanes[kVecs];

  explicit BlockLanes(int count) : n_vecs(Full ? kVecs : (count + W - 1) / W) {
    for (int k = 0; k < kVecs; ++k) {
      lanes[k] = Full ? W : std::max(0, std::min(W, count - k * W));
    }
  }
  Vec load(const T* p, int k) const {
    return Full || lanes[k] == W ? Vec::loadu(p) : Vec::loadu(p, lanes[k]);
  }
  void store(const Vec& x, T* p, int k) const {
    if (Full || lanes[k] == W) {
      x.store(p);
    } else {
      x.store(p, lanes[k]);
    }
  }
};

// A block walks down the [T, N] rows: each step's few cache lines lie a whole
// row (N elements) after the last, too far apart for the hardware prefetcher,
// so every load and store would wait on memory. The block asks for its lines
// this many steps ahead instead (it changes no result).
constexpr int64_t kPrefetchSteps = 4;

template <bool Write, typename T>
inline void prefetch_lines(const T* p, int bytes) {
  const char* c = reinterpret_cast<const char*>(p);
  for (int b = 0; b < bytes; b += 64) __builtin_prefetch(c + b, Write ? 1 : 0, 3);
}

// The surrogate derivative of the spike threshold at x (the distance to it),
// as snntorch_nengo/neurons/surrogates.py computes it; `kind` is a
// kSurrogate* id (neuron_specs.h), the same for the whole call, so the switch
// is always predicted.
template <typename T>
struct Surrogate {
  using Vec = Vectorized<T>;
  int kind;
  Vec p, scaled, half, one, zero;

  Surrogate(int kind_, double param)
      : kind(kind_),
        p(static_cast<T>(param)),
        // ATan: (alpha / 2) / (1 + (pi / 2 * alpha * x)**2), Python floats first
        scaled(static_cast<T>(1.5707963267948966 * param)),
        half(static_cast<T>(param / 2)),
        one(T(1)),
        zero(T(0)) {}

  bool active() const { return kind != kSurrogateNone; }

  inline Vec operator()(const Vec& x) const {
    switch (kind) {
      case kSurrogateFastSigmoid: {  // 1 / (slope * |x| + 1)**2
        const Vec y = p * x.abs() + one;
        return one / (y * y);
      }
      case kSurrogateSigmoid: {  // slope * s * (1 - s), s = sigmoid(slope * x)
        const Vec s = one / (one + (p * x).neg().exp());
        return p * s * (one - s);
      }
      case kSurrogateATan: {
        const Vec y = scaled * x;
        return half / (one + y * y);
      }
      case kSurrogateTriangle:  // max(0, 1 - |x| / width) / width
        return at::vec::clamp_min(one - x.abs() / p, zero) / p;
      case kSurrogateStraightThrough:
        return one;
      default:
        return zero;
    }
  }
};

template <typename T>
struct Lif {
  using Vec = Vectorized<T>;
  static constexpr int kStates = 2;  // voltage, refractory_time
  // per step, what the reverse step needs: J - v, e = expm1(...), the
  // decremented refractory time, the voltage before the threshold, J
  static constexpr int kSaved = 5;
  // zero_mask() of a vector with no lane set
  static constexpr int kNoLane = (1 << Vec::size()) - 1;
  Vec dt, tau_rc, tau_ref, min_voltage, amp_over_dt;
  Vec zero, one, two;
  // expm1(-dt / tau_rc): the decay of a step with no refractory time left,
  // computed as `step` computes it for delta_t = dt (the same bits)
  Vec e_full;

  explicit Lif(const LifParams& p)
      : dt(static_cast<T>(p.dt)),
        tau_rc(static_cast<T>(p.tau_rc)),
        tau_ref(static_cast<T>(p.tau_ref)),
        min_voltage(static_cast<T>(p.min_voltage)),
        amp_over_dt(static_cast<T>(p.amplitude / p.dt)),
        zero(T(0)),
        one(T(1)),
        two(T(2)),
        e_full((dt.neg() / tau_rc).expm1()) {}

  // nengo.LIF.step, as snntorch_nengo.neurons.spiking.lif:
  //   refractory_time -= dt
  //   delta_t = clip(dt - refractory_time, 0, dt)
  //   voltage -= (J - voltage) * expm1(-delta_t / tau_rc)
  //   spiked = voltage > 1; output = spiked * (amplitude / dt)
  //   t_spike = dt + tau_rc * log1p(-(voltage - 1) / (J - 1))
  //   voltage[voltage < min_voltage] = min_voltage
  //   voltage[spiked] = 0; refractory_time[spiked] = tau_ref + t_spike
  // Save: also records what `reverse` needs (kSaved vectors); the arithmetic
  // is the same either way, so a recomputed pass equals the forward one.
  template <bool Save = false>
  inline Vec step(const Vec& J, Vec& v, Vec& r, Vec* saved = nullptr) const {
    Vec d, e;
    integrate(J, v, r, d, e);
    if constexpr (Save) {
      saved[0] = d;
      saved[1] = e;
      saved[2] = r;
      saved[3] = v;
      saved[4] = J;
    }

    Vec spiked = v > one;  // all-ones lanes where spiked
    Vec output = Vec::blendv(zero, one, spiked) * amp_over_dt;

    // spike times only where some lane spiked (spikes are sparse; log1p is
    // the most expensive operation of the step)
    if (spiked.zero_mask() != kNoLane) {
      r = Vec::blendv(r, spike_refractory(spike_fraction(J, v, spiked)), spiked);
    }
    reset(v, spiked);
    return output;
  }

  // The step up to the threshold: r -= dt, then v -= (J - v) * e; d = J - v
  // and e = expm1(-delta_t / tau_rc) as the reverse step needs them.
  inline void integrate(const Vec& J, Vec& v, Vec& r, Vec& d, Vec& e) const {
    r = r - dt;
    const Vec delta_t = at::vec::clamp(dt - r, zero, dt);
    d = J - v;
    // most steps of most neurons are outside the refractory period: then the
    // decay is e_full, and expm1 (the costliest operation here) is skipped
    e = (delta_t != dt).zero_mask() == kNoLane ? e_full : (delta_t.neg() / tau_rc).expm1();
    v = v - d * e;
  }

  // log1p's argument of the spike time where `spiked`, -(v - 1) / (J - 1)
  // (safe values elsewhere)
  inline Vec spike_fraction(const Vec& J, const Vec& v, const Vec& spiked) const {
    const Vec v_safe = Vec::blendv(one, v, spiked);
    const Vec J_safe = Vec::blendv(two, J, spiked);
    return (v_safe - one).neg() / (J_safe - one);
  }

  // The refractory time a spike leaves: tau_ref + its time within the step.
  inline Vec spike_refractory(const Vec& fraction) const {
    return tau_ref + (dt + tau_rc * fraction.log1p());
  }

  // The voltage floor, then the reset of the neurons that spiked.
  inline void reset(Vec& v, const Vec& spiked) const {
    v = Vec::blendv(v, min_voltage, v < min_voltage);
    v = Vec::blendv(v, zero, spiked);
  }

  // The step's gradients, as torch's autograd of `step` (with the surrogate
  // on the spikes): from those of the output and of the new voltage and
  // refractory time (g_v, g_r, replaced by those of the old ones), returns
  // the gradient of J.
  inline Vec reverse(const Vec* saved, const Vec& g_out, Vec& g_v, Vec& g_r,
                     const Surrogate<T>& surrogate) const {
    const Vec d = saved[0], e = saved[1], r1 = saved[2], v1 = saved[3], J = saved[4];
    const Vec spiked = v1 > one;
    // reset to zero where spiked, floor at min_voltage elsewhere
    Vec g_v1 = Vec::blendv(g_v, zero, spiked);
    g_v1 = Vec::blendv(g_v1, zero, v1 < min_voltage);
    if (surrogate.active()) g_v1 = g_v1 + g_out * amp_over_dt * surrogate(v1 - one);
    Vec g_J = zero;
    Vec g_r1 = Vec::blendv(g_r, zero, spiked);
    if (spiked.zero_mask() != kNoLane) {
      // refractory_time = tau_ref + dt + tau_rc * log1p(q), q = num / den,
      // num = -(v1 - 1), den = J - 1 (safe values where no spike: g_t = 0)
      const Vec g_t = Vec::blendv(zero, g_r, spiked);
      const Vec num = (Vec::blendv(one, v1, spiked) - one).neg();
      const Vec den = Vec::blendv(two, J, spiked) - one;
      const Vec q = num / den;
      const Vec g_q = g_t * tau_rc / (q + one);
      g_v1 = g_v1 - g_q / den;
      g_J = (g_q * q).neg() / den;
    }
    // v1 = v - d * e, d = J - v
    const Vec g_ve = g_v1 * e;
    g_v = g_v1 + g_ve;
    g_J = g_J - g_ve;
    // e = expm1(-delta_t / tau_rc), delta_t = clip(dt - r1, 0, dt): torch's
    // clamp passes the gradient on the closed interval
    const Vec x = dt - r1;
    const Vec inside = (x >= zero) & (x <= dt);
    if (inside.zero_mask() == kNoLane) {
      // no lane inside (the usual case out of the refractory period):
      // g_r1 - 0, the same bits
      g_r = g_r1;
      return g_J;
    }
    const Vec g_delta = (g_v1 * d * (e + one) / tau_rc);  // -(-g_v1 d) (e + 1) / tau_rc
    // d(delta_t)/d(r1) = -1 inside
    g_r = g_r1 - Vec::blendv(zero, g_delta, inside);
    return g_J;
  }

  inline Vec operator()(const Vec& J, Vec* s) const { return step(J, s[0], s[1]); }
  inline Vec save(const Vec& J, Vec* s, Vec* saved) const {
    return step<true>(J, s[0], s[1], saved);
  }
  inline Vec back(const Vec* saved, const Vec& g_out, Vec* g,
                  const Surrogate<T>& surrogate) const {
    return reverse(saved, g_out, g[0], g[1], surrogate);
  }
};

// LIF with tau_ref == 0, forward only. A spike's exact time matters there
// only to the refractory state it leaves: with no refractory period, the
// step after a spike has r <= 0 whatever the time, so the voltage, the
// spikes and every later step are those of any r in [0, dt]. The step keeps
// the voltage and J of each neuron's last spike and the steps since, and
// `finish` computes that spike's time (log1p, the costliest operation of
// Lif::step, once per neuron per call instead of once per spiking vector per
// step) and replays the decrements: the final state has Lif's bits.
template <typename T>
struct LifNoRefractory {
  using Vec = Vectorized<T>;
  static constexpr int kStates = 2;  // voltage, refractory_time
  // registers only: the log1p argument of the last spike, -(v - 1) / (J - 1),
  // and the steps since it (-inf: no spike in this call)
  static constexpr int kExtra = 2;
  Lif<T> lif;
  Vec none;

  explicit LifNoRefractory(const LifParams& p)
      : lif(p), none(-std::numeric_limits<T>::infinity()) {}

  void begin(Vec* s) const {
    s[2] = lif.zero;
    s[3] = none;
  }

  inline Vec operator()(const Vec& J, Vec* s) const {
    Vec& v = s[0];
    Vec& r = s[1];
    Vec d, e;
    lif.integrate(J, v, r, d, e);
    const Vec spiked = v > lif.one;
    const Vec output = Vec::blendv(lif.zero, lif.one, spiked) * lif.amp_over_dt;
    s[3] = s[3] + lif.one;
    if (spiked.zero_mask() != Lif<T>::kNoLane) {
      s[2] = Vec::blendv(s[2], lif.spike_fraction(J, v, spiked), spiked);
      s[3] = Vec::blendv(s[3], lif.zero, spiked);
      r = Vec::blendv(r, lif.tau_ref, spiked);  // in [0, dt]: steps as Lif's
    }
    lif.reset(v, spiked);
    return output;
  }

  void finish(Vec* s) const {
    const Vec spiked = s[3] >= lif.zero;
    if (spiked.zero_mask() == Lif<T>::kNoLane) return;
    Vec r = Vec::blendv(s[1], lif.spike_refractory(s[2]), spiked);
    // then each later step's r -= dt, in order
    for (Vec i = lif.one;; i = i + lif.one) {
      const Vec later = i <= s[3];
      if (later.zero_mask() == Lif<T>::kNoLane) break;
      r = Vec::blendv(r, r - lif.dt, later);
    }
    s[1] = r;
  }
};

// Register-only states of a neuron type (`kExtra`, with `begin`/`finish`
// hooks around a block's steps); none for most.
template <typename N, typename = void>
struct ExtraStates {
  static constexpr int value = 0;
};
template <typename N>
struct ExtraStates<N, std::void_t<decltype(N::kExtra)>> {
  static constexpr int value = N::kExtra;
};

template <typename T>
struct AdaptiveLif {
  using Vec = Vectorized<T>;
  static constexpr int kStates = 3;  // voltage, refractory_time, adaptation
  static constexpr int kSaved = Lif<T>::kSaved;
  Lif<T> lif;
  Vec dt_over_tau_n, inc_n;

  explicit AdaptiveLif(const AdaptiveLifParams& p)
      : lif(LifParams{p.dt, p.tau_rc, p.tau_ref, p.min_voltage, p.amplitude, p.decay}),
        dt_over_tau_n(static_cast<T>(p.dt / p.tau_n)),
        inc_n(static_cast<T>(p.inc_n)) {}

  // nengo.AdaptiveLIF.step: LIF on J - n, then
  //   n += (dt / tau_n) * (inc_n * output - n)
  template <bool Save = false>
  inline Vec step(const Vec& J, Vec* s, Vec* saved = nullptr) const {
    Vec& n = s[2];
    Vec output = lif.template step<Save>(J - n, s[0], s[1], saved);
    n = n + dt_over_tau_n * (inc_n * output - n);
    return output;
  }

  inline Vec operator()(const Vec& J, Vec* s) const { return step(J, s); }
  inline Vec save(const Vec& J, Vec* s, Vec* saved) const { return step<true>(J, s, saved); }

  inline Vec back(const Vec* saved, const Vec& g_out, Vec* g,
                  const Surrogate<T>& surrogate) const {
    Vec& g_n = g[2];
    const Vec g_inner = g_n * dt_over_tau_n;
    const Vec g_J = lif.reverse(saved, g_out + g_inner * inc_n, g[0], g[1], surrogate);
    g_n = g_n - g_inner - g_J;  // J - n feeds the LIF step
    return g_J;
  }
};

template <typename T>
struct SpikingRelu {
  using Vec = Vectorized<T>;
  static constexpr int kStates = 1;  // voltage
  static constexpr int kSaved = 2;   // the voltage before the spike count, J
  Vec dt, amp_over_dt, zero, one;

  explicit SpikingRelu(const SpikingReluParams& p)
      : dt(static_cast<T>(p.dt)),
        amp_over_dt(static_cast<T>(p.amplitude / p.dt)),
        zero(T(0)),
        one(T(1)) {}

  // nengo.SpikingRectifiedLinear.step:
  //   voltage += max(J, 0) * dt; n = floor(voltage)
  //   output = (amplitude / dt) * n; voltage -= n
  template <bool Save = false>
  inline Vec step(const Vec& J, Vec* s, Vec* saved = nullptr) const {
    Vec& v = s[0];
    v = v + at::vec::clamp_min(J, zero) * dt;
    if constexpr (Save) {
      saved[0] = v;
      saved[1] = J;
    }
    Vec n_spikes = v.floor();
    v = v - n_spikes;
    return amp_over_dt * n_spikes;
  }

  inline Vec operator()(const Vec& J, Vec* s) const { return step(J, s); }
  inline Vec save(const Vec& J, Vec* s, Vec* saved) const { return step<true>(J, s, saved); }

  // The spike count's surrogate is that of the distance to the nearest step
  // (Surrogate.staircase: steps at +-max(round(|v|), 1)); the subtracted count
  // has no gradient.
  inline Vec back(const Vec* saved, const Vec& g_out, Vec* g,
                  const Surrogate<T>& surrogate) const {
    const Vec v1 = saved[0], J = saved[1];
    Vec g_v1 = g[0];
    if (surrogate.active()) {
      const Vec k = at::vec::clamp_min(v1.abs().round(), one);
      const Vec threshold = Vec::blendv(k.neg(), k, v1 >= zero);
      g_v1 = g_v1 + g_out * amp_over_dt * surrogate(v1 - threshold);
    }
    g[0] = g_v1;
    // torch's clamp_min passes the gradient where J >= 0
    return Vec::blendv(zero, g_v1 * dt, J >= zero);
  }
};

// One block of up to kVecs vectors starting at neuron n0; `count` valid
// neurons (count == kVecs * Vec::size() for full blocks). Filter: the lowpass
// runs (the filter pointers set), else nothing of it is read or written.
template <bool Full, bool Filter, typename T, typename Neuron>
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
  const BlockLanes<Full, T> lanes(count);
  const int n_vecs = lanes.n_vecs;

  constexpr int X = ExtraStates<Neuron>::value;
  Vec state[kVecs][kMaxStates + X];
  Vec filtered[kVecs];
  for (int k = 0; k < n_vecs; ++k) {
    const int64_t off = n0 + k * W;
    for (int s = 0; s < S; ++s) state[k][s] = lanes.load(a.state_in[s] + off, k);
    if constexpr (X > 0) neuron.begin(state[k]);
    if constexpr (Filter) filtered[k] = lanes.load(a.filtered_in + off, k);
  }
  constexpr int kBlockBytes = kVecs * W * int(sizeof(T));
  const int64_t j_row = a.j_held ? 0 : a.n;  // elements between J's rows
  for (int64_t t = 0; t < a.steps; ++t) {
    const int64_t row = t * a.n + n0;
    if (t + kPrefetchSteps < a.steps) {
      const int64_t ahead = row + kPrefetchSteps * a.n;
      if (!a.j_held) prefetch_lines<false>(a.J + ahead, kBlockBytes);
      prefetch_lines<true>(a.output + ahead, kBlockBytes);
      if constexpr (Filter) prefetch_lines<true>(a.filtered_seq + ahead, kBlockBytes);
    }
    for (int k = 0; k < n_vecs; ++k) {
      const int64_t off = row + k * W;
      Vec output = neuron(lanes.load(a.J + t * j_row + n0 + k * W, k), state[k]);
      lanes.store(output, a.output + off, k);
      if constexpr (Filter) {
        // nengo's OneX lowpass: decay * filtered + (1 - decay) * output
        filtered[k] = decay * filtered[k] + one_minus_decay * output;
        lanes.store(filtered[k], a.filtered_seq + off, k);
      }
    }
  }
  for (int k = 0; k < n_vecs; ++k) {
    const int64_t off = n0 + k * W;
    if constexpr (X > 0) neuron.finish(state[k]);
    for (int s = 0; s < S; ++s) lanes.store(state[k][s], a.state_out[s] + off, k);
    if constexpr (Filter) lanes.store(filtered[k], a.filtered_out + off, k);
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

  // (filtered_out: filtered_seq of zero steps may have no data pointer)
  const bool filter = a.filtered_out != nullptr;
  auto body = [&](int64_t b) {
    if (b < n_full) {
      if (filter) {
        run_block<true, true>(a, neuron, decay, one_minus_decay, b * block, int(block));
      } else {
        run_block<true, false>(a, neuron, decay, one_minus_decay, b * block, int(block));
      }
    } else if (filter) {
      run_block<false, true>(a, neuron, decay, one_minus_decay, b * block, int(rest));
    } else {
      run_block<false, false>(a, neuron, decay, one_minus_decay, b * block, int(rest));
    }
  };

  for_each_block(
      parallel_threads(a.num_threads, n_blocks, a.n * std::max<int64_t>(a.steps, 1)),
      n_blocks, body);
}

template <typename T>
void lif_entry(const FusedArgs<T>& a, const LifParams& p) {
  if (p.tau_ref == 0.0) {
    run_fused(a, LifNoRefractory<T>(p), p.decay);
  } else {
    run_fused(a, Lif<T>(p), p.decay);
  }
}

template <typename T>
void alif_entry(const FusedArgs<T>& a, const AdaptiveLifParams& p) {
  run_fused(a, AdaptiveLif<T>(p), p.decay);
}

template <typename T>
void relu_entry(const FusedArgs<T>& a, const SpikingReluParams& p) {
  run_fused(a, SpikingRelu<T>(p), p.decay);
}

// --- backward ---

// Steps per segment of the backward pass: a block recomputes one segment's
// forward steps into a buffer, then runs back through them. Longer windows are
// first run forward once to checkpoint the states at each segment's start, so
// the buffer stays small (kSegment * kVecs * kSaved vectors, in L1/L2) for any T.
constexpr int64_t kSegment = 64;

template <typename T, typename Neuron>
struct BackwardBuffers {
  std::vector<Vectorized<T>> saved, checkpoints;
  explicit BackwardBuffers(int64_t steps) {
    const int64_t segments = (steps + kSegment - 1) / kSegment;
    saved.resize(std::min(steps, kSegment) * kVecs * Neuron::kSaved);
    checkpoints.resize(segments > 1 ? segments * kVecs * Neuron::kStates : 0);
  }
};

template <bool Full, typename T, typename Neuron>
inline void run_block_backward(
    const BackwardArgs<T>& a,
    const Neuron& neuron,
    const Surrogate<T>& surrogate,
    const Vectorized<T>& decay,
    const Vectorized<T>& one_minus_decay,
    int64_t n0,
    int count,
    BackwardBuffers<T, Neuron>& buffers) {
  using Vec = Vectorized<T>;
  constexpr int W = Vec::size();
  constexpr int S = Neuron::kStates;
  constexpr int K = Neuron::kSaved;
  const BlockLanes<Full, T> lanes(count);
  const int n_vecs = lanes.n_vecs;
  const int64_t T_ = a.steps;
  const int64_t segments = (T_ + kSegment - 1) / kSegment;

  Vec state[kVecs][kMaxStates];
  for (int k = 0; k < n_vecs; ++k) {
    for (int s = 0; s < S; ++s) state[k][s] = lanes.load(a.state_in[s] + n0 + k * W, k);
  }
  Vec* checkpoints = buffers.checkpoints.data();
  if (segments > 1) {
    for (int64_t seg = 0; seg < segments; ++seg) {
      for (int k = 0; k < n_vecs; ++k) {
        for (int s = 0; s < S; ++s) checkpoints[(seg * kVecs + k) * S + s] = state[k][s];
      }
      if (seg == segments - 1) break;
      for (int64_t t = seg * kSegment; t < (seg + 1) * kSegment; ++t) {
        for (int k = 0; k < n_vecs; ++k) neuron(lanes.load(a.J + t * a.n + n0 + k * W, k), state[k]);
      }
    }
  }

  // the gradients flowing back: of the states and of the filtered output
  Vec g[kVecs][kMaxStates];
  Vec g_f[kVecs];
  const Vec zero(T(0));
  for (int k = 0; k < n_vecs; ++k) {
    const int64_t off = n0 + k * W;
    for (int s = 0; s < S; ++s) {
      g[k][s] = a.grad_state[s] ? lanes.load(a.grad_state[s] + off, k) : zero;
    }
    g_f[k] = a.grad_filtered ? lanes.load(a.grad_filtered + off, k) : zero;
  }

  constexpr int kBlockBytes = kVecs * W * int(sizeof(T));
  Vec* saved = buffers.saved.data();
  for (int64_t seg = segments - 1; seg >= 0; --seg) {
    const int64_t t0 = seg * kSegment;
    const int64_t t1 = std::min(T_, t0 + kSegment);
    if (segments > 1) {
      for (int k = 0; k < n_vecs; ++k) {
        for (int s = 0; s < S; ++s) state[k][s] = checkpoints[(seg * kVecs + k) * S + s];
      }
    }
    for (int64_t t = t0; t < t1; ++t) {
      if (t + kPrefetchSteps < t1) {
        prefetch_lines<false>(a.J + (t + kPrefetchSteps) * a.n + n0, kBlockBytes);
      }
      for (int k = 0; k < n_vecs; ++k) {
        neuron.save(lanes.load(a.J + t * a.n + n0 + k * W, k), state[k],
                    saved + ((t - t0) * kVecs + k) * K);
      }
    }
    for (int64_t t = t1 - 1; t >= t0; --t) {
      const int64_t row = t * a.n + n0;
      if (t - kPrefetchSteps >= t0) {
        const int64_t ahead = row - kPrefetchSteps * a.n;
        if (a.grad_output) prefetch_lines<false>(a.grad_output + ahead, kBlockBytes);
        if (a.grad_filtered_seq) prefetch_lines<false>(a.grad_filtered_seq + ahead, kBlockBytes);
        prefetch_lines<true>(a.grad_J + ahead, kBlockBytes);
      }
      for (int k = 0; k < n_vecs; ++k) {
        const int64_t off = row + k * W;
        // the lowpass: filtered_t = decay * filtered_{t-1} + (1 - decay) * output_t
        if (a.grad_filtered_seq) g_f[k] = g_f[k] + lanes.load(a.grad_filtered_seq + off, k);
        Vec g_out = one_minus_decay * g_f[k];
        if (a.grad_output) g_out = lanes.load(a.grad_output + off, k) + g_out;
        g_f[k] = decay * g_f[k];
        const Vec g_J = neuron.back(saved + ((t - t0) * kVecs + k) * K, g_out, g[k], surrogate);
        lanes.store(g_J, a.grad_J + off, k);
      }
    }
  }
  for (int k = 0; k < n_vecs; ++k) {
    const int64_t off = n0 + k * W;
    for (int s = 0; s < S; ++s) lanes.store(g[k][s], a.grad_state_in[s] + off, k);
    lanes.store(g_f[k], a.grad_filtered_in + off, k);
  }
}

template <typename T, typename Neuron>
void run_backward(const BackwardArgs<T>& a, const Neuron& neuron, double decay_) {
  using Vec = Vectorized<T>;
  constexpr int64_t block = kVecs * Vec::size();
  const Vec decay(static_cast<T>(decay_));
  const Vec one_minus_decay(static_cast<T>(1.0 - decay_));
  const Surrogate<T> surrogate(a.surrogate, a.surrogate_param);
  const int64_t n_full = a.n / block;
  const int64_t rest = a.n - n_full * block;
  const int64_t n_blocks = n_full + (rest > 0 ? 1 : 0);

  auto body = [&](int64_t b, BackwardBuffers<T, Neuron>& buffers) {
    if (b < n_full) {
      run_block_backward<true>(a, neuron, surrogate, decay, one_minus_decay, b * block,
                               int(block), buffers);
    } else {
      run_block_backward<false>(a, neuron, surrogate, decay, one_minus_decay, b * block,
                                int(rest), buffers);
    }
  };

#ifdef _OPENMP
  const int threads =
      parallel_threads(a.num_threads, n_blocks, a.n * std::max<int64_t>(a.steps, 1));
  if (threads > 1) {
#pragma omp parallel num_threads(threads)
    {
      BackwardBuffers<T, Neuron> buffers(a.steps);
#pragma omp for schedule(static)
      for (int64_t b = 0; b < n_blocks; ++b) body(b, buffers);
    }
    return;
  }
#endif
  BackwardBuffers<T, Neuron> buffers(a.steps);
  for (int64_t b = 0; b < n_blocks; ++b) body(b, buffers);
}

template <typename T>
void lif_backward_entry(const BackwardArgs<T>& a, const LifParams& p) {
  run_backward(a, Lif<T>(p), p.decay);
}

template <typename T>
void alif_backward_entry(const BackwardArgs<T>& a, const AdaptiveLifParams& p) {
  run_backward(a, AdaptiveLif<T>(p), p.decay);
}

template <typename T>
void relu_backward_entry(const BackwardArgs<T>& a, const SpikingReluParams& p) {
  run_backward(a, SpikingRelu<T>(p), p.decay);
}

// The nonzero entries of X (NaN counts as nonzero, -0 as zero, as `x != 0`),
// a vector compare per Vec::size() entries.
template <typename T>
inline int64_t count_nonzero(const T* X, int64_t size) {
  using Vec = Vectorized<T>;
  constexpr int64_t W = Vec::size();
  int64_t zeros = 0, i = 0;
  for (; i + W <= size; i += W) {
    zeros += __builtin_popcount(static_cast<unsigned>(Vec::loadu(X + i).zero_mask()));
  }
  int64_t nnz = (i - zeros);
  for (; i < size; ++i) nnz += X[i] != T(0);
  return nnz;
}

// The positions k of x's nonzero entries, in increasing order, into idx;
// returns their number. A row of spikes is mostly zeros: one vector compare
// per Vec::size() entries, then one step per nonzero (not per entry).
template <typename T>
inline int64_t nonzero_positions(const T* x, int64_t K, int64_t* idx) {
  using Vec = Vectorized<T>;
  constexpr int64_t W = Vec::size();
  constexpr unsigned kLanes = (1u << W) - 1u;
  int64_t n = 0, k = 0;
  for (; k + W <= K; k += W) {
    unsigned bits = ~static_cast<unsigned>(Vec::loadu(x + k).zero_mask()) & kLanes;
    while (bits) {
      idx[n++] = k + __builtin_ctz(bits);
      bits &= bits - 1u;
    }
  }
  for (; k < K; ++k) {  // branch-free over the last entries
    idx[n] = k;
    n += x[k] != T(0);
  }
  return n;
}

// Event-driven product: each row of Y sums the rows of Wt picked by the
// nonzero entries of X's row (spikes: most entries are zero), scaled by them,
// in order of k. A first pass counts X's nonzeros; above max_density of
// M * K it returns false without writing Y (a dense product is faster then).
// Rows are independent and run in parallel. An entry of exactly 1 (spikes of
// height 1) adds its row of Wt without the product, which is that row's bits.
template <typename T>
bool spike_matmul(const T* X, const T* Wt, T* Y, int64_t M, int64_t K, int64_t N,
                  double max_density, int num_threads) {
  using Vec = Vectorized<T>;
  constexpr int64_t W = Vec::size();
  constexpr int kTile = 8;  // vectors of a Y row accumulated in registers
  const int64_t nnz = count_nonzero(X, M * K);
  if (static_cast<double>(nnz) > max_density * static_cast<double>(M * K)) return false;

  auto row = [&](int64_t m, int64_t* idx) {
    const T* x = X + m * K;
    const int64_t n = nonzero_positions(x, K, idx);
    T* y = Y + m * N;
    int64_t j = 0;
    for (; j + kTile * W <= N; j += kTile * W) {
      Vec acc[kTile];
      for (int a = 0; a < kTile; ++a) acc[a] = Vec(T(0));
      for (int64_t i = 0; i < n; ++i) {
        const T xi = x[idx[i]];
        const T* w = Wt + idx[i] * N + j;
        if (xi == T(1)) {
          for (int a = 0; a < kTile; ++a) acc[a] = acc[a] + Vec::loadu(w + a * W);
        } else {
          const Vec xv(xi);
          for (int a = 0; a < kTile; ++a) acc[a] = acc[a] + xv * Vec::loadu(w + a * W);
        }
      }
      for (int a = 0; a < kTile; ++a) acc[a].store(y + j + a * W);
    }
    for (; j < N; j += W) {
      const int lanes = int(std::min<int64_t>(W, N - j));
      Vec acc(T(0));
      for (int64_t i = 0; i < n; ++i) {
        const T xi = x[idx[i]];
        const Vec w = Vec::loadu(Wt + idx[i] * N + j, lanes);
        acc = acc + (xi == T(1) ? w : Vec(xi) * w);
      }
      acc.store(y + j, lanes);
    }
  };
#ifdef _OPENMP
  const int threads = parallel_threads(num_threads, M, M * K);
  if (threads > 1) {
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

// Y[K, N] = X[R, K]^T @ G[R, N]: each row r of X scatters x[r, k] * G[r] into
// the rows k of Y its nonzero entries pick. Every Y[k, j] sums its terms over
// r in increasing order starting from zero, as spike_matmul of the transposed
// X does (the same bits), but X is read once in place and G streamed once.
// Threads split the columns of Y (each keeps the order over r).
template <typename T>
bool spike_matmul_tn(const T* X, const T* G, T* Y, int64_t R, int64_t K, int64_t N,
                     double max_density, int num_threads) {
  using Vec = Vectorized<T>;
  constexpr int64_t W = Vec::size();
  const int64_t nnz = count_nonzero(X, R * K);
  if (static_cast<double>(nnz) > max_density * static_cast<double>(R * K)) return false;

  auto columns = [&](int64_t j0, int64_t j1, int64_t* idx) {
    for (int64_t k = 0; k < K; ++k) std::fill(Y + k * N + j0, Y + k * N + j1, T(0));
    for (int64_t r = 0; r < R; ++r) {
      const T* x = X + r * K;
      const int64_t n = nonzero_positions(x, K, idx);
      const T* g = G + r * N;
      for (int64_t i = 0; i < n; ++i) {
        const T xi = x[idx[i]];
        T* y = Y + idx[i] * N;
        int64_t j = j0;
        if (xi == T(1)) {  // a spike of height 1: its row of G as it is
          for (; j + W <= j1; j += W) (Vec::loadu(y + j) + Vec::loadu(g + j)).store(y + j);
        } else {
          const Vec xv(xi);
          for (; j + W <= j1; j += W) (Vec::loadu(y + j) + xv * Vec::loadu(g + j)).store(y + j);
        }
        if (j < j1) {
          const int lanes = int(j1 - j);
          const Vec gv = Vec::loadu(g + j, lanes);
          (Vec::loadu(y + j, lanes) + (xi == T(1) ? gv : Vec(xi) * gv)).store(y + j, lanes);
        }
      }
    }
  };
#ifdef _OPENMP
  const int64_t n_vecs = (N + W - 1) / W;
  const int threads = parallel_threads(num_threads, n_vecs, R * K);
  if (threads > 1) {
#pragma omp parallel num_threads(threads)
    {
      std::vector<int64_t> idx(K);
      const int t = omp_get_thread_num();
      // whole vectors per thread: the same lanes as one thread's pass
      const int64_t j0 = std::min(N, (n_vecs * t / threads) * W);
      const int64_t j1 = std::min(N, (n_vecs * (t + 1) / threads) * W);
      if (j0 < j1) columns(j0, j1, idx.data());
    }
    return true;
  }
#endif
  std::vector<int64_t> idx(K);
  columns(0, N, idx.data());
  return true;
}

// --- linear filters (synapses) over a window ---

// Columns per block of a scan: the block's states and one step's inputs and
// outputs stay in L1 while it walks all T steps.
constexpr int64_t kScanBlock = 256;

// A block of up to kScanBlock columns [n0, n0 + w) through all steps of a
// linear_filter_scan (ScanArgs in neurons.h). The inner loops run over the
// columns (contiguous in every row), which the compiler vectorises; each
// column's arithmetic is the same sequence of IEEE operations as a scalar
// step, so results do not depend on the block or the ISA.
template <typename T>
inline void scan_block(const ScanArgs<T>& a, const T* A, const T* B, const T* C, T D,
                       int64_t n0, int64_t w) {
  const int S = a.states;
  const int64_t N = a.n;
  T x[kMaxScanStates][kScanBlock];
  T nx[kMaxScanStates][kScanBlock];
  T acc[kScanBlock];
  for (int s = 0; s < S; ++s)
    for (int64_t i = 0; i < w; ++i) x[s][i] = a.x_in[s * N + n0 + i];
  const bool with_d = D != T(0);

  auto output = [&](const T* u, T* y, T (*xs)[kScanBlock]) {
    for (int64_t i = 0; i < w; ++i) acc[i] = C[0] * xs[0][i];
    for (int s = 1; s < S; ++s)
      for (int64_t i = 0; i < w; ++i) acc[i] = acc[i] + C[s] * xs[s][i];
    if (with_d)
      for (int64_t i = 0; i < w; ++i) acc[i] = acc[i] + D * u[i];
    for (int64_t i = 0; i < w; ++i) y[i] = acc[i];
  };
  auto update = [&](const T* u) {
    for (int r = 0; r < S; ++r) {
      const T* Ar = A + r * S;
      for (int64_t i = 0; i < w; ++i) acc[i] = Ar[0] * x[0][i];
      for (int s = 1; s < S; ++s)
        for (int64_t i = 0; i < w; ++i) acc[i] = acc[i] + Ar[s] * x[s][i];
      for (int64_t i = 0; i < w; ++i) nx[r][i] = acc[i] + B[r] * u[i];
    }
    for (int r = 0; r < S; ++r)
      for (int64_t i = 0; i < w; ++i) x[r][i] = nx[r][i];
  };

  for (int64_t k = 0; k < a.steps; ++k) {
    const int64_t t = a.reverse ? a.steps - 1 - k : k;
    const T* u = a.u + t * a.u_step + n0;
    T* y = a.y + t * N + n0;
    if (S == 1 && !a.general && C[0] == T(1) && !with_d) {
      // nengo's OneX (Lowpass): the state is the output
      const T a0 = A[0], b0 = B[0];
      for (int64_t i = 0; i < w; ++i) {
        const T v = a0 * x[0][i] + b0 * u[i];
        x[0][i] = v;
        y[i] = v;
      }
      continue;
    }
    if (a.general) {
      output(u, y, x);
      update(u);
    } else {
      update(u);
      output(u, y, x);
    }
  }
  for (int s = 0; s < S; ++s)
    for (int64_t i = 0; i < w; ++i) a.x_out[s * N + n0 + i] = x[s][i];
}

template <typename T>
void linear_filter_scan(const ScanArgs<T>& a) {
  const int S = a.states;
  T A[kMaxScanStates * kMaxScanStates], B[kMaxScanStates], C[kMaxScanStates];
  // the coefficients in the tensors' dtype, as torch's scalar products take them
  for (int i = 0; i < S * S; ++i) A[i] = static_cast<T>(a.A[i]);
  for (int i = 0; i < S; ++i) {
    B[i] = static_cast<T>(a.B[i]);
    C[i] = static_cast<T>(a.C[i]);
  }
  const T D = static_cast<T>(a.D);
  const int64_t n_blocks = (a.n + kScanBlock - 1) / kScanBlock;
  auto body = [&](int64_t b) {
    const int64_t n0 = b * kScanBlock;
    scan_block(a, A, B, C, D, n0, std::min<int64_t>(kScanBlock, a.n - n0));
  };
  for_each_block(
      parallel_threads(a.num_threads, n_blocks, a.n * std::max<int64_t>(a.steps, 1)),
      n_blocks, body);
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
      &CPU_CAPABILITY::lif_backward_entry<float>,
      &CPU_CAPABILITY::lif_backward_entry<double>,
      &CPU_CAPABILITY::alif_backward_entry<float>,
      &CPU_CAPABILITY::alif_backward_entry<double>,
      &CPU_CAPABILITY::relu_backward_entry<float>,
      &CPU_CAPABILITY::relu_backward_entry<double>,
      &CPU_CAPABILITY::spike_matmul_tn<float>,
      &CPU_CAPABILITY::spike_matmul_tn<double>,
      &CPU_CAPABILITY::linear_filter_scan<float>,
      &CPU_CAPABILITY::linear_filter_scan<double>,
  };
  return table;
}

}  // namespace snntorch_nengo
