"""Ready-made training tasks and data for the CLI, the examples and the demo.

The data is scikit-learn's digits (1,797 8x8 images shipped with the package),
so nothing is downloaded. Each task is a `NengoLightningModule` whose network is
built from its arguments, so a YAML file in ``configs/`` describes it fully.
"""

from __future__ import annotations

import lightning as L
import nengo
import numpy as np
import torch
from torch.utils.data import DataLoader, TensorDataset

from .. import dists
from .lightning import NengoLightningModule

NEURON_TYPES = {
    "relu": nengo.RectifiedLinear,
    "spiking_relu": nengo.SpikingRectifiedLinear,
    "lif": nengo.LIF,
    "lif_rate": nengo.LIFRate,
}


def load_digits(
    seed: int = 0, test_fraction: float = 0.25
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Digits scaled to [0, 1]: ``(x_train, y_train, x_test, y_test)``."""
    from sklearn.datasets import load_digits as sklearn_digits

    digits = sklearn_digits()
    x = digits.data.astype(np.float32) / 16.0
    y = digits.target.astype(np.int64)
    order = np.random.RandomState(seed).permutation(len(x))
    n_test = int(len(x) * test_fraction)
    test, train = order[:n_test], order[n_test:]
    return x[train], y[train], x[test], y[test]


def autoencoder_network(
    n_in: int = 64, n_hidden: int = 16, seed: int = 0
) -> nengo.Network:
    """The seed tutorial's auto-encoder, set up for training like a deep net."""
    with nengo.Network(seed=seed, label="autoencoder") as net:
        net.inp = nengo.Node(np.zeros(n_in), label="input")
        hidden = nengo.Ensemble(n_hidden, 1, neuron_type=nengo.RectifiedLinear())
        nengo.Connection(net.inp, hidden.neurons, transform=dists.Glorot())
        out = nengo.Ensemble(n_in, 1, neuron_type=nengo.RectifiedLinear())
        nengo.Connection(hidden.neurons, out.neurons, transform=dists.Glorot())
        net.probe = nengo.Probe(out.neurons, label="reconstruction")
    for ens in net.all_ensembles:
        ens.gain = nengo.dists.Choice([1])
        ens.bias = nengo.dists.Choice([0])
    for conn in net.all_connections:
        conn.synapse = None
    return net


def classifier_network(
    n_in: int = 64,
    n_hidden: int = 128,
    n_out: int = 10,
    neuron_type: str = "lif",
    amplitude: float = 0.01,
    seed: int = 0,
) -> nengo.Network:
    """A two-layer classifier: input -> neurons -> neurons -> linear readout.

    ``amplitude`` scales spikes (as NengoDL's examples do) so that rates of a few
    hundred Hz give activities near 1.
    """
    neuron = NEURON_TYPES[neuron_type](amplitude=amplitude)
    with nengo.Network(seed=seed, label="digits classifier") as net:
        net.config[nengo.Ensemble].max_rates = nengo.dists.Choice([200])
        net.config[nengo.Ensemble].intercepts = nengo.dists.Choice([0])
        net.config[nengo.Connection].synapse = None
        net.inp = nengo.Node(np.zeros(n_in), label="input")
        h1 = nengo.Ensemble(n_hidden, 1, neuron_type=neuron)
        h2 = nengo.Ensemble(n_hidden, 1, neuron_type=neuron)
        net.out = nengo.Node(size_in=n_out, label="logits")
        nengo.Connection(net.inp, h1.neurons, transform=dists.Glorot())
        nengo.Connection(h1.neurons, h2.neurons, transform=dists.Glorot())
        nengo.Connection(h2.neurons, net.out, transform=dists.Glorot())
        net.probe = nengo.Probe(net.out, label="logits")
        net.probe_filtered = nengo.Probe(net.out, synapse=0.01, label="filtered")
    return net


class AutoencoderTask(NengoLightningModule):
    """Train the seed's auto-encoder to reproduce its input."""

    def __init__(
        self, n_in: int = 64, n_hidden: int = 16, lr: float = 1e-3, seed: int = 0
    ) -> None:
        net = autoencoder_network(n_in, n_hidden, seed)
        super().__init__(
            net,
            loss={net.probe: "mse"},
            optimizer=lambda params: torch.optim.RMSprop(params, lr=lr),
        )


class DigitsClassifierTask(NengoLightningModule):
    """Train a (spiking) digits classifier; its filtered probe is for inference."""

    def __init__(
        self,
        n_hidden: int = 128,
        neuron_type: str = "lif",
        amplitude: float = 0.01,
        lr: float = 1e-3,
        seed: int = 0,
    ) -> None:
        net = classifier_network(
            n_hidden=n_hidden, neuron_type=neuron_type, amplitude=amplitude, seed=seed
        )
        super().__init__(
            net,
            loss={net.probe: "cross_entropy"},
            metrics={net.probe: "accuracy"},
            optimizer=lambda params: torch.optim.Adam(params, lr=lr),
        )


class DigitsData(L.LightningDataModule):
    """Digits as ``(batch, n_steps, 64)`` inputs with class or image targets.

    Parameters
    ----------
    target : "label" or "image"
        Class indices ``(batch, n_steps, 1)`` or the image itself (auto-encoding).
    """

    def __init__(
        self, batch_size: int = 32, n_steps: int = 1, target: str = "label", seed: int = 0
    ) -> None:
        super().__init__()
        self.batch_size = batch_size
        self.n_steps = n_steps
        self.target = target
        self.seed = seed

    def setup(self, stage: str | None = None) -> None:
        x_train, y_train, x_test, y_test = load_digits(self.seed)
        self.train_set = self._dataset(x_train, y_train)
        self.test_set = self._dataset(x_test, y_test)

    def _dataset(self, x, y):
        x = torch.as_tensor(np.repeat(x[:, None, :], self.n_steps, axis=1))
        if self.target == "image":
            return TensorDataset(x, x)
        y = torch.as_tensor(np.repeat(y[:, None, None], self.n_steps, axis=1))
        return TensorDataset(x, y.float())

    def train_dataloader(self) -> DataLoader:
        return DataLoader(self.train_set, batch_size=self.batch_size, shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return DataLoader(self.test_set, batch_size=self.batch_size)

    test_dataloader = val_dataloader
