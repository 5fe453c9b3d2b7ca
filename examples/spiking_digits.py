"""A spiking LIF classifier on scikit-learn's digits, trained two ways.

1. Rate swap (NengoDL's method): during ``fit`` the LIF neurons run as LIFRate
   (one time step per image); at inference they spike.
2. Surrogate gradients (beyond NengoDL): ``fit`` keeps real spikes in the forward
   pass over several time steps; the spike threshold's derivative is replaced by
   a fast-sigmoid surrogate.

Both are then run with spiking neurons for ``n_steps`` steps per image; the
class is the largest time-averaged output. Plots go to ``outputs/`` (or the
folder given).
"""

import argparse
import warnings
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import nengo  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

import snntorch_nengo  # noqa: E402
from snntorch_nengo.training.tasks import classifier_network, load_digits  # noqa: E402

warnings.simplefilter("ignore")
parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("out", nargs="?", default="outputs", help="folder for the plots")
parser.add_argument("--quick", action="store_true", help="fewer epochs, for tests")
args = parser.parse_args()
OUT = Path(args.out)
OUT.mkdir(parents=True, exist_ok=True)
torch.manual_seed(0)

x_train, y_train, x_test, y_test = load_digits(seed=0)
minibatch_size = 32
n_train = len(x_train) // minibatch_size * minibatch_size
x_train, y_train = x_train[:n_train], y_train[:n_train]
n_test = len(x_test) // minibatch_size * minibatch_size
if args.quick:
    n_test = minibatch_size * 7  # 224 test digits
x_test, y_test = x_test[:n_test], y_test[:n_test]
n_inference_steps = 60


def tile(x, n_steps):
    """Present each image for ``n_steps`` steps: ``(n, n_steps, d)``."""
    return np.repeat(x[:, None, :], n_steps, axis=1)


def mean_output_loss(prediction, target):
    """Cross entropy of the time-averaged output (targets: class per step)."""
    return F.cross_entropy(prediction.mean(dim=1), target[:, -1, 0].long())


def spiking_accuracy(net, sim):
    """Accuracy with spiking neurons: the class with the largest mean output."""
    out = sim.predict({net.inp: tile(x_test, n_inference_steps)})[net.probe]
    predicted = out.mean(axis=1).argmax(axis=-1)
    return (predicted == y_test).mean(), out


results = {}
for mode in ("rate swap", "surrogate"):
    net = classifier_network(n_hidden=128, neuron_type="lif", amplitude=0.01)
    n_steps = 1 if mode == "rate swap" else 10
    with net:
        if mode == "surrogate":
            snntorch_nengo.configure_settings(surrogate="fast_sigmoid")
        h1_probe = nengo.Probe(net.ensembles[0].neurons, label="h1_spikes")
    if mode == "rate swap":
        epochs = 16 if args.quick else 25
    else:
        epochs = 6 if args.quick else 12
    with snntorch_nengo.Simulator(
        net, minibatch_size=minibatch_size, dtype=torch.float32, progress_bar=False
    ) as sim:
        sim.compile(
            optimizer=torch.optim.Adam(sim.parameters(), 1e-3),
            loss={net.probe: mean_output_loss},
        )
        history = sim.fit(
            {net.inp: tile(x_train, n_steps)},
            {net.probe: tile(y_train[:, None], n_steps).astype(np.float32)},
            epochs=epochs,
            verbose=0,
        )
        accuracy, out = spiking_accuracy(net, sim)
        raster = sim.predict({net.inp: tile(x_test[: minibatch_size], n_inference_steps)})
    results[mode] = (history.history["loss"], accuracy, out, raster[h1_probe][0])
    print(f"{mode}: spiking test accuracy {accuracy:.3f} ({n_inference_steps} steps)")

fig, axes = plt.subplots(1, 3, figsize=(13, 3.6))
for mode, (loss, accuracy, out, spikes) in results.items():
    axes[0].plot(np.arange(1, len(loss) + 1), loss, "o-", label=f"{mode}")
    running = np.cumsum(out, axis=1) / np.arange(1, out.shape[1] + 1)[None, :, None]
    correct = (running.argmax(axis=-1) == y_test[:, None]).mean(axis=0)
    axes[1].plot(np.arange(1, out.shape[1] + 1), correct, label=f"{mode} ({accuracy:.1%})")
axes[0].set_xlabel("epoch")
axes[0].set_ylabel("training loss")
axes[0].legend()
axes[1].set_xlabel("time steps of spiking inference")
axes[1].set_ylabel("test accuracy")
axes[1].set_ylim(0, 1)
axes[1].legend()
spikes = results["rate swap"][3]
t, neuron = np.nonzero(spikes[:, :40])
axes[2].scatter(t, neuron, marker="|", s=30)
axes[2].set_xlabel("time step")
axes[2].set_ylabel("neuron (first 40)")
axes[2].set_title("hidden layer spikes, one digit (rate swap)")
path = OUT / "spiking_digits.png"
fig.savefig(path, dpi=100, bbox_inches="tight")
print(f"plot saved: {path}")
