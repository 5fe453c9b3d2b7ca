"""Converting a torch model to a spiking neural network (scikit-learn's 8x8 digits).

The PyTorch twin of NengoDL's tutorial "Converting a Keras model to a spiking
neural network", written with NengoDL's own calls (``snntorch_nengo`` in place
of ``nengo_dl``, a torch model in place of the Keras one):

1. a small convolutional torch model (two ``Conv2d`` + ReLU layers and a
   ``Linear`` readout) is converted with ``snntorch_nengo.Converter`` and
   trained in ``snntorch_nengo.Simulator`` with rate neurons
   (``swap_activations={nn.ReLU: nengo.RectifiedLinear()}``), then saved with
   ``save_params``;
2. ``run_network`` re-converts the model with other ``swap_activations``
   (spiking ``SpikingRectifiedLinear``), ``scale_firing_rates`` and ``synapse``,
   loads the saved parameters into it (``load_params`` matches the trainable
   parameters, so the rate-trained file loads into each spiking version) and
   reports the test accuracy, plotting for three test digits the input, the
   first layer's activity and the output over time;
3. training again with a firing-rate regularisation (a mean squared error
   between the convolutional layers' rates and a target rate, with small loss
   weights) lets the spiking network fire faster and work with a short synapse.

Test accuracy is printed for each run, and plotted against the number of time
steps (accuracy of the output at each step). The digits are 8x8 (1797 of them)
where NengoDL's tutorial uses 28x28 MNIST, so the figures are not comparable
digit for digit; their pixels are scaled to 0-255, the range of the tutorial's
raw MNIST pixels. NengoDL's page prints 98.25% for its rate network on 400
MNIST test images (docs/benchmarks.md compares the two). Plots go to
the folder given as first argument (``outputs/nengodl/`` by default).
``--quick`` trains for fewer epochs, tests on fewer digits and runs fewer
configurations (for the test suite).
"""

import tempfile
import time
from pathlib import Path

import matplotlib.pyplot as plt
import nengo
import numpy as np
import torch
from torch import nn

import snntorch_nengo
from snntorch_nengo.training.tasks import load_digits

from _common import setup

args, save = setup(__doc__, dpi=60)
QUICK = args.quick
PARAMS = Path(tempfile.mkdtemp())

start = time.time()
seed = 0
np.random.seed(seed)
torch.manual_seed(seed)

# --- Data ------------------------------------------------------------------------
# 8x8 images, flattened, with NengoDL's time axis: (n, 1, 64); labels (n, 1, 1).
# 1348 training and 449 test digits (the first 400 are tested, as the tutorial
# tests 400 images). The pixels go from 0 to 255, as the tutorial's raw MNIST
# pixels do (it never divides by 255): the input range sets how fast the first
# layer's firing rates can move (a rate is its bias plus weights times pixels,
# and each RMSprop update moves a parameter by about the learning rate), so with
# inputs in [0, 1] the rate regularisation towards 250 Hz barely lifts conv0
train_images, train_labels, test_images, test_labels = load_digits(seed=seed)
train_images, test_images = 255 * train_images, 255 * test_images
if QUICK:
    train_images, train_labels = train_images[:600], train_labels[:600]
minibatch_size = 50  # 200 in the tutorial, which has 45 times more images
n_train = len(train_images) // minibatch_size * minibatch_size
train_images = train_images[:n_train, None, :]
train_labels = train_labels[:n_train, None, None]
test_images = test_images[:, None, :]
test_labels = test_labels[:, None, None]

# --- The torch model -------------------------------------------------------------
# channels first; each layer is its own module so that converter.layers and
# converter.outputs can be keyed by it, as NengoDL's are by Keras layers
conv0 = nn.Conv2d(1, 32, kernel_size=3)  # -> 32 x 6 x 6
relu0 = nn.ReLU()
conv1 = nn.Conv2d(32, 64, kernel_size=3, stride=2)  # -> 64 x 2 x 2
relu1 = nn.ReLU()
dense = nn.Linear(64 * 2 * 2, 10)
model = nn.Sequential(conv0, relu0, conv1, relu1, nn.Flatten(), dense)
INPUT_SHAPE = (1, 8, 8)


# --- Training the converted network ------------------------------------------------
def train(params_file, epochs=1, **compile_kwargs):
    converter = snntorch_nengo.Converter(
        model,
        input_shape=INPUT_SHAPE,
        swap_activations={nn.ReLU: nengo.RectifiedLinear()},
    )
    with snntorch_nengo.Simulator(converter.net, minibatch_size=minibatch_size) as sim:
        # run training
        sim.compile(
            optimizer=torch.optim.RMSprop(sim.parameters(), 0.001),
            loss={converter.outputs[dense]: torch.nn.CrossEntropyLoss()},
            metrics={converter.outputs[dense]: "accuracy"},
            **compile_kwargs,
        )
        sim.fit(
            {converter.inputs[conv0]: train_images},
            {converter.outputs[dense]: train_labels},
            epochs=epochs,
            verbose=0,
        )
        # save the parameters to file
        sim.save_params(params_file)


EPOCHS = 3 if QUICK else 20  # the tutorial: 2 epochs of 60000 MNIST images
# the tutorial trains 5 times longer with regularisation (10 epochs): the
# rates have far to go
REG_EPOCHS = 2 * EPOCHS if QUICK else 5 * EPOCHS
train(PARAMS / "keras_to_snn_params", epochs=EPOCHS)
print(f"trained ({EPOCHS} epochs) in {time.time() - start:.0f} s")

# --- Evaluating with spiking neurons -------------------------------------------------
results = []  # (label, accuracy, accuracy at every step)


def run_network(
    activation,
    params_file=PARAMS / "keras_to_snn_params",
    n_steps=30,
    scale_firing_rates=1,
    synapse=None,
    n_test=100 if QUICK else 400,
    label=None,
):
    # convert the torch model to a Nengo network
    nengo_converter = snntorch_nengo.Converter(
        model,
        input_shape=INPUT_SHAPE,
        swap_activations={nn.ReLU: activation},
        scale_firing_rates=scale_firing_rates,
        synapse=synapse,
    )
    # spiking neurons start from random voltages; a seed makes runs repeatable
    nengo_converter.net.seed = seed

    # the input and output of the network
    nengo_input = nengo_converter.inputs[conv0]
    nengo_output = nengo_converter.outputs[dense]

    # a probe on the first convolutional layer to record activity (a subset of
    # its neurons, to save memory)
    n_conv0 = nengo_converter.layers[relu0].size_out
    sample_neurons = np.linspace(0, n_conv0, 1000, endpoint=False, dtype=np.int32)
    with nengo_converter.net:
        conv0_probe = nengo.Probe(nengo_converter.layers[relu0][sample_neurons])

    # repeat inputs for some number of timesteps
    tiled_test_images = np.tile(test_images[:n_test], (1, n_steps, 1))

    # set some options to speed up simulation
    with nengo_converter.net:
        snntorch_nengo.configure_settings(stateful=False)

    # build the network; 100 or 200 digits a minibatch where the tutorial has
    # 10: the minibatch does not change the results, only the speed
    with snntorch_nengo.Simulator(
        nengo_converter.net, minibatch_size=min(n_test, 200), progress_bar=False
    ) as nengo_sim:
        nengo_sim.load_params(params_file)
        data = nengo_sim.predict({nengo_input: tiled_test_images}, verbose=0)
        dt = nengo_sim.dt

    # compute accuracy on test data, using output of network on the last timestep
    predictions = np.argmax(data[nengo_output][:, -1], axis=-1)
    accuracy = (predictions == test_labels[:n_test, 0, 0]).mean()
    per_step = (data[nengo_output].argmax(-1) == test_labels[:n_test, :, 0]).mean(0)
    label = label or (
        f"{type(activation).__name__}, {n_steps} steps, "
        f"scale_firing_rates={scale_firing_rates:g}, synapse={synapse}"
    )
    results.append((label, accuracy, per_step))

    # the neural activities of the sampled conv0 neurons
    scaled_data = data[conv0_probe] * scale_firing_rates
    if isinstance(activation, nengo.SpikingRectifiedLinear):
        scaled_data *= dt  # a spike is 1/dt high: spikes per step
        rates = np.sum(scaled_data, axis=1) / (n_steps * dt)
        ylabel = "Number of spikes"
    else:
        rates = scaled_data
        ylabel = "Firing rates (Hz)"
    print(
        f"{label}: test accuracy {100 * accuracy:.2f}% "
        f"(conv0 mean rate {rates.mean():.1f} Hz, max {rates.max():.1f} Hz) "
        f"[{time.time() - start:.0f} s]"
    )

    # plot the results
    fig, axes = plt.subplots(3, 3, figsize=(12, 10))
    for ii in range(3):
        axes[ii, 0].set_title("Input image")
        axes[ii, 0].imshow(test_images[ii, 0].reshape((8, 8)), cmap="gray")
        axes[ii, 0].axis("off")

        axes[ii, 1].plot(scaled_data[ii])
        axes[ii, 1].set_xlabel("Timestep")
        axes[ii, 1].set_ylabel(ylabel)
        axes[ii, 1].set_title(
            f"Neural activities (conv0 mean={rates[ii].mean():.1f} Hz, "
            f"max={rates[ii].max():.1f} Hz)",
            fontsize=9,
        )

        probs = torch.softmax(torch.as_tensor(data[nengo_output][ii]), dim=-1)
        axes[ii, 2].set_title("Output predictions")
        axes[ii, 2].plot(probs.numpy())
        axes[ii, 2].legend([str(j) for j in range(10)], loc="upper left", fontsize=6)
        axes[ii, 2].set_xlabel("Timestep")
        axes[ii, 2].set_ylabel("Probability")
    fig.suptitle(label)
    fig.tight_layout()
    name = "converter_" + "".join(c if c.isalnum() else "_" for c in label).strip("_")
    save(name.lower()[:80] + ".png")
    return accuracy


# the rate network: the trained network itself
run_network(activation=nengo.RectifiedLinear(), n_steps=10, label="rate")

# spiking neurons in place of the rate ones, nothing else changed
run_network(activation=nengo.SpikingRectifiedLinear(), label="spiking")

# synaptic smoothing
for s in [] if QUICK else [0.001, 0.005, 0.01]:
    run_network(
        activation=nengo.SpikingRectifiedLinear(),
        n_steps=40 if QUICK else 120,
        synapse=s,
        label=f"spiking, synapse={s}",
    )

# firing-rate scaling
for scale in [20] if QUICK else [2, 5, 10, 20]:
    run_network(
        activation=nengo.SpikingRectifiedLinear(),
        scale_firing_rates=scale,
        synapse=0.01,
        label=f"spiking, scale_firing_rates={scale}, synapse=0.01",
    )

# --- Regularising during training ---------------------------------------------------
# encourage the neurons to fire at around 250 Hz
target_rate = 250

# convert the torch model to a Nengo network, with probes on the convolutional
# layers for the firing-rate regularisation
converter = snntorch_nengo.Converter(model, input_shape=INPUT_SHAPE)
with converter.net:
    output_p = converter.outputs[dense]
    conv0_p = nengo.Probe(converter.layers[relu0])
    conv1_p = nengo.Probe(converter.layers[relu1])

with snntorch_nengo.Simulator(converter.net, minibatch_size=minibatch_size) as sim:
    # regularisation losses on the convolutional layers
    sim.compile(
        optimizer=torch.optim.RMSprop(sim.parameters(), 0.001),
        loss={
            output_p: torch.nn.CrossEntropyLoss(),
            conv0_p: torch.nn.functional.mse_loss,
            conv1_p: torch.nn.functional.mse_loss,
        },
        loss_weights={output_p: 1, conv0_p: 1e-3, conv1_p: 1e-3},
    )
    # train, with the target rates of the convolutional layers as targets
    n = train_labels.shape[0]
    sim.fit(
        {converter.inputs[conv0]: train_images},
        {
            output_p: train_labels,
            conv0_p: np.ones((n, 1, conv0_p.size_in)) * target_rate,
            conv1_p: np.ones((n, 1, conv1_p.size_in)) * target_rate,
        },
        epochs=REG_EPOCHS,
        verbose=0,
    )
    sim.save_params(PARAMS / "keras_to_snn_regularized_params")
print(f"trained with regularisation ({REG_EPOCHS} epochs) [{time.time() - start:.0f} s]")

# the regularised network with spiking neurons, rate checked first
regularized = PARAMS / "keras_to_snn_regularized_params"
if not QUICK:
    run_network(
        activation=nengo.RectifiedLinear(),
        params_file=regularized,
        n_steps=10,
        label="regularised, rate",
    )
run_network(
    activation=nengo.SpikingRectifiedLinear(),
    params_file=regularized,
    synapse=0.01,
    label="regularised, spiking, synapse=0.01",
)
if not QUICK:
    run_network(
        activation=nengo.SpikingRectifiedLinear(),
        params_file=regularized,
        synapse=0.005,
        n_steps=120,
        label="regularised, spiking, synapse=0.005",
    )

# --- Accuracy against time steps ----------------------------------------------------
print(
    "test accuracy (digits; NengoDL (MNIST, "
    "www.nengo.ai/nengo-dl/v3.4.4/examples/keras-to-snn.html): rate 0.9825):"
)
plt.figure(figsize=(8, 5))
colors = plt.cm.tab20(np.linspace(0, 1, 20))
for i, (label, accuracy, per_step) in enumerate(results):
    print(f"  {label}: {accuracy:.3f}")
    style = "--" if label.endswith("rate") else "-"
    plt.plot(np.arange(1, len(per_step) + 1), per_step, style, label=label,
             color=colors[(2 * i) % 20 + (2 * i) // 20])
plt.xlabel("time steps")
plt.ylabel("test accuracy (output at that step)")
plt.ylim(0, 1)
plt.legend(fontsize=7)
save("converter_accuracy_vs_steps.png")
print(f"total time: {time.time() - start:.0f} s")
