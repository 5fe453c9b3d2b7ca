"""Converting a torch CNN to a spiking neural network (scikit-learn's digits).

The PyTorch twin of NengoDL's "Converting a Keras model to a spiking neural
network":

1. train a small CNN on the 8x8 digits with plain torch;
2. convert it with `snntorch_nengo.Converter` and check that the (rate) network
   computes exactly what torch computes (``verify``);
3. swap ReLU for spiking ReLU neurons and run each test digit for ``n_steps``
   time steps: without synapses, with synapses on the neurons' outputs, with
   firing-rate scaling;
4. train again with a firing-rate regularisation term that pushes each layer's
   mean firing rate (at the rate scale used for the spiking network) towards a
   target, so that the neurons spike more often.

Accuracies are measured on held-out digits from the network's output at each
time step. Plots (accuracy against simulation time, firing rates, one digit's
spikes) go to ``outputs/`` (or the folder given). ``--quick`` trains for fewer
epochs and skips the runs without firing-rate scaling.
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
from torch import nn  # noqa: E402
from tqdm import tqdm  # noqa: E402

import snntorch_nengo  # noqa: E402
from snntorch_nengo.training.tasks import load_digits  # noqa: E402

warnings.simplefilter("ignore")
parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("out", nargs="?", default="outputs", help="folder for the plots")
parser.add_argument("--quick", action="store_true", help="fewer epochs, for tests")
parser.add_argument("--n-steps", type=int, default=100, help="steps per digit")
parser.add_argument("--scale", type=float, default=60.0, help="scale_firing_rates")
parser.add_argument("--reg", type=float, default=1.0, help="rate regularisation weight")
args = parser.parse_args()
OUT = Path(args.out)
OUT.mkdir(parents=True, exist_ok=True)
torch.manual_seed(0)

x_train, y_train, x_test, y_test = load_digits(seed=0)  # [0, 1]; 450 test digits
N_STEPS = args.n_steps
EPOCHS = 20 if args.quick else 40
SCALE = args.scale  # scale_firing_rates of the spiking networks
TARGET_RATE = 200.0  # Hz: mean rate of each regularised layer (at SCALE)
SYNAPSE = 0.005  # s: lowpass on every connection out of a neuron layer
DT = 0.001


class CNN(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 16, 3, padding=1)  # 16 x 8 x 8
        self.conv2 = nn.Conv2d(16, 32, 3, stride=2, padding=1)  # 32 x 4 x 4
        self.out = nn.Linear(32 * 4 * 4, 10)

    def hidden(self, x):
        """The two ReLU layers' outputs: the neurons' firing rates (Hz) at scale 1."""
        a1 = F.relu(self.conv1(x))
        return a1, F.relu(self.conv2(a1))

    def forward(self, x):
        return self.out(torch.flatten(self.hidden(x)[1], 1))


def train(regularise):
    """Plain torch training; optionally with a firing-rate regularisation term."""
    torch.manual_seed(0)
    model = CNN()
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    x = torch.as_tensor(x_train).reshape(-1, 1, 8, 8)
    y = torch.as_tensor(y_train)
    for _ in tqdm(range(EPOCHS), desc="regularised" if regularise else "plain",
                  leave=False):
        for idx in torch.randperm(len(x)).split(64):
            rates = model.hidden(x[idx])
            logits = model.out(torch.flatten(rates[1], 1))
            loss = F.cross_entropy(logits, y[idx])
            if regularise:
                # each layer's mean firing rate once converted (activation *
                # SCALE Hz, over its neurons and the minibatch) pulled towards
                # TARGET_RATE; a per-neuron target made the neurons less
                # selective and the spiking network less accurate here
                for a in rates:
                    rate = SCALE * a.mean()
                    loss = loss + args.reg * ((rate - TARGET_RATE) / TARGET_RATE) ** 2
            opt.zero_grad()
            loss.backward()
            opt.step()
    return model.eval()


def torch_accuracy(model):
    with torch.no_grad():
        logits = model(torch.as_tensor(x_test).reshape(-1, 1, 8, 8))
    return float((logits.argmax(1).numpy() == y_test).mean())


def run(model, spiking, synapse=None, scale=None, probe_neurons=False):
    """Convert ``model`` and run the test digits for N_STEPS steps each.

    Returns the accuracy at every step and, with ``probe_neurons``, the hidden
    layers' outputs.
    """
    conv = snntorch_nengo.Converter(
        model,
        input_shape=(1, 8, 8),
        swap_activations={nn.ReLU: nengo.SpikingRectifiedLinear()} if spiking else None,
        scale_firing_rates=scale,
        synapse=synapse,
        inference_only=True,  # evaluation only: biases go straight into Ensembles
    )
    conv.net.seed = 0  # spiking neurons start from random voltages: reproducible
    hidden = []
    if probe_neurons:
        with conv.net:
            hidden = [nengo.Probe(conv.layers[n]) for n in conv.layers
                      if isinstance(n, torch.fx.Node) and n.target is F.relu]
    n_steps = N_STEPS if spiking or synapse else 1
    inp, out = conv.inputs[0], conv.outputs[0]
    batch = 225  # the 449 test digits in two minibatches (one padding sample)
    outputs, neurons = [], [[] for _ in hidden]
    with snntorch_nengo.Simulator(conv.net, minibatch_size=batch, progress_bar=False,
                                  dtype=torch.float32) as sim:
        for start in range(0, len(x_test), batch):
            x = x_test[start : start + batch]
            n = len(x)
            x = np.concatenate([x, np.zeros((batch - n, x.shape[1]), x.dtype)])
            data = sim.predict({inp: np.repeat(x[:, None], n_steps, axis=1)})
            outputs.append(data[out][:n])  # the padding samples are dropped
            for i, p in enumerate(hidden):
                neurons[i].append(data[p][:n])
    outputs = np.concatenate(outputs)
    accuracy = (outputs.argmax(axis=2) == y_test[:, None]).mean(axis=0)
    return conv, accuracy, [np.concatenate(n) for n in neurons]


def main():
    results = {}
    model = train(regularise=False)
    results["torch (non-spiking)"] = torch_accuracy(model)
    conv = snntorch_nengo.Converter(model, input_shape=(1, 8, 8))
    conv.verify(inputs=x_test[:8].reshape(-1, 1, 8, 8))
    print("converted rate network matches torch (verify): True")
    _, acc, _ = run(model, spiking=False)
    results["converted, rate neurons"] = acc[-1]

    curves = {}
    configs = [] if args.quick else [
        ("spiking", dict()),
        (f"spiking, synapse={SYNAPSE}", dict(synapse=SYNAPSE)),
    ]
    for name, kw in tqdm(configs, desc="spiking runs"):
        curves[name] = run(model, spiking=True, **kw)[1]
    name = f"spiking, synapse={SYNAPSE}, scale_firing_rates={SCALE:g}"
    _, curves[name], neurons_plain = run(model, spiking=True, synapse=SYNAPSE,
                                         scale=SCALE, probe_neurons=True)

    reg = train(regularise=True)
    results["torch, rate-regularised"] = torch_accuracy(reg)
    name = f"rate-regularised, {name}"
    conv_reg, acc, neurons_reg = run(reg, spiking=True, synapse=SYNAPSE, scale=SCALE,
                                     probe_neurons=True)
    curves[name] = acc

    for key, value in results.items():
        print(f"{key}: accuracy {value:.3f}")
    early = min(10, N_STEPS)
    for key, acc in curves.items():
        print(f"{key}: accuracy after {N_STEPS} steps {acc[-1]:.3f} "
              f"(after {early} steps {acc[early - 1]:.3f})")
    print(f"FINAL spiking accuracy ({N_STEPS} steps, held-out digits): {acc[-1]:.3f}")

    # accuracy against simulation time
    t = np.arange(1, N_STEPS + 1) * DT
    plt.figure(figsize=(7, 4))
    for key, acc in curves.items():
        plt.plot(t, acc, label=key)
    plt.axhline(results["converted, rate neurons"], color="k", ls="--",
                label="rate neurons")
    plt.xlabel("simulation time (s)")
    plt.ylabel("test accuracy")
    plt.ylim(0, 1)
    plt.legend(fontsize=7)
    plt.tight_layout()
    plt.savefig(OUT / "spiking_cnn_accuracy.png", dpi=100)
    plt.close()

    # firing rates: a SpikingRectifiedLinear spike (amplitude 1 / SCALE) is
    # 1 / (SCALE * dt) high, so a neuron's mean output times SCALE is its rate
    plt.figure(figsize=(7, 4))
    for label, layers in (("plain", neurons_plain), ("regularised", neurons_reg)):
        rates = np.concatenate([n.mean(axis=(0, 1)) * SCALE for n in layers])
        print(f"{label}: mean firing rate {rates.mean():.1f} Hz, "
              f"{(rates > 0).mean():.0%} of neurons fire")
        plt.hist(rates, bins=40, alpha=0.6, label=f"{label} (mean {rates.mean():.0f} Hz)")
    plt.xlabel("firing rate (Hz)")
    plt.ylabel("neurons")
    plt.legend()
    plt.tight_layout()
    plt.savefig(OUT / "spiking_cnn_rates.png", dpi=100)
    plt.close()

    # one digit: its spikes in the first layer and the output over time
    spikes = neurons_reg[0][0]  # (n_steps, neurons)
    active = np.nonzero(spikes.sum(axis=0))[0][:60]
    fig, axes = plt.subplots(1, 3, figsize=(11, 3.5))
    axes[0].imshow(x_test[0].reshape(8, 8), cmap="gray")
    axes[0].set_title(f"digit {y_test[0]}")
    rows, cols = np.nonzero(spikes[:, active].T)
    axes[1].scatter(t[cols], rows, s=2, marker="|")
    axes[1].set_title("spikes of 60 conv1 neurons")
    axes[1].set_xlabel("time (s)")
    with snntorch_nengo.Simulator(conv_reg.net, progress_bar=False) as sim:
        data = sim.predict({conv_reg.inputs[0]: np.repeat(x_test[:1, None], N_STEPS, 1)})
    lines = axes[2].plot(t, data[conv_reg.outputs[0]][0])
    axes[2].legend(lines, [f"class {i}" for i in range(10)], fontsize=6, ncol=2)
    axes[2].set_title("output (synapse-filtered)")
    axes[2].set_xlabel("time (s)")
    fig.tight_layout()
    fig.savefig(OUT / "spiking_cnn_sample.png", dpi=100)
    plt.close(fig)


if __name__ == "__main__":
    main()
