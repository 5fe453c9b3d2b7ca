"""Malformed uses get clear errors naming the object and the problem.

Each case checks the exception type and the words of the message that tell the
user what went wrong and where; cases that involve files also check that
nothing the user saved was changed. (A Converter given an unsupported layer with
fallback off is tested with the converter, in tests/test_converter.py.)
"""

import os
import re

import nengo
import numpy as np
import pytest
import torch
from nengo.exceptions import ConfigError, SimulationError, SimulatorClosed
from nengo.exceptions import ValidationError

import snntorch_nengo
from snntorch_nengo import NengoModule, Simulator, TensorNode


def make_net(check_finite=None):
    with nengo.Network(seed=0, label="net") as net:
        if check_finite is not None:
            snntorch_nengo.configure_settings(check_finite=check_finite)
        net.a = nengo.Node([0.0], label="a")
        net.b = nengo.Node([0.0, 0.0], label="b")
        net.ens = nengo.Ensemble(10, 1, label="ens", neuron_type=nengo.RectifiedLinear())
        nengo.Connection(net.a, net.ens, synapse=None)
        nengo.Connection(net.b[0], net.ens, synapse=None)
        net.p = nengo.Probe(net.ens, label="out")
        net.p2 = nengo.Probe(net.ens.neurons, label="rates")
    return net


def one_input_net():
    with nengo.Network(seed=0) as net:
        net.a = nengo.Node([0.0], label="a")
        net.ens = nengo.Ensemble(10, 1, label="ens", neuron_type=nengo.RectifiedLinear())
        nengo.Connection(net.a, net.ens, synapse=None)
        net.p = nengo.Probe(net.ens, label="out")
    return net


@pytest.fixture(scope="module")
def net():
    return make_net()


@pytest.fixture(scope="module")
def sim(net):
    with Simulator(net, minibatch_size=2, progress_bar=False) as sim:
        yield sim


def zeros(*shape):
    return np.zeros(shape)


def inputs(net, n=2, steps=3):
    return {net.a: zeros(n, steps, 1), net.b: zeros(n, steps, 2)}


# --- building a simulator


@pytest.mark.parametrize(
    "kwargs, words",
    [
        ({"network": "net"}, ["network", "must be a nengo.Network", "str"]),
        ({"dt": 0}, ["dt", "positive time step", "0"]),
        ({"dt": -0.001}, ["dt", "positive time step"]),
        ({"dt": float("nan")}, ["dt", "positive time step"]),
        ({"dtype": "float7"}, ["dtype", "'float7' is not a data type"]),
        ({"dtype": "int32"}, ["dtype", "floating-point", "int32"]),
        ({"device": "banana"}, ["device", "'banana' is not a torch device"]),
        ({"minibatch_size": 0}, ["minibatch_size", "positive integer", "0"]),
    ],
)
def test_bad_simulator_arguments(net, kwargs, words):
    kwargs = {"network": net, "progress_bar": False, **kwargs}
    with pytest.raises(ValidationError) as info:
        Simulator(**kwargs)
    for word in words:
        assert word in str(info.value)


def test_device_that_does_not_exist(net):
    # on a CUDA machine cuda:99 does not exist; elsewhere CUDA is missing
    with pytest.raises(ValidationError, match="device") as info:
        Simulator(net, device="cuda:99", progress_bar=False)
    message = str(info.value)
    assert "cuda:99" in message
    assert "does not exist" in message or "CUDA is not available" in message
    with pytest.raises(ValidationError, match="'banana' is not a torch device"):
        NengoModule(net, device="banana")


# an unsupported Nengo object (an operator we have no maker for):
# tests/test_module.py::test_error_unsupported_operator


def test_unknown_setting():
    with pytest.raises(ConfigError, match="'check_finites' is not a setting"):
        with nengo.Network():
            snntorch_nengo.configure_settings(check_finites=False)


@pytest.mark.parametrize(
    "name, value, words",
    [
        # strings are truthy: each of these used to switch the feature on
        ("learning_phase", "False", ["learning_phase='False'", "None (follow train()/eval()), True", "type str"]),
        ("windowed", "no", ["windowed='no'", "must be True or False"]),
        ("in_place", "false", ["in_place='false'", "must be True or False"]),
        ("keep_history", "False", ["keep_history='False'", "must be True or False"]),
        ("check_finite", "no", ["check_finite='no'", "must be True or False"]),
        ("stateful", 0, ["stateful=0", "must be True or False", "type int"]),
        ("inference_only", "yes", ["inference_only='yes'", "must be True or False"]),
        ("trainable", "no", ["trainable='no'", "None (everything trains), True or False"]),
        ("lif_smoothing", -1.0, ["lif_smoothing=-1.0", "a number >= 0"]),
        ("lif_smoothing", "x", ["lif_smoothing='x'", "a number >= 0"]),
        ("lif_smoothing", float("nan"), ["lif_smoothing=nan", "a number >= 0"]),
        ("lif_smoothing", True, ["lif_smoothing=True", "a number >= 0"]),
        ("dtype", "int32", ["dtype='int32'", "floating-point"]),
        ("dtype", "float7", ["dtype='float7'", "not a data type"]),
        ("surrogate", "fast_sigmod", ["surrogate='fast_sigmod'", "unknown surrogate", "fast_sigmoid"]),
    ],
)
def test_bad_setting_values(name, value, words):
    good = "keep_history" if name == "stateful" else "stateful"
    with nengo.Network() as net:
        with pytest.raises(ValidationError, match=re.escape(words[0])) as info:
            snntorch_nengo.configure_settings(**{good: False, name: value})
    message = str(info.value)
    assert message.startswith(f"{name}: "), message
    for word in words:
        assert word in message, message
    # nothing of the bad call was stored, not even the good setting beside it
    assert snntorch_nengo.config.get_setting(net, good) is None


def test_setting_values_checked_when_set_on_the_config():
    with nengo.Network() as net:
        snntorch_nengo.configure_settings(keep_history=True, learning_phase=None)
    with pytest.raises(ValidationError, match="keep_history must be True or False"):
        net.config[nengo.Network].snntorch_keep_history = "False"
    assert snntorch_nengo.config.get_setting(net, "keep_history") is True


def test_every_setting_has_a_check():
    from snntorch_nengo.config import _CHECKS, SETTINGS

    assert set(_CHECKS) == set(SETTINGS)


def test_good_setting_values_are_kept():
    with nengo.Network() as net:
        snntorch_nengo.configure_settings(
            lif_smoothing=0, dtype="float32", keep_history=np.bool_(False)
        )
    get = snntorch_nengo.config.get_setting
    assert get(net, "lif_smoothing") == 0.0
    assert get(net, "dtype") is torch.float32
    assert get(net, "keep_history") is False


def test_dtype_setting_honoured_by_simulator():
    with nengo.Network() as net:
        snntorch_nengo.configure_settings(dtype=torch.float32)
        nengo.Probe(nengo.Node([0.1]))
    with Simulator(net, progress_bar=False) as sim:
        assert sim.dtype == torch.float32 and sim.module.dtype == torch.float32
        assert sim.predict(n_steps=2)[net.probes[0]].dtype == np.float32
    assert NengoModule(net).dtype == torch.float32
    # an explicit argument wins over the setting
    with Simulator(net, progress_bar=False, dtype="float64") as sim:
        assert sim.module.dtype == torch.float64
    with nengo.Network() as plain:
        nengo.Probe(nengo.Node([0.1]))
    with Simulator(plain, progress_bar=False) as sim:
        # the repository's nengorc sets [snntorch_nengo] dtype: float64 for tests
        assert sim.dtype == torch.float64


# --- inputs to predict / run_steps


@pytest.mark.parametrize(
    "make_x, words",
    [
        # wrong shapes
        (lambda n: {n.a: zeros(2, 3), n.b: zeros(2, 3, 2)}, ["<Node 'a'>", "(batch, n_steps, 1)", "(2, 3)"]),
        (lambda n: {n.a: zeros(2, 3, 2), n.b: zeros(2, 3, 2)}, ["<Node 'a'>", "(batch, n_steps, 1)", "(2, 3, 2)"]),
        (lambda n: {n.a: zeros(2, 3, 1), n.b: zeros(2, 4, 2)}, ["<Node 'b'>", "4 steps", "expected 3"]),
        (lambda n: {n.a: zeros(2, 3, 1), n.b: zeros(4, 3, 2)}, ["different numbers of samples", "<Node 'a'>: 2", "<Node 'b'>: 4"]),
        # wrong dtypes
        (lambda n: {n.a: np.full((2, 3, 1), "x"), n.b: zeros(2, 3, 2)}, ["<Node 'a'>", "real numbers", "<U1"]),
        (lambda n: {n.a: np.empty((2, 3, 1), dtype=object), n.b: zeros(2, 3, 2)}, ["<Node 'a'>", "real numbers", "object"]),
        (lambda n: {n.a: np.ones((2, 3, 1), dtype=complex), n.b: zeros(2, 3, 2)}, ["<Node 'a'>", "complex numbers are not simulated"]),
        (lambda n: {n.a: torch.ones((2, 3, 1), dtype=torch.complex64), n.b: zeros(2, 3, 2)}, ["<Node 'a'>", "complex64"]),
        (lambda n: {n.a: [[[0.0]], [[0.0], [1.0]]], n.b: zeros(2, 3, 2)}, ["<Node 'a'>", "not a rectangular array"]),
        # NaN and inf
        (lambda n: {n.a: np.full((2, 3, 1), np.nan), n.b: zeros(2, 3, 2)}, ["<Node 'a'>", "6 NaN", "check_finite=False"]),
        # broadcast over the steps (kept unmaterialised): the one step is checked
        (lambda n: {n.a: np.broadcast_to(np.full((2, 1, 1), np.inf), (2, 3, 1)), n.b: zeros(2, 3, 2)}, ["<Node 'a'>", "2 infinite"]),
        (lambda n: {n.a: zeros(2, 3, 1), n.b: np.where(np.arange(12).reshape(2, 3, 2) == 7, np.inf, 0)}, ["<Node 'b'>", "1 infinite", "(1, 0, 1)"]),
        # nodes that are not input nodes of this network
        (lambda n: {nengo.Node([0.0], add_to_container=False, label="stray"): zeros(2, 3, 1)}, ["<Node 'stray'>", "not an input Node"]),
        (lambda n: {"nope": zeros(2, 3, 1)}, ["no input Node labelled 'nope'", "<Node 'a'>"]),
        (lambda n: {n.ens: zeros(2, 3, 1)}, ["<Ensemble 'ens'>", "not an input Node"]),
        # one array for a network with two input nodes
        (lambda n: zeros(2, 3, 1), ["exactly one input Node", "has 2"]),
        # samples not a multiple of the minibatch
        (lambda n: {n.a: zeros(3, 3, 1), n.b: zeros(3, 3, 2)}, ["number of samples (3)", "minibatch_size (2)"]),
    ],
)
def test_bad_predict_inputs(net, sim, make_x, words):
    before = sim.n_steps
    with pytest.raises(ValidationError) as info:
        sim.predict(make_x(net))
    for word in words:
        assert word in str(info.value), str(info.value)
    assert sim.n_steps == before


@pytest.mark.parametrize(
    "n_steps, words",
    [
        (0, ["predict", "positive integer", "got 0"]),
        (-4, ["predict", "positive integer", "got -4"]),
        (2.5, ["predict", "positive integer", "got 2.5"]),
        (None, ["give n_steps"]),
        (True, ["predict", "positive integer", "got True"]),
    ],
)
def test_bad_n_steps_predict(sim, n_steps, words):
    with pytest.raises(ValidationError) as info:
        sim.predict(n_steps=n_steps)
    for word in words:
        assert word in str(info.value)


def test_absurd_n_steps_refused_before_running(sim):
    with pytest.raises(ValidationError, match=r"predict: n_steps=1000000000000 needs .* GiB of probe output, more than this machine's"):
        sim.predict(n_steps=10**12)


def test_zero_steps_from_inputs(net, sim):
    with pytest.raises(ValidationError, match="n_steps must be a positive integer, got 0"):
        sim.predict(inputs(net, steps=0))


def test_bad_run_steps(net):
    with Simulator(net, progress_bar=False) as sim:
        with pytest.raises(ValidationError, match="non-negative integer .got -1"):
            sim.run_steps(-1)
        with pytest.raises(ValidationError, match="Must be positive"):
            sim.run(-0.5)
        with pytest.raises(ValidationError, match="<Node 'a'> has 4 steps, expected 3"):
            sim.run_steps(3, data={net.a: zeros(1, 4, 1)})
        assert sim.n_steps == 0


def test_same_node_by_object_and_label(net, compiled):
    x = {net.a: zeros(2, 3, 1), "a": np.ones((2, 3, 1)), net.b: zeros(2, 3, 2)}
    with pytest.raises(ValidationError, match="input for <Node 'a'> given twice .by the Node and by its label 'a'"):
        compiled.predict(x)
    with pytest.raises(ValidationError, match=re.escape("fit: input for [\"<Node 'a'>\"] given twice")):
        fit(compiled, x, {net.p: zeros(2, 3, 1)})


def test_two_dimensional_input_names_the_node():
    net = one_input_net()
    with Simulator(net, progress_bar=False) as sim:
        with pytest.raises(ValidationError, match=re.escape("input for <Node 'a'> must have shape (batch, n_steps, 1), got (3, 1) (add the batch axis")):
            sim.predict(zeros(3, 1))


def test_empty_batch(net, sim):
    with pytest.raises(ValidationError, match=r"predict: the inputs hold no samples .their first axis is 0"):
        sim.predict({net.a: zeros(0, 3, 1), net.b: zeros(0, 3, 2)})


def test_empty_batch_in_fit_and_evaluate(net, compiled):
    empty = {net.a: zeros(0, 3, 1), net.b: zeros(0, 3, 2)}
    with pytest.raises(ValidationError, match=r"fit: the data hold no samples .their first axis is 0"):
        fit(compiled, empty, {net.p: zeros(0, 3, 1)})
    with pytest.raises(ValidationError, match=r"evaluate: the data hold no samples .their first axis is 0"):
        compiled.evaluate(empty, {net.p: zeros(0, 3, 1)}, verbose=0)


def test_targets_with_fewer_steps_blame_the_target(net, compiled):
    with pytest.raises(ValidationError, match=re.escape("y[out] must have shape (2, 3, 1), got (2, 2, 1)")):
        fit(compiled, inputs(net), {net.p: zeros(2, 2, 1)})


def test_bool_run_steps_refused(net):
    with Simulator(net, progress_bar=False) as sim:
        with pytest.raises(ValidationError, match="non-negative integer .got True"):
            sim.run_steps(True)
        assert sim.n_steps == 0


def test_reversed_stride_input_is_copied():
    net = one_input_net()
    with Simulator(net, progress_bar=False) as sim:
        x = np.arange(3.0).reshape(1, 3, 1)
        reversed_out = sim.predict(x[:, ::-1])[net.p]
        copied_out = sim.predict(x[:, ::-1].copy())[net.p]
    np.testing.assert_array_equal(reversed_out, copied_out)


@pytest.mark.parametrize("epochs", [-1, 0, 1.5, True, "2"])
def test_bad_epochs(net, compiled, epochs):
    params = {k: v.clone() for k, v in compiled.module.state_dict().items()}
    with pytest.raises(ValidationError, match=re.escape(f"epochs must be a positive integer (passes over the data), got {epochs!r}")):
        fit(compiled, inputs(net), {net.p: zeros(2, 3, 1)}, epochs=epochs)
    for name, value in compiled.module.state_dict().items():
        assert torch.equal(value, params[name]), name


def test_nan_inputs_pass_with_check_finite_off():
    net = make_net(check_finite=False)
    with Simulator(net, progress_bar=False) as sim:
        x = {net.a: np.full((1, 3, 1), np.nan), net.b: zeros(1, 3, 2)}
        out = sim.predict(x)[net.p]
    assert np.isnan(out).all()  # let through: NaN reaches the probes


def test_batch_mismatch_with_stateful_module(net):
    module = NengoModule(net)
    module({net.a: torch.zeros(2, 3, 1), net.b: torch.zeros(2, 3, 2)})
    with pytest.raises(ValidationError, match="batch size 3.*batch size 2.*reset"):
        module({net.a: torch.zeros(3, 3, 1), net.b: torch.zeros(3, 3, 2)})


def test_stateful_with_stateless_setting():
    with nengo.Network() as net:
        snntorch_nengo.configure_settings(stateful=False)
        nengo.Probe(nengo.Node([1.0]))
    with Simulator(net, progress_bar=False) as sim:
        with pytest.raises(ValidationError, match="stateful=True.*stateful=False"):
            sim.predict(n_steps=2, stateful=True)


# --- closed simulator


@pytest.mark.parametrize(
    "action, verb",
    [
        (lambda s, n, p: s.run(0.01), "run"),
        (lambda s, n, p: s.step(), "run"),
        (lambda s, n, p: s.predict(n_steps=2), "run"),
        (lambda s, n, p: s.reset(), "reset"),
        (lambda s, n, p: s.fit(inputs(n, 1), {n.p: zeros(1, 3, 1)}), "fit"),
        (lambda s, n, p: s.evaluate(inputs(n, 1), {n.p: zeros(1, 3, 1)}), "evaluate"),
        (lambda s, n, p: s.save_params(p), "save parameters of"),
        (lambda s, n, p: s.load_params(p), "load parameters into"),
    ],
)
def test_closed_simulator(net, tmp_path, action, verb):
    path = tmp_path / "params.pt"
    with Simulator(net, progress_bar=False) as sim:
        sim.compile(optimizer="sgd", loss={net.p: "mse"})
        sim.save_params(path)
    saved = path.read_bytes()
    with pytest.raises(SimulatorClosed, match=f"Cannot {verb} closed Simulator"):
        action(sim, net, path)
    assert path.read_bytes() == saved


# --- training inputs and targets


@pytest.fixture(scope="module")
def compiled(net):
    with Simulator(net, minibatch_size=2, progress_bar=False) as sim:
        sim.compile(optimizer="sgd", loss={net.p: "mse"})
        yield sim


def fit(sim, x, y, **kwargs):
    return sim.fit(x, y, verbose=0, **kwargs)


@pytest.mark.parametrize(
    "make_xy, kwargs, error, words",
    [
        (lambda n: (inputs(n), {"nope": zeros(2, 3, 1)}), {}, ValidationError, ["'nope' is not a probe", "'out'"]),
        (lambda n: (inputs(n), {nengo.Probe(n.a, add_to_container=False): zeros(2, 3, 1)}), {}, ValidationError, ["is not a probe of this network"]),
        (lambda n: (inputs(n), {n.p2: zeros(2, 3, 10)}), {}, ValidationError, ["no targets for probe 'out'"]),
        (lambda n: (inputs(n), {n.p: zeros(2, 3, 1), n.p2: zeros(2, 3, 10)}), {}, ValidationError, ["without a loss", "'rates'"]),
        (lambda n: (inputs(n), {n.p: zeros(4, 3, 1)}), {}, ValidationError, ["different numbers of samples", "[2, 4]"]),
        (lambda n: (inputs(n), {n.p: zeros(2, 3, 5)}), {}, ValidationError, ["y[out] must have shape (2, 3, 1)", "(2, 3, 5)"]),
        (lambda n: (inputs(n), {n.p: zeros(2)}), {}, ValidationError, ["y[out] must have shape", "(2,)"]),
        (lambda n: (inputs(n), {n.p: zeros(2, 3, 1)}), {"batch_size": 1}, ValidationError, ["batch_size (1)", "minibatch_size (2)"]),
        (lambda n: (inputs(n, 3), {n.p: zeros(3, 3, 1)}), {}, ValidationError, ["number of samples (3)", "minibatch_size (2)"]),
        (lambda n: ({n.a: zeros(2, 3, 1)}, {n.p: zeros(2, 3, 1)}), {}, ValidationError, ["inputs are missing", "<Node 'b'>"]),
        (lambda n: (inputs(n), {n.p: np.full((2, 3, 1), np.nan)}), {}, ValidationError, ["targets for probe 'out'", "6 NaN"]),
        (lambda n: ({n.a: np.full((2, 3, 1), -np.inf), n.b: zeros(2, 3, 2)}, {n.p: zeros(2, 3, 1)}), {}, ValidationError, ["x[<Node 'a'>]", "6 infinite"]),
        (lambda n: (inputs(n), {n.p: np.full((2, 3, 1), "y")}), {}, ValidationError, ["targets for probe 'out'", "real numbers"]),
        (lambda n: (inputs(n, steps=0), {n.p: zeros(2, 0, 1)}), {}, ValidationError, ["fit: n_steps must be a positive integer, got 0"]),
    ],
)
def test_bad_fit(net, compiled, make_xy, kwargs, error, words):
    x, y = make_xy(net)
    params = {k: v.clone() for k, v in compiled.module.state_dict().items()}
    with pytest.raises(error) as info:
        fit(compiled, x, y, **kwargs)
    for word in words:
        assert word in str(info.value), str(info.value)
    for name, value in compiled.module.state_dict().items():
        assert torch.equal(value, params[name]), name  # no training happened


def test_nan_targets_allowed_for_nan_mse(net):
    with Simulator(net, minibatch_size=2, progress_bar=False) as sim:
        sim.compile(optimizer="sgd", loss={net.p: "nan_mse"})
        y = np.full((2, 3, 1), np.nan)
        y[:, -1] = 0.5  # NaN means "no target here"
        fit(sim, inputs(net), {net.p: y})
        with pytest.raises(ValidationError, match="1 infinite"):
            y[0, 0] = np.inf
            fit(sim, inputs(net), {net.p: y})


def test_training_before_compile_and_bad_compile(net):
    with Simulator(net, progress_bar=False) as sim:
        with pytest.raises(SimulationError, match=r"call sim.compile\(.*\) before sim.fit"):
            fit(sim, inputs(net, 1), {net.p: zeros(1, 3, 1)})
        with pytest.raises(ValidationError, match="unknown loss 'msq'"):
            sim.compile(loss="msq")
        with pytest.raises(ValidationError, match="unknown optimizer 'adamm'"):
            sim.compile(optimizer="adamm")
        with pytest.raises(ValidationError, match="'outt' is not a probe"):
            sim.compile(loss={"outt": "mse"})


# --- parameter files


@pytest.fixture
def saved(tmp_path):
    """A simulator, the file it saved and that file's bytes."""
    net = one_input_net()
    sim = Simulator(net, progress_bar=False)
    path = tmp_path / "params.pt"
    sim.save_params(path, include_state=True)
    yield sim, net, path, path.read_bytes()
    sim.close()


def params_of(sim):
    return {k: v.clone() for k, v in sim.module.state_dict().items()}


def assert_unchanged(sim, before):
    for name, value in sim.module.state_dict().items():
        assert torch.equal(value, before[name]), name


def test_load_truncated_file(saved, tmp_path):
    sim, _, path, good = saved
    bad = tmp_path / "truncated.pt"
    bad.write_bytes(good[: len(good) // 2])
    before = params_of(sim)
    with pytest.raises(ValidationError, match="truncated.pt is not a parameter file"):
        sim.load_params(bad)
    assert_unchanged(sim, before)
    assert path.read_bytes() == good


def test_load_corrupted_file(saved, tmp_path):
    """A flipped byte inside a tensor: torch.load reads it, the checksum does not."""
    sim, net, path, good = saved
    encoders = sim.module.module_of(net.ens).encoders.detach().numpy().tobytes()
    raw = bytearray(good)
    at = raw.find(encoders)
    assert at > 0
    raw[at + 5] ^= 0x40
    bad = tmp_path / "flipped.pt"
    bad.write_bytes(bytes(raw))
    torch.load(bad, weights_only=True)  # the damage is invisible to torch
    before = params_of(sim)
    with pytest.raises(ValidationError, match="flipped.pt is corrupted.*checksum"):
        sim.load_params(bad)
    assert_unchanged(sim, before)
    sim.load_params(path)  # the good file still loads


def write_npz(path):
    with open(path, "wb") as f:
        np.savez(f, w=np.ones(3))


@pytest.mark.parametrize(
    "write, words",
    [
        (write_npz, ["is not a parameter file saved by save_params"]),
        (lambda p: torch.save({"w": torch.ones(3)}, p), ["is not a parameter file saved by save_params"]),
        (lambda p: p.write_text("hello"), ["is not a parameter file saved by save_params"]),
        (
            lambda p: torch.save({"format": "snntorch_nengo.params", "version": 99}, p),
            ["format version 99", "reads versions 1, 2"],
        ),
    ],
)
def test_load_foreign_file(saved, tmp_path, write, words):
    sim, _, _, _ = saved
    foreign = tmp_path / "foreign.bin"
    write(foreign)
    before = params_of(sim)
    with pytest.raises(ValidationError) as info:
        sim.load_params(foreign)
    for word in words + ["foreign.bin"]:
        assert word in str(info.value)
    assert_unchanged(sim, before)


def test_load_file_of_another_network(saved):
    sim, _, path, _ = saved
    with nengo.Network(seed=0) as other:
        a = nengo.Node([0.0], label="a")
        ens = nengo.Ensemble(12, 1, label="ens")
        nengo.Connection(a, ens)
    with Simulator(other, progress_bar=False) as sim2:
        with pytest.raises(ValidationError, match="different network.*'ens'.*12"):
            sim2.load_params(path)


def test_load_missing_file_and_state(saved, tmp_path):
    sim, _, path, _ = saved
    with pytest.raises(FileNotFoundError, match="missing.pt"):
        sim.load_params(tmp_path / "missing.pt")
    sim.save_params(tmp_path / "nostate.pt")
    with pytest.raises(ValidationError, match="holds no simulation state"):
        sim.load_params(tmp_path / "nostate.pt", include_state=True)


def test_failed_save_keeps_the_old_file(saved, monkeypatch):
    sim, net, path, good = saved
    with torch.no_grad():
        sim.module.module_of(net.ens).bias.add_(1.0)

    def failing_save(obj, f, *args, **kwargs):
        f.write(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", failing_save)
    with pytest.raises(OSError, match="disk full"):
        sim.save_params(path)
    assert path.read_bytes() == good
    assert sorted(os.listdir(path.parent)) == ["params.pt"]  # no temporary left


def test_save_removes_temporaries_of_a_killed_save(saved, tmp_path):
    sim, _, path, _ = saved
    # what kill -9 during save_params leaves: a hidden temporary beside the target
    stale = tmp_path / ".params.pt.abc12345.tmp"
    stale.write_bytes(b"partial")
    other = tmp_path / ".other.pt.abc12345.tmp"  # another target's: not ours to remove
    other.write_bytes(b"partial")
    sim.save_params(path)
    assert sorted(os.listdir(tmp_path)) == [".other.pt.abc12345.tmp", "params.pt"]
    sim.load_params(path)


def test_save_through_a_symlink_writes_its_target(saved, tmp_path):
    sim, net, path, good = saved
    link = tmp_path / "link.pt"
    link.symlink_to(path)
    with torch.no_grad():
        sim.module.module_of(net.ens).bias.add_(1.0)
    sim.save_params(link)
    assert link.is_symlink() and os.readlink(link) == str(path)
    assert path.read_bytes() != good  # the target holds the new parameters
    before = params_of(sim)
    with torch.no_grad():
        sim.module.module_of(net.ens).bias.sub_(1.0)
    sim.load_params(path)
    assert_unchanged(sim, before)


def test_save_to_missing_folder_or_a_folder(saved, tmp_path):
    sim, _, _, _ = saved
    with pytest.raises(ValidationError, match="the folder .*nowhere does not exist"):
        sim.save_params(tmp_path / "nowhere" / "p.pt")
    with pytest.raises(ValidationError, match="is a folder"):
        sim.save_params(tmp_path)


# --- TensorNodes


def tensor_node_sim(func, **kwargs):
    with nengo.Network() as net:
        inp = nengo.Node([1.0, 2.0])
        node = TensorNode(func, shape_in=(2,), shape_out=(2,), label="tn", **kwargs)
        nengo.Connection(inp, node, synapse=None)
        nengo.Probe(node)
    return Simulator(net, progress_bar=False)


def test_tensor_node_wrong_shape():
    with tensor_node_sim(lambda t, x: x[:, :1]) as sim:
        with pytest.raises(SimulationError, match=r"<TensorNode 'tn'>.*shape \(1, 1\).*\(1, 2\)"):
            sim.run_steps(2)


def test_tensor_node_not_a_tensor():
    with tensor_node_sim(lambda t, x: x.numpy()) as sim:
        with pytest.raises(SimulationError, match="<TensorNode 'tn'>.*torch.Tensor.*ndarray"):
            sim.run_steps(2)


def test_tensor_node_complex_output():
    with pytest.raises(SimulationError, match=r"<TensorNode 'tn'>: tensor_func returned a torch.complex64 tensor; return real numbers"):
        with tensor_node_sim(lambda t, x: x.to(torch.complex64)) as sim:
            sim.run_steps(2)


def test_tensor_node_meta_output():
    with pytest.raises(SimulationError, match=r"<TensorNode 'tn'>: tensor_func returned a tensor on the 'meta' device"):
        with tensor_node_sim(lambda t, x: torch.zeros(x.shape, device="meta")) as sim:
            sim.run_steps(2)


def test_tensor_node_raises():
    def explode(t, x):
        raise KeyError("missing weights")

    with tensor_node_sim(explode) as sim:
        with pytest.raises(SimulationError, match="<TensorNode 'tn'>: tensor_func raised KeyError") as info:
            sim.run_steps(2)
    assert isinstance(info.value.__cause__, KeyError)  # the original stays attached


def test_converter_output_that_is_a_tuple_is_named():
    class LSTMOutput(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.lstm = torch.nn.LSTM(3, 4, batch_first=True)

        def forward(self, x):
            return self.lstm(x)  # (output, (h, c)), handed on whole

    with pytest.raises(ValidationError, match=re.escape("model output 'lstm' is a tuple, not a tensor")):
        snntorch_nengo.Converter(LSTMOutput(), input_shape=(5, 3))
