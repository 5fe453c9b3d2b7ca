"""In-place stepping (engine/program.py, csrc/program.cpp) equals functional stepping."""

import nengo
import numpy as np
import pytest
import torch

from snntorch_nengo import Simulator, configure_settings
from snntorch_nengo.engine import program
from snntorch_nengo.engine.strategies import in_place as in_place_strategy


def networks():
    """Small models covering every instruction and the CALL fallback."""
    with nengo.Network(seed=1, label="integrator") as integrator:
        integrator.config[nengo.Ensemble].neuron_type = nengo.RectifiedLinear()
        stim = nengo.Node([0.2, -0.1, 0.3], label="stim")
        ea = nengo.networks.EnsembleArray(20, 3)
        nengo.Connection(stim, ea.input, synapse=None)
        nengo.Connection(ea.output, ea.input, synapse=0.01)
        nengo.Probe(ea.output, synapse=0.01)
        nengo.Probe(ea.output, sample_every=0.003)
    with nengo.Network(seed=2, label="cconv") as cconv:
        cconv.config[nengo.Ensemble].neuron_type = nengo.RectifiedLinear()
        a = nengo.Node([0.3, -0.2, 0.1, 0.25], label="a")
        b = nengo.Node([-0.1, 0.2, 0.3, -0.3], label="b")
        cc = nengo.networks.CircularConvolution(30, 4)
        nengo.Connection(a, cc.input_a, synapse=None)
        nengo.Connection(b, cc.input_b, synapse=None)
        nengo.Probe(cc.output, synapse=0.01)
    with nengo.Network(seed=4, label="spiking") as spiking:
        # Nengo's default LIF, and the other types with fused kernels, recurrent
        stim = nengo.Node([0.5, -0.3], label="stim")
        ens = [
            nengo.Ensemble(30, 2, neuron_type=t, label=type(t).__name__)
            for t in (nengo.LIF(), nengo.AdaptiveLIF(), nengo.SpikingRectifiedLinear())
        ]
        nengo.Connection(stim, ens[0], synapse=None)
        for pre, post in zip(ens, ens[1:] + ens[:1]):
            nengo.Connection(pre, post, synapse=0.01, transform=0.5)
        for e in ens:
            nengo.Probe(e.neurons)
            nengo.Probe(e, synapse=0.01)
    with nengo.Network(seed=3, label="mixed") as mixed:
        # Python functions, LIF, an Alpha synapse, a learning rule and sliced
        # connections: operators that run as CALLs beside the instructions
        stim = nengo.Node(lambda t: [np.sin(8 * t), np.cos(5 * t)], label="stim")
        pre = nengo.Ensemble(40, 2, neuron_type=nengo.LIF(), label="pre")
        post = nengo.Ensemble(30, 2, neuron_type=nengo.RectifiedLinear(), label="post")
        err = nengo.Node(size_in=2, label="err")
        nengo.Connection(stim, pre, synapse=None)
        conn = nengo.Connection(pre, post, synapse=nengo.Alpha(0.005),
                                learning_rule_type=nengo.PES(1e-4))
        nengo.Connection(post[::-1], err, synapse=0.01)
        nengo.Connection(stim[0], err[1], transform=-1, synapse=None)
        nengo.Connection(err, conn.learning_rule)
        nengo.Connection(post[0], post[1], synapse=0.02, transform=0.3)
        nengo.Probe(post, synapse=0.01)
        nengo.Probe(err)
        nengo.Probe(pre.neurons, "voltage")
        nengo.Probe(conn, "weights", sample_every=0.005)
    return [integrator, cconv, spiking, mixed]


def run(net, in_place, batch=1, steps=(40, 23), feed=False, device=None):
    with net:
        configure_settings(in_place=in_place, windowed=False)
    with Simulator(net, progress_bar=False, dtype="float64", minibatch_size=batch,
                   device=device) as sim:
        if not feed:
            for n in steps:  # two runs: state carries over between them
                sim.run_steps(n)
            return [sim.data[p] for p in net.all_probes]
        rng = np.random.RandomState(0)
        nodes = [n for n in net.all_nodes if n.size_in == 0 and n.label in ("a", "b")]
        x = {n: rng.uniform(-0.3, 0.3, (batch, sum(steps), n.size_out)) for n in nodes}
        out = sim.predict(x, n_steps=sum(steps))
        return [out[p] for p in net.all_probes]


@pytest.mark.parametrize("net", networks(), ids=lambda n: n.label)
def test_equals_functional_stepping(net):
    ours = run(net, in_place=True)
    functional = run(net, in_place=False)
    for a, b in zip(ours, functional):
        assert a.shape == b.shape
        assert np.allclose(a, b, atol=1e-12, rtol=1e-10)


@pytest.mark.parametrize("net", networks()[:3], ids=lambda n: n.label)
def test_equals_reference(net):
    ours = run(net, in_place=True)
    with nengo.Simulator(net, progress_bar=False) as ref:
        ref.run_steps(63)
    for a, p in zip(ours, net.all_probes):
        assert np.allclose(a, ref.data[p], atol=1e-12)


def test_batched_feeds_equal_functional():
    net = networks()[1]
    ours = run(net, in_place=True, batch=3, feed=True)
    functional = run(net, in_place=False, batch=3, feed=True)
    assert np.abs(ours[0]).max() > 0.01  # the fed inputs get through
    assert np.allclose(ours[0], functional[0], atol=1e-12)


def test_python_interpreter_equals_native(monkeypatch):
    if program._native is None:
        pytest.skip("the C++ extension is not built")
    net = networks()[3]
    native = run(net, in_place=True)
    monkeypatch.setattr(program, "_native", None)
    python = run(net, in_place=True)
    for a, b in zip(native, python):
        assert np.allclose(a, b, atol=1e-12, rtol=1e-10)


def lowered(net, batch, device=None):
    """(number of instructions, CALLs) of the program a run builds."""
    programs = []
    original = program.Program.run

    def spy(self, k0, k1):
        programs.append(self)
        return original(self, k0, k1)

    program.Program.run = spy
    try:
        run(net, in_place=True, batch=batch, steps=(5,), device=device)
    finally:
        program.Program.run = original
    code = programs[-1].code
    return len(code), sum(op == program.CALL for op, *_ in code)


@pytest.mark.parametrize("batch", [1, 4])
def test_networks_of_ensembles_lower_completely(batch):
    # a lowering that starts failing would fall back to CALLs silently: slower,
    # still right; this test notices
    for net in networks()[:3]:
        n, calls = lowered(net, batch)
        assert n > 5 and calls == 0, net.label


def test_native_program_rejects_bad_instructions():
    if program._native is None:
        pytest.skip("the C++ extension is not built")
    prog = program._native.Program()
    with pytest.raises(RuntimeError, match="takes 2 tensors"):
        prog.add(program.COPY, [torch.zeros(3)], [], [])
    with pytest.raises(RuntimeError, match="unknown opcode"):
        prog.add(99, [], [], [])


def test_instructions_agree_between_interpreters():
    """Each opcode, on strided and contiguous operands, in C++ and in Python."""
    if program._native is None:
        pytest.skip("the C++ extension is not built")
    g = torch.Generator().manual_seed(0)

    def r(*shape):
        return torch.randn(*shape, generator=g, dtype=torch.float64)

    def u(*shape):
        return torch.rand(*shape, generator=g, dtype=torch.float64)

    base = r(3, 10)
    cases = [
        (program.FILL, [r(2, 3)], [], [0.5]),
        (program.COPY, [r(2, 3), r(2, 3)], [], []),
        (program.ADD, [r(3, 4)[:, 1:], r(3, 3)], [], []),
        (program.GATHER, [r(3, 2), r(3, 5), torch.tensor([4, 1])], [1], []),
        (program.INDEX_COPY, [r(3, 5), torch.tensor([0, 3]), r(3, 2)], [1], []),
        (program.INDEX_ADD, [r(3, 5), torch.tensor([1, 1]), r(3, 2)], [1], []),
        (program.ADDMM, [r(1, 4), r(1, 6), r(4, 6).t()], [], []),
        (program.ADDMM, [base[:, 2:6], r(3, 6), r(4, 6).t()], [], []),
        (program.BADDBMM, [r(3, 2, 4).transpose(0, 1), r(2, 3, 5), r(2, 5, 4)], [], []),
        (program.ADDCMUL, [r(2, 3), r(2, 3), r(2, 3)], [], []),
        (program.ADDCMUL, [r(2, 3, 4), r(2, 3, 1), r(3, 4)], [], []),
        (program.RELU, [r(5), r(5)], [], [2.0]),
        (program.AXPBY, [r(2, 1, 3), r(2, 1, 3)], [], [0.9, 0.1]),
        (program.TIME, [torch.tensor(7), torch.tensor(0.0, dtype=torch.float64)], [], [0.001]),
        (program.FEED, [r(2, 3), r(2, 4, 3)], [], []),
        (program.RECORD, [r(2, 3, 4), r(2, 4)], [-1, 2, 0], []),
        (program.BMM, [r(2, 3, 4), r(2, 3, 5), r(2, 5, 4)], [], []),
        (program.MUL, [r(2, 3, 4), r(2, 3, 4), r(3, 4)], [], []),
        (program.SUM, [r(2, 3), r(2, 3, 4)], [], []),
        (program.ROWDOT, [r(2, 3), r(2, 3, 20), r(3, 20)], [], []),
        (program.ROWDOT, [r(2, 5)[:, 1:4], r(2, 3, 22)[:, :, 1:21], r(3, 20)], [], []),
        (program.ADDCMUL, [r(2, 3), r(1), r(2, 3)], [], []),
        (program.ADDCMUL, [r(2, 3, 1), r(2, 3, 1), r(3, 1)], [], []),
        (program.COPY, [r(4, 2, 3), r(2, 3)], [], []),
        (program.COPY, [r(4, 6), r(6)], [], []),
        # LIF, AdaptiveLIF, SpikingRectifiedLinear: (out, J, states, 2 scratch)
        (program.NEURON, [r(6), 3 * u(6), 0.9 * u(6), 0.001 * u(6), r(6), r(6)], [0],
         [0.001, 0.02, 0.002, 0.0, 1.0]),
        (program.NEURON, [r(6), 3 * u(6), 0.9 * u(6), 0.001 * u(6), u(6), r(6), r(6)],
         [1], [0.001, 0.02, 0.002, 0.0, 1.0, 1.0, 0.01]),
        (program.NEURON, [r(6), 300 * u(6), u(6), r(6), r(6)], [2], [0.001, 1.0]),
    ]
    for opcode, tensors, ints, floats in cases:
        results = []
        for interpreter in ("python", "native"):
            ts = [t.clone() if t.is_contiguous() else _strided_copy(t) for t in tensors]
            with torch.no_grad():
                if interpreter == "python":
                    program.run_python([(opcode, tuple(ts), tuple(ints), tuple(floats))],
                                       [], 1, 3)
                else:
                    prog = program._native.Program()
                    prog.add(opcode, ts, list(ints), list(floats))
                    prog.run(1, 3)
            results.append(ts)
        if opcode == program.NEURON:  # the kernels' scratch buffers: not results
            results = [ts[:-2] for ts in results]
        for a, b in zip(*results):
            assert torch.allclose(a, b, atol=1e-12), opcode


def _strided_copy(t):
    """A copy of a strided view with the same strides (its base cloned)."""
    base = t._base.clone() if t._base is not None else t.clone()
    return base.as_strided(t.shape, t.stride(), t.storage_offset())


def test_parameter_changes_between_runs_are_seen():
    """The last run's merged values are reused only while nothing changed."""
    net = networks()[0]
    with net:
        configure_settings(windowed=False)
    with Simulator(net, progress_bar=False, dtype="float64") as sim, Simulator(
        net, progress_bar=False, dtype="float64"
    ) as fresh:
        sim.run_steps(20)
        fresh.run_steps(20)
        for s in (sim, fresh):
            with torch.no_grad():  # in place, as an optimizer step would change it
                for param in s.module.parameters():
                    param.mul_(0.5)
        sim.run_steps(20)
        # `fresh` assembles anew: its merged-value cache was dropped
        fresh.module.engine.merged._last = None
        fresh.run_steps(20)
        probe = net.all_probes[0]
        assert np.allclose(sim.data[probe], fresh.data[probe], atol=1e-12)
        # and the change matters, so the comparison can fail
        with Simulator(net, progress_bar=False, dtype="float64") as unchanged:
            unchanged.run_steps(40)
            assert not np.allclose(sim.data[probe][20:], unchanged.data[probe][20:])


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("net", networks(), ids=lambda n: n.label)
def test_cuda_equals_functional_and_cpu(net, monkeypatch):
    monkeypatch.setattr(in_place_strategy, "DEVICES", ("cpu", "cuda"))
    n, _ = lowered(net, 2, device="cuda")  # the program path runs on CUDA
    assert n > 5
    for batch in (1, 3):
        ours = run(net, in_place=True, batch=batch, device="cuda")
        functional = run(net, in_place=False, batch=batch, device="cuda")
        cpu = run(net, in_place=True, batch=batch)
        for a, b, c in zip(ours, functional, cpu):
            assert np.allclose(a, b, atol=1e-12, rtol=1e-10)
            assert np.allclose(a, c, atol=1e-11, rtol=1e-9)
