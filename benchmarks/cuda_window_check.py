#!/usr/bin/env python
"""On a GPU: windowed runs (engine/window.py) against stepping, and torch_compile=True.

Prints the largest differences; exits 1 if spikes or outputs disagree beyond
float64 rounding. Run from the repository root (part of benchmarks/gpu_run.sh).
"""

import os
import sys

import nengo
import numpy as np
import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests"))
from test_window import SPIKING, feed_forward, run  # noqa: E402

import snntorch_nengo  # noqa: E402


def main():
    if not torch.cuda.is_available():
        print("no CUDA device")
        return 0
    ok = True
    for neuron_type in SPIKING + [nengo.RectifiedLinear()]:
        stepped, _ = run(feed_forward(neuron_type), False, device="cuda")
        windowed, plan = run(feed_forward(neuron_type), True, device="cuda")
        cpu, _ = run(feed_forward(neuron_type), True)
        worst = max(float(np.max(np.abs(stepped[k] - windowed[k]))) for k in stepped)
        worst_cpu = max(float(np.max(np.abs(cpu[k] - windowed[k]))) for k in cpu)
        good = plan.eligible and worst < 1e-9 and worst_cpu < 1e-9
        ok &= good
        print(f"{neuron_type!r}: windowed vs stepped (cuda, float64) {worst:.3g}; "
              f"vs cpu {worst_cpu:.3g} {'ok' if good else 'FAIL'}")
    with nengo.Network(seed=4) as net:
        stim = nengo.Node([0.7])
        a = nengo.Ensemble(50, 1, neuron_type=nengo.LIF())
        nengo.Connection(stim, a)
        nengo.Connection(a, a, synapse=0.05)
        p = nengo.Probe(a, synapse=0.01)
    out = []
    for compile in (False, True):
        with snntorch_nengo.Simulator(net, progress_bar=False, device="cuda",
                                      torch_compile=compile) as sim:
            sim.run_steps(100)
            out.append(sim.data[p])
    worst = float(np.max(np.abs(out[0] - out[1])))
    ok &= worst < 1e-9
    print(f"torch_compile=True (CUDA graph) vs eager, recurrent LIF: {worst:.3g}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
