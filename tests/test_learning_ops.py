"""Learning rule operators (SimPES, SimBCM, SimOja, SimVoja, SimRLS) against Nengo."""

import nengo
import numpy as np
import pytest

import snntorch_nengo

N_STEPS = 500
ATOL = 1e-8


def _stim(t):
    return [np.sin(2 * np.pi * 2 * t), np.cos(2 * np.pi * 3 * t)]


def _run_both(net, n_steps=N_STEPS):
    with nengo.Simulator(net, progress_bar=False) as ref:
        ref.run_steps(n_steps)
    with snntorch_nengo.Simulator(net, progress_bar=False) as sim:
        sim.run_steps(n_steps)
    return ref, sim


def _assert_probes_match(net, ref, sim):
    assert net.probes
    for probe in net.probes:
        expected = np.asarray(ref.data[probe])
        actual = np.asarray(sim.data[probe])
        assert actual.shape == expected.shape, probe
        assert np.allclose(actual, expected, atol=ATOL, rtol=0), (
            probe,
            np.max(np.abs(actual - expected)),
        )


def _error_feedback(stim, post, conn):
    """Feed ``post - stim`` to ``conn``'s learning rule (PES, RLS)."""
    error = nengo.Node(size_in=2)
    nengo.Connection(post, error)
    nengo.Connection(stim, error, transform=-1)
    nengo.Connection(error, conn.learning_rule)


def _neuron_weights(pre, post, rule, seed):
    """A learned neurons -> neurons connection with small random weights."""
    weights = np.random.RandomState(seed).uniform(-1e-3, 1e-3, (post.n_neurons, pre.n_neurons))
    return nengo.Connection(pre.neurons, post.neurons, transform=weights, learning_rule_type=rule)


def _decoded_net(rule, seed, n_pre, post, *probed_attrs):
    """A decoded connection learning ``post``'s error from the stimulus."""
    with nengo.Network(seed=seed) as net:
        stim = nengo.Node(_stim)
        pre = nengo.Ensemble(n_pre, 2)
        post = post()
        nengo.Connection(stim, pre)
        conn = nengo.Connection(
            pre, post, function=lambda x: [0, 0], learning_rule_type=rule
        )
        _error_feedback(stim, post, conn)
        nengo.Probe(post, synapse=0.01)
        nengo.Probe(conn, "weights", synapse=None)
        for attr in probed_attrs:
            nengo.Probe(conn.learning_rule, attr, synapse=None)
    return net


def pes_decoded_net(seed=0):
    post = lambda: nengo.Ensemble(30, 2)  # noqa: E731
    return _decoded_net(nengo.PES(learning_rate=1e-3), seed, 40, post, "delta", "error")


def pes_neurons_net(seed=1):
    with nengo.Network(seed=seed) as net:
        stim = nengo.Node(_stim)
        pre = nengo.Ensemble(20, 2)
        post = nengo.Ensemble(25, 2)
        nengo.Connection(stim, pre)
        conn = _neuron_weights(pre, post, nengo.PES(learning_rate=5e-4, pre_synapse=0.01), seed)
        _error_feedback(stim, post, conn)
        nengo.Probe(post.neurons, synapse=0.01)
        nengo.Probe(conn, "weights", synapse=None)
    return net


def _hebbian_net(rule, seed, *probed_attrs):
    """Stimulus into both ensembles; ``rule`` learns neurons -> neurons weights."""
    with nengo.Network(seed=seed) as net:
        stim = nengo.Node(_stim)
        pre = nengo.Ensemble(20, 2)
        post = nengo.Ensemble(15, 2)
        nengo.Connection(stim, pre)
        nengo.Connection(stim, post)
        conn = _neuron_weights(pre, post, rule, seed)
        nengo.Probe(post.neurons, synapse=0.01)
        nengo.Probe(conn, "weights", synapse=None)
        for attr in probed_attrs:
            nengo.Probe(conn.learning_rule, attr, synapse=None)
    return net


def bcm_net(seed=2):
    return _hebbian_net(nengo.BCM(learning_rate=1e-9), seed, "theta")


def oja_net(seed=3):
    return _hebbian_net(nengo.Oja(learning_rate=1e-6, beta=1.5), seed)


def voja_net(seed=4, learning_node=True):
    with nengo.Network(seed=seed) as net:
        stim = nengo.Node(_stim)
        pre = nengo.Ensemble(20, 2)
        post = nengo.Ensemble(30, 2, intercepts=nengo.dists.Uniform(0.3, 0.3))
        nengo.Connection(stim, pre)
        conn = nengo.Connection(
            pre, post, learning_rule_type=nengo.Voja(learning_rate=1e-2)
        )
        if learning_node:
            learning = nengo.Node(lambda t: float(t < 0.3))
            nengo.Connection(learning, conn.learning_rule, synapse=None)
        nengo.Probe(post, synapse=0.01)
        nengo.Probe(post, "scaled_encoders", synapse=None)
        nengo.Probe(conn.learning_rule, "scaled_encoders", synapse=None)
    return net


def rls_net(seed=5):
    rule = nengo.RLS(learning_rate=1e-3, pre_synapse=0.01)
    return _decoded_net(rule, seed, 30, lambda: nengo.Node(size_in=2), "delta")


def rls_neurons_net(seed=6):
    """RLS on a neurons -> node connection (learning a full weight matrix)."""
    with nengo.Network(seed=seed) as net:
        stim = nengo.Node(_stim)
        pre = nengo.Ensemble(20, 2)
        post = nengo.Node(size_in=2)
        nengo.Connection(stim, pre)
        conn = nengo.Connection(
            pre.neurons,
            post,
            transform=np.zeros((2, 20)),
            learning_rule_type=nengo.RLS(learning_rate=1e-4),
        )
        _error_feedback(stim, post, conn)
        nengo.Probe(post, synapse=0.01)
        nengo.Probe(conn, "weights", synapse=None)
    return net


NETS = {
    "pes_decoded": pes_decoded_net,
    "pes_neurons": pes_neurons_net,
    "bcm": bcm_net,
    "oja": oja_net,
    "voja": voja_net,
    "voja_no_learning_conn": lambda: voja_net(learning_node=False),
    "rls": rls_net,
    "rls_neurons": rls_neurons_net,
}


@pytest.mark.parametrize("name", sorted(NETS))
def test_matches_nengo(name):
    net = NETS[name]()
    ref, sim = _run_both(net)
    _assert_probes_match(net, ref, sim)


def test_weights_actually_learn():
    """Guard against a vacuous comparison: the learned weights do change."""
    net = pes_decoded_net()
    _, sim = _run_both(net, n_steps=200)
    probe = next(p for p in net.probes if p.attr == "weights")
    w = np.asarray(sim.data[probe])
    assert np.max(np.abs(w[-1] - w[0])) > 1e-4


@pytest.mark.parametrize("name", ["pes_decoded", "pes_neurons", "bcm", "oja", "voja", "rls"])
def test_minibatch_items_identical(name):
    net = NETS[name]()
    n_steps = 200
    with snntorch_nengo.Simulator(net, progress_bar=False) as sim1:
        sim1.run_steps(n_steps)
    with snntorch_nengo.Simulator(net, progress_bar=False, minibatch_size=2) as sim2:
        sim2.run_steps(n_steps)
    for probe in net.probes:
        single = np.asarray(sim1.data[probe])
        batch = np.asarray(sim2.data[probe])
        assert batch.shape == (2,) + single.shape, (probe, batch.shape, single.shape)
        assert np.allclose(batch[0], batch[1], atol=ATOL, rtol=0), probe
        assert np.allclose(batch[0], single, atol=ATOL, rtol=0), probe
