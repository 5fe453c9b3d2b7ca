"""Optimizing a spiking neural network (scikit-learn's 8x8 digits for MNIST).

The PyTorch twin of NengoDL's tutorial "Optimizing a spiking neural network",
written with NengoDL's own calls (``snntorch_nengo`` in place of ``nengo_dl``,
torch layers in place of Keras ones): a convolutional network built from
``Layer``s (three ``nn.Conv2d`` layers, each followed by a layer of neurons,
and a linear readout), trained with the rate neurons ``SoftLIFRate`` on one
time step per image, saved with ``save_params`` and loaded with ``load_params``
into the same network built with spiking ``LIF`` neurons, which is then tested
over 30 time steps with its output filtered by a 0.1 s lowpass synapse.
Firing rates are scaled as in the tutorial: the neurons fire at up to 100 Hz
and ``amplitude=0.01`` scales each spike down.

It prints the test accuracy before training (spiking network), after training
with rate neurons, and after loading the trained parameters into the spiking
network, and saves the tutorial's plot: test digits with the spiking network's
(filtered, softmaxed) output over time. The digits are 8x8 (1797 of them)
where NengoDL's tutorial uses 28x28 MNIST, so the figures are not comparable
digit for digit. Plots go to the folder given as first argument
(``outputs/nengodl/`` by default). ``--quick`` trains on fewer digits for
fewer epochs and tests on fewer (for the test suite).
The tutorial's minibatch size is 200 and it trains for 10 epochs; here the
minibatch holds 50 digits and training runs for 30 epochs (a similar number of
updates per parameter is out of reach with 30 times fewer images, but more of
them help).
"""

import tempfile
import time
from pathlib import Path

import matplotlib.pyplot as plt
import nengo
import numpy as np
import torch

import snntorch_nengo
from snntorch_nengo.training.tasks import load_digits

from _common import setup

args, save = setup(__doc__)

start = time.time()
seed = 0
np.random.seed(seed)
torch.manual_seed(seed)

# --- Data ------------------------------------------------------------------------
# 8x8 images scaled to [0, 1], flattened; 1348 for training, 449 for testing
train_images, train_labels, test_images, test_labels = load_digits(seed=seed)
if args.quick:
    train_images, train_labels = train_images[:600], train_labels[:600]
    test_images, test_labels = test_images[:200], test_labels[:200]
# 200 in the tutorial; the digits are 30 times fewer than MNIST's images, so a
# smaller minibatch gives training more updates per epoch
minibatch_size = 50
# evaluate and predict run whole minibatches: keep a multiple of their size
n_test = len(test_images) // minibatch_size * minibatch_size
test_images, test_labels = test_images[:n_test], test_labels[:n_test]
n_train = len(train_images) // minibatch_size * minibatch_size
train_images, train_labels = train_images[:n_train], train_labels[:n_train]


# --- The network -----------------------------------------------------------------
# NengoDL's tutorial builds this once, with LIF neurons; its Simulator trains LIF
# through a rate approximation. Here the network is built twice from one function:
# with SoftLIFRate for training and with LIF for testing, and the trained
# parameters move from one to the other through save_params/load_params, which
# match the trainable parameters (as NengoDL's do), not the neuron types.
def build_network(neuron_type):
    with nengo.Network(seed=seed) as net:
        # some default parameters for the neurons that make training progress
        # more smoothly
        net.config[nengo.Ensemble].max_rates = nengo.dists.Choice([100])
        net.config[nengo.Ensemble].intercepts = nengo.dists.Choice([0])
        net.config[nengo.Connection].synapse = None

        # an optimisation: this example needs no state carried between runs
        snntorch_nengo.configure_settings(stateful=False)

        # the input node that feeds in the images
        net.inp = nengo.Node(np.zeros(8 * 8))

        # the first convolutional layer (torch layers are channels-first:
        # shape_in is (channels, height, width) where Keras has (h, w, c))
        x = snntorch_nengo.Layer(torch.nn.Conv2d(1, 32, kernel_size=3))(
            net.inp, shape_in=(1, 8, 8)
        )
        x = snntorch_nengo.Layer(neuron_type)(x)
        # (not in the tutorial) the first layer's neurons, to count their spikes
        net.neurons_p = nengo.Probe(x, label="neurons_p")

        # the second convolutional layer
        x = snntorch_nengo.Layer(torch.nn.Conv2d(32, 64, kernel_size=3))(
            x, shape_in=(32, 6, 6)
        )
        x = snntorch_nengo.Layer(neuron_type)(x)

        # the third convolutional layer
        x = snntorch_nengo.Layer(torch.nn.Conv2d(64, 128, kernel_size=3, stride=2))(
            x, shape_in=(64, 4, 4)
        )
        x = snntorch_nengo.Layer(neuron_type)(x)

        # linear readout
        net.out = snntorch_nengo.Layer(torch.nn.Linear(128, 10))(x)

        # two output probes: one with a filter (for simulating the network over
        # time and accumulating spikes) and one without (for training the
        # network with its rate approximation)
        net.out_p = nengo.Probe(net.out, label="out_p")
        net.out_p_filt = nengo.Probe(net.out, synapse=0.1, label="out_p_filt")
    return net


amplitude = 0.01  # the tutorial's firing-rate scaling: rates of 100 Hz, spikes * 0.01
spiking_net = build_network(nengo.LIF(amplitude=amplitude))
rate_net = build_network(snntorch_nengo.SoftLIFRate(amplitude=amplitude, sigma=0.01))

EPOCHS = 5 if args.quick else 30  # the tutorial: 10 epochs of 60000 MNIST images

# a single time step per training image; the test images run over time, so their
# inputs and targets are repeated for a number of time steps
n_steps = 30
train_images = train_images[:, None, :]
train_labels = train_labels[:, None, None]
test_images = np.tile(test_images[:, None, :], (1, n_steps, 1))
test_labels = np.tile(test_labels[:, None, None], (1, n_steps, 1))


def classification_accuracy(y_pred, y_true):
    """Accuracy of the output at the last time step (torch's argument order)."""
    return (y_pred[:, -1].argmax(dim=-1) == y_true[:, -1, 0]).to(y_pred.dtype).mean()


# --- Accuracy before training ----------------------------------------------------
sim = snntorch_nengo.Simulator(spiking_net, minibatch_size=minibatch_size)
# out_p_filt when testing: the filter smooths the spikes
sim.compile(loss={spiking_net.out_p_filt: classification_accuracy})
before = sim.evaluate(test_images, {spiking_net.out_p_filt: test_labels}, verbose=0)
print(f"Accuracy before training: {before['loss']:.3f}")

# --- Training with rate neurons --------------------------------------------------
params_file = Path(tempfile.mkdtemp()) / "mnist_params"
with snntorch_nengo.Simulator(rate_net, minibatch_size=minibatch_size) as rate_sim:
    rate_sim.compile(
        optimizer=torch.optim.RMSprop(rate_sim.parameters(), 0.001),
        loss={rate_net.out_p: torch.nn.CrossEntropyLoss()},
    )
    rate_sim.fit(
        train_images,
        {rate_net.out_p: train_labels},
        epochs=EPOCHS,
        verbose=0,
    )
    # the rate network's own accuracy: one step, unfiltered
    rate_sim.compile(loss={rate_net.out_p: classification_accuracy})
    rate = rate_sim.evaluate(
        test_images[:, :1], {rate_net.out_p: test_labels[:, :1]}, verbose=0
    )
    print(f"Accuracy after training, rate neurons (SoftLIFRate): {rate['loss']:.3f}")
    # save the parameters to file
    rate_sim.save_params(params_file)

# --- Testing with spiking neurons ------------------------------------------------
# the spiking network loads the file trained with rate neurons
sim.load_params(params_file)
sim.compile(loss={spiking_net.out_p_filt: classification_accuracy})
after = sim.evaluate(test_images, {spiking_net.out_p_filt: test_labels}, verbose=0)
print(
    f"Accuracy after training, spiking neurons (LIF, {n_steps} steps, "
    f"synapse 0.1): {after['loss']:.3f}"
)
print(
    "NengoDL (MNIST 28x28, www.nengo.ai/nengo-dl/v3.4.4/examples/spiking-mnist.html): "
    "accuracy 0.0806 before training, 0.9874 after (LIF, 30 steps, synapse 0.1); "
    "this twin uses scikit-learn's 8x8 digits"
)

data = sim.predict(test_images[:minibatch_size])
sim.close()
# a LIF spike is amplitude / dt high: the probe holds whole numbers of spikes
counts = data[spiking_net.neurons_p] * sim.dt / amplitude
whole = bool(np.allclose(counts, np.round(counts), atol=1e-4))
rate_hz = counts.sum(axis=1).mean() / (n_steps * sim.dt)
print(
    f"first layer: {rate_hz:.1f} Hz mean firing rate, spikes are whole counts: "
    f"{whole}, {np.mean(counts.sum(axis=1) > 0):.0%} of neurons fire"
)

fig, axes = plt.subplots(5, 2, figsize=(8, 14))
for i in range(5):
    axes[i, 0].imshow(test_images[i, 0].reshape((8, 8)), cmap="gray")
    axes[i, 0].axis("off")
    probs = torch.softmax(torch.as_tensor(data[spiking_net.out_p_filt][i]), dim=-1)
    axes[i, 1].plot(probs.numpy())
    axes[i, 1].legend([str(j) for j in range(10)], loc="upper left", fontsize=6)
    axes[i, 1].set_xlabel("timesteps")
    axes[i, 1].set_ylabel("probability")
fig.tight_layout()
save("spiking_mnist_outputs.png")
print(f"total time: {time.time() - start:.0f} s")
