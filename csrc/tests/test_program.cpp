// C++ unit tests of the in-place stepping Program (run by ctest).
//
// A small program, a ReLU layer feeding a lowpass filter with its output
// recorded, runs in the Program and, written out with ATen's functional ops,
// beside it; the plain-loop forms (batch 1, float64) and the ATen forms
// (batch 3) must both agree with it. CALL instructions must run in order with
// the step index, and malformed instructions must be refused when added.
#include <ATen/ATen.h>
#include <c10/util/Exception.h>

#include <cstdio>
#include <vector>

#include "program.h"

using namespace snntorch_nengo;

namespace {

int g_failures = 0;
int g_checks = 0;

void expect(bool cond, const char* what) {
  ++g_checks;
  if (!cond) {
    ++g_failures;
    std::fprintf(stderr, "EXPECT failed: %s\n", what);
  }
}

void test_layer_and_filter(int64_t batch) {
  const int64_t n_in = 5, n_out = 7, steps = 6;
  const double a = 0.9, b = 0.1, dt = 0.001;
  auto opts = at::TensorOptions().dtype(at::kDouble);
  at::manual_seed(1);
  at::Tensor W = at::randn({n_out, n_in}, opts);
  at::Tensor data = at::randn({batch, steps, n_in}, opts);
  at::Tensor x = at::zeros({batch, n_in}, opts), J = at::zeros({batch, n_out}, opts);
  at::Tensor rate = at::zeros({batch, n_out}, opts), X = at::zeros({batch, 1, n_out}, opts);
  at::Tensor rec = at::zeros({batch, steps, n_out}, opts);
  at::Tensor step = at::zeros({}, at::kLong), time = at::zeros({}, opts);

  Program prog;
  prog.add(TIME, {step, time}, {}, {dt});
  prog.add(FEED, {x, data}, {}, {});
  prog.add(FILL, {J}, {}, {0.0});
  prog.add(ADDMM, {J, x, W.t()}, {}, {});
  prog.add(RELU, {rate, J}, {}, {2.0});
  prog.add(AXPBY, {X, rate.unsqueeze(1)}, {}, {a, b});
  std::vector<int64_t> schedule;
  for (int64_t k = 0; k < steps; ++k) schedule.push_back(k);
  prog.add(RECORD, {rec, X.select(1, 0)}, schedule, {});
  std::vector<int64_t> seen;
  prog.add_call([&](int64_t k) { seen.push_back(k); });
  prog.run(0, 2);
  prog.run(2, steps);  // state carries over between runs

  at::Tensor Xr = at::zeros({batch, n_out}, opts);
  bool same = true;
  for (int64_t k = 0; k < steps; ++k) {
    at::Tensor r = 2.0 * at::clamp_min(at::matmul(data.select(1, k), W.t()), 0.0);
    Xr = a * Xr + b * r;
    same = same && at::allclose(rec.select(1, k), Xr, 1e-12, 1e-12);
  }
  expect(same, "recorded filter output equals the functional computation");
  expect(step.item<int64_t>() == steps, "the step counter advanced once per step");
  expect(std::abs(time.item<double>() - steps * dt) < 1e-15, "time = step * dt");
  expect(seen == schedule, "CALL ran once per step, in order, with the step index");
}

void test_refuses_bad_instructions() {
  Program prog;
  bool threw = false;
  try {
    prog.add(COPY, {at::zeros({3})}, {}, {});
  } catch (const c10::Error&) {
    threw = true;
  }
  expect(threw, "COPY with one tensor is refused");
  threw = false;
  try {
    prog.add(N_OPCODES, {}, {}, {});
  } catch (const c10::Error&) {
    threw = true;
  }
  expect(threw, "an unknown opcode is refused");
  expect(prog.size() == 0, "refused instructions are not added");
}

}  // namespace

int main() {
  test_layer_and_filter(1);  // plain loops
  test_layer_and_filter(3);  // ATen
  test_refuses_bad_instructions();
  std::printf("%d checks, %d failures\n", g_checks, g_failures);
  return g_failures == 0 ? 0 : 1;
}
