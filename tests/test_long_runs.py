"""Long runs: chunked simulation, streamed probe data, flat memory, TBPTT."""

import gc
import os

import nengo
import numpy as np
import pytest
import torch
from nengo.exceptions import ValidationError

import snntorch_nengo
from snntorch_nengo import ProbeStream, Simulator, streaming

from networks import relu_channel

def make_net(keep_history=True):
    with nengo.Network(seed=2) as net:
        if not keep_history:
            snntorch_nengo.configure_settings(keep_history=False)
        net.a = nengo.Node([0.0], label="a")
        net.noise = nengo.Node(nengo.processes.WhiteSignal(1.0, high=10, seed=1), label="noise")
        net.ens = nengo.Ensemble(20, 1, label="ens")
        nengo.Connection(net.a, net.ens)
        nengo.Connection(net.noise, net.ens)
        net.p = nengo.Probe(net.ens, synapse=0.01, label="decoded")
        net.p_spikes = nengo.Probe(net.ens.neurons)
        net.p_sampled = nengo.Probe(net.ens, synapse=0.01, sample_every=0.007)
    return net


def full_run(steps, x):
    net = make_net()
    with Simulator(net, progress_bar=False) as sim:
        sim.run_steps(steps, data={net.a: x})
        return [sim.data[p].copy() for p in net.all_probes]  # all_probes order


def test_chunked_run_equals_one_run():
    x = np.random.RandomState(0).randn(1, 300, 1)
    ref = full_run(300, x)
    net = make_net()
    with Simulator(net, progress_bar=False) as sim:
        sim.run_steps(100, data={net.a: x[:, :100]}, chunk_steps=33)
        sim.run_steps(200, data={net.a: x[:, 100:]}, chunk_steps=64)
        for probe, expected in zip(net.all_probes, ref):
            np.testing.assert_array_equal(sim.data[probe], expected)
        assert sim.data[net.p_sampled].shape == (300 // 7, 1)
        # inputs are checked for the whole run, not per chunk
        with pytest.raises(ValidationError, match="<Node 'a'> has 301 steps, expected 300"):
            sim.run_steps(300, data={net.a: np.zeros((1, 301, 1))}, chunk_steps=100)
        with pytest.raises(ValidationError, match="chunk_steps must be a positive integer"):
            sim.run_steps(10, chunk_steps=0)


def test_keep_history_false_keeps_the_latest_sample():
    x = np.random.RandomState(0).randn(1, 250, 1)
    ref = full_run(250, x)
    net = make_net(keep_history=False)
    with Simulator(net, progress_bar=False) as sim:
        sim.run_steps(150, data={net.a: x[:, :150]}, chunk_steps=40)
        sim.run_steps(100, data={net.a: x[:, 150:]})  # default chunking
        for probe, expected in zip(net.all_probes, ref):
            assert sim.data[probe].shape[0] == 1  # one sample, not one per run
            np.testing.assert_array_equal(sim.data[probe][-1], expected[-1])


@pytest.mark.parametrize("minibatch_size", [None, 2])
def test_probe_stream_writes_what_a_run_keeps(tmp_path, minibatch_size):
    batch = minibatch_size or 1
    x = np.random.RandomState(1).randn(batch, 230, 1)
    net = make_net()
    with Simulator(net, progress_bar=False, minibatch_size=minibatch_size) as ref:
        ref.run_steps(230, data={net.a: x})
        expected = {p: ref.data[p].copy() for p in net.all_probes}
    seen = []
    stream = ProbeStream(tmp_path / "run", probes=[net.p, net.p_sampled])
    with Simulator(net, progress_bar=False, minibatch_size=minibatch_size) as sim:

        def callback(data, n_steps):
            seen.append((n_steps, {p: v.shape for p, v in data.items()}))
            stream(data, n_steps)

        sim.run_steps(230, data={net.a: x}, probe_callback=callback, chunk_steps=100)
        # streamed data is not also kept in memory
        assert sim.data[net.p].shape[-2] == 0
    assert [n for n, _ in seen] == [100, 200, 230]
    time_axis = -2
    assert seen[0][1][net.p_spikes][time_axis] == 100
    for probe in (net.p, net.p_sampled):
        np.testing.assert_array_equal(stream.load(probe), expected[probe])
        np.testing.assert_array_equal(stream.load(probe, mmap=True), expected[probe])
    assert [os.path.basename(f) for f in stream.files("decoded")] == [
        "000000.npy",
        "000001.npy",
        "000002.npy",
    ]
    with pytest.raises(ValidationError, match="was not streamed"):
        stream.files(net.p_spikes)


def live_bytes(sim):
    """Bytes of all live tensor storages plus the probe data ``sim`` keeps.

    Counted exactly (no RSS noise): every tensor is tracked by Python's garbage
    collector, and kept probe data is numpy arrays in ``sim._sim_data``.
    """
    storages = {}
    for obj in gc.get_objects():
        if issubclass(type(obj), torch.Tensor):
            try:
                storage = obj.untyped_storage()
                storages[storage.data_ptr()] = storage.nbytes()
            except (RuntimeError, NotImplementedError):
                pass  # fake/functional tensors (left by torch.compile) hold no memory
    kept = sum(a.nbytes for p in sim.model.probes for a in sim._sim_data[p])
    return sum(storages.values()) + kept


def peak_bytes(sim, steps, every=200, **kwargs):
    """Peak of `live_bytes` during ``sim.run_steps(steps, **kwargs)``.

    Sampled every ``every`` steps: with chunks of that size, at the end of each
    chunk, when the engine holds most.
    """
    peak, count = [0], [0]
    forward = sim.module.forward

    def sampling_forward(*args, on_step=None, **kw):
        def step():
            count[0] += 1
            if count[0] % every == 0:
                peak[0] = max(peak[0], live_bytes(sim))

        return forward(*args, on_step=step, **kw)

    sim.module.forward = sampling_forward
    try:
        sim.run_steps(steps, progress_bar=False, **kwargs)
    finally:
        del sim.module.forward
    return max(peak[0], live_bytes(sim))


@pytest.mark.parametrize("mode", ["keep_history", "stream", "full"])
def test_memory_stays_flat_on_long_runs(mode, monkeypatch):
    """Memory held while running 400 steps equals that of running 3000.

    The probe records 200 neurons, 1.6 kB a step; ``full`` (history kept, one
    engine call) is the control that grows with the run.
    """
    # a smaller default chunk keeps the test short; the bound is of the same kind
    monkeypatch.setattr(streaming, "DEFAULT_CHUNK_STEPS", 200)
    with nengo.Network(seed=0) as net:
        if mode == "keep_history":
            snntorch_nengo.configure_settings(keep_history=False)
        stim = nengo.Node([0.5])
        ens = nengo.Ensemble(200, 1)
        nengo.Connection(stim, ens)
        nengo.Probe(ens.neurons)
    kwargs = {"probe_callback": lambda data, n: None} if mode == "stream" else {}
    with Simulator(net, progress_bar=False) as sim:
        sim.run_steps(200, **kwargs)  # warm up
        short = peak_bytes(sim, 400, **kwargs)
        long = peak_bytes(sim, 3000, **kwargs)
    step_bytes = 200 * 8
    if mode == "full":
        assert long - short > 2600 * step_bytes, (short, long)  # the control sees it
    else:
        assert long - short < 20 * step_bytes, (short, long)


# --- truncated backpropagation through time


def graph_size(tensor):
    """Tensor elements the autograd graph behind ``tensor`` keeps for its
    backward pass: what truncating it bounds. (Not its number of nodes: a
    synapse scans a whole window in one node.)"""
    seen, todo, saved = set(), [tensor.grad_fn], {}
    while todo:
        fn = todo.pop()
        if fn is None or fn in seen:
            continue
        seen.add(fn)
        todo.extend(f for f, _ in fn.next_functions)
        values = [getattr(fn, name) for name in dir(fn) if name.startswith("_saved_")]
        values += list(getattr(fn, "saved_tensors", ()))
        for value in values:
            for v in value if isinstance(value, (tuple, list)) else (value,):
                if isinstance(v, torch.Tensor):
                    saved[(v.data_ptr(), tuple(v.shape), tuple(v.stride()))] = v.numel()
    return sum(saved.values())


def fit_recording_graphs(n_steps, tbptt_steps, monkeypatch):
    """Fit one batch; return the autograd graph size of each backward'ed loss."""
    import lightning as L

    net = relu_channel()
    rng = np.random.RandomState(0)
    x = rng.uniform(-1, 1, (2, n_steps, 1))
    y = np.sin(np.cumsum(x, axis=1) * 0.1)
    sizes = []
    real_backward = L.LightningModule.manual_backward
    real_auto = torch.Tensor.backward

    def manual_backward(self, loss, *args, **kwargs):
        sizes.append(graph_size(loss))
        return real_backward(self, loss, *args, **kwargs)

    def backward(self, *args, **kwargs):
        sizes.append(graph_size(self))
        return real_auto(self, *args, **kwargs)

    monkeypatch.setattr(L.LightningModule, "manual_backward", manual_backward)
    if tbptt_steps is None:
        monkeypatch.setattr(torch.Tensor, "backward", backward)
    with Simulator(net, minibatch_size=2, progress_bar=False) as sim:
        sim.compile(optimizer=torch.optim.SGD(sim.parameters(), 1e-3), loss="mse")
        sim.fit({net.a: x}, {net.p: y}, epochs=1, verbose=0, tbptt_steps=tbptt_steps)
    monkeypatch.undo()
    return sizes


def test_tbptt_graph_grows_with_the_window_not_the_sequence(monkeypatch):
    short = fit_recording_graphs(40, 10, monkeypatch)
    long = fit_recording_graphs(160, 10, monkeypatch)
    assert len(short) == 4 and len(long) == 16  # one backward per window
    assert max(long) == max(short)
    whole = fit_recording_graphs(160, None, monkeypatch)
    assert len(whole) == 1 and whole[0] > 10 * max(long)  # untruncated: the sequence


def test_tbptt_one_window_equals_plain_fit():
    rng = np.random.RandomState(0)
    x = rng.uniform(-1, 1, (8, 30, 1))
    y = np.sin(np.cumsum(x, axis=1) * 0.1)
    results = []
    for tbptt_steps in (None, 30, 10):
        net = relu_channel()
        with Simulator(net, minibatch_size=4, progress_bar=False) as sim:
            sim.compile(optimizer=torch.optim.SGD(sim.parameters(), 1e-3), loss="mse")
            history = sim.fit(
                {net.a: x}, {net.p: y}, epochs=2, shuffle=False, verbose=0,
                tbptt_steps=tbptt_steps,
            )
            results.append((history.history["loss"], dict(sim.module.state_dict())))
    (loss_a, params_a), (loss_b, params_b), (loss_c, params_c) = results
    assert loss_a == loss_b
    for name, value in params_a.items():
        torch.testing.assert_close(params_b[name], value, rtol=0, atol=0)
    # shorter windows: more, truncated updates, so different parameters
    assert any(not torch.equal(params_c[n], v) for n, v in params_a.items())
    assert loss_c[-1] < loss_c[0]


def test_tbptt_window_must_tile_the_sequence():
    net = relu_channel()
    with Simulator(net, minibatch_size=2, progress_bar=False) as sim:
        sim.compile(optimizer="sgd", loss="mse")
        x, y = np.zeros((2, 30, 1)), np.zeros((2, 30, 1))
        with pytest.raises(ValidationError, match=r"n_steps \(30\) is not a multiple of tbptt_steps \(7\)"):
            sim.fit({net.a: x}, {net.p: y}, verbose=0, tbptt_steps=7)
        with pytest.raises(ValidationError, match="tbptt_steps must be a positive integer, got 0"):
            sim.fit({net.a: x}, {net.p: y}, verbose=0, tbptt_steps=0)
