"""Windowed runs equal step-by-step runs (engine/window.py)."""

import nengo
import numpy as np
import pytest
import torch

from snntorch_nengo import NengoModule, Simulator, TensorNode, configure_settings
from snntorch_nengo.engine import window
from snntorch_nengo.engine.strategies import windowed as windowed_strategy

SPIKING = [nengo.LIF(), nengo.AdaptiveLIF(), nengo.SpikingRectifiedLinear(),
           nengo.RegularSpiking(nengo.Tanh())]
RATE = [nengo.RectifiedLinear(), nengo.LIFRate(), nengo.Sigmoid(), nengo.Tanh()]


def feed_forward(neuron_type, synapse=0.005, seed=3, stim=None):
    with nengo.Network(seed=seed) as net:
        net.stim = nengo.Node(stim if stim is not None else [0.3, -0.5], label="stim")
        a = nengo.Ensemble(40, 2, neuron_type=neuron_type, label="a")
        b = nengo.Ensemble(30, 1, neuron_type=neuron_type, label="b")
        net.out = nengo.Node(size_in=1, label="out")
        nengo.Connection(net.stim, a, synapse=None)
        nengo.Connection(a, b, function=lambda x: x[0] * x[1], synapse=synapse)
        nengo.Connection(b.neurons, net.out, transform=np.ones((1, 30)) / 300,
                         synapse=nengo.Alpha(0.004))
        net.p_out = nengo.Probe(net.out)
        net.p_b = nengo.Probe(b, synapse=0.01, sample_every=0.003)
        net.p_spikes = nengo.Probe(a.neurons)
        net.p_voltage = nengo.Probe(b.neurons, "input")
    return net


def run(net, windowed, steps=(120, 37), dtype="float64", **kwargs):
    with net:
        configure_settings(windowed=windowed)
    with Simulator(net, progress_bar=False, dtype=dtype, **kwargs) as sim:
        for n in steps:  # two windows: state carries over between them
            sim.run_steps(n)
        plan = sim.module.engine.window_plan
        return {p.label or i: sim.data[p] for i, p in enumerate(net.all_probes)}, plan


def assert_same(a, b, atol=1e-12, rtol=0):
    assert list(a) == list(b)
    for key in a:
        np.testing.assert_allclose(a[key], b[key], atol=atol, rtol=rtol, err_msg=str(key))


@pytest.mark.parametrize("neuron_type", SPIKING + RATE, ids=repr)
def test_window_equals_stepping(neuron_type):
    stepped, _ = run(feed_forward(neuron_type), False)
    windowed, plan = run(feed_forward(neuron_type), True)
    assert plan.eligible, plan.reason
    assert_same(stepped, windowed)
    if neuron_type.spiking:  # a few spikes would differ if anything were off
        for p in stepped:
            assert np.any(stepped[p] != 0)


def test_window_matches_reference_simulator():
    net = feed_forward(nengo.LIF(), stim=lambda t: [np.sin(20 * t), 0.5])
    windowed, plan = run(net, True)
    assert plan.eligible
    with nengo.Simulator(net, progress_bar=False) as ref:
        ref.run_steps(157)
    probes = list(net.all_probes)
    spikes, out = probes.index(net.p_spikes), probes.index(net.p_out)
    np.testing.assert_array_equal(windowed[spikes], ref.data[net.p_spikes])
    np.testing.assert_allclose(windowed[out], ref.data[net.p_out], atol=1e-10)


@pytest.mark.parametrize("held", [False, True], ids=["varying", "held"])
def test_fed_minibatch_and_fit_gradients_equal(held):
    def build():
        with nengo.Network(seed=1) as net:
            net.stim = nengo.Node(np.zeros(3))
            ens = nengo.Ensemble(25, 3, neuron_type=nengo.LIF())
            net.out = nengo.Node(size_in=2)
            nengo.Connection(net.stim, ens, synapse=None)
            nengo.Connection(ens, net.out, transform=np.ones((2, 3)) / 3, synapse=0.01)
            net.p = nengo.Probe(net.out)
        return net

    x = torch.as_tensor(np.random.RandomState(0).uniform(-1, 1, (4, 30, 3)))
    if held:  # the same input at every step: its products run once per sample
        x = x[:, :1].expand(4, 30, 3)
    results = []
    for windowed in (False, True):
        net = build()
        with net:
            configure_settings(windowed=windowed)
        module = NengoModule(net, dtype=torch.float64)
        assert module.engine.window_plan.eligible or not windowed
        out = module({net.stim: x})[net.p]
        module.train()  # rate swap: gradients through LIFRate
        module.reset()
        loss = module({net.stim: x})[net.p].square().mean()
        grads = torch.autograd.grad(loss, [p for p in module.parameters()])
        results.append((out, loss, grads))
    (o1, l1, g1), (o2, l2, g2) = results
    torch.testing.assert_close(o1, o2, rtol=0, atol=1e-12)
    torch.testing.assert_close(l1, l2, rtol=1e-12, atol=1e-14)
    for a, b in zip(g1, g2):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-14)


def test_python_and_tensor_nodes_in_a_window():
    calls = []

    def fn(t, x):
        calls.append(t)
        return x * t

    with nengo.Network(seed=2) as net:
        stim = nengo.Node(lambda t: [np.cos(10 * t)])
        node = nengo.Node(fn, size_in=1)
        tnode = TensorNode(lambda t, x: torch.tanh(3 * x) + t, shape_in=(1,),
                           pass_time=True)
        ens = nengo.Ensemble(20, 1, neuron_type=nengo.SpikingRectifiedLinear())
        nengo.Connection(stim, node, synapse=0.003)
        nengo.Connection(node, tnode, synapse=None)
        nengo.Connection(tnode, ens)
        net.p = nengo.Probe(ens, synapse=0.01)
        net.pt = nengo.Probe(tnode)
    calls.clear()
    stepped, _ = run(net, False)
    assert len(calls) == 157
    calls.clear()
    windowed, plan = run(net, True)
    assert plan.eligible, plan.reason
    assert len(calls) == 157  # once per step, as stepping
    assert_same(stepped, windowed)


@pytest.mark.parametrize("kind", ["recurrent", "learning"])
def test_loops_across_time_step(kind):
    with nengo.Network(seed=0) as net:
        stim = nengo.Node([0.5])
        a = nengo.Ensemble(30, 1)
        b = nengo.Ensemble(30, 1)
        nengo.Connection(stim, a)
        if kind == "recurrent":
            nengo.Connection(a, a, synapse=0.1)
            nengo.Connection(a, b)
        else:
            conn = nengo.Connection(a, b, learning_rule_type=nengo.PES())
            nengo.Connection(b, conn.learning_rule)
        net.p = nengo.Probe(b, synapse=0.01)
    stepped, _ = run(net, False)
    windowed, plan = run(net, True)
    assert not plan.eligible
    assert_same(stepped, windowed)  # both step (two merges may sum in other orders)
    _, plan = run(net, True, optimize=False)
    expected = "a loop across time steps" if kind == "recurrent" else "no windowed form"
    assert expected in plan.reason


def test_float32_window_close_to_stepping():
    stepped, _ = run(feed_forward(nengo.RectifiedLinear()), False, dtype="float32")
    windowed, _ = run(feed_forward(nengo.RectifiedLinear()), True, dtype="float32")
    # the matrix products sum in another order: equal to float32 rounding
    assert_same(stepped, windowed, atol=1e-5, rtol=1e-4)


def test_compiled_step_equals_eager():
    """Simulator(torch_compile=True): the compiled step gives the eager step's results."""
    with nengo.Network(seed=4) as net:
        stim = nengo.Node([0.7])  # no Python code in the step: one graph
        a = nengo.Ensemble(20, 1, neuron_type=nengo.SpikingRectifiedLinear())
        nengo.Connection(stim, a)
        nengo.Connection(a, a, synapse=0.05)  # recurrent: it steps
        net.p = nengo.Probe(a, synapse=0.01)
        net.ps = nengo.Probe(a.neurons)
    results = []
    for compile in (False, True):
        with Simulator(net, progress_bar=False, torch_compile=compile) as sim:
            assert not sim.module.engine.window_plan.eligible
            sim.run_steps(30)
            sim.run_steps(20)
            results.append((sim.data[net.p], sim.data[net.ps]))
    np.testing.assert_allclose(results[0][0], results[1][0], atol=1e-10)
    np.testing.assert_array_equal(results[0][1], results[1][1])


def _windows(monkeypatch):
    """Record (steps, held inputs) of each window run."""
    calls = []
    original = window.WindowPlan.run
    same = window._same_every_step

    def spy(self, values, op_steps, n_steps, *args, **kwargs):
        calls.append([n_steps, []])
        return original(self, values, op_steps, n_steps, *args, **kwargs)

    def spy_same(data):
        result = same(data)
        calls[-1][1].append(result)
        return result

    monkeypatch.setattr(window.WindowPlan, "run", spy)
    monkeypatch.setattr(window, "_same_every_step", spy_same)
    return calls


def test_long_windows_run_in_chunks(monkeypatch):
    """Chunks carry their state and probe schedule into the next one."""
    stepped, _ = run(feed_forward(nengo.LIF()), False)
    monkeypatch.setattr(windowed_strategy, "CHUNK_ROWS", 25)
    calls = _windows(monkeypatch)
    chunked, plan = run(feed_forward(nengo.LIF()), True)
    assert plan.eligible
    assert [n for n, _ in calls] == [25] * 4 + [20] + [25, 12]  # runs of 120, 37
    assert_same(stepped, chunked)


@pytest.mark.parametrize("kind", ["broadcast", "tiled", "varying"])
def test_inputs_held_over_the_window(monkeypatch, kind):
    rng = np.random.RandomState(2)
    x = rng.uniform(-1, 1, (3, 1, 2))
    x = {
        "broadcast": np.broadcast_to(x, (3, 50, 2)),
        "tiled": np.tile(x, (1, 50, 1)),
        "varying": rng.uniform(-1, 1, (3, 50, 2)),
    }[kind]
    outs = []
    calls = _windows(monkeypatch)
    for windowed in (False, True):
        net = feed_forward(nengo.SpikingRectifiedLinear())
        with net:
            configure_settings(windowed=windowed)
        with Simulator(net, progress_bar=False, dtype="float64", minibatch_size=3) as sim:
            outs.append(sim.predict({net.stim: x}, n_steps=50))
    assert calls == [[50, [kind != "varying"]]]
    for stepped, windowed in zip(outs[0].values(), outs[1].values()):
        np.testing.assert_allclose(stepped, windowed, atol=1e-12, rtol=0)
    assert np.any(stepped != 0)


def test_spike_products_are_event_driven(monkeypatch):
    """Weights from spiking neurons over a window of many rows run through
    the event-driven C++ product (`kernels.cpp.spike_matmul`) and equal stepping."""
    from snntorch_nengo.kernels import cpp, ops

    if not cpp.AVAILABLE:
        pytest.skip("the C++ kernels were not built")
    calls = []
    original = cpp.spike_matmul

    def spy(X, Wt, max_density):
        calls.append(float((X != 0).float().mean()))
        return original(X, Wt, max_density)

    monkeypatch.setattr(cpp, "spike_matmul", spy)
    rng = np.random.RandomState(4)
    w_in, w_ab = rng.uniform(-1, 1, (80, 30)), rng.uniform(-0.02, 0.05, (70, 80))

    def build():
        with nengo.Network(seed=5) as net:
            net.stim = nengo.Node(np.zeros(30), label="stim")
            a = nengo.Ensemble(80, 1, neuron_type=nengo.SpikingRectifiedLinear(),
                               max_rates=nengo.dists.Uniform(20, 60))
            b = nengo.Ensemble(70, 1, neuron_type=nengo.SpikingRectifiedLinear())
            nengo.Connection(net.stim, a.neurons, transform=w_in, synapse=None)
            nengo.Connection(a.neurons, b.neurons, transform=w_ab, synapse=None)
            net.p = nengo.Probe(b.neurons)
        return net

    x = rng.uniform(-1, 1, (4, 100, 30))
    outs = []
    for windowed in (False, True):
        net = build()
        with net:
            configure_settings(windowed=windowed)
        with Simulator(net, progress_bar=False, dtype="float64", minibatch_size=4) as sim:
            outs.append(sim.predict({net.stim: x}, n_steps=100)[net.p])
    assert len(calls) == 1 and 0 < calls[0] < ops.SPIKE_DENSITY  # the sparse branch
    assert np.any(outs[0] != 0)
    np.testing.assert_allclose(outs[0], outs[1], atol=1e-9, rtol=0)


def test_scanned_increment_between_held_writes():
    """A bias (held), then noise added step by step, then a product of a held
    input: the noise must survive the product's increment (nengo's
    test_noise_gen caught this once). One noise process: the reference seeds
    processes in its step order, which may differ from ours between builds."""
    with nengo.Network(seed=1) as net:
        net.config[nengo.Ensemble].neuron_type = nengo.RectifiedLinear()
        ens = nengo.Ensemble(
            3, 1, noise=nengo.processes.WhiteNoise(nengo.dists.Uniform(-5, 5))
        )
        nengo.Probe(ens.neurons, synapse=0.01)
    windowed, plan = run(net, True)
    assert plan.eligible
    with nengo.Simulator(net, progress_bar=False) as ref:
        ref.run_steps(157)
    (p,) = net.all_probes
    np.testing.assert_allclose(windowed[0], ref.data[p], atol=1e-10)
