"""Optimizing a cognitive model with temporal dynamics in snntorch_nengo.

The PyTorch twin of NengoDL's tutorial "Optimizing a cognitive model with
temporal dynamics", written with NengoDL's own calls (``snntorch_nengo`` in place
of ``nengo_dl``, torch in place of TensorFlow). Inputs now arrive over time and
the network has to remember them (nengo_spa vocabularies for the semantic
pointers):

1. a memory: an ensemble of rectified linear neurons with a recurrent
   connection holds a semantic pointer shown for 10 ms over the next 40 ms;
   ``sim.fit`` on whole trajectories (mse to a target that ramps up, then
   holds) makes it hold the pointer better;
2. the cognitive model with memory: role/filler pairs shown one after another
   are bound (circular convolution), summed in the memory, and a cue shown
   afterwards unbinds the answer (circular correlation). It trains with
   ``nengo_dl.losses.nan_mse`` (NaN targets where the output does not matter),
   ``loss_weights`` on three probes (output 1, binding and memory 0.25), and
   ``compile`` called again to evaluate the output's loss alone.

NengoDL downloads pretrained parameters by default; here the networks are
trained (its ``do_training=True`` branch), on far fewer items and epochs (at a
learning rate of 1e-3 instead of 1e-4), and the second model with
32-dimensional pointers instead of 64, so that both fit in minutes on a CPU. Plots are saved under the folder given as the first argument
(``outputs/nengodl/`` by default). ``--quick`` trains less (for the test suite).
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


def rmsprop(sim, lr):
    # Keras' RMSprop defaults (rho=0.9, epsilon=1e-7), which NengoDL's tutorial
    # uses; torch's alpha=0.99 takes about three times larger first steps
    return torch.optim.RMSprop(sim.parameters(), lr, alpha=0.9, eps=1e-7)


def similarity(data, vectors):
    """Dot products of ``data`` (n_steps, d) with each of ``vectors`` (k, d)."""
    return spa.similarity(data, np.atleast_2d(vectors), normalize=False)


def plot_similarity(ax, t, data, vocab, named, ylabel):
    """Similarity to the whole vocabulary (grey) and to the ``named`` pointers."""
    ax.plot(t, similarity(data, vocab.vectors), color="black", alpha=0.2)
    for name, vector in named.items():
        ax.plot(t, similarity(data, vector)[:, 0], label=name)
    ax.legend(fontsize="x-small", loc="right")
    ax.set_ylim([-0.2, 1.1])
    ax.set_ylabel(ylabel)


seed = 0
# NengoDL trains with 1e-4 for 12500 (memory) and 1250 (retrieval) steps; the
# few steps that fit here need a larger rate
lr = 1e-3
np.random.seed(seed)
torch.manual_seed(seed)
dt = 0.001

# === 1. Optimizing a memory network =============================================


def get_memory_data(n_inputs, vec_d, vocab_seed, presentation_time, delay_time):
    """Inputs (a pointer for ``presentation_time``) and targets (ramp up, then hold)."""
    int_steps = int(presentation_time / dt)
    mem_steps = int(delay_time / dt)
    n_steps = int_steps + mem_steps
    rng = np.random.RandomState(vocab_seed)
    vocab = spa.Vocabulary(vec_d, pointer_gen=rng, max_similarity=1, strict=False)
    inputs = np.zeros((n_inputs, n_steps, vec_d))
    outputs = np.zeros((n_inputs, n_steps, vec_d))
    for n in range(n_inputs):
        vector = vocab.parse(f"SP_{n}").v
        inputs[n, :int_steps] = vector
        outputs[n] = vector
    # the memory integrates its input: the target ramps up while it is shown
    ramp = np.concatenate((np.arange(int_steps) / int_steps, np.ones(mem_steps)))
    return inputs, outputs * ramp[None, :, None], vocab


t_int = 0.01  # input shown for
t_mem = 0.04  # then held for
dims = 32
n_neurons = 5 * dims
minibatch_size = 32

with nengo.Network(seed=seed) as net:
    net.config[nengo.Ensemble].neuron_type = nengo.RectifiedLinear()
    net.config[nengo.Ensemble].gain = nengo.dists.Choice([1])
    net.config[nengo.Ensemble].bias = nengo.dists.Choice([0])

    sp_input = nengo.Node(np.zeros(dims))
    memory = nengo.Ensemble(n_neurons, dims)

    tau = 0.01  # of the recurrent synapse
    nengo.Connection(sp_input, memory, transform=tau / t_int, synapse=tau)
    nengo.Connection(memory, memory, transform=1, synapse=tau)

    sp_probe = nengo.Probe(sp_input)
    memory_probe = nengo.Probe(memory)

test_inputs, test_targets, test_vocab = get_memory_data(
    minibatch_size, dims, seed, t_int, t_mem
)


def plot_memory_example(plot_sim, vocab, name):
    _, axes = plt.subplots(3, 1, figsize=(8, 8), sharex=True)
    t = plot_sim.trange()
    pointer = {"SP_0": vocab["SP_0"].v}
    plot_similarity(axes[0], t, test_inputs[0], vocab, pointer, "Input")
    plot_similarity(axes[1], t, test_targets[0], vocab, pointer, "Target Memory")
    plot_similarity(axes[2], t, plot_sim.data[memory_probe][0], vocab, pointer,
                    "Output Memory")
    axes[2].set_xlabel("time [s]")
    save(name)


def held(data):
    """Similarity of each item's memory to its own pointer at the end of the delay."""
    return np.mean(np.sum(data[:, -1] * test_targets[:, -1], axis=-1))


with snntorch_nengo.Simulator(net, seed=seed, minibatch_size=minibatch_size) as sim:
    sim.run(t_int + t_mem, data={sp_input: test_inputs})
    memory_before = held(sim.data[memory_probe])
    plot_memory_example(sim, test_vocab, "spa_memory_before.png")

# the same network in nengo.Simulator, item 0: the untrained run is nengo's
sp_input.output = nengo.processes.PresentInput(test_inputs[0], dt)
with nengo.Simulator(net, seed=seed, progress_bar=False) as ref:
    ref.run(t_int + t_mem)
sp_input.output = np.zeros(dims)
difference = np.abs(ref.data[memory_probe] - sim.data[memory_probe][0]).max()
print(f"memory, largest difference from nengo.Simulator: {difference:.2e}")

n_train, epochs = (256, 4) if args.quick else (1024, 8)
train_inputs, train_targets, _ = get_memory_data(n_train, dims, seed, t_int, t_mem)
with snntorch_nengo.Simulator(net, minibatch_size=minibatch_size, seed=seed) as sim:
    sim.compile(optimizer=rmsprop(sim, lr), loss={memory_probe: "mse"})
    memory_loss_before = sim.evaluate(
        {sp_input: test_inputs}, {memory_probe: test_targets}, verbose=0
    )["loss"]
    print(f"Memory: test loss before: {memory_loss_before:.5f}")
    t0 = time.perf_counter()
    sim.fit({sp_input: train_inputs}, {memory_probe: train_targets},
            epochs=epochs, verbose=0)
    memory_fit_time = time.perf_counter() - t0
    memory_loss_after = sim.evaluate(
        {sp_input: test_inputs}, {memory_probe: test_targets}, verbose=0
    )["loss"]
    print(f"Memory: test loss after: {memory_loss_after:.5f} "
          f"({n_train} items x {epochs} epochs in {memory_fit_time:.0f} s)")
    sim.save_params(OUT / "mem_params")

with snntorch_nengo.Simulator(net, seed=seed, minibatch_size=minibatch_size) as sim:
    sim.load_params(OUT / "mem_params")
    sim.run(t_int + t_mem, data={sp_input: test_inputs})
    memory_after = held(sim.data[memory_probe])
    plot_memory_example(sim, test_vocab, "spa_memory_after.png")
print(f"Memory: similarity to the pointer after the delay: {memory_before:.2f} "
      f"before, {memory_after:.2f} after training (1 is perfect)")

# === 2. Adding memory to the cognitive model ====================================


def get_binding_data(n_items, pairs_per_item, vec_d, rng_seed, presentation_time,
                     delay_time):
    """Roles, fillers, cues, bindings, memory and output trajectories, and the vocab.

    Each role/filler pair is shown for ``presentation_time``, one after
    another; the cue (one of the roles) follows for ``delay_time``, while the
    target output is its filler (NaN before: no target there).
    """
    int_steps = int(presentation_time / dt)
    mem_steps = int(delay_time / dt)
    n_steps = int_steps * pairs_per_item + mem_steps
    rng = np.random.RandomState(rng_seed)
    vocab = spa.Vocabulary(vec_d, pointer_gen=rng, max_similarity=1, strict=False)
    roles = np.zeros((n_items, n_steps, vec_d))
    fills = np.zeros((n_items, n_steps, vec_d))
    cues = np.zeros((n_items, n_steps, vec_d))
    binding = np.zeros((n_items, n_steps, vec_d))
    output = np.zeros((n_items, n_steps, vec_d))
    for n in range(n_items):
        role_names = [f"ROLE_{n}_{i}" for i in range(pairs_per_item)]
        filler_names = [f"FILLER_{n}_{i}" for i in range(pairs_per_item)]
        for i in range(pairs_per_item):
            shown = slice(i * int_steps, (i + 1) * int_steps)
            roles[n, shown] = vocab.parse(role_names[i]).v
            fills[n, shown] = vocab.parse(filler_names[i]).v
            binding[n, shown] = vocab.parse(f"{role_names[i]} * {filler_names[i]}").v
        cue_idx = rng.randint(pairs_per_item)
        cues[n, -mem_steps:] = vocab[role_names[cue_idx]].v
        output[n, -mem_steps:] = vocab[filler_names[cue_idx]].v
        output[n, :-mem_steps] = np.nan
    # the memory integrates the bindings
    mem = np.cumsum(binding, axis=1) * dt / presentation_time
    return roles, fills, cues, binding, mem, output, vocab


t_int = 0.01  # each pair shown for
t_mem = 0.03  # the cue shown for
n_pairs = 2
t_run = n_pairs * t_int + t_mem
dims = 32  # NengoDL: 64
minibatch_size = 64

with nengo.Network(seed=seed) as net:
    net.config[nengo.Ensemble].neuron_type = nengo.RectifiedLinear()
    net.config[nengo.Ensemble].gain = nengo.dists.Choice([1])
    net.config[nengo.Ensemble].bias = nengo.dists.Choice([0])
    net.config[nengo.Connection].synapse = None

    role_inp = nengo.Node(np.zeros(dims))
    fill_inp = nengo.Node(np.zeros(dims))
    cue_inp = nengo.Node(np.zeros(dims))

    # ROLE (*) FILLER
    cconv = nengo.networks.CircularConvolution(5, dims)
    nengo.Connection(role_inp, cconv.input_a)
    nengo.Connection(fill_inp, cconv.input_b)

    # the sum of the bindings, held
    memory = nengo.Ensemble(5 * dims, dims)
    tau = 0.01
    nengo.Connection(cconv.output, memory, transform=tau / t_int, synapse=tau)
    nengo.Connection(memory, memory, transform=1, synapse=tau)

    # MEMORY (*) ~CUE
    ccorr = nengo.networks.CircularConvolution(5, dims, invert_b=True)
    nengo.Connection(memory, ccorr.input_a)
    nengo.Connection(cue_inp, ccorr.input_b)

    conv_probe = nengo.Probe(cconv.output, label="conv_probe")
    memory_probe = nengo.Probe(memory, label="memory_probe")
    output_probe = nengo.Probe(ccorr.output, label="output_probe")

print(f"cognitive model: {sum(e.n_neurons for e in net.all_ensembles)} neurons, "
      f"{int(round(t_run / dt))} steps per item")


def accuracy(output, vocab, targets, t_step=-1):
    """Share of outputs most similar to their target among the vocabulary's items."""
    output = output[:, t_step, :]
    best = np.argmax(vocab.vectors @ output.T, axis=0)
    return np.mean(np.all(vocab.vectors[best] == targets[:, -1], axis=1))


test_roles, test_fills, test_cues, _, _, test_targets, test_vocab = get_binding_data(
    minibatch_size, n_pairs, dims, seed + 1, t_int, t_mem
)
test_inputs = {role_inp: test_roles, fill_inp: test_fills, cue_inp: test_cues}


def plot_retrieval_example(plot_sim, vocab, name, example_input=0):
    _, axes = plt.subplots(7, figsize=(10, 14), sharex=True, sharey=True)
    t = plot_sim.trange()
    n = example_input
    roles = {f"ROLE_{n}_{i}": vocab[f"ROLE_{n}_{i}"].v for i in range(n_pairs)}
    fillers = {f"FILLER_{n}_{i}": vocab[f"FILLER_{n}_{i}"].v for i in range(n_pairs)}
    bindings = {
        f"ROLE_{n}_{i}*FILLER_{n}_{i}": vocab.parse(f"ROLE_{n}_{i} * FILLER_{n}_{i}").v
        for i in range(n_pairs)
    }
    trace = " + ".join(bindings)
    rows = [
        (test_roles[n], roles, "Role Input"),
        (test_fills[n], fillers, "Filler Input"),
        (test_cues[n], roles, "Cue Input"),
        (test_targets[n], fillers, "Target Output"),
        (plot_sim.data[conv_probe][n], bindings, "Binding"),
        (plot_sim.data[memory_probe][n],
         {trace: vocab.parse(trace.replace("*", " * ")).v}, "Memory"),
        (plot_sim.data[output_probe][n], fillers, "Output"),
    ]
    for ax, (data, named, ylabel) in zip(axes, rows):
        plot_similarity(ax, t, data, vocab, named, ylabel)
    axes[-1].set_xlabel("time [s]")
    save(name)


with snntorch_nengo.Simulator(net, seed=seed, minibatch_size=minibatch_size) as sim:
    sim.run(t_run, data=test_inputs)
    binding_before = accuracy(sim.data[output_probe], test_vocab, test_targets)
    print(f"Retrieval accuracy before training: {binding_before:.2f}")
    plot_retrieval_example(sim, test_vocab, "spa_memory_retrieval_before.png")

n_train, epochs = (64, 1) if args.quick else (1536, 3)
(train_roles, train_fills, train_cues, train_binding, train_memory, train_targets,
 _) = get_binding_data(n_train, n_pairs, dims, seed, t_int, t_mem)
# targets for the intermediate outputs too, to shape the training
train_inputs = {role_inp: train_roles, fill_inp: train_fills, cue_inp: train_cues}
train_targets = {output_probe: train_targets, conv_probe: train_binding,
                 memory_probe: train_memory}

with snntorch_nengo.Simulator(net, minibatch_size=minibatch_size, seed=seed) as sim:
    sim.compile(loss={output_probe: snntorch_nengo.losses.nan_mse})
    binding_loss_before = sim.evaluate(test_inputs, {output_probe: test_targets},
                                       verbose=0)["loss"]
    print(f"Retrieval: test loss before: {binding_loss_before:.5f}")

    sim.compile(
        optimizer=rmsprop(sim, lr),
        loss=snntorch_nengo.losses.nan_mse,
        loss_weights={output_probe: 1.0, conv_probe: 0.25, memory_probe: 0.25},
    )
    t0 = time.perf_counter()
    sim.fit(train_inputs, train_targets, epochs=epochs, verbose=0)
    binding_fit_time = time.perf_counter() - t0

    sim.compile(loss={output_probe: snntorch_nengo.losses.nan_mse})
    binding_loss_after = sim.evaluate(test_inputs, {output_probe: test_targets},
                                      verbose=0)["loss"]
    print(f"Retrieval: test loss after: {binding_loss_after:.5f} "
          f"({n_train} items x {epochs} epochs in {binding_fit_time:.0f} s)")
    sim.save_params(OUT / "mem_binding_params")

with snntorch_nengo.Simulator(net, seed=seed, minibatch_size=minibatch_size) as sim:
    sim.load_params(OUT / "mem_binding_params")
    sim.run(t_run, data=test_inputs)
    binding_after = accuracy(sim.data[output_probe], test_vocab, test_targets)
    print(f"Retrieval accuracy after training: {binding_after:.2f}")
    plot_retrieval_example(sim, test_vocab, "spa_memory_retrieval_after.png")

print(
    f"FIGURE memory: test loss {memory_loss_before:.5f} -> {memory_loss_after:.5f}; "
    f"retrieval with memory ({dims}-d pointers, {minibatch_size} test items): test "
    f"loss {binding_loss_before:.5f} -> {binding_loss_after:.5f}, accuracy "
    f"{binding_before:.2f} -> {binding_after:.2f}; NengoDL's figures: not found "
    "in the stored pages (its rendered page loads pretrained parameters; it "
    "trains 64-d pointers on 8000 items x 10 epochs)"
)
print(f"total time: {time.perf_counter() - start:.0f} s")
