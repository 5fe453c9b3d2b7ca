"""The benchmark networks' variants (benchmarks/networks.py) are what they say
and simulate as the reference does."""

import sys
from pathlib import Path

import nengo
import numpy as np
import pytest

from snntorch_nengo import Simulator

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from benchmarks import networks  # noqa: E402

VARIANTS = [
    pytest.param(name, keywords, id=f"{name}-{suffix}")
    for name, variants in networks.VARIANTS.items()
    for suffix, keywords in variants
    if keywords
]


@pytest.mark.parametrize("name,keywords", VARIANTS)
def test_variants_use_nengo_defaults_and_match_the_reference(name, keywords):
    today, _, _ = networks.SIMULATION[name]()
    net, _, probe = networks.SIMULATION[name](**keywords)
    default_synapse = nengo.Connection.synapse.default
    assert len(net.all_connections) == len(today.all_connections)
    for before, after in zip(today.all_connections, net.all_connections):
        if before.synapse is None:
            # the connections today's variant leaves unfiltered get the default,
            # except the ones inside nengo.networks that choose None themselves
            inside = before not in today.connections
            assert after.synapse == (None if inside else default_synapse), after
        else:
            assert after.synapse == before.synapse, after
    assert probe.synapse == nengo.Lowpass(0.01)
    if keywords.get("nengo_defaults"):
        assert all(type(e.neuron_type) is nengo.LIF for e in net.all_ensembles)

    n_steps = 30
    with nengo.Simulator(net, progress_bar=False) as ref:
        ref.run_steps(n_steps)
    with Simulator(net, progress_bar=False, dtype="float64") as sim:
        sim.run_steps(n_steps)
    assert np.any(ref.data[probe] != 0)
    np.testing.assert_allclose(sim.data[probe], ref.data[probe], atol=1e-9, rtol=1e-7)


def test_surrogate_mlp_runs_as_the_reference():
    """The spiking-training network: spikes at 1, voltages from 0, no floor."""
    net, stim, probe, (layers, _) = networks.surrogate_mlp(sizes=(50, 40, 30, 10))
    stim.output = np.random.RandomState(0).uniform(0, 1, 50)
    with net:
        spikes = nengo.Probe(layers[0].neurons)
    with nengo.Simulator(net, progress_bar=False) as ref:
        ref.run_steps(25)
    with Simulator(net, progress_bar=False, dtype="float64") as sim:
        sim.run_steps(25)
    assert set(np.unique(ref.data[spikes])) == {0.0, 1.0}
    np.testing.assert_allclose(sim.data[probe], ref.data[probe], atol=1e-9, rtol=1e-7)
    np.testing.assert_array_equal(sim.data[spikes], ref.data[spikes])
