"""`torch.compile` of a NengoModule against the same module run eagerly.

The ff_mlp network with Nengo's defaults (784-256-256-10 LIF, the default
connection synapse, a 0.01 probe filter) runs windowed (`engine.window`): a
compiled module traces that path as one graph. For each batch size this
reports the compile time (the first compiled call, less an eager call's time,
with inductor's caches off: a cold compile)
and eager and compiled sample-steps per second, timed alternately in this one
process after warm-up, with their ratio (compiled / eager: above 1 means the
compiled module is faster). Each call starts from a reset, as ``predict`` does.

Inputs: ``varying`` is new random data at every step; ``held`` is one image
per sample for all steps, as an expanded tensor (stride 0 over time); ``copied``
the same, copied per step. Held data runs once per sample instead of once per
step; a graph cannot look at values, so compiled runs check copied data before
their graph (`engine.window.held_feeds`).

Run from the repository root (nengo reads ./nengorc there)::

    PYTHONPATH=. .venv/bin/python benchmarks/compile.py

Prints one line per case and a JSON line with all numbers. Compilation takes
tens of seconds per batch size on one core.
"""

import argparse
import json
import os
import pathlib
import sys
import time

ROOT = pathlib.Path(__file__).resolve().parent.parent


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=100, help="steps per call (default 100)")
    parser.add_argument("--batch", type=int, action="append",
                        help="batch size (repeatable; default 1 and 32)")
    parser.add_argument("--inputs", action="append",
                        choices=["varying", "held", "copied"],
                        help="input data (repeatable; default all three)")
    parser.add_argument("--reps", type=int, default=10,
                        help="timed rounds; the best of each is kept (default 5)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    args = parser.parse_args(argv)
    args.batch = args.batch or [1, 32]
    args.inputs = args.inputs or ["varying", "held", "copied"]
    return args


def timed(fn):
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def inputs(kind, batch, n_steps, size, seed=0):
    generator = torch.Generator().manual_seed(seed)
    if kind == "varying":
        return torch.rand(batch, n_steps, size, generator=generator)
    held = torch.rand(batch, 1, size, generator=generator).expand(batch, n_steps, size)
    return held if kind == "held" else held.contiguous()


def bench(net, probe, kind, batch, args):
    module = snntorch_nengo.NengoModule(net, minibatch_size=batch)
    x = inputs(kind, batch, args.steps, module.input_nodes[0].size_out)

    def call(fn):
        module.reset()
        return fn(x)[probe]

    with torch.no_grad():
        expected = call(module)
        eager_call = timed(lambda: call(module))
        module.reset()
        counters.clear()
        explained = torch._dynamo.explain(module)(x)
        breaks = sum(counters["graph_break"].values())
        torch._dynamo.reset()  # nothing of earlier traces is reused
        compiled = torch.compile(module)
        compile_s = timed(lambda: call(compiled)) - eager_call
        got = call(compiled)
        if module.explain().strategy != "windowed":
            raise RuntimeError(f"ran {module.explain().strategy}, not windowed")
        best = {"eager": float("inf"), "compiled": float("inf")}
        for _ in range(args.reps):
            for name, fn in (("eager", module), ("compiled", compiled)):
                call(fn)
                best[name] = min(best[name], timed(lambda: call(fn)))
    rate = {name: batch * args.steps / seconds for name, seconds in best.items()}
    return {
        "inputs": kind,
        "batch": batch,
        "steps": args.steps,
        "compile_s": round(compile_s, 1),
        "graphs": explained.graph_count,
        # every break, also the one with nothing before it (the held-data check)
        "graph_breaks": breaks,
        "equal": bool(torch.equal(expected, got)),
        "eager_steps_per_s": round(rate["eager"]),
        "compiled_steps_per_s": round(rate["compiled"]),
        "ratio": round(rate["compiled"] / rate["eager"], 2),
    }


def main(args):
    torch.set_num_threads(args.threads)
    # a cold compile each time: inductor's on-disk caches would serve the
    # later cases (and later runs of this script) from the earlier ones
    torch._inductor.config.force_disable_caches = True
    untraced_held_feeds()  # made once, not inside the first case's trace
    net, _, probe = networks.ff_mlp(nengo_defaults=True)
    rows = []
    for kind in args.inputs:
        for batch in args.batch:
            row = bench(net, probe, kind, batch, args)
            rows.append(row)
            print(
                f"ff_mlp (Nengo defaults) {kind} inputs, batch {batch}, {args.steps} steps: "
                f"compile {row['compile_s']} s, {row['graphs']} graph, "
                f"{row['graph_breaks']} graph breaks, "
                f"equal {row['equal']}; eager {row['eager_steps_per_s']} sample-steps/s, "
                f"compiled {row['compiled_steps_per_s']}: ratio {row['ratio']}",
                flush=True,
            )
    print(json.dumps({"torch": torch.__version__, "threads": args.threads, "rows": rows}))


if __name__ == "__main__":
    ARGS = parse_args()
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = str(ARGS.threads)

import torch  # noqa: E402
import torch._inductor.config  # noqa: E402
from torch._dynamo.utils import counters  # noqa: E402

if str(ROOT) not in sys.path:
    sys.path.append(str(ROOT))  # for `benchmarks`

import snntorch_nengo  # noqa: E402
from benchmarks import networks  # noqa: E402
from snntorch_nengo.engine.window import untraced_held_feeds  # noqa: E402

if __name__ == "__main__":
    main(ARGS)
