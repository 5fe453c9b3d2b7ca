#!/usr/bin/env python
"""GPU check of the fused multi-step neuron + lowpass kernels: correctness, then speed.

Run from the repository root on a machine with a CUDA GPU::

    python benchmarks/gpu_check.py

1. Correctness: every available implementation -- the Triton kernels
   (`snntorch_nengo.kernels.triton_kernels`), the custom ops
   (`snntorch_nengo.kernels.ops`, if it imports) and the C++ ops
   (``torch.ops.snntorch_nengo_cpp``, if they have a kernel for the device) --
   is compared with the pure-torch reference (`snntorch_nengo.kernels.reference`)
   run on the same device, for LIF, AdaptiveLIF and SpikingRectifiedLinear, in
   float32 and float64 (spike entries that differ, outputs that are bitwise
   equal, largest differences). Float64 Triton results are also compared with
   the reference run on the CPU (for information: the CUDA and CPU math
   libraries may round ``expm1``/``log1p`` differently).
2. Throughput for ``T = 1000`` and ``N`` in 1e4, 1e5, 1e6: time per call, achieved
   bytes/s (``J`` read, ``output`` and ``filtered_seq`` written, states read and
   written once) and its fraction of the GPU's peak memory bandwidth (from
   ``torch.cuda.get_device_properties`` when it reports the memory clock and bus
   width, else a table: H100 SXM 3.35 TB/s, H100 PCIe 2.0 TB/s, H200 4.8 TB/s),
   next to a plain device-to-device copy; a BLOCK-size sweep of the Triton LIF
   kernel; and the reference's own time, for the speed-up.

3. The linear filter scan of the synapses (``linear_filter_scan``, Lowpass,
   Alpha and a General filter with feedthrough): the Triton kernel against the
   reference on the same device (forward bitwise, the op's backward -- the
   adjoint scan through the same kernel -- against autograd through the
   reference), then its time per call, forward and forward + backward, next
   to the torch reference on the GPU and the C++ kernel on the CPU
   (``--scan-budget`` seconds at most).

The report (markdown) goes to ``$OUT/gpu_check.md`` (with the raw numbers in
``$OUT/gpu_check.json``) when ``OUT`` is set, else to stdout. The exit status is
0 when every correctness check passed (float64: identical spikes, states equal to
1e-12; float32: at most 0.1% of the neurons with a differing spike train, the
others' states equal to 1e-4), 1
otherwise. Without a GPU it prints a message and exits 0.

``--cpu-smoke`` runs the same script on the CPU at tiny sizes (Triton through its
interpreter, ``TRITON_INTERPRET=1``), to check the script itself.

The reference needs nengo; on a machine without it, carry its wheel.
"""

import argparse
import json
import os
import platform
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

KIND_NAMES = {
    "lif": "lif_lowpass",
    "alif": "adaptive_lif_lowpass",
    "relu": "spiking_relu_lowpass",
}
STATE_NAMES = {
    "lif": ("voltage", "refractory_time", "filtered"),
    "alif": ("voltage", "refractory_time", "adaptation", "filtered"),
    "relu": ("voltage", "filtered"),
}
DT = 0.001
PARAMS = {  # non-default parameters, in the reference's argument order
    "lif": (DT, 0.03, 0.0025, -0.4, 0.7, 0.9),  # tau_rc tau_ref min_v amp decay
    "alif": (DT, 0.03, 0.0025, -0.4, 0.7, 0.15, 0.2, 0.9),  # ... tau_n inc_n decay
    "relu": (DT, 0.8, 0.85),  # amplitude decay
}
PEAK_TABLE = [  # (name contains, bytes/s): used when the properties lack clocks
    ("H200", 4.8e12),
    ("H100 PCIE", 2.0e12),
    ("H100", 3.35e12),
]


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--cpu-smoke",
        action="store_true",
        help="tiny sizes on the CPU (Triton interpreter), to test this script",
    )
    p.add_argument("--reps", type=int, default=5, help="timed calls per case")
    p.add_argument(
        "--no-timing", action="store_true", help="correctness checks only"
    )
    p.add_argument(
        "--time-budget", type=float, default=240.0,
        help="seconds the timing part may take; later cases are skipped",
    )
    p.add_argument(
        "--scan-budget", type=float, default=45.0,
        help="seconds the scan's timing may take; later cases are skipped",
    )
    return p.parse_args(argv)


# --------------------------------------------------------------------------
# inputs and implementations
# --------------------------------------------------------------------------


def make_inputs(torch, kind, T, N, dtype, device, seed=0):
    """Random currents with near-threshold, exactly-1 and negative columns.

    Drawn on ``device`` in ``dtype``: drawing a [1000, 1e6] float64 tensor on the
    CPU and copying it over would take longer than the kernels being timed.
    """
    g = torch.Generator(device=device).manual_seed(seed)

    def rand(*shape):
        return torch.rand(*shape, generator=g, dtype=dtype, device=device)

    J = torch.randn(T, N, generator=g, dtype=dtype, device=device) * 3.0 + 3.0
    k = N // 6
    if k >= 3:
        J[:, :k] = 1.0 + (rand(T, k) - 0.5) * 2e-3
        J[:, k : k + 2] = 1.0
        J[:, k + 2 : 2 * k] = -5.0 * rand(T, k - 2)
    if kind == "relu":
        J = J * 900.0
    voltage = rand(N)
    refractory = rand(N) * 0.004
    adaptation = rand(N) * 0.5
    filtered = torch.randn(N, generator=g, dtype=dtype, device=device)
    states = {
        "lif": (voltage, refractory, filtered),
        "alif": (voltage, refractory, adaptation, filtered),
        "relu": (voltage, filtered),
    }[kind]
    return J, states


def find_impls(torch, device, notes):
    """{impl name: {kind: fn}} of the implementations that run on ``device``."""
    from snntorch_nengo.kernels import triton_kernels as tk

    candidates = {}
    if tk.available:
        candidates["triton"] = {
            "lif": tk.lif_lowpass_triton,
            "alif": tk.adaptive_lif_lowpass_triton,
            "relu": tk.spiking_relu_lowpass_triton,
        }
    else:
        notes.append("triton is not installed: no Triton kernels")

    try:
        from snntorch_nengo.kernels import ops
    except Exception as e:  # not written yet, or broken
        notes.append(f"snntorch_nengo.kernels.ops not importable: {e!r}")
        ops = None
    if ops is not None:
        fns = {k: getattr(ops, name, None) for k, name in KIND_NAMES.items()}
        if not all(callable(f) for f in fns.values()):
            # fall back to the registered custom ops (any namespace but the C++ one)
            try:
                names = torch._C._dispatch_get_all_op_names()
            except Exception:
                names = []
            for k, name in KIND_NAMES.items():
                if callable(fns[k]):
                    continue
                for full in names:
                    ns, _, op = full.partition("::")
                    if op == name and ns != "snntorch_nengo_cpp":
                        fns[k] = getattr(getattr(torch.ops, ns), op)
                        break
        found = {k: f for k, f in fns.items() if callable(f)}
        if found:
            candidates["ops"] = found
        else:
            notes.append("snntorch_nengo.kernels.ops: no lif_lowpass & co. found")

    try:
        import snntorch_nengo._C  # noqa: F401  (registers torch.ops.snntorch_nengo_cpp)
    except Exception as e:
        notes.append(f"C++ extension snntorch_nengo._C not importable: {e!r}")
    try:
        cpp = torch.ops.snntorch_nengo_cpp
        candidates["cpp"] = {k: getattr(cpp, name) for k, name in KIND_NAMES.items()}
    except (AttributeError, RuntimeError):
        pass

    impls = {}
    for impl, fns in candidates.items():
        for kind, fn in fns.items():
            J, states = make_inputs(torch, kind, 2, 5, torch.float32, device)
            try:
                fn(J, *states, *PARAMS[kind])
            except Exception as e:
                notes.append(f"{impl} {kind} does not run on {device}: {_short(e)}")
                continue
            impls.setdefault(impl, {})[kind] = fn
    return impls


def log(*args):
    print(time.strftime("%H:%M:%S"), *args, flush=True)


def _short(e):
    text = f"{type(e).__name__}: {e}"
    return text.splitlines()[0][:200]


def _sync(torch, device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


# --------------------------------------------------------------------------
# correctness
# --------------------------------------------------------------------------


def compare(torch, kind, dtype, expected, actual):
    names = ("output", "filtered_seq") + STATE_NAMES[kind]
    actual = [a.to(e.device) for e, a in zip(expected, actual)]
    out_e, out_a = expected[0], actual[0]
    spikes_differ = int((out_e != out_a).sum())
    neurons_differ = (out_e != out_a).any(dim=0)
    bitwise = [n for n, e, a in zip(names, expected, actual) if torch.equal(e, a)]
    maxdiff = {
        n: float((e - a).abs().max()) if e.numel() else 0.0
        for n, e, a in zip(names, expected, actual)
    }
    if dtype == torch.float64:
        ok = spikes_differ == 0 and all(
            torch.allclose(a, e, rtol=1e-12, atol=1e-13)
            for e, a in zip(expected[1:], actual[1:])
        )
    else:
        same = ~neurons_differ
        ok = float(neurons_differ.float().mean()) <= 1e-3 and all(
            torch.allclose(
                a[..., same] if a.dim() == 2 else a[same],
                e[..., same] if e.dim() == 2 else e[same],
                # near-threshold neurons are ill-conditioned in float32 (J - 1
                # keeps ~4 digits): an ulp anywhere moves their voltage ~1e-4
                rtol=1e-4,
                atol=1e-4,
            )
            for e, a in zip(expected[1:], actual[1:])
        )
    return {
        "spike_entries_differ": spikes_differ,
        "neurons_differ": int(neurons_differ.sum()),
        "bitwise_equal": bitwise,
        "all_bitwise": len(bitwise) == len(names),
        "max_abs_diff": maxdiff,
        "ok": bool(ok),
    }


def run_correctness(torch, reference, impls, device, T, N):
    rows = []
    cpu_rows = []
    for kind in ("lif", "alif", "relu"):
        ref_fn = getattr(reference, KIND_NAMES[kind])
        for dtype in (torch.float32, torch.float64):
            J, states = make_inputs(torch, kind, T, N, dtype, device)
            with torch.no_grad():
                expected = ref_fn(J, *states, *PARAMS[kind])
            expected_cpu = None
            for impl, fns in impls.items():
                if kind not in fns:
                    continue
                row = {"impl": impl, "kind": kind, "dtype": str(dtype)[6:], "T": T, "N": N}
                try:
                    with torch.no_grad():
                        actual = fns[kind](J, *states, *PARAMS[kind])
                    _sync(torch, device)
                    row.update(compare(torch, kind, dtype, expected, actual))
                except Exception as e:
                    row.update(ok=False, error=_short(e))
                    rows.append(row)
                    continue
                rows.append(row)
                if impl == "triton" and dtype == torch.float64 and device.type == "cuda":
                    if expected_cpu is None:
                        with torch.no_grad():
                            expected_cpu = ref_fn(
                                J.cpu(), *(s.cpu() for s in states), *PARAMS[kind]
                            )
                    c = compare(torch, kind, dtype, expected_cpu, actual)
                    c.update(impl=impl, kind=kind, dtype="float64", T=T, N=N)
                    cpu_rows.append(c)
                del actual
            del J, states, expected
    return rows, cpu_rows


# --------------------------------------------------------------------------
# timing
# --------------------------------------------------------------------------


def peak_bandwidth(torch, device):
    """(bytes/s, how it was found) or (None, reason)."""
    if device.type != "cuda":
        return None, "n/a (CPU)"
    props = torch.cuda.get_device_properties(device)
    clock_khz = getattr(props, "memory_clock_rate", 0) or 0
    bus_bits = getattr(props, "memory_bus_width", 0) or 0
    if clock_khz and bus_bits:
        # double data rate: two transfers per memory clock
        return 2.0 * clock_khz * 1e3 * bus_bits / 8, (
            f"device properties: {clock_khz / 1e6:.3f} GHz x {bus_bits}-bit bus x 2"
        )
    name = props.name.upper()
    for key, bw in PEAK_TABLE:
        if key in name:
            return bw, f"table entry for '{key}'"
    return None, f"unknown ({props.name}: no memory clock in its properties)"


def time_call(torch, device, fn, reps):
    """Median seconds of ``fn()`` over ``reps`` calls, after one warm-up call."""
    fn()
    _sync(torch, device)
    times = []
    for _ in range(reps):
        if device.type == "cuda":
            start = torch.cuda.Event(enable_timing=True)
            end = torch.cuda.Event(enable_timing=True)
            start.record()
            fn()
            end.record()
            end.synchronize()
            times.append(start.elapsed_time(end) / 1e3)
        else:
            t0 = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t0)
    times.sort()
    return times[len(times) // 2]


def traffic_bytes(kind, T, N, itemsize):
    n_states = len(STATE_NAMES[kind])
    # J read, output and filtered_seq written; every state read and written once
    return itemsize * (3 * T * N + 2 * n_states * N)


def run_timing(torch, reference, impls, device, T, sizes, reps, peak,
               blocks=(64, 128, 256, 512, 1024), deadline=None):
    from snntorch_nengo.kernels import triton_kernels as tk

    def record(rows, impl, kind, dtype, N, seconds, block=None):
        nbytes = traffic_bytes(kind, T, N, torch.empty((), dtype=dtype).element_size())
        rows.append({
            "impl": impl,
            "kind": kind,
            "dtype": str(dtype)[6:],
            "T": T,
            "N": N,
            "block": block,
            "ms": seconds * 1e3,
            "bytes": nbytes,
            "GB_per_s": nbytes / seconds / 1e9,
            "frac_peak": (nbytes / seconds / peak) if peak else None,
            "neuron_steps_per_s": T * N / seconds,
        })

    rows, sweep, ref_rows, copy_rows = [], [], [], []
    private = {"lif": tk._lif_lowpass, "alif": tk._adaptive_lif_lowpass,
               "relu": tk._spiking_relu_lowpass}
    for dtype in (torch.float32, torch.float64):
        for N in sizes:
            # a plain device copy of J-sized data: the achievable bandwidth
            src = torch.empty(T, N, dtype=dtype, device=device).uniform_()
            dst = torch.empty_like(src)
            s = time_call(torch, device, lambda: dst.copy_(src), reps)
            nbytes = 2 * src.numel() * src.element_size()
            copy_rows.append({
                "dtype": str(dtype)[6:], "N": N, "ms": s * 1e3,
                "GB_per_s": nbytes / s / 1e9,
                "frac_peak": (nbytes / s / peak) if peak else None,
            })
            src = dst = None  # free before the kernels run
            for kind in ("lif", "alif", "relu"):
                if deadline is not None and time.time() > deadline:
                    rows.append({"impl": "-", "kind": kind, "dtype": str(dtype)[6:],
                                 "N": N, "error": "skipped (--time-budget)"})
                    continue
                log(f"timing {kind} {str(dtype)[6:]} N={N}")
                J, states = make_inputs(torch, kind, T, N, dtype, device, seed=5)
                args = PARAMS[kind]
                for impl, fns in impls.items():
                    if kind not in fns:
                        continue
                    fn = fns[kind]
                    try:
                        s = time_call(
                            torch, device, lambda: fn(J, *states, *args), reps
                        )
                    except Exception as e:
                        rows.append({"impl": impl, "kind": kind,
                                     "dtype": str(dtype)[6:], "N": N,
                                     "error": _short(e)})
                        continue
                    block = (
                        tk._default_block(N, device.type != "cuda")
                        if impl == "triton" else None
                    )
                    record(rows, impl, kind, dtype, N, s, block)
                if "triton" in impls and kind == "lif":
                    for block in blocks:
                        s = time_call(
                            torch, device,
                            lambda: private[kind](J, *states, *args, block=block),
                            reps,
                        )
                        record(sweep, "triton", kind, dtype, N, s, block)
                if kind == "lif" and dtype == torch.float32:
                    ref_fn = getattr(reference, KIND_NAMES[kind])
                    with torch.no_grad():
                        s = time_call(
                            torch, device, lambda: ref_fn(J, *states, *args), 1
                        )
                    record(ref_rows, "reference", kind, dtype, N, s)
                J = states = None  # free before the next size
                if device.type == "cuda":
                    torch.cuda.empty_cache()
    return rows, sweep, ref_rows, copy_rows


# --------------------------------------------------------------------------
# linear filter scan (synapses)
# --------------------------------------------------------------------------


def scan_forms():
    """{name: ScanForm} of the synapses timed: OneX, NoD and General steps."""
    import nengo

    from snntorch_nengo.synapses import linear_filter_scan_form

    synapses = {
        "lowpass": nengo.Lowpass(0.005),
        "alpha": nengo.Alpha(0.004),
        "general": nengo.LinearFilter([0.4, 1], [0.003, 1]),
    }
    return {k: linear_filter_scan_form(v, DT) for k, v in synapses.items()}


def _scan_inputs(torch, S, T, N, dtype, device, seed=0):
    g = torch.Generator(device=device).manual_seed(seed)
    u = torch.randn(T, N, generator=g, dtype=dtype, device=device)
    x0 = torch.randn(S, N, generator=g, dtype=dtype, device=device)
    return u, x0


def run_scan_correctness(torch, device, T, N):
    """The Triton scan against the reference on ``device``: forward, and the
    op's gradients against autograd through the reference."""
    from snntorch_nengo.kernels import ops, reference, triton_kernels as tk

    rows = []
    for name, form in scan_forms().items():
        for dtype in (torch.float32, torch.float64):
            row = {"synapse": name, "dtype": str(dtype)[6:], "T": T, "N": N,
                   "backend": ops.scan_backend(torch.empty(0, dtype=dtype, device=device),
                                               form.n_states)}
            try:
                u, x0 = _scan_inputs(torch, form.n_states, T, N, dtype, device)
                with torch.no_grad():
                    want = reference.linear_filter_scan(u, x0, *form)
                    got = tk.linear_filter_scan_triton(u, x0, *form)
                row["forward_bitwise"] = all(torch.equal(a, b) for a, b in zip(got, want))
                row["forward_max_diff"] = max(float((a - b).abs().max())
                                              for a, b in zip(got, want))
                leaves = [u.requires_grad_(True), x0.requires_grad_(True)]
                y, x = ops.linear_filter_scan(*leaves, *form)
                gy, gx = torch.randn_like(y), torch.randn_like(x)
                got_g = torch.autograd.grad([y, x], leaves, [gy, gx])
                with torch.enable_grad():
                    wy, wx = reference.linear_filter_scan(*leaves, *form)
                want_g = torch.autograd.grad([wy, wx], leaves, [gy, gx])
                row["grad_max_rel_diff"] = max(
                    float((a - b).abs().max() / b.abs().max().clamp_min(1e-30))
                    for a, b in zip(got_g, want_g)
                )
                tol = 1e-10 if dtype == torch.float64 else 1e-4
                row["ok"] = bool(row["forward_max_diff"] <= tol * max(
                    1.0, float(want[0].abs().max())) and row["grad_max_rel_diff"] <= tol)
            except Exception as e:
                row.update(ok=False, error=_short(e))
            rows.append(row)
    return rows


def run_scan_timing(torch, device, T, sizes, reps, peak, deadline, cpu_max_n):
    """ms per call of the Triton scan (forward; forward + backward through the
    op), the torch reference on ``device`` and the C++ kernel on the CPU."""
    from snntorch_nengo.kernels import cpp, ops, reference, triton_kernels as tk

    rows = []
    for dtype in (torch.float32, torch.float64):
        for N in sizes:
            for name, form in scan_forms().items():
                if name == "general":
                    continue  # (the same work as alpha's, a step earlier)
                base = {"synapse": name, "dtype": str(dtype)[6:], "T": T, "N": N}
                if time.time() > deadline:
                    rows.append(dict(base, impl="-", error="skipped (--scan-budget)"))
                    continue
                log(f"timing scan {name} {str(dtype)[6:]} N={N}")
                S = form.n_states
                u, x0 = _scan_inputs(torch, S, T, N, dtype, device, seed=7)
                nbytes = u.element_size() * (2 * T * N + 2 * S * N)

                def record(impl, seconds, traffic=nbytes):
                    rows.append(dict(
                        base, impl=impl, ms=seconds * 1e3, GB_per_s=traffic / seconds / 1e9,
                        frac_peak=(traffic / seconds / peak) if peak else None))

                def forward_backward():
                    leaves = [u.detach().requires_grad_(True), x0.detach().requires_grad_(True)]
                    y, x = ops.linear_filter_scan(*leaves, *form)
                    torch.autograd.grad([y, x], leaves, [y, x])

                op = f"op fwd+bwd ({ops.scan_backend(u, S)})"
                cases = [("triton", lambda: tk.linear_filter_scan_triton(u, x0, *form), reps),
                         # the backward reads and writes as much again
                         (op, forward_backward, reps)]
                if device.type == "cuda" or N <= cpu_max_n:
                    cases.append(("torch reference",
                                  lambda: reference.linear_filter_scan(u, x0, *form), 1))
                for impl, fn, n in cases:
                    try:
                        with torch.no_grad() if impl != op else _nullcontext():
                            s = time_call(torch, device, fn, n)
                    except Exception as e:
                        rows.append(dict(base, impl=impl, error=_short(e)))
                        continue
                    record(impl, s, nbytes * (2 if impl == op else 1))
                if cpp.HAS_SCAN and N <= cpu_max_n:
                    uc, xc = u.cpu(), x0.cpu()
                    cpu = torch.device("cpu")
                    s = time_call(torch, cpu, lambda: cpp.linear_filter_scan(uc, xc, *form),
                                  reps)
                    rows.append(dict(base, impl=f"C++ (CPU, {torch.get_num_threads()} "
                                     "threads)", ms=s * 1e3,
                                     GB_per_s=nbytes / s / 1e9, frac_peak=None))
                    del uc, xc
                del u, x0
                if device.type == "cuda":
                    torch.cuda.empty_cache()
    return rows


def _nullcontext():
    import contextlib

    return contextlib.nullcontext()


def scan_markdown(corr, timing):
    lines = ["", "## Linear filter scan (synapses): Triton against the reference", "",
             "| synapse | dtype | T | N | op backend | forward bitwise | forward max diff "
             "| gradient max rel. diff | ok |", "|---|---|---|---|---|---|---|---|---|"]
    for r in corr:
        if "error" in r:
            lines.append(f"| {r['synapse']} | {r['dtype']} | {r['T']} | {r['N']} | "
                         f"{r.get('backend', '-')} | error: {r['error']} | | | **FAIL** |")
            continue
        lines.append(
            f"| {r['synapse']} | {r['dtype']} | {r['T']} | {r['N']} | {r['backend']} "
            f"| {'yes' if r['forward_bitwise'] else 'no'} | {r['forward_max_diff']:.3g} "
            f"| {r['grad_max_rel_diff']:.3g} | {'ok' if r['ok'] else '**FAIL**'} |")
    if timing:
        lines += ["", f"### Scan time per call (T={timing[0]['T']}; bytes = u read + y "
                  "written + states, twice for fwd+bwd)", "",
                  "| synapse | dtype | N | impl | ms/call | GB/s | of peak |",
                  "|---|---|---|---|---|---|---|"]
        for r in timing:
            if "error" in r:
                lines.append(f"| {r['synapse']} | {r['dtype']} | {r['N']:.0e} | {r['impl']} "
                             f"| error: {r['error']} | | |")
                continue
            lines.append(f"| {r['synapse']} | {r['dtype']} | {r['N']:.0e} | {r['impl']} "
                         f"| {r['ms']:.3f} | {r['GB_per_s']:.4g} | {_pct(r['frac_peak'])} |")
    return lines


# --------------------------------------------------------------------------
# report
# --------------------------------------------------------------------------


def _pct(frac):
    return "-" if frac is None else f"{100 * frac:.1f}%"


def markdown(info, corr, corr_cpu, timing, scan=None):
    lines = ["# gpu_check: fused neuron + lowpass kernels", ""]
    for k, v in info.items():
        lines.append(f"- {k}: {v}")
    lines += ["", f"## Correctness against the reference on the same device "
              f"(T={corr[0]['T'] if corr else '-'}, N={corr[0]['N'] if corr else '-'})", "",
              "| impl | kind | dtype | spike entries differing | neurons differing "
              "| bitwise-equal outputs | largest abs. difference | ok |",
              "|---|---|---|---|---|---|---|---|"]
    for r in corr:
        if "error" in r:
            lines.append(f"| {r['impl']} | {r['kind']} | {r['dtype']} | error: "
                         f"{r['error']} | | | | **FAIL** |")
            continue
        bit = "all" if r["all_bitwise"] else (", ".join(r["bitwise_equal"]) or "none")
        worst = max(r["max_abs_diff"].items(), key=lambda kv: kv[1])
        lines.append(
            f"| {r['impl']} | {r['kind']} | {r['dtype']} | {r['spike_entries_differ']} "
            f"| {r['neurons_differ']} | {bit} | {worst[1]:.3g} ({worst[0]}) "
            f"| {'ok' if r['ok'] else '**FAIL**'} |"
        )
    if corr_cpu:
        lines += ["", "### Float64 Triton (GPU) against the reference on the CPU "
                  "(information: CPU and CUDA math libraries may differ by an ulp)", "",
                  "| kind | spike entries differing | bitwise-equal outputs "
                  "| largest abs. difference |", "|---|---|---|---|"]
        for r in corr_cpu:
            bit = "all" if r["all_bitwise"] else (", ".join(r["bitwise_equal"]) or "none")
            worst = max(r["max_abs_diff"].items(), key=lambda kv: kv[1])
            lines.append(f"| {r['kind']} | {r['spike_entries_differ']} | {bit} "
                         f"| {worst[1]:.3g} ({worst[0]}) |")
    if timing is not None:
        rows, sweep, ref_rows, copy_rows = timing
        T = rows[0]["T"] if rows else "-"
        lines += ["", f"## Throughput (T={T}; bytes = J read + output and "
                  "filtered_seq written + states read and written)", "",
                  "| impl | kind | dtype | N | BLOCK | ms/call | GB/s | of peak "
                  "| neuron-steps/s |", "|---|---|---|---|---|---|---|---|---|"]
        for r in rows:
            if "error" in r:
                lines.append(f"| {r['impl']} | {r['kind']} | {r['dtype']} | {r['N']} "
                             f"| error: {r['error']} | | | | |")
                continue
            lines.append(
                f"| {r['impl']} | {r['kind']} | {r['dtype']} | {r['N']:.0e} "
                f"| {r['block'] or '-'} | {r['ms']:.3f} | {r['GB_per_s']:.4g} "
                f"| {_pct(r['frac_peak'])} "
                f"| {r['neuron_steps_per_s']:.3g} |"
            )
        lines += ["", "### Device-to-device copy of a [T, N] tensor (read + write)", "",
                  "| dtype | N | ms | GB/s | of peak |", "|---|---|---|---|---|"]
        for r in copy_rows:
            lines.append(f"| {r['dtype']} | {r['N']:.0e} | {r['ms']:.3f} "
                         f"| {r['GB_per_s']:.4g} "
                         f"| {_pct(r['frac_peak'])} |")
        if sweep:
            lines += ["", "### Triton LIF: BLOCK sweep", "",
                      "| dtype | N | BLOCK | ms/call | GB/s | of peak |",
                      "|---|---|---|---|---|---|"]
            for r in sweep:
                lines.append(f"| {r['dtype']} | {r['N']:.0e} | {r['block']} "
                             f"| {r['ms']:.3f} | {r['GB_per_s']:.4g} "
                             f"| {_pct(r['frac_peak'])} |")
        if ref_rows:
            best = {}
            for r in rows:
                if r.get("kind") == "lif" and r.get("dtype") == "float32" and "ms" in r:
                    best[(r["impl"], r["N"])] = r["ms"]
            lines += ["", "### Pure-torch reference (LIF, float32, one call)", "",
                      "| N | ms/call | speed-up of each impl |", "|---|---|---|"]
            for r in ref_rows:
                ups = ", ".join(
                    f"{impl} x{r['ms'] / ms:.3g}"
                    for (impl, n), ms in sorted(best.items()) if n == r["N"]
                )
                lines.append(f"| {r['N']:.0e} | {r['ms']:.1f} | {ups or '-'} |")
    if scan is not None:
        lines += scan_markdown(*scan)
    return "\n".join(lines) + "\n"


def write_report(info, corr, corr_cpu, timing, raw_timing, scan=None):
    """The markdown report, also written to $OUT when it is set."""
    report = markdown(info, corr, corr_cpu, timing, scan)
    out_dir = os.environ.get("OUT")
    if out_dir:
        os.makedirs(out_dir, exist_ok=True)
        with open(os.path.join(out_dir, "gpu_check.md"), "w") as f:
            f.write(report)
        with open(os.path.join(out_dir, "gpu_check.json"), "w") as f:
            json.dump({"info": info, "correctness": corr, "correctness_vs_cpu": corr_cpu,
                       "timing": dict(zip(("rows", "block_sweep", "reference", "copy"),
                                          raw_timing)) if raw_timing else None,
                       "scan": dict(zip(("correctness", "timing"), scan)) if scan else None},
                      f, indent=1, default=str)
        log(f"wrote {os.path.join(out_dir, 'gpu_check.md')}")
    return report


def main(argv=None):
    args = parse_args(argv)
    if args.cpu_smoke:
        os.environ.setdefault("TRITON_INTERPRET", "1")  # before triton is imported

    import torch

    if not args.cpu_smoke and not torch.cuda.is_available():
        print("gpu_check: no CUDA GPU here, nothing to check "
              "(--cpu-smoke runs a tiny CPU version of this script)")
        return 0

    if ROOT not in sys.path:
        sys.path.insert(0, ROOT)
    try:
        from snntorch_nengo.kernels import reference
    except ImportError as e:
        print(f"gpu_check: cannot import the reference ({e!r}); "
              "snntorch_nengo needs nengo (carry its wheel)", file=sys.stderr)
        return 2

    t_start = time.time()
    if args.cpu_smoke:
        device = torch.device("cpu")
        corr_T, corr_N, T, sizes = 20, 37, 5, [100, 1000]
    else:
        device = torch.device("cuda", torch.cuda.current_device())
        corr_T, corr_N, T, sizes = 300, 20011, 1000, [10_000, 100_000, 1_000_000]

    notes = []
    impls = find_impls(torch, device, notes)
    peak, peak_src = peak_bandwidth(torch, device)
    try:
        import triton

        triton_version = triton.__version__
    except ImportError:
        triton_version = "not installed"
    info = {
        "device": (torch.cuda.get_device_name(device) if device.type == "cuda"
                   else f"CPU ({platform.processor() or platform.machine()}), "
                   "Triton interpreter"),
        "torch": torch.__version__,
        "triton": triton_version,
        "peak memory bandwidth": (f"{peak / 1e12:.2f} TB/s ({peak_src})" if peak
                                  else peak_src),
        "implementations": ", ".join(
            f"{k} ({'/'.join(sorted(v))})" for k, v in impls.items()) or "none",
    }
    for n in notes:
        print("note:", n)

    corr, corr_cpu = run_correctness(torch, reference, impls, device, corr_T, corr_N)
    ok = bool(corr) and all(r["ok"] for r in corr)
    log(f"correctness: {'PASS' if ok else 'FAIL'} "
        f"({sum(r['ok'] for r in corr)}/{len(corr)} cases)")
    for r in corr + corr_cpu:
        if not r.get("ok", True) or r in corr_cpu:
            log("  ", {k: v for k, v in r.items() if k not in ("T", "N")})
    info["result"] = "PASS" if ok else "FAIL"
    write_report(info, corr, corr_cpu, None, None)  # kept if timing is cut short

    timing = None
    if not args.no_timing:
        if args.cpu_smoke:  # the interpreter is slow: one call, two blocks
            timing = run_timing(torch, reference, impls, device, T, sizes, 1, peak,
                                blocks=(256, 1024))
        else:
            timing = run_timing(torch, reference, impls, device, T, sizes,
                                args.reps, peak,
                                deadline=time.time() + args.time_budget)
    if timing is not None:  # kept if the scan's part is cut short
        write_report(info, corr, corr_cpu, timing, timing)
    scan_corr = run_scan_correctness(torch, device, corr_T, corr_N)
    scan_ok = bool(scan_corr) and all(r["ok"] for r in scan_corr)
    log(f"scan correctness: {'PASS' if scan_ok else 'FAIL'}")
    for r in scan_corr:
        if not r["ok"]:
            log("  ", r)
    ok = ok and scan_ok
    scan_timing = None
    if not args.no_timing:
        scan_timing = run_scan_timing(
            torch, device, T, sizes, 1 if args.cpu_smoke else args.reps, peak,
            deadline=time.time() + args.scan_budget,
            cpu_max_n=sizes[-1] if args.cpu_smoke else 100_000,
        )
    info["result"] = "PASS" if ok else "FAIL"
    info["wall time"] = f"{time.time() - t_start:.0f} s"
    if notes:
        info["notes"] = "; ".join(notes)

    report = write_report(info, corr, corr_cpu, timing, timing, (scan_corr, scan_timing))
    print(report)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
