#include "program.h"

#include <ATen/Parallel.h>

#include "neurons.h"

#include <c10/core/GradMode.h>
#include <c10/util/Exception.h>

namespace snntorch_nengo {

namespace {

// (tensors, ints, floats) each opcode takes; -1: any number of ints
struct Arity {
  int t, i, f;
};
constexpr Arity kArity[N_OPCODES] = {
    {0, 1, 0},   // CALL
    {1, 0, 1},   // FILL
    {2, 0, 0},   // COPY
    {2, 0, 0},   // ADD
    {3, 1, 0},   // GATHER
    {3, 1, 0},   // INDEX_COPY
    {3, 1, 0},   // INDEX_ADD
    {3, 0, 0},   // ADDMM
    {3, 0, 0},   // BADDBMM
    {3, 0, 0},   // ADDCMUL
    {2, 0, 1},   // RELU
    {2, 0, 2},   // AXPBY
    {2, 0, 1},   // TIME
    {2, 0, 0},   // FEED
    {2, -1, 0},  // RECORD
    {3, 0, 0},   // BMM
    {3, 0, 0},   // MUL
    {2, 0, 0},   // SUM
    {0, 1, 0},   // NEURON: checked by kind
    {3, 0, 0},   // ROWDOT
};

// NEURON kinds, their states and floats: neuron_specs.h (generated from the specs)
template <typename scalar_t>
void run_neuron(const std::vector<at::Tensor>& t, int64_t kind, const std::vector<double>& f) {
  const int S = kNeuronStates[kind];
  FusedArgs<scalar_t> a;
  a.J = t[1].const_data_ptr<scalar_t>();
  a.steps = 1;
  a.n = t[0].numel();
  for (int s = 0; s < S; ++s) {
    // in place: the kernels load a block's states before they store them
    a.state_in[s] = t[2 + s].const_data_ptr<scalar_t>();
    a.state_out[s] = t[2 + s].mutable_data_ptr<scalar_t>();
  }
  a.filtered_in = t[2 + S].const_data_ptr<scalar_t>();
  a.filtered_out = t[2 + S].mutable_data_ptr<scalar_t>();
  a.filtered_seq = t[3 + S].mutable_data_ptr<scalar_t>();
  a.output = t[0].mutable_data_ptr<scalar_t>();
  a.num_threads = at::get_num_threads();
  // one step: the lowpass (decay 0) only fills the scratch buffers
  run_kind(active_kernels(), static_cast<int>(kind), a, f.data(), 0.0);
}

bool is_float(const at::Tensor& t) {
  return t.device().is_cpu() &&
         (t.scalar_type() == at::kFloat || t.scalar_type() == at::kDouble);
}

// All contiguous CPU float tensors of one dtype and (unless `any_size`) size.
bool dense(const std::vector<at::Tensor>& ts, size_t n, bool any_size = false) {
  for (size_t j = 0; j < n; ++j) {
    const auto& t = ts[j];
    if (!is_float(t) || !t.is_contiguous() || t.scalar_type() != ts[0].scalar_type() ||
        (!any_size && t.numel() != ts[0].numel())) {
      return false;
    }
  }
  return true;
}

// sum_i a[i] b[i] over unit strides: eight partial sums, so that the
// compiler can keep them in one vector register
template <typename scalar_t>
inline scalar_t dot(const scalar_t* a, const scalar_t* b, int64_t n) {
  const int64_t n8 = n - n % 8;
  scalar_t acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  for (int64_t i = 0; i < n8; i += 8) {
    for (int u = 0; u < 8; ++u) acc[u] += a[i + u] * b[i + u];
  }
  scalar_t sum = ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]));
  for (int64_t i = n8; i < n; ++i) sum += a[i] * b[i];
  return sum;
}

// Plain loops pay where ATen's fixed cost per call (about a microsecond)
// dwarfs the arithmetic: small elementwise updates and small products.
constexpr int64_t kRawMacs = 1 << 16;

bool raw_form(int64_t op, const std::vector<at::Tensor>& t) {
  switch (op) {
    case FILL:
      return dense(t, 1);
    case COPY:
    case ADD:
    case RELU:
    case AXPBY:
      return dense(t, 2);
    case ADDCMUL:
      // a one-element factor (a scalar transform) broadcasts
      return dense(t, 3) || (dense(t, 3, true) && t[1].numel() == 1 &&
                             t[2].numel() == t[0].numel());
    case RECORD: {
      // a (B, d) sample into row j of a contiguous (B, n, d) buffer
      const auto &buf = t[0], &x = t[1];
      return dense(t, 2, true) && buf.dim() >= 2 && buf.size(1) > 0 && x.numel() > 0 &&
             x.numel() * buf.size(1) == buf.numel();
    }
    case TIME:
      return t[0].scalar_type() == at::kLong && t[0].numel() == 1 && t[0].is_cpu() &&
             is_float(t[1]) && t[1].numel() == 1;
    case ADDMM: {
      // (1, m) += (1, n) @ (n, m), the matrix a transposed contiguous (m, n)
      const auto &y = t[0], &x = t[1], &w = t[2];
      return dense(t, 2, true) && is_float(w) && w.scalar_type() == y.scalar_type() &&
             y.dim() == 2 && y.size(0) == 1 && x.dim() == 2 && w.dim() == 2 &&
             w.stride(0) == 1 && w.stride(1) == w.size(0) && w.numel() <= kRawMacs;
    }
    case ROWDOT: {
      // y (B, k) of any strides, x (B, k, c) with unit stride in c, A (k, c)
      const auto &y = t[0], &x = t[1], &A = t[2];
      return is_float(y) && is_float(x) && is_float(A) && x.scalar_type() == y.scalar_type() &&
             A.scalar_type() == y.scalar_type() && y.dim() == 2 && x.dim() == 3 &&
             A.dim() == 2 && A.is_contiguous() && x.stride(2) == 1 &&
             x.size(0) == y.size(0) && x.size(1) == y.size(1) && A.size(0) == x.size(1) &&
             A.size(1) == x.size(2);
    }
    case BADDBMM:
      return is_float(t[0]) && is_float(t[1]) && is_float(t[2]) &&
             t[1].scalar_type() == t[0].scalar_type() &&
             t[2].scalar_type() == t[0].scalar_type() &&
             t[0].size(0) * t[0].size(1) * t[0].size(2) * t[1].size(2) <= kRawMacs;
    default:
      return false;
  }
}

// The counts of `op`'s operands (floats: unless null, as set keeps them), and
// every tensor defined: a clear error instead of a crash in `run`.
void check_operands(const char* who, int64_t op, const std::vector<at::Tensor>& tensors,
                    const std::vector<int64_t>& ints, const std::vector<double>* floats) {
  const Arity& a = kArity[op];
  TORCH_CHECK(static_cast<int>(tensors.size()) == a.t &&
                  (a.i < 0 || static_cast<int>(ints.size()) == a.i) &&
                  (floats == nullptr || static_cast<int>(floats->size()) == a.f),
              who, ": opcode ", op, " takes ", a.t, " tensors, ", a.i, " ints and ", a.f,
              " floats; got ", tensors.size(), ", ", ints.size(), " and ",
              floats == nullptr ? a.f : static_cast<int>(floats->size()));
  for (const auto& t : tensors) {
    TORCH_CHECK(t.defined(), who, ": opcode ", op, " got an undefined tensor");
  }
}

// The sample row RECORD fills after local step k (-1: none).
int64_t record_row(const std::vector<int64_t>& schedule, int64_t k) {
  TORCH_CHECK(k < static_cast<int64_t>(schedule.size()), "Program.run: step ", k,
              " is past the probe schedule (", schedule.size(), " steps)");
  return schedule[k];
}

}  // namespace

void Program::add(int64_t op, std::vector<at::Tensor> tensors, std::vector<int64_t> ints,
                  std::vector<double> floats) {
  TORCH_CHECK(op > CALL && op < N_OPCODES, "Program.add: unknown opcode ", op,
              " (CALL instructions come from add_call)");
  if (op == NEURON) {
    TORCH_CHECK(ints.size() == 1 && ints[0] >= 0 && ints[0] < kNeuronKinds,
                "Program.add: NEURON takes one int, the neuron kind (0 to ",
                kNeuronKinds - 1, ")");
    const int S = kNeuronStates[ints[0]];
    TORCH_CHECK(static_cast<int>(tensors.size()) == 4 + S &&
                    static_cast<int>(floats.size()) == kNeuronFloats[ints[0]],
                "Program.add: NEURON kind ", ints[0], " takes ", 4 + S, " tensors and ",
                kNeuronFloats[ints[0]], " floats; got ", tensors.size(), " and ",
                floats.size());
    TORCH_CHECK(dense(tensors, tensors.size()),
                "Program.add: NEURON needs contiguous CPU float tensors of one dtype and size");
    code_.push_back({op, std::move(tensors), std::move(ints), std::move(floats), false});
    return;
  }
  check_operands("Program.add", op, tensors, ints, &floats);
  const bool raw = raw_form(op, tensors);
  code_.push_back({op, std::move(tensors), std::move(ints), std::move(floats), raw});
}

void Program::set(int64_t index, std::vector<at::Tensor> tensors, std::vector<int64_t> ints) {
  TORCH_CHECK(index >= 0 && index < size(), "Program.set: no instruction ", index, " (",
              size(), " instructions)");
  Instruction& ins = code_[index];
  TORCH_CHECK(ins.op != CALL && ins.op != NEURON,
              "Program.set: instruction ", index, " (opcode ", ins.op,
              ") takes no new operands");
  check_operands("Program.set", ins.op, tensors, ints, nullptr);
  ins.raw = raw_form(ins.op, tensors);
  ins.t = std::move(tensors);
  ins.i = std::move(ints);
}

void Program::add_call(Call fn) {
  code_.push_back({CALL, {}, {static_cast<int64_t>(calls_.size())}, {}});
  calls_.push_back(std::move(fn));
}

void Program::run(int64_t k0, int64_t k1) {
  c10::AutoGradMode no_grad(false);
  for (int64_t k = k0; k < k1; ++k) {
    for (auto& ins : code_) execute(ins, k);
  }
}

template <typename scalar_t>
void Program::execute_raw(const Instruction& ins, int64_t k) {
  const auto& t = ins.t;
  auto ptr = [&](size_t j) { return t[j].data_ptr<scalar_t>(); };
  const int64_t n = t[0].numel();
  switch (ins.op) {
    case FILL: {
      scalar_t* y = ptr(0);
      const auto v = static_cast<scalar_t>(ins.f[0]);
      for (int64_t j = 0; j < n; ++j) y[j] = v;
      break;
    }
    case COPY: {
      scalar_t* y = ptr(0);
      const scalar_t* x = ptr(1);
      for (int64_t j = 0; j < n; ++j) y[j] = x[j];
      break;
    }
    case ADD: {
      scalar_t* y = ptr(0);
      const scalar_t* x = ptr(1);
      for (int64_t j = 0; j < n; ++j) y[j] += x[j];
      break;
    }
    case ADDCMUL: {
      scalar_t* y = ptr(0);
      const scalar_t *a = ptr(1), *x = ptr(2);
      if (t[1].numel() == 1 && n != 1) {
        const scalar_t a0 = a[0];
        for (int64_t j = 0; j < n; ++j) y[j] += a0 * x[j];
      } else {
        for (int64_t j = 0; j < n; ++j) y[j] += a[j] * x[j];
      }
      break;
    }
    case RECORD: {
      const int64_t j = record_row(ins.i, k);
      if (j < 0) break;
      // buf (B, n, d...): sample b's row j starts at b * n * d + j * d
      const int64_t B = t[0].size(0), rows = t[0].size(1), d = t[1].numel() / B;
      scalar_t* buf = ptr(0);
      const scalar_t* x = ptr(1);
      for (int64_t b = 0; b < B; ++b) {
        scalar_t* dst = buf + (b * rows + j) * d;
        const scalar_t* src = x + b * d;
        for (int64_t e = 0; e < d; ++e) dst[e] = src[e];
      }
      break;
    }
    case RELU: {
      scalar_t* y = ptr(0);
      const scalar_t* x = ptr(1);
      const auto amp = static_cast<scalar_t>(ins.f[0]);
      // x < 0, not x > 0: NaN passes through, as in torch.clamp
      for (int64_t j = 0; j < n; ++j) y[j] = amp * (x[j] < 0 ? scalar_t(0) : x[j]);
      break;
    }
    case AXPBY: {
      scalar_t* y = ptr(0);
      const scalar_t* x = ptr(1);
      const auto a = static_cast<scalar_t>(ins.f[0]), b = static_cast<scalar_t>(ins.f[1]);
      for (int64_t j = 0; j < n; ++j) y[j] = a * y[j] + b * x[j];
      break;
    }
    case TIME: {
      int64_t* step = t[0].data_ptr<int64_t>();
      *step += 1;
      *t[1].data_ptr<scalar_t>() = static_cast<scalar_t>(*step) * static_cast<scalar_t>(ins.f[0]);
      break;
    }
    case ADDMM: {
      // y[j] += sum_i A[j, i] x[i], A row-major (m, n)
      scalar_t* y = ptr(0);
      const scalar_t *x = ptr(1), *A = ptr(2);
      const int64_t m = t[0].size(1), nn = t[1].size(1);
      for (int64_t j = 0; j < m; ++j) y[j] += dot(A + j * nn, x, nn);
      break;
    }
    case BADDBMM: {
      // y[b] += x[b] @ w[b], any strides
      scalar_t* y = ptr(0);
      const scalar_t *x = ptr(1), *w = ptr(2);
      const int64_t nb = t[0].size(0), rows = t[0].size(1), cols = t[0].size(2),
                    inner = t[1].size(2);
      const auto ys = t[0].strides(), xs = t[1].strides(), ws = t[2].strides();
      for (int64_t b = 0; b < nb; ++b) {
        for (int64_t r = 0; r < rows; ++r) {
          const scalar_t* xr = x + b * xs[0] + r * xs[1];
          scalar_t* yr = y + b * ys[0] + r * ys[1];
          if (inner == 1 && ys[2] == 1 && ws[2] == 1) {
            // an outer product row (encoders: one input per block): unit
            // strides let the compiler vectorise it
            const scalar_t xv = xr[0];
            const scalar_t* w0 = w + b * ws[0];
            for (int64_t c = 0; c < cols; ++c) yr[c] += xv * w0[c];
            continue;
          }
          if (xs[2] == 1 && ws[1] == 1) {
            // dot products over unit strides (decoders)
            for (int64_t c = 0; c < cols; ++c) {
              const scalar_t* wc = w + b * ws[0] + c * ws[2];
              scalar_t acc = 0;
              for (int64_t i = 0; i < inner; ++i) acc += xr[i] * wc[i];
              yr[c * ys[2]] += acc;
            }
            continue;
          }
          for (int64_t c = 0; c < cols; ++c) {
            const scalar_t* wc = w + b * ws[0] + c * ws[2];
            scalar_t acc = 0;
            for (int64_t i = 0; i < inner; ++i) acc += xr[i * xs[2]] * wc[i * ws[1]];
            yr[c * ys[2]] += acc;
          }
        }
      }
      break;
    }
    case ROWDOT: {
      // y[b, k] = sum_c x[b, k, c] A[k, c], without the (B, k, c) products
      // in memory
      scalar_t* y = ptr(0);
      const scalar_t *x = ptr(1), *A = ptr(2);
      const int64_t B = t[1].size(0), K = t[1].size(1), C = t[1].size(2);
      const int64_t xs0 = t[1].stride(0), xs1 = t[1].stride(1);
      const int64_t ys0 = t[0].stride(0), ys1 = t[0].stride(1);
      for (int64_t b = 0; b < B; ++b) {
        for (int64_t k = 0; k < K; ++k) {
          y[b * ys0 + k * ys1] = dot(A + k * C, x + b * xs0 + k * xs1, C);
        }
      }
      break;
    }
    default:
      TORCH_CHECK(false, "Program.run: no plain loop for opcode ", ins.op);
  }
}

void Program::execute(Instruction& ins, int64_t k) {
  auto& t = ins.t;
  if (ins.raw) {
    const auto dtype = ins.op == TIME ? t[1].scalar_type() : t[0].scalar_type();
    if (dtype == at::kDouble) {
      execute_raw<double>(ins, k);
    } else {
      execute_raw<float>(ins, k);
    }
    return;
  }
  switch (ins.op) {
    case CALL:
      calls_[ins.i[0]](k);
      break;
    case FILL:
      t[0].fill_(ins.f[0]);
      break;
    case COPY:
      t[0].copy_(t[1]);
      break;
    case ADD:
      t[0].add_(t[1]);
      break;
    case GATHER:
      at::index_select_out(t[0], t[1], ins.i[0], t[2]);
      break;
    case INDEX_COPY:
      t[0].index_copy_(ins.i[0], t[1], t[2]);
      break;
    case INDEX_ADD:
      t[0].index_add_(ins.i[0], t[1], t[2]);
      break;
    case ADDMM:
      t[0].addmm_(t[1], t[2]);
      break;
    case BADDBMM:
      t[0].baddbmm_(t[1], t[2]);
      break;
    case ADDCMUL:
      t[0].addcmul_(t[1], t[2]);
      break;
    case RELU:
      at::clamp_min_out(t[0], t[1], 0.0);
      if (ins.f[0] != 1.0) t[0].mul_(ins.f[0]);
      break;
    case AXPBY:
      t[0].mul_(ins.f[0]).add_(t[1], ins.f[1]);
      break;
    case TIME:
      t[0].add_(1);
      t[1].copy_(t[0]).mul_(ins.f[0]);
      break;
    case FEED:
      t[0].copy_(t[1].select(1, k));
      break;
    case RECORD: {
      const int64_t j = record_row(ins.i, k);
      if (j >= 0) t[0].select(1, j).copy_(t[1]);
      break;
    }
    case BMM:
      at::bmm_out(t[0], t[1], t[2]);
      break;
    case MUL:
      at::mul_out(t[0], t[1], t[2]);
      break;
    case SUM:
      at::sum_out(t[0], t[1], {-1});
      break;
    case ROWDOT:
      at::sum_out(t[0], at::mul(t[1], t[2]), {-1});
      break;
    case NEURON:
      if (t[0].scalar_type() == at::kDouble) {
        run_neuron<double>(t, ins.i[0], ins.f);
      } else {
        run_neuron<float>(t, ins.i[0], ins.f);
      }
      break;
    default:
      TORCH_CHECK(false, "Program.run: unknown opcode ", ins.op);
  }
}

}  // namespace snntorch_nengo
