"""CPU seconds of fixed work under whichever snntorch_nengo this Python imports.

For comparing installs of the same code (the Makefile's, plain ``pip install
-e .``, a just-in-time kernel build, no C++ kernels) on a shared machine:
process time, unlike the wall time of `benchmarks/run.py`, hardly depends on
what other processes run. Prints one JSON line: where the C++ kernels came
from and the least CPU seconds of several runs of each piece of work::

    OMP_NUM_THREADS=1 /path/to/venv/bin/python benchmarks/cpu_seconds.py

Run it from the repository root (nengo reads ./nengorc there); the
`benchmarks` package is found from this file's folder, the package itself from
the interpreter's environment (its install).
"""

import json
import pathlib
import sys
import time

sys.path.append(str(pathlib.Path(__file__).resolve().parent.parent))  # for `benchmarks`

import torch  # noqa: E402

import snntorch_nengo  # noqa: E402
from benchmarks import networks  # noqa: E402
from snntorch_nengo.kernels import cpp, ops  # noqa: E402


def least_cpu_seconds(fn, reps=5):
    fn()  # warm-up
    times = []
    for _ in range(reps):
        start = time.process_time()
        fn()
        times.append(time.process_time() - start)
    return min(times)


def main():
    torch.set_num_threads(1)
    out = {"cpp": cpp.SOURCE, "path": cpp.PATH, "package": str(pathlib.Path(
        snntorch_nengo.__file__).parent)}
    for name in ("ff_mlp", "spiking_classifier"):
        net = getattr(networks, name)()[0]
        with snntorch_nengo.Simulator(net, progress_bar=False, dtype=torch.float32) as sim:
            out[f"{name}_batch1_1000_steps"] = least_cpu_seconds(lambda: sim.run_steps(1000))
    J = torch.rand(200, 4096) * 3
    states = [torch.zeros(4096) for _ in range(3)]
    out["lif_lowpass_200x4096"] = least_cpu_seconds(
        lambda: ops.lif_lowpass(J, *states, 0.001, 0.02, 0.002, 0.0, 1.0, 0.9), reps=20)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
