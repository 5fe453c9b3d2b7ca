"""NengoDL's training API (compile/fit/evaluate) on Lightning."""

import functools

import lightning as L
import nengo
import numpy as np
import pytest
import torch
from nengo.exceptions import SimulationError, ValidationError

import snntorch_nengo
from snntorch_nengo import NengoLightningModule, Simulator

from networks import dense_classifier, probe_without_gradient


def autoencoder(n_in=16, n_hidden=6, seed=0):
    """The seed tutorial's autoencoder, small: ReLU, gain 1, bias 0, no synapses."""
    with nengo.Network(seed=seed) as net:
        net.a = nengo.Node(np.zeros(n_in), label="a")
        b = nengo.Ensemble(n_hidden, 1, neuron_type=nengo.RectifiedLinear())
        nengo.Connection(net.a, b.neurons, transform=snntorch_nengo.dists.Glorot())
        c = nengo.Ensemble(n_in, 1, neuron_type=nengo.RectifiedLinear())
        nengo.Connection(b.neurons, c.neurons, transform=snntorch_nengo.dists.Glorot())
        net.p_c = nengo.Probe(c.neurons)
    for ens in net.all_ensembles:
        ens.gain = nengo.dists.Choice([1])
        ens.bias = nengo.dists.Choice([0])
    for conn in net.all_connections:
        conn.synapse = None
    return net


def data(n=40, n_in=16, seed=1):
    return np.random.RandomState(seed).uniform(0, 1, size=(n, 1, n_in))


def test_fit_lowers_loss_and_history_names():
    net = autoencoder()
    x = data()
    with Simulator(net, minibatch_size=10, progress_bar=False) as sim:
        sim.compile(
            optimizer=torch.optim.RMSprop(sim.parameters(), 1e-2),
            loss=torch.nn.functional.mse_loss,
        )
        before = sim.evaluate(x, x, verbose=0)
        history = sim.fit(x, x, epochs=2, verbose=0, validation_data=(x, x))
        after = sim.evaluate(x, x, verbose=0)
    assert set(before) == {"loss", "probe_loss"}
    assert len(history.history["loss"]) == 2
    assert len(history.history["probe_loss"]) == 2
    assert "val_loss" in history.history
    assert history.history["loss"][1] < history.history["loss"][0]
    assert after["loss"] < before["loss"]
    assert sim.n_steps == 0  # training leaves the simulation state alone


def test_fit_changes_predictions_and_matches_manual_torch_loop():
    """One epoch of our fit equals the same SGD steps written by hand in torch."""
    net = autoencoder()
    x = data(n=20)
    with Simulator(net, minibatch_size=10, progress_bar=False) as sim:
        weights0 = [p.detach().clone() for p in sim.parameters()]
        sim.compile(optimizer=functools.partial(torch.optim.SGD, lr=0.1), loss="mse")
        sim.fit(x, x, epochs=1, verbose=0, shuffle=False)
        trained = [p.detach().clone() for p in sim.parameters()]

    with Simulator(net, minibatch_size=10, progress_bar=False) as ref:
        params = list(ref.parameters())
        for p, w in zip(params, weights0):
            assert torch.equal(p.detach(), w)
        opt = torch.optim.SGD(params, lr=0.1)
        module = ref.module
        module.train()
        for i in range(0, 20, 10):
            module.reset()
            xb = torch.as_tensor(x[i : i + 10], dtype=module.dtype)
            out = module({net.a: xb})[net.p_c]
            loss = torch.nn.functional.mse_loss(out, xb)
            opt.zero_grad()
            loss.backward()
            opt.step()
    for a, b in zip(trained, params):
        torch.testing.assert_close(a, b.detach())
    assert any(not torch.equal(a, b) for a, b in zip(trained, weights0))


def test_optimizer_forms_and_metrics():
    net = dense_classifier(3, seed=2)
    inp, p = net.inp, net.p
    rng = np.random.RandomState(3)
    x = rng.uniform(-1, 1, size=(60, 1, 4))
    labels = (x[:, :, 0] > 0).astype(int) + (x[:, :, 1] > 0).astype(int)
    y = labels[..., None].astype(float)
    for optimizer in ("adam", torch.optim.Adam, functools.partial(torch.optim.Adam, lr=0.01)):
        with Simulator(net, minibatch_size=20, progress_bar=False) as sim:
            sim.compile(optimizer=optimizer, loss="cross_entropy", metrics=["accuracy"])
            history = sim.fit({"inp": x}, {p: y}, epochs=15, verbose=0)
            result = sim.evaluate({inp: x}, {"out": y}, verbose=0)
        assert "out_accuracy" in history.history
        assert set(result) == {"loss", "out_loss", "out_accuracy"}
        assert history.history["loss"][-1] < history.history["loss"][0]
    assert result["out_accuracy"] > 0.6


def test_loss_weights_and_per_probe_losses():
    net = autoencoder()
    with net:
        p2 = nengo.Probe(net.p_c.target, label="second")
    x = data(n=20)
    with Simulator(net, minibatch_size=10, progress_bar=False) as sim:
        sim.compile(
            loss={net.p_c: "mse", "second": torch.nn.L1Loss()},
            loss_weights={"second": 0.5},
        )
        result = sim.evaluate(x, {net.p_c: x, p2: x}, verbose=0)
    assert result["loss"] == pytest.approx(
        result["probe_loss"] + 0.5 * result["second_loss"], rel=1e-5
    )


def test_own_trainer_on_lightning_module():
    net = autoencoder()
    x = torch.as_tensor(data(n=20), dtype=torch.float32)
    module = NengoLightningModule(net, loss="mse", optimizer="adam", minibatch_size=10)
    loader = torch.utils.data.DataLoader(
        torch.utils.data.TensorDataset(x, x), batch_size=10
    )
    trainer = L.Trainer(
        max_epochs=2,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    trainer.fit(module, loader, loader)
    results = trainer.test(module, loader, verbose=False)
    assert "loss" in results[0] and "probe_loss" in results[0]
    preds = trainer.predict(module, torch.utils.data.DataLoader(
        torch.utils.data.TensorDataset(x), batch_size=10))
    assert preds[0][net.p_c].shape == (10, 1, 16)


def test_checkpoint_callback(tmp_path):
    net = autoencoder()
    x = data(n=20)
    ckpt = L.pytorch.callbacks.ModelCheckpoint(dirpath=tmp_path, save_last=True)
    with Simulator(net, minibatch_size=10, progress_bar=False) as sim:
        sim.compile(loss="mse")
        sim.fit(x, x, epochs=1, verbose=0, callbacks=[ckpt])
    assert (tmp_path / "last.ckpt").exists()


def test_error_loss_without_gradient():
    """Every object frozen: nothing to train."""
    net = autoencoder()
    with net:
        snntorch_nengo.configure_settings(trainable=False)
    x = data(n=10)
    with Simulator(net, minibatch_size=10, progress_bar=False) as sim:
        with pytest.raises(SimulationError, match="no trainable parameters"):
            sim.compile(loss="mse")
    # a trainable network whose probe does not depend on the parameters
    net = probe_without_gradient()
    with Simulator(net, progress_bar=False) as sim:
        sim.compile(loss={net.p: "mse"})
        with pytest.raises(SimulationError, match="does not depend on any trainable"):
            sim.fit(np.zeros((1, 2, 2)), np.zeros((1, 2, 2)), verbose=0)


def test_training_errors():
    net = autoencoder()
    x = data(n=20)
    with Simulator(net, minibatch_size=10, progress_bar=False) as sim:
        with pytest.raises(SimulationError, match="compile"):
            sim.fit(x, x)
        with pytest.raises(ValidationError, match="not a probe"):
            sim.compile(loss={"nope": "mse"})
        with pytest.raises(ValidationError, match="unknown loss"):
            sim.compile(loss="hinge-ish")
        with pytest.raises(ValidationError, match="unknown optimizer"):
            sim.compile(optimizer="lbfgs-ish")
        sim.compile(loss="mse")
        with pytest.raises(ValidationError, match=r"must have shape \(20, 1, 16\)"):
            sim.fit(x, x[:, :, :3], verbose=0)
        with pytest.raises(ValidationError, match="different numbers of samples"):
            sim.fit(x, x[:10], verbose=0)
        with pytest.raises(ValidationError, match="minibatch_size"):
            sim.fit(x, x, batch_size=5, verbose=0)

    with net:
        snntorch_nengo.configure_settings(inference_only=True)
    with Simulator(net, progress_bar=False) as sim:
        with pytest.raises(SimulationError, match="inference_only"):
            sim.compile(loss="mse")


def test_trainable_config_freezes_objects():
    net = autoencoder()
    with net:
        snntorch_nengo.configure_settings(trainable=None)
    conns = net.all_connections
    net.config[conns[0]].trainable = False
    with Simulator(net, minibatch_size=10, progress_bar=False) as sim:
        names = [name for name, _ in sim.named_parameters()]
        frozen = sim.module.module_of(conns[0]).weights
        assert not isinstance(frozen, torch.nn.Parameter)
        assert any("connection_1.weights" in n for n in names)
        before = frozen.clone()
        sim.compile(loss="mse")
        sim.fit(data(n=20), data(n=20), verbose=0)
        assert torch.equal(sim.module.module_of(conns[0]).weights, before)


def test_check_gradients():
    with nengo.Network(seed=3) as net:
        stim = nengo.Node(np.zeros(2))
        ens = nengo.Ensemble(6, 2, neuron_type=nengo.LIF())
        out = nengo.Node(size_in=2)
        nengo.Connection(stim, ens, synapse=None)
        nengo.Connection(ens, out, synapse=0.01)
        nengo.Probe(out)
    x = np.random.RandomState(0).uniform(-1, 1, size=(2, 3, 2))
    with Simulator(net, progress_bar=False) as sim:
        sim.check_gradients({stim: x})  # LIF trains as LIFRate: smooth

    class Broken(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x):
            return x * 2

        @staticmethod
        def backward(ctx, grad):
            return grad * 3  # wrong on purpose

    with net:
        bad = snntorch_nengo.TensorNode(
            lambda x: Broken.apply(x), shape_in=(2,), pass_time=False
        )
        nengo.Connection(ens, bad, synapse=None)
        nengo.Probe(bad)
    with Simulator(net, progress_bar=False) as sim:
        with pytest.raises(SimulationError, match="do not match"):
            sim.check_gradients({stim: x})


def test_callbacks_log_rates_and_parameters():
    from snntorch_nengo.training.callbacks import (
        FiringRateLogger,
        ParameterHistogramLogger,
        mean_firing_rates,
    )

    net = autoencoder()
    x = data(n=10)
    with Simulator(net, minibatch_size=10, progress_bar=False) as sim:
        rates = mean_firing_rates(sim.module, {net.a: x}, n_steps=1)
        assert len(rates) == 2 and all(r >= 0 for r in rates.values())
        sim.compile(loss="mse")
        rate_logger = FiringRateLogger({net.a: x}, n_steps=1)
        callbacks = [rate_logger, ParameterHistogramLogger()]
        # sim.fit's own loop (Fabric) records them in the History
        history = sim.fit(x, x, verbose=0, callbacks=callbacks)
        # a Trainer logs them
        sim.fit(x, x, verbose=0, callbacks=callbacks, loop="trainer")
        metrics = sim.lightning_module().trainer.callback_metrics
    for logged in (history.history, metrics):
        assert any(k.startswith("rate/") for k in logged)
        assert any(k.startswith("param/") for k in logged)


def test_cli_fits_from_config(tmp_path):
    from snntorch_nengo.cli import main

    main(
        [
            "fit",
            "--config",
            "configs/autoencoder.yaml",
            "--trainer.max_epochs=1",
            "--trainer.limit_train_batches=3",
            "--trainer.limit_val_batches=2",
            "--trainer.enable_progress_bar=false",
            f"--trainer.default_root_dir={tmp_path}",
        ]
    )
    assert (tmp_path / "config.yaml").exists()


def test_sim_data_shows_trained_parameters():
    net = autoencoder()
    x = data(n=10)
    with Simulator(net, minibatch_size=10, progress_bar=False) as sim:
        conn = net.all_connections[0]
        ens = net.all_ensembles[0]
        before = sim.data[conn].weights.copy()
        np.testing.assert_allclose(before, sim.model.params[conn].weights)
        sim.compile(optimizer="sgd", loss="mse")
        sim.fit(x, x, verbose=0)
        assert not np.allclose(sim.data[conn].weights, before)
        np.testing.assert_allclose(
            sim.data[conn].weights, sim.module.module_of(conn).weights.detach().numpy()
        )
        np.testing.assert_allclose(
            sim.data[ens].bias, sim.module.module_of(ens).bias.detach().numpy()
        )


def test_torchmetrics_objects_take_nengo_shaped_targets():
    """torchmetrics objects see (N, classes) predictions and (N,) class indices.

    NengoDL's class targets are ``(batch, n_steps, 1)``; the metric values must
    equal the same metrics computed by hand on ``predict``'s output.
    """
    import torchmetrics

    net = dense_classifier(10, seed=4)
    inp, p = net.inp, net.p
    rng = np.random.RandomState(5)
    x = rng.uniform(-1, 1, size=(64, 1, 4))
    y = rng.randint(0, 10, size=(64, 1, 1)).astype(float)
    with Simulator(net, minibatch_size=32, progress_bar=False) as sim:
        sim.compile(
            loss="cross_entropy",
            metrics=torchmetrics.classification.MulticlassAccuracy(
                num_classes=10, average="micro"
            ),
        )
        result = sim.evaluate({inp: x}, {p: y}, verbose=0)
        sim.compile(loss="cross_entropy", metrics=["accuracy"])
        named = sim.evaluate({inp: x}, {p: y}, verbose=0)
        sim.compile(loss="mse", metrics=[torchmetrics.MeanSquaredError()])
        onehot = np.eye(10)[y[..., 0].astype(int)]
        regression = sim.evaluate({inp: x}, {p: onehot}, verbose=0)
        predicted = torch.as_tensor(sim.predict({inp: x})[p])
    labels = torch.as_tensor(y.reshape(-1)).long()
    logits = predicted.reshape(-1, 10)
    micro = (logits.argmax(-1) == labels).double().mean().item()
    assert 0 < micro < 1  # an untrained net: a value that can be got wrong
    assert result["out_multiclass_accuracy"] == pytest.approx(micro, abs=1e-6)
    assert named["out_accuracy"] == pytest.approx(micro, abs=1e-6)
    mse = torch.nn.functional.mse_loss(predicted, torch.as_tensor(onehot)).item()
    assert regression["out_mean_squared_error"] == pytest.approx(mse, rel=1e-5)
    assert regression["out_loss"] == pytest.approx(mse, rel=1e-5)
