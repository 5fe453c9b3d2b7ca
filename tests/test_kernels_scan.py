"""The linear filter scan (synapses over a window): reference, C++ kernel, op.

- `reference.linear_filter_scan` with the coefficients of `linear_filter_scan_form`
  against nengo's own LinearFilter steps (numpy, float64) over T steps, for
  each of nengo's step variants (NoX, OneX, NoD, General);
- the C++ kernel (skipped when the extension was not built) bitwise equal to
  the reference in float64, close in float32, forwards and in reverse;
- the op ``snntorch_nengo::linear_filter_scan``: its hand-derived backward (the
  adjoint scan) against autograd through the reference, gradcheck and
  gradgradcheck in float64, torch.library.opcheck, and clear errors.
"""

import nengo
import numpy as np
import pytest
import torch

from snntorch_nengo.kernels import cpp, ops, reference
from snntorch_nengo.synapses import linear_filter_scan_form

DT = 0.001

needs_cpp = pytest.mark.skipif(
    not cpp.HAS_SCAN, reason=f"C++ extension without the scan kernel ({cpp.IMPORT_ERROR})"
)

# one per nengo step variant, and a third order filter
SYNAPSES = {
    "nox": nengo.LinearFilter([2.5], [1]),
    "lowpass": nengo.Lowpass(0.005),
    "alpha": nengo.Alpha(0.004),
    "third_order": nengo.LinearFilter([1], [1e-9, 3e-6, 3e-3, 1]),
    "general": nengo.LinearFilter([0.4, 1], [0.003, 1]),
}
VARIANT = {"nox": "NoX", "lowpass": "OneX", "alpha": "NoD", "third_order": "NoD",
           "general": "General"}


def random_coefficients(S, seed, general):
    rng = np.random.RandomState(seed)
    A = list(rng.uniform(-0.6, 0.6, S * S))
    B = list(rng.randn(S))
    C = list(rng.randn(S))
    return A, B, C, float(rng.randn()) if general else 0.0


@pytest.mark.parametrize("name", list(SYNAPSES))
def test_reference_equals_nengo_steps(name):
    synapse = SYNAPSES[name]
    T, N = 300, 7
    rng = np.random.RandomState(1)
    u = rng.uniform(-1, 2, (T, N))
    state = synapse.make_state((N,), (N,), DT)
    # a nonzero initial state: the scan must start where nengo's step does
    state["X"][...] = rng.uniform(-1, 1, state["X"].shape)
    x0 = torch.tensor(state["X"]).reshape(-1, N)
    step = synapse.make_step((N,), (N,), DT, None, state)
    assert type(step).__name__ == VARIANT[name]
    # (nengo's General step returns its output as [1, N])
    expected = np.array([np.array(step(t * DT, u[t])).reshape(N) for t in range(T)])

    form = linear_filter_scan_form(synapse, DT)
    assert form.general == (name == "general")
    if form.n_states == 0:
        np.testing.assert_array_equal(form.D * u, expected)
        return
    y, xT = reference.linear_filter_scan(torch.tensor(u), x0, *form)
    np.testing.assert_allclose(y.numpy(), expected, rtol=1e-13, atol=1e-14)
    np.testing.assert_allclose(xT.numpy(), state["X"].reshape(-1, N), rtol=1e-13,
                               atol=1e-14)
    if name == "lowpass":  # the same operations as nengo's OneX: the same bits
        np.testing.assert_array_equal(y.numpy(), expected)


@needs_cpp
@pytest.mark.parametrize("S", [1, 2, 3, 8])
@pytest.mark.parametrize("general", [False, True], ids=["after", "general"])
@pytest.mark.parametrize("reverse", [False, True], ids=["forward", "reverse"])
def test_cpp_equals_reference(S, general, reverse):
    # N spans several blocks of columns and a partial one
    T, N = 50, 600
    A, B, C, D = random_coefficients(S, S, general)
    rng = np.random.RandomState(S)
    u = torch.tensor(rng.randn(T, N))
    x0 = torch.tensor(rng.randn(S, N))
    want = reference.linear_filter_scan(u, x0, A, B, C, D, general, reverse)
    got = cpp.linear_filter_scan(u, x0, A, B, C, D, general, reverse)
    for g, w in zip(got, want):
        assert torch.equal(g, w)
    got32 = cpp.linear_filter_scan(u.float(), x0.float(), A, B, C, D, general, reverse)
    want32 = reference.linear_filter_scan(u.float(), x0.float(), A, B, C, D, general, reverse)
    for g, w in zip(got32, want32):
        assert g.dtype == torch.float32
        torch.testing.assert_close(g, w, rtol=0, atol=0)


@needs_cpp
def test_cpp_lowpass_bitwise_with_the_torch_step():
    # what the window ran before: the synapse's torch step (synapses/linear.py)
    from snntorch_nengo.synapses import synapse_step

    synapse, T, N = nengo.Lowpass(0.01), 200, 33
    form = linear_filter_scan_form(synapse, DT)
    step = synapse_step(synapse, DT)
    for dtype in (torch.float64, torch.float32):
        u = torch.randn(T, 1, N, dtype=dtype)
        state = {"X": torch.randn(1, 1, N, dtype=dtype)}
        y, xT = cpp.linear_filter_scan(u.reshape(T, N), state["X"].reshape(1, N), *form)
        ys = []
        for t in range(T):
            out, state = step(u[t], state)
            ys.append(out)
        assert torch.equal(y, torch.stack(ys).reshape(T, N))
        assert torch.equal(xT, state["X"].reshape(1, N))


def test_empty_window_returns_fresh_tensors():
    x0 = torch.randn(2, 4, dtype=torch.float64)
    y, xT = ops.linear_filter_scan(x0.new_empty((0, 4)), x0, [0.5, 0, 0, 0.5], [1, 1],
                                   [1, 0], 0.0)
    assert y.shape == (0, 4) and torch.equal(xT, x0)
    assert xT.data_ptr() != x0.data_ptr()


@pytest.mark.parametrize("S", [1, 2])
@pytest.mark.parametrize("general", [False, True], ids=["after", "general"])
@pytest.mark.parametrize("reverse", [False, True], ids=["forward", "reverse"])
def test_backward_is_the_adjoint_scan(S, general, reverse):
    T, N = 40, 5
    A, B, C, D = random_coefficients(S, 7 + S, general)
    u = torch.randn(T, N, dtype=torch.float64, requires_grad=True)
    x0 = torch.randn(S, N, dtype=torch.float64, requires_grad=True)
    gy, gx = torch.randn(T, N, dtype=torch.float64), torch.randn(S, N, dtype=torch.float64)

    def grads(fn):
        y, xT = fn(u, x0, A, B, C, D, general, reverse)
        return torch.autograd.grad([y, xT], [u, x0], [gy, gx])

    with torch.enable_grad():  # autograd through the reference's own steps
        want = grads(reference.linear_filter_scan)
    got = grads(ops.linear_filter_scan)
    for g, w in zip(got, want):
        torch.testing.assert_close(g, w, rtol=1e-12, atol=1e-12)
    # only one output's gradient given: the other counts as zero
    (gu,) = torch.autograd.grad(ops.linear_filter_scan(u, x0, A, B, C, D, general,
                                                       reverse)[0].sum(), [u])
    (wu,) = torch.autograd.grad(reference.linear_filter_scan(u, x0, A, B, C, D, general,
                                                             reverse)[0].sum(), [u])
    torch.testing.assert_close(gu, wu, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("S", [1, 2])
@pytest.mark.parametrize("general", [False, True], ids=["after", "general"])
def test_gradcheck(S, general):
    A, B, C, D = random_coefficients(S, 3, general)
    u = torch.randn(12, 4, dtype=torch.float64, requires_grad=True)
    x0 = torch.randn(S, 4, dtype=torch.float64, requires_grad=True)
    for reverse in (False, True):
        def fn(u, x0):
            return ops.linear_filter_scan(u, x0, A, B, C, D, general, reverse)

        assert torch.autograd.gradcheck(fn, (u, x0))
        assert torch.autograd.gradgradcheck(fn, (u, x0))


@pytest.mark.parametrize("S", [1, 3])
@pytest.mark.parametrize("general", [False, True], ids=["after", "general"])
def test_opcheck(S, general):
    A, B, C, D = random_coefficients(S, 5, general)
    u = torch.randn(9, 6, dtype=torch.float64, requires_grad=True)
    x0 = torch.randn(S, 6, dtype=torch.float64, requires_grad=True)
    torch.library.opcheck(ops.linear_filter_scan, (u, x0, A, B, C, D, general, False))
    torch.library.opcheck(ops.linear_filter_scan,
                          (u.detach().float(), x0.detach().float(), A, B, C, D, general, True))


def test_without_the_extension_the_reference_runs(monkeypatch):
    A, B, C, D = random_coefficients(2, 9, True)
    u, x0 = torch.randn(20, 3, dtype=torch.float64), torch.randn(2, 3, dtype=torch.float64)
    with_cpp = ops.linear_filter_scan(u, x0, A, B, C, D, True)
    monkeypatch.setattr(cpp, "HAS_SCAN", False)
    without = ops.linear_filter_scan(u, x0, A, B, C, D, True)
    for a, b in zip(with_cpp, without):
        assert torch.equal(a, b)


def test_bad_input_names_the_problem():
    u = torch.randn(5, 4, dtype=torch.float64)
    with pytest.raises(RuntimeError, match=r"x0 must be \[S, N\]|x0 \[S, N\]"):
        ops.linear_filter_scan(u, torch.zeros(2, 3, dtype=torch.float64), [1, 0, 0, 1],
                               [1, 1], [1, 1], 0.0)
    with pytest.raises(RuntimeError, match="A must have S \\* S = 4"):
        ops.linear_filter_scan(u, torch.zeros(2, 4, dtype=torch.float64), [1.0], [1, 1],
                               [1, 1], 0.0)
    with pytest.raises(RuntimeError, match="dtype"):
        ops.linear_filter_scan(u, torch.zeros(1, 4), [0.5], [0.5], [1.0], 0.0)
    with pytest.raises(ValueError, match="u must be \\[T, N\\]"):
        reference.linear_filter_scan(u[0], torch.zeros(1, 4, dtype=torch.float64), [0.5],
                                     [0.5], [1.0], 0.0)
    if cpp.HAS_SCAN:
        with pytest.raises(RuntimeError, match="1 to 8 states"):
            cpp.linear_filter_scan(u, torch.zeros(9, 4, dtype=torch.float64), [0.0] * 81,
                                   [1.0] * 9, [1.0] * 9, 0.0, False, False)


@pytest.mark.parametrize("general", [False, True], ids=["after", "general"])
def test_prepended_first_row(general):
    """With y0 the output is [T + 1, N], y0 first: gradients reach y0 too."""
    A, B, C, D = random_coefficients(2, 11, general)
    u = torch.randn(10, 4, dtype=torch.float64, requires_grad=True)
    x0 = torch.randn(2, 4, dtype=torch.float64, requires_grad=True)
    y0 = torch.randn(4, dtype=torch.float64, requires_grad=True)
    y, xT = ops.linear_filter_scan(u, x0, A, B, C, D, general, False, y0)
    want_y, want_x = reference.linear_filter_scan(u, x0, A, B, C, D, general)
    assert y.shape == (11, 4)
    assert torch.equal(y[0], y0) and torch.equal(y[1:], want_y) and torch.equal(xT, want_x)
    (g,) = torch.autograd.grad(y[0].sum() + y[3].sum(), [y0])
    assert torch.equal(g, torch.ones_like(y0))

    def fn(u, x0, y0):
        return ops.linear_filter_scan(u, x0, A, B, C, D, general, False, y0)

    assert torch.autograd.gradcheck(fn, (u, x0, y0))
    torch.library.opcheck(ops.linear_filter_scan, (u, x0, A, B, C, D, general, False, y0))
    with pytest.raises(RuntimeError, match="y0 must be"):
        ops.linear_filter_scan(u, x0, A, B, C, D, general, False, y0[:3])


@needs_cpp
def test_held_input_read_from_one_row():
    """An input expanded over time (stride 0) gives what the same values copied
    T times give, and its gradient sums over the steps."""
    A, B, C, D = random_coefficients(2, 13, True)
    row = torch.randn(1, 300, dtype=torch.float64, requires_grad=True)
    x0 = torch.randn(2, 300, dtype=torch.float64)
    held = row.expand(40, 300)
    assert held.stride(0) == 0
    y, xT = cpp.linear_filter_scan(held, x0, A, B, C, D, True)
    want_y, want_x = cpp.linear_filter_scan(held.contiguous(), x0, A, B, C, D, True)
    assert torch.equal(y, want_y) and torch.equal(xT, want_x)
    (g,) = torch.autograd.grad(ops.linear_filter_scan(held, x0, A, B, C, D, True)[0].sum(),
                               [row])
    (w,) = torch.autograd.grad(
        reference.linear_filter_scan(held, x0, A, B, C, D, True)[0].sum(), [row])
    torch.testing.assert_close(g, w, rtol=1e-12, atol=1e-12)
