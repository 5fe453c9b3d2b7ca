"""Our Simulator against nengo.Simulator, network by network, in float64."""

import nengo
import numpy as np
import pytest

import snntorch_nengo

NEURON_TYPES = [
    nengo.LIF(),
    nengo.LIFRate(),
    nengo.RectifiedLinear(),
    nengo.SpikingRectifiedLinear(),
    nengo.Sigmoid(),
    nengo.Tanh(),
    nengo.AdaptiveLIF(),
    nengo.AdaptiveLIFRate(),
    nengo.Izhikevich(),
    nengo.RegularSpiking(nengo.LIFRate()),
    nengo.StochasticSpiking(nengo.RectifiedLinear()),
    nengo.PoissonSpiking(nengo.LIFRate()),
]


def run_both(net, steps=1000, **kwargs):
    with nengo.Simulator(net, progress_bar=False) as ref:
        ref.run_steps(steps)
    with snntorch_nengo.Simulator(net, progress_bar=False, **kwargs) as sim:
        sim.run_steps(steps)
    return ref, sim


def assert_probes_equal(ref, sim, atol=1e-8, exact=(), skip=()):
    for probe in ref.model.probes:
        if probe in skip:
            continue
        expected, actual = ref.data[probe], sim.data[probe]
        assert actual.shape == expected.shape, probe
        if probe in exact:
            assert np.array_equal(actual, expected), probe
        else:
            np.testing.assert_allclose(actual, expected, atol=atol, rtol=0, err_msg=str(probe))


@pytest.mark.parametrize("neuron_type", NEURON_TYPES, ids=lambda n: repr(n))
def test_neuron_types(neuron_type):
    with nengo.Network(seed=1) as net:
        stim = nengo.Node(lambda t: [np.sin(8 * t), np.cos(5 * t)])
        ens = nengo.Ensemble(40, 2, neuron_type=neuron_type)
        out = nengo.Node(size_in=2)
        nengo.Connection(stim, ens)
        nengo.Connection(ens, out, function=lambda x: x**2)
        spikes = nengo.Probe(ens.neurons)
        decoded = nengo.Probe(out, synapse=0.01)
        probes = [nengo.Probe(ens.neurons, attr) for attr in neuron_type.state]
    ref, sim = run_both(net)
    exact = [spikes] if neuron_type.spiking else []
    if isinstance(neuron_type, nengo.Izhikevich):
        # chaotic: matmul's rounding (1e-13 in J) grows in voltage between spikes
        for probe in probes:
            np.testing.assert_allclose(sim.data[probe][:200], ref.data[probe][:200])
    else:
        probes = []
    assert_probes_equal(ref, sim, atol=1e-8, exact=exact, skip=probes)
    assert np.abs(sim.data[decoded]).max() > 0.05  # the network did something


@pytest.mark.parametrize(
    "synapse",
    [
        None,
        nengo.Lowpass(0.01),
        nengo.Alpha(0.005),
        nengo.LinearFilter([1], [0.002 * 0.01, 0.012, 1]),  # double exponential
        nengo.LinearFilter([1], [0.02, 1]),
        nengo.LinearFilter([0.1, 0.2], [1, -0.3], analog=False),
        nengo.Triangle(0.01),
    ],
    ids=repr,
)
def test_synapses(synapse):
    with nengo.Network(seed=2) as net:
        stim = nengo.Node(nengo.processes.WhiteSignal(1.0, high=10, seed=3), size_out=2)
        out = nengo.Node(size_in=2)
        nengo.Connection(stim, out, synapse=synapse)
        nengo.Probe(out)
        nengo.Probe(stim, synapse=synapse)
    ref, sim = run_both(net)
    assert_probes_equal(ref, sim, atol=1e-10)


@pytest.mark.parametrize("t", [0.005, 0.014, 0.2])  # under 8 taps, over 8, over 128
@pytest.mark.parametrize("dims", [1, 3])
@pytest.mark.parametrize("windowed", [True, False])
def test_triangle_bits(t, dims, windowed):
    """The FIR Triangle adds its taps in numpy's order (pairwise for a 1-D
    signal, one by one otherwise): the same bits as the reference in float64,
    stepped and windowed (an ulp off grew into another Izhikevich spike, fuzz
    seed 607)."""
    with nengo.Network(seed=5) as net:
        snntorch_nengo.configure_settings(windowed=windowed)
        stim = nengo.Node(nengo.processes.WhiteSignal(1.0, high=10, seed=6), size_out=dims)
        out = nengo.Node(size_in=dims)
        nengo.Connection(stim, out, synapse=nengo.synapses.Triangle(t))
        probe = nengo.Probe(out)
    ref, sim = run_both(net)
    assert np.abs(ref.data[probe]).max() > 0.01
    assert_probes_equal(ref, sim, exact=[probe])


@pytest.mark.parametrize(
    "process",
    [
        nengo.processes.WhiteSignal(1.0, high=8),
        nengo.processes.WhiteNoise(nengo.dists.Gaussian(0, 0.5)),
        nengo.processes.FilteredNoise(synapse=nengo.Alpha(0.01)),
        nengo.processes.BrownNoise(),
        nengo.processes.PresentInput([[0.1, 0.2], [0.3, -0.5], [1, 0]], 0.05),
        nengo.processes.Piecewise({0: [0, 1], 0.3: [0.5, -1], 0.6: [1, 0]}),
    ],
    ids=lambda p: type(p).__name__,
)
def test_processes(process):
    with nengo.Network(seed=4) as net:
        stim = nengo.Node(process, size_out=2)
        ens = nengo.Ensemble(30, 2)
        nengo.Connection(stim, ens)
        nengo.Probe(stim)
        nengo.Probe(ens, synapse=0.02)
    ref, sim = run_both(net, steps=700)
    assert_probes_equal(ref, sim, atol=1e-8)


class Square(nengo.processes.Process):
    """A custom process with input and state."""

    def make_state(self, shape_in, shape_out, dt, dtype=None):
        return {"total": np.zeros(shape_out)}

    def make_step(self, shape_in, shape_out, dt, rng, state):
        total = state["total"]

        def step(t, x):
            total[...] += x * dt
            return x**2 + total

        return step


def test_custom_process_and_nodes():
    with nengo.Network(seed=5) as net:
        const = nengo.Node([0.3, -0.2])
        timed = nengo.Node(lambda t: np.sin(t * 10))
        tx = nengo.Node(lambda t, x: x * t, size_in=2)
        passthrough = nengo.Node(size_in=3)
        sink = nengo.Node(lambda t, x: None, size_in=1)
        proc = nengo.Node(Square(), size_in=2, size_out=2)
        nengo.Connection(const, tx, synapse=None)
        nengo.Connection(tx, passthrough[:2])
        nengo.Connection(timed, passthrough[2], transform=2)
        nengo.Connection(passthrough[[2, 0]], proc, synapse=0.005)
        nengo.Connection(timed, sink)
        for obj in (const, timed, tx, passthrough, proc):
            nengo.Probe(obj)
    ref, sim = run_both(net, steps=300)
    assert_probes_equal(ref, sim, atol=1e-10)


@pytest.mark.parametrize(
    "transform",
    [
        nengo.Dense((3, 4), init=nengo.dists.Uniform(-1, 1)),
        nengo.Sparse((3, 4), indices=[[0, 1], [2, 3], [1, 0]], init=[0.5, -1, 2]),
        nengo.transforms.NoTransform(4),
        nengo.Convolution(2, (4, 1), kernel_size=(2,), strides=(1,), channels_last=True),
    ],
    ids=lambda t: type(t).__name__,
)
def test_transforms(transform):
    size_out = transform.size_out
    with nengo.Network(seed=6) as net:
        stim = nengo.Node(lambda t: np.sin(np.arange(4) + 5 * t))
        out = nengo.Node(size_in=size_out)
        nengo.Connection(stim, out, transform=transform)
        nengo.Probe(out, synapse=0.01)
    ref, sim = run_both(net, steps=200)
    assert_probes_equal(ref, sim, atol=1e-10)


def test_slicing_and_neurons_connections():
    with nengo.Network(seed=7) as net:
        stim = nengo.Node([0.5, -0.3, 0.8])
        a = nengo.Ensemble(50, 2)
        b = nengo.Ensemble(30, 3)
        nengo.Connection(stim[[2, 0]], a)
        nengo.Connection(a[1], b[0], synapse=0.01)
        nengo.Connection(a.neurons[:10], b.neurons[5:15], transform=np.eye(10) * 0.1)
        nengo.Connection(stim[1], b.neurons, transform=np.ones((30, 1)))
        nengo.Probe(b, synapse=0.02)
        nengo.Probe(b.neurons[::3], "input")
        nengo.Probe(a.neurons, "voltage", sample_every=0.005)
        nengo.Probe(a, "input")
    ref, sim = run_both(net, steps=400)
    assert_probes_equal(ref, sim, atol=1e-8)


def test_direct_mode_and_nef_network():
    """The seed tutorial's sin(x^2) network, with a direct-mode ensemble added."""
    with nengo.Network(seed=0) as net:
        inpt = nengo.Node(nengo.processes.WhiteSignal(1, 5, rms=0.3))
        ens0 = nengo.Ensemble(50, 1)
        ens1 = nengo.Ensemble(50, 1)
        direct = nengo.Ensemble(1, 1, neuron_type=nengo.Direct())
        outpt = nengo.Node(size_in=1)
        nengo.Connection(inpt, ens0)
        nengo.Connection(ens0, ens1, function=np.square)
        nengo.Connection(ens1, outpt, function=np.sin)
        nengo.Connection(inpt, direct, function=np.square)
        nengo.Probe(inpt)
        nengo.Probe(outpt, synapse=0.005)
        nengo.Probe(direct, synapse=0.005)
    ref, sim = run_both(net, steps=1000)
    assert_probes_equal(ref, sim, atol=1e-8)
