#!/usr/bin/env python
"""On a GPU: stepping in place (engine/program.py) against functional stepping.

Times the stepped benchmark networks at batch 1 and 64 on CUDA with the
in-place path allowed there and without it, and checks that both give the same
probe data. Run from the repository root (part of benchmarks/gpu_run.sh).
"""

import os
import sys
import time

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import networks  # noqa: E402

import snntorch_nengo  # noqa: E402
from snntorch_nengo.engine.strategies import in_place  # noqa: E402


def rate(net, probe, batch, in_place, steps):
    in_place.DEVICES = ("cpu", "cuda") if in_place else ("cpu",)
    with snntorch_nengo.Simulator(net, progress_bar=False, device="cuda",
                                  minibatch_size=batch) as sim:
        sim.run_steps(20)  # warm-up
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        sim.run_steps(steps)
        torch.cuda.synchronize()
        elapsed = time.perf_counter() - t0
        return batch * steps / elapsed, sim.data[probe]


def main():
    if not torch.cuda.is_available():
        print("no CUDA device")
        return 0
    ok, default = True, in_place.DEVICES
    print("| case | batch | functional steps/s | in place steps/s | ratio | max diff |")
    print("|---|---:|---:|---:|---:|---:|")
    for name in ("integrator", "cconv", "random"):
        net, _, probe = getattr(networks, name)()
        steps = 100 if name == "random" else 300
        for batch in (1, 64):
            r0, d0 = rate(net, probe, batch, False, steps)
            r1, d1 = rate(net, probe, batch, True, steps)
            diff = float(np.max(np.abs(d0 - d1)))
            ok &= diff < 1e-3
            print(f"| {name} | {batch} | {r0:,.0f} | {r1:,.0f} | {r1 / r0:.2f} | {diff:.2g} |",
                  flush=True)
    in_place.DEVICES = default
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
