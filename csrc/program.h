// In-place stepping programs: the C++ loop behind snntorch_nengo/engine/program.py.
//
// A program is a list of instructions, each an opcode with the tensors it
// works on (views of the run's signal buffers, bound once), integer and float
// arguments. `run(k0, k1)` executes the whole list for local steps k0..k1-1.
// The opcodes and their meaning are those of program.py's Python interpreter
// (`_EXEC`); CALL runs a callback (the Python step of an operator without an
// instruction form).
#pragma once

#include <ATen/ATen.h>

#include <cstdint>
#include <functional>
#include <vector>

namespace snntorch_nengo {

enum Opcode : int64_t {
  CALL = 0,
  FILL = 1,        // t0.fill_(f0)
  COPY = 2,        // t0.copy_(t1)
  ADD = 3,         // t0.add_(t1)
  GATHER = 4,      // t0 = t1.index_select(i0, t2)
  INDEX_COPY = 5,  // t0.index_copy_(i0, t1, t2)
  INDEX_ADD = 6,   // t0.index_add_(i0, t1, t2)
  ADDMM = 7,       // t0.addmm_(t1, t2)
  BADDBMM = 8,     // t0.baddbmm_(t1, t2)
  ADDCMUL = 9,     // t0.addcmul_(t1, t2)
  RELU = 10,       // t0 = f0 * max(t1, 0)
  AXPBY = 11,      // t0 = f0 * t0 + f1 * t1
  TIME = 12,       // t0 += 1; t1 = t0 * f0   (step counter, time)
  FEED = 13,       // t0.copy_(t1[:, k])
  RECORD = 14,     // if i[k] >= 0: t0[:, i[k]].copy_(t1)
  BMM = 15,        // t0 = bmm(t1, t2)
  MUL = 16,        // t0 = t1 * t2
  SUM = 17,        // t0 = t1.sum(-1)
  NEURON = 18,     // one step of neuron type i0 (see below), in place
  ROWDOT = 19,     // t0 = (t1 * t2).sum(-1): t1 (B, k, c), t2 (k, c) (decoders)
  N_OPCODES = 20,
};

// NEURON: one step of neuron kind i0 (neuron_specs.h, generated from the
// Python specs), run by its fused kernel (neurons.h); tensors (output, J, the
// states in the spec's order, two scratch buffers), all contiguous and of one
// size; floats dt and the neuron's parameters (kNeuronFloats[i0]), no decay.
class Program {
 public:
  using Call = std::function<void(int64_t)>;

  // Checks the argument counts of `op` (a clear error instead of a crash later).
  void add(int64_t op, std::vector<at::Tensor> tensors, std::vector<int64_t> ints,
           std::vector<double> floats);
  // New operands (and ints) for instruction `index`, same opcode and floats:
  // a program kept from run to run rebinds what each run brings (fed data,
  // probe buffers and their schedule).
  void set(int64_t index, std::vector<at::Tensor> tensors, std::vector<int64_t> ints);
  void add_call(Call fn);
  void run(int64_t k0, int64_t k1);
  int64_t size() const { return static_cast<int64_t>(code_.size()); }

 private:
  struct Instruction {
    int64_t op;
    std::vector<at::Tensor> t;
    std::vector<int64_t> i;
    std::vector<double> f;
    // small dense float operands run as plain loops (ATen's per-call overhead
    // is most of the cost at batch size 1); decided once, in `add`
    bool raw = false;
  };
  void execute(Instruction& ins, int64_t k);
  template <typename scalar_t>
  void execute_raw(const Instruction& ins, int64_t k);

  std::vector<Instruction> code_;
  std::vector<Call> calls_;
};

}  // namespace snntorch_nengo
