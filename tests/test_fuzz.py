"""Random Nengo networks against nengo.Simulator (the generator: tests/fuzz.py).

A fixed set of 200 seeds, each at batch 1 and 3, under the run strategy its
seed picks (default choice, in place, functional); the long run and its last
result are in docs/robustness.md.
"""

import warnings

import nengo
import numpy as np
import pytest

import fuzz

SEEDS = range(200)
# networks the long run found disagreeing, each fixed or explained since:
# 1640 merged as nengo's optimizer schedule does (views again after a pass
# without views); 1261 and 1837 measured against the reference's own rounding
FOUND_IN_LONG_RUNS = [607, 1261, 1640, 1837]
STRATEGIES = list(fuzz.STRATEGIES)


@pytest.fixture(autouse=True)
def _quiet():
    # nengo's own warnings about the random networks (merged stochastic
    # neurons, learning rules on neurons) are not what is tested here
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


@pytest.mark.parametrize("seed", [*SEEDS, *FOUND_IN_LONG_RUNS])
def test_random_network_equals_reference(seed):
    strategy = STRATEGIES[seed % len(STRATEGIES)]
    try:
        found = fuzz.compare(seed, strategy, 1) + fuzz.compare(seed, strategy, 3)
    except fuzz.Invalid as e:
        pytest.skip(str(e))
    assert not found, "\n".join(map(str, found))


def test_generator_is_deterministic_and_varied():
    a, b = fuzz.random_network(7), fuzz.random_network(7)
    assert a.description == b.description and a.n_steps == b.n_steps
    kinds = set()
    for seed in SEEDS:
        g = fuzz.random_network(seed)
        kinds.update(type(e.neuron_type).__name__ for e in g.net.all_ensembles)
        kinds.update(type(c.synapse).__name__ for c in g.net.all_connections)
        kinds.update(type(c.learning_rule_type).__name__ for c in g.net.all_connections)
        kinds.update(p.attr for p in g.net.all_probes)
    for name in ("LIF", "AdaptiveLIF", "Izhikevich", "PoissonSpiking", "StochasticSpiking",
                 "RegularSpiking", "Sigmoid", "Tanh", "Lowpass", "Alpha", "LinearFilter",
                 "Triangle", "PES", "BCM", "Oja", "Voja", "voltage", "refractory_time",
                 "recovery", "adaptation", "scaled_encoders", "weights", "input"):
        assert name in kinds, name


def _first_transform(g):
    for conn in g.net.all_connections:
        if isinstance(conn.transform, nengo.Dense) and conn.learning_rule_type is None:
            return conn
    return None


def test_fuzzer_reports_a_small_change():
    """The comparison can fail: one weight moved by 1e-6 is a disagreement."""
    seed = next(s for s in SEEDS if _first_transform(fuzz.random_network(s)) is not None
                and not fuzz.random_network(s).random_at_run_time)

    def tamper(g):
        conn = _first_transform(g)
        conn.transform = nengo.Dense(conn.transform.shape,
                                     init=np.asarray(conn.transform.init) + 1e-6)

    assert fuzz.compare(seed, "default", 1) == []
    assert fuzz.compare(seed, "default", 1, tamper=tamper)
