"""A seeded generator of random Nengo networks, and their comparison with nengo.

`random_network(seed)` builds the same network for the same seed from Nengo's
public API only, over the neuron types, synapses, transforms, learning rules,
processes and probe attributes nengo has. `compare(seed, ...)` runs it in
``nengo.Simulator`` and in ours (at batch 1, or in a batch where every row
must equal the reference when nothing in the network draws random numbers
while it runs) under one run strategy, and returns the disagreements.

``tests/test_fuzz.py`` runs a fixed set of seeds; the long run is
``PYTHONPATH=. python tests/fuzz.py --seeds 200:2200 --rotate`` from the
repository root (docs/robustness.md has its last result).
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import time
from dataclasses import dataclass, field

import nengo
import numpy as np
from nengo.builder.optimizer import OpMergePass
from nengo.utils.stdlib import OrderedSet

# How far our float64 results may be from the reference's. Both compute the
# same float64 operations, but merged and lowered operators sum products in
# another order (BLAS blocks, a merged DotInc's one product instead of several),
# which moves results by a few ulps; a spiking neuron whose voltage lands
# within those ulps of its threshold would spike one step apart.
RTOL, ATOL = 1e-7, 1e-9
# Some dynamics amplify those ulps: Izhikevich's quadratic voltage grows a
# 1e-16 difference in its input to 1e-2 within a hundred steps while every
# spike stays the same. A probe of a neuron's voltage or recovery (never an
# output: a spike that moves fails) passes when it is within
# ROUNDING_FACTOR times what the reference itself moves by when every
# neuron's input is nudged, up and down, by one ulp of its largest input current
# (`_reference_run`): the reference's own rounding, measured, not
# assumed.
ROUNDING_FACTOR = 10.0

STRATEGIES = {
    # settings for `configure_settings`, by the name of the strategy they leave
    "default": {},
    "in_place": {"windowed": False},
    "functional": {"windowed": False, "in_place": False},
}

_RATE_TYPES = [
    lambda r: nengo.LIFRate(tau_rc=r.uniform(0.01, 0.05), tau_ref=r.uniform(0, 0.002)),
    lambda r: nengo.RectifiedLinear(),
    lambda r: nengo.Sigmoid(),  # other tau_ref need other max_rates
    lambda r: nengo.Tanh(),
    lambda r: nengo.AdaptiveLIFRate(tau_n=r.uniform(0.5, 1.5), inc_n=r.uniform(0.005, 0.05)),
]
_SPIKING_TYPES = [
    lambda r: nengo.LIF(tau_rc=r.uniform(0.01, 0.05), tau_ref=r.uniform(0, 0.002),
                        min_voltage=r.choice([0.0, -1.0])),
    lambda r: nengo.SpikingRectifiedLinear(),
    lambda r: nengo.AdaptiveLIF(tau_n=r.uniform(0.5, 1.5), inc_n=r.uniform(0.005, 0.05)),
    lambda r: nengo.Izhikevich(),
    lambda r: nengo.RegularSpiking(nengo.LIFRate()),
]
_STOCHASTIC_TYPES = [
    lambda r: nengo.PoissonSpiking(nengo.RectifiedLinear()),
    lambda r: nengo.StochasticSpiking(nengo.LIFRate()),
]


@dataclass
class Generated:
    """A random network and what makes its comparison meaningful."""

    net: nengo.Network
    probes: list
    n_steps: int
    # draws random numbers while it runs (rows of a batch then differ)
    random_at_run_time: bool = False
    # has spiking neurons (a spike may move by a step: see RTOL)
    spiking: bool = False
    # Poisson/StochasticSpiking: see `_merges_in_build_order`
    stochastic_neurons: bool = False
    description: list = field(default_factory=list)


def _synapse(r):
    kind = r.randint(6)
    if kind == 0:
        return None
    if kind in (1, 2):
        return nengo.Lowpass(r.uniform(0.002, 0.02))
    if kind == 3:
        return nengo.Alpha(r.uniform(0.002, 0.02))
    if kind == 4:
        tau = r.uniform(0.002, 0.02)
        return nengo.LinearFilter([1], [tau * tau, 2 * tau, 1])
    return nengo.synapses.Triangle(r.uniform(0.002, 0.02))


def _neuron_type(r, g):
    pick = r.uniform()
    if pick < 0.4:
        return _RATE_TYPES[r.randint(len(_RATE_TYPES))](r)
    if pick < 0.9:
        g.spiking = True
        return _SPIKING_TYPES[r.randint(len(_SPIKING_TYPES))](r)
    g.spiking = True
    g.random_at_run_time = g.stochastic_neurons = True
    return _STOCHASTIC_TYPES[r.randint(len(_STOCHASTIC_TYPES))](r)


def _input(r, g, dims):
    kind = r.randint(4)
    if kind == 0:
        freq = r.uniform(1, 8, size=dims)
        return nengo.Node(lambda t, f=freq: np.sin(2 * np.pi * f * t)), "sine"
    if kind == 1:
        return nengo.Node(r.uniform(-1, 1, size=dims)), "constant"
    if kind == 2:
        seed = int(r.randint(1000))
        process = nengo.processes.WhiteSignal(period=1.0, high=5, rms=0.5, seed=seed)
        return nengo.Node(process, size_out=dims), "white signal (seeded)"
    g.random_at_run_time = True
    return nengo.Node(nengo.processes.WhiteNoise(), size_out=dims), "white noise"


def random_network(seed: int) -> Generated:
    """The network of ``seed``: always the same one."""
    r = np.random.RandomState(seed)
    g = Generated(nengo.Network(seed=seed), [], n_steps=int(r.randint(20, 150)))
    with g.net:
        n_inputs = 1 + r.randint(2)
        inputs = []
        for k in range(n_inputs):
            node, what = _input(r, g, 1 + r.randint(3))
            node.label = f"in{k}"
            inputs.append(node)
            g.description.append(f"input {what} ({node.size_out}-D)")
        ensembles = []
        for i in range(1 + r.randint(4)):
            dims = 1 + r.randint(3)
            neuron_type = _neuron_type(r, g)
            if r.uniform() < 0.15:
                ens = nengo.networks.EnsembleArray(
                    10 + r.randint(20), n_ensembles=dims, neuron_type=neuron_type,
                    label=f"array{i}",
                )
                g.description.append(f"EnsembleArray {dims} x {neuron_type}")
                ensembles.append((ens.input, ens.output, None))
                continue
            ens = nengo.Ensemble(5 + r.randint(40), dims, neuron_type=neuron_type,
                                 intercepts=nengo.dists.Uniform(-0.5, 0.5), label=f"ens{i}")
            if r.uniform() < 0.1:
                ens.noise = nengo.processes.WhiteNoise(
                    nengo.dists.Gaussian(0, 0.05), seed=int(r.randint(100))
                )
            g.description.append(f"Ensemble {ens.n_neurons} x {dims}-D {neuron_type}")
            ensembles.append((ens, ens, ens))

        def connect(pre, post, recurrent=False):
            pre_size, post_size = pre.size_out, post.size_in
            kwargs = {"synapse": _synapse(r)}
            if recurrent and kwargs["synapse"] is None:
                kwargs["synapse"] = nengo.Lowpass(0.01)  # nengo needs a delay
            if r.uniform() < 0.3 and pre_size > 1:
                pre = pre[: 1 + r.randint(pre_size)]
                pre_size = pre.size_out
            if isinstance(pre, nengo.Ensemble) and r.uniform() < 0.3:
                kwargs["function"] = lambda x: x**2
            if r.uniform() < 0.4 or pre_size != post_size:
                kwargs["transform"] = r.uniform(-1, 1, size=(post_size, pre_size))
            conn = nengo.Connection(pre, post, **kwargs)
            g.description.append(f"Connection {pre} -> {post} {kwargs.get('synapse')}")
            return conn

        # feed-forward chain from the inputs, then optional extras
        for k, (ens_in, ens_out, ens) in enumerate(ensembles):
            pre = inputs[r.randint(len(inputs))] if k == 0 or r.uniform() < 0.3 else (
                ensembles[k - 1][1]
            )
            connect(pre, ens_in)
        if r.uniform() < 0.3:
            ens_in, ens_out, _ = ensembles[r.randint(len(ensembles))]
            connect(ens_out, ens_in, recurrent=True)
            g.description.append("recurrent")
        plain = [e for e in ensembles if e[2] is not None]
        if len(plain) >= 2 and r.uniform() < 0.35:
            a, b = plain[0][2], plain[1][2]
            _learning_connection(r, g, a, b, inputs)
        if len(plain) >= 1 and r.uniform() < 0.2:
            a = plain[-1][2]
            post = nengo.Ensemble(10 + r.randint(20), 1, neuron_type=nengo.LIFRate(),
                                  label="post")
            g.description.append(f"neurons -> neurons from {a}")
            nengo.Connection(a.neurons, post.neurons,
                             transform=r.normal(0, 0.1, size=(post.n_neurons, a.n_neurons)),
                             synapse=_synapse(r))
            plain.append((post, post, post))

        for ens_in, ens_out, ens in ensembles:
            _probes(r, g, ens_out, ens)
        for node in inputs:
            if r.uniform() < 0.3:
                g.probes.append(nengo.Probe(node))
    return g


def _learning_connection(r, g, a, b, inputs):
    kind = r.randint(5)
    if kind in (0, 1):  # PES needs an error signal
        conn = nengo.Connection(a, b, function=lambda x: np.zeros(b.dimensions),
                                learning_rule_type=nengo.PES(learning_rate=1e-4))
        error = nengo.Node(size_in=b.dimensions, label="error")
        nengo.Connection(b, error)
        nengo.Connection(inputs[0], error, transform=-np.ones((b.dimensions, inputs[0].size_out)))
        nengo.Connection(error, conn.learning_rule)
        rule = "PES"
    elif kind == 2:
        conn = nengo.Connection(a.neurons, b.neurons,
                                transform=r.normal(0, 1e-3, size=(b.n_neurons, a.n_neurons)),
                                learning_rule_type=nengo.BCM(learning_rate=1e-9))
        rule = "BCM"
    elif kind == 3:
        conn = nengo.Connection(a.neurons, b.neurons,
                                transform=r.normal(0, 1e-3, size=(b.n_neurons, a.n_neurons)),
                                learning_rule_type=nengo.Oja(learning_rate=1e-7))
        rule = "Oja"
    else:
        conn = nengo.Connection(a, b, transform=r.uniform(-1, 1, size=(b.dimensions, a.dimensions)),
                                learning_rule_type=nengo.Voja(learning_rate=1e-3))
        g.probes.append(nengo.Probe(conn.learning_rule, "scaled_encoders"))
        rule = "Voja"
    g.description.append(f"{rule} {a} -> {b}")
    if r.uniform() < 0.5 and rule != "Voja":
        g.probes.append(nengo.Probe(conn, "weights"))


def _probes(r, g, obj, ens):
    sample_every = None if r.uniform() < 0.8 else 0.003
    g.probes.append(nengo.Probe(obj, synapse=_synapse(r) if r.uniform() < 0.7 else None,
                                sample_every=sample_every))
    if ens is None:
        return
    if r.uniform() < 0.4:
        g.probes.append(nengo.Probe(ens.neurons, synapse=None))
    for attr in ("voltage", "refractory_time", "adaptation", "recovery"):
        if attr in ens.neurons.probeable and r.uniform() < 0.3:
            g.probes.append(nengo.Probe(ens.neurons, attr))
    if r.uniform() < 0.2:
        g.probes.append(nengo.Probe(ens, "input"))
    if r.uniform() < 0.1:
        g.probes.append(nengo.Probe(ens, "scaled_encoders"))


class Invalid(Exception):
    """The seed's network is not one the reference can run."""


@dataclass
class Disagreement:
    seed: int
    strategy: str
    batch: int
    probe: str
    error: float
    description: list

    def __str__(self) -> str:
        return (f"seed {self.seed} ({self.strategy}, batch {self.batch}): {self.probe} "
                f"differs by {self.error:.3g}\n  " + "\n  ".join(self.description))


@contextlib.contextmanager
def _merges_in_build_order(enabled=True):
    """nengo's optimizer with its merge candidates in build order, as ours.

    nengo merges stochastic neurons' operators, whose merged operator draws for
    all of them from its first operator's random stream; which operator is
    first follows a set of operators, whose order changes from build to build
    for operators that are not views of one base (separate Ensembles). Ours
    keeps them in build order (`engine/merge.py`); the reference gets the same
    order here, one of the orders nengo itself takes.
    """
    if not enabled:
        yield
        return
    init = OpMergePass.__init__

    def ordered_init(self, dg):
        init(self, dg)
        self.might_merge = OrderedSet(self.dg.forward)

    OpMergePass.__init__ = ordered_init
    try:
        yield
    finally:
        OpMergePass.__init__ = init


def _reference(seed: int, nudge: int = 0):
    """Probe data of the reference run of ``seed``, biases nudged up (1) or down (-1)."""
    g = random_network(seed)
    with _merges_in_build_order(g.stochastic_neurons):
        return _reference_run(g, nudge)


def _reference_run(g, nudge):
    if not nudge:
        sim = nengo.Simulator(g.net, progress_bar=False)
    else:
        model = nengo.builder.Model(dt=0.001)
        model.build(g.net)
        # one ulp of each neuron's largest input current, where the summation
        # order of its synapses and products rounds (one ulp of the bias alone
        # is smaller by the ratio of the two, and moves the reference less than
        # rounding the current does)
        for ens, current in _largest_currents(g).items():
            bias = model.sig[ens.neurons]["bias"]
            # test-only: Signal keeps its initial value read-only
            value = bias.initial_value
            # at least one ulp of the bias itself, where the current is smaller
            step = np.maximum(np.spacing(current), np.spacing(value))
            bias._initial_value = value + nudge * step
        sim = nengo.Simulator(None, model=model, progress_bar=False, seed=_sim_seed(g))
    try:
        with sim:
            sim.run_steps(g.n_steps)
            return g, [sim.data[p] for p in g.probes]
    except FloatingPointError as e:  # e.g. a learning rule that diverges
        raise Invalid(f"the reference overflows ({e})") from e
    except ValueError as e:  # numpy's Poisson draw refuses a diverged rate
        raise Invalid(f"the reference fails ({e})") from e


def _sim_seed(g):
    """The seed nengo.Simulator(g.net) takes (a given model alone gets a random one)."""
    return g.net.seed + 1


def _largest_currents(g):
    """``{ensemble: max over steps of |input current|}`` (per neuron) in the reference."""
    with nengo.Simulator(g.net, progress_bar=False) as sim:
        inputs = {ens: sim.model.sig[ens.neurons]["in"] for ens in g.net.all_ensembles}
        largest = {ens: np.zeros(ens.n_neurons) for ens in inputs}
        for _ in range(g.n_steps):
            sim.step()
            for ens, sig in inputs.items():
                np.maximum(largest[ens], np.abs(sim.signals[sig]), out=largest[ens])
    return largest


def compare(seed: int, strategy: str = "default", batch: int = 1, tamper=None) -> list:
    """Disagreements of network ``seed`` between ours and the reference.

    ``tamper(generated)``, for testing the fuzzer itself, changes our copy of
    the network before it is built."""
    from snntorch_nengo import Simulator, configure_settings

    reference, expected = _reference(seed)
    g = random_network(seed)  # a copy of its own: our settings go on its config
    if STRATEGIES[strategy]:
        with g.net:
            configure_settings(**STRATEGIES[strategy])
    if tamper is not None:
        tamper(g)
    with Simulator(g.net, progress_bar=False,
                   minibatch_size=None if batch == 1 else batch) as sim:
        sim.run_steps(g.n_steps)
        ours = [np.asarray(sim.data[p]) for p in g.probes]
    found, nudged = [], None
    for i, (probe, want, got) in enumerate(zip(reference.probes, expected, ours)):
        rows = [got] if batch == 1 else list(got)
        if g.random_at_run_time:
            rows = rows[:1]  # other rows draw their own streams (documented)
        for row in rows:
            if row.shape != want.shape:
                error, why = np.inf, [f"shape {row.shape}, expected {want.shape}"]
            elif np.allclose(row, want, rtol=RTOL, atol=ATOL):
                continue
            else:
                error, why = float(np.max(np.abs(row - want))), []
                if probe.attr in ("voltage", "recovery"):
                    if nudged is None:
                        # both ways: one way's ulp may be absorbed where the
                        # other's is not, as rounding may be in either direction
                        nudged = [_reference(seed, nudge=sign)[1] for sign in (1, -1)]
                    rounding = max(float(np.max(np.abs(n[i] - want))) for n in nudged)
                    if error <= ROUNDING_FACTOR * rounding + ATOL:
                        continue
                    why = [f"the reference moves by {rounding:.3g} for one ulp of input current"]
            found.append(Disagreement(seed, strategy, batch, str(probe), error,
                                      g.description + why))
            break
    return found


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", default="0:200", help="start:stop")
    parser.add_argument("--batch", type=int, nargs="+", default=[1, 3])
    parser.add_argument("--strategy", nargs="+", default=list(STRATEGIES))
    parser.add_argument("--rotate", action="store_true",
                        help="one strategy per seed (seed %% 3), as tests/test_fuzz.py")
    args = parser.parse_args(argv)
    start, stop = (int(x) for x in args.seeds.split(":"))
    t0, n, bad = time.time(), 0, []
    for seed in range(start, stop):
        strategies = [args.strategy[seed % len(args.strategy)]] if args.rotate else args.strategy
        for strategy in strategies:
            for batch in args.batch:
                try:
                    found = compare(seed, strategy, batch)
                    for d in found:  # as found: a stopped run still lists them
                        print(d, file=sys.stderr, flush=True)
                    bad += found
                except (nengo.exceptions.NengoException, Invalid) as e:
                    print(f"seed {seed}: not a valid network ({e})", file=sys.stderr)
                n += 1
        if (seed - start) % 100 == 99:
            print(f"{seed + 1 - start} networks, {len(bad)} disagreements so far, "
                  f"{time.time() - t0:.0f} s", file=sys.stderr, flush=True)
    for d in bad:
        print(d)
    print(f"{n} runs of {stop - start} networks, {len(bad)} disagreements, "
          f"{time.time() - t0:.0f} s")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
