"""Coming from Nengo to snntorch_nengo.

The PyTorch twin of NengoDL's tutorial "Coming from Nengo to NengoDL", written
with NengoDL's own calls (``snntorch_nengo`` in place of ``nengo_dl``, torch in
place of TensorFlow): the same network computing sin(x^2) run in Nengo and here,
batch processing, inputs given at run time, training encoders and biases,
evaluating before and after training, and a TensorNode. Plots are saved under
the folder given as the first argument (``outputs/nengodl/`` by default).
``--quick`` trains on less data for fewer epochs (for the test suite).
"""

import matplotlib.pyplot as plt
import nengo
import numpy as np
import torch

import snntorch_nengo

from _common import setup

args, save = setup(__doc__)

# the results do not depend much on the seed; fixing it keeps them repeatable
seed = 0
np.random.seed(seed)

# --- Simulating a network --------------------------------------------------------
with nengo.Network(seed=seed) as net:
    # a random input signal x
    inpt = nengo.Node(nengo.processes.WhiteSignal(1, 5, rms=0.3))
    # one ensemble represents x and computes x^2 on its way out ...
    square = nengo.Ensemble(20, 1)
    # ... the next represents x^2 and computes sin(x^2)
    sin = nengo.Ensemble(20, 1)
    outpt = nengo.Node(size_in=1)
    nengo.Connection(inpt, square)
    nengo.Connection(square, sin, function=np.square)
    nengo.Connection(sin, outpt, function=np.sin)
    inpt_p = nengo.Probe(inpt)
    outpt_p = nengo.Probe(outpt, synapse=0.01)


def plot(plot_sim, ax=None, idx=slice(None)):
    if ax is None:
        plt.figure()
        ax = plt.gca()
    x = plot_sim.data[inpt_p][idx]
    ax.plot(plot_sim.trange(), x, label="x")
    ax.plot(plot_sim.trange(), np.sin(x**2), label="sin(x^2)")
    ax.plot(plot_sim.trange(), plot_sim.data[outpt_p][idx], label="output")
    ax.legend()


with nengo.Simulator(net, seed=seed, progress_bar=False) as ref:
    ref.run(1.0)
plot(ref)
plt.title("nengo.Simulator")
save("from_nengo_nengo.png")

# the only change: snntorch_nengo.Simulator in place of nengo.Simulator
with snntorch_nengo.Simulator(net, seed=seed) as sim:
    sim.run(1.0)
plot(sim)
plt.title("snntorch_nengo.Simulator")
save("from_nengo_snntorch_nengo.png")
diff = np.abs(sim.data[outpt_p] - ref.data[outpt_p]).max()
print(f"output, largest difference from nengo.Simulator: {diff:.2e}")

# --- Batch processing ------------------------------------------------------------
reps = 3
with nengo.Simulator(net, progress_bar=False) as ref:
    _, axes = plt.subplots(1, reps, figsize=(20, 4.8))
    for i in range(reps):
        ref.run(1.0)
        plot(ref, ax=axes[i])
        ref.reset(seed=i + 10)
save("from_nengo_batch_nengo.png")

# the same three runs in parallel, as one minibatch
with snntorch_nengo.Simulator(net, minibatch_size=reps) as sim:
    sim.run(1.0)
print("batched probe data:", sim.data[outpt_p].shape)
_, axes = plt.subplots(1, reps, figsize=(20, 4.8))
for i in range(reps):
    plot(sim, ax=axes[i], idx=i)
save("from_nengo_batch.png")

# --- Specifying model inputs at run time -----------------------------------------
with snntorch_nengo.Simulator(net) as sim:
    sim.run(1.0, data={inpt: np.reshape(np.linspace(-1, 1, 1000), (1, 1000, 1))})
plot(sim)
save("from_nengo_ramp.png")

# a different ramp for each item of the minibatch
with snntorch_nengo.Simulator(net, minibatch_size=reps) as sim:
    sim.run(
        1.0,
        data={
            inpt: (
                np.linspace(0.5, 1, reps)[:, None, None]
                * np.linspace(-1, 1, 1000)[None, :, None]
            )
        },
    )
_, axes = plt.subplots(1, reps, figsize=(20, 4.8))
for i in range(reps):
    plot(sim, ax=axes[i], idx=i)
    axes[i].set_ylim((-1, 1))
save("from_nengo_ramps.png")

# --- Optimizing model parameters -------------------------------------------------
# training swaps LIF for LIFRate, so the synapses' spike smoothing is not
# needed there, and this feed-forward network has no other dynamics for them
# to shape: without them each time step is an independent sample
for conn in net.all_connections:
    conn.synapse = None
# a probe without a filter to train on; the filtered one (filtered more, for
# the synapses removed) to look at the spiking output
with net:
    outpt_p_nofilt = nengo.Probe(outpt)
outpt_p.synapse = 0.04

with snntorch_nengo.Simulator(net, seed=seed) as sim:
    sim.run(1.0)
    plot(sim)
save("from_nengo_no_synapses.png")

# keep the NEF's decoders; train encoders and biases only
with net:
    snntorch_nengo.configure_settings(trainable=False)
    net.config[nengo.Ensemble].trainable = True

batch_size = 1024 if args.quick else 4096
minibatch_size = 32
n_steps = 1
epochs = 3 if args.quick else 25
vals = np.random.uniform(-1, 1, size=(batch_size, n_steps, 1))
inputs = {inpt: vals}
targets = {outpt_p_nofilt: np.sin(vals**2)}

with snntorch_nengo.Simulator(net, minibatch_size=minibatch_size, seed=seed) as sim:
    sim.compile(
        optimizer=torch.optim.Adam(sim.parameters(), 0.01),
        loss={outpt_p_nofilt: torch.nn.functional.mse_loss},
    )
    sim.fit(inputs, targets, epochs=epochs)
    sim.run(1.0)
    plot(sim, idx=0)
save("from_nengo_trained.png")

# --- Evaluating model performance ------------------------------------------------
# the spiking network (evaluate does not swap neurons) needs time: present each
# test value for 100 steps and read the filtered probe
test_steps = 100
test_vals = np.random.uniform(-1, 1, size=(1024, 1, 1))
test_vals = np.tile(test_vals, (1, test_steps, 1))
test_inputs = {inpt: test_vals}
test_targets = {outpt_p: np.sin(test_vals**2)}


def test_mse(y_pred, y_true):
    # the last 10 steps only: the first ones show the filters settling
    return torch.mean(torch.square(y_pred[:, -10:] - y_true[:, -10:]))


with snntorch_nengo.Simulator(net, minibatch_size=minibatch_size, seed=seed) as sim:
    sim.compile(loss={outpt_p: test_mse})
    before = sim.evaluate(test_inputs, test_targets)["loss"]
    print("Error before training:", before)

    print("Training")
    sim.compile(
        optimizer=torch.optim.Adam(sim.parameters(), 0.01),
        loss={outpt_p_nofilt: torch.nn.functional.mse_loss},
    )
    sim.fit(inputs, targets, epochs=epochs)

    sim.compile(loss={outpt_p: test_mse})
    after = sim.evaluate(test_inputs, test_targets)["loss"]
    print("Error after training:", after)
print(
    f"FIGURE test MSE (spiking, last 10 steps) before/after training: "
    f"{before:.5f} -> {after:.5f} ({before / after:.1f}x lower); NengoDL's tutorial "
    "reports the same comparison (the same task: no dataset involved) and finds "
    "the error lower after training"
)

# --- Integrating PyTorch code ----------------------------------------------------
with net:
    # a regular Node computing exp(x) in numpy ...
    exp_np = nengo.Node(lambda t, x: np.exp(x), size_in=1)
    nengo.Connection(outpt, exp_np)
    np_probe = nengo.Probe(exp_np, synapse=0.01)

    # ... and a TensorNode computing it in torch
    exp_torch = snntorch_nengo.TensorNode(lambda t, x: torch.exp(x), shape_in=(1,))
    nengo.Connection(outpt, exp_torch)
    torch_probe = nengo.Probe(exp_torch, synapse=0.01)

with snntorch_nengo.Simulator(net, seed=seed) as sim:
    sim.run(1.0)

plt.figure()
plt.plot(sim.trange(), np.exp(np.sin(sim.data[inpt_p] ** 2)), label="e^sin(x^2)")
plt.plot(sim.trange(), sim.data[np_probe], label="Node output")
plt.plot(sim.trange(), sim.data[torch_probe], label="TensorNode output", linestyle="--")
plt.ylim([0.8, 1.4])
plt.legend()
save("from_nengo_tensornode.png")
diff = np.abs(sim.data[np_probe] - sim.data[torch_probe]).max()
print(f"Node and TensorNode outputs, largest difference: {diff:.2e}")
