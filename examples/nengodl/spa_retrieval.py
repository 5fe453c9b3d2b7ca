"""Optimizing a cognitive model in snntorch_nengo.

The PyTorch twin of NengoDL's tutorial "Optimizing a cognitive model", written
with NengoDL's own calls (``snntorch_nengo`` in place of ``nengo_dl``, torch in
place of TensorFlow). Structured semantic pointers (nengo_spa vocabularies)
hold role/filler pairs bound by circular convolution,
``TRACE = ROLE_0 * FILLER_0 + ROLE_1 * FILLER_1``; a
``nengo.networks.CircularConvolution`` of rectified linear neurons with
``invert_b=True`` unbinds a cued role from the trace, and its output is read as
the vocabulary item it is most similar to. The trace and cue are static (one
time step, ``sim.step(data=...)``), the network's parameters are trained with
``sim.fit`` on the mean squared error to the cued filler, and the retrieval
accuracy on held-out items is printed before and after. NengoDL downloads
pretrained parameters by default; here the network is trained as NengoDL's
``do_training=True`` branch trains it (5000 items x 100 epochs, RMSprop 2e-3).
The tutorial's figure is the share of 50 test items retrieved, so one item
moves it by two points; the mean over 20 more test sets of 50 items (each with
its own vocabulary) is printed beside it. Plots are saved under the folder
given as the first argument (``outputs/nengodl/`` by default). ``--quick``
trains on fewer items for fewer epochs (for the test suite).
"""

import time

import matplotlib.pyplot as plt
import nengo
import nengo_spa as spa
import numpy as np
import torch

import snntorch_nengo

from _common import setup

args, save = setup(__doc__)
OUT = args.out
start = time.perf_counter()


def get_data(n_items, pairs_per_item, vec_d, vocab_seed):
    """Traces, cues and target fillers ``(n_items, 1, vec_d)``, and their vocabulary."""
    rng = np.random.RandomState(vocab_seed)
    # max_similarity=1: any random vectors will do (nengo_spa's default keeps
    # them nearly orthogonal, which takes long for thousands of pointers);
    # strict=False lets parse() create the role and filler pointers it meets
    vocab = spa.Vocabulary(vec_d, pointer_gen=rng, max_similarity=1, strict=False)
    traces = np.zeros((n_items, 1, vec_d))
    cues = np.zeros((n_items, 1, vec_d))
    targets = np.zeros((n_items, 1, vec_d))
    for n in range(n_items):
        pairs = [(f"ROLE_{n}_{i}", f"FILLER_{n}_{i}") for i in range(pairs_per_item)]
        trace = vocab.parse(" + ".join(f"{r} * {f}" for r, f in pairs)).normalized()
        vocab.add(f"TRACE_{n}", trace)
        role, filler = pairs[rng.randint(pairs_per_item)]
        traces[n, 0] = trace.v
        cues[n, 0] = vocab[role].v
        targets[n, 0] = vocab[filler].v
    return traces, cues, targets, vocab


def accuracy(output, vocab, targets, t_step=-1):
    """Share of outputs more similar to their target than to any other vocabulary item."""
    output = output[:, t_step, :]
    best = np.argmax(vocab.vectors @ output.T, axis=0)
    return np.mean(np.all(vocab.vectors[best] == targets[:, 0], axis=1))


def plot_similarities(output, vocab, target, title, name):
    plt.figure(figsize=(10, 5))
    bars = plt.bar(np.arange(len(vocab.vectors)), vocab.vectors @ output)
    bars[np.flatnonzero(np.all(vocab.vectors == target, axis=1))[0]].set_color("r")
    plt.ylim([-1, 1])
    plt.xlabel("Vocabulary items")
    plt.ylabel("Similarity")
    plt.title(title)
    save(name)


seed = 0
np.random.seed(seed)
torch.manual_seed(seed)
dims = 32
minibatch_size = 50
n_pairs = 2

with nengo.Network(seed=seed) as net:
    net.config[nengo.Ensemble].neuron_type = nengo.RectifiedLinear()
    net.config[nengo.Connection].synapse = None

    trace_inp = nengo.Node(np.zeros(dims))
    cue_inp = nengo.Node(np.zeros(dims))

    # TRACE (*) ~CUE: circular correlation unbinds the cued role's filler
    cconv = nengo.networks.CircularConvolution(5, dims, invert_b=True)
    nengo.Connection(trace_inp, cconv.input_a)
    nengo.Connection(cue_inp, cconv.input_b)

    out = nengo.Probe(cconv.output)

n_neurons = sum(e.n_neurons for e in net.all_ensembles)
print(f"network: {n_neurons} rectified linear neurons in {len(net.all_ensembles)} ensembles")

# --- Before training --------------------------------------------------------------
test_traces, test_cues, test_targets, test_vocab = get_data(
    minibatch_size, n_pairs, dims, vocab_seed=seed
)
test_inputs = {trace_inp: test_traces, cue_inp: test_cues}

with snntorch_nengo.Simulator(net, minibatch_size=minibatch_size, seed=seed) as sim:
    sim.step(data=test_inputs)
before = accuracy(sim.data[out], test_vocab, test_targets)
print(f"Retrieval accuracy before training: {before:.2f}")
before_output = sim.data[out][0, 0]

# the untrained network in nengo.Simulator, one item per step (nothing here
# has state, so each step answers its own item): the output is nengo's
n_ref = 3
trace_inp.output = nengo.processes.PresentInput(test_traces[:n_ref, 0], 0.001)
cue_inp.output = nengo.processes.PresentInput(test_cues[:n_ref, 0], 0.001)
with nengo.Simulator(net, seed=seed, progress_bar=False) as ref:
    ref.run_steps(n_ref)
trace_inp.output = cue_inp.output = np.zeros(dims)
difference = np.abs(ref.data[out] - sim.data[out][:n_ref, 0]).max()
print(f"largest difference from nengo.Simulator: {difference:.2e}")
plot_similarities(before_output, test_vocab, test_targets[0, 0],
                  "before training", "spa_retrieval_before.png")

# --- Training ---------------------------------------------------------------------
n_train, epochs = (800, 12) if args.quick else (5000, 100)
train_traces, train_cues, train_targets, _ = get_data(
    n_items=n_train, pairs_per_item=n_pairs, vec_d=dims, vocab_seed=seed + 1
)

sim = snntorch_nengo.Simulator(net, minibatch_size=minibatch_size, seed=seed)
# Keras' RMSprop defaults (rho=0.9, epsilon=1e-7): with torch's (alpha=0.99)
# the first steps are about three times larger and training diverges at first.
# foreach: one update for all the network's small tensors (the same arithmetic;
# torch does the update tensor by tensor on the CPU otherwise)
sim.compile(
    optimizer=torch.optim.RMSprop(
        sim.parameters(), 2e-3, alpha=0.9, eps=1e-7, foreach=True
    ),
    loss="mse",
)
test_loss_before = sim.evaluate(test_inputs, {out: test_targets}, verbose=0)["loss"]
print(f"Test loss before training: {test_loss_before:.4f}")
t0 = time.perf_counter()
history = sim.fit(
    {trace_inp: train_traces, cue_inp: train_cues},
    {out: train_targets},
    epochs=epochs,
    verbose=0,
)
fit_time = time.perf_counter() - t0
print(f"fit: {n_train} items x {epochs} epochs in {fit_time:.0f} s, "
      f"loss {history.history['loss'][0]:.4f} -> {history.history['loss'][-1]:.4f}")
test_loss_after = sim.evaluate(test_inputs, {out: test_targets}, verbose=0)["loss"]
print(f"Test loss after training: {test_loss_after:.4f}")
sim.save_params(OUT / "spa_retrieval_params")

sim.step(data=test_inputs)
after = accuracy(sim.data[out], test_vocab, test_targets)
print(f"Retrieval accuracy after training: {after:.2f}")
after_output = sim.data[out][0, 0]

# the same measure on more test sets, to tell the network's accuracy from the
# luck of one set of 50 items
n_sets = 4 if args.quick else 20
more = [get_data(minibatch_size, n_pairs, dims, vocab_seed=1000 + i) for i in range(n_sets)]
predicted = sim.predict(
    {trace_inp: np.concatenate([m[0] for m in more]),
     cue_inp: np.concatenate([m[1] for m in more])},
    verbose=0,
)[out]
set_accuracies = [
    accuracy(predicted[i * minibatch_size:(i + 1) * minibatch_size], vocab, targets)
    for i, (_, _, targets, vocab) in enumerate(more)
]
print(f"Retrieval accuracy on {n_sets} more test sets of {minibatch_size} items: "
      f"mean {np.mean(set_accuracies):.3f}, standard error "
      f"{np.std(set_accuracies) / np.sqrt(n_sets):.3f}, range "
      f"{min(set_accuracies):.2f} to {max(set_accuracies):.2f}")
sim.close()

# NengoDL's default branch loads the parameters into a new simulator
with snntorch_nengo.Simulator(net, minibatch_size=minibatch_size, seed=seed) as sim:
    sim.load_params(OUT / "spa_retrieval_params")
    sim.step(data=test_inputs)
loaded = accuracy(sim.data[out], test_vocab, test_targets)
print(f"Retrieval accuracy with loaded parameters: {loaded:.2f}")

plot_similarities(after_output, test_vocab, test_targets[0, 0],
                  "after training", "spa_retrieval_after.png")

plt.figure(figsize=(8, 3.5))
plt.plot(history.history["loss"])
plt.xlabel("epoch")
plt.ylabel("training loss (mse)")
save("spa_retrieval_training.png")
print(
    f"FIGURE retrieval accuracy on {minibatch_size} test items: {before:.2f} before, "
    f"{after:.2f} after training ({n_train} items x {epochs} epochs; mean over "
    f"{n_sets} more test sets {np.mean(set_accuracies):.2f}); NengoDL (32-d, 2 "
    "pairs, 50 test items, trains 5000 x 100 or loads pretrained "
    "parameters, www.nengo.ai/nengo-dl/v3.4.4/examples/spa-retrieval.html): 0.06 "
    "before, 0.86 with its downloaded parameters"
)
print(f"total time: {time.perf_counter() - start:.0f} s")
