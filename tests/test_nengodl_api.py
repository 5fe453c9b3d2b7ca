"""NengoDL's documented calls, written as its tutorials write them (issue 14).

Each test uses NengoDL's call form unchanged; the comment above it names the
tutorial that calls it that way.
"""

import lightning as L
import nengo
import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

import snntorch_nengo
from snntorch_nengo import NengoLightningModule, Simulator


def classifier(d=8, n_classes=3, n_neurons=50, seed=0):
    """A one-hidden-layer rate network whose output Node holds class logits."""
    with nengo.Network(seed=seed) as net:
        net.inp = nengo.Node(np.zeros(d))
        ens = nengo.Ensemble(n_neurons, 1, neuron_type=nengo.RectifiedLinear())
        nengo.Connection(
            net.inp, ens.neurons, transform=snntorch_nengo.dists.Glorot(), synapse=None
        )
        net.out = nengo.Node(size_in=n_classes)
        nengo.Connection(
            ens.neurons, net.out, transform=snntorch_nengo.dists.Glorot(), synapse=None
        )
        net.p = nengo.Probe(net.out)
    return net


def class_data(n=200, d=8, n_classes=3, seed=0):
    """Linearly separable classes: x ``(n, 1, d)``, labels ``(n, 1, 1)`` (NengoDL's form)."""
    rng = np.random.RandomState(seed)
    x = rng.randn(n, 1, d)
    labels = (x[:, 0] @ rng.randn(d, n_classes)).argmax(-1)
    return x, labels[:, None, None].astype(np.float64)


# "Optimizing a spiking neural network": compile with an accuracy metric,
# evaluate the untrained network, then fit on the same simulator
def test_evaluate_before_fit():
    net = classifier()
    x, y = class_data()
    with Simulator(net, minibatch_size=20, progress_bar=False) as sim:
        sim.compile(
            optimizer=torch.optim.Adam(sim.parameters(), 1e-2),
            loss={net.p: "sparse_categorical_crossentropy"},
            metrics=["accuracy"],
        )
        before = sim.evaluate(x, y, verbose=0)
        history = sim.fit(x, y, epochs=2, verbose=0)
        after = sim.evaluate(x, y, verbose=0)
    assert len(history.history["probe_accuracy"]) == 2
    assert after["probe_accuracy"] > before["probe_accuracy"]
    assert after["loss"] < before["loss"]


# "Converting a Keras model": fit(..., validation_data=(x_val, y_val)) with
# metrics: training and validation figures are each their own
def test_fit_validation_metrics_are_separate():
    net = classifier()
    x, y = class_data()
    train, val = slice(0, 160), slice(160, 200)
    with Simulator(net, minibatch_size=20, progress_bar=False) as sim:
        # lr 0: the parameters stay, so each epoch's training figures must equal
        # evaluate() on the training data
        sim.compile(
            optimizer=torch.optim.SGD(sim.parameters(), lr=0.0),
            loss={net.p: "sparse_categorical_crossentropy"},
            metrics=["accuracy"],
        )
        history = sim.fit(
            x[train], y[train], epochs=2, verbose=0, validation_data=(x[val], y[val])
        ).history
        on_train = sim.evaluate(x[train], y[train], verbose=0)
        on_val = sim.evaluate(x[val], y[val], verbose=0)
    assert on_train["probe_accuracy"] != on_val["probe_accuracy"]  # a real check
    for epoch in range(2):
        assert history["probe_accuracy"][epoch] == pytest.approx(
            on_train["probe_accuracy"]
        )
        assert history["loss"][epoch] == pytest.approx(on_train["loss"])
        assert history["val_probe_accuracy"][epoch] == pytest.approx(
            on_val["probe_accuracy"]
        )
        assert history["val_loss"][epoch] == pytest.approx(on_val["loss"])


def test_fit_validation_metrics_while_training():
    """With learning, the last epoch's validation figures are evaluate()'s."""
    net = classifier()
    x, y = class_data()
    with Simulator(net, minibatch_size=20, progress_bar=False) as sim:
        sim.compile(
            optimizer=torch.optim.Adam(sim.parameters(), 1e-2),
            loss={net.p: "sparse_categorical_crossentropy"},
            metrics=["accuracy"],
        )
        history = sim.fit(
            x[:160], y[:160], epochs=3, verbose=0, validation_data=(x[160:], y[160:])
        ).history
        on_val = sim.evaluate(x[160:], y[160:], verbose=0)
    assert history["val_probe_accuracy"][-1] == pytest.approx(on_val["probe_accuracy"])
    assert history["val_loss"][-1] == pytest.approx(on_val["loss"])
    assert min(history["probe_accuracy"]) > 0.3  # not the 0.0 of a shared state


def test_own_trainer_validation_metric_equals_validate():
    """NengoLightningModule in a user's Trainer: logged val figures are validate()'s."""
    net = classifier()
    x, y = class_data()
    dtype = torch.float64
    lm = NengoLightningModule(
        net,
        loss={net.p: "sparse_categorical_crossentropy"},
        metrics=["accuracy"],
        optimizer=lambda params: torch.optim.Adam(params, 1e-2),
        minibatch_size=20,
        dtype=dtype,
    )

    def loader(part):
        tensors = [torch.as_tensor(a[part], dtype=dtype) for a in (x, y)]
        return DataLoader(TensorDataset(*tensors), batch_size=20)

    kwargs = dict(
        logger=False, enable_progress_bar=False, enable_checkpointing=False,
        enable_model_summary=False, num_sanity_val_steps=0,
    )
    trainer = L.Trainer(max_epochs=2, **kwargs)
    trainer.fit(lm, loader(slice(0, 160)), loader(slice(160, 200)))
    logged = float(trainer.callback_metrics["val_probe_accuracy"])
    validated = L.Trainer(**kwargs).validate(
        lm, loader(slice(160, 200)), verbose=False
    )[0]
    assert logged == pytest.approx(validated["val_probe_accuracy"])


def converted_classifier(d=8, n_classes=3, seed=0):
    torch.manual_seed(seed)
    model = torch.nn.Sequential(
        torch.nn.Linear(d, 32), torch.nn.ReLU(), torch.nn.Linear(32, n_classes)
    )
    return model, snntorch_nengo.Converter(model)


# "Converting a Keras model to a spiking neural network": one array of images,
# one of labels, and dicts keyed by converter.inputs[0] / converter.outputs[0]
def test_converter_fit_evaluate_with_bias_node():
    model, converter = converted_classifier()
    x, y = class_data()
    with Simulator(converter.net, minibatch_size=20, progress_bar=False) as sim:
        sim.compile(
            optimizer=torch.optim.Adam(sim.parameters(), 1e-2),
            loss={converter.outputs[0]: "sparse_categorical_crossentropy"},
            metrics=["accuracy"],
        )
        before = sim.evaluate(
            {converter.inputs[0]: x}, {converter.outputs[0]: y}, verbose=0
        )
        sim.fit(x, y, epochs=3, verbose=0)
        after = sim.evaluate(
            {converter.inputs[0]: x}, {converter.outputs[0]: y}, verbose=0
        )
        out = sim.predict(x[:20])[converter.outputs[0]]
    assert after["loss"] < before["loss"]
    assert out.shape == (20, 1, 3)


def test_converter_endpoints_keyed_by_torch_layer():
    model, converter = converted_classifier()
    dense = model[2]
    assert converter.outputs[dense] is converter.outputs[0]
    assert converter.inputs[model[0]] is converter.inputs[0]
    with pytest.raises(KeyError, match="is not one of"):
        converter.outputs[model[0]]  # a hidden layer: not an output
    x, _ = class_data(n=4)
    with Simulator(converter.net, progress_bar=False, dtype=torch.float64) as sim:
        out = sim.predict({converter.inputs[model[0]]: x})[converter.outputs[dense]]
    expected = model.double()(torch.as_tensor(x[:, 0])).detach().numpy()
    assert np.allclose(out[:, -1], expected, atol=1e-6)


# "Optimizing a spiking neural network" and others: TensorFlow graph options
def test_tensorflow_graph_options_are_accepted():
    with nengo.Network(seed=0) as net:
        snntorch_nengo.configure_settings(
            use_loop=False,
            planner=object(),  # NengoDL passes its planner functions
            sorter=object(),
            simplifications=[],
            stateful=False,
        )
        a = nengo.Node([0.5])
        p = nengo.Probe(a)
    with Simulator(net, unroll_simulation=10, progress_bar=False) as sim:
        sim.run_steps(3)
    # real settings are still applied; the ignored ones are not stored
    assert snntorch_nengo.config.get_setting(net, "stateful") is False
    assert np.allclose(sim.data[p], 0.5)
    with nengo.Network():
        with pytest.raises(nengo.exceptions.ConfigError, match="not a setting"):
            snntorch_nengo.configure_settings(use_lop=False)  # typos still fail


# "Optimizing a cognitive model": sim.step(data=...)
def test_step_with_data():
    with nengo.Network() as net:
        a = nengo.Node(np.zeros(2))
        p = nengo.Probe(a)
    with Simulator(net, progress_bar=False) as sim:
        sim.step(data={a: np.array([[[1.0, 2.0]]])})
        sim.step(data={a: np.array([[[3.0, 4.0]]])})
        sim.step()
    assert np.allclose(sim.data[p], [[1, 2], [3, 4], [0, 0]])


def test_cli_exits_with_status_0(tmp_path):
    import sys

    from snntorch_nengo.cli import main

    args = [
        "fit", "--config", "configs/autoencoder.yaml", "--trainer.max_epochs=1",
        "--trainer.limit_train_batches=2", "--trainer.limit_val_batches=1",
        "--trainer.enable_progress_bar=false", f"--trainer.default_root_dir={tmp_path}",
    ]
    with pytest.raises(SystemExit) as exit_info:
        sys.exit(main(args))  # what the console script does
    assert exit_info.value.code == 0


# NengoDL's sparse categorical cross entropy form, with torch's own loss objects:
# logits (n, 1, classes), integer class targets (n, 1, 1)
@pytest.mark.parametrize(
    "loss",
    [
        torch.nn.CrossEntropyLoss(),
        torch.nn.functional.cross_entropy,
        torch.nn.CrossEntropyLoss(label_smoothing=0.1),
    ],
)
def test_torch_cross_entropy_with_class_index_targets(loss):
    net = classifier()
    x, y = class_data()
    with Simulator(net, minibatch_size=20, progress_bar=False) as sim:
        sim.compile(
            optimizer=torch.optim.Adam(sim.parameters(), 1e-2),
            loss={net.p: loss},
            metrics=["accuracy"],
        )
        before = sim.evaluate(x, y, verbose=0)
        sim.fit(x, y, epochs=3, verbose=0)
        after = sim.evaluate(x, y, verbose=0)
        logits = sim.predict(x)[net.p]
    labels = y[:, 0, 0].astype(int)
    # the loss is torch's on the flattened logits, its options honoured
    expected = torch.nn.functional.cross_entropy(
        torch.as_tensor(logits[:, 0]),
        torch.as_tensor(labels),
        label_smoothing=getattr(loss, "label_smoothing", 0.0),
    )
    assert after["loss"] == pytest.approx(float(expected), rel=1e-5)
    assert after["probe_accuracy"] == pytest.approx(
        np.mean(logits[:, 0].argmax(-1) == labels)
    )
    assert after["probe_accuracy"] > max(before["probe_accuracy"], 0.8)


def test_torch_nll_loss_with_one_hot_and_index_targets():
    net = classifier()
    x, y = class_data(n=40)
    one_hot = np.eye(3)[y[:, 0, 0].astype(int)][:, None]
    with Simulator(net, minibatch_size=20, progress_bar=False) as sim:
        sim.compile(loss={net.p: torch.nn.CrossEntropyLoss()})
        from_indices = sim.evaluate(x, y, verbose=0)["loss"]
        from_one_hot = sim.evaluate(x, one_hot, verbose=0)["loss"]
        sim.compile(loss={net.p: torch.nn.NLLLoss()})
        nll = sim.evaluate(x, y, verbose=0)["loss"]
        logits = sim.predict(x)[net.p][:, 0]
    assert from_indices == pytest.approx(from_one_hot, rel=1e-6)
    labels = y[:, 0, 0].astype(int)
    assert nll == pytest.approx(-np.mean(logits[np.arange(40), labels]), rel=1e-5)


# "Legendre Memory Units in NengoDL": keep_history=False, inputs (n, steps, 1),
# targets (n, 1, 1) for the last step only
def test_keep_history_false_targets_have_one_step():
    n, steps, n_classes = 40, 16, 3
    rng = np.random.RandomState(0)
    x = rng.randn(n, steps, 1)
    # the class is decided by the sum over the whole sequence: memory is needed
    labels = np.digitize(x.sum(axis=(1, 2)), [-2.0, 2.0])
    y = labels[:, None, None].astype(np.float64)
    with nengo.Network(seed=0) as net:
        snntorch_nengo.configure_settings(keep_history=False, stateful=False)
        inp = nengo.Node(np.zeros(1))
        mem = nengo.Ensemble(40, 1, neuron_type=nengo.RectifiedLinear())
        nengo.Connection(inp, mem.neurons, transform=snntorch_nengo.dists.Glorot(),
                         synapse=0.01)
        out = nengo.Node(size_in=n_classes)
        nengo.Connection(mem.neurons, out, transform=snntorch_nengo.dists.Glorot(),
                         synapse=None)
        p = nengo.Probe(out)
    with Simulator(net, minibatch_size=20, progress_bar=False) as sim:
        sim.compile(
            optimizer=torch.optim.Adam(sim.parameters(), 1e-2),
            loss={p: torch.nn.CrossEntropyLoss()},
            metrics=["accuracy"],
        )
        before = sim.evaluate(x, y, verbose=0)
        sim.fit(x, y, epochs=2, verbose=0)
        after = sim.evaluate(x, y, verbose=0)
        logits = sim.predict(x)[p]
    assert logits.shape == (n, 1, n_classes)
    expected = torch.nn.functional.cross_entropy(
        torch.as_tensor(logits[:, 0]), torch.as_tensor(labels)
    )
    assert after["loss"] == pytest.approx(float(expected), rel=1e-5)
    assert after["loss"] < before["loss"]
    with Simulator(net, minibatch_size=20, progress_bar=False) as sim:
        sim.compile(loss={p: torch.nn.CrossEntropyLoss()})
        with pytest.raises(nengo.exceptions.ValidationError, match=r"\(40, 1, 1\)"):
            sim.evaluate(x, np.repeat(y, steps, axis=1), verbose=0)


class _CountingBar(nengo.utils.progress.ProgressBar):
    """A progress bar that records what it is told (NengoDL shows one in predict)."""

    def __init__(self):
        super().__init__()
        self.updates = []

    def update(self, progress):
        self.updates.append((progress.name_during, progress.n_steps, progress.max_steps))

    def close(self):
        pass


def test_predict_shows_progress_over_batches():
    net = classifier()
    x, _ = class_data(n=60)
    with Simulator(net, minibatch_size=20, progress_bar=False) as sim:
        bar = _CountingBar()
        out = sim.predict(x, progress_bar=bar)
        assert bar.updates[-1] == ("Predicting", 3, 3)
        hidden = _CountingBar()
        again = sim.predict(x, progress_bar=hidden, verbose=0)
        assert hidden.updates == []
        one = _CountingBar()
        sim.predict(x[:20], progress_bar=one)  # a single batch: no bar
        assert one.updates == []
    assert np.array_equal(out[net.p], again[net.p])


@pytest.fixture
def no_rc_dtype():
    """nengo.rc without the repository nengorc's [snntorch_nengo] section."""
    saved = dict(nengo.rc["snntorch_nengo"]) if nengo.rc.has_section("snntorch_nengo") else None
    nengo.rc.remove_section("snntorch_nengo")
    yield
    nengo.rc.remove_section("snntorch_nengo")
    if saved is not None:
        nengo.rc.add_section("snntorch_nengo")
        for key, value in saved.items():
            nengo.rc.set("snntorch_nengo", key, value)


def test_simulator_defaults_to_float32_as_nengodl(no_rc_dtype):
    with nengo.Network(seed=1) as net:
        stim = nengo.Node(np.sin)
        ens = nengo.Ensemble(50, 1)
        nengo.Connection(stim, ens)
        probe = nengo.Probe(ens, synapse=0.01)
    with Simulator(net, progress_bar=False) as sim:
        assert sim.dtype == torch.float32
        sim.run_steps(200)
        ours = sim.data[probe]
    assert ours.dtype == np.float32
    with nengo.Simulator(net, progress_bar=False) as ref:
        ref.run_steps(200)
    # float32 rounding only: the same model, not a different one
    np.testing.assert_allclose(ours, ref.data[probe], atol=2e-3)
    assert np.abs(ours - ref.data[probe]).max() > 0  # really float32
    # float64 is one argument away, and equals the reference
    with Simulator(net, progress_bar=False, dtype="float64") as sim:
        sim.run_steps(200)
        np.testing.assert_allclose(sim.data[probe], ref.data[probe], atol=1e-12)


def test_nengorc_sets_the_default_dtype(no_rc_dtype):
    with nengo.Network() as net:
        nengo.Probe(nengo.Node([0.1]))
    nengo.rc.add_section("snntorch_nengo")
    nengo.rc.set("snntorch_nengo", "dtype", "float64")
    with Simulator(net, progress_bar=False) as sim:
        assert sim.dtype == torch.float64
    with net:  # the network's setting wins over the rc file
        snntorch_nengo.configure_settings(dtype="float32")
    with Simulator(net, progress_bar=False) as sim:
        assert sim.dtype == torch.float32
    # nengo's own precision, set away from its default, is followed (as nengo.Simulator
    # follows it; Nengo's suite checks it), over the snntorch_nengo section
    try:
        for bits, dtype in [("32", torch.float32), ("16", torch.float16)]:
            nengo.rc.set("precision", "bits", bits)
            with Simulator(nengo.Network(), progress_bar=False) as sim:
                assert sim.dtype == dtype
    finally:
        nengo.rc.set("precision", "bits", "64")
    nengo.rc.set("snntorch_nengo", "dtype", "double-ish")
    with pytest.raises(nengo.exceptions.ValidationError, match=r"nengorc \[snntorch_nengo\] dtype"):
        Simulator(nengo.Network(), progress_bar=False)
