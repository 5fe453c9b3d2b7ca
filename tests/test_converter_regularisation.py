"""Firing-rate regularisation of a converted network against a pure-torch twin.

NengoDL's "Converting a Keras model to a spiking neural network" trains with a
mean squared error between the convolutional layers' rates (probes on their
neurons) and a target rate, weighted by ``loss_weights``. The converted network
must train exactly as the torch model would with the same loss written by hand:
same loss values, same gradients, same parameters after some RMSprop updates.
"""

import nengo
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import snntorch_nengo

TARGET = 250.0
WEIGHT = 1e-3
BATCH = 10


def _model():
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(1, 4, 3), nn.ReLU(),
        nn.Conv2d(4, 6, 3, stride=2), nn.ReLU(),
        nn.Flatten(), nn.Linear(6 * 2 * 2, 10),
    )


def _data(n):
    rng = np.random.RandomState(1)
    return rng.rand(n, 1, 64), rng.randint(10, size=(n, 1, 1))


def _twin_loss(twin, x, y, scale):
    """The regularised loss written in torch, the way the Converter builds it.

    With ``scale_firing_rates`` the neurons get ``gain = scale`` and
    ``amplitude = 1 / scale``; a probe on them reads their output, amplitude
    included, as NengoDL's does (its tutorial multiplies probed data by the
    scale to show firing rates): ``relu(scale * z) / scale``.
    """
    h0 = F.relu(scale * twin[0](x.reshape(-1, 1, 8, 8))) / scale
    h1 = F.relu(scale * twin[2](h0)) / scale
    logits = twin[5](h1.flatten(1))
    return (
        F.cross_entropy(logits, y.reshape(-1))
        + WEIGHT * F.mse_loss(h0, torch.full_like(h0, TARGET))
        + WEIGHT * F.mse_loss(h1, torch.full_like(h1, TARGET))
    )


def _torch_layout(p):
    """A converted parameter in its torch module's layout."""
    if p.dim() == 4:  # Convolution kernel (kh, kw, in, out)
        return p.permute(3, 2, 0, 1)
    if p.dim() == 2 and p.shape[1] == 1:  # bias through a relay: (channels, 1)
        return p[:, 0]
    return p


def _pair(sim, twin):
    """Each torch parameter with the converted one holding the same values."""
    converted = [p for _, p in sim.named_parameters()]
    assert len(converted) == len(list(twin.parameters()))
    pairs = []
    for p in twin.parameters():
        match = [
            c for c in converted
            if _torch_layout(c).shape == p.shape
            and torch.equal(_torch_layout(c).detach(), p.detach())
        ]
        assert len(match) == 1
        pairs.append((match[0], p))
    return pairs


@pytest.mark.parametrize("scale", [1, 5])
def test_rate_regularisation_matches_torch_twin(scale):
    model = _model()
    converter = snntorch_nengo.Converter(
        model, input_shape=(1, 8, 8), scale_firing_rates=scale
    )
    with converter.net:
        out_p = converter.outputs[model[5]]
        conv0_p = nengo.Probe(converter.layers[model[1]])
        conv1_p = nengo.Probe(converter.layers[model[3]])
    twin = _model().double()
    x, y = _data(3 * BATCH)
    n = len(x)
    targets = {
        out_p: y,
        conv0_p: np.full((n, 1, conv0_p.size_in), TARGET),
        conv1_p: np.full((n, 1, conv1_p.size_in), TARGET),
    }
    with snntorch_nengo.Simulator(
        converter.net, minibatch_size=BATCH, progress_bar=False
    ) as sim:
        sim.compile(
            optimizer=torch.optim.RMSprop(sim.parameters(), 0.001),
            loss={
                out_p: torch.nn.CrossEntropyLoss(),
                conv0_p: F.mse_loss,
                conv1_p: F.mse_loss,
            },
            loss_weights={out_p: 1, conv0_p: WEIGHT, conv1_p: WEIGHT},
        )
        pairs = _pair(sim, twin)

        # the loss and its gradient on one minibatch
        xb, yb = torch.as_tensor(x[:BATCH]), torch.as_tensor(y[:BATCH])
        batch = (xb, yb) + tuple(
            torch.as_tensor(targets[p][:BATCH]) for p in (conv0_p, conv1_p)
        )
        result = sim.lightning_module().batch_losses(batch)
        expected = _twin_loss(twin, xb, yb, scale)
        # the rate terms dominate (rates near 0, target 250): a lost or
        # misweighted one shows in the total
        total = float(result.total.detach())
        assert total > 100
        assert total == pytest.approx(float(expected.detach()), rel=1e-12)
        grads = torch.autograd.grad(result.total, [c for c, _ in pairs])
        twin_grads = torch.autograd.grad(expected, [p for _, p in pairs])
        for g, tg in zip(grads, twin_grads):
            assert tg.abs().max() > 0
            np.testing.assert_allclose(
                _torch_layout(g).numpy(), tg.numpy(), rtol=1e-10, atol=1e-14
            )

        # three RMSprop updates through fit, the minibatches in order
        optimizer = torch.optim.RMSprop(twin.parameters(), 0.001)
        for i in range(0, n, BATCH):
            optimizer.zero_grad()
            _twin_loss(
                twin, torch.as_tensor(x[i:i + BATCH]),
                torch.as_tensor(y[i:i + BATCH]), scale,
            ).backward()
            optimizer.step()
        start = [p.detach().clone() for p, _ in pairs]
        sim.fit(
            {converter.inputs[model[0]]: x}, targets,
            epochs=1, shuffle=False, verbose=0,
        )
        for (c, p), c0 in zip(pairs, start):
            assert (c.detach() - c0).abs().max() > 1e-4  # it trained
            np.testing.assert_allclose(
                _torch_layout(c).detach().numpy(), p.detach().numpy(),
                rtol=1e-9, atol=1e-12,
            )
