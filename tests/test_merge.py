"""engine/merge.py: Nengo's operator merger, with the per-object tensors kept."""

import nengo
import numpy as np
import torch
from nengo.builder.neurons import SimNeurons

import snntorch_nengo
from snntorch_nengo.build.model import build_model
from snntorch_nengo.engine.merge import (
    MergedSignals,
    merge_operators,
    resolve,
)
from snntorch_nengo.engine.signals import SignalLayout, SignalValues


def array_net(n_ensembles=8, neuron_type=None):
    with nengo.Network(seed=0) as net:
        stim = nengo.Node(lambda t: np.sin(10 * t) * np.ones(n_ensembles))
        net.array = nengo.networks.EnsembleArray(
            10, n_ensembles, neuron_type=neuron_type or nengo.LIF()
        )
        nengo.Connection(stim, net.array.input)
        net.probe = nengo.Probe(net.array.output, synapse=0.01)
    return net


def recurrent_array_net():
    """An EnsembleArray with feedback: it steps (no window), so it is merged."""
    net = array_net()
    with net:
        nengo.Connection(net.array.output, net.array.input, transform=0.5, synapse=0.05)
    return net


def test_ensemble_array_neurons_merge_into_one_operator():
    model = build_model(array_net(), dt=0.001)
    merged, replacements = merge_operators(model.operators)
    assert len(merged) < len(model.operators)
    neurons = [op for op in merged if isinstance(op, SimNeurons)]
    assert len(neurons) == 1 and neurons[0].J.size == 80
    # every original neuron signal now lives in the merged operator's signals
    for op in model.operators:
        if isinstance(op, SimNeurons):
            assert resolve(op.J, replacements).base is neurons[0].J.base


def test_neurons_with_their_own_random_state_merge_as_nengo_merges_them():
    model = build_model(array_net(neuron_type=nengo.PoissonSpiking(nengo.LIFRate())), dt=0.001)
    random = [op for op in model.operators if isinstance(op, SimNeurons) and op.state_extra]
    assert len(random) == 8
    first_rng = random[0].state_extra["rng"]
    merged, _ = merge_operators(model.operators)
    # nengo's merged operator keeps its first operator's stream for all of them
    kept = [op for op in merged if isinstance(op, SimNeurons) and op.state_extra]
    assert len(kept) == 1 and kept[0].J.size == 80
    assert kept[0].state_extra["rng"] is first_rng


def test_resolve_follows_chains_of_replacements():
    a, b, c, d = object(), object(), object(), object()
    assert resolve(a, {a: b, b: c}) is c
    assert resolve(d, {a: b}) is d


def test_assemble_then_split_gives_back_every_original():
    model = build_model(array_net(), dt=0.001)
    # (the merger moves the operators onto the merged signals: read them first)
    originals = sorted(
        {sig.base for op in model.operators for sig in op.all_signals}, key=lambda s: s.name
    )
    merged, replacements = merge_operators(model.operators)
    layout = SignalLayout(merged, torch.float64)
    mapping = MergedSignals(originals, replacements, layout)
    assert mapping.pieces  # something was merged
    batch = 3
    gen = torch.Generator().manual_seed(0)
    values = {}
    for sig in originals:
        target = mapping.location[sig]
        shape = ((batch,) if layout.batched(target.base) else ()) + tuple(sig.shape)
        dtype = torch.float64 if sig.dtype.kind == "f" else torch.int64
        values[sig] = (torch.randn(shape, generator=gen, dtype=torch.float64) * 10).to(dtype)
    assembled = mapping.assemble(values, batch)
    sv = SignalValues(layout, assembled, batch)
    for sig in originals:
        # each original reads back from where the merger put it
        got = sv.read(mapping.location[sig])
        want = values[sig]
        assert torch.equal(got, want.expand(got.shape)), sig
    back = mapping.split(sv, originals)
    for sig in originals:
        assert torch.equal(back[sig], values[sig].expand(back[sig].shape)), sig


def test_merged_run_equals_unmerged_and_nengo():
    net = recurrent_array_net()
    with nengo.Simulator(net, progress_bar=False) as ref:
        ref.run_steps(100)
    runs = {}
    for optimize in (True, False):
        with snntorch_nengo.Simulator(
            net, progress_bar=False, dtype=torch.float64, optimize=optimize
        ) as sim:
            sim.run_steps(100)
            runs[optimize] = sim.data[net.probe]
            merged_neurons = [
                op for op in sim.module.engine.operators
                if isinstance(op, SimNeurons) and op.J.size == 80
            ]
            assert len(merged_neurons) == (1 if optimize else 0)
    np.testing.assert_allclose(runs[True], runs[False], atol=1e-10)
    np.testing.assert_allclose(runs[True], ref.data[net.probe], atol=1e-8)


def test_trainable_gains_equal_at_build_are_not_merged_into_one():
    # nengo.networks.Product feeds its two arrays through four scalar gains of
    # +-1/sqrt(2); nengo merges the operators of the equal ones and keeps one
    # gain for them, so once training made them differ the run read only one
    # of them (which one changed from build to build)
    with nengo.Network(seed=0) as net:
        # stepped, not windowed: windowed models are not merged
        snntorch_nengo.configure_settings(windowed=False)
        net.config[nengo.Ensemble].neuron_type = nengo.RectifiedLinear()
        a = nengo.Node(np.linspace(-0.5, 0.5, 8))
        b = nengo.Node(np.linspace(0.4, -0.3, 8))
        product = nengo.networks.Product(10, 8)
        nengo.Connection(a, product.input_a, synapse=None)
        nengo.Connection(b, product.input_b, synapse=None)
        probe = nengo.Probe(product.output, synapse=None)
    gains = [
        c for c in product.all_connections
        if c.pre in (product.input_a, product.input_b) and np.ndim(c.transform.init) == 0
    ]
    assert len(gains) == 4
    trained = [0.9, 0.5, 0.3, -0.6]
    outputs = []
    for _ in range(4):  # the merge order differs from build to build
        with snntorch_nengo.Simulator(net, progress_bar=False, dtype=torch.float64) as sim:
            assert sim.module.engine.replacements  # the network was merged
            with torch.no_grad():
                for conn, value in zip(gains, trained):
                    sim.module._modules_by_obj[conn].weights.fill_(value)
            sim.run_steps(2)
            outputs.append(sim.data[probe])
    initial = [c.transform for c in gains]
    try:
        for conn, value in zip(gains, trained):
            conn.transform = value
        with nengo.Simulator(net, progress_bar=False) as ref:
            ref.run_steps(2)
    finally:
        for conn, transform in zip(gains, initial):
            conn.transform = transform
    for output in outputs:
        np.testing.assert_allclose(output, ref.data[probe], atol=1e-10)


def test_runs_with_autograd_start_from_the_state_they_are_given():
    """Merged state assembled once is reused only while its pieces are the same
    tensors: a run that goes on from the last one's state (new tensors), or
    from a state loaded in its place, assembles it anew."""
    net = recurrent_array_net()
    module = snntorch_nengo.NengoModule(net, dtype=torch.float64)
    with torch.enable_grad():
        whole = module(n_steps=60)[net.probe]
        module.reset()
        halves = [module(n_steps=30)[net.probe] for _ in range(2)]
        torch.testing.assert_close(torch.cat(halves, dim=1), whole, rtol=0, atol=0)
        module.reset()
        first = module(n_steps=30)[net.probe]
        after_first = module.state()
        second = module(n_steps=30)[net.probe]
        module.reset()
        module(n_steps=30)  # from the reset state again: a reuse
        module.load_state(after_first)
        torch.testing.assert_close(module(n_steps=30)[net.probe], second, rtol=0, atol=0)
    assert not torch.equal(first, second)
