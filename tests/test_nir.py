"""NIR export and import (snntorch_nengo.export.nir)."""

import warnings

import nengo
import nir  # in the [tests] extra (and the [nir] extra)
import numpy as np
import pytest
import torch
from nengo.exceptions import ValidationError

import snntorch_nengo
from snntorch_nengo.export.nir import NIRWarning, export_nir, import_nir

ZERO = {"voltage": nengo.dists.Choice([0])}


def mixed_net():
    """LIF (amplitude, refractory), SpikingRectifiedLinear, decoded and neuron
    connections, Lowpass synapses, a passthrough Node, three kinds of probes."""
    with nengo.Network(seed=3) as net:
        net.inp = nengo.Node(np.zeros(2), label="x")
        a = nengo.Ensemble(
            40, 2, neuron_type=nengo.LIF(initial_state=ZERO, amplitude=0.5), label="a"
        )
        b = nengo.Ensemble(30, 1, neuron_type=nengo.LIF(initial_state=ZERO), label="b")
        c = nengo.Ensemble(
            20, 1, neuron_type=nengo.SpikingRectifiedLinear(initial_state=ZERO), label="c"
        )
        mid = nengo.Node(size_in=1, label="mid")
        nengo.Connection(net.inp, a, synapse=None)
        nengo.Connection(a, b, function=lambda x: x[0] * x[1], synapse=0.01)
        nengo.Connection(b, mid, synapse=None)
        nengo.Connection(mid, c, synapse=0.005)
        nengo.Connection(
            a.neurons,
            c[0],
            transform=np.random.RandomState(0).randn(1, 40) * 0.01,
            synapse=0.005,
        )
        net.my_probes = [
            nengo.Probe(b, synapse=0.02, label="b_out"),
            nengo.Probe(c.neurons, label="c_spikes"),
            nengo.Probe(mid, label="mid_out"),
            nengo.Probe(a.neurons[:5], synapse=0.01, label="a_some"),
        ]
    return net


def signal(n_steps=400):
    t = np.arange(n_steps) * 0.001
    return np.stack([np.sin(2 * np.pi * t), np.cos(2 * np.pi * 3 * t)], axis=-1)


def run_ours(net, inp, probes, x):
    with snntorch_nengo.Simulator(net, progress_bar=False) as sim:
        out = sim.predict({inp: x[None]})
    return [out[p][0] for p in probes]


def run_nengo(net, inp, probes, x):
    inp.output = nengo.processes.PresentInput(x, 0.001)
    try:
        with nengo.Simulator(net, progress_bar=False) as sim:
            sim.run_steps(len(x))
    finally:
        inp.output = np.zeros(x.shape[1])
    return [sim.data[p] for p in probes]


def exported(net, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NIRWarning)
        return export_nir(net, **kwargs)


def test_round_trip_equal_outputs():
    net = mixed_net()
    graph = exported(net)
    back = import_nir(graph)
    x = signal()
    names = [p.label for p in net.my_probes]
    probes2 = [back.outputs[n] for n in names]
    ours = run_ours(net, net.inp, net.my_probes, x)
    ours2 = run_ours(back, back.inputs["x"], probes2, x)
    ref = run_nengo(net, net.inp, net.my_probes, x)
    ref2 = run_nengo(back, back.inputs["x"], probes2, x)
    for name, a, b, c, d in zip(names, ours, ours2, ref, ref2):
        assert a.shape == b.shape, name
        assert np.any(a != 0), f"{name}: no activity, the test would be vacuous"
        # the same dynamics; only the order of summation differs (weights are
        # pre-multiplied into one matrix), so spikes agree exactly here
        scale = np.abs(a).max()
        np.testing.assert_allclose(b, a, atol=1e-9 * scale, err_msg=name)
        np.testing.assert_allclose(c, a, atol=1e-9 * scale, err_msg=name)
        np.testing.assert_allclose(d, a, atol=1e-9 * scale, err_msg=name)


def test_round_trip_through_a_file(tmp_path):
    net = mixed_net()
    path = tmp_path / "net.nir"
    nir.write(path, exported(net))
    back = import_nir(path)  # reads the file; metadata restores tau_ref etc.
    a = back.nir_objects["a"]
    assert a.neuron_type.tau_ref == 0.002 and a.neuron_type.min_voltage == 0
    x = signal(200)
    probes2 = [back.outputs[p.label] for p in net.my_probes]
    for p, a, b in zip(
        net.my_probes,
        run_ours(net, net.inp, net.my_probes, x),
        run_ours(back, back.inputs["x"], probes2, x),
    ):
        np.testing.assert_allclose(b, a, atol=1e-9 * np.abs(a).max(), err_msg=p.label)


def test_mapping():
    net = mixed_net()
    graph = exported(net, bias="v_leak")
    nodes = graph.nodes
    # b's only input has a Lowpass(0.01): the synapse is the CubaLIF's
    assert isinstance(nodes["b"], nir.CubaLIF)
    np.testing.assert_allclose(nodes["b"].tau_syn, 0.01)
    np.testing.assert_allclose(nodes["b"].tau_mem, 0.02)
    assert isinstance(nodes["a"], nir.LIF) and isinstance(nodes["c"], nir.IF)
    assert isinstance(nodes["x"], nir.Input) and isinstance(nodes["b_out"], nir.Output)
    assert isinstance(nodes["b_out_synapse"], nir.LI)
    # c has two inputs with Lowpass synapses: LI nodes in front of its bias Affine
    lis = [s for s, d in graph.edges if d == "c_bias" and isinstance(nodes[s], nir.LI)]
    assert len(lis) == 2
    # the neuron connection a -> c[0]: transform * amplitude(a) * encoder/gain(c)
    with nengo.Simulator(net, progress_bar=False) as sim:
        built_c = sim.data[net.all_ensembles[2]]
        bias_a = sim.data[net.all_ensembles[0]].bias
    conn = net.all_connections[4]
    lin = [d for s, d in graph.edges if s == "a" and not d.startswith("connection_1")]
    w = [
        nodes[n].weight
        for n in lin
        if isinstance(nodes[n], nir.Linear) and nodes[n].weight.shape == (20, 40)
    ][0]
    expected = built_c.scaled_encoders[:, :1] @ (conn.transform.init * 0.5)
    np.testing.assert_allclose(w, expected, rtol=1e-12)
    np.testing.assert_allclose(nodes["a"].v_leak, bias_a)
    assert nodes["a"].metadata["nengo"]["tau_ref"] == 0.002


def test_bias_in_the_input_current():
    """The default: v_leak = 0, the bias in the Affine in front of each LIF."""
    net = mixed_net()
    graph = exported(net)
    nodes = graph.nodes
    a, b = net.all_ensembles[:2]
    with nengo.Simulator(net, progress_bar=False) as sim:
        bias_a, bias_b = sim.data[a].bias, sim.data[b].bias
    for name in ("a", "b"):
        assert type(nodes[name]) is nir.LIF, name  # b: no CubaLIF (it would filter)
        np.testing.assert_array_equal(nodes[name].v_leak, 0)
    # a has one input without synapse: that connection's Linear became an Affine
    (into_a,) = [s for s, d in graph.edges if d == "a"]
    assert type(nodes[into_a]) is nir.Affine
    np.testing.assert_allclose(nodes[into_a].bias, bias_a)
    # b's input is filtered: LI (the synapse), then the bias, then the LIF
    (into_b,) = [s for s, d in graph.edges if d == "b"]
    assert into_b == "b_bias" and type(nodes[into_b]) is nir.Affine
    np.testing.assert_allclose(nodes[into_b].bias, bias_b)
    assert [type(nodes[s]) for s, d in graph.edges if d == "b_bias"] == [nir.LI]
    with pytest.raises(ValidationError, match="bias='x'.*'input'.*'v_leak'"):
        export_nir(net, bias="x")
    with pytest.raises(ValidationError, match="spike_scale=0 must be a positive"):
        export_nir(net, spike_scale=0)


def test_spike_scale_round_trip():
    """spike_scale multiplies every weight after neurons; import divides it out
    (read from the graph's metadata, or given)."""
    net = mixed_net()
    plain, scaled = exported(net), exported(net, spike_scale=1000.0)
    assert scaled.metadata["spike_scale"] == 1000.0
    after = {d for s, d in plain.edges if s in ("a", "b", "c")}
    after = {d for d in after if type(plain.nodes[d]) in (nir.Linear, nir.Affine, nir.Scale)}
    assert len(after) >= 4  # a -> b, a.neurons -> c, a's probe, b's decoders
    # c's spikes (amplitude 1) need a Scale only when scaled
    assert [type(scaled.nodes[d]) for s, d in scaled.edges if s == "c"] == [nir.Scale]
    for name in after:
        w0, w1 = (
            getattr(g.nodes[name], "weight", getattr(g.nodes[name], "scale", None))
            for g in (plain, scaled)
        )
        np.testing.assert_allclose(w1, 1000.0 * w0, err_msg=name)
    x = signal(200)
    names = [p.label for p in net.my_probes]
    ref = run_ours(net, net.inp, net.my_probes, x)
    for back in (import_nir(scaled), import_nir(scaled, spike_scale=1000.0)):
        assert back.nir_objects["b"].neuron_type.amplitude == 1e-3
        got = run_ours(back, back.inputs["x"], [back.outputs[n] for n in names], x)
        for name, a, b in zip(names, ref, got):
            np.testing.assert_allclose(b, a, atol=1e-9 * np.abs(a).max(), err_msg=name)


def test_time_constant_options_round_trip():
    """tau_scale and euler_dt change the time constants written; import_nir
    (reading them from the graph's metadata) undoes them exactly."""
    net = mixed_net()
    plain = exported(net)
    scaled = exported(net, tau_scale=1000.0, euler_dt=0.001)
    h = 0.001
    for name in ("a", "b", "b_out_synapse"):
        tau = plain.nodes[name].tau
        np.testing.assert_allclose(
            scaled.nodes[name].tau, 1000.0 * h / -np.expm1(-h / tau), err_msg=name
        )
    x = signal(200)
    names = [p.label for p in net.my_probes]
    ref = run_ours(net, net.inp, net.my_probes, x)
    back = import_nir(scaled)
    assert back.nir_objects["b"].neuron_type.tau_rc == pytest.approx(0.02, rel=1e-12)
    got = run_ours(back, back.inputs["x"], [back.outputs[n] for n in names], x)
    for name, a, b in zip(names, ref, got):
        np.testing.assert_allclose(b, a, atol=1e-9 * np.abs(a).max(), err_msg=name)
    with pytest.raises(ValidationError, match="'a': tau = .* not above euler_dt"):
        import_nir(plain, euler_dt=0.05)


def test_import_torch_tensors_and_scalar_parameters():
    """As Norse (torch tensors) and snnTorch (one scalar per layer) write them:
    the same network as numpy arrays per neuron."""
    rng = np.random.RandomState(0)
    w1, b1, w2 = rng.randn(5, 3), rng.rand(5), rng.randn(2, 5)

    def graph(param, lif):
        n = 5
        return nir.NIRGraph.from_list(
            nir.Input(np.array([3])),
            nir.Affine(weight=param(w1), bias=param(b1)),
            nir.LIF(tau=lif(np.full(n, 0.02)), r=lif(np.full(n, 2.0)),
                    v_leak=lif(np.zeros(n)), v_threshold=lif(np.full(n, 1.5)),
                    v_reset=lif(np.zeros(n))),
            nir.Linear(weight=param(w2)),
            nir.Output(np.array([2])),
            type_check=False,
        )

    x = np.abs(np.sin(np.arange(300)[:, None] * [0.01, 0.02, 0.03])) * 2
    outs = []
    for param, lif in (
        (np.asarray, np.asarray),
        (torch.as_tensor, torch.as_tensor),  # Norse
        (np.asarray, lambda v: v[0]),  # snnTorch: 0-d arrays
        (torch.as_tensor, lambda v: torch.as_tensor(v[:1])),
    ):
        net = import_nir(graph(param, lif))
        (inp,), (probe,) = net.inputs.values(), net.outputs.values()
        outs.append(run_ours(net, inp, [probe], x)[0])
    assert np.abs(outs[0]).max() > 0
    for out in outs[1:]:
        np.testing.assert_array_equal(out, outs[0])
    bad = graph(np.asarray, np.asarray)
    bad.nodes["lif"].tau = np.full(3, 0.02)
    with pytest.raises(ValidationError, match="'lif': LIF.tau has 3 values for 5"):
        import_nir(bad)


@pytest.mark.parametrize("padding", [0, 1])
def test_scalar_lif_after_a_convolution(padding):
    """A LIF with scalar parameters takes its size from the Conv2d feeding it
    (as snnTorch writes convolutional networks)."""
    rng = np.random.RandomState(0)
    weight = rng.randn(3, 2, 3, 3)
    size = torch.nn.functional.conv2d(
        torch.zeros(1, 2, 6, 6, dtype=torch.float64), torch.as_tensor(weight), padding=padding
    ).numel()
    scalar = np.array(1.0)
    graph = nir.NIRGraph(
        nodes={
            "input": nir.Input(np.array([2, 6, 6])),
            "conv": nir.Conv2d(input_shape=(6, 6), weight=weight, stride=1,
                               padding=padding, dilation=1, groups=1, bias=np.zeros(3)),
            "lif": nir.LIF(tau=np.array(0.02), r=scalar, v_leak=0 * scalar,
                           v_threshold=scalar, v_reset=0 * scalar),
            "output": nir.Output(np.array([size])),
        },
        edges=[("input", "conv"), ("conv", "lif"), ("lif", "output")],
        type_check=False,
    )
    net = import_nir(graph)
    assert net.nir_objects["lif"].n_neurons == size


def test_what_nir_cannot_express_is_reported():
    with nengo.Network() as net:
        stim = nengo.Node(np.sin, label="stim")
        a = nengo.Ensemble(10, 1, label="a")
        sig = nengo.Ensemble(10, 1, neuron_type=nengo.Sigmoid(), label="sig")
        square = nengo.Node(lambda t, x: x**2, size_in=1, label="square")
        nengo.Connection(stim, a)
        learned = nengo.Connection(a, a, learning_rule_type=nengo.PES(), label="learned")
        nengo.Connection(a, square)
        alpha = nengo.Connection(a, sig, synapse=nengo.Alpha(0.01), label="alpha")
        nengo.Connection(a, learned.learning_rule)
        volt = nengo.Probe(a.neurons, "voltage", label="volt")
    with pytest.warns(NIRWarning) as record:
        graph = export_nir(net)
    text = str(record[0].message)
    reasons = {}
    for issue in graph.issues:
        reasons.setdefault(issue.obj, []).append(issue.reason)
    assert "refractory period" in " ".join(reasons[a])
    assert "Python function is not exported" in reasons[stim][0]
    assert "Node functions are not expressible" in reasons[square][0]
    assert "Sigmoid has no NIR node" in reasons[sig][0]
    assert any("learning rule PES" in r for r in reasons[learned])
    assert any("post object is not expressible" in r for r in reasons[alpha])
    assert "'voltage'" in reasons[volt][0]
    assert "<Node 'square'>" in text and "<Ensemble 'sig'>" in text
    assert len(graph.metadata["issues"]) == len(graph.issues)
    with pytest.raises(ValidationError, match="not expressible in NIR"):
        export_nir(net, strict=True)


def test_alpha_synapse_reported():
    with nengo.Network() as net:
        a = nengo.Ensemble(10, 1, neuron_type=nengo.LIF(tau_ref=0, min_voltage=-np.inf))
        b = nengo.Ensemble(10, 1, neuron_type=nengo.LIF(tau_ref=0, min_voltage=-np.inf))
        conn = nengo.Connection(a, b, synapse=nengo.Alpha(0.01))
    graph = exported(net)
    assert [i.obj for i in graph.issues] == [conn]
    assert "Alpha" in graph.issues[0].reason and "without it" in graph.issues[0].reason


def test_pure_nir_network_without_metadata():
    """Nothing lost: LIF without refractory period or voltage floor."""
    lif = nengo.LIF(tau_ref=0, min_voltage=-np.inf, initial_state=ZERO)
    with nengo.Network(seed=1) as net:
        net.inp = nengo.Node(np.zeros(2), label="x")
        a = nengo.Ensemble(30, 2, neuron_type=lif)
        b = nengo.Ensemble(20, 1, neuron_type=lif)
        nengo.Connection(net.inp, a, synapse=0.005)
        nengo.Connection(a, b, function=np.prod, synapse=0.01)
        probe = nengo.Probe(b, synapse=0.01, label="y")
    with warnings.catch_warnings():
        warnings.simplefilter("error", NIRWarning)
        graph = export_nir(net, strict=True)
    assert graph.issues == []
    for node in graph.nodes.values():
        node.metadata = {}  # as from another NIR tool
    back = import_nir(graph, use_metadata=True)
    x = signal(300)
    a = run_ours(net, net.inp, [probe], x)[0]
    b = run_ours(back, back.inputs["x"], [back.outputs["y"]], x)[0]
    assert np.abs(a).max() > 0.05
    np.testing.assert_allclose(b, a, atol=1e-9)


def test_import_foreign_lif_and_li():
    """A hand-written graph: Nengo reproduces NIR's continuous-time rates."""
    n = 4
    r = np.array([1.0, 2.0, 0.5, 1.5])
    v_leak = np.array([0.2, 0.0, 0.2, 0.3])
    v_th = np.array([1.0, 2.0, 0.8, 1.2])
    v_reset = np.array([0.0, 0.5, -0.2, 0.1])
    tau = 0.02
    graph = nir.NIRGraph.from_list(
        nir.Input(np.array([1])),
        nir.Affine(weight=np.ones((n, 1)), bias=np.full(n, 0.5)),
        nir.LIF(tau=np.full(n, tau), r=r, v_leak=v_leak, v_threshold=v_th, v_reset=v_reset),
        nir.Output(np.array([n])),
    )
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        net = import_nir(graph)
    assert not [w for w in record if issubclass(w.category, NIRWarning)]
    (inp,) = net.inputs.values()
    (probe,) = net.outputs.values()
    level = 1.0
    inp.output = [level]
    # 20000 steps: nengo's simulator is the quicker one here (the round trips
    # above run both)
    with nengo.Simulator(net, dt=1e-4, progress_bar=False) as sim:
        sim.run_steps(20000)
    spikes = sim.data[probe]
    # rates from the first to the last spike (the first starts from v = 0)
    rates = []
    for column in spikes.T:
        (steps,) = np.nonzero(column)
        rates.append((len(steps) - 1) / ((steps[-1] - steps[0]) * 1e-4))
    # continuous time: tau v' = (v_leak - v) + r I, reset to v_reset at v_th
    v_inf = v_leak + r * (level + 0.5)
    expected = 1 / (tau * np.log((v_inf - v_reset) / (v_inf - v_th)))
    # Nengo's LIF finds each spike's time within the step but starts integrating
    # again at the next step: ISIs are about dt / 2 longer (here 0.3 to 0.7 %)
    np.testing.assert_allclose(rates, expected, rtol=0.01)
    assert np.all(np.asarray(rates) < expected)

    li_graph = nir.NIRGraph.from_list(
        nir.Input(np.array([2])),
        nir.LI(tau=np.full(2, 0.05), r=np.array([1.0, 2.0]), v_leak=np.array([0.0, 1.0])),
        nir.Output(np.array([2])),
    )
    net = import_nir(li_graph)
    (inp,) = net.inputs.values()
    (probe,) = net.outputs.values()
    with snntorch_nengo.Simulator(net, progress_bar=False) as sim:
        y = sim.predict({inp: np.ones((1, 500, 2))})[probe][0]
    t = np.arange(1, 501) * 0.001
    # tau v' = (v_leak - v) + r I from v(0) = 0, with I = 1
    exact = (np.array([0.0, 1.0]) + np.array([1.0, 2.0])) * (1 - np.exp(-t / 0.05))[:, None]
    np.testing.assert_allclose(y, exact, atol=0.03 * exact.max())


def test_import_rejects_what_nengo_cannot_express():
    graph = nir.NIRGraph.from_list(
        nir.Input(np.array([2])),
        nir.LIF(
            tau=np.array([0.01, 0.02]),
            r=np.ones(2),
            v_leak=np.zeros(2),
            v_threshold=np.ones(2),
        ),
        nir.Output(np.array([2])),
    )
    with pytest.raises(ValidationError, match="'lif'.*tau differs between neurons"):
        import_nir(graph)
    graph = nir.NIRGraph.from_list(
        nir.Input(np.array([2])), nir.Threshold(np.zeros(2)), nir.Output(np.array([2]))
    )
    with pytest.raises(ValidationError, match="'threshold' of type Threshold"):
        import_nir(graph)


def test_export_from_trained_simulator():
    net = mixed_net()
    b = net.all_ensembles[1]
    with snntorch_nengo.Simulator(net, progress_bar=False) as sim:
        bias = sim.module.module_of(b).bias
        with torch.no_grad():
            bias += 0.25
        trained = bias.detach().numpy().copy()
        graph = exported(sim, bias="v_leak")
        default = exported(sim)
    np.testing.assert_allclose(graph.nodes["b"].v_leak, trained)
    np.testing.assert_allclose(default.nodes["b_bias"].bias, trained)


def conv_net():
    """Input image -> Conv2d ('same') -> LIF -> Conv2d (stride 2) -> LIF -> readout."""
    rng = np.random.RandomState(0)
    lif = nengo.LIF(initial_state=ZERO, amplitude=0.1)
    with nengo.Network(seed=2) as net:
        net.inp = nengo.Node(np.zeros(2 * 6 * 6), label="img")
        c1 = nengo.Convolution(
            4, (2, 6, 6), kernel_size=(3, 3), padding="same", channels_last=False,
            init=nengo.dists.Gaussian(0, 0.5),
        )
        l1 = nengo.Ensemble(c1.size_out, 1, neuron_type=lif, label="l1")
        nengo.Connection(net.inp, l1.neurons, transform=c1, synapse=0.005)
        c2 = nengo.Convolution(
            3, (4, 6, 6), kernel_size=(3, 3), strides=(2, 2), channels_last=False,
            init=nengo.dists.Gaussian(0, 0.5),
        )
        l2 = nengo.Ensemble(c2.size_out, 1, neuron_type=lif, label="l2")
        nengo.Connection(l1.neurons, l2.neurons, transform=c2, synapse=None)
        out = nengo.Node(size_in=2, label="out")
        nengo.Connection(l2.neurons, out, transform=rng.randn(2, c2.size_out) * 0.1)
        net.my_probes = [
            nengo.Probe(out, synapse=0.01, label="y"),
            nengo.Probe(l1.neurons, label="s1"),
        ]
    return net


def test_convolution_round_trip(tmp_path):
    net = conv_net()
    graph = exported(net)
    kinds = {type(n).__name__ for n in graph.nodes.values()}
    assert {"Conv2d", "Scale", "Flatten", "CubaLIF", "LIF"} <= kinds
    conv = graph.nodes["connection_1"]
    assert conv.weight.shape == (3, 4, 3, 3) and tuple(conv.stride) == (2, 2)
    nir.write(tmp_path / "conv.nir", graph)
    back = import_nir(tmp_path / "conv.nir")
    x = np.random.RandomState(1).rand(150, 72)
    probes2 = [back.outputs[p.label] for p in net.my_probes]
    ours = run_ours(net, net.inp, net.my_probes, x)
    for run in (run_ours, run_nengo):
        for p, a, b in zip(net.my_probes, ours, run(back, back.inputs["img"], probes2, x)):
            assert np.any(a != 0)
            np.testing.assert_allclose(b, a, atol=1e-9 * np.abs(a).max(), err_msg=p.label)


def test_convolution_limits_reported():
    with nengo.Network() as net:
        a = nengo.Ensemble(36, 1, label="a")
        t = nengo.Convolution(1, (6, 6, 1), kernel_size=(3, 3))  # channels last
        b = nengo.Ensemble(t.size_out, 1, label="b")
        conn = nengo.Connection(a.neurons, b.neurons, transform=t)
    graph = exported(net)
    assert any(i.obj is conn and "channels_last" in i.reason for i in graph.issues)
