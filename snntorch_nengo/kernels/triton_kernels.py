"""Triton kernels for the fused multi-step neuron + lowpass updates.

Same semantics, signatures and return tuples as `snntorch_nengo.kernels.reference`
(read its docstring first): ``T`` steps of a Nengo neuron update, each followed by
a ``Lowpass`` on the neuron output, time-major (``J`` is ``[T, N]``, every state
is ``[N]``). Forward pass only; `snntorch_nengo.kernels.ops` differentiates by
recomputing the reference under autograd.

Layout of the work (the usual one for multi-step spiking kernels): one program
per block of ``BLOCK`` neurons, looping over the ``T`` time steps inside the
kernel. The states stay in registers for the whole loop; each step loads
``J[t, block]`` (prefetched one step ahead) and stores ``output[t, block]`` and
``filtered_seq[t, block]``; the final states are stored once at the end. LIF and
AdaptiveLIF share one kernel (``ADAPTIVE`` is a compile-time switch).

Exactness. Every step performs the same floating-point operations, in the same
order, as ``snntorch_nengo.neurons.spiking`` (itself a transcription of
``nengo.neurons``), with no FMA contraction (kernels are launched with
``enable_fp_fusion=False``), and every scalar parameter is rounded to the data's
dtype exactly as torch rounds a Python scalar. Two things depend on where the
kernel runs:

- On CUDA, ``expm1``/``log1p`` are libdevice's, i.e. the CUDA math library's
  routines that torch's own CUDA kernels call, and ``x / tau_rc`` is computed as
  ``x * (1 / tau_rc)`` because that is what torch's CUDA ``div`` does with a
  Python-scalar divisor. The kernels are therefore meant to equal the torch
  reference run on the same GPU bit for bit, in float32 and float64
  (``benchmarks/gpu_check.py`` checks this). Tensor-by-tensor float32 divisions
  use ``div_rn`` (Triton's plain ``/`` is approximate in float32).
- In Triton's interpreter (``TRITON_INTERPRET=1``, CPU tensors; used by the
  tests), libdevice is not available, so ``expm1`` and ``log1p`` are computed
  here from ``exp``/``log``, in float64 (also for float32 data, rounded back
  afterwards): ``expm1(x) = x + x*x*P(x)`` with ``P`` the Taylor series (to
  ``x**14/14!``) for ``|x| < 1/4`` (Nengo's usual ``-dt/tau_rc = -0.05`` falls
  here), Kahan's ``(u - 1) * x / log(u)``, ``u = exp(x)``, beyond;
  ``log1p(y) = y - s*(y - 2*s*s*Q(s*s))`` (the series of ``2*atanh(s)``,
  ``s = y / (2 + y)``) for ``|y| < 1/4`` and Kahan's ``log(u) * y / (u - 1)``,
  ``u = 1 + y``, beyond. These are accurate to about one unit in the last place
  but are not the routines torch (or numpy) uses on the CPU, so in float64 the
  states agree with the CPU reference to ~1e-15 relative rather than always
  bitwise (in the tests, everything is bitwise equal except refractory times
  off by one ulp); spikes agree unless a voltage lands within a few ulps of the
  threshold (never seen in the tests).

The linear filter scan of the synapses (``linear_filter_scan_triton``, at the
end of this module) shares the launch helpers; its backward pass is the same
scan run with the adjoint coefficients.

CPU tensors always run through Triton's interpreter (slow: meant for tests);
compiled Triton needs CUDA tensors. ``available`` tells whether triton imports.

Backward (`BACKWARD`). Each kernel's backward pass reruns its forward body with
``SAVE`` (it also stores, per step, what the reverse step needs: for LIF the
voltage before the threshold, ``J - v``, the ``expm1`` factor, the decremented
refractory time and the LIF's input; for SpikingRectifiedLinear the voltage
and ``J``), then a backward body walks the steps from the last to the first
with the gradients torch's autograd gives the training step (the same
transcription as the C++ backward kernels, ``csrc/kernels_impl.h``). The
recorded steps live only during the backward call.
"""

import functools
import inspect
import math
import os
import types
from collections.abc import Sequence
from typing import Callable

import torch

from snntorch_nengo.neurons.specs import KERNEL_SPECS, NeuronSpec

try:  # triton is optional: importing this module must never fail
    import triton
    import triton.language as tl

    try:
        from triton.language.extra import libdevice
    except ImportError:  # pragma: no cover - older triton layouts
        libdevice = None
    available = True
except ImportError:  # pragma: no cover - depends on the environment
    triton = libdevice = None
    tl = types.SimpleNamespace(constexpr=None)  # lets the kernel bodies be defined
    available = False

__all__ = [
    "available", "KERNELS", "BACKWARD", *(f"{s.kernel.name}_triton" for s in KERNEL_SPECS)
]

#: parameter slots in the per-launch parameter tensor (of the data's dtype)
_P_DT, _P_TAU_RC, _P_INV_TAU_RC, _P_TAU_REF, _P_MIN_V = 0, 1, 2, 3, 4
_P_AMP_DT, _P_DECAY, _P_ONE_M_DECAY, _P_DT_TAU_N, _P_INC_N = 5, 6, 7, 8, 9
# the surrogate's parameter, and ATan's pi / 2 * alpha and alpha / 2
_P_SG, _P_SG_SCALED, _P_SG_HALF = 10, 11, 12
_N_PARAMS = 13


# --------------------------------------------------------------------------
# Kernel bodies. They are plain functions, wrapped lazily (see `_kernel`) into
# either a compiled Triton kernel (CUDA) or an interpreted one (CPU or
# TRITON_INTERPRET=1), so the choice does not depend on import order. The jit
# functions they call are made with `_device_function`, so that the same body
# works in both modes.
# --------------------------------------------------------------------------


def _device_function(fn):
    """``fn`` as a jit function that kernel bodies call, compiled or interpreted.

    A compiled kernel inlines it as it does any jit function. The interpreter
    runs a body as Python, where a plain ``JITFunction`` refuses to be called:
    there the call goes to an ``InterpretedFunction`` of ``fn``.
    """
    try:
        from triton.runtime.interpreter import InterpretedFunction
        from triton.runtime.jit import JITFunction
    except ImportError:  # pragma: no cover - other triton layouts: `_kernel` says so
        return fn

    interpreted = InterpretedFunction(fn)

    class DeviceFunction(JITFunction):
        def __call__(self, *args, **kwargs):
            return interpreted(*args, **kwargs)

    return DeviceFunction(fn)


def _lif_lowpass_body(
    J_ptr,
    v0_ptr,
    r0_ptr,
    a0_ptr,
    f0_ptr,
    out_ptr,
    fseq_ptr,
    v_ptr,
    r_ptr,
    a_ptr,
    f_ptr,
    p_ptr,
    sv_ptr,
    T,
    N,
    TN,
    BLOCK: tl.constexpr,
    ADAPTIVE: tl.constexpr,
    LIBDEVICE: tl.constexpr,
    RECIP_DIV: tl.constexpr,
    IS_F64: tl.constexpr,
    SAVE: tl.constexpr,
):
    pid = tl.program_id(0)
    offs = pid * BLOCK + tl.arange(0, BLOCK)
    mask = offs < N

    dt = tl.load(p_ptr + 0)
    tau_rc = tl.load(p_ptr + 1)
    inv_tau_rc = tl.load(p_ptr + 2)
    tau_ref = tl.load(p_ptr + 3)
    min_voltage = tl.load(p_ptr + 4)
    amp_dt = tl.load(p_ptr + 5)
    decay = tl.load(p_ptr + 6)
    one_m_decay = tl.load(p_ptr + 7)
    dt_tau_n = tl.load(p_ptr + 8)
    inc_n = tl.load(p_ptr + 9)

    # padding lanes get harmless values (J = v = r = 0: no spike, no NaN)
    v = tl.load(v0_ptr + offs, mask=mask, other=0.0)
    r = tl.load(r0_ptr + offs, mask=mask, other=0.0)
    f = tl.load(f0_ptr + offs, mask=mask, other=0.0)
    if ADAPTIVE:
        a = tl.load(a0_ptr + offs, mask=mask, other=0.0)

    if not LIBDEVICE:
        # float64 series coefficients for the interpreter's expm1/log1p
        one = tl.full([BLOCK], 1.0, tl.float64)
        f3 = one / 6
        f4 = f3 / 4
        f5 = f4 / 5
        f6 = f5 / 6
        f7 = f6 / 7
        f8 = f7 / 8
        f9 = f8 / 9
        f10 = f9 / 10
        f11 = f10 / 11
        f12 = f11 / 12
        f13 = f12 / 13
        f14 = f13 / 14
        r3 = one / 3
        r5 = one / 5
        r7 = one / 7
        r9 = one / 9
        r11 = one / 11
        r13 = one / 13
        r15 = one / 15
        r17 = one / 17
        r19 = one / 19
        r21 = one / 21
        r23 = one / 23
        r25 = one / 25

    j_ptrs = J_ptr + offs  # pointer arithmetic is 64-bit: T * N may exceed 2**31
    o_ptrs = out_ptr + offs
    s_ptrs = fseq_ptr + offs
    sv_ptrs = sv_ptr + offs  # SAVE: [5, T, N], planes TN apart
    j_next = tl.load(j_ptrs, mask=mask, other=0.0)  # the wrapper ensures T >= 1
    for t in range(T):
        J = j_next
        j_ptrs += N
        # prefetch the next step's input (nothing past the last row)
        j_next = tl.load(j_ptrs, mask=mask & (offs * 0 + t + 1 < T), other=0.0)

        if ADAPTIVE:
            J = J - a  # AdaptiveLIF: LIF on J - n

        # --- nengo LIF.step ---
        r = r - dt
        delta_t = tl.minimum(tl.maximum(dt - r, 0.0), dt)
        neg_dt = -delta_t
        if RECIP_DIV:  # torch's CUDA `tensor / python_scalar`
            x = neg_dt * inv_tau_rc
        elif IS_F64:
            x = neg_dt / tau_rc
        else:
            x = tl.math.div_rn(neg_dt, tau_rc)
        if LIBDEVICE:
            e = libdevice.expm1(x)
        else:
            # expm1 from exp, in float64 (see the module docstring)
            xd = x.to(tl.float64)
            q = f13 + xd * f14
            q = f12 + xd * q
            q = f11 + xd * q
            q = f10 + xd * q
            q = f9 + xd * q
            q = f8 + xd * q
            q = f7 + xd * q
            q = f6 + xd * q
            q = f5 + xd * q
            q = f4 + xd * q
            q = f3 + xd * q
            q = 0.5 + xd * q  # sum_k x**(k-2) / k!, k >= 2
            e_small = xd + (xd * xd) * q
            u = tl.exp(xd)
            um1 = u - 1.0
            regular = (u != 1.0) & (um1 != -1.0)
            lu = tl.log(tl.where(regular, u, 2.0))
            e_big = tl.where(regular, um1 * xd / lu, tl.where(u == 1.0, xd, -1.0))
            e = tl.where(tl.abs(xd) < 0.25, e_small, e_big).to(x.dtype)
        d = J - v
        v = v - d * e
        if SAVE:  # what the backward kernel needs (the arithmetic is unchanged)
            tl.store(sv_ptrs, d, mask=mask)
            tl.store(sv_ptrs + TN, e, mask=mask)
            tl.store(sv_ptrs + 2 * TN, r, mask=mask)
            tl.store(sv_ptrs + 3 * TN, v, mask=mask)
            tl.store(sv_ptrs + 4 * TN, J, mask=mask)
            sv_ptrs += N

        spiked = v > 1.0
        out = spiked.to(v.dtype) * amp_dt

        # spike time, evaluated on harmless values where no spike happened
        v_safe = tl.where(spiked, v, 1.0)
        J_safe = tl.where(spiked, J, 2.0)
        num = -(v_safe - 1.0)
        den = J_safe - 1.0
        if IS_F64:
            y = num / den
        else:
            y = tl.math.div_rn(num, den)
        if LIBDEVICE:
            lg = libdevice.log1p(y)
        else:
            # log1p from log, in float64 (see the module docstring)
            yd = y.to(tl.float64)
            s = yd / (2.0 + yd)
            z = s * s
            w = r23 + z * r25
            w = r21 + z * w
            w = r19 + z * w
            w = r17 + z * w
            w = r15 + z * w
            w = r13 + z * w
            w = r11 + z * w
            w = r9 + z * w
            w = r7 + z * w
            w = r5 + z * w
            w = r3 + z * w  # sum_k z**k / (2k + 3)
            l_small = yd - s * (yd - 2.0 * z * w)
            uy = 1.0 + yd
            regular_y = (uy != 1.0) & (uy > 0.0)
            uy_safe = tl.where(regular_y, uy, 2.0)
            l_big = tl.where(
                regular_y, tl.log(uy_safe) * yd / (uy_safe - 1.0), tl.log(uy)
            )
            l_big = tl.where(uy == 1.0, yd, l_big)
            lg = tl.where(tl.abs(yd) < 0.25, l_small, l_big).to(y.dtype)
        t_spike = dt + tau_rc * lg

        v = tl.where(v < min_voltage, min_voltage, v)
        v = tl.where(spiked, 0.0, v)
        r = tl.where(spiked, tau_ref + t_spike, r)

        if ADAPTIVE:
            a = a + dt_tau_n * (inc_n * out - a)

        # --- nengo Lowpass (OneX) ---
        f = decay * f + one_m_decay * out

        tl.store(o_ptrs, out, mask=mask)
        tl.store(s_ptrs, f, mask=mask)
        o_ptrs += N
        s_ptrs += N

    tl.store(v_ptr + offs, v, mask=mask)
    tl.store(r_ptr + offs, r, mask=mask)
    tl.store(f_ptr + offs, f, mask=mask)
    if ADAPTIVE:
        tl.store(a_ptr + offs, a, mask=mask)


def _spiking_relu_lowpass_body(
    J_ptr,
    v0_ptr,
    f0_ptr,
    out_ptr,
    fseq_ptr,
    v_ptr,
    f_ptr,
    p_ptr,
    sv_ptr,
    T,
    N,
    TN,
    BLOCK: tl.constexpr,
    SAVE: tl.constexpr,
):
    pid = tl.program_id(0)
    offs = pid * BLOCK + tl.arange(0, BLOCK)
    mask = offs < N

    dt = tl.load(p_ptr + 0)
    amp_dt = tl.load(p_ptr + 5)
    decay = tl.load(p_ptr + 6)
    one_m_decay = tl.load(p_ptr + 7)

    v = tl.load(v0_ptr + offs, mask=mask, other=0.0)
    f = tl.load(f0_ptr + offs, mask=mask, other=0.0)

    j_ptrs = J_ptr + offs
    o_ptrs = out_ptr + offs
    s_ptrs = fseq_ptr + offs
    sv_ptrs = sv_ptr + offs  # SAVE: [2, T, N], planes TN apart
    j_next = tl.load(j_ptrs, mask=mask, other=0.0)  # the wrapper ensures T >= 1
    for t in range(T):
        J = j_next
        j_ptrs += N
        # prefetch the next step's input (nothing past the last row)
        j_next = tl.load(j_ptrs, mask=mask & (offs * 0 + t + 1 < T), other=0.0)

        # --- nengo SpikingRectifiedLinear.step ---
        v = v + tl.maximum(J, 0.0) * dt
        if SAVE:
            tl.store(sv_ptrs, v, mask=mask)
            tl.store(sv_ptrs + TN, J, mask=mask)
            sv_ptrs += N
        n_spikes = tl.floor(v)
        out = amp_dt * n_spikes
        v = v - n_spikes

        # --- nengo Lowpass (OneX) ---
        f = decay * f + one_m_decay * out

        tl.store(o_ptrs, out, mask=mask)
        tl.store(s_ptrs, f, mask=mask)
        o_ptrs += N
        s_ptrs += N

    tl.store(v_ptr + offs, v, mask=mask)
    tl.store(f_ptr + offs, f, mask=mask)


# --------------------------------------------------------------------------
# Backward bodies: run back through the steps a SAVE forward pass recorded,
# with the gradients torch's autograd gives the training step (see
# csrc/kernels_impl.h, whose C++ reverse steps these transcribe). SURROGATE is
# the surrogate's kernel id (`neurons.surrogates.kernel_surrogate`), a
# compile-time switch; its parameter is in the parameter tensor.
# --------------------------------------------------------------------------


def _surrogate_grad(x, sp, sp_scaled, sp_half, SURROGATE: tl.constexpr):
    """The surrogate's derivative at ``x``, the distance from the spike threshold.

    ``SURROGATE`` is its nonzero kernel id; ``sp`` its parameter, ``sp_scaled``
    and ``sp_half`` ATan's ``pi / 2 * alpha`` and ``alpha / 2``.
    """
    if SURROGATE == 1:  # fast sigmoid
        y = sp * tl.abs(x) + 1.0
        sg = 1.0 / (y * y)
    elif SURROGATE == 2:  # sigmoid
        sig = 1.0 / (1.0 + tl.exp(-(sp * x)))
        sg = sp * sig * (1.0 - sig)
    elif SURROGATE == 3:  # atan
        y = sp_scaled * x
        sg = sp_half / (1.0 + y * y)
    elif SURROGATE == 4:  # triangle
        sg = tl.maximum(1.0 - tl.abs(x) / sp, 0.0) / sp
    else:  # straight through
        sg = x * 0.0 + 1.0
    return sg


if available:
    _surrogate_grad = _device_function(_surrogate_grad)


def _lif_lowpass_backward_body(
    sv_ptr,
    go_ptr,
    gfs_ptr,
    gv_ptr,
    gr_ptr,
    ga_ptr,
    gf_ptr,
    gJ_ptr,
    gv0_ptr,
    gr0_ptr,
    ga0_ptr,
    gf0_ptr,
    p_ptr,
    T,
    N,
    TN,
    LAST,
    BLOCK: tl.constexpr,
    ADAPTIVE: tl.constexpr,
    SURROGATE: tl.constexpr,
    HAS_GO: tl.constexpr,
    HAS_GFS: tl.constexpr,
):
    pid = tl.program_id(0)
    offs = pid * BLOCK + tl.arange(0, BLOCK)
    mask = offs < N

    dt = tl.load(p_ptr + 0)
    tau_rc = tl.load(p_ptr + 1)
    min_voltage = tl.load(p_ptr + 4)
    amp_dt = tl.load(p_ptr + 5)
    decay = tl.load(p_ptr + 6)
    one_m_decay = tl.load(p_ptr + 7)
    dt_tau_n = tl.load(p_ptr + 8)
    inc_n = tl.load(p_ptr + 9)
    sp = tl.load(p_ptr + 10)
    sp_scaled = tl.load(p_ptr + 11)
    sp_half = tl.load(p_ptr + 12)

    g_v = tl.load(gv_ptr + offs, mask=mask, other=0.0)
    g_r = tl.load(gr_ptr + offs, mask=mask, other=0.0)
    g_f = tl.load(gf_ptr + offs, mask=mask, other=0.0)
    if ADAPTIVE:
        g_a = tl.load(ga_ptr + offs, mask=mask, other=0.0)

    # from the last step back; LAST = (T - 1) * N (64-bit when it needs to be)
    sv_ptrs = sv_ptr + offs + LAST
    go_ptrs = go_ptr + offs + LAST
    gfs_ptrs = gfs_ptr + offs + LAST
    gJ_ptrs = gJ_ptr + offs + LAST
    for _ in range(T):
        # padding lanes: d = e = r1 = v1 = J = 0 (no spike, no NaN), never stored
        d = tl.load(sv_ptrs, mask=mask, other=0.0)
        e = tl.load(sv_ptrs + TN, mask=mask, other=0.0)
        r1 = tl.load(sv_ptrs + 2 * TN, mask=mask, other=0.0)
        v1 = tl.load(sv_ptrs + 3 * TN, mask=mask, other=0.0)
        J = tl.load(sv_ptrs + 4 * TN, mask=mask, other=0.0)

        # --- the lowpass ---
        if HAS_GFS:
            g_f = g_f + tl.load(gfs_ptrs, mask=mask, other=0.0)
        g_out = one_m_decay * g_f
        if HAS_GO:
            g_out = tl.load(go_ptrs, mask=mask, other=0.0) + g_out
        g_f = decay * g_f
        if ADAPTIVE:  # n += (dt / tau_n) * (inc_n * output - n)
            g_inner = g_a * dt_tau_n
            g_out = g_out + g_inner * inc_n

        # --- the LIF step ---
        spiked = v1 > 1.0
        g_v1 = tl.where(spiked, 0.0, g_v)
        g_v1 = tl.where(v1 < min_voltage, 0.0, g_v1)
        if SURROGATE != 0:
            sg = _surrogate_grad(v1 - 1.0, sp, sp_scaled, sp_half, SURROGATE)
            g_v1 = g_v1 + g_out * amp_dt * sg
        # refractory_time = tau_ref + dt + tau_rc * log1p(num / den)
        g_t = tl.where(spiked, g_r, 0.0)
        g_r1 = tl.where(spiked, 0.0, g_r)
        num = -(tl.where(spiked, v1, 1.0) - 1.0)
        den = tl.where(spiked, J, 2.0) - 1.0
        q = num / den
        g_q = g_t * tau_rc / (q + 1.0)
        g_v1 = g_v1 - g_q / den
        g_J = -(g_q * q) / den
        # v1 = v - d * e, d = J - v
        g_ve = g_v1 * e
        g_v = g_v1 + g_ve
        g_J = g_J - g_ve
        # e = expm1(-delta_t / tau_rc), delta_t = clip(dt - r1, 0, dt)
        g_delta = g_v1 * d * (e + 1.0) / tau_rc
        xr = dt - r1
        inside = (xr >= 0.0) & (xr <= dt)
        g_r = g_r1 - tl.where(inside, g_delta, 0.0)
        if ADAPTIVE:
            g_a = g_a - g_inner - g_J

        tl.store(gJ_ptrs, g_J, mask=mask)
        sv_ptrs -= N
        go_ptrs -= N
        gfs_ptrs -= N
        gJ_ptrs -= N

    tl.store(gv0_ptr + offs, g_v, mask=mask)
    tl.store(gr0_ptr + offs, g_r, mask=mask)
    tl.store(gf0_ptr + offs, g_f, mask=mask)
    if ADAPTIVE:
        tl.store(ga0_ptr + offs, g_a, mask=mask)


def _spiking_relu_lowpass_backward_body(
    sv_ptr,
    go_ptr,
    gfs_ptr,
    gv_ptr,
    gf_ptr,
    gJ_ptr,
    gv0_ptr,
    gf0_ptr,
    p_ptr,
    T,
    N,
    TN,
    LAST,
    BLOCK: tl.constexpr,
    SURROGATE: tl.constexpr,
    HAS_GO: tl.constexpr,
    HAS_GFS: tl.constexpr,
):
    pid = tl.program_id(0)
    offs = pid * BLOCK + tl.arange(0, BLOCK)
    mask = offs < N

    dt = tl.load(p_ptr + 0)
    amp_dt = tl.load(p_ptr + 5)
    decay = tl.load(p_ptr + 6)
    one_m_decay = tl.load(p_ptr + 7)
    sp = tl.load(p_ptr + 10)
    sp_scaled = tl.load(p_ptr + 11)
    sp_half = tl.load(p_ptr + 12)

    g_v = tl.load(gv_ptr + offs, mask=mask, other=0.0)
    g_f = tl.load(gf_ptr + offs, mask=mask, other=0.0)

    sv_ptrs = sv_ptr + offs + LAST
    go_ptrs = go_ptr + offs + LAST
    gfs_ptrs = gfs_ptr + offs + LAST
    gJ_ptrs = gJ_ptr + offs + LAST
    for _ in range(T):
        v1 = tl.load(sv_ptrs, mask=mask, other=0.0)
        J = tl.load(sv_ptrs + TN, mask=mask, other=0.0)

        if HAS_GFS:
            g_f = g_f + tl.load(gfs_ptrs, mask=mask, other=0.0)
        g_out = one_m_decay * g_f
        if HAS_GO:
            g_out = tl.load(go_ptrs, mask=mask, other=0.0) + g_out
        g_f = decay * g_f

        # the spike count's surrogate: of the distance to the nearest step at
        # +-max(round(|v|), 1) (Surrogate.staircase; floor(a + 0.5) differs from
        # torch's round-half-even only at ties, where both steps are 0.5 away
        # and the symmetric surrogates agree)
        g_v1 = g_v
        if SURROGATE != 0:
            k = tl.maximum(tl.floor(tl.abs(v1) + 0.5), 1.0)
            x = v1 - tl.where(v1 >= 0.0, k, -k)
            sg = _surrogate_grad(x, sp, sp_scaled, sp_half, SURROGATE)
            g_v1 = g_v1 + g_out * amp_dt * sg
        g_v = g_v1
        # voltage += max(J, 0) * dt: torch's clamp passes the gradient at J >= 0
        g_J = tl.where(J >= 0.0, g_v1 * dt, 0.0)

        tl.store(gJ_ptrs, g_J, mask=mask)
        sv_ptrs -= N
        go_ptrs -= N
        gfs_ptrs -= N
        gJ_ptrs -= N

    tl.store(gv0_ptr + offs, g_v, mask=mask)
    tl.store(gf0_ptr + offs, g_f, mask=mask)


# --------------------------------------------------------------------------
# Launch helpers
# --------------------------------------------------------------------------

_KERNELS = {}


def _interpreting(device):
    """Whether to run the interpreter: always off CUDA, or if TRITON_INTERPRET=1."""
    if device.type != "cuda":
        return True
    knobs = getattr(triton, "knobs", None)
    if knobs is not None:
        return bool(knobs.runtime.interpret)
    return os.environ.get("TRITON_INTERPRET", "0") not in ("", "0")


def _kernel(body, interpret):
    key = (body.__name__, interpret)
    if key not in _KERNELS:
        if interpret:
            from triton.runtime.interpreter import InterpretedFunction

            _KERNELS[key] = InterpretedFunction(body)
        else:
            # not `triton.jit`, which would return an interpreted kernel when
            # TRITON_INTERPRET=1: this one is compiled whatever the environment
            from triton.runtime.jit import JITFunction

            _KERNELS[key] = JITFunction(body)
    return _KERNELS[key]


def _default_block(n, interpret):
    if interpret:
        return 1024  # fewer, wider programs: the interpreter's cost is per op
    # enough programs to fill the GPU at small N, wide blocks at large N
    if n <= 1 << 17:
        return 128
    if n <= 1 << 20:
        return 256
    return 512


def _check_inputs(name, J, *states):
    if not available:
        raise RuntimeError(f"{name}: triton is not installed")
    if J.dim() != 2:
        raise ValueError(f"J must be [T, N], got shape {tuple(J.shape)}")
    if J.dtype not in (torch.float32, torch.float64):
        raise TypeError(f"{name}: float32 or float64 only, got {J.dtype}")
    for s in states:
        if s.shape != J.shape[1:]:
            raise ValueError(
                f"states must be [N] = {tuple(J.shape[1:])}, got {tuple(s.shape)}"
            )
        if s.dtype != J.dtype or s.device != J.device:
            raise ValueError(
                f"{name}: states must have J's dtype and device "
                f"({J.dtype}, {J.device}), got ({s.dtype}, {s.device})"
            )


def _params(J, dt, tau_rc=1.0, tau_ref=0.0, min_voltage=0.0, amplitude=1.0,
            decay=0.0, tau_n=1.0, inc_n=0.0, surrogate_param=0.0):
    """The kernels' scalar parameters, rounded to J's dtype like torch's scalars.

    Python-float arithmetic (``amplitude / dt``, ``1 - decay``, ``dt / tau_n``) is
    done in double first, exactly as the reference does; ``1 / tau_rc`` is what
    torch's CUDA ``div`` multiplies by (the reciprocal in the data's dtype).
    """
    dt, tau_rc = float(dt), float(tau_rc)
    values = [0.0] * _N_PARAMS
    values[_P_DT] = dt
    values[_P_TAU_RC] = tau_rc
    values[_P_TAU_REF] = float(tau_ref)
    values[_P_MIN_V] = float(min_voltage)
    values[_P_AMP_DT] = float(amplitude) / dt
    values[_P_DECAY] = float(decay)
    values[_P_ONE_M_DECAY] = 1.0 - float(decay)
    values[_P_DT_TAU_N] = dt / float(tau_n)
    values[_P_INC_N] = float(inc_n)
    values[_P_SG] = float(surrogate_param)
    values[_P_SG_SCALED] = math.pi / 2 * float(surrogate_param)
    values[_P_SG_HALF] = float(surrogate_param) / 2
    return _params_tensor(tuple(values), J.dtype, J.device)


@functools.lru_cache(maxsize=64)
def _params_tensor(values, dtype, device):
    # cached: no host-to-device copy per call for the same parameters (the
    # kernels only read it)
    p = torch.tensor(values, dtype=dtype)
    p[_P_INV_TAU_RC] = torch.ones((), dtype=dtype) / p[_P_TAU_RC]  # in the dtype
    return p.to(device)


def _launch_lif(J, voltage, refractory_time, adaptation, filtered, params,
                adaptive, block=None, saved=None):
    T, N = J.shape
    interpret = _interpreting(J.device)
    J = J.contiguous()
    out = torch.empty_like(J)
    fseq = torch.empty_like(J)
    v = torch.empty_like(voltage, memory_format=torch.contiguous_format)
    r = torch.empty_like(refractory_time, memory_format=torch.contiguous_format)
    f = torch.empty_like(filtered, memory_format=torch.contiguous_format)
    a = (
        torch.empty_like(adaptation, memory_format=torch.contiguous_format)
        if adaptive
        else v  # unused (ADAPTIVE=False): any valid pointer
    )
    if N == 0 or T == 0:  # nothing to run: fresh copies of the states
        v.copy_(voltage)
        r.copy_(refractory_time)
        f.copy_(filtered)
        if adaptive:
            a.copy_(adaptation)
        return out, fseq, v, r, a, f
    v0 = voltage.contiguous()
    a0 = adaptation.contiguous() if adaptive else v0
    block = block or _default_block(N, interpret)
    kernel = _kernel(_lif_lowpass_body, interpret)
    kernel[(triton.cdiv(N, block),)](
        J, v0, refractory_time.contiguous(), a0, filtered.contiguous(),
        out, fseq, v, r, a, f, params, J if saved is None else saved, T, N, T * N,
        BLOCK=block,
        ADAPTIVE=adaptive,
        LIBDEVICE=not interpret,
        RECIP_DIV=J.device.type == "cuda",
        IS_F64=J.dtype == torch.float64,
        SAVE=saved is not None,
        num_warps=max(1, min(8, block // 64)),
        enable_fp_fusion=False,
    )
    return out, fseq, v, r, a, f


def _run_lif(tensors, params, block):
    J, voltage, refractory_time, filtered = tensors
    out, fseq, v, r, _, f = _launch_lif(
        J, voltage, refractory_time, None, filtered, params, False, block
    )
    return out, fseq, v, r, f


def _run_adaptive_lif(tensors, params, block):
    J, voltage, refractory_time, adaptation, filtered = tensors
    return _launch_lif(
        J, voltage, refractory_time, adaptation, filtered, params, True, block
    )


def _run_spiking_relu(tensors, params, block, saved=None):
    J, voltage, filtered = tensors
    T, N = J.shape
    interpret = _interpreting(J.device)
    J = J.contiguous()
    out = torch.empty_like(J)
    fseq = torch.empty_like(J)
    v = torch.empty_like(voltage, memory_format=torch.contiguous_format)
    f = torch.empty_like(filtered, memory_format=torch.contiguous_format)
    if N == 0 or T == 0:  # nothing to run: fresh copies of the states
        v.copy_(voltage)
        f.copy_(filtered)
        return out, fseq, v, f
    block = block or _default_block(N, interpret)
    kernel = _kernel(_spiking_relu_lowpass_body, interpret)
    kernel[(triton.cdiv(N, block),)](
        J, voltage.contiguous(), filtered.contiguous(),
        out, fseq, v, f, params, J if saved is None else saved, T, N, T * N,
        BLOCK=block,
        SAVE=saved is not None,
        num_warps=max(1, min(8, block // 64)),
        enable_fp_fusion=False,
    )
    return out, fseq, v, f


# each fused kernel's launch: (tensors in the spec's order, parameter tensor,
# BLOCK or None) -> the reference's tuple
_LAUNCHES = {
    "lif_lowpass": _run_lif,
    "adaptive_lif_lowpass": _run_adaptive_lif,
    "spiking_relu_lowpass": _run_spiking_relu,
}


def _grad_or_zeros(g, like):
    return torch.zeros_like(like) if g is None else g.contiguous()


def _backward(spec, inputs, grads, params, surrogate, block):
    """The gradients of ``spec``'s kernel's tensor inputs (see `BACKWARD`)."""
    name = spec.kernel.name
    J = inputs[0].contiguous()
    T, N = J.shape
    states = [x.contiguous() for x in inputs[1:]]
    state_grads = [_grad_or_zeros(g, x) for g, x in zip(grads[2:], states)]
    gJ = torch.empty_like(J)
    if T == 0 or N == 0:  # nothing to run back through: fresh copies
        return [gJ] + [g.clone() for g in state_grads]
    interpret = _interpreting(J.device)
    block = block or _default_block(N, interpret)
    relu = name == "spiking_relu_lowpass"
    saved = torch.empty((2 if relu else 5, T, N), dtype=J.dtype, device=J.device)
    # the forward pass again, recording what the reverse steps need
    if relu:
        _run_spiking_relu([J, *states], params, block, saved=saved)
    else:
        adaptive = name == "adaptive_lif_lowpass"
        v0, r0 = states[0], states[1]
        a0 = states[2] if adaptive else None
        _launch_lif(J, v0, r0, a0, states[-1], params, adaptive, block, saved=saved)
    go, gfs = grads[0], grads[1]
    flags = dict(SURROGATE=int(surrogate), HAS_GO=go is not None, HAS_GFS=gfs is not None)
    go = J if go is None else go.contiguous()  # (unread when absent)
    gfs = J if gfs is None else gfs.contiguous()
    out = [torch.empty_like(x) for x in states]
    common = dict(num_warps=max(1, min(8, block // 64)))
    grid = (triton.cdiv(N, block),)
    if relu:
        kernel = _kernel(_spiking_relu_lowpass_backward_body, interpret)
        kernel[grid](
            saved, go, gfs, state_grads[0], state_grads[1],
            gJ, out[0], out[1], params, T, N, T * N, (T - 1) * N,
            BLOCK=block, **flags, **common,
        )
    else:
        adaptive = name == "adaptive_lif_lowpass"
        ga, ga0 = (state_grads[2], out[2]) if adaptive else (state_grads[0], out[0])
        kernel = _kernel(_lif_lowpass_backward_body, interpret)
        kernel[grid](
            saved, go, gfs, state_grads[0], state_grads[1], ga, state_grads[-1],
            gJ, out[0], out[1], ga0, out[-1], params, T, N, T * N, (T - 1) * N,
            BLOCK=block, ADAPTIVE=adaptive, **flags, **common,
        )
    return [gJ] + out


def _backward_wrapper(spec: NeuronSpec) -> Callable:
    n = spec.n_tensors()
    names = spec.kernel_args(backward=False)[n:]

    def backward(inputs, grads, params, surrogate, surrogate_param, block=None):
        _check_inputs(f"{spec.kernel.name}_backward_triton", *inputs)
        floats = dict(zip(names, params))
        p = _params(inputs[0], surrogate_param=surrogate_param, **floats)
        return _backward(spec, inputs, grads, p, surrogate, block)

    backward.__name__ = backward.__qualname__ = f"{spec.kernel.name}_backward_triton"
    backward.__doc__ = (
        f"Gradients of ``{spec.kernel.name}``'s tensor inputs (J, the states, "
        "filtered) from those of its outputs (``grads``, None for zero), with the "
        "surrogate of kernel id ``surrogate``; ``params`` are its forward floats. "
        "Recomputes the forward pass, recording what the reverse steps need "
        "([5, T, N] for LIF and AdaptiveLIF, [2, T, N] for SpikingRectifiedLinear), "
        "then runs back through time."
    )
    return backward


#: the Triton backward kernels by name: ``(inputs, grads, params, surrogate,
#: surrogate_param[, block]) -> [grad J, *grad states, grad filtered]``
BACKWARD: dict[str, Callable] = {s.kernel.name: _backward_wrapper(s) for s in KERNEL_SPECS}


# --------------------------------------------------------------------------
# Public wrappers: the reference's signatures and return tuples
# --------------------------------------------------------------------------


def _wrapper(spec: NeuronSpec, backward: bool, block: bool) -> Callable:
    """``spec``'s kernel with the reference's arguments (``backward``: with the
    ignored surrogate; ``block``: with a keyword-only BLOCK)."""
    name, n = spec.kernel.name, spec.n_tensors()
    signature = spec.kernel_signature(backward)
    launch = _LAUNCHES[name]

    def kernel(*args, block=None, **kwargs):
        named = signature.bind(*args, **kwargs)
        named.apply_defaults()
        values = tuple(named.arguments.values())
        tensors = values[:n]
        _check_inputs(f"{name}_triton", *tensors)
        floats = dict(zip(spec.kernel_args(backward=False)[n:], values[n:]))
        return launch(tensors, _params(tensors[0], **floats), block)

    if block:
        parameters = list(signature.parameters.values()) + [
            inspect.Parameter("block", inspect.Parameter.KEYWORD_ONLY, default=None)
        ]
        signature = signature.replace(parameters=parameters)
    kernel.__name__ = kernel.__qualname__ = f"{name}_triton" if not block else f"_{name}"
    kernel.__signature__ = signature
    kernel.__doc__ = (
        f"T steps of nengo ``{spec.nengo_type.__name__}`` + ``Lowpass`` (see "
        f"`reference.{name}`).\n\nReturns ``{spec.kernel_returns()}``, all new "
        "tensors."
        + (" ``surrogate`` and ``surrogate_param`` only shape the backward pass; "
           "they are accepted for the same signature." if backward else "")
    )
    return kernel


#: the Triton kernels by name (``lif_lowpass``, ...), with the reference's signatures
KERNELS: dict[str, Callable] = {
    s.kernel.name: _wrapper(s, backward=True, block=False) for s in KERNEL_SPECS
}
# public names `<name>_triton`; `_<name>` take a keyword-only `block` (tests)
globals().update({f"{name}_triton": fn for name, fn in KERNELS.items()})
globals().update(
    {f"_{s.kernel.name}": _wrapper(s, backward=False, block=True) for s in KERNEL_SPECS}
)


# --------------------------------------------------------------------------
# Linear filter scan (synapses over a window)
# --------------------------------------------------------------------------
# `reference.linear_filter_scan` (read its docstring): one program per block of
# columns, the S states of each column in registers (a tuple of S [BLOCK]
# vectors, the loops over the states unrolled: S is a compile-time constant), a
# loop over the T steps inside. Each state and output is summed left to right
# over the states, with the coefficients rounded to the data's dtype, as the
# reference and the C++ kernel do (launched without FMA contraction). The
# backward pass needs no kernel of its own: it is this scan run with the
# adjoint coefficients (`ops.adjoint_filter`), which the op's autograd calls.
# The coefficients are one tensor: A (S * S, row-major), B, C, D.


def _scan_output(x, ut, c, d, S: tl.constexpr, HAS_D: tl.constexpr):
    """``C x + D u``, summed in the reference's order (``D u``: only if nonzero)."""
    if S == 0:  # nengo's NoX: a passthrough
        y = d * ut
    else:
        y = c[0] * x[0]
        for s in tl.static_range(1, S):
            y = y + c[s] * x[s]
        if HAS_D:
            y = y + d * ut
    return y


def _scan_update(x, ut, a, b, S: tl.constexpr):
    """``A x + B u``, each state summed in the reference's order."""
    new = ()
    for r in tl.static_range(S):
        acc = a[r * S] * x[0]
        for s in tl.static_range(1, S):
            acc = acc + a[r * S + s] * x[s]
        new = new + (acc + b[r] * ut,)
    return new


if available:
    _scan_output = _device_function(_scan_output)
    _scan_update = _device_function(_scan_update)


def _linear_filter_scan_body(
    u_ptr,
    x0_ptr,
    y_ptr,
    x_ptr,
    c_ptr,
    T,
    N,
    U_START,
    U_STEP,
    Y_START,
    Y_STEP,
    S: tl.constexpr,
    BLOCK: tl.constexpr,
    GENERAL: tl.constexpr,
    HAS_D: tl.constexpr,
):
    pid = tl.program_id(0)
    offs = pid * BLOCK + tl.arange(0, BLOCK)
    mask = offs < N
    # the coefficients, loaded once (scalars in registers for the whole loop)
    a = ()
    for i in tl.static_range(S * S):
        a = a + (tl.load(c_ptr + i),)
    b = ()
    c = ()
    x = ()
    for s in tl.static_range(S):
        b = b + (tl.load(c_ptr + S * S + s),)
        c = c + (tl.load(c_ptr + S * S + S + s),)
        x = x + (tl.load(x0_ptr + s * N + offs, mask=mask, other=0.0),)
    d = tl.load(c_ptr + S * S + 2 * S)

    # (64-bit pointer steps, back in time when reversed: U_STEP, Y_STEP < 0)
    u_ptrs = u_ptr + offs + U_START
    y_ptrs = y_ptr + offs + Y_START
    for _ in range(T):
        ut = tl.load(u_ptrs, mask=mask, other=0.0)
        if GENERAL:  # nengo's General: the output before the update
            y = _scan_output(x, ut, c, d, S, HAS_D)
            x = _scan_update(x, ut, a, b, S)
        else:
            x = _scan_update(x, ut, a, b, S)
            y = _scan_output(x, ut, c, d, S, HAS_D)
        tl.store(y_ptrs, y, mask=mask)
        u_ptrs += U_STEP
        y_ptrs += Y_STEP

    for s in tl.static_range(S):
        tl.store(x_ptr + s * N + offs, x[s], mask=mask)


@functools.lru_cache(maxsize=64)
def _scan_coefficients(values, dtype, device):
    # cached as `_params_tensor`: no host-to-device copy per call
    return torch.tensor(values, dtype=dtype).to(device)


def linear_filter_scan_triton(
    u: torch.Tensor,
    x0: torch.Tensor,
    A: "Sequence[float]",
    B: "Sequence[float]",
    C: "Sequence[float]",
    D: float,
    general: bool = False,
    reverse: bool = False,
    y0: "torch.Tensor | None" = None,
    *,
    block: "int | None" = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """`reference.linear_filter_scan` (with ``y0``, ``[N]``, as the first row of
    ``y``, as the op takes it). ``S = len(B)`` may be 0 (nengo's NoX: ``y = D
    u``). An input expanded over time (stride 0) is read from its one row.
    Returns ``(y, x_final)``, new tensors."""
    if not available:
        raise RuntimeError("linear_filter_scan_triton: triton is not installed")
    S = len(B)
    if u.dim() != 2 or tuple(x0.shape) != (S, u.shape[1]) or len(A) != S * S or len(C) != S:
        raise ValueError(
            f"linear_filter_scan_triton: u must be [T, N], x0 [S, N] with S = len(B) = "
            f"{S}, A S * S and C S entries; got u {tuple(u.shape)}, x0 "
            f"{tuple(x0.shape)}, {len(A)} and {len(C)}"
        )
    if u.dtype not in (torch.float32, torch.float64):
        raise TypeError(f"linear_filter_scan_triton: float32 or float64 only, got {u.dtype}")
    for name, t in (("x0", x0), ("y0", y0)):
        if t is not None and (t.dtype != u.dtype or t.device != u.device):
            raise ValueError(
                f"linear_filter_scan_triton: {name} must have u's dtype and device "
                f"({u.dtype}, {u.device}), got ({t.dtype}, {t.device})"
            )
    T, N = u.shape
    y = u.new_empty((T + (y0 is not None), N))
    if y0 is not None:
        y[0] = y0
    x = torch.empty_like(x0, memory_format=torch.contiguous_format)
    if T == 0 or N == 0:  # nothing to run: a fresh copy of the state
        x.copy_(x0)
        return y, x
    if u.stride(1) != 1 and N > 1:
        u = u.contiguous()
    u_step = u.stride(0)  # (0 for a held input)
    interpret = _interpreting(u.device)
    block = block or _default_block(N, interpret)
    D = float(D)
    coefficients = _scan_coefficients(
        (*map(float, A), *map(float, B), *map(float, C), D), u.dtype, u.device
    )
    first = T - 1 if reverse else 0
    sign = -1 if reverse else 1
    kernel = _kernel(_linear_filter_scan_body, interpret)
    kernel[(triton.cdiv(N, block),)](
        u, x0.contiguous(), y[y.shape[0] - T :], x, coefficients,
        T, N, first * u_step, sign * u_step, first * N, sign * N,
        S=S,
        BLOCK=block,
        GENERAL=bool(general),
        HAS_D=D != 0.0,
        num_warps=max(1, min(8, block // 64)),
        enable_fp_fusion=False,
    )
    return y, x


__all__.append("linear_filter_scan_triton")
