"""torch's own tools on a NengoModule: Module.to, torch.export."""

import nengo
import numpy as np
import pytest
import torch

from snntorch_nengo import NengoModule


def feed_forward(neuron_type=nengo.LIF(), seed=0):
    with nengo.Network(seed=seed) as net:
        a = nengo.Node(np.zeros(3), label="a")
        hidden = nengo.Ensemble(30, 3, neuron_type=neuron_type)
        nengo.Connection(a, hidden)
        out = nengo.Node(size_in=2)
        nengo.Connection(hidden, out, transform=np.ones((2, 3)) / 3, synapse=0.01)
        net.p = nengo.Probe(out)
        net.p_spikes = nengo.Probe(hidden.neurons)
    return net


def recurrent(seed=0):
    """Stepped, merged: an integrator."""
    with nengo.Network(seed=seed) as net:
        a = nengo.Node(np.zeros(2), label="a")
        ens = nengo.Ensemble(40, 2)
        nengo.Connection(a, ens, transform=0.1)
        nengo.Connection(ens, ens, synapse=0.1)
        net.p = nengo.Probe(ens, synapse=0.01)
        net.p_spikes = nengo.Probe(ens.neurons)
    return net


@pytest.mark.parametrize("make", [feed_forward, recurrent])
def test_to_float64_equals_a_float64_module(make):
    """``.to(torch.float64)`` converts parameters, state and the engine's constants.

    A float32-built module holds float32-rounded parameters: the float64 module
    it is compared with gets the same values (its state dict), so the two must
    then agree to float64 rounding.
    """
    net = make()
    d = 3 if make is feed_forward else 2
    x = torch.as_tensor(np.random.RandomState(1).uniform(-1, 1, (2, 40, d)))
    m32 = NengoModule(net, seed=3, dtype=torch.float32)
    moved = m32.to(torch.float64)
    assert moved is m32 and m32.dtype == torch.float64
    assert m32.engine.dtype == torch.float64
    floats = [t for t in m32.state_dict().values() if t.is_floating_point()]
    assert floats and all(t.dtype == torch.float64 for t in floats)
    out = m32(x)

    m64 = NengoModule(net, seed=3, dtype=torch.float64)
    m64.load_state_dict(NengoModule(net, seed=3, dtype=torch.float32).state_dict())
    ref = m64(x)
    for probe in (net.p, net.p_spikes):
        assert out[probe].dtype == torch.float64
        torch.testing.assert_close(out[probe], ref[probe], rtol=1e-12, atol=1e-12)
    # against the module built in float64: only float32 parameter rounding
    built = NengoModule(net, seed=3, dtype=torch.float64)
    assert (built(x)[net.p] - out[net.p]).abs().max() < 1e-4

    # mid-run: the state carries over, converted
    state = {
        base: value.float() if value.is_floating_point() else value
        for base, value in m32.state().items()
    }
    back = m32.to(torch.float32)
    for base, value in back.state().items():
        torch.testing.assert_close(value, state[base], rtol=0, atol=0)
    assert back(x[:, :5])[net.p].dtype == torch.float32
    assert back.n_steps == 45


def test_to_device_moves_engine_constants():
    net = feed_forward()
    x = torch.rand(1, 20, 3)
    m = NengoModule(net, seed=2)
    ref = m(x)[net.p]
    m.reset()
    m.to(torch.device("cpu")).to("cpu", torch.float32)
    assert m.device == torch.device("cpu")
    torch.testing.assert_close(m(x)[net.p], ref, rtol=0, atol=0)


class _Wrapped(torch.nn.Module):
    """A torch model around a NengoModule: what a user exports."""

    def __init__(self, module, node, probe, n_steps):
        super().__init__()
        self.nengo, self.node, self.probe, self.n_steps = module, node, probe, n_steps

    def forward(self, x):
        return self.nengo(inputs={self.node: x}, n_steps=self.n_steps)[self.probe]


@pytest.mark.parametrize("make", [feed_forward, recurrent])
@pytest.mark.parametrize("neuron_type", [nengo.LIF(), nengo.RectifiedLinear()])
def test_torch_export_runs_like_the_module(make, neuron_type):
    net = make(neuron_type=neuron_type) if make is feed_forward else make()
    node = next(n for n in net.all_nodes if n.label == "a")
    module = NengoModule(net)
    model = _Wrapped(module, node, net.p, n_steps=6)
    x = torch.randn(2, 6, 3 if make is feed_forward else 2, dtype=module.dtype,
                    generator=torch.Generator().manual_seed(1))
    exported = torch.export.export(model, (x,))
    module.reset()
    expected = model(x)
    assert expected.abs().max() > 0
    torch.testing.assert_close(exported.module()(x), expected, rtol=1e-12, atol=1e-12)


def windowed_lif(synapse=nengo.Default, probe_synapse=0.01, seed=0):
    """A small feed-forward LIF net: Nengo's default synapses between layers."""
    with nengo.Network(seed=seed) as net:
        a = nengo.Node(np.zeros(3), label="a")
        hidden = nengo.Ensemble(12, 3)
        nengo.Connection(a, hidden, synapse=synapse)
        out = nengo.Ensemble(8, 1)
        nengo.Connection(hidden.neurons, out.neurons, synapse=synapse,
                         transform=np.random.RandomState(seed).uniform(-1, 1, (8, 12)))
        net.p = nengo.Probe(out.neurons, synapse=probe_synapse)
        net.p_spikes = nengo.Probe(hidden.neurons)
    return net


def _inputs(n_steps, batch=2, seed=1):
    return torch.rand(batch, n_steps, 3, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("synapse, fed", [(nengo.Default, True), (nengo.Default, False),
                                          (None, True)])
def test_torch_compile_windowed_run_is_one_graph(synapse, fed):
    """The windowed path traces as one graph: nothing in it falls back to Python.

    The one break is before the graph, where runs with fed data check whether
    it is the same at every step (`window.held_feeds`), which a graph cannot
    branch on. (A first call at a new batch size also resets, making the step
    functions, outside the graph: ``minibatch_size`` leaves that out here.)
    """
    from torch._dynamo.utils import counters

    net = windowed_lif(synapse=synapse, probe_synapse=0.01 if synapse else None)
    module = NengoModule(net, minibatch_size=2)
    args = (_inputs(6),) if fed else (None, 6)
    with torch.no_grad():
        torch._dynamo.explain(module)(*args)  # the first trace makes the check's wrapper
        module.reset()
        counters.clear()
        explained = torch._dynamo.explain(module)(*args)
    assert module.explain().strategy == "windowed"
    assert explained.graph_count == 1 and explained.graph_break_count == 0
    breaks = list(counters["graph_break"])
    if fed:
        assert len(breaks) == 1 and "held_feeds" in breaks[0], breaks
    else:
        assert breaks == []


def test_torch_compile_equals_eager():
    """``torch.compile(module)`` (inductor) gives eager's results bit for bit,
    from a reset and with the state carried over between calls."""
    net = windowed_lif()
    module = NengoModule(net)
    compiled = torch.compile(module)
    xs = [_inputs(8, seed=k) for k in range(3)]
    with torch.no_grad():
        expected = [module(x) for x in xs]
        module.reset()
        got = [compiled(x) for x in xs]
        assert module.n_steps == 24
    assert module.explain().strategy == "windowed"
    assert expected[0][net.p].abs().max() > 0
    for want, out in zip(expected, got):
        for probe in (net.p, net.p_spikes):
            assert torch.equal(out[probe], want[probe])


def test_torch_compile_carried_state_compiles_once_more():
    """A run starting where the last ended compiles once more (its start step
    becomes an input), not once per start step; data the same at every step,
    copied per step (checked before the graph), gives eager's results."""
    from torch._dynamo.testing import CompileCounter

    net = windowed_lif()
    module = NengoModule(net, minibatch_size=2)  # no reset for a new batch size
    held = [_inputs(1, seed=k).expand(2, 5, 3).contiguous() for k in range(5)]
    with torch.no_grad():
        expected = [module(x)[net.p] for x in held]
        module.reset()
        counter = CompileCounter()
        compiled = torch.compile(module, backend=counter)
        got = [compiled(held[0])[net.p], compiled(held[1])[net.p]]
        if not hasattr(torch._dynamo, "patch_dynamo_config"):
            pytest.skip("this torch cannot read the start step as an input")
        before = counter.frame_count  # the start step changed: compiled again
        got += [compiled(x)[net.p] for x in held[2:]]
    assert counter.frame_count == before
    assert module.n_steps == 25
    assert expected[0].abs().max() > 0
    for want, out in zip(expected, got):
        assert torch.equal(out, want)
