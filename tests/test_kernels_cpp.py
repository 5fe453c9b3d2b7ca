"""Fused neuron + lowpass kernels: torch reference, C++ kernels and custom ops.

- `snntorch_nengo.kernels.reference` against nengo's own numpy neuron steps and
  Lowpass synapse (float64, 1000 steps, spikes identical);
- the C++ kernels (`snntorch_nengo._C`, skipped when it was not built) against
  the reference (float64 bitwise; float32 spikes identical, values close);
- the custom ops `snntorch_nengo::*`: the backward kernels' gradients equal
  to the reference's autograd with every surrogate, gradcheck, the fallback
  without the extension, torch.compile and torch.library.opcheck.

The C++ unit tests of csrc/ run under ctest (``make test-cpp``).
"""

import math
import os
import subprocess
import sys

import nengo
import numpy as np
import pytest
import torch

from snntorch_nengo.kernels import cpp, ops, reference
from snntorch_nengo.neurons.surrogates import SURROGATES, FastSigmoid, kernel_surrogate

DT = 0.001
TAU = 0.012  # lowpass time constant
DECAY = math.exp(-DT / TAU)
# non-default neuron parameters
LIF = dict(tau_rc=0.03, tau_ref=0.0025, min_voltage=-0.4, amplitude=0.7)
ALIF = dict(LIF, tau_n=0.15, inc_n=0.2)
RELU = dict(amplitude=0.8)

needs_cpp = pytest.mark.skipif(
    not cpp.AVAILABLE,
    reason=f"C++ extension snntorch_nengo._C not built ({cpp.IMPORT_ERROR}); "
    "build it with `python -m snntorch_nengo --build` or `pip install -e .`",
)

# kind: (reference fn, op, number of [N] states incl. filtered, nengo type, params)
KINDS = {
    "lif": (reference.lif_lowpass, ops.lif_lowpass, 3, nengo.LIF, LIF),
    "alif": (
        reference.adaptive_lif_lowpass,
        ops.adaptive_lif_lowpass,
        4,
        nengo.AdaptiveLIF,
        ALIF,
    ),
    "relu": (
        reference.spiking_relu_lowpass,
        ops.spiking_relu_lowpass,
        2,
        nengo.SpikingRectifiedLinear,
        RELU,
    ),
}
ALL = list(KINDS)


def params(kind, decay=DECAY, **overrides):
    """The float arguments after the tensors, in signature order."""
    p = dict(KINDS[kind][4], **overrides)
    keys = {
        "lif": ["tau_rc", "tau_ref", "min_voltage", "amplitude"],
        "alif": ["tau_rc", "tau_ref", "min_voltage", "amplitude", "tau_n", "inc_n"],
        "relu": ["amplitude"],
    }[kind]
    return (DT,) + tuple(p[k] for k in keys) + (decay,)


def currents(T, N, seed, dtype=torch.float64, scale=1.0):
    """J with negative values, exact rheobase (1), values within 1e-9 of it and
    large ones, besides a broad uniform spread."""
    rng = np.random.RandomState(seed)
    J = rng.uniform(-1.5, 4.0, size=(T, N))
    u = rng.uniform(size=(T, N))
    J[u < 0.05] = 1.0
    near = (u >= 0.05) & (u < 0.15)
    J[near] = 1.0 + rng.uniform(-1e-9, 1e-9, size=near.sum())
    big = (u >= 0.15) & (u < 0.2)
    J[big] = rng.uniform(5, 40, size=big.sum())
    return torch.tensor(J * scale, dtype=dtype)


def initial_states(kind, N, seed, dtype=torch.float64):
    """Random initial states: voltage, [refractory], [adaptation], filtered."""
    rng = np.random.RandomState(seed + 1000)
    states = [rng.uniform(0, 1, N)]
    if kind in ("lif", "alif"):
        states.append(rng.uniform(-0.001, 0.004, N))  # some still refractory
    if kind == "alif":
        states.append(rng.uniform(0, 0.5, N))
    states.append(rng.uniform(-5, 5, N))
    return [torch.tensor(s, dtype=dtype) for s in states]


def inputs(kind, T, N, seed, dtype=torch.float64):
    scale = 300.0 if kind == "relu" else 1.0  # relu: J is a rate
    return currents(T, N, seed, dtype, scale), initial_states(kind, N, seed, dtype)


# --- the reference against nengo ---


@pytest.mark.parametrize("kind", ALL)
def test_reference_matches_nengo_step_by_step(kind):
    T, N = 1000, 48
    ref_fn, _, n_states, nengo_type, p = KINDS[kind]
    J, states = inputs(kind, T, N, seed=1)
    neuron = nengo_type(**p)

    # nengo: neuron step, then Lowpass step on the output, in place on numpy
    np_states = [s.numpy().copy() for s in states]
    nengo_filtered = np_states.pop()
    lowpass = nengo.Lowpass(TAU).make_step(
        (N,), (N,), DT, rng=None, state={"X": nengo_filtered[None, :].copy()}
    )
    output = np.zeros(N)
    nengo_out, nengo_filt, nengo_traj = [], [], []
    for t in range(T):
        neuron.step(DT, J[t].numpy(), output, *np_states)
        nengo_out.append(output.copy())
        nengo_filt.append(np.array(lowpass(t * DT, output)))
        nengo_traj.append([s.copy() for s in np_states])

    # the reference, in one call
    out, fseq, *final = ref_fn(J, *states, *params(kind))
    assert torch.equal(out, torch.tensor(np.array(nengo_out)))  # spike for spike
    assert out.abs().sum() > 0 and (out == 0).any()
    # the continuous values equal nengo's to rounding (torch's expm1/log1p
    # may differ from numpy's in the last bit, and nengo's Lowpass uses
    # b = C*B from its discretisation, which is 1 - decay to ~1e-16)
    np.testing.assert_allclose(fseq.numpy(), np.array(nengo_filt), rtol=1e-10, atol=1e-10)
    for got, want in zip(final[:-1], nengo_traj[-1]):
        np.testing.assert_allclose(got.numpy(), want, rtol=1e-10, atol=1e-12)

    # and in chunks, carrying the state: bitwise equal to the single call,
    # and the states follow nengo's after every chunk
    carry, t0, outs = list(states), 0, []
    for size in [1, 2, 7, 90, 400, 500]:
        o, _, *carry = ref_fn(J[t0 : t0 + size], *carry, *params(kind))
        outs.append(o)
        t0 += size
        for got, want in zip(carry[:-1], nengo_traj[t0 - 1]):
            np.testing.assert_allclose(got.numpy(), want, rtol=1e-10, atol=1e-12)
    assert t0 == T
    assert torch.equal(torch.cat(outs), out)
    for a, b in zip(carry, final):
        assert torch.equal(a, b)


def test_reference_empty_and_shapes():
    J, states = inputs("lif", 0, 5, seed=2)
    out, fseq, *final = reference.lif_lowpass(J, *states, *params("lif"))
    assert out.shape == fseq.shape == (0, 5)
    for a, b in zip(final, states):
        assert torch.equal(a, b) and a.data_ptr() != b.data_ptr()
    with pytest.raises(ValueError):
        reference.lif_lowpass(J.reshape(-1), *states, *params("lif"))


# --- C++ kernels against the reference ---


@needs_cpp
@pytest.mark.parametrize("kind", ALL)
@pytest.mark.parametrize("T,N", [(1000, 37), (300, 1000), (3, 1), (0, 4), (64, 4099)])
def test_cpp_matches_reference_float64_exactly(kind, T, N):
    J, states = inputs(kind, T, N, seed=T + N)
    args = (J, *states, *params(kind))
    expected = KINDS[kind][0](*args)
    actual = getattr(cpp, kind_name(kind))(*args)
    assert len(actual) == len(expected)
    for a, e in zip(actual, expected):
        assert a.dtype == torch.float64 and a.shape == e.shape
        assert torch.equal(a, e), (a - e).abs().max()


@needs_cpp
@pytest.mark.parametrize("kind", ALL)
def test_cpp_matches_reference_float32(kind):
    J, states = inputs(kind, 500, 77, seed=5, dtype=torch.float32)
    args = (J, *states, *params(kind))
    expected = KINDS[kind][0](*args)
    actual = getattr(cpp, kind_name(kind))(*args)
    assert torch.equal(actual[0], expected[0])  # spikes
    for a, e in zip(actual, expected):
        assert a.dtype == torch.float32
        torch.testing.assert_close(a, e, rtol=1e-5, atol=1e-5)


@needs_cpp
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("T,N", [(400, 67), (1, 33), (2, 5), (50, 2000)])
def test_cpp_lif_without_refractory_period_matches_reference(dtype, T, N):
    # tau_ref = 0 runs another form of the step (spike times once per call,
    # csrc/kernels_impl.h LifNoRefractory); initial states still refractory,
    # spikes at the first and the last step, neurons that never spike
    J, states = inputs("lif", T, N, seed=T * N, dtype=dtype)
    J[0, ::3] = 30.0
    J[-1, 1::3] = 30.0
    J[:, 2::7] = 0.5
    args = (J, *states, *params("lif", tau_ref=0.0))
    expected = reference.lif_lowpass(*args)
    actual = cpp.lif_lowpass(*args)
    assert expected[0].any() and not expected[0][:, 2::7].any()
    for a, e in zip(actual, expected):
        assert a.dtype == dtype and a.shape == e.shape
        assert torch.equal(a, e), (a - e).abs().max()


@needs_cpp
@pytest.mark.parametrize("kind", ALL)
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_cpp_without_filter_skips_it(kind, dtype):
    # an empty filter: no lowpass written, the rest as with one
    J, states = inputs(kind, 60, 301, seed=9, dtype=dtype)
    args = (J, *states, *params(kind))
    name = kind_name(kind)
    expected = getattr(cpp, name)(*args)
    kernel = getattr(torch.ops.snntorch_nengo_cpp, name)
    actual = kernel(J, *states[:-1], J.new_empty(0), *params(kind))
    assert actual[1].shape == (60, 0) and actual[-1].shape == (0,)
    for a, e in zip(actual[:1] + actual[2:-1], expected[:1] + expected[2:-1]):
        assert torch.equal(a, e)


@pytest.mark.parametrize("kind", ALL)
@pytest.mark.parametrize("grad", [False, True])
def test_unfiltered_call_equals_the_op(kind, grad):
    # the engine's call: the C++ kernel without a filter where nothing
    # records, the custom op (with autograd) where something does
    J, states = inputs(kind, 40, 70, seed=11)
    J.requires_grad_(grad)
    name = kind_name(kind)
    p = params(kind, decay=0.0)
    expected = ops.OPS[name](J, *states, *p)
    call = ops.direct_unfiltered(name)
    actual = call(J, *states[:-1], *p[:-1], 0, 0.0)
    assert len(actual) == len(states)  # output and the neuron's states
    for a, e in zip(actual, expected[:1] + expected[2:-1]):
        assert torch.equal(a.detach(), e.detach())
    assert actual[0].requires_grad == grad


@needs_cpp
def test_cpp_default_isa_matches_reference():
    """With ATEN_CPU_CAPABILITY=default torch uses the C library's expm1/log1p,
    and so do the DEFAULT kernels: still bitwise equal."""
    code = (
        "import torch\n"
        "from snntorch_nengo.kernels import cpp, reference\n"
        "assert cpp.kernel_isa() == 'DEFAULT', cpp.kernel_isa()\n"
        "g = torch.Generator().manual_seed(0)\n"
        "J = torch.randn(400, 45, generator=g, dtype=torch.float64) * 2 + 1\n"
        "v, r, f = (torch.rand(45, generator=g, dtype=torch.float64) for _ in range(3))\n"
        "p = (0.001, 0.03, 0.002, -0.2, 0.9, 0.93)\n"
        "for a, b in zip(cpp.lif_lowpass(J, v, r, f, *p), reference.lif_lowpass(J, v, r, f, *p)):\n"
        "    assert torch.equal(a, b)\n"
        "print('ok')\n"
    )
    env = dict(os.environ, ATEN_CPU_CAPABILITY="default")
    result = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert "ok" in result.stdout


@needs_cpp
def test_cpp_threads_and_strides():
    J, states = inputs("lif", 40, 3000, seed=9)
    p = params("lif")
    n_threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = cpp.lif_lowpass(J, *states, *p)
        torch.set_num_threads(max(2, n_threads))
        two = cpp.lif_lowpass(J, *states, *p)
    finally:
        torch.set_num_threads(n_threads)
    strided = cpp.lif_lowpass(J.t().contiguous().t(), *states, *p)
    for a, b, c in zip(one, two, strided):
        assert torch.equal(a, b) and torch.equal(a, c)


@needs_cpp
@pytest.mark.parametrize("kind", ALL)
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_cpp_held_input_equals_its_copy(kind, dtype):
    """J one row expanded over T (a window's held input), read in place, gives
    the bits of its copy, in both passes."""
    J, states = inputs(kind, 30, 77, seed=4, dtype=dtype)
    held = J[0].expand(J.shape)
    args = (*states, *params(kind))
    name = kind_name(kind)
    for a, b in zip(getattr(cpp, name)(held, *args), getattr(cpp, name)(held.contiguous(), *args)):
        assert torch.equal(a, b)
    leaf = J[0].clone().requires_grad_()
    copy = J[0].clone().requires_grad_()
    weights = torch.linspace(-1, 1, J.numel(), dtype=dtype).reshape(J.shape)
    for x, expand in ((leaf, lambda v: v.expand(J.shape)),
                      (copy, lambda v: v.expand(J.shape).contiguous())):
        out = ops.OPS[name](expand(x), *args, 1, 5.0)
        ((out[0] + out[1]) * weights).sum().backward()
    assert torch.equal(leaf.grad, copy.grad)


@needs_cpp
def test_cpp_rejects_bad_inputs():
    J, states = inputs("lif", 5, 4, seed=3)
    with pytest.raises(RuntimeError, match="float32 and float64"):
        cpp.lif_lowpass(J.half(), *(s.half() for s in states), *params("lif"))
    with pytest.raises(RuntimeError, match="states must be"):
        cpp.lif_lowpass(J, states[0][:3], *states[1:], *params("lif"))
    with pytest.raises(RuntimeError, match="dtype"):
        cpp.lif_lowpass(J, states[0].float(), *states[1:], *params("lif"))
    assert cpp.kernel_isa() in ("DEFAULT", "AVX2", "AVX512")


# --- the custom ops ---


def kind_name(kind):
    return {"lif": "lif_lowpass", "alif": "adaptive_lif_lowpass", "relu": "spiking_relu_lowpass"}[kind]


# (kernel id, parameter) of every surrogate the kernels compute, and a second
# slope of the fast sigmoid
SURROGATE_ARGS = [
    kernel_surrogate(s) for s in (None, *(cls() for cls in SURROGATES.values()))
] + [kernel_surrogate(FastSigmoid(slope=4.0))]


def surrogate_id(args):
    return f"{args[0]}-{args[1]:g}"


@pytest.mark.parametrize("kind", ALL)
def test_op_forward_matches_reference(kind):
    J, states = inputs(kind, 200, 33, seed=4)
    expected = KINDS[kind][0](J, *states, *params(kind))
    actual = KINDS[kind][1](J, *states, *params(kind))
    assert ops.backend(J) == ("cpp" if cpp.AVAILABLE else "reference")
    for a, e in zip(actual, expected):
        assert torch.equal(a, e)
    # the surrogate only shapes the backward pass
    for a, e in zip(KINDS[kind][1](J, *states, *params(kind), 1, 25.0), expected):
        assert torch.equal(a, e)


def _grads(fn, kind, J, states, surrogate, seed, outputs=None):
    """Gradients of a random linear function of the outputs (all, or those
    indexed by ``outputs``) w.r.t. all inputs."""
    leaves = [x.detach().clone().requires_grad_(True) for x in (J, *states)]
    outs = fn(*leaves, *params(kind), *surrogate)
    g = torch.Generator().manual_seed(seed)
    picked = range(len(outs)) if outputs is None else outputs
    loss = sum(
        (outs[i] * torch.randn(outs[i].shape, generator=g, dtype=torch.float64).to(
            outs[i].dtype)).sum()
        for i in picked
    )
    return torch.autograd.grad(loss, leaves, allow_unused=True, materialize_grads=True)


def _assert_grads_close(actual, expected, rtol):
    for a, e in zip(actual, expected):
        scale = float(e.abs().max()) if e.numel() else 0.0
        torch.testing.assert_close(a, e, rtol=rtol, atol=rtol * scale)


@pytest.mark.parametrize("kind", ALL)
@pytest.mark.parametrize("surrogate", SURROGATE_ARGS, ids=surrogate_id)
def test_op_backward_equals_reference_autograd(kind, surrogate):
    """The backward kernels give the gradients of the torch reference (autograd
    through the steps training mode runs), to rounding: 150 steps (three
    backward segments) of 21 neurons (a ragged block), float64."""
    J, states = inputs(kind, 150, 21, seed=6)
    expected = _grads(KINDS[kind][0], kind, J, states, surrogate, seed=1)
    actual = _grads(KINDS[kind][1], kind, J, states, surrogate, seed=1)
    _assert_grads_close(actual, expected, rtol=1e-10)
    assert expected[0].abs().sum() > 0  # gradients do reach J
    if surrogate[0] != 0:  # and the surrogate matters
        default = _grads(KINDS[kind][0], kind, J, states, (0, 0.0), seed=1)
        assert not torch.allclose(default[0], expected[0])


@pytest.mark.parametrize("kind", ALL)
def test_op_backward_float32_and_threads(kind):
    J, states = inputs(kind, 70, 300, seed=16, dtype=torch.float32)
    surrogate = kernel_surrogate(FastSigmoid())
    expected = _grads(KINDS[kind][0], kind, J, states, surrogate, seed=3)
    threads = torch.get_num_threads()
    try:
        for n in (1, 2):
            torch.set_num_threads(n)
            actual = _grads(KINDS[kind][1], kind, J, states, surrogate, seed=3)
            _assert_grads_close(actual, expected, rtol=1e-4)
    finally:
        torch.set_num_threads(threads)


@pytest.mark.parametrize("kind", ALL)
@pytest.mark.parametrize("outputs", [(0,), (1,), (2, 3), (-1,)], ids=str)
def test_op_backward_partial_outputs(kind, outputs):
    """Outputs without a gradient (None to the backward kernel) count as zero."""
    J, states = inputs(kind, 30, 10, seed=7)
    surrogate = (1, 25.0)
    expected = _grads(KINDS[kind][0], kind, J, states, surrogate, 2, outputs)
    actual = _grads(KINDS[kind][1], kind, J, states, surrogate, 2, outputs)
    _assert_grads_close(actual, expected, rtol=1e-10)


def test_op_backward_partial_inputs():
    J, states = inputs("lif", 50, 6, seed=7)
    J = J.clone().requires_grad_(True)
    out, fseq, v, r, f = ops.lif_lowpass(J, *states, *params("lif"), 1, 25.0)
    (gJ,) = torch.autograd.grad(fseq[-1].sum() + out.sum(), J)
    J2 = J.detach().clone().requires_grad_(True)
    out2, fseq2, *_ = reference.lif_lowpass(J2, *states, *params("lif"), 1, 25.0)
    (gJ2,) = torch.autograd.grad(fseq2[-1].sum() + out2.sum(), J2)
    torch.testing.assert_close(gJ, gJ2, rtol=1e-10, atol=1e-12)


@needs_cpp
@pytest.mark.parametrize("kind", ALL)
def test_cpp_backward_kernel(kind):
    """The C++ backward op directly: non-contiguous inputs, a long window (many
    segments), and bad arguments."""
    name = kind_name(kind)
    J, states = inputs(kind, 300, 45, seed=9)
    J = J.t().contiguous().t()  # column-major
    rng = torch.Generator().manual_seed(0)
    grads = [torch.randn(J.shape, generator=rng, dtype=J.dtype) for _ in range(2)]
    grads += [torch.randn(J.shape[1], generator=rng, dtype=J.dtype) for _ in states]
    p = params(kind)
    expected = ops.reference_grads(name, [J, *states], grads, p, 3, 2.0)
    actual = cpp.backward(name, [J, *states], grads, p, 3, 2.0)
    _assert_grads_close(actual, expected, rtol=1e-10)
    with pytest.raises(RuntimeError, match="surrogate"):
        cpp.backward(name, [J, *states], grads, p, 9, 0.0)
    with pytest.raises(RuntimeError, match="gradient"):
        cpp.backward(name, [J, *states], [grads[0][:-1]] + grads[1:], p, 1, 25.0)
    # no steps: the states' gradients pass through, fresh tensors
    empty = cpp.backward(name, [J[:0], *states], [None, None, *grads[2:]], p, 1, 25.0)
    assert empty[0].shape == (0, J.shape[1])
    for a, b in zip(empty[1:], grads[2:]):
        assert torch.equal(a, b) and a.data_ptr() != b.data_ptr()


@pytest.mark.parametrize("kind", ALL)
def test_op_gradcheck(kind):
    """Finite differences agree where the gradient is the true derivative:
    without a surrogate (the spikes' derivative is zero, as finite differences
    see it away from a threshold), every output w.r.t. every input (LIF and
    AdaptiveLIF through the refractory and adaptation states too)."""
    op = KINDS[kind][1]
    J, states = inputs(kind, 12, 4, seed=8)
    p = params(kind)
    leaves = [x.clone().requires_grad_(True) for x in (J, *states)]

    def all_outputs(*xs):
        return tuple(op(*xs, *p, 0, 0.0))

    assert torch.autograd.gradcheck(all_outputs, leaves, eps=1e-7, atol=1e-6)

    def lowpass(filtered):
        out = op(J, *states[:-1], filtered, *p)
        return out[1], out[-1]

    assert torch.autograd.gradcheck(lowpass, (states[-1].clone().requires_grad_(True),))


@pytest.mark.parametrize("kind", ALL)
def test_backward_op_is_linear_in_the_gradients(kind):
    name = kind_name(kind)
    J, states = inputs(kind, 8, 3, seed=14)
    rng = torch.Generator().manual_seed(1)
    grads = [torch.randn(J.shape, generator=rng, dtype=J.dtype) for _ in range(2)]
    grads += [torch.randn(J.shape[1], generator=rng, dtype=J.dtype) for _ in states]
    for surrogate in SURROGATE_ARGS:
        a = ops.fused_lowpass_backward(name, [J, *states], grads, list(params(kind)),
                                       *surrogate)
        b = ops.fused_lowpass_backward(name, [J, *states], [2 * g for g in grads],
                                       list(params(kind)), *surrogate)
        for x, y in zip(a, b):
            torch.testing.assert_close(2 * x, y, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("kind", ALL)
def test_op_without_extension(kind, monkeypatch):
    monkeypatch.setattr(cpp, "AVAILABLE", False)
    J, states = inputs(kind, 100, 9, seed=10)
    assert ops.backend(J) == "reference"
    expected = KINDS[kind][0](J, *states, *params(kind))
    actual = KINDS[kind][1](J, *states, *params(kind))
    for a, e in zip(actual, expected):
        assert torch.equal(a, e)
    for surrogate in [(0, 0.0), (1, 25.0)]:
        ga = _grads(KINDS[kind][1], kind, J, states, surrogate, seed=2)
        ge = _grads(KINDS[kind][0], kind, J, states, surrogate, seed=2)
        for a, e in zip(ga, ge):
            assert torch.equal(a, e)


def test_extension_without_backward_kernels(monkeypatch):
    """An extension built from older sources (forward ops only): the backward
    pass is the reference's, and training steps instead of calling the op."""
    monkeypatch.setattr(cpp, "HAS_BACKWARD", False)
    J, states = inputs("lif", 40, 9, seed=10)
    assert ops.backend(J) == ("cpp" if cpp.AVAILABLE else "reference")
    assert ops.backend(J, backward=True) == "reference"
    ga = _grads(ops.lif_lowpass, "lif", J, states, (1, 25.0), seed=2)
    ge = _grads(reference.lif_lowpass, "lif", J, states, (1, 25.0), seed=2)
    for a, e in zip(ga, ge):
        assert torch.equal(a, e)


def test_package_works_when_extension_fails_to_import():
    """A missing or broken _C (e.g. built for another torch), and no
    just-in-time build (tests/test_install.py tests that one), falls back."""
    code = (
        "import sys\n"
        "sys.modules['snntorch_nengo._C'] = None  # import fails\n"
        "import torch\n"
        "from snntorch_nengo.kernels import cpp, ops, reference\n"
        "assert not cpp.AVAILABLE and cpp.IMPORT_ERROR\n"
        "J = torch.randn(30, 4, dtype=torch.float64, requires_grad=True)\n"
        "z = torch.zeros(4, dtype=torch.float64)\n"
        "assert ops.backend(J) == 'reference'\n"
        "out = ops.lif_lowpass(J, z, z, z, 0.001, 0.02, 0.002, 0.0, 1.0, 0.9)\n"
        "out[1].sum().backward()\n"
        "assert J.grad is not None\n"
        "print('ok')\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
        env=dict(os.environ, SNNTORCH_NENGO_JIT="0"),
    )
    assert result.returncode == 0, result.stderr
    assert "ok" in result.stdout
    assert "KernelsWarning: snntorch_nengo's C++ kernels are not loaded" in result.stderr


def test_op_input_checks():
    J, states = inputs("lif", 5, 4, seed=3)
    with pytest.raises(RuntimeError, match="dtype and device"):
        ops.lif_lowpass(J, states[0].float(), *states[1:], *params("lif"))
    with pytest.raises(RuntimeError, match=r"\[T, N\]"):
        ops.lif_lowpass(J.reshape(-1), *states, *params("lif"))
    # T = 0: fresh tensors, never aliases of the inputs; gradients pass through
    leaves = [x.clone().requires_grad_(True) for x in (J[:0], *states)]
    out = ops.lif_lowpass(*leaves, *params("lif"))
    assert out[0].shape == (0, 4)
    for a, b in zip(out[2:], states):
        assert torch.equal(a, b) and a.data_ptr() != b.data_ptr()
    grads = torch.autograd.grad(out[2:], leaves[1:], [torch.ones(4, dtype=J.dtype)] * 3)
    for g in grads:
        assert torch.equal(g, torch.ones(4, dtype=J.dtype))
    torch.library.opcheck(ops.lif_lowpass, tuple(leaves) + params("lif"))


def _network(J, v, r, a, f):
    """Two fused layers and an adaptive one, as a compiled model would call them."""
    out, fseq, v1, r1, f1 = ops.lif_lowpass(J * 3.0, v, r, f, *params("lif"))
    s, fs, v2, f2 = ops.spiking_relu_lowpass(fseq * 0.5, v1, f1, *params("relu"))
    o3, fs3, *_ = ops.adaptive_lif_lowpass(fs * 0.01, v, r, a, f, *params("alif"), 1, 5.0)
    return fs.sum() + fs3.sum() + v2.sum() + r1.sum()


def _check_compiled(backend):
    J, states = inputs("alif", 40, 6, seed=11)
    J = J * 0.5 + 0.6
    leaves = [x.clone().requires_grad_(True) for x in (J, *states)]
    compiled = torch.compile(_network, fullgraph=True, backend=backend)
    y = compiled(*leaves)
    grads = torch.autograd.grad(y, leaves)
    leaves2 = [x.detach().clone().requires_grad_(True) for x in leaves]
    y2 = _network(*leaves2)
    grads2 = torch.autograd.grad(y2, leaves2)
    torch.testing.assert_close(y, y2, rtol=1e-12, atol=1e-12)
    for a, b in zip(grads, grads2):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)


def test_torch_compile_fullgraph():
    """fullgraph=True traces through the ops, forward and backward. (aot_eager:
    the full inductor build takes ~30 s on a 2-core machine; set
    SNN_TEST_INDUCTOR=1 to run that too.)"""
    torch._dynamo.reset()
    _check_compiled("aot_eager")


@pytest.mark.skipif(
    os.environ.get("SNN_TEST_INDUCTOR", "") in ("", "0"),
    reason="inductor compiles C++ (~30 s here); set SNN_TEST_INDUCTOR=1",
)
def test_torch_compile_fullgraph_inductor():
    torch._dynamo.reset()
    _check_compiled("inductor")


@pytest.mark.parametrize("kind", ALL)
@pytest.mark.parametrize("surrogate", [(0, 0.0), (1, 25.0), (4, 0.5)], ids=surrogate_id)
def test_opcheck(kind, surrogate):
    J, states = inputs(kind, 6, 5, seed=12)
    J.requires_grad_(True)
    for s in states:
        s.requires_grad_(True)
    torch.library.opcheck(KINDS[kind][1], (J, *states, *params(kind), *surrogate))


@pytest.mark.parametrize("kind", ALL)
def test_opcheck_backward_op(kind):
    J, states = inputs(kind, 6, 5, seed=13)
    outs = KINDS[kind][1](J, *states, *params(kind))
    grads = [torch.ones_like(o) if i % 2 == 0 else None for i, o in enumerate(outs)]
    torch.library.opcheck(
        ops.fused_lowpass_backward,
        (kind_name(kind), [J, *states], grads, list(params(kind)), 1, 25.0),
    )


# --- the event-driven product (spike_matmul) ---


def spikes(M, K, density, seed, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    on = torch.rand(M, K, generator=g) < density
    # spike counts of either sign, as amplitude / dt times an integer
    counts = torch.randint(-2, 4, (M, K), generator=g).to(dtype)
    return torch.where(on, counts * 1000, torch.zeros((), dtype=dtype))


@needs_cpp
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("M, K, N", [(300, 256, 256), (7, 33, 77), (1, 1, 5), (0, 4, 64),
                                     (50, 20, 130)])
def test_spike_matmul_equals_dense_product(dtype, M, K, N):
    g = torch.Generator().manual_seed(1)
    Wt = torch.randn(K, N, generator=g, dtype=torch.float64).to(dtype)
    for density, max_density in [(0.1, 1.0), (0.6, 1.0), (0.6, 0.25), (0.0, 1.0)]:
        X = spikes(M, K, density, seed=M + N, dtype=dtype)
        got = cpp.spike_matmul(X, Wt, max_density)
        want = (X.double() @ Wt.double()).to(dtype)
        assert got.shape == (M, N) and got.dtype == dtype
        tol = 1e-12 if dtype == torch.float64 else 1e-5
        scale = float(want.abs().max()) if want.numel() else 1.0
        torch.testing.assert_close(got, want, rtol=tol, atol=tol * max(scale, 1.0))
    # strided operands and threads
    X = spikes(M, K, 0.1, seed=3, dtype=dtype)
    n_threads = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        two = cpp.spike_matmul(X.t().contiguous().t(), Wt.t().contiguous().t(), 1.0)
    finally:
        torch.set_num_threads(n_threads)
    assert torch.equal(two, cpp.spike_matmul(X, Wt, 1.0))


@needs_cpp
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("M, K, N", [(40, 256, 256), (9, 37, 70), (3, 5, 3)])
def test_spike_matmul_of_unit_spikes_is_exact(dtype, M, K, N):
    """Spikes of height 1 (added unscaled) among others, and the transposed
    product: small integers, whose sums are exact, give the dense product's bits."""
    g = torch.Generator().manual_seed(K + N)
    on = torch.rand(M, K, generator=g) < 0.2
    height = torch.where(torch.rand(M, K, generator=g) < 0.7, 1.0, -3.0)
    X = torch.where(on, height, torch.zeros(())).to(dtype)
    Wt = torch.randint(-8, 9, (K, N), generator=g).to(dtype)
    G = torch.randint(-8, 9, (M, N), generator=g).to(dtype)
    assert torch.equal(cpp.spike_matmul(X, Wt, 1.0), X @ Wt)
    assert torch.equal(cpp.spike_matmul(X.t(), G, 1.0), X.t() @ G)


@needs_cpp
def test_spike_matmul_rejects_bad_inputs():
    with pytest.raises(RuntimeError, match="do not multiply"):
        cpp.spike_matmul(torch.zeros(3, 4), torch.zeros(5, 2), 1.0)
    with pytest.raises(RuntimeError, match="float32 or float64"):
        cpp.spike_matmul(torch.zeros(3, 4), torch.zeros(4, 2, dtype=torch.float64), 1.0)
    with pytest.raises(RuntimeError, match="2-D"):
        cpp.spike_matmul(torch.zeros(3), torch.zeros(3, 2), 1.0)


def test_spike_matmul_op_gradients_and_opcheck():
    X = spikes(20, 12, 0.3, seed=5).requires_grad_()
    Wt = torch.randn(12, 9, dtype=torch.float64, requires_grad=True)
    torch.testing.assert_close(ops.spike_matmul(X, Wt), X.detach() @ Wt.detach())
    torch.autograd.gradcheck(ops.spike_matmul, (X, Wt))
    torch.library.opcheck(ops.spike_matmul, (X.detach(), Wt.detach()))


@needs_cpp
def test_spike_matmul_weight_gradient_is_event_driven(monkeypatch):
    """``Wt``'s gradient, ``X.t() @ grad``, runs event-driven like the forward."""
    X = spikes(300, 40, 0.1, seed=6).requires_grad_()
    Wt = torch.randn(40, 7, dtype=torch.float64, requires_grad=True)
    G = torch.randn(300, 7, dtype=torch.float64)
    calls = []
    real = cpp.spike_matmul

    def spy(A, B, max_density):
        calls.append(tuple(A.shape))
        return real(A, B, max_density)

    monkeypatch.setattr(cpp, "spike_matmul", spy)
    ops.spike_matmul(X, Wt).backward(G)
    assert calls == [(300, 40), (40, 300)]
    torch.testing.assert_close(Wt.grad, X.detach().t() @ G, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(X.grad, G @ Wt.detach().t(), rtol=1e-12, atol=1e-12)
    torch.autograd.gradgradcheck(ops.spike_matmul, (X, Wt))


@needs_cpp
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("R,K,N", [(300, 40, 7), (257, 33, 70), (64, 5, 16), (600, 64, 70)])
@pytest.mark.parametrize("threads", [1, 2])
def test_spike_matmul_of_a_transpose_reads_it_in_place(dtype, R, K, N, threads):
    """``X.t()`` (a weight gradient's left factor) gives the bits of its copy."""
    X = spikes(R, K, 0.1, seed=R + K, dtype=dtype)
    G = torch.randn(R, N, dtype=dtype, generator=torch.Generator().manual_seed(N))
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        got = cpp.spike_matmul(X.t(), G, 0.25)
        copied = cpp.spike_matmul(X.t().contiguous(), G, 0.25)
        dense = cpp.spike_matmul(X.t(), G, 0.01)  # above max_density: the dense product
    finally:
        torch.set_num_threads(before)
    assert torch.equal(got, copied)
    tol = 1e-4 if dtype == torch.float32 else 1e-10
    torch.testing.assert_close(got, X.t() @ G, rtol=tol, atol=tol * 1000)
    torch.testing.assert_close(dense, X.t() @ G, rtol=tol, atol=tol * 1000)
