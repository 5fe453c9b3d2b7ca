"""Integrating a PyTorch model into a Nengo network.

The PyTorch twin of NengoDL's tutorial "Integrating a Keras model into a Nengo
network", written with NengoDL's own calls (``snntorch_nengo`` in place of
``nengo_dl``, torch in place of TensorFlow/Keras). NengoDL's tutorial inserts a
pretrained Keras image classifier; no pretrained weights can be downloaded here,
so this script first trains a small torch CNN on scikit-learn's 8x8 digits, then
inserts that trained model into a Nengo network twice: as a
``TensorNode(model, shape_in=..., pass_time=False)`` and through
``Layer(model)(node)``. A Node presents test images one after another, spiking
neurons downstream read the classifier's output, and the network runs in the
Simulator (``sim.run``) and over the whole test set in minibatches
(``sim.predict``). Plots are saved under the folder given as the first argument
(``outputs/nengodl/`` by default). ``--quick`` trains for fewer epochs and
predicts on fewer test images (for the test suite).
"""

import time

import matplotlib.pyplot as plt
import nengo
import numpy as np
import torch
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

import snntorch_nengo

from _common import setup

args, save = setup(__doc__)
start = time.perf_counter()

seed = 0
np.random.seed(seed)
torch.manual_seed(seed)

# --- The data ---------------------------------------------------------------------
digits = load_digits()
images = (digits.images / 16.0).astype(np.float32)  # 0..1, like MNIST / 255
x_train, x_test, y_train, y_test = train_test_split(
    images, digits.target, test_size=500, random_state=seed, stratify=digits.target
)
image_shape = (1, 8, 8)  # torch's channels-first layout
n_test = 100 if args.quick else len(x_test)

# --- A trained torch model -----------------------------------------------------
# the stand-in for the tutorial's pretrained Keras model: any nn.Module works
model = torch.nn.Sequential(
    torch.nn.Conv2d(1, 16, 3, padding=1),
    torch.nn.ReLU(),
    torch.nn.Conv2d(16, 32, 3, stride=2, padding=1),
    torch.nn.ReLU(),
    torch.nn.Flatten(),
    torch.nn.Linear(32 * 4 * 4, 10),
)
optimizer = torch.optim.Adam(model.parameters(), 3e-3)
xt = torch.tensor(x_train).reshape((-1,) + image_shape)
yt = torch.tensor(y_train)
epochs = 4 if args.quick else 15
for epoch in range(epochs):
    order = torch.randperm(len(xt))
    for i in range(0, len(xt), 32):
        idx = order[i : i + 32]
        optimizer.zero_grad()
        loss = torch.nn.functional.cross_entropy(model(xt[idx]), yt[idx])
        loss.backward()
        optimizer.step()
model.eval()
with torch.no_grad():
    torch_logits = model(torch.tensor(x_test[:n_test]).reshape((-1,) + image_shape))
torch_pred = torch_logits.argmax(-1).numpy()
torch_acc = float(np.mean(torch_pred == y_test[:n_test]))
print(f"torch model test accuracy: {torch_acc:.4f}")

# --- Inserting the model into a Nengo network --------------------------------------
presentation_time = 0.1  # seconds each image is shown
n_show = 8  # images shown in sequence by sim.run

with nengo.Network(seed=seed) as net:
    # the input Node presents the test images one after another
    input_node = nengo.Node(
        nengo.processes.PresentInput(
            x_test[:n_show].reshape(n_show, -1), presentation_time=presentation_time
        )
    )
    # the torch model as a TensorNode: it receives the flat image, reshaped to
    # shape_in, and no time argument (pass_time=False)
    torch_node = snntorch_nengo.TensorNode(
        model, shape_in=image_shape, pass_time=False, label="cnn"
    )
    nengo.Connection(input_node, torch_node, synapse=None)

    # Layer builds a TensorNode and its connection in one call; here it turns
    # the model's logits into class probabilities ...
    probs = snntorch_nengo.Layer(torch.nn.Softmax(dim=-1))(torch_node, label="softmax")

    # ... which spiking LIF ensembles (one per class) represent: from here on
    # the model's output is an ordinary part of a Nengo network
    classes = nengo.networks.EnsembleArray(50, n_ensembles=10, radius=1.0)
    nengo.Connection(probs, classes.input)

    input_p = nengo.Probe(input_node)
    torch_p = nengo.Probe(torch_node)
    probs_p = nengo.Probe(probs)
    classes_p = nengo.Probe(classes.output, synapse=0.02)

with snntorch_nengo.Simulator(net, seed=seed) as sim:
    sim.run(n_show * presentation_time)

steps = int(round(presentation_time / sim.dt))
t = sim.trange()
# the TensorNode's output at the end of each presentation, and the spiking
# readout averaged over each presentation's second half (after the synapses
# have settled)
node_out = sim.data[torch_p][steps - 1 :: steps]
spiking_out = sim.data[classes_p].reshape(n_show, steps, 10)[:, steps // 2 :].mean(1)
diff = np.abs(node_out - torch_logits[:n_show].numpy()).max()
print(f"TensorNode output, largest difference from the torch model: {diff:.2e}")
print("torch model predictions:  ", torch_pred[:n_show])
print("spiking readout predictions:", spiking_out.argmax(-1))
print("true labels:               ", y_test[:n_show])

fig, axes = plt.subplots(3, 1, figsize=(12, 9), sharex=True)
for i in range(n_show):
    axes[0].imshow(
        x_test[i],
        cmap="gray",
        extent=(i * presentation_time, (i + 1) * presentation_time, 0, 1),
        aspect="auto",
    )
axes[0].set_xlim(0, n_show * presentation_time)
axes[0].set_yticks([])
axes[0].set_title("input images (PresentInput Node)")
axes[1].plot(t, sim.data[probs_p])
axes[1].legend([str(i) for i in range(10)], loc="upper right", ncol=10, fontsize=8)
axes[1].set_ylim(-0.05, 1.25)
axes[1].set_ylabel("probability")
axes[1].set_title("torch model (TensorNode) + softmax (Layer)")
axes[2].plot(t, sim.data[classes_p])
axes[2].set_ylabel("decoded value")
axes[2].set_title("spiking LIF ensembles reading the class probabilities")
for i in range(n_show):
    axes[2].text(
        (i + 0.5) * presentation_time,
        1.05,
        str(spiking_out[i].argmax()),
        ha="center",
        fontsize=14,
    )
axes[2].set_ylim(-0.2, 1.2)
axes[2].set_xlabel("time (s)")
save("torch_integration_over_time.png")

# --- The whole test set, in minibatches, with Layer(model)(node) -----------------
with nengo.Network(seed=seed) as net:
    input_node = nengo.Node(np.zeros(64))
    cnn = snntorch_nengo.Layer(model)(input_node, shape_in=image_shape)
    probs = snntorch_nengo.Layer(torch.nn.Softmax(dim=-1))(cnn)
    classes = nengo.networks.EnsembleArray(50, n_ensembles=10, radius=1.0)
    nengo.Connection(probs, classes.input)
    cnn_p = nengo.Probe(cnn)
    classes_p = nengo.Probe(classes.output, synapse=0.02)

with snntorch_nengo.Simulator(net, minibatch_size=50, seed=seed) as sim:
    # each image held for one presentation; broadcast_to never copies it
    data = np.broadcast_to(
        x_test[:n_test].reshape(n_test, 1, -1), (n_test, steps, 64)
    )
    out = sim.predict({input_node: data})

node_acc = float(np.mean(out[cnn_p][:, -1].argmax(-1) == y_test[:n_test]))
readout = out[classes_p][:, steps // 2 :].mean(1)
spiking_acc = float(np.mean(readout.argmax(-1) == y_test[:n_test]))
# the spiking readout needs time: how long until the winning class's decoded
# value first reaches 90% of its settled level (synapses and neurons, not torch)
winner = readout.argmax(-1)
rising = out[classes_p][np.arange(n_test), :, winner]
reached = rising >= 0.9 * readout[np.arange(n_test), winner][:, None]
latency = (np.argmax(reached, axis=1) + 1) * sim.dt
print(f"test images: {n_test}")
print(f"Layer accuracy (sim.predict): {node_acc:.4f}")
print(f"spiking readout accuracy: {spiking_acc:.4f}")
print(f"spiking readout rise time (to 90%): {1000 * np.median(latency):.0f} ms (median)")
print(
    f"FIGURE accuracy on {n_test} test digits (8x8, scikit-learn): torch model "
    f"{torch_acc:.2%}, the model inside Nengo {node_acc:.2%}, spiking readout "
    f"{spiking_acc:.2%}; NengoDL's tutorial classifies ImageNet photos with a "
    "pretrained Keras model, so it has no comparable figure"
)

plt.figure(figsize=(6, 4))
plt.hist(1000 * latency, bins=20)
plt.xlabel("rise time of the winning class's spiking readout, to 90% (ms)")
plt.ylabel("test images")
save("torch_integration_latency.png")
print(f"total time: {time.perf_counter() - start:.0f} s")
