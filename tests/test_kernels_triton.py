"""Triton kernels (`snntorch_nengo.kernels.triton_kernels`) against the reference.

Without CUDA the kernels run in Triton's interpreter on CPU tensors
(``TRITON_INTERPRET=1``, set below before triton is imported). The interpreter
has no libdevice, so the kernels compute ``expm1``/``log1p`` from ``exp``/``log``
there (see the kernel module's docstring): float64 spikes must be identical to
the reference's, and the continuous states equal to ~1e-15 relative (in practice
they are nearly all bitwise equal). On CUDA (skipped here) the compiled kernels
and the custom ops are compared with the reference run on the same GPU.
"""

import functools
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

if not torch.cuda.is_available():
    os.environ["TRITON_INTERPRET"] = "1"  # before triton is first imported

triton = pytest.importorskip("triton")

from snntorch_nengo.kernels import reference  # noqa: E402
from snntorch_nengo.kernels import triton_kernels as tk  # noqa: E402

CUDA = torch.cuda.is_available()
needs_cuda = pytest.mark.skipif(not CUDA, reason="needs CUDA")

DT = 0.001
# non-default parameters everywhere
LIF = dict(tau_rc=0.03, tau_ref=0.0025, min_voltage=-0.4, amplitude=0.7, decay=0.9)
ALIF = dict(LIF, tau_n=0.15, inc_n=0.2)
RELU = dict(amplitude=0.8, decay=0.85)

KINDS = {
    # name: (reference fn, triton fn, number of [N] states, params)
    "lif": (reference.lif_lowpass, tk.lif_lowpass_triton, 3, LIF),
    "alif": (reference.adaptive_lif_lowpass, tk.adaptive_lif_lowpass_triton, 4, ALIF),
    "relu": (reference.spiking_relu_lowpass, tk.spiking_relu_lowpass_triton, 2, RELU),
}
PRIVATE = {  # the same launches with an explicit BLOCK
    "lif": tk._lif_lowpass,
    "alif": tk._adaptive_lif_lowpass,
    "relu": tk._spiking_relu_lowpass,
}


def _param_args(kind):
    p = KINDS[kind][3]
    if kind == "lif":
        keys = ["tau_rc", "tau_ref", "min_voltage", "amplitude", "decay"]
    elif kind == "alif":
        keys = ["tau_rc", "tau_ref", "min_voltage", "amplitude", "tau_n", "inc_n", "decay"]
    else:
        keys = ["amplitude", "decay"]
    return (DT,) + tuple(p[k] for k in keys)


def make_inputs(kind, T, N, dtype, seed=0, device="cpu"):
    """Random currents with negative, near-threshold and exactly-1 columns.

    States follow the kernels' argument order: LIF (voltage, refractory_time,
    filtered), AdaptiveLIF (voltage, refractory_time, adaptation, filtered),
    SpikingRectifiedLinear (voltage, filtered).
    """
    g = torch.Generator().manual_seed(seed)
    J = torch.randn(T, N, generator=g, dtype=torch.float64) * 3.0 + 3.0
    k = N // 6
    if k >= 3:
        J[:, :k] = 1.0 + (torch.rand(T, k, generator=g, dtype=torch.float64) - 0.5) * 2e-3
        J[:, k : k + 2] = 1.0  # exactly at threshold
        J[:, k + 2 : 2 * k] = -5.0 * torch.rand(T, k - 2, generator=g, dtype=torch.float64)
    if kind == "relu":
        J = J * 900.0  # up to several spikes per step, and negative currents
    voltage = torch.rand(N, generator=g, dtype=torch.float64)
    refractory = torch.rand(N, generator=g, dtype=torch.float64) * 0.004
    adaptation = torch.rand(N, generator=g, dtype=torch.float64) * 0.5
    filtered = torch.randn(N, generator=g, dtype=torch.float64)
    if kind == "lif":
        states = (voltage, refractory, filtered)
    elif kind == "alif":
        states = (voltage, refractory, adaptation, filtered)
    else:
        states = (voltage, filtered)
    cast = lambda x: x.to(dtype=dtype, device=device)  # noqa: E731
    return cast(J), tuple(cast(s) for s in states)


@functools.lru_cache(maxsize=None)
def _run(kind, T, N, dtype):
    J, states = make_inputs(kind, T, N, dtype)
    args = _param_args(kind)
    ref_fn, tri_fn = KINDS[kind][:2]
    with torch.no_grad():
        expected = ref_fn(J, *states, *args)
    actual = tri_fn(J, *states, *args)
    return J, states, expected, actual


def _assert_matches(expected, actual, exact_spikes=True, rtol=1e-12, atol=1e-13):
    assert len(actual) == len(expected)
    for e, a in zip(expected, actual):
        assert a.shape == e.shape and a.dtype == e.dtype and a.device == e.device
    if exact_spikes:
        assert torch.equal(actual[0], expected[0]), (
            f"{int((actual[0] != expected[0]).sum())} spike entries differ"
        )
    for e, a in zip(expected[1:], actual[1:]):
        torch.testing.assert_close(a, e, rtol=rtol, atol=atol)


def _assert_close_float32(expected, actual, max_frac=1e-3, tol=1e-4):
    differ = (expected[0] != actual[0]).any(dim=0)
    assert float(differ.float().mean()) <= max_frac, (
        f"{int(differ.sum())} of {differ.numel()} neurons spike differently"
    )
    same = ~differ
    for e, a in zip(expected[1:], actual[1:]):
        torch.testing.assert_close(a[..., same], e[..., same], rtol=tol, atol=tol)


def test_available():
    assert tk.available


@pytest.mark.parametrize("kind", ["lif", "alif", "relu"])
def test_float64_spike_for_spike(kind):
    _, _, expected, actual = _run(kind, 200, 300, torch.float64)
    assert expected[0].count_nonzero() > 500  # plenty of spikes
    _assert_matches(expected, actual, exact_spikes=True)
    if kind == "relu":  # no transcendental functions: bitwise
        for e, a in zip(expected, actual):
            assert torch.equal(a, e)
    else:
        # spikes identical => outputs and filtered outputs bitwise identical
        assert torch.equal(actual[1], expected[1])


def test_float64_lif_matches_nengo():
    """The Triton LIF spikes equal nengo's own (numpy) LIF.step, spike for spike."""
    import nengo

    J, (voltage, refractory, _), _, actual = _run("lif", 200, 300, torch.float64)
    neuron = nengo.LIF(
        tau_rc=LIF["tau_rc"],
        tau_ref=LIF["tau_ref"],
        min_voltage=LIF["min_voltage"],
        amplitude=LIF["amplitude"],
    )
    v, r = voltage.numpy().copy(), refractory.numpy().copy()
    out = np.zeros(J.shape[1])
    spikes = []
    for t in range(J.shape[0]):
        neuron.step(DT, J[t].numpy(), out, v, r)
        spikes.append(out.copy())
    np.testing.assert_array_equal(actual[0].numpy(), np.stack(spikes))
    np.testing.assert_allclose(actual[2].numpy(), v, rtol=1e-12, atol=1e-13)
    np.testing.assert_allclose(actual[3].numpy(), r, rtol=1e-12, atol=1e-13)


@pytest.mark.parametrize("kind", ["lif", "alif", "relu"])
def test_float32_close(kind):
    _, _, expected, actual = _run(kind, 100, 300, torch.float32)
    out_e, out_a = expected[0], actual[0]
    # float32 exp/log differ in the last bit at most: a spike may move only when
    # a voltage lands within ulps of the threshold
    differ = (out_e != out_a).any(dim=0)
    assert differ.float().mean() <= 0.01
    same = ~differ
    for e, a in zip(expected[1:], actual[1:]):
        e, a = (e[:, same], a[:, same]) if e.dim() == 2 else (e[same], a[same])
        torch.testing.assert_close(a, e, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("kind", ["lif", "alif", "relu"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_ragged_blocks(kind, dtype):
    """N not a multiple of BLOCK: several programs, the last one partly masked."""
    J, states = make_inputs(kind, 6, 77, dtype, seed=1)
    args = _param_args(kind)
    expected = KINDS[kind][0](J, *states, *args)
    actual = PRIVATE[kind](J, *states, *args, block=32)
    _assert_matches(expected, actual, rtol=1e-5 if dtype == torch.float32 else 1e-12)


@pytest.mark.parametrize("kind", ["lif", "alif", "relu"])
def test_default_block_two_programs(kind):
    """Public wrappers with N just past one (interpreter-sized) block."""
    J, states = make_inputs(kind, 2, 1025, torch.float64, seed=2)
    args = _param_args(kind)
    _assert_matches(KINDS[kind][0](J, *states, *args), KINDS[kind][1](J, *states, *args))


@pytest.mark.parametrize("kind", ["lif", "alif", "relu"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_single_step(kind, dtype):
    J, states = make_inputs(kind, 1, 33, dtype, seed=3)
    args = _param_args(kind)
    expected = KINDS[kind][0](J, *states, *args)
    actual = KINDS[kind][1](J, *states, *args)
    _assert_matches(expected, actual, rtol=1e-5 if dtype == torch.float32 else 1e-12)


@pytest.mark.parametrize("kind", ["lif", "alif", "relu"])
def test_no_steps_and_no_neurons(kind):
    args = _param_args(kind)
    J, states = make_inputs(kind, 0, 5, torch.float64)
    actual = KINDS[kind][1](J, *states, *args)
    assert actual[0].shape == (0, 5) and actual[1].shape == (0, 5)
    for s, a in zip(states, actual[2:]):
        assert torch.equal(a, s) and a.data_ptr() != s.data_ptr()  # fresh copies
    J, states = make_inputs(kind, 4, 0, torch.float64)
    actual = KINDS[kind][1](J, *states, *args)
    assert actual[0].shape == (4, 0) and all(a.shape == (0,) for a in actual[2:])


def test_noncontiguous_input_and_fresh_outputs():
    J, states = make_inputs("lif", 8, 40, torch.float64, seed=4)
    Jt = J.t().contiguous().t()[::2]  # strided view
    args = _param_args("lif")
    expected = reference.lif_lowpass(Jt, *states, *args)
    before = [s.clone() for s in states]
    actual = tk.lif_lowpass_triton(Jt, *states, *args)
    _assert_matches(expected, actual)
    for s, b in zip(states, before):  # inputs untouched
        assert torch.equal(s, b)


def test_bad_inputs():
    J, states = make_inputs("lif", 3, 10, torch.float64)
    args = _param_args("lif")
    with pytest.raises(ValueError):
        tk.lif_lowpass_triton(J[0], *states, *args)
    with pytest.raises(ValueError):
        tk.lif_lowpass_triton(J, states[0][:5], *states[1:], *args)
    with pytest.raises(TypeError):
        tk.lif_lowpass_triton(J.half(), *(s.half() for s in states), *args)


def test_import_without_triton():
    """Importing the module must not fail when triton is missing."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    path = os.path.join(root, "snntorch_nengo", "kernels", "triton_kernels.py")
    # load the file alone (not the package, whose imports are slow)
    code = (
        "import sys, importlib.util; sys.modules['triton'] = None\n"
        f"spec = importlib.util.spec_from_file_location('tk', {path!r})\n"
        "tk = importlib.util.module_from_spec(spec); spec.loader.exec_module(tk)\n"
        "assert tk.available is False\n"
        "import torch\n"
        "try:\n"
        "    tk.lif_lowpass_triton(torch.zeros(1, 1), *[torch.zeros(1)] * 3,"
        " 0.001, 0.02, 0.002, 0.0, 1.0, 0.9)\n"
        "except RuntimeError as e:\n"
        "    assert 'triton' in str(e)\n"
        "else:\n"
        "    raise AssertionError('no error')\n"
    )
    env = dict(os.environ)
    env.pop("TRITON_INTERPRET", None)
    subprocess.run([sys.executable, "-c", code], check=True, env=env, cwd=root)


def _sm90_ptx(kernel, signature, constexprs):
    """PTX of ``kernel`` compiled ahead of time for sm_90 with fp fusion off, as
    the kernels launch (no GPU needed), or a skip where this triton or machine
    cannot compile ahead of time."""
    try:
        from triton.backends.compiler import GPUTarget
        from triton.compiler import ASTSource
    except ImportError:
        pytest.skip("this triton has no ahead-of-time compile API")
    try:
        compiled = triton.compile(
            ASTSource(fn=kernel, signature=signature, constexprs=constexprs),
            target=GPUTarget("cuda", 90, 32),
            options={"num_warps": 4, "enable_fp_fusion": False},
        )
    except Exception as e:  # noqa: BLE001
        if "ptxas" in str(e).lower() or "cuda" in type(e).__name__.lower():
            pytest.skip(f"no CUDA toolchain for ahead-of-time compiling: {e}")
        raise
    return compiled.asm["ptx"]


@pytest.mark.parametrize(
    "body, dtype, adaptive",
    [
        ("_lif_lowpass_body", "fp32", True),
        ("_lif_lowpass_body", "fp64", False),
        ("_spiking_relu_lowpass_body", "fp32", None),
        ("_lif_lowpass_backward_body", "fp32", True),
        ("_lif_lowpass_backward_body", "fp64", False),
        ("_spiking_relu_lowpass_backward_body", "fp32", None),
    ],
)
def test_compiles_for_cuda(body, dtype, adaptive):
    """The CUDA path (libdevice, no FMA contraction) compiles for sm_90, no GPU needed."""
    kernel = tk._kernel(getattr(tk, body), interpret=False)
    names = list(kernel.arg_names)
    backward = "backward" in body
    constexprs = {"BLOCK": 256}
    if backward:
        # a surrogate with exp (sigmoid) and one with divisions (fast sigmoid)
        constexprs.update(SURROGATE=2 if adaptive else 1, HAS_GO=True, HAS_GFS=False)
        if adaptive is not None:
            constexprs.update(ADAPTIVE=adaptive)
    else:
        constexprs["SAVE"] = adaptive is not False  # with and without the record
        if adaptive is not None:
            constexprs.update(
                ADAPTIVE=adaptive, LIBDEVICE=True, RECIP_DIV=True, IS_F64=dtype == "fp64"
            )
    signature = {
        n: "constexpr" if n in constexprs
        else "i32" if n in ("T", "N", "TN", "LAST") else "*" + dtype
        for n in names
    }
    ptx = _sm90_ptx(kernel, signature, constexprs)
    assert ".entry" in ptx
    if backward:  # (gradients need no bitwise equality: plain divisions)
        return
    # divisions are IEEE-rounded (Triton's plain float32 `/` would be div.full)
    assert "div.full" not in ptx and "div.approx" not in ptx
    if adaptive is not None:
        assert f"div.rn.f{dtype[2:]}" in ptx


# --- CUDA: compiled kernels and the custom ops (skipped without a GPU) ---


def _ops_fn(kind):
    ops = pytest.importorskip("snntorch_nengo.kernels.ops")
    name = {"lif": "lif_lowpass", "alif": "adaptive_lif_lowpass", "relu": "spiking_relu_lowpass"}[kind]
    fn = getattr(ops, name, None)
    if fn is None:
        pytest.skip(f"snntorch_nengo.kernels.ops has no {name}")
    return fn


@needs_cuda
@pytest.mark.gpu
@pytest.mark.parametrize("kind", ["lif", "alif", "relu"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("impl", ["triton", "ops"])
def test_cuda_matches_reference(kind, dtype, impl):
    J, states = make_inputs(kind, 200, 3001, dtype, device="cuda")
    args = _param_args(kind)
    fn = KINDS[kind][1] if impl == "triton" else _ops_fn(kind)
    with torch.no_grad():
        expected = KINDS[kind][0](J, *states, *args)
        actual = fn(J, *states, *args)
    if dtype == torch.float64:
        # libdevice expm1/log1p are the routines torch's CUDA kernels use: in
        # float64 the compiled kernels equal the CUDA reference bit for bit
        # (seen on an H200, docs/benchmarks.md)
        _assert_matches(expected, actual, rtol=1e-12, atol=1e-13)
        return
    # float32 on CUDA is equal to rounding, not bitwise: on an H200, 2 of 20,011
    # LIF neurons in the near-threshold band (J = 1 +- 1e-3, where J - 1 keeps
    # only ~4 significant digits) spiked one step apart over 300 steps. Allow
    # 0.1% of neurons to differ; every other neuron's states agree to 1e-4.
    _assert_close_float32(expected, actual)


# --- backward kernels (BACKWARD) against autograd through the reference ---

NAMES = {"lif": "lif_lowpass", "alif": "adaptive_lif_lowpass", "relu": "spiking_relu_lowpass"}
# every surrogate id the kernels compute, with a parameter
SURROGATE_ARGS = [(0, 0.0), (1, 25.0), (2, 5.0), (3, 2.0), (4, 0.5), (5, 0.0)]


def _backward_case(kind, T, N, dtype, seed=3, device="cpu"):
    J, states = make_inputs(kind, T, N, dtype, seed=seed, device=device)
    g = torch.Generator().manual_seed(seed + 1)
    shapes = [J.shape, J.shape] + [s.shape for s in states]
    grads = [torch.randn(shape, generator=g, dtype=torch.float64).to(dtype=dtype, device=device)
             for shape in shapes]
    return [J, *states], grads


def _assert_grads_close(actual, expected, rtol):
    assert len(actual) == len(expected)
    for a, e in zip(actual, expected):
        assert a.shape == e.shape and a.dtype == e.dtype
        scale = float(e.abs().max()) if e.numel() else 0.0
        torch.testing.assert_close(a, e, rtol=rtol, atol=rtol * scale)


@pytest.mark.parametrize("kind", list(KINDS))
@pytest.mark.parametrize("surrogate", SURROGATE_ARGS, ids=lambda a: f"{a[0]}-{a[1]:g}")
def test_backward_float64_equals_reference_autograd(kind, surrogate):
    """40 steps of 37 neurons in programs of 16 (ragged), all output gradients
    given, then only the output's."""
    from snntorch_nengo.kernels import ops

    name = NAMES[kind]
    inputs, grads = _backward_case(kind, 40, 37, torch.float64)
    p = _param_args(kind)
    for given in (grads, [grads[0]] + [None] * (len(grads) - 1)):
        expected = ops.reference_grads(name, inputs, given, p, *surrogate)
        actual = tk.BACKWARD[name](inputs, given, p, *surrogate, block=16)
        _assert_grads_close(actual, expected, rtol=1e-10)
        # gradients reach J (from the spikes only through a surrogate)
        assert (float(expected[0].abs().sum()) > 0) == (given is grads or surrogate[0] != 0)


@pytest.mark.parametrize("kind", list(KINDS))
def test_backward_float32_and_edges(kind):
    from snntorch_nengo.kernels import ops

    name = NAMES[kind]
    inputs, grads = _backward_case(kind, 25, 20, torch.float32, seed=5)
    p = _param_args(kind)
    expected = ops.reference_grads(name, inputs, grads, p, 1, 25.0)
    _assert_grads_close(tk.BACKWARD[name](inputs, grads, p, 1, 25.0), expected, rtol=1e-4)
    # no steps: the states' gradients pass through, as fresh tensors
    empty = tk.BACKWARD[name]([inputs[0][:0], *inputs[1:]], [None, None, *grads[2:]],
                              p, 1, 25.0)
    assert empty[0].shape == (0, 20)
    for a, b in zip(empty[1:], grads[2:]):
        assert torch.equal(a, b) and a.data_ptr() != b.data_ptr()


class _TritonFunction(torch.autograd.Function):
    """The Triton forward and backward kernels as one differentiable function."""

    @staticmethod
    def forward(ctx, name, p, surrogate, *inputs):
        ctx.name, ctx.p, ctx.surrogate = name, p, surrogate
        ctx.save_for_backward(*inputs)
        return tuple(tk.KERNELS[name](*inputs, *p))

    @staticmethod
    def backward(ctx, *grads):
        grads_in = tk.BACKWARD[ctx.name](list(ctx.saved_tensors), list(grads), ctx.p,
                                         *ctx.surrogate)
        return (None, None, None, *grads_in)


@pytest.mark.parametrize("kind", list(KINDS))
def test_backward_gradcheck(kind):
    """Finite differences of the Triton forward kernel agree with its backward
    kernel where the gradient is the true derivative (no surrogate)."""
    J, states = make_inputs(kind, 8, 6, torch.float64, seed=11)
    if kind == "relu":
        J = J.abs() + 1.0  # away from max(J, 0)'s kink
    leaves = [x.clone().requires_grad_(True) for x in (J, *states)]
    name, p = NAMES[kind], _param_args(kind)
    assert torch.autograd.gradcheck(
        lambda *xs: _TritonFunction.apply(name, p, (0, 0.0), *xs), leaves,
        eps=1e-7, atol=1e-6, fast_mode=True,  # (the interpreter is slow)
    )


@needs_cuda
@pytest.mark.gpu
@pytest.mark.parametrize("kind", ["lif", "alif", "relu"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_cuda_backward_matches_reference(kind, dtype):
    from snntorch_nengo.kernels import ops

    name = NAMES[kind]
    inputs, grads = _backward_case(kind, 200, 3001, dtype, device="cuda")
    p = _param_args(kind)
    expected = ops.reference_grads(name, inputs, grads, p, 1, 25.0)
    actual = tk.BACKWARD[name](inputs, grads, p, 1, 25.0)
    if dtype == torch.float64:
        _assert_grads_close(actual, expected, rtol=1e-9)
    else:
        # a neuron spiking a step apart (see test_cuda_matches_reference) changes
        # its gradients entirely: compare the neurons whose spikes agree
        with torch.no_grad():
            spikes = KINDS[kind][0](*inputs, *p)[0]
            same = (spikes == KINDS[kind][1](*inputs, *p)[0]).all(dim=0)
        assert float(same.float().mean()) >= 0.999
        for a, e in zip(actual, expected):
            torch.testing.assert_close(a[..., same], e[..., same], rtol=1e-3, atol=1e-3)
    # the op on CUDA runs these kernels; opcheck its registrations there
    J, *states = (x.detach().clone().requires_grad_(True) for x in inputs)
    out = _ops_fn(kind)(J, *states, *p, 1, 25.0)
    sum(o.sum() for o in out).backward()
    torch.library.opcheck(_ops_fn(kind), (J.detach()[:20, :50].requires_grad_(True),
                          *(s.detach()[:50].requires_grad_(True) for s in states), *p, 1, 25.0))


# --- the linear filter scan (synapses over a window) ---


def _scan_case(S, general, T, N, dtype, seed=0):
    """Random coefficients of S states (a decaying A) and inputs."""
    g = torch.Generator().manual_seed(seed)
    A = (torch.rand(S * S, generator=g, dtype=torch.float64) * 1.2 - 0.6).tolist()
    B = torch.randn(S, generator=g, dtype=torch.float64).tolist()
    C = torch.randn(S, generator=g, dtype=torch.float64).tolist()
    D = float(torch.randn((), generator=g, dtype=torch.float64)) if general or S == 0 else 0.0
    u = torch.randn(T, N, generator=g, dtype=torch.float64).to(dtype)
    x0 = torch.randn(S, N, generator=g, dtype=torch.float64).to(dtype)
    return u, x0, A, B, C, D


# (T, N, BLOCK): ragged blocks, one step, the default block
SCAN_SHAPES = [(9, 37, 16), (1, 5, None), (6, 130, 64)]


@pytest.mark.parametrize("S", [0, 1, 2, 3])
@pytest.mark.parametrize("general", [False, True], ids=["after", "general"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["f32", "f64"])
def test_scan_equals_reference(S, general, dtype):
    """The same operations in the same order as the reference: the same bits,
    forwards and in reverse."""
    for T, N, block in SCAN_SHAPES:
        u, x0, A, B, C, D = _scan_case(S, general, T, N, dtype, seed=S + 10 * general)
        for reverse in (False, True):
            y, x = tk.linear_filter_scan_triton(u, x0, A, B, C, D, general, reverse,
                                                block=block)
            assert y.dtype == x.dtype == dtype and x.shape == (S, N)
            if S == 0:  # nengo's NoX, which the reference leaves to its caller
                assert torch.equal(y, D * u)
                continue
            want_y, want_x = reference.linear_filter_scan(u, x0, A, B, C, D, general,
                                                          reverse)
            assert torch.equal(y, want_y), float((y - want_y).abs().max())
            assert torch.equal(x, want_x)


def test_scan_lowpass_equals_the_synapse_step():
    """nengo's OneX (Lowpass) through its ScanForm, as the window calls it."""
    import nengo

    from snntorch_nengo.synapses import linear_filter_scan_form

    form = linear_filter_scan_form(nengo.Lowpass(0.01), DT)
    u = torch.randn(20, 33, dtype=torch.float64)
    x0 = torch.randn(1, 33, dtype=torch.float64)
    y, x = tk.linear_filter_scan_triton(u, x0, *form)
    assert torch.equal(y, reference.linear_filter_scan(u, x0, *form)[0])
    assert torch.equal(x[0], y[-1])  # OneX: the state is the output


@pytest.mark.parametrize("S", [1, 2])
@pytest.mark.parametrize("general", [False, True], ids=["after", "general"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["f32", "f64"])
def test_scan_backward_equals_reference_autograd(S, general, dtype):
    """The op's backward on CUDA: this kernel with the adjoint coefficients, back
    in time, gives autograd's gradients through the reference."""
    from snntorch_nengo.kernels import ops

    tol = 1e-12 if dtype == torch.float64 else 1e-5
    for reverse in (False, True):
        u, x0, A, B, C, D = _scan_case(S, general, 11, 37, dtype, seed=3 + S)
        gy, gx = torch.randn_like(u), torch.randn_like(x0)
        leaves = [u.clone().requires_grad_(True), x0.clone().requires_grad_(True)]
        with torch.enable_grad():
            y, x = reference.linear_filter_scan(*leaves, A, B, C, D, general, reverse)
            want = torch.autograd.grad([y, x], leaves, [gy, gx])
        got = tk.linear_filter_scan_triton(gy, gx, *ops.adjoint_filter(A, B, C, D, general),
                                           True, not reverse, block=16)
        for g, w in zip(got, want):
            torch.testing.assert_close(g, w, rtol=tol, atol=tol)


def test_scan_cuda_dispatch_on_cpu_tensors():
    """The op's CUDA kernel (run here on CPU tensors, interpreted): the Triton
    scan with y0 prepended and a held (stride-0) input; the reference for
    dtypes the kernel lacks."""
    from snntorch_nengo.kernels import ops

    from snntorch_nengo.kernels import cpp

    assert ops.triton_scan() is tk.linear_filter_scan_triton
    x = torch.zeros(1, 3, dtype=torch.float64)
    assert ops.scan_backend(x, 2) == ("cpp" if cpp.HAS_SCAN else "reference")
    assert ops.scan_backend(x.half(), 2) == ops.scan_backend(x, 9) == "reference"
    u, x0, A, B, C, D = _scan_case(2, True, 8, 21, torch.float64, seed=4)
    y0 = torch.randn(21, dtype=torch.float64)
    y, x = ops._cuda_scan(u, x0, A, B, C, D, True, False, y0)
    want_y, want_x = reference.linear_filter_scan(u, x0, A, B, C, D, True)
    assert y.shape == (9, 21) and torch.equal(y[0], y0)
    assert torch.equal(y[1:], want_y) and torch.equal(x, want_x)
    held = u[:1].expand(8, 21)
    assert held.stride(0) == 0
    y, x = ops._cuda_scan(held, x0, A, B, C, D, True)
    want_y, want_x = reference.linear_filter_scan(held.contiguous(), x0, A, B, C, D, True)
    assert torch.equal(y, want_y) and torch.equal(x, want_x)
    # no steps: a fresh copy of the state
    y, x = ops._cuda_scan(u[:0], x0, A, B, C, D, True)
    assert y.shape == (0, 21) and torch.equal(x, x0) and x.data_ptr() != x0.data_ptr()
    half = ops._cuda_scan(u[:3].half(), x0.half(), A, B, C, D, True)
    want = reference.linear_filter_scan(u[:3].half(), x0.half(), A, B, C, D, True)
    for a, b in zip(half, want):
        assert torch.equal(a, b)
    with pytest.raises(TypeError, match="float32 or float64"):
        tk.linear_filter_scan_triton(u.half(), x0.half(), A, B, C, D, True)


@pytest.mark.parametrize("S, dtype", [(1, "fp32"), (2, "fp64"), (3, "fp32")])
def test_scan_compiles_for_cuda(S, dtype):
    """The scan kernel compiles for sm_90 (no GPU needed), with IEEE operations
    and no FMA contraction."""
    kernel = tk._kernel(tk._linear_filter_scan_body, interpret=False)
    constexprs = dict(S=S, BLOCK=256, GENERAL=S == 2,
                      HAS_D=S == 2)
    ints = ("T", "N", "U_START", "U_STEP", "Y_START", "Y_STEP")
    signature = {
        n: "constexpr" if n in constexprs else "i32" if n in ints else "*" + dtype
        for n in kernel.arg_names
    }
    ptx = _sm90_ptx(kernel, signature, constexprs)
    assert ".entry" in ptx and "fma" not in ptx


@needs_cuda
@pytest.mark.gpu
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_cuda_scan_op_matches_reference(dtype):
    """On CUDA the op runs the compiled scan: bitwise the reference on the same
    GPU, and its backward (the same kernel) autograd's gradients."""
    from snntorch_nengo.kernels import ops

    for S, general in ((1, False), (2, True), (3, False)):
        u, x0, A, B, C, D = _scan_case(S, general, 300, 3001, dtype, seed=S)
        u, x0 = u.cuda().requires_grad_(True), x0.cuda().requires_grad_(True)
        y, x = ops.linear_filter_scan(u, x0, A, B, C, D, general)
        with torch.enable_grad():
            want_y, want_x = reference.linear_filter_scan(u, x0, A, B, C, D, general)
        assert torch.equal(y, want_y) and torch.equal(x, want_x)
        gy, gx = torch.randn_like(y), torch.randn_like(x)
        got = torch.autograd.grad([y, x], [u, x0], [gy, gx])
        want = torch.autograd.grad([want_y, want_x], [u, x0], [gy, gx])
        tol = 1e-10 if dtype == torch.float64 else 1e-4
        for g, w in zip(got, want):
            torch.testing.assert_close(g, w, rtol=tol, atol=tol)
