"""Networks that several test files build, in one place.

Test files import them by name (``from networks import relu_channel``): pytest
puts tests/ on the path of the test files it collects.
"""

import nengo
import numpy as np

import snntorch_nengo


def relu_channel(seed: int = 1) -> nengo.Network:
    """The smallest trainable network: Node ``a`` -> 20 ReLUs -> probe ``out``.

    ``net.a``, ``net.ens``, ``net.p``; the probe filters with a 0.02 s lowpass,
    so the network has simulation state that training and checkpoints carry.
    """
    with nengo.Network(seed=seed) as net:
        net.a = nengo.Node([0.0], label="a")
        net.ens = nengo.Ensemble(20, 1, neuron_type=nengo.RectifiedLinear(), label="ens")
        nengo.Connection(net.a, net.ens, synapse=None)
        net.p = nengo.Probe(net.ens, synapse=0.02, label="out")
    return net


def dense_classifier(n_out: int, d: int = 4, n_neurons: int = 20, seed: int = 0) -> nengo.Network:
    """``inp`` (d) -> ReLU neurons -> ``out`` (n_out), Glorot weights, no synapses.

    ``net.inp``, ``net.out`` and ``net.p`` (the probe on ``out``, label ``out``).
    """
    glorot = snntorch_nengo.dists.Glorot
    with nengo.Network(seed=seed) as net:
        net.inp = nengo.Node(np.zeros(d), label="inp")
        hidden = nengo.Ensemble(n_neurons, 1, neuron_type=nengo.RectifiedLinear())
        net.out = nengo.Node(size_in=n_out)
        nengo.Connection(net.inp, hidden.neurons, transform=glorot(), synapse=None)
        nengo.Connection(hidden.neurons, net.out, transform=glorot(), synapse=None)
        net.p = nengo.Probe(net.out, label="out")
    return net


def probe_without_gradient() -> nengo.Network:
    """A trainable ensemble, and ``net.p`` on the Node that feeds it: a loss on
    that probe depends on no trainable parameter."""
    with nengo.Network() as net:
        stim = nengo.Node(np.zeros(2))
        ens = nengo.Ensemble(4, 2)
        nengo.Connection(stim, ens)
        net.p = nengo.Probe(stim)
    return net
