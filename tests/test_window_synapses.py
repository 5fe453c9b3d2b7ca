"""Synapses in a window run as one scan call each (kernels.ops.linear_filter_scan)
and give the results of stepping: nengo.Simulator, the in-place strategy, and
functional stepping's gradients when training through them."""

import nengo
import numpy as np
import pytest
import torch

from snntorch_nengo import NengoModule, Simulator, configure_settings
from snntorch_nengo.kernels import ops as kernel_ops

# one synapse per nengo LinearFilter step variant, on connections and probes
GENERAL = nengo.LinearFilter([0.4, 1], [0.003, 1])  # D != 0: output before update
THIRD_ORDER = nengo.LinearFilter([1], [1e-9, 3e-6, 3e-3, 1])
NOX = nengo.LinearFilter([2.0], [1])


def synapse_net(neuron_type=nengo.LIF(), fed=False, seed=2, constant=False):
    with nengo.Network(seed=seed) as net:
        net.stim = nengo.Node(
            np.zeros(2) if fed else [0.6, -0.4] if constant else (
                lambda t: [np.sin(10 * t), 0.5 * np.cos(7 * t)]),
            label="stim",
        )
        a = nengo.Ensemble(40, 2, neuron_type=neuron_type, label="a")
        b = nengo.Ensemble(30, 2, neuron_type=neuron_type, label="b")
        out = nengo.Node(size_in=2, label="out")
        out2 = nengo.Node(size_in=2, label="out2")
        nengo.Connection(net.stim, a, synapse=nengo.Lowpass(0.005))
        nengo.Connection(a, b, synapse=nengo.Alpha(0.004))
        nengo.Connection(a.neurons, b.neurons, synapse=GENERAL,
                         transform=np.random.RandomState(0).uniform(-0.02, 0.02, (30, 40)))
        nengo.Connection(b, out, synapse=THIRD_ORDER)
        nengo.Connection(a, out2, synapse=NOX)
        net.p_out = nengo.Probe(out, synapse=0.01, label="p_out")
        net.p_b = nengo.Probe(b, synapse=nengo.Alpha(0.002), label="p_b")
        net.p_a = nengo.Probe(a.neurons, synapse=0.005, label="p_a")
        net.p_out2 = nengo.Probe(out2, label="p_out2")
        net.p_spikes = nengo.Probe(b.neurons, label="p_spikes")
    return net


def linear_filters(sim):
    return [op for op in sim.model.operators
            if isinstance(op, nengo.builder.processes.SimProcess)
            and isinstance(op.process, nengo.LinearFilter)]


class Calls(list):
    held: list


@pytest.fixture
def scan_calls(monkeypatch):
    calls, held = Calls(), []
    calls.held = held  # per call: whether its input was one row held over the window
    scan = kernel_ops.linear_filter_scan

    def counted(u, x0, *args, **kwargs):
        calls.append(tuple(u.shape))
        held.append(u.shape[0] > 1 and u.stride(0) == 0)
        return scan(u, x0, *args, **kwargs)

    monkeypatch.setattr(kernel_ops, "linear_filter_scan", counted)
    return calls


def run(net, windowed, steps=(120, 37), dtype="float64"):
    with net:
        configure_settings(windowed=windowed)
    with Simulator(net, progress_bar=False, dtype=dtype) as sim:
        for n in steps:  # two windows: the synapses' states carry over
            sim.run_steps(n)
        strategy = sim.explain().strategy
        n_filters = len(linear_filters(sim))
        return {p.label: sim.data[p] for p in net.all_probes}, strategy, n_filters


@pytest.mark.parametrize("constant", [False, True], ids=["varying", "constant"])
def test_window_scans_equal_in_place_and_nengo(scan_calls, constant):
    windowed, strategy, n_filters = run(synapse_net(constant=constant), True)
    # a constant input's synapse scans one row held over the window
    assert any(scan_calls.held) == constant
    assert strategy == "windowed"
    # every LinearFilter but the passthrough (NoX) is one scan per window
    assert len(scan_calls) == 2 * (n_filters - 1)
    assert all(shape[0] in (120, 37) for shape in scan_calls)
    in_place, strategy, _ = run(synapse_net(constant=constant), False)
    assert strategy == "in_place"
    with nengo.Simulator(synapse_net(constant=constant), progress_bar=False) as ref:
        ref.run_steps(157)
    for label in windowed:
        np.testing.assert_allclose(windowed[label], in_place[label], rtol=0, atol=1e-12,
                                   err_msg=label)
        probe = next(p for p in ref.model.probes if p.label == label)
        np.testing.assert_allclose(windowed[label], ref.data[probe], rtol=0, atol=1e-10,
                                   err_msg=label)
        assert np.any(windowed[label] != 0), label
    np.testing.assert_array_equal(windowed["p_spikes"], in_place["p_spikes"])


def test_float32_window_close_to_in_place():
    windowed, _, _ = run(synapse_net(nengo.RectifiedLinear()), True, dtype="float32")
    in_place, _, _ = run(synapse_net(nengo.RectifiedLinear()), False, dtype="float32")
    for label in windowed:
        assert windowed[label].dtype == np.float32
        # (the products of a window sum in another order: float32 rounding,
        # relative to the signal's scale)
        scale = np.abs(in_place[label]).max()
        np.testing.assert_allclose(windowed[label], in_place[label], rtol=0,
                                   atol=2e-5 * scale, err_msg=label)


@pytest.mark.parametrize("held", [False, True], ids=["varying", "held"])
def test_minibatch_predict_scans_every_sample(scan_calls, held):
    x = np.random.RandomState(1).uniform(-1, 1, (3, 60, 2))
    if held:  # the same input at every step: the first synapse scans one row
        x = np.broadcast_to(x[:, :1], x.shape)
    results = []
    for windowed in (True, False):
        net = synapse_net(fed=True)
        with net:
            configure_settings(windowed=windowed)
        with Simulator(net, progress_bar=False, minibatch_size=3, dtype="float64") as sim:
            data = sim.predict({net.stim: x}, n_steps=60)
            assert sim.explain().strategy == ("windowed" if windowed else "in_place")
        results.append({p.label: data[p] for p in net.all_probes})
        if windowed:
            assert scan_calls and all(shape[0] == 60 for shape in scan_calls)
            # batch x the filtered signal's size, in one call
            assert (60, 3 * 40) in scan_calls
            assert any(scan_calls.held) == held
    for label in results[0]:
        np.testing.assert_allclose(results[0][label], results[1][label], rtol=0, atol=1e-12,
                                   err_msg=label)


@pytest.mark.parametrize("held", [False, True], ids=["varying", "held"])
@pytest.mark.parametrize("neuron_type", [nengo.LIF(), nengo.SpikingRectifiedLinear()],
                         ids=repr)
def test_training_gradients_through_synapses_equal_functional(neuron_type, held,
                                                              scan_calls):
    x = torch.as_tensor(np.random.RandomState(0).uniform(-1, 1, (4, 40, 2)))
    if held:
        x = x[:, :1].expand(x.shape)
    results = []
    for windowed in (False, True):
        net = synapse_net(neuron_type, fed=True)
        with net:
            configure_settings(windowed=windowed)
        module = NengoModule(net, dtype=torch.float64).train()
        xs = x.clone().requires_grad_(True)
        out = module({net.stim: xs})
        assert module.explain().strategy == ("windowed" if windowed else "functional")
        loss = sum(out[p].square().mean() for p in (net.p_out, net.p_b, net.p_a, net.p_out2))
        params = [p for p in module.parameters() if p.requires_grad]
        grads = torch.autograd.grad(loss, params + [xs])
        results.append((loss, grads))
    assert scan_calls  # the windowed run trained through the scan
    assert any(scan_calls.held) == held
    (l1, g1), (l2, g2) = results
    torch.testing.assert_close(l1, l2, rtol=1e-12, atol=1e-14)
    assert any(bool(g.abs().sum() > 0) for g in g1)
    if held:
        # a window reads a fed input that is the same at every step once (its
        # first step's row), so the input's gradient lands there: compare its
        # sums over the steps
        g1, g2 = g1[:-1] + (g1[-1].sum(1),), g2[:-1] + (g2[-1].sum(1),)
    for a, b in zip(g1, g2):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-12)
