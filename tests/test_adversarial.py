"""Regressions from adversarial use (issue 15), each against ``nengo.Simulator``.

Every case here failed once: learning rules in batches, Triangle synapses on
the stepping paths, process seeds across batch rows, stochastic neurons in
merged ensembles, operators without a torch implementation, Simulator
subclasses, and TensorNodes that work in place.
"""

import nengo
import numpy as np
import pytest

import snntorch_nengo
from snntorch_nengo import Simulator

# the four engine paths a stepping or windowed model can take
PATHS = [
    {},
    {"in_place": False},
    {"windowed": False},
    {"windowed": False, "in_place": False},
]


def path_id(settings):
    return ",".join(f"{k}={v}" for k, v in settings.items()) or "default"


def learning_channel(seed, rule, settings=None):
    """A channel fed 0.7 whose learned connection shares its shape with a decoder.

    nengo's optimizer merges the learned weights with the decoder of ``a ->
    err`` for some seeds (the operator order it sees varies with them), which
    gives the merged matrix a batch dimension in our engine.
    """
    with nengo.Network(seed=seed) as net:
        if settings:
            snntorch_nengo.configure_settings(**settings)
        inp = nengo.Node(0.7)
        a = nengo.Ensemble(50, 1)
        b = nengo.Ensemble(50, 1)
        nengo.Connection(inp, a)
        conn = nengo.Connection(a, b, learning_rule_type=rule)
        err = nengo.Ensemble(50, 1)
        nengo.Connection(b, err)
        nengo.Connection(a, err, transform=-1)
        nengo.Connection(err, conn.learning_rule)
        net.p = nengo.Probe(b, synapse=0.01)
    return net


@pytest.mark.parametrize("rule", ["PES", "RLS"])
def test_learning_rules_batched_equal_reference_over_builds(rule):
    """Every row learns at nengo's rate, however the optimizer merged the weights."""
    for seed in range(10):
        make_rule = {"PES": lambda: nengo.PES(learning_rate=1e-3), "RLS": nengo.RLS}
        net = learning_channel(seed, make_rule[rule]())
        with nengo.Simulator(net, progress_bar=False) as ref:
            ref.run_steps(300)
        expected = ref.data[net.p]
        assert abs(expected[-1, 0] - 0.7) < 0.05  # the channel did learn
        for batch in (1, 2, 3):
            with Simulator(net, minibatch_size=batch, progress_bar=False) as sim:
                sim.run_steps(300)
            got = sim.data[net.p]
            assert got.shape == (batch, 300, 1)
            for row in range(batch):
                np.testing.assert_allclose(
                    got[row], expected, rtol=0, atol=1e-10,
                    err_msg=f"seed {seed}, batch {batch}, row {row}",
                )


def triangle_net(settings):
    with nengo.Network(seed=1) as net:
        if settings:
            snntorch_nengo.configure_settings(**settings)
        inp = nengo.Node(lambda t: np.sin(10 * t))
        a = nengo.Ensemble(30, 1)
        nengo.Connection(inp, a)
        # a recurrent connection makes the model step (no windows)
        nengo.Connection(a, a, synapse=nengo.synapses.Triangle(0.01))
        out = nengo.Node(size_in=1)
        nengo.Connection(a, out, synapse=nengo.synapses.Triangle(0.005))
        net.p = nengo.Probe(a, synapse=nengo.synapses.Triangle(0.02))
        net.q = nengo.Probe(out)
    return net


@pytest.mark.parametrize("settings", PATHS, ids=path_id)
@pytest.mark.parametrize("recurrent", [True, False])
def test_triangle_on_every_path(settings, recurrent):
    def make():
        net = triangle_net(settings)
        if not recurrent:  # windowed: drop the recurrence
            net.connections[:] = [c for c in net.connections if c.pre is not c.post]
        return net

    ref_net = make()
    with nengo.Simulator(ref_net, progress_bar=False) as ref:
        ref.run_steps(120)
    net = make()
    with Simulator(net, minibatch_size=2, progress_bar=False) as sim:
        sim.run_steps(120)
    for ref_probe, probe in ((ref_net.p, net.p), (ref_net.q, net.q)):
        for row in range(2):
            np.testing.assert_allclose(
                sim.data[probe][row], ref.data[ref_probe], rtol=0, atol=1e-12
            )


def white_signal_net(seed):
    with nengo.Network(seed=2) as net:
        process = nengo.processes.WhiteSignal(period=1.0, high=7.56, rms=0.69, seed=seed)
        node = nengo.Node(process, size_out=2)
        net.p = nengo.Probe(node)
    return net


def test_explicit_process_seed_gives_every_row_the_reference():
    net = white_signal_net(80)
    with nengo.Simulator(net, progress_bar=False) as ref:
        ref.run_steps(50)
    with Simulator(net, minibatch_size=3, progress_bar=False) as sim:
        sim.run_steps(50)
    for row in range(3):
        np.testing.assert_array_equal(sim.data[net.p][row], ref.data[net.p])


def test_unseeded_process_rows_follow_the_documented_rule():
    """Row 0 is the reference; rows 1.. are independent, and fixed by the seed."""
    net = white_signal_net(None)
    with nengo.Simulator(net, progress_bar=False) as ref:
        ref.run_steps(50)
    runs = []
    for _ in range(2):
        with Simulator(net, minibatch_size=3, progress_bar=False, seed=5) as sim:
            sim.run_steps(50)
            first = sim.data[net.p].copy()
            sim.reset()
            sim.run_steps(50)
            np.testing.assert_array_equal(sim.data[net.p], first)  # reset replays
        runs.append(first)
    with nengo.Simulator(net, progress_bar=False, seed=5) as ref5:
        ref5.run_steps(50)
    data = runs[0]
    np.testing.assert_array_equal(data[0], ref5.data[net.p])
    np.testing.assert_array_equal(runs[1], data)
    assert np.abs(data[1] - data[0]).max() > 0.1
    assert np.abs(data[2] - data[1]).max() > 0.1
    with Simulator(net, minibatch_size=3, progress_bar=False) as sim:
        sim.run_steps(50)
    # the network seed is the simulator's seed, as in nengo
    np.testing.assert_array_equal(sim.data[net.p][0], ref.data[net.p])


@pytest.mark.parametrize("neuron_type", [
    nengo.PoissonSpiking(nengo.LIFRate()), nengo.StochasticSpiking(nengo.LIFRate()),
], ids=lambda n: type(n).__name__)
@pytest.mark.parametrize("settings", PATHS[:2], ids=path_id)
def test_stochastic_neurons_row_zero_is_the_reference(neuron_type, settings):
    with nengo.Network(seed=2) as net:
        if settings:
            snntorch_nengo.configure_settings(**settings)
        node = nengo.Node(0.5)
        ens = nengo.Ensemble(20, 1, neuron_type=neuron_type)
        nengo.Connection(node, ens)
        net.p = nengo.Probe(ens.neurons)
    with nengo.Simulator(net, progress_bar=False) as ref:
        ref.run_steps(60)
    with Simulator(net, minibatch_size=3, progress_bar=False) as sim:
        sim.run_steps(60)
    data = sim.data[net.p]
    np.testing.assert_array_equal(data[0], ref.data[net.p])
    assert not np.array_equal(data[1], data[0])
    assert not np.array_equal(data[2], data[1])


@pytest.mark.parametrize("neuron_type", [
    nengo.PoissonSpiking(nengo.LIFRate()), nengo.StochasticSpiking(nengo.LIFRate()),
], ids=lambda n: type(n).__name__)
@pytest.mark.parametrize("settings", PATHS, ids=path_id)
def test_ensemble_array_of_stochastic_neurons_equals_the_optimized_reference(
    neuron_type, settings
):
    # nengo's optimizer merges the array's neurons, which then draw from one
    # stream: the default nengo.Simulator, not only optimize=False, is the reference
    with nengo.Network(seed=3) as net:
        if settings:
            snntorch_nengo.configure_settings(**settings)
        stim = nengo.Node([0.5, -0.3, 0.2, 0.8])
        ea = nengo.networks.EnsembleArray(20, 4, neuron_type=neuron_type)
        nengo.Connection(stim, ea.input)
        net.p = nengo.Probe(ea.output, synapse=0.01)
    with pytest.warns(UserWarning, match="Extra state has been modified"):
        with nengo.Simulator(net, progress_bar=False) as ref:
            ref.run_steps(50)
    with nengo.Simulator(net, progress_bar=False, optimize=False) as unoptimized:
        unoptimized.run_steps(50)
    # (the two references differ, so equality below says which one we follow)
    assert np.abs(unoptimized.data[net.p] - ref.data[net.p]).max() > 0.05
    with pytest.warns(UserWarning, match="Extra state has been modified"):
        with Simulator(net, progress_bar=False, dtype="float64") as sim:
            sim.run_steps(50)
    np.testing.assert_array_equal(sim.data[net.p], ref.data[net.p])
    with Simulator(net, progress_bar=False, dtype="float64", optimize=False) as sim:
        sim.run_steps(50)
    # (unmerged, synapse sums run in another order: ulps)
    np.testing.assert_allclose(sim.data[net.p], unoptimized.data[net.p], rtol=0, atol=1e-12)


class _CountingSimulator(Simulator):
    """The pattern of nengo_extras' RealTimeSimulator: step() does more."""

    def __init__(self, *args, **kwargs):
        self.steps_seen = []
        super().__init__(*args, **kwargs)

    def step(self, **kwargs):
        self.steps_seen.append(self.n_steps)
        super().step(**kwargs)


def test_overridden_step_sees_every_step_of_run_and_run_steps():
    with nengo.Network(seed=3) as net:
        stim = nengo.Node(np.sin)
        ens = nengo.Ensemble(30, 1)
        nengo.Connection(stim, ens)
        probe = nengo.Probe(ens, synapse=0.01)
    with _CountingSimulator(net, progress_bar=False) as sim:
        sim.run_steps(25)
        sim.run(0.01)
        sim.step()
    assert sim.steps_seen == list(range(36))
    with nengo.Simulator(net, progress_bar=False) as ref:
        ref.run_steps(36)
    np.testing.assert_allclose(sim.data[probe], ref.data[probe], atol=1e-6)


def test_overridden_step_gets_each_steps_input_slice():
    with nengo.Network(seed=4) as net:
        inp = nengo.Node(np.zeros(2))
        probe = nengo.Probe(inp)
    x = np.arange(2 * 7 * 2, dtype=float).reshape(2, 7, 2)
    with _CountingSimulator(net, minibatch_size=2, progress_bar=False) as sim:
        sim.run_steps(7, data={inp: x})
    assert sim.steps_seen == list(range(7))
    np.testing.assert_allclose(sim.data[probe], x)
    with _CountingSimulator(net, minibatch_size=2, progress_bar=False) as sim:
        with pytest.raises(nengo.exceptions.ValidationError, match="steps"):
            sim.run_steps(7, data={inp: x[:, :5]})
        assert sim.steps_seen == []


# A learning rule from outside the package, built the way nengo_extras' AML is:
# its own LearningRuleType, build function and Operator subclass with a numpy
# make_step, and nothing registered with snntorch_nengo.
class _OuterRule(nengo.learning_rules.LearningRuleType):
    modifies = "decoders"
    probeable = ("delta",)
    learning_rate = nengo.params.NumberParam("learning_rate", low=0, readonly=True)

    def __init__(self, learning_rate=1e-3):
        super().__init__(learning_rate, size_in="post_state")


class _SimOuter(nengo.builder.Operator):
    def __init__(self, pre, error, delta, learning_rate, tag=None):
        super().__init__(tag=tag)
        self.learning_rate = learning_rate
        self.sets, self.incs, self.reads, self.updates = [], [], [pre, error], [delta]

    def make_step(self, signals, dt, rng):
        pre, error = signals[self.reads[0]], signals[self.reads[1]]
        delta = signals[self.updates[0]]

        def step_outer():
            delta[...] = -self.learning_rate * dt * np.outer(error, pre)

        return step_outer


@nengo.builder.Builder.register(_OuterRule)
def _build_outer(model, rule_type, rule):
    error = nengo.builder.Signal(shape=rule.size_in, name="OuterRule:error")
    model.add_op(nengo.builder.operator.Reset(error))
    model.sig[rule]["in"] = error
    pre = nengo.builder.learning_rules.build_or_passthrough(
        model, nengo.Lowpass(0.005), model.sig[rule.connection.pre_obj]["out"]
    )
    model.add_op(_SimOuter(pre, error, model.sig[rule]["delta"], rule_type.learning_rate))


def _outer_rule_net():
    with nengo.Network(seed=2) as net:
        stim = nengo.Node(lambda t: np.sin(6 * t))
        a, b = nengo.Ensemble(50, 1), nengo.Ensemble(50, 1)
        nengo.Connection(stim, a)
        conn = nengo.Connection(a, b, function=lambda x: 0, learning_rule_type=_OuterRule())
        error = nengo.Node(size_in=1)
        nengo.Connection(b, error)
        nengo.Connection(stim, error, transform=-1)
        nengo.Connection(error, conn.learning_rule)
        probe = nengo.Probe(b, synapse=0.01)
    return net, probe


@pytest.mark.parametrize("minibatch_size", [None, 3])
def test_third_party_operator_runs_its_own_numpy_step(minibatch_size):
    net, probe = _outer_rule_net()
    with nengo.Simulator(net, progress_bar=False) as ref:
        ref.run(0.3)
    with pytest.warns(UserWarning, match="no torch implementation of operator type '_SimOuter'"):
        sim = Simulator(net, progress_bar=False, minibatch_size=minibatch_size)
    with sim:
        sim.run(0.3)
        assert "_SimOuter" in str(sim.explain())
    ours = sim.data[probe]
    # the rule learns: the output moves well away from the untrained zero
    assert np.abs(ref.data[probe]).max() > 0.5
    for row in [ours] if minibatch_size is None else list(ours):
        # every row learns on its own copy of the decoders, as one reference run
        np.testing.assert_allclose(row, ref.data[probe], atol=1e-10)
