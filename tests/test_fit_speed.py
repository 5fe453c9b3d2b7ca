"""What fit's fast paths must keep: per-epoch losses, data checks, batches."""

import numpy as np
import pytest
import torch
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.loggers import CSVLogger
from nengo.exceptions import ValidationError

from snntorch_nengo import Simulator
from snntorch_nengo.training.api import TensorBatches, _as_batch
from test_training import autoencoder, data


def frozen_sim(net, batch=10, dtype=None):
    """A simulator whose fit cannot change the parameters (SGD, lr 0)."""
    sim = Simulator(net, minibatch_size=batch, progress_bar=False, dtype=dtype)
    sim.compile(optimizer=torch.optim.SGD(sim.parameters(), lr=0.0), loss="mse")
    return sim


def mse(sim, net, x, y):
    out = sim.predict(x)[net.p_c]
    return float(np.mean((out - y) ** 2))


@pytest.mark.parametrize("watched", [False, True])
def test_epoch_loss_is_the_mean_over_the_epoch(watched, tmp_path):
    """Each epoch reports its own mean, whether steps are logged or not."""
    net = autoencoder()
    x, y = data(n=40), data(n=40, seed=2)
    vx, vy = data(n=20, seed=3), data(n=20, seed=4)
    with frozen_sim(net) as sim:
        expected, val_expected = mse(sim, net, x, y), mse(sim, net, vx, vy)
        logger = CSVLogger(tmp_path) if watched else False
        history = sim.fit(
            x, y, epochs=3, verbose=0, validation_data=(vx, vy), logger=logger
        )
        evaluated = sim.evaluate(x, y, verbose=0)
    # the same mean in every epoch: nothing is carried over from the last one
    assert np.allclose(history.history["loss"], [expected] * 3, rtol=1e-5)
    assert np.allclose(history.history["probe_loss"], [expected] * 3, rtol=1e-5)
    assert np.allclose(history.history["val_loss"], [val_expected], rtol=1e-5)
    assert np.isclose(evaluated["loss"], expected, rtol=1e-5)
    assert np.isclose(evaluated["probe_loss"], expected, rtol=1e-5)


class ScaleEachEpoch(Callback):
    """Scales the parameters before each epoch and records the epoch's true loss."""

    def __init__(self, x, y, batch):
        self.x, self.y, self.batch, self.losses = x, y, batch, []

    def on_train_epoch_start(self, trainer, pl_module):
        module = pl_module.module
        total = 0.0
        with torch.no_grad():
            for param in module.parameters():
                param.mul_(1.5)
            for start in range(0, len(self.x), self.batch):
                chunk = slice(start, start + self.batch)
                module.reset(batch_size=self.batch)
                x = torch.as_tensor(self.x[chunk], dtype=module.dtype)
                out = next(iter(module({pl_module.input_nodes[0]: x}).values()))
                y = torch.as_tensor(self.y[chunk], dtype=module.dtype)
                total += float(torch.mean((out - y) ** 2)) * self.batch
        self.losses.append(total / len(self.x))


@pytest.mark.parametrize("watched", [False, True])
def test_each_epoch_starts_its_mean_afresh(watched, tmp_path):
    net = autoencoder()
    x, y = data(n=40), data(n=40, seed=2)
    scale = ScaleEachEpoch(x, y, batch=10)
    with frozen_sim(net) as sim:
        logger = CSVLogger(tmp_path) if watched else False
        history = sim.fit(x, y, epochs=3, verbose=0, callbacks=[scale], logger=logger)
    assert len(set(np.round(scale.losses, 6))) == 3
    assert np.allclose(history.history["loss"], scale.losses, rtol=1e-5)
    assert np.allclose(history.history["probe_loss"], scale.losses, rtol=1e-5)


def test_uneven_last_batch_weighs_by_its_size():
    net = autoencoder()
    x, y = data(n=25), data(n=25, seed=2)
    with Simulator(net, progress_bar=False) as sim:
        sim.compile(optimizer=torch.optim.SGD(sim.parameters(), lr=0.0), loss="mse")
        expected = mse(sim, net, x, y)
        history = sim.fit(x, y, batch_size=10, verbose=0)
    assert np.isclose(history.history["loss"][0], expected, rtol=1e-5)


def test_nonfinite_data_rejected_large_finite_data_accepted():
    net = autoencoder()
    x = data(n=20)
    with frozen_sim(net, dtype="float32") as sim:
        for bad, where in [(np.nan, "x"), (np.inf, "x"), (-np.inf, "y")]:
            dirty = x.copy()
            dirty[3, 0, 5] = bad
            args = (dirty, x) if where == "x" else (x, dirty)
            with pytest.raises(ValidationError, match="NaN and"):
                sim.fit(*args, verbose=0)
        # finite, but their sum overflows float32: the exact check lets them in
        sim.fit(x, np.full_like(x, 1e37), verbose=0)


def test_nan_targets_allowed_for_nan_mse_but_not_inf():
    net = autoencoder()
    x = data(n=20)
    with Simulator(net, minibatch_size=10, progress_bar=False) as sim:
        sim.compile(optimizer=torch.optim.SGD(sim.parameters(), lr=0.0), loss="nan_mse")
        y = x.copy()
        y[0, 0, 0] = np.nan
        sim.fit(x, y, verbose=0)
        y[1, 0, 0] = np.inf
        with pytest.raises(ValidationError, match="infinite"):
            sim.fit(x, y, verbose=0)


def test_module_checks_tensor_inputs():
    net = autoencoder()
    with Simulator(net, minibatch_size=2, progress_bar=False, dtype="float32") as sim:
        module = sim.module
        x = torch.zeros((2, 1, 16))
        x[1, 0, 2] = float("nan")
        with pytest.raises(ValidationError, match="1 NaN"):
            module({net.a: x}, n_steps=1)
        x[1, 0, 2] = -float("inf")
        with pytest.raises(ValidationError, match="1 infinite"):
            module({net.a: x}, n_steps=1)
        # a sum that overflows is no reason to reject finite inputs
        module({net.a: torch.full((2, 1, 16), 1e38)}, n_steps=1)


def test_batches_index_shared_data_once():
    x = torch.arange(12.0).reshape(6, 2)
    y = torch.ones(6, 1)
    batch = TensorBatches(x, x, y).__getitems__([4, 1])
    assert batch[0] is batch[1]
    assert torch.equal(batch[0], x[[4, 1]]) and torch.equal(batch[2], y[[4, 1]])
    loader = torch.utils.data.DataLoader(
        TensorBatches(x, y), batch_size=4, collate_fn=_as_batch
    )
    batches = list(loader)
    assert [b[0].shape[0] for b in batches] == [4, 2]
    assert torch.equal(torch.cat([b[0] for b in batches]), x)


def test_batches_keep_held_inputs_broadcast():
    x = torch.arange(12.0).reshape(6, 1, 2).expand(6, 5, 2)
    (batch,) = TensorBatches(x).__getitems__([4, 1])
    assert batch.stride(1) == 0  # not a copy of every step
    assert torch.equal(batch, x[[4, 1]])


def test_held_inputs_fit_like_repeated_ones():
    """Inputs broadcast over the steps train exactly as the same data repeated."""
    from test_fused_training import NEURONS, feed_forward

    rng = np.random.RandomState(0)
    x = rng.uniform(-1, 2, (20, 1, 4))
    y = rng.normal(0, 1, (20, 8, 3))
    results = []
    for held in (True, False):
        net = feed_forward(NEURONS["lif"], surrogate="fast_sigmoid", zero_biases=True)
        xs = np.broadcast_to(x, (20, 8, 4)) if held else np.repeat(x, 8, axis=1)
        torch.manual_seed(0)  # the same shuffles
        with Simulator(net, minibatch_size=10, progress_bar=False, dtype="float64") as sim:
            sim.compile(optimizer=torch.optim.Adam(sim.parameters(), 1e-2),
                        loss={net.p_out: "mse"})
            history = sim.fit({net.inp: xs}, {net.p_out: y}, epochs=2, verbose=0)
            assert sim.module.explain().strategy == "windowed"
            params = [p.detach().clone() for p in sim.parameters()]
        results.append((history.history["loss"], params))
    (loss, params), (ref_loss, ref_params) = results
    assert loss == ref_loss and loss[1] < loss[0]
    for p, ref in zip(params, ref_params):
        assert torch.equal(p, ref)
