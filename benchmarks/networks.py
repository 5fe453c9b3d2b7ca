"""Benchmark networks, built with Nengo's public API only.

Each builder returns ``(net, inputs, probe)``: the network, its input Nodes (in
a fixed order, for feeding batched data) and the probe whose output is read.
All builders are deterministic (fixed seeds).

The four simulation benchmarks follow NengoDL's ``benchmarks.py``:

- `integrator`: an `nengo.networks.EnsembleArray` of 64 ensembles x 32 ReLU
  neurons with a recurrent connection (a bank of integrators);
- `cconv`: `nengo.networks.CircularConvolution` of two 32-D vectors, 64 ReLU
  neurons per ensemble;
- `random`: 20 ensembles x 512 ReLU neurons (16-D) with 5 random decoded
  connections out of each;
- `ff_mlp`: a 784-256-256-10 spiking ReLU multilayer perceptron with Glorot
  weights on neuron-to-neuron connections.

Each simulation builder takes ``nengo_defaults=True`` for the same network
as a Nengo user builds it without choosing: Nengo's default neuron type
(`nengo.LIF`), the default connection synapse (``Lowpass(0.005)``) on every
connection the variant above leaves without one, and a 0.01 s lowpass on the
probe (synapses a network needs, such as the integrator's feedback, stay as
they are). `ff_mlp` also takes ``synapses=True``: its spiking ReLU neurons with
the default synapses (0.005 between layers, 0.01 on the probe).

Two more serve the training and spiking-inference benchmarks: `autoencoder`
(the 784-64-784 ReLU auto-encoder of the seed tutorial) and
`spiking_classifier` (`ff_mlp` with LIF neurons and a filtered probe).
"""

import nengo
import numpy as np

from snntorch_nengo.dists import Glorot


def _relu_or_default(net, nengo_defaults):
    """ReLU neurons, or (Nengo's defaults) the connection synapse to use else."""
    if not nengo_defaults:
        net.config[nengo.Ensemble].neuron_type = nengo.RectifiedLinear()
        return None
    return nengo.Default


def integrator(n_neurons=32, dimensions=64, seed=0, nengo_defaults=False):
    """EnsembleArray of ``dimensions`` 1-D ReLU ensembles, fed back on itself."""
    with nengo.Network(seed=seed, label="integrator") as net:
        synapse = _relu_or_default(net, nengo_defaults)
        stim = nengo.Node(np.full(dimensions, 0.1), label="input")
        ea = nengo.networks.EnsembleArray(n_neurons, dimensions)
        nengo.Connection(stim, ea.input, synapse=synapse)
        nengo.Connection(ea.output, ea.input, synapse=0.01, transform=1)
        probe = nengo.Probe(ea.output, synapse=0.01)
    return net, [stim], probe


def cconv(n_neurons=64, dimensions=32, seed=0, nengo_defaults=False):
    """Circular convolution of two ``dimensions``-D inputs, ReLU neurons."""
    rng = np.random.RandomState(seed)
    with nengo.Network(seed=seed, label="cconv") as net:
        synapse = _relu_or_default(net, nengo_defaults)
        a = nengo.Node(rng.uniform(-0.3, 0.3, dimensions), label="a")
        b = nengo.Node(rng.uniform(-0.3, 0.3, dimensions), label="b")
        cc = nengo.networks.CircularConvolution(n_neurons, dimensions)
        nengo.Connection(a, cc.input_a, synapse=synapse)
        nengo.Connection(b, cc.input_b, synapse=synapse)
        probe = nengo.Probe(cc.output, synapse=0.01)
    return net, [a, b], probe


def random(n_ensembles=20, n_neurons=512, dimensions=16, connections_per=5, seed=0,
           nengo_defaults=False):
    """``n_ensembles`` ReLU ensembles, each with random decoded connections out."""
    rng = np.random.RandomState(seed)
    with nengo.Network(seed=seed, label="random") as net:
        synapse = _relu_or_default(net, nengo_defaults)
        stim = nengo.Node(rng.uniform(-0.5, 0.5, dimensions), label="input")
        ensembles = [
            nengo.Ensemble(n_neurons, dimensions, label=f"ens{i}")
            for i in range(n_ensembles)
        ]
        nengo.Connection(stim, ensembles[0], synapse=synapse)
        for i, pre in enumerate(ensembles):
            others = [j for j in range(n_ensembles) if j != i]
            for j in rng.choice(others, size=connections_per, replace=False):
                # a random linear map, scaled so activity neither dies nor explodes
                transform = rng.uniform(-1, 1, (dimensions, dimensions)) / dimensions
                nengo.Connection(pre, ensembles[j], transform=transform, synapse=0.01)
        probe = nengo.Probe(ensembles[-1], synapse=0.01)
    return net, [stim], probe


def _mlp(sizes, neuron_type, probe_synapse, seed, label, stim_output=None, synapse=None):
    rng = np.random.RandomState(seed)
    if stim_output is None:
        stim_output = rng.uniform(0, 1, sizes[0])
    with nengo.Network(seed=seed, label=label) as net:
        stim = nengo.Node(stim_output, size_out=sizes[0], label="input")
        pre = stim
        for k, n in enumerate(sizes[1:]):
            layer = nengo.Ensemble(n, 1, neuron_type=neuron_type, label=f"layer{k + 1}")
            nengo.Connection(pre, layer.neurons, transform=Glorot(), synapse=synapse)
            pre = layer.neurons
        probe = nengo.Probe(pre, synapse=probe_synapse)
    return net, [stim], probe


def ff_mlp(sizes=(784, 256, 256, 10), seed=0, nengo_defaults=False, synapses=False):
    """Feed-forward spiking ReLU MLP; no synapses between layers.

    ``synapses``: the default connection synapse between layers and a 0.01
    probe filter; ``nengo_defaults``: that, with LIF neurons.
    """
    neuron_type = nengo.LIF() if nengo_defaults else nengo.SpikingRectifiedLinear()
    if nengo_defaults or synapses:
        return _mlp(sizes, neuron_type, 0.01, seed, "ff_mlp", synapse=nengo.Default)
    return _mlp(sizes, neuron_type, None, seed, "ff_mlp")


def spiking_classifier(sizes=(784, 256, 256, 10), seed=0, stim_output=None):
    """`ff_mlp` with LIF neurons and a 10 ms lowpass on the output probe.

    ``stim_output`` replaces the input Node's constant output, e.g. with
    `nengo.processes.PresentInput` to show the reference simulator a sequence of
    samples; the network's parameters do not depend on it.
    """
    return _mlp(sizes, nengo.LIF(), 0.01, seed, "spiking_classifier", stim_output)


def autoencoder(n_in=784, n_hidden=64, seed=0):
    """The seed tutorial's 784-64-784 ReLU auto-encoder, ready to train.

    Gains 1, biases 0, no synapses: the same maths as
    ``Linear(784, 64) -> ReLU -> Linear(64, 784) -> ReLU`` (without biases'
    initial values, which are zero here and trained in both).
    """
    with nengo.Network(seed=seed, label="autoencoder") as net:
        net.config[nengo.Ensemble].gain = nengo.dists.Choice([1])
        net.config[nengo.Ensemble].bias = nengo.dists.Choice([0])
        stim = nengo.Node(np.zeros(n_in), label="input")
        hidden = nengo.Ensemble(n_hidden, 1, neuron_type=nengo.RectifiedLinear())
        nengo.Connection(stim, hidden.neurons, transform=Glorot(), synapse=None)
        out = nengo.Ensemble(n_in, 1, neuron_type=nengo.RectifiedLinear())
        nengo.Connection(hidden.neurons, out.neurons, transform=Glorot(), synapse=None)
        probe = nengo.Probe(out.neurons)
    return net, [stim], probe


def surrogate_mlp(sizes=(784, 256, 256, 10), seed=0, surrogate="fast_sigmoid", scale=100):
    """The spiking-training case: LIF hidden layers, a linear readout of spikes.

    LIF with ``tau_rc=0.02``, ``tau_ref=0``, no voltage floor and spikes of
    height 1 (``amplitude = dt``), starting at voltage 0: the neuron snnTorch's
    ``Leaky`` and
    SpikingJelly's ``LIFNode`` implement; gains 1 and biases 0, so the input
    to each layer is ``W x + b`` as in a torch ``Linear``; Glorot weights; no
    synapses. The hidden layers' weights are Glorot's times ``sqrt(scale)`` (10
    by default: about what torch's default ``Linear`` gives snnTorch's
    ``Leaky``, which does not scale its input by ``1 - beta``), so that both
    layers spike from the start.
    Returns ``(net, stim, probe, (layers, connections))``.
    """
    lif = nengo.LIF(
        tau_rc=0.02, tau_ref=0.0, min_voltage=-np.inf, amplitude=0.001,
        # Nengo starts LIF voltages uniform in [0, 1); the peers start at 0
        initial_state={"voltage": nengo.dists.Choice([0])},
    )
    with nengo.Network(seed=seed, label="surrogate_mlp") as net:
        if surrogate is not None:
            import snntorch_nengo

            snntorch_nengo.configure_settings(surrogate=surrogate)
        net.config[nengo.Ensemble].gain = nengo.dists.Choice([1])
        net.config[nengo.Ensemble].bias = nengo.dists.Choice([0])
        stim = nengo.Node(np.zeros(sizes[0]), label="input")
        layers, conns, pre = [], [], stim
        for k, n in enumerate(sizes[1:-1]):
            layer = nengo.Ensemble(n, 1, neuron_type=lif, label=f"layer{k + 1}")
            conns.append(nengo.Connection(pre, layer.neurons, transform=Glorot(scale),
                                          synapse=None))
            layers.append(layer)
            pre = layer.neurons
        readout = nengo.Node(size_in=sizes[-1], label="readout")
        conns.append(nengo.Connection(pre, readout, transform=Glorot(), synapse=None))
        probe = nengo.Probe(readout, label="logits")
    return net, stim, probe, (layers, conns)


SIMULATION = {
    "integrator": integrator,
    "cconv": cconv,
    "random": random,
    "ff_mlp": ff_mlp,
}

#: each simulation case's variants: (row label suffix, builder keywords)
VARIANTS = {
    name: [("", {}), ("Nengo defaults", {"nengo_defaults": True})]
    for name in SIMULATION
}
VARIANTS["ff_mlp"].insert(1, ("default synapses", {"synapses": True}))
