"""sim.save_params / load_params / get_nengo_params / freeze_params."""

import os
import warnings

import nengo
import numpy as np
import pytest
import torch
from nengo.exceptions import SimulatorClosed, ValidationError

import snntorch_nengo
from snntorch_nengo.export import params as params_mod
from snntorch_nengo.export.freeze import (
    FullWeightsSolver,
    ZeroFunction,
    unscale_encoders,
)

N_STEPS = 500


def product(x):
    return x[0] * x[1]


def negate(x):
    return -x


def make_net(neuron_type=None, seed=3):
    """Decoded, neuron, node, weight-solver and sparse connections; probes."""
    neuron_type = nengo.LIFRate() if neuron_type is None else neuron_type
    with nengo.Network(seed=seed, label="net") as net:
        inp = nengo.Node(lambda t: [np.sin(8 * t), np.cos(5 * t)], label="in")
        a = nengo.Ensemble(30, 2, radius=1.5, neuron_type=neuron_type, label="a")
        with nengo.Network(label="sub"):
            b = nengo.Ensemble(25, 1, neuron_type=neuron_type)
        c = nengo.Ensemble(20, 2, neuron_type=neuron_type, label="c")
        nengo.Connection(inp, a, transform=[[1, 0.5], [0, 1]])
        nengo.Connection(a, b, function=product, synapse=0.01, transform=[[2]])
        nengo.Connection(
            a.neurons,
            b.neurons,
            transform=np.random.RandomState(0).randn(25, 30) * 0.01,
        )
        nengo.Connection(b, c[1], transform=2)
        nengo.Connection(
            a, c, function=negate, solver=nengo.solvers.LstsqL2(weights=True)
        )
        nengo.Connection(
            c.neurons,
            a.neurons[:5],
            transform=nengo.Sparse(
                (5, 20), indices=[[0, 1], [2, 3], [4, 19]], init=0.1
            ),
        )
        probes = [
            nengo.Probe(b, synapse=0.02),
            nengo.Probe(c, synapse=0.02),
            nengo.Probe(a.neurons),
            nengo.Probe(c.neurons),
        ]
    return net, probes


def make_sim(net, **kwargs):
    return snntorch_nengo.Simulator(
        net, progress_bar=False, dtype=torch.float64, **kwargs
    )


def perturb(sim, scale=0.05, seed=1):
    """Change every parameter in place, as training would."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for _, param in sim.module.named_parameters():
            noise = torch.randn(param.shape, generator=gen, dtype=param.dtype)
            param.add_(noise * scale * (param.abs().mean() + 1e-3))


def snapshot(sim):
    """The module's tensors by file name (without memory addresses)."""
    return {
        k: v.detach().clone() for k, v in params_mod.param_tensors(sim.module).items()
    }


def assert_same(before, after):
    assert before.keys() == after.keys()
    for key in before:
        assert torch.equal(before[key], after[key]), key


# -- save / load


def test_save_load_roundtrip(tmp_path):
    net, _ = make_net()
    sim = make_sim(net)
    perturb(sim)
    path = tmp_path / "weights"  # used as given: no extension added
    sim.save_params(path)
    assert os.listdir(tmp_path) == ["weights"]

    net2, probes2 = make_net()
    sim2 = make_sim(net2)
    param = sim2.module.ensembles["a"].encoders
    sim2.load_params(path)
    assert sim2.module.ensembles["a"].encoders is param  # loaded in place
    assert_same(snapshot(sim), snapshot(sim2))

    # a float32 simulator loads the same file
    sim32 = snntorch_nengo.Simulator(make_net()[0], progress_bar=False, dtype="float32")
    sim32.load_params(str(path))
    assert torch.equal(
        sim32.module.ensembles["a"].bias,
        sim.module.ensembles["a"].bias.to(torch.float32),
    )

    sim.run_steps(20)
    sim2.run_steps(20)
    # equal up to summation order: nengo's operator merger may group the two
    # (separately built) networks' operators in a different order
    for probe, probe2 in zip(sim.model.probes, probes2):
        np.testing.assert_allclose(sim.data[probe], sim2.data[probe2], rtol=0, atol=1e-12)


def test_file_names_every_tensor(tmp_path):
    net, _ = make_net()
    sim = make_sim(net)
    sim.save_params(tmp_path / "p.pt", include_state=True)
    payload = torch.load(tmp_path / "p.pt", weights_only=True)
    assert payload["format"] == "snntorch_nengo.params"
    assert payload["version"] == 1
    assert "ensembles.a.encoders" in payload["params"]
    assert "connections.connection_1.weights" in payload["params"]
    # memory addresses of unlabelled objects are not part of the names
    assert not any("0x7" in name for name in payload["params"])
    assert "ensembles.a.neuron_in" in payload["state"]
    assert "signals.time" in payload["state"]
    assert payload["n_steps"] == 0
    assert len(payload["params"]) == len(sim.module.state_dict())


def test_save_load_state(tmp_path):
    net, probes = make_net(nengo.LIF())
    sim = make_sim(net)
    perturb(sim)
    sim.run_steps(30)
    sim.save_params(tmp_path / "p.pt", include_state=True)
    sim.run_steps(30)

    net2, probes2 = make_net(nengo.LIF())
    sim2 = make_sim(net2)
    sim2.load_params(tmp_path / "p.pt", include_state=True)
    assert sim2.n_steps == 30
    sim2.run_steps(30)
    assert sim2.n_steps == 60
    assert np.count_nonzero(sim2.data[probes2[2]]) > 0
    for probe, probe2 in zip(probes, probes2):
        np.testing.assert_allclose(
            sim.data[probe][30:], sim2.data[probe2], rtol=0, atol=1e-12
        )

    # without include_state the state stays as it was
    sim3 = make_sim(make_net(nengo.LIF())[0])
    sim3.load_params(tmp_path / "p.pt")
    assert sim3.n_steps == 0


def test_load_state_needs_state(tmp_path, good_file):
    _edit(good_file, tmp_path / "p.pt", lambda p: p.__setitem__("state", None))
    sim = make_sim(make_net()[0])
    with pytest.raises(ValidationError, match="no simulation state"):
        sim.load_params(tmp_path / "p.pt", include_state=True)


def test_load_state_other_minibatch(good_file):
    sim2 = make_sim(make_net()[0], minibatch_size=2)
    before = snapshot(sim2)
    with pytest.raises(ValidationError, match="minibatch"):
        sim2.load_params(good_file, include_state=True)
    assert_same(before, snapshot(sim2))


def test_load_different_network(good_file):
    with nengo.Network(seed=3) as other:
        a = nengo.Ensemble(31, 2, label="a")
        nengo.Probe(a)
    sim = make_sim(other)
    before = snapshot(sim)
    with pytest.raises(ValidationError, match="different network"):
        sim.load_params(good_file)
    assert_same(before, snapshot(sim))

    # same sizes, different labels
    relabelled, _ = make_net()
    relabelled.ensembles[0].label = "renamed"
    sim = make_sim(relabelled)
    with pytest.raises(ValidationError, match="renamed"):
        sim.load_params(good_file)


@pytest.fixture(scope="module")
def good_file(tmp_path_factory):
    """A file with perturbed parameters and state after 10 steps."""
    path = tmp_path_factory.mktemp("params") / "good.pt"
    src = make_sim(make_net()[0])
    perturb(src)
    src.run_steps(10)
    src.save_params(path, include_state=True)
    return path


def _edit(src, dst, edit):
    payload = torch.load(src, weights_only=True)
    edit(payload)
    torch.save(payload, dst)


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda p: p["params"].pop("ensembles.a.bias"), "missing.*ensembles.a.bias"),
        (
            lambda p: p["params"].__setitem__("extra.tensor", torch.zeros(2)),
            "unexpected.*extra.tensor",
        ),
        (
            lambda p: p["params"].__setitem__(
                "ensembles.c.encoders", torch.zeros(3, 3)
            ),
            r"mis-shaped.*ensembles.c.encoders \(shape \(3, 3\)",
        ),
        (lambda p: p.__setitem__("format", "other"), "not a parameter file"),
        (lambda p: p.__setitem__("version", 99), "version 99"),
    ],
)
def test_load_mismatch_changes_nothing(tmp_path, good_file, edit, message):
    _edit(good_file, tmp_path / "bad.pt", edit)
    sim = make_sim(make_net()[0])
    before = snapshot(sim)
    with pytest.raises(ValidationError, match=message):
        sim.load_params(tmp_path / "bad.pt")
    assert_same(before, snapshot(sim))


def test_load_bad_state_changes_nothing(tmp_path, good_file):
    _edit(
        good_file,
        tmp_path / "bad.pt",
        lambda p: p["state"].pop("ensembles.a.out"),
    )
    sim = make_sim(make_net()[0])
    before = snapshot(sim)
    state = {k: v.clone() for k, v in sim.module.state().items()}
    with pytest.raises(ValidationError, match="missing state tensors"):
        sim.load_params(tmp_path / "bad.pt", include_state=True)
    assert_same(before, snapshot(sim))
    for base, value in sim.module.state().items():
        assert torch.equal(value, state[base])
    assert sim.n_steps == 0


def test_load_garbage(tmp_path):
    (tmp_path / "junk").write_bytes(b"not a torch file")
    sim = make_sim(make_net()[0])
    with pytest.raises(ValidationError, match="not a parameter file"):
        sim.load_params(tmp_path / "junk")
    with pytest.raises(FileNotFoundError):
        sim.load_params(tmp_path / "missing")


def test_save_is_atomic(tmp_path, monkeypatch):
    net, _ = make_net()
    sim = make_sim(net)
    path = tmp_path / "p.pt"
    sim.save_params(path)
    good = path.read_bytes()
    perturb(sim)

    real_save = torch.save

    def failing_save(obj, f, *args, **kwargs):
        real_save(obj, f, *args, **kwargs)
        f.seek(len(good) // 2)
        f.truncate()
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", failing_save)
    with pytest.raises(OSError, match="disk full"):
        sim.save_params(path)
    assert path.read_bytes() == good
    assert os.listdir(tmp_path) == ["p.pt"]  # no temporary file left behind

    monkeypatch.setattr(torch, "save", real_save)
    sim.save_params(path)
    assert path.read_bytes() != good


def test_closed_simulator(tmp_path):
    net, _ = make_net()
    with make_sim(net) as sim:
        pass
    with pytest.raises(SimulatorClosed):
        sim.save_params(tmp_path / "p.pt")
    with pytest.raises(SimulatorClosed):
        sim.freeze_params(net)


# -- get_nengo_params


def test_unscale_encoders():
    rng = np.random.RandomState(0)
    scaled = rng.randn(500, 3) * 50
    gain = rng.uniform(0.5, 60, 500)
    for radius in (1.0, 1.5):
        encoders = unscale_encoders(scaled, gain, radius)
        rebuilt = encoders * (gain / radius)[:, np.newaxis]  # Nengo's expression
        # exact where a float gives it, else the nearest: within one ulp
        assert np.all(np.abs(rebuilt - scaled) <= np.spacing(np.abs(scaled)))
        assert np.mean(rebuilt == scaled) > 0.8
    with pytest.raises(ValidationError, match="gain is zero"):
        unscale_encoders(np.ones((2, 1)), np.array([1.0, 0.0]), 1.0)


def test_get_nengo_params_ensemble():
    net, _ = make_net()
    sim = make_sim(net)
    perturb(sim)
    a = net.ensembles[0]
    params = sim.get_nengo_params(a)  # one object: one dict
    assert set(params) == {
        "encoders",
        "normalize_encoders",
        "gain",
        "bias",
        "max_rates",
        "intercepts",
    }
    assert params["normalize_encoders"] is False
    assert np.array_equal(params["gain"], sim.model.params[a].gain)
    assert params["max_rates"] is nengo.Ensemble.max_rates.default
    assert params["intercepts"] is nengo.Ensemble.intercepts.default
    module = sim.module.module_of(a)
    assert np.array_equal(params["bias"], module.bias.detach().numpy())

    # a new ensemble with these parameters builds the trained values
    with nengo.Network() as rebuilt:
        copy = nengo.Ensemble(a.n_neurons, a.dimensions, radius=a.radius, **params)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with nengo.Simulator(rebuilt, progress_bar=False) as ref:
            pass
    trained = module.encoders.detach().numpy()
    built = ref.model.params[copy]
    assert np.allclose(built.scaled_encoders, trained, rtol=1e-15, atol=0)
    assert np.array_equal(built.bias, params["bias"])


def test_get_nengo_params_connections():
    net, _ = make_net()
    sim = make_sim(net)
    perturb(sim)
    conns = net.all_connections
    node_conn, decoded, neurons, _, weight_solver, sparse = conns
    params = sim.get_nengo_params([node_conn, decoded, neurons, weight_solver, sparse])
    weights = {c: sim.module.module_of(c).weights.detach().numpy() for c in conns}

    assert set(params[0]) == {"transform"}
    assert np.array_equal(params[0]["transform"], weights[node_conn])

    assert isinstance(params[1]["solver"], nengo.solvers.NoSolver)
    assert not params[1]["solver"].weights
    assert np.array_equal(params[1]["solver"].values, weights[decoded].T)
    assert params[1]["function"] == ZeroFunction(1)
    assert params[1]["transform"] is None

    assert np.array_equal(params[2]["transform"], weights[neurons])

    assert isinstance(params[3]["solver"], FullWeightsSolver)
    assert params[3]["solver"].weights
    assert np.array_equal(params[3]["solver"].values, weights[weight_solver].T)

    assert isinstance(params[4]["transform"], nengo.Sparse)
    assert np.array_equal(params[4]["transform"].init.data, weights[sparse])

    # a new connection with these parameters builds the trained decoders
    with nengo.Network() as rebuilt:
        pre = nengo.Ensemble(30, 2)
        post = nengo.Ensemble(25, 1)
        conn = nengo.Connection(pre, post, **params[1])
    with nengo.Simulator(rebuilt, progress_bar=False) as ref:
        assert np.array_equal(ref.model.params[conn].weights, weights[decoded])


def test_get_nengo_params_as_dict_and_errors():
    net, _ = make_net()
    sim = make_sim(net)
    (a, c), b = net.ensembles, net.networks[0].ensembles[0]
    out = sim.get_nengo_params([a, b, net.all_connections[1]], as_dict=True)
    key_b = next(k for k, m in sim.module.ensembles.items() if m.obj is b)
    assert list(out) == ["a", key_b, "connection_1"]  # label, else module key
    assert list(sim.get_nengo_params([c, a])[0]) == list(out["a"])

    b.label = "a"
    with pytest.raises(ValidationError, match="unique"):
        sim.get_nengo_params([a, b], as_dict=True)
    with pytest.raises(ValidationError, match="Node"):
        sim.get_nengo_params(net.nodes[0])
    with nengo.Network():
        stranger = nengo.Ensemble(5, 1)
    with pytest.raises(ValidationError, match="not part of the network"):
        sim.get_nengo_params([a, stranger])


# -- freeze_params


def _frozen_against_nengo(neuron_type, n_steps):
    net, probes = make_net(neuron_type)
    sim = make_sim(net)
    perturb(sim)
    sim.run_steps(n_steps)
    ours = [sim.data[p] for p in probes]
    sim.freeze_params(net)
    with warnings.catch_warnings():
        warnings.simplefilter("error", nengo.exceptions.NengoWarning)
        with nengo.Simulator(net, progress_bar=False) as ref:
            ref.run_steps(n_steps)
    return [(ours[i], ref.data[p]) for i, p in enumerate(probes)]


def test_freeze_rate_network():
    for ours, ref in _frozen_against_nengo(nengo.LIFRate(), 200):
        assert np.allclose(ours, ref, atol=1e-8, rtol=0)
        assert np.abs(ours).max() > 0.1


def test_freeze_spiking_network():
    results = _frozen_against_nengo(nengo.LIF(), N_STEPS)
    for ours, ref in results[2:]:  # spikes
        assert np.array_equal(ours > 0, ref > 0)
        assert np.count_nonzero(ours) > 100
    for ours, ref in results[:2]:  # decoded, filtered
        assert np.allclose(ours, ref, atol=1e-8, rtol=0)


def test_freeze_differs_without_freezing():
    """The perturbation matters (the freeze tests are not trivially true)."""
    net, probes = make_net()
    sim = make_sim(net)
    perturb(sim)
    sim.run_steps(50)
    with nengo.Simulator(net, progress_bar=False) as ref:
        ref.run_steps(50)
    assert not np.allclose(sim.data[probes[0]], ref.data[probes[0]], atol=1e-3)


def test_freeze_then_new_simulator_and_reload(tmp_path):
    net, probes = make_net()
    sim = make_sim(net)
    perturb(sim)
    sim.save_params(tmp_path / "p.pt")
    sim.freeze_params([net.ensembles[0], net.networks[0], net.all_connections[1]])
    sim.freeze_params(net)
    sim.run_steps(50)
    sim2 = make_sim(net)
    sim2.run_steps(50)
    for probe in probes:
        assert np.allclose(sim.data[probe], sim2.data[probe], atol=1e-8, rtol=0)
    # the frozen network's structure still matches a file saved before freezing
    sim2.load_params(tmp_path / "p.pt")


def test_freeze_learning_and_other_transforms():
    with nengo.Network(seed=1) as net:
        inp = nengo.Node([0.5, -0.3, 0.2, 0.1], label="in")
        direct = nengo.Ensemble(1, 4, neuron_type=nengo.Direct(), label="d")
        a = nengo.Ensemble(16, 1, neuron_type=nengo.LIFRate(), label="a")
        e = nengo.Ensemble(8, 1, neuron_type=nengo.LIFRate(), label="e")
        nengo.Connection(inp, direct)
        nengo.Connection(direct, a, function=lambda x: x[0] + x[1], transform=0.5)
        conv = nengo.Convolution(2, (2, 2, 1), kernel_size=(2, 2))
        out = nengo.Node(size_in=2)
        nengo.Connection(inp, out, transform=conv)
        err = nengo.Node(size_in=1)
        pes = nengo.Connection(a, e, learning_rule_type=nengo.PES(1e-3))
        nengo.Connection(e, err)
        nengo.Connection(inp[0], err, transform=-1)
        nengo.Connection(err, pes.learning_rule)
        probes = [
            nengo.Probe(out),
            nengo.Probe(e, synapse=0.01),
            nengo.Probe(a.neurons),
        ]
    sim = make_sim(net)
    with torch.no_grad():
        for name, param in sim.module.named_parameters():
            if not name.startswith("ensembles.d."):
                param.add_(0.01)
    assert sim.get_nengo_params(direct) == {}
    sim.freeze_params(net)
    assert isinstance(net.connections[2].transform, nengo.Convolution)
    sim.run_steps(200)
    with nengo.Simulator(net, progress_bar=False) as ref:
        ref.run_steps(200)
    for probe in probes:
        assert np.allclose(sim.data[probe], ref.data[probe], atol=1e-8, rtol=0)

    # trained Direct encoders cannot be expressed in Nengo
    with torch.no_grad():
        sim.module.module_of(direct).encoders.add_(0.1)
    with pytest.raises(ValidationError, match="Direct"):
        sim.freeze_params(net)


def test_freeze_foreign_objects_changes_nothing():
    net, _ = make_net()
    sim = make_sim(net)
    perturb(sim)
    with nengo.Network() as other:
        stranger = nengo.Ensemble(5, 1)
    a = net.ensembles[0]
    encoders = a.encoders
    for objs in ([a, stranger], other, [net, other], [a, net.nodes[0]]):
        with pytest.raises(ValidationError):
            sim.freeze_params(objs)
        assert a.encoders is encoders and a.gain is None


def test_freeze_failure_rolls_back(monkeypatch):
    from snntorch_nengo.export import freeze as freeze_mod

    net, _ = make_net()
    sim = make_sim(net)
    perturb(sim)
    conns = net.all_connections
    before = [(c.function_info, c.transform, c.solver) for c in conns]
    ens = net.all_ensembles
    ens_before = [(e.encoders, e.gain, e.bias, e.normalize_encoders) for e in ens]

    real_assign, calls = freeze_mod._assign, []

    def failing_assign(obj, key, value):
        calls.append(key)
        if len(calls) == 25:  # somewhere in the connections
            raise RuntimeError("boom")
        real_assign(obj, key, value)

    monkeypatch.setattr(freeze_mod, "_assign", failing_assign)
    with pytest.raises(RuntimeError, match="boom"):
        sim.freeze_params(net)
    monkeypatch.setattr(freeze_mod, "_assign", real_assign)
    assert [(c.function_info, c.transform, c.solver) for c in conns] == before
    for e, (encoders, gain, bias, normalize) in zip(ens, ens_before):
        assert e.encoders is encoders and e.gain is gain and e.bias is bias
        assert e.normalize_encoders == normalize
