"""Coming from PyTorch to snntorch_nengo.

The PyTorch twin of NengoDL's tutorial "Coming from TensorFlow to NengoDL": each
section mirrors one of its code cells, with ``snntorch_nengo`` in place of
``nengo_dl`` and PyTorch in place of TensorFlow/Keras. Plots are saved as PNG
files under ``outputs/`` (or the folder given as the first argument).

MNIST cannot be downloaded here, so the training cells use scikit-learn's digits,
upsampled to MNIST's 28x28 = 784 pixels and 0-255 range. ``--quick`` trains on a
small subset (for the test suite).
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
from nengo.utils.matplotlib import rasterplot  # noqa: E402
from scipy.ndimage import zoom  # noqa: E402
from sklearn.datasets import load_digits  # noqa: E402

import snntorch_nengo  # noqa: E402

warnings.simplefilter("ignore")
parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("out", nargs="?", default="outputs", help="folder for the plots")
parser.add_argument("--quick", action="store_true", help="small data, for tests")
args = parser.parse_args()
OUT = Path(args.out)
OUT.mkdir(parents=True, exist_ok=True)
saved = []


def save(fig, name):
    path = OUT / name
    fig.savefig(path, dpi=100, bbox_inches="tight")
    plt.close(fig)
    saved.append(path)


# --- What is Nengo: the same auto-encoder in PyTorch and in Nengo -------------
n_in = 784
n_hidden = 64
minibatch_size = 50

# PyTorch: input -> first layer -> second layer
torch_model = torch.nn.Sequential(
    torch.nn.Linear(n_in, n_hidden),
    torch.nn.ReLU(),
    torch.nn.Linear(n_hidden, n_in),
    torch.nn.ReLU(),
)
for layer in torch_model:
    if isinstance(layer, torch.nn.Linear):
        torch.nn.init.xavier_uniform_(layer.weight)

# Nengo
with nengo.Network() as auto_net:
    # input
    nengo_a = nengo.Node(np.zeros(n_in))
    # first layer
    nengo_b = nengo.Ensemble(n_hidden, 1, neuron_type=nengo.RectifiedLinear())
    nengo.Connection(nengo_a, nengo_b.neurons, transform=snntorch_nengo.dists.Glorot())
    # second layer
    nengo_c = nengo.Ensemble(n_in, 1, neuron_type=nengo.RectifiedLinear())
    nengo.Connection(
        nengo_b.neurons, nengo_c.neurons, transform=snntorch_nengo.dists.Glorot()
    )
    # probes are used to collect data from the network
    p_c = nengo.Probe(nengo_c.neurons)

# --- Simulating a network ----------------------------------------------------
with torch.no_grad():
    out = torch_model(torch.ones((minibatch_size, n_in)))
print("torch model output:", tuple(out.shape))

with snntorch_nengo.Simulator(network=auto_net, minibatch_size=minibatch_size) as sim:
    out = sim.predict(np.ones((minibatch_size, 1, n_in)))
    print("snntorch_nengo predict output:", out[p_c].shape)

# --- Spiking networks ----------------------------------------------------------
with nengo.Network() as net:
    # our input node will output a sine wave with a period of 1 second
    a = nengo.Node(lambda t: np.sin(2 * np.pi * t))
    # we'll create one ensemble with rate neurons
    b_rate = nengo.Ensemble(10, 1, neuron_type=nengo.RectifiedLinear(), seed=2)
    nengo.Connection(a, b_rate)
    # and another ensemble with spiking neurons
    b_spike = nengo.Ensemble(10, 1, neuron_type=nengo.SpikingRectifiedLinear(), seed=2)
    nengo.Connection(a, b_spike)
    p_a = nengo.Probe(a)
    p_rate = nengo.Probe(b_rate.neurons)
    p_spike = nengo.Probe(b_spike.neurons)

with snntorch_nengo.Simulator(net) as sim:
    # simulate the model for 1 second; the input comes from the Node's function
    sim.run_steps(1000)

fig, axes = plt.subplots(3, 1, figsize=(8, 9), sharex=True)
axes[0].plot(sim.trange(), sim.data[p_a])
axes[0].set_ylabel("input value")
axes[0].set_title("a")
axes[1].plot(sim.trange(), sim.data[p_rate])
axes[1].set_ylabel("firing rate")
axes[1].set_title("b_rate")
rasterplot(sim.trange(), sim.data[p_spike], ax=axes[2])
axes[2].set_xlabel("time")
axes[2].set_ylabel("neuron")
axes[2].set_title("b_spike")
save(fig, "rate_vs_spiking.png")

# nengo uses a linear lowpass filter by default
filt = nengo.Lowpass(tau=0.05)
# apply filter to ensemble output spikes
filtered_spikes = filt.filt(sim.data[p_spike])
fig = plt.figure(figsize=(8, 3))
plt.plot(sim.trange(), filtered_spikes)
plt.xlabel("time")
plt.ylabel("filtered spike train (firing rates)")
save(fig, "filtered_spikes.png")

# --- Inserting PyTorch code: Layer and TensorNode -------------------------------
with net:
    batch_norm = snntorch_nengo.Layer(torch.nn.BatchNorm1d(10, momentum=0.1))(
        b_rate.neurons
    )
    p_batch_norm = nengo.Probe(batch_norm)

# Layer is a shortcut for a TensorNode and a Connection; this is equivalent:
with net:
    batch_norm = snntorch_nengo.TensorNode(
        torch.nn.BatchNorm1d(10, momentum=0.1), shape_in=(10,), pass_time=False
    )
    nengo.Connection(b_rate.neurons, batch_norm, synapse=None)
    p_batch_norm = nengo.Probe(batch_norm)

with snntorch_nengo.Simulator(net, progress_bar=False) as sim:
    sim.run_steps(10)
print("batch-normalized rates:", sim.data[p_batch_norm].shape)

with nengo.Network() as net:
    # node to provide an input value for the TensorNode
    a = nengo.Node([0.5, -0.1])

    # a TensorNode function to illustrate i/o
    def tensor_func(t, x):
        # print out the value of inputs t and x
        print("t:", float(t))
        print("x:", x.numpy())
        # output t + x
        return t + x

    # create the TensorNode
    b = snntorch_nengo.TensorNode(tensor_func, shape_in=(2,), shape_out=(2,))
    nengo.Connection(a, b, synapse=None)
    p = nengo.Probe(b)

with snntorch_nengo.Simulator(net, dtype=torch.float32) as sim:
    print("TensorNode input:")
    data = sim.predict(n_steps=10)
    print("TensorNode output:")
    print(data[p])


with nengo.Network() as net:

    class MyLayer(torch.nn.Module):
        """A layer with its own parameter, as the seed's custom Keras layer."""

        def __init__(self):
            super().__init__()
            self.w = torch.nn.Parameter(torch.randn(1, 1))

        def forward(self, inputs):
            return inputs * self.w

    a = snntorch_nengo.TensorNode(MyLayer(), shape_in=(1,), pass_time=False)

# --- Deep learning parameter optimization: train the auto-encoder ---------------
digits = load_digits().images.astype(np.float32)  # (1797, 8, 8), values 0-16
images = zoom(digits, (1, 28 / 8, 28 / 8), order=1) * (255.0 / 16)
images = np.clip(images, 0, 255).reshape((len(images), -1))  # (1797, 784)
n_train = 200 if args.quick else 1500
train_data, test_data = images[:n_train], images[1500:1750]
if not args.quick:
    # digits has 1,500 training images where MNIST has 60,000: show each one 8
    # times per epoch (12,000 samples), so 2 epochs make enough updates to see
    train_data = np.tile(train_data, (8, 1))
n_epochs = 2

# in PyTorch, the training would be done something like:
optimizer = torch.optim.RMSprop(torch_model.parameters(), 1e-3)
train_tensor = torch.as_tensor(train_data)
for epoch in range(n_epochs):
    for i in range(0, len(train_tensor), minibatch_size):
        batch = train_tensor[i : i + minibatch_size]
        loss = torch.nn.functional.mse_loss(torch_model(batch), batch)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    print(f"torch epoch {epoch + 1}/{n_epochs}: loss {loss.item():.1f}")
with torch.no_grad():
    test_tensor = torch.as_tensor(test_data)
    print("torch test loss:", torch.nn.functional.mse_loss(torch_model(test_tensor), test_tensor).item())

# set initial neuron gains to 1 and biases to 0
for ens in auto_net.all_ensembles:
    ens.gain = nengo.dists.Choice([1])
    ens.bias = nengo.dists.Choice([0])

# disable synaptic filtering on all connections
for conn in auto_net.all_connections:
    conn.synapse = None

# add the time axis: (batch_size, n_steps, n)
train_data = train_data[:, None, :]
test_data = test_data[:, None, :]

# float32, as deep learning (and NengoDL) uses; the Simulator's default is
# Nengo's float64
with snntorch_nengo.Simulator(
    auto_net, minibatch_size=minibatch_size, dtype=torch.float32
) as sim:
    sim.compile(
        optimizer=torch.optim.RMSprop(sim.parameters(), 1e-3),
        loss=torch.nn.functional.mse_loss,
    )
    # run training loop
    history = sim.fit(train_data, train_data, epochs=n_epochs)
    # evaluate performance on test set
    print("snntorch_nengo test loss:", sim.evaluate(test_data, test_data))
    # display example output
    output = sim.predict(test_data[:minibatch_size])

fig, axes = plt.subplots(1, 3, figsize=(9, 3.4))
axes[0].plot(np.arange(1, n_epochs + 1), history.history["loss"], "o-")
axes[0].set_xlabel("epoch")
axes[0].set_ylabel("training loss (MSE)")
axes[1].imshow(test_data[0, 0].reshape((28, 28)), cmap="gray")
axes[1].set_title("test digit")
axes[2].imshow(output[p_c][0, 0].reshape((28, 28)), cmap="gray")
axes[2].set_title("reconstruction")
for ax in axes[1:]:
    ax.axis("off")
save(fig, "autoencoder_reconstruction.png")

# --- NEF parameter optimization: sin(x^2) --------------------------------------
with nengo.Network(seed=0) as net:
    # input node outputting a random signal for x
    inpt = nengo.Node(nengo.processes.WhiteSignal(1, 5, rms=0.3))
    # first ensemble, will compute x^2
    ens0 = nengo.Ensemble(50, 1)
    # second ensemble, will compute sin(x^2)
    ens1 = nengo.Ensemble(50, 1)
    # output node
    outpt = nengo.Node(size_in=1)
    # connect input to first ensemble
    nengo.Connection(inpt, ens0)
    # connect first to second ensemble, solve for weights to approximate square
    nengo.Connection(ens0, ens1, function=np.square)
    # connect second ensemble to output, solve for weights to approximate sin
    nengo.Connection(ens1, outpt, function=np.sin)
    # add a probe on the input and output
    inpt_p = nengo.Probe(inpt)
    outpt_p = nengo.Probe(outpt, synapse=0.005)


def plot_nef(sim, title, name):
    fig = plt.figure(figsize=(8, 3))
    plt.plot(sim.trange(), sim.data[inpt_p], label="x")
    plt.plot(sim.trange(), np.sin(sim.data[inpt_p] ** 2), label="sin(x^2)")
    plt.plot(sim.trange(), sim.data[outpt_p], label="output")
    plt.title(title)
    plt.legend()
    save(fig, name)


with snntorch_nengo.Simulator(net, seed=0) as sim:
    sim.run_steps(1000)
plot_nef(sim, "snntorch_nengo.Simulator", "nef_sin_x2.png")

# --- Running on other backends: the same network in nengo's reference ----------
with nengo.Simulator(net, seed=0) as ref:
    ref.run_steps(1000)
plot_nef(ref, "nengo.Simulator (reference)", "nef_sin_x2_reference.png")
diff = np.abs(ref.data[outpt_p] - sim.data[outpt_p]).max()
print(f"sin(x^2) output, largest difference from nengo.Simulator: {diff:.2e}")

print("plots saved:")
for path in saved:
    print(f"  {path}")
