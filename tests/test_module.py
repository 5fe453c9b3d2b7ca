"""NengoModule as a torch module; the Simulator's NengoDL API; clear errors."""

import nengo
import numpy as np
import pytest
import torch
from nengo.exceptions import BuildError, SimulatorClosed, ValidationError

import snntorch_nengo
from snntorch_nengo import NengoModule, Simulator


def rate_net(neuron_type=None, seed=0):
    with nengo.Network(seed=seed) as net:
        net.stim = nengo.Node(np.zeros(2), label="stim")
        net.ens = nengo.Ensemble(
            20, 2, neuron_type=neuron_type or nengo.LIFRate(), label="hidden"
        )
        net.out = nengo.Node(size_in=2, label="out")
        nengo.Connection(net.stim, net.ens, synapse=0.005)
        nengo.Connection(net.ens, net.out, function=lambda x: x * np.abs(x))
        net.p = nengo.Probe(net.out, synapse=0.01, label="output")
        net.p_neurons = nengo.Probe(net.ens.neurons)
    return net


def test_forward_shapes_and_persistent_state():
    net = rate_net()
    module = NengoModule(net)
    x = torch.rand(3, 10, 2)
    out = module({net.stim: x})
    assert set(out) == {net.p, net.p_neurons}
    assert out[net.p].shape == (3, 10, 2)
    assert out[net.p_neurons].shape == (3, 10, 20)
    assert out[net.p].dtype == torch.float32

    # continuing equals one long run; reset starts over
    module2 = NengoModule(net)
    x2 = torch.rand(3, 5, 2)
    first = torch.cat([out[net.p], module({"stim": x2})[net.p]], dim=1)
    whole = module2({net.stim: torch.cat([x, x2], dim=1)})[net.p]
    torch.testing.assert_close(first, whole)
    module.reset()
    torch.testing.assert_close(module({net.stim: x})[net.p], whole[:, :10])


def test_fed_inputs_match_reference_playing_the_same_data():
    x = np.random.RandomState(1).uniform(-1, 1, size=(1, 200, 2))
    played = rate_net()
    played.stim.output = lambda t: x[0, int(round(t / 0.001)) - 1]
    with nengo.Simulator(played, progress_bar=False) as ref:
        ref.run_steps(200)
    net = rate_net()
    with Simulator(net, progress_bar=False) as sim:
        out = sim.predict({net.stim: x})
    np.testing.assert_allclose(out[net.p][0], ref.data[played.p], atol=1e-10)
    np.testing.assert_allclose(out[net.p_neurons][0], ref.data[played.p_neurons], atol=1e-8)


def test_minibatch_equals_one_at_a_time():
    net = rate_net(nengo.LIF())
    x = np.random.RandomState(2).uniform(-1, 1, size=(4, 100, 2))
    with Simulator(net, minibatch_size=4, progress_bar=False) as sim:
        batched = sim.predict({net.stim: x})
    with Simulator(net, progress_bar=False) as sim:
        singles = [sim.predict({net.stim: x[i : i + 1]}) for i in range(4)]
    for p in (net.p, net.p_neurons):
        np.testing.assert_allclose(
            batched[p], np.concatenate([s[p] for s in singles]), atol=1e-12
        )


def test_predict_splits_into_minibatches_and_keeps_state():
    net = rate_net()
    x = np.random.RandomState(3).uniform(-1, 1, size=(6, 20, 2))
    with Simulator(net, minibatch_size=2, progress_bar=False) as sim:
        out = sim.predict(x)  # one input node: a single array is fine
        assert out[net.p].shape == (6, 20, 2)
        assert sim.n_steps == 0  # stateful=False leaves the state alone
        again = sim.predict_on_batch({"stim": x[:2]})
        np.testing.assert_allclose(again[net.p], out[net.p][:2])
        sim.predict_on_batch({"stim": x[:2]}, stateful=True)
        assert sim.n_steps == 20
        assert sim.data[net.p].shape == (2, 20, 2)


def test_seed_autoencoder_predict_shape():
    with nengo.Network() as auto_net:
        a = nengo.Node(np.zeros(784))
        b = nengo.Ensemble(64, 1, neuron_type=nengo.RectifiedLinear())
        nengo.Connection(a, b.neurons, transform=snntorch_nengo.dists.Glorot())
        c = nengo.Ensemble(784, 1, neuron_type=nengo.RectifiedLinear())
        nengo.Connection(b.neurons, c.neurons, transform=snntorch_nengo.dists.Glorot())
        p_c = nengo.Probe(c.neurons)
    with Simulator(auto_net, minibatch_size=50, progress_bar=False) as sim:
        out = sim.predict(np.ones((50, 1, 784)))
    assert out[p_c].shape == (50, 1, 784)
    assert np.all(np.isfinite(out[p_c]))


def test_gradcheck_rate_network():
    with nengo.Network(seed=4) as net:
        stim = nengo.Node(np.zeros(2))
        a = nengo.Ensemble(5, 2, neuron_type=nengo.Sigmoid())
        b = nengo.Ensemble(4, 1, neuron_type=nengo.Tanh())
        nengo.Connection(stim, a, synapse=0.01)
        nengo.Connection(a.neurons, b.neurons, transform=np.ones((4, 5)) * 0.001)
        p = nengo.Probe(b.neurons, synapse=0.005)
    module = NengoModule(net, dtype=torch.float64)
    params = dict(module.named_parameters())
    assert any(name.endswith("weights") for name in params)
    assert any(name.endswith("encoders") for name in params)
    assert any(name.endswith("bias") for name in params)

    def f(x, *weights):
        module.reset()
        return module({stim: x}, n_steps=x.shape[1])[p]

    x = torch.rand(2, 4, 2, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(f, (x,))
    # gradients reach the parameters
    module.reset()
    module({stim: x.detach()})[p].sum().backward()
    assert all(param.grad is not None for param in module.parameters())


def test_no_grad_and_print():
    net = rate_net()
    module = NengoModule(net)
    with torch.no_grad():
        out = module({net.stim: torch.ones(1, 3, 2)})
    assert not out[net.p].requires_grad
    text = repr(module)
    assert "(hidden): EnsembleModule(label='hidden', n_neurons=20" in text
    assert "neuron_type=LIFRate()" in text
    assert "ProbeModule(label='output'" in text


def test_float64_and_devices():
    net = rate_net()
    module = NengoModule(net, dtype=torch.float64)
    out = module(n_steps=3)
    assert out[net.p].dtype == torch.float64


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_matches_cpu():
    net = rate_net(nengo.LIF())
    x = torch.rand(2, 50, 2, dtype=torch.float64)
    cpu = NengoModule(net, dtype=torch.float64)({net.stim: x})
    gpu = NengoModule(net, dtype=torch.float64, device="cuda")({net.stim: x.cuda()})
    torch.testing.assert_close(gpu[net.p].cpu(), cpu[net.p])


def test_state_dict_round_trip():
    net = rate_net()
    a, b = NengoModule(net), NengoModule(net, seed=5)
    with torch.no_grad():
        for param in a.parameters():
            param.add_(0.1)
    b.load_state_dict(a.state_dict())
    x = torch.rand(1, 5, 2)
    torch.testing.assert_close(a({net.stim: x})[net.p], b({net.stim: x})[net.p])


# --- errors


def test_error_unknown_node_and_bad_shapes():
    net = rate_net()
    with Simulator(net, progress_bar=False) as sim:
        with pytest.raises(ValidationError, match="not an input Node"):
            sim.predict({net.out: np.zeros((1, 5, 2))})
        with pytest.raises(ValidationError, match="input Node labelled 'nope'"):
            sim.predict({"nope": np.zeros((1, 5, 2))})
        with pytest.raises(ValidationError, match=r"must have shape \(batch, n_steps, 2\)"):
            sim.predict({net.stim: np.zeros((1, 5, 3))})
        with pytest.raises(ValidationError, match="non-negative integer"):
            sim.run_steps(-1)
        with pytest.raises(ValidationError, match="Must be positive"):
            sim.run(-0.1)
    with pytest.raises(SimulatorClosed):
        sim.run_steps(1)
    with pytest.raises(SimulatorClosed):
        sim.predict(n_steps=1)
    with pytest.raises(ValidationError, match="non-negative integer"):
        NengoModule(net)(n_steps=-3)
    with pytest.raises(ValidationError, match="minibatch_size"):
        NengoModule(net, minibatch_size=0)


def test_error_batch_mismatch_with_state():
    net = rate_net()
    module = NengoModule(net)
    module({net.stim: torch.zeros(2, 3, 2)})
    with pytest.raises(ValidationError, match="call reset"):
        module({net.stim: torch.zeros(3, 3, 2)})


def test_error_unsupported_operator():
    """A custom object whose builder adds an operator nobody can run: it has no
    make_step of its own (one with a make_step runs it: test_adversarial.py)."""
    from nengo.builder import Builder, Operator

    class Blink(Operator):
        def __init__(self, sig):
            super().__init__(tag="blink")
            self.sets, self.incs, self.reads, self.updates = [sig], [], [], []

    class BlinkNode(nengo.Node):
        pass

    @Builder.register(BlinkNode)
    def build_blink(model, node):
        nengo.builder.node.build_node(model, node)
        model.add_op(Blink(nengo.builder.Signal(np.zeros(1), name="blink")))

    try:
        with nengo.Network() as net:
            BlinkNode(size_in=1)
        with pytest.raises(BuildError, match="operator type 'Blink'"):
            NengoModule(net)
    finally:
        del Builder.builders[BlinkNode]


def test_custom_neuron_type_falls_back_with_warning():
    class Clipped(nengo.RectifiedLinear):
        def step(self, dt, J, output):
            output[...] = np.clip(J, 0, 5)

    with nengo.Network(seed=6) as net:
        stim = nengo.Node(lambda t: np.sin(10 * t))
        ens = nengo.Ensemble(10, 1, neuron_type=Clipped())
        nengo.Connection(stim, ens)
        p = nengo.Probe(ens.neurons)
    with nengo.Simulator(net, progress_bar=False) as ref:
        ref.run_steps(100)
    with pytest.warns(UserWarning, match="Clipped"):
        with Simulator(net, progress_bar=False) as sim:
            sim.run_steps(100)
    np.testing.assert_allclose(sim.data[p], ref.data[p], atol=1e-12)


def test_settings_keep_history_inference_only_stateful():
    net = rate_net()
    with net:
        snntorch_nengo.configure_settings(
            keep_history=False, inference_only=True, stateful=False
        )
    module = NengoModule(net)
    out = module({net.stim: torch.ones(2, 7, 2)})
    assert out[net.p].shape == (2, 1, 2)
    assert not out[net.p].requires_grad
    with Simulator(net, progress_bar=False) as sim:
        with pytest.raises(ValidationError, match="stateful=False"):
            sim.predict(n_steps=2, stateful=True)


def test_keep_history_false_is_last_value():
    net_a, net_b = rate_net(), rate_net()
    with net_b:
        snntorch_nengo.configure_settings(keep_history=False)
    x = torch.rand(2, 7, 2)
    full = NengoModule(net_a)({net_a.stim: x})[net_a.p]
    last = NengoModule(net_b)({net_b.stim: x})[net_b.p]
    torch.testing.assert_close(last[:, 0], full[:, -1])


def test_predict_with_another_batch_size_leaves_simulation_as_it_was():
    with nengo.Network(seed=8) as net:
        stim = nengo.Node(nengo.processes.WhiteNoise(), size_out=2)
        ens = nengo.Ensemble(10, 2)
        nengo.Connection(stim, ens)
        p = nengo.Probe(ens, synapse=0.01)
    with Simulator(net, progress_bar=False) as ref:
        ref.run_steps(20)
    with Simulator(net, progress_bar=False) as sim:
        sim.run_steps(10)
        out = sim.predict_on_batch({stim: np.zeros((3, 5, 2))})
        assert out[p].shape == (3, 5, 2)
        sim.run_steps(10)
    np.testing.assert_allclose(sim.data[p], ref.data[p], atol=1e-12)


def test_random_neurons_merge_the_same_way_every_build():
    """Builds of one network with two Poisson ensembles spike identically.

    nengo merges the two (and draws for both from one stream) in an order that
    changes from build to build; ours merges them in build order.
    """

    def build():
        with nengo.Network(seed=9) as net:
            stim = nengo.Node([0.5])
            probes = []
            for _ in range(2):
                ens = nengo.Ensemble(20, 1, neuron_type=nengo.PoissonSpiking(nengo.LIFRate()))
                nengo.Connection(stim, ens)
                probes.append(nengo.Probe(ens.neurons))
        return net, probes

    runs = []
    for _ in range(6):
        net, probes = build()
        with pytest.warns(UserWarning, match="Extra state has been modified"):
            with Simulator(net, progress_bar=False) as sim:
                sim.run_steps(50)
        runs.append([sim.data[p] for p in probes])
    for run in runs[1:]:
        for a, b in zip(runs[0], run):
            assert np.array_equal(a, b)
