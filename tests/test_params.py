"""sim.save_params / load_params / get_nengo_params / freeze_params."""

import os
import warnings

import nengo
import numpy as np
import pytest
import torch
from nengo.exceptions import SimulatorClosed, ValidationError

import snntorch_nengo
from snntorch_nengo import persistence as params_mod
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
    assert payload["version"] == 2
    assert "ensembles.a.encoders" in payload["params"]
    assert "connections.connection_1.weights" in payload["params"]
    # memory addresses of unlabelled objects are not part of the names
    assert not any("0x7" in name for name in payload["params"])
    assert "ensembles.a.neuron_in" in payload["state"]
    assert "signals.time" in payload["state"]
    assert payload["n_steps"] == 0
    # the trainable parameters, in module order, and nothing else: probe
    # decoders and other built constants are not saved
    trainable = [
        [name, list(p.shape)] for name, p in sim.module.named_parameters()
    ]
    assert payload["trainable"] == [
        [params_mod.stable_name(name), shape] for name, shape in trainable
    ]
    assert list(payload["params"]) == [name for name, _ in payload["trainable"]]
    assert len(payload["params"]) < len(sim.module.state_dict())


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


def _set_param(payload, name, value):
    """Edit a file's trainable parameter as save_params would have written it."""
    payload["trainable"] = [e for e in payload["trainable"] if e[0] != name]
    payload["params"].pop(name, None)
    if value is not None:
        payload["trainable"].append([name, list(value.shape)])
        payload["params"][name] = value
    payload["checksum"] = params_mod.checksum(payload)


@pytest.mark.parametrize(
    "edit, message",
    [
        (
            lambda p: _set_param(p, "ensembles.a.bias", None),
            "trainable here but not in the file: ensembles.a.bias",
        ),
        (
            lambda p: _set_param(p, "extra.tensor", torch.zeros(2)),
            "in the file but not in this network: extra.tensor",
        ),
        (
            lambda p: _set_param(p, "ensembles.c.encoders", torch.zeros(3, 3)),
            r"another shape.*ensembles.c.encoders \(shape \(3, 3\) in the file, "
            r"\(20, 2\) here",
        ),
        # a tensor the list does not name: a damaged file, not another network
        (
            lambda p: p["params"].__setitem__("extra.tensor", torch.zeros(2)),
            "corrupted: its tensors are not the trainable parameters it lists",
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


# -- matching by trainable parameters (NengoDL's rule, format version 2)


def tutorial_net(neuron_type, more_probes=False):
    """Two layers of ``neuron_type`` into an output Node, as NengoDL's spiking
    MNIST tutorial builds one network for rate training and spiking testing."""
    with nengo.Network(seed=5) as net:
        net.config[nengo.Ensemble].max_rates = nengo.dists.Choice([100])
        net.config[nengo.Ensemble].intercepts = nengo.dists.Choice([0])
        net.config[nengo.Connection].synapse = None
        net.inp = nengo.Node(np.zeros(3))
        a = nengo.Ensemble(40, 3, neuron_type=neuron_type)
        b = nengo.Ensemble(30, 1, neuron_type=neuron_type)
        net.out = nengo.Node(size_in=2)
        nengo.Connection(net.inp, a)
        nengo.Connection(a, b, function=lambda x: x[0] * x[1] + x[2])
        nengo.Connection(
            a.neurons, net.out, transform=snntorch_nengo.dists.Glorot()
        )
        nengo.Connection(b, net.out[0])
        net.p = nengo.Probe(net.out)
        if more_probes:
            # a filtered probe and a decoded one (with its hidden connection)
            net.p_filt = nengo.Probe(net.out, synapse=0.1)
            net.p_b = nengo.Probe(b, synapse=0.01)
    return net


def tutorial_data(n=40, n_steps=1, seed=0):
    rng = np.random.RandomState(seed)
    x = rng.uniform(-1, 1, size=(n, 1, 3))
    y = np.stack([x[..., 0] * x[..., 1], x[..., 2] - x[..., 0]], axis=-1)
    return np.tile(x, (1, n_steps, 1)), np.tile(y, (1, n_steps, 1))


def copy_by_hand(src, dst):
    """Every trainable parameter of ``src`` into ``dst``, by name."""
    values = dict(src.module.named_parameters())
    with torch.no_grad():
        for name, param in dst.module.named_parameters():
            param.copy_(values[name])


def test_rate_trained_file_loads_into_spiking_network(tmp_path):
    """NengoDL's spiking-MNIST workflow: train with rates, save, load into LIF."""
    x, y = tutorial_data()
    with make_sim(tutorial_net(nengo.LIFRate()), minibatch_size=20) as rate_sim:
        rate_sim.compile(
            optimizer=torch.optim.Adam(rate_sim.parameters(), 1e-2),
            loss={rate_sim.model.toplevel.p: torch.nn.functional.mse_loss},
        )
        before = rate_sim.evaluate(x, y, verbose=0)["loss"]
        rate_sim.fit(x, y, epochs=5, verbose=0)
        assert rate_sim.evaluate(x, y, verbose=0)["loss"] < before
        rate_sim.save_params(str(tmp_path / "rate_params"))
        rate_out = rate_sim.predict(x[:20])[rate_sim.model.toplevel.p]

    x_t, _ = tutorial_data(n_steps=200)
    spiking = tutorial_net(nengo.LIF(), more_probes=True)
    with make_sim(spiking, minibatch_size=20) as sim:
        fresh = snapshot(sim)
        sim.load_params(str(tmp_path / "rate_params"))
        loaded = sim.predict(x_t[:20])
        loaded_params = snapshot(sim)

    # the same spiking network with the trained parameters copied by hand
    hand = tutorial_net(nengo.LIF(), more_probes=True)
    with make_sim(hand, minibatch_size=20) as ref, make_sim(
        tutorial_net(nengo.LIFRate()), minibatch_size=20
    ) as trained:
        trained.load_params(str(tmp_path / "rate_params"))
        copy_by_hand(trained, ref)
        expected = ref.predict(x_t[:20])
        blank = tutorial_net(nengo.LIF(), more_probes=True)
        untrained = make_sim(blank, minibatch_size=20).predict(x_t[:20])
    for probe, probe_ref in zip(spiking.probes, hand.probes):
        np.testing.assert_allclose(loaded[probe], expected[probe_ref], rtol=0, atol=1e-12)
    # training changed what the spiking network computes
    assert not np.allclose(loaded[spiking.p], untrained[blank.p])

    # trainable parameters came from the file; the built constants (the probe's
    # decoders, solved for LIF) are the spiking network's own
    trainable = {params_mod.stable_name(n) for n, _ in sim.module.named_parameters()}
    assert "connections.connection_4.weights" not in trainable  # the probe's
    for name in fresh:
        if name not in trainable:
            assert torch.equal(loaded_params[name], fresh[name]), name
    assert any(not torch.equal(loaded_params[n], fresh[n]) for n in trainable)

    # spiking, and close to the trained rate network once filtered (the figure
    # the tutorial shows): within a fraction of the untrained error
    assert np.any(loaded[spiking.p] != 0) and len(np.unique(loaded[spiking.p])) > 10
    rate_target = rate_out[:, -1]
    err = np.abs(loaded[spiking.p_filt][:, -1] - rate_target).mean()
    err_untrained = np.abs(untrained[blank.p_filt][:, -1] - rate_target).mean()
    assert err < 0.5 * err_untrained


def test_converter_reconverted_loads_the_file(tmp_path):
    """NengoDL's Converter tutorial: train the converted network, save, then
    re-convert with other swap_activations, scale_firing_rates and synapse (and
    another probe) and load the file into each."""
    torch.manual_seed(0)
    model = torch.nn.Sequential(
        torch.nn.Linear(3, 24), torch.nn.ReLU(), torch.nn.Linear(24, 2)
    )
    x, y = tutorial_data()
    converter = snntorch_nengo.Converter(model)
    with make_sim(converter.net, minibatch_size=20) as sim:
        sim.compile(
            optimizer=torch.optim.Adam(sim.parameters(), 1e-2),
            loss={converter.outputs[0]: torch.nn.functional.mse_loss},
        )
        sim.fit({converter.inputs[0]: x}, {converter.outputs[0]: y}, epochs=5,
                verbose=0)
        sim.save_params(tmp_path / "keras_to_snn_params")
        trained_out = sim.predict({converter.inputs[0]: x[:20]})[converter.outputs[0]]
        trained = {n: p.detach().clone() for n, p in sim.module.named_parameters()}
    with torch.no_grad():
        torch_out = model(torch.as_tensor(x[:20, 0], dtype=torch.float32)).numpy()
    assert not np.allclose(trained_out[:, 0], torch_out, atol=1e-3)  # it trained

    def convert(**kwargs):
        conv = snntorch_nengo.Converter(model, **kwargs)
        # nengo draws the build seeds of an unseeded network at random: a seed
        # makes both spiking networks start from the same neuron voltages
        conv.net.seed = 1
        with conv.net:
            nengo.Probe(conv.outputs[0].target, synapse=0.05)
        return conv

    # the same conversion with only an extra probe: the trained outputs again
    same = convert()
    with make_sim(same.net, minibatch_size=20) as sim:
        sim.load_params(tmp_path / "keras_to_snn_params")
        out = sim.predict({same.inputs[0]: x[:20]})[same.outputs[0]]
    np.testing.assert_allclose(out, trained_out, rtol=0, atol=1e-12)

    x_t = np.tile(x[:20], (1, 50, 1))
    options = dict(
        swap_activations={torch.nn.ReLU: nengo.SpikingRectifiedLinear()},
        scale_firing_rates=20,
        synapse=0.005,
    )
    spiking = convert(**options)
    hand = convert(**options)
    with make_sim(spiking.net, minibatch_size=20) as sim, make_sim(
        hand.net, minibatch_size=20
    ) as ref:
        sim.load_params(tmp_path / "keras_to_snn_params")
        with torch.no_grad():
            for name, param in ref.module.named_parameters():
                param.copy_(trained[name])
        out = sim.predict({spiking.inputs[0]: x_t})
        expected = ref.predict({hand.inputs[0]: x_t})
        ens = [e for e in spiking.net.all_ensembles]
        assert isinstance(ens[0].neuron_type, nengo.SpikingRectifiedLinear)
    for probe, probe_ref in zip(spiking.net.all_probes, hand.net.all_probes):
        np.testing.assert_allclose(out[probe], expected[probe_ref], rtol=0, atol=1e-12)
    assert len(np.unique(out[spiking.outputs[0]])) > 10


def test_load_into_network_with_other_trainables(tmp_path):
    net, _ = make_net()
    sim = make_sim(net)
    sim.save_params(tmp_path / "p.pt")

    # an ensemble configured not to train: its parameters are constants here
    frozen, _ = make_net()
    with frozen:
        snntorch_nengo.configure_settings(trainable=None)
    frozen.config[frozen.ensembles[0]].trainable = False
    sim2 = make_sim(frozen)
    before = snapshot(sim2)
    with pytest.raises(
        ValidationError,
        match=r"not trainable here \(configured trainable=False\?\): "
        r"ensembles.a.bias, ensembles.a.encoders",
    ):
        sim2.load_params(tmp_path / "p.pt")
    assert_same(before, snapshot(sim2))

    # another ensemble size: the differing shapes and the first differing object
    with nengo.Network(seed=3) as other:
        nengo.Ensemble(31, 2, label="a")
    with pytest.raises(ValidationError) as info:
        make_sim(other).load_params(tmp_path / "p.pt")
    text = str(info.value)
    assert "ensembles.a.bias (shape (30,) in the file, (31,) here)" in text
    assert "in the file but not in this network: connections.connection_0.weights, " in text
    assert "ensembles.c.encoders and 2 more" in text  # long lists are cut
    assert "Ensemble 'a' (label 'a') [30, 2, 'LIFRate'] in the file" in text


def test_load_state_needs_the_same_network(tmp_path):
    """The trainable parameters of LIFRate and LIF networks match; their state
    does not, so include_state=True needs the network the file came from."""
    net, _ = make_net(nengo.LIFRate())
    sim = make_sim(net)
    sim.save_params(tmp_path / "p.pt", include_state=True)
    spiking = make_sim(make_net(nengo.LIF())[0])
    spiking.load_params(tmp_path / "p.pt")
    with pytest.raises(ValidationError, match="different network.*'LIFRate'.*'LIF'"):
        spiking.load_params(tmp_path / "p.pt", include_state=True)


def save_version_1(sim, path):
    """A file as save_params wrote it before version 2: every state-dict tensor."""
    payload = {
        "format": "snntorch_nengo.params",
        "version": 1,
        "dtype": "float64",
        "fingerprint": params_mod.fingerprint(sim.module),
        "params": {
            name: t.detach().clone()
            for name, t in params_mod.param_tensors(sim.module).items()
        },
        "state": None,
        "n_steps": None,
    }
    payload["checksum"] = params_mod.checksum(payload)
    torch.save(payload, path)
    return payload


def test_version_1_files_load_as_before(tmp_path):
    net, _ = make_net()
    src = make_sim(net)
    perturb(src)
    payload = save_version_1(src, tmp_path / "v1.pt")
    constants = set(payload["params"]) - {
        params_mod.stable_name(n) for n, _ in src.module.named_parameters()
    }
    assert constants  # the file holds built constants too ...
    name = sorted(constants)[0]
    payload["params"][name] = payload["params"][name] + 1
    payload["checksum"] = params_mod.checksum(payload)
    torch.save(payload, tmp_path / "v1.pt")

    sim = make_sim(make_net()[0])
    sim.load_params(tmp_path / "v1.pt")
    # ... and they all load, constants included, as version 1 always did
    assert_same(snapshot(sim), {k: v for k, v in payload["params"].items()})

    # only into the network with the same structure
    for other in (make_net(nengo.LIF())[0], tutorial_net(nengo.LIFRate())):
        sim = make_sim(other)
        before = snapshot(sim)
        with pytest.raises(ValidationError, match="different network; object"):
            sim.load_params(tmp_path / "v1.pt")
        assert_same(before, snapshot(sim))
    with_probe, _ = make_net()
    with with_probe:
        nengo.Probe(with_probe.ensembles[0], synapse=0.01)
    with pytest.raises(ValidationError, match="different network; object 12 is Probe"):
        make_sim(with_probe).load_params(tmp_path / "v1.pt")


def test_probe_connections_do_not_train():
    """The connection nengo builds into a decoded probe is no trainable parameter
    (as in NengoDL): adding a probe leaves the trainable parameters as they were."""
    net, _ = make_net()
    names = [n for n, _ in make_sim(net).module.named_parameters()]
    with net:
        nengo.Probe(net.ensembles[0], synapse=0.01)
        nengo.Probe(net.ensembles[1], synapse=None, solver=nengo.solvers.LstsqL2())
    sim = make_sim(net)
    assert [n for n, _ in sim.module.named_parameters()] == names
    probe_conns = [
        key for key, c in sim.module.connections.items()
        if isinstance(c.obj.post_obj, nengo.Probe)
    ]
    assert len(probe_conns) == 4  # two of make_net's probes decode, and the two
    for key in probe_conns:
        assert "weights" in sim.module.connections[key]._buffers



def test_torch_module_tensors_are_saved(tmp_path):
    """A Layer's torch module: its parameters and its running statistics (a
    BatchNorm's) are trained values, saved and loaded; the file still loads
    into the network built with other neurons."""

    def net_with(neuron_type):
        with nengo.Network(seed=0) as net:
            inp = nengo.Node(np.zeros(4))
            x = snntorch_nengo.Layer(torch.nn.Linear(4, 6))(inp)
            x = snntorch_nengo.Layer(torch.nn.BatchNorm1d(6))(x)
            x = snntorch_nengo.Layer(neuron_type)(x)
            net.p = nengo.Probe(x)
        return net

    sim = make_sim(net_with(nengo.RectifiedLinear()))
    names = set(params_mod.trained_tensors(sim.module))
    bn = [n for n in names if n.endswith("running_mean")]
    assert len(bn) == 1 and any(n.endswith("num_batches_tracked") for n in names)
    with torch.no_grad():
        for name, tensor in params_mod.trained_tensors(sim.module).items():
            if tensor.is_floating_point():
                tensor.add_(torch.arange(tensor.numel()).reshape(tensor.shape) * 0.01)
    sim.save_params(tmp_path / "p.pt")

    sim2 = make_sim(net_with(nengo.SpikingRectifiedLinear()))
    sim2.load_params(tmp_path / "p.pt")
    saved = params_mod.trained_tensors(sim.module)
    loaded = params_mod.trained_tensors(sim2.module)
    assert saved.keys() == loaded.keys()
    for name in saved:
        assert torch.equal(saved[name], loaded[name]), name


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
