"""sim.fit/evaluate on Lightning Fabric: the same numbers as a user's own Trainer.

`NengoLightningModule` in a `Trainer` and `sim.fit`'s Fabric loop compute each
batch's losses in one method (`batch_losses`); on the same seed (the same
shuffles) they must train to the same parameters and report the same epochs.
"""

import functools

import lightning as L
import numpy as np
import pytest
import torch
from lightning.pytorch.callbacks import Callback, ModelCheckpoint
from lightning.pytorch.loggers import CSVLogger
from nengo.exceptions import SimulationError, ValidationError
from torch.utils.data import DataLoader, TensorDataset

from snntorch_nengo import NengoLightningModule, Simulator
from snntorch_nengo.training import fabric_loop
from snntorch_nengo.training.api import History, TensorBatches
from snntorch_nengo.training.callbacks import FiringRateLogger, ParameterHistogramLogger

from networks import dense_classifier, probe_without_gradient, relu_channel
from test_training import autoencoder, data

DTYPE = torch.float64


def classifier_case():
    net = dense_classifier(3, seed=2)
    rng = np.random.RandomState(3)
    x = rng.uniform(-1, 1, size=(60, 1, 4))
    labels = (x[:, :, 0] > 0).astype(int) + (x[:, :, 1] > 0).astype(int)
    y = labels[..., None].astype(float)
    val = rng.uniform(-1, 1, size=(20, 1, 4))
    val_y = ((val[:, :, 0] > 0).astype(int) + (val[:, :, 1] > 0).astype(int))[..., None]
    return net, net.inp, net.p, (x, y), (val, val_y.astype(float)), "cross_entropy", ["accuracy"]


def channel_case():
    # state through time (a lowpass probe), 10 steps per sample
    net = relu_channel()
    rng = np.random.RandomState(0)
    x = rng.uniform(-1, 1, (16, 10, 1))
    y = np.sin(np.cumsum(x, axis=1) * 0.1)
    vx = rng.uniform(-1, 1, (8, 10, 1))
    vy = np.sin(np.cumsum(vx, axis=1) * 0.1)
    return net, net.a, net.p, (x, y), (vx, vy), "mse", ["mse"]


def own_trainer_fit(net, inp, probe, train, val, loss, metrics, batch, epochs, seed):
    """NengoLightningModule in a user's Trainer; per-epoch figures and parameters."""
    lm = NengoLightningModule(
        net, loss={probe: loss}, metrics=metrics, minibatch_size=batch, dtype=DTYPE,
        optimizer=functools.partial(torch.optim.Adam, lr=1e-2),
    )

    def loader(part, shuffle):
        tensors = [torch.as_tensor(a, dtype=DTYPE) for a in part]
        return DataLoader(TensorDataset(*tensors), batch_size=batch, shuffle=shuffle)

    history = History()
    trainer = L.Trainer(
        max_epochs=epochs, logger=False, enable_checkpointing=False,
        enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0,
        callbacks=[history.callback()],
    )
    torch.manual_seed(seed)
    trainer.fit(lm, loader(train, True), loader(val, False))
    return history.history, dict(lm.module.state_dict())


def fabric_fit(net, inp, probe, train, val, loss, metrics, batch, epochs, seed):
    with Simulator(net, minibatch_size=batch, progress_bar=False, dtype=DTYPE) as sim:
        sim.compile(
            optimizer=functools.partial(torch.optim.Adam, lr=1e-2),
            loss={probe: loss}, metrics=metrics,
        )
        torch.manual_seed(seed)
        history = sim.fit(
            {inp: train[0]}, {probe: train[1]}, epochs=epochs, verbose=0,
            validation_data=({inp: val[0]}, {probe: val[1]}),
        )
        return history, dict(sim.module.state_dict())


@pytest.mark.parametrize("case", [classifier_case, channel_case])
def test_fabric_fit_equals_lightning_module_in_own_trainer(case):
    net, inp, probe, train, val, loss, metrics = case()
    args = (net, inp, probe, train, val, loss, metrics, 4, 3, 7)
    expected, trained_by_trainer = own_trainer_fit(*args)
    history, trained = fabric_fit(*args)
    assert history.loop == "fabric" and history.trainer_reason is None
    assert history.epoch == [0, 1, 2]
    assert set(history.history) == set(expected)
    names = sorted(expected)
    assert any(n.startswith("val_") for n in names) and len(names) == 6, names
    for name in names:
        np.testing.assert_allclose(history.history[name], expected[name], rtol=1e-12, atol=0)
    assert expected["loss"][-1] < expected["loss"][0]  # it trained
    for name, value in trained_by_trainer.items():
        torch.testing.assert_close(trained[name], value, rtol=0, atol=1e-12)


def test_fabric_evaluate_equals_trainer_evaluate():
    net, inp, probe, train, _, loss, metrics = classifier_case()
    with Simulator(net, minibatch_size=4, progress_bar=False, dtype=DTYPE) as sim:
        sim.compile(loss={probe: loss}, metrics=metrics)
        fabric = sim.evaluate({inp: train[0]}, {probe: train[1]}, verbose=0)
        assert sim.last_loop == ("fabric", None)
        trainer = sim.evaluate({inp: train[0]}, {probe: train[1]}, verbose=0, loop="trainer")
        assert sim.last_loop[0] == "trainer"
    assert set(fabric) == set(trainer) == {"loss", "out_loss", "out_accuracy"}
    for key, value in trainer.items():
        assert fabric[key] == pytest.approx(value, rel=1e-12, abs=0)


def test_train_and_validation_metrics_are_separate():
    """lr 0: each epoch's training and validation figures are evaluate()'s."""
    net, inp, probe, train, val, loss, metrics = classifier_case()
    with Simulator(net, minibatch_size=4, progress_bar=False, dtype=DTYPE) as sim:
        sim.compile(
            optimizer=torch.optim.SGD(sim.parameters(), lr=0.0),
            loss={probe: loss}, metrics=metrics,
        )
        history = sim.fit(
            {inp: train[0]}, {probe: train[1]}, epochs=2, verbose=0,
            validation_data=({inp: val[0]}, {probe: val[1]}),
        )
        on_train = sim.evaluate({inp: train[0]}, {probe: train[1]}, verbose=0)
        on_val = sim.evaluate({inp: val[0]}, {probe: val[1]}, verbose=0)
    assert history.loop == "fabric"
    assert on_train["out_accuracy"] != on_val["out_accuracy"]  # a real check
    h = history.history
    for name in ("out_accuracy", "loss", "out_loss"):
        assert h[name] == pytest.approx([on_train[name]] * 2, rel=1e-12)
        assert h[f"val_{name}"] == pytest.approx([on_val[name]] * 2, rel=1e-12)


class Noop(Callback):
    pass


def test_routing_names_what_needs_the_trainer(tmp_path):
    reason = fabric_loop.trainer_reason
    assert reason() is None
    assert reason(callbacks=[FiringRateLogger(), ParameterHistogramLogger()]) is None
    assert reason(logger=False, accelerator="cpu", devices=1, precision="64-true") is None
    assert "Noop" in reason(callbacks=[Noop()])
    assert "ckpt_path" in reason(ckpt_path="x.ckpt")
    assert "tbptt_steps" in reason(tbptt_steps=2)
    assert "logger" in reason(logger=CSVLogger(tmp_path))
    assert "max_steps" in reason(max_steps=3)
    assert "loop='trainer'" in reason(loop="trainer")
    with pytest.raises(SimulationError, match="loop='fabric' cannot run this.*Noop"):
        reason(callbacks=[Noop()], loop="fabric")
    with pytest.raises(ValidationError, match="loop must be"):
        reason(loop="keras")

    net = autoencoder()
    x = data(n=20)
    with Simulator(net, minibatch_size=10, progress_bar=False) as sim:
        sim.compile(loss="mse")
        assert sim.fit(x, x, verbose=0).loop == "fabric"
        ckpt = ModelCheckpoint(dirpath=tmp_path, save_last=True)
        history = sim.fit(x, x, verbose=0, callbacks=[ckpt])
        assert history.loop == "trainer" and "ModelCheckpoint" in history.trainer_reason
        assert (tmp_path / "last.ckpt").exists()
        history = sim.fit(x, x, verbose=0, max_steps=1)
        assert history.loop == "trainer" and "max_steps" in history.trainer_reason
        assert sim.last_loop == ("trainer", history.trainer_reason)


def test_own_callbacks_run_in_the_fabric_loop():
    net = autoencoder()
    x = data(n=10)
    with Simulator(net, minibatch_size=10, progress_bar=False) as sim:
        sim.compile(loss="mse")
        callbacks = [FiringRateLogger({net.a: x}, n_steps=1), ParameterHistogramLogger()]
        history = sim.fit(x, x, epochs=2, verbose=0, callbacks=callbacks)
        trainer = sim.fit(x, x, epochs=2, verbose=0, callbacks=callbacks, loop="trainer")
    assert history.loop == "fabric" and trainer.loop == "trainer"
    assert set(history.history) == set(trainer.history)
    rates = [k for k in history.history if k.startswith("rate/")]
    params = [k for k in history.history if k.startswith("param/")]
    assert len(rates) == 2 and len(params) >= 4
    assert all(len(history.history[k]) == 2 for k in rates + params)


@pytest.mark.parametrize("verbose", [0, 1])
def test_progress_bar_follows_verbose(verbose, capfd):
    net = autoencoder()
    x = data(n=20)
    with Simulator(net, minibatch_size=10, progress_bar=False) as sim:
        sim.compile(loss="mse")
        capfd.readouterr()
        history = sim.fit(x, x, epochs=2, verbose=verbose)
    out, err = capfd.readouterr()
    assert history.loop == "fabric"
    shown = out + err
    if verbose:
        assert "Epoch 0" in shown and "Epoch 1" in shown and "2/2" in shown
        assert "loss=" in shown
    else:
        assert shown == ""
    with Simulator(net, minibatch_size=10, progress_bar=False) as sim:
        sim.compile(loss="mse")
        capfd.readouterr()
        sim.evaluate(x, x, verbose=verbose)
        assert sim.last_loop[0] == "fabric"
    out, err = capfd.readouterr()
    assert ("Testing" in out + err) == bool(verbose)


def test_in_order_batches_are_views():
    x = torch.arange(12.0).reshape(6, 2)
    batch = TensorBatches(x, x).__getitems__([2, 3, 4])
    assert batch[0] is batch[1]
    assert batch[0].data_ptr() == x[2].data_ptr()  # no copy
    assert torch.equal(batch[0], x[2:5])
    shuffled = TensorBatches(x).__getitems__([4, 1])[0]
    assert torch.equal(shuffled, x[[4, 1]])


def test_loss_without_gradient_is_an_error_in_the_fabric_loop():
    net = probe_without_gradient()
    with Simulator(net, progress_bar=False) as sim:
        sim.compile(loss={net.p: "mse"})
        with pytest.raises(SimulationError, match="does not depend on any trainable"):
            sim.fit(np.zeros((1, 2, 2)), np.zeros((1, 2, 2)), verbose=0, loop="fabric")


def test_training_step_equals_the_torch_model():
    """The autoencoder's step (zeros skipped, gains of 1 added, ReLU without its
    amplitude product) gives the outputs and gradients of the torch model."""
    net = autoencoder()
    x = torch.as_tensor(data(n=10), dtype=DTYPE)
    with Simulator(net, minibatch_size=10, progress_bar=False, dtype=DTYPE) as sim:
        module = sim.module
        module.train()
        for param in module.parameters():  # nonzero biases: they must count
            if param.dim() == 1:
                torch.nn.init.uniform_(param.data, -0.1, 0.1)
        out = module({net.a: x}, n_steps=1)[net.p_c]
        loss = torch.nn.functional.mse_loss(out, x)
        loss.backward()
        named = dict(module.named_parameters())
        w1, w2 = (named[f"connections.connection_{i}.weights"] for i in (0, 1))
        b1, b2 = (named[f"ensembles.ensemble_{i}.bias"] for i in (0, 1))
        leaves = [t.detach().clone().requires_grad_() for t in (w1, w2, b1, b2)]
        tw1, tw2, tb1, tb2 = leaves
        expected = torch.relu(torch.relu(x[:, 0] @ tw1.T + tb1) @ tw2.T + tb2)
        torch.nn.functional.mse_loss(expected[:, None], x).backward()
        torch.testing.assert_close(out[:, 0], expected, rtol=0, atol=1e-14)
        for mine, theirs in zip((w1, w2, b1, b2), leaves):
            torch.testing.assert_close(mine.grad, theirs.grad, rtol=0, atol=1e-14)
        # the encoders get no input, but still their gradient: zeros, not None
        # (optimizers and DDP expect one for every parameter the loss reaches)
        for i in (0, 1):
            grad = named[f"ensembles.ensemble_{i}.encoders"].grad
            assert grad is not None and not grad.any()


def test_precision_goes_through_fabric():
    """precision="64-true": Fabric converts the module and casts the batches."""
    net = autoencoder()
    x = data(n=20)
    with Simulator(net, minibatch_size=10, progress_bar=False, dtype="float32") as sim:
        sim.compile(loss="mse")
        history = sim.fit(x, x, epochs=2, verbose=0, precision="64-true")
        assert history.loop == "fabric"
        assert sim.module.dtype == torch.float64
        assert all(p.dtype == torch.float64 for p in sim.parameters())
        assert history.history["loss"][1] < history.history["loss"][0]
