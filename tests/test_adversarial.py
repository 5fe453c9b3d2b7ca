"""Regressions from adversarial use (issue 15), each against ``nengo.Simulator``.

Every case here failed once: learning rules in batches, Triangle synapses on
the stepping paths, process seeds across batch rows, stochastic neurons in
merged ensembles, operators without a torch implementation, Simulator
subclasses, and TensorNodes that work in place.
"""

import nengo
import numpy as np
import pytest

import snntorch_nengo
from snntorch_nengo import Simulator

# the four engine paths a stepping or windowed model can take
PATHS = [
    {},
    {"in_place": False},
    {"time_batched": False},
    {"time_batched": False, "in_place": False},
]


def path_id(settings):
    return ",".join(f"{k}={v}" for k, v in settings.items()) or "default"


def learning_channel(seed, rule, settings=None):
    """A channel fed 0.7 whose learned connection shares its shape with a decoder.

    nengo's optimizer merges the learned weights with the decoder of ``a ->
    err`` for some seeds (the operator order it sees varies with them), which
    gives the merged matrix a batch dimension in our engine.
    """
    with nengo.Network(seed=seed) as net:
        if settings:
            snntorch_nengo.configure_settings(**settings)
        inp = nengo.Node(0.7)
        a = nengo.Ensemble(50, 1)
        b = nengo.Ensemble(50, 1)
        nengo.Connection(inp, a)
        conn = nengo.Connection(a, b, learning_rule_type=rule)
        err = nengo.Ensemble(50, 1)
        nengo.Connection(b, err)
        nengo.Connection(a, err, transform=-1)
        nengo.Connection(err, conn.learning_rule)
        net.p = nengo.Probe(b, synapse=0.01)
    return net


@pytest.mark.parametrize("rule", ["PES", "RLS"])
def test_learning_rules_batched_equal_reference_over_builds(rule):
    """Every row learns at nengo's rate, however the optimizer merged the weights."""
    for seed in range(10):
        make_rule = {"PES": lambda: nengo.PES(learning_rate=1e-3), "RLS": nengo.RLS}
        net = learning_channel(seed, make_rule[rule]())
        with nengo.Simulator(net, progress_bar=False) as ref:
            ref.run_steps(300)
        expected = ref.data[net.p]
        assert abs(expected[-1, 0] - 0.7) < 0.05  # the channel did learn
        for batch in (1, 2, 3):
            with Simulator(net, minibatch_size=batch, progress_bar=False) as sim:
                sim.run_steps(300)
            got = sim.data[net.p]
            assert got.shape == (batch, 300, 1)
            for row in range(batch):
                np.testing.assert_allclose(
                    got[row], expected, rtol=0, atol=1e-10,
                    err_msg=f"seed {seed}, batch {batch}, row {row}",
                )


def triangle_net(settings):
    with nengo.Network(seed=1) as net:
        if settings:
            snntorch_nengo.configure_settings(**settings)
        inp = nengo.Node(lambda t: np.sin(10 * t))
        a = nengo.Ensemble(30, 1)
        nengo.Connection(inp, a)
        # a recurrent connection makes the model step (no windows)
        nengo.Connection(a, a, synapse=nengo.synapses.Triangle(0.01))
        out = nengo.Node(size_in=1)
        nengo.Connection(a, out, synapse=nengo.synapses.Triangle(0.005))
        net.p = nengo.Probe(a, synapse=nengo.synapses.Triangle(0.02))
        net.q = nengo.Probe(out)
    return net


@pytest.mark.parametrize("settings", PATHS, ids=path_id)
@pytest.mark.parametrize("recurrent", [True, False])
def test_triangle_on_every_path(settings, recurrent):
    def make():
        net = triangle_net(settings)
        if not recurrent:  # windowed: drop the recurrence
            net.connections[:] = [c for c in net.connections if c.pre is not c.post]
        return net

    ref_net = make()
    with nengo.Simulator(ref_net, progress_bar=False) as ref:
        ref.run_steps(120)
    net = make()
    with Simulator(net, minibatch_size=2, progress_bar=False) as sim:
        sim.run_steps(120)
    for ref_probe, probe in ((ref_net.p, net.p), (ref_net.q, net.q)):
        for row in range(2):
            np.testing.assert_allclose(
                sim.data[probe][row], ref.data[ref_probe], rtol=0, atol=1e-12
            )
