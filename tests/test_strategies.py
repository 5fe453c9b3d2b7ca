"""Which run strategy `strategies.choose` picks, and what `explain` says."""

import logging
import warnings

import nengo
import numpy as np
import pytest
import torch

from snntorch_nengo import NengoModule, Simulator, configure_settings
from snntorch_nengo.engine import program, window
from snntorch_nengo.engine.request import RunRequest
from snntorch_nengo.engine.strategies import choose, in_place, windowed
from snntorch_nengo.neurons.surrogates import Surrogate


def feed_forward(python_node=False, **settings):
    with nengo.Network(seed=1, label="ff") as net:
        if settings:
            configure_settings(**settings)
        net.stim = nengo.Node([0.3])
        a = nengo.Ensemble(20, 1, neuron_type=nengo.LIF())
        if python_node:
            node = nengo.Node(lambda t, x: np.sin(x), size_in=1)
            nengo.Connection(net.stim, node, synapse=None)
            nengo.Connection(node, a)
        else:
            nengo.Connection(net.stim, a)
        net.p = nengo.Probe(a, synapse=0.01)
    return net


def recurrent(**settings):
    net = feed_forward(**settings)
    with net:
        nengo.Connection(net.ensembles[0], net.ensembles[0], synapse=0.05)
    return net


def request(module, n_steps, grad):
    return RunRequest(module.signal_values().values, module._steps, n_steps,
                      module.batch_size, grad=grad)


def chosen(net, n_steps, grad, **kwargs):
    module = NengoModule(net, **kwargs)
    return choose(module.engine, request(module, n_steps, grad))


def test_windowed_for_feed_forward_runs_of_several_steps():
    for grad in (False, True):  # windows run under autograd too
        assert chosen(feed_forward(), 10, grad).name == "windowed"
    choice = chosen(feed_forward(windowed=False), 10, False)
    assert choice.name == "in_place"
    assert choice.passed_over["windowed"] == "the windowed setting is False"


def test_windowed_off_for_loops_and_many_operators(monkeypatch):
    choice = chosen(recurrent(), 10, False)
    assert choice.name == "in_place"
    assert "a loop across time steps" in choice.passed_over["windowed"]
    monkeypatch.setattr(windowed, "MAX_OPERATORS", 3)
    choice = chosen(feed_forward(), 10, False)
    assert choice.name == "in_place"
    assert "more than 3" in choice.passed_over["windowed"]


def test_functional_when_grad_enabled_or_one_step():
    choice = chosen(recurrent(), 10, True)
    assert choice.name == "functional" and choice.reason == "autograd is recording"
    assert "autograd" in choice.passed_over["in_place"]
    for net in (feed_forward(), recurrent()):
        choice = chosen(net, 1, False)
        assert choice.name == "functional"
        assert choice.passed_over["windowed"] == "a run of 1 step has no window"
    assert chosen(recurrent(), 0, False).name == "functional"


def test_in_place_off_by_setting_and_device(monkeypatch):
    choice = chosen(recurrent(in_place=False), 10, False)
    assert choice.name == "functional"
    assert choice.passed_over["in_place"] == "the in_place setting is False"
    monkeypatch.setattr(in_place, "DEVICES", ("cuda",))
    choice = chosen(recurrent(), 10, False)
    assert choice.name == "functional"
    assert "tensors on ['cpu']" in choice.passed_over["in_place"]


def test_compiled_when_torch_compile_without_grad():
    for n in (1, 10):
        choice = chosen(recurrent(), n, False, torch_compile=True)
        assert choice.name == "compiled", n
    assert "torch_compile=True" in chosen(
        recurrent(), 10, False, torch_compile=True).passed_over["in_place"]
    # windows stay ahead of it; autograd and zero steps step functionally
    assert chosen(feed_forward(), 10, False, torch_compile=True).name == "windowed"
    assert chosen(recurrent(), 10, True, torch_compile=True).name == "functional"
    assert chosen(recurrent(), 0, False, torch_compile=True).name == "functional"


def test_explain_reports_the_run_and_its_fallbacks(caplog):
    # a Python node has no series form: stepped inside the window
    with Simulator(feed_forward(python_node=True), progress_bar=False) as sim:
        assert sim.explain() is None and "no run yet" in repr(sim)
        with caplog.at_level(logging.DEBUG, logger="snntorch_nengo"):
            sim.run_steps(10)
        assert any("run windowed" in r.getMessage() for r in caplog.records)
        last = sim.explain()
        assert last.strategy == "windowed" and last.ran and "windowed" in repr(sim)
        assert [f.form for f in last.fallbacks] == [window.STEPPED]
        assert "SimPyFunc" in str(last.fallbacks[0].op)
        text = str(last)
        assert text.startswith("10 steps ran windowed") and "slower form" in text
        # what a single step would take, nothing run
        one = sim.explain(1)
        assert one.strategy == "functional" and not one.ran and sim.n_steps == 10
        assert "not windowed: a run of 1 step has no window" in str(one)


def test_explain_lists_in_place_calls(monkeypatch):
    programs = []
    original = program.Program.run

    def spy(self, k0, k1):
        programs.append(self)
        return original(self, k0, k1)

    monkeypatch.setattr(program.Program, "run", spy)
    with Simulator(recurrent(python_node=True), progress_bar=False) as sim:
        predicted = sim.explain(5)
        sim.run_steps(5)
        last = sim.explain()
    assert last.strategy == predicted.strategy == "in_place"
    calls = sum(op == program.CALL for op, *_ in programs[-1].code)
    assert calls == len(last.fallbacks) == len(predicted.fallbacks) > 0
    assert all(f.form == "CALL" for f in last.fallbacks)
    assert any("SimPyFunc" in f.reason for f in last.fallbacks)


def test_training_runs_neurons_fused_in_the_window():
    """With a surrogate the kernels know, training calls the fused kernel; with
    a user's own surrogate, the group steps in the window and says why."""
    net = feed_forward()
    with net:
        configure_settings(surrogate="fast_sigmoid")
    module = NengoModule(net, dtype=torch.float64).train()
    module(n_steps=10)
    last = module.explain()
    assert last.strategy == "windowed"
    assert last.fallbacks == []

    class Bump(Surrogate):
        def derivative(self, x):
            return torch.exp(-x * x)

    net = feed_forward()
    with net:
        configure_settings(surrogate=Bump())
    module = NengoModule(net, dtype=torch.float64).train()
    module(n_steps=10)
    last = module.explain()
    assert last.strategy == "windowed"
    assert [f.reason for f in last.fallbacks] == [
        "training: the kernels have no form of the surrogate Bump()"]


def test_deprecated_names_still_work():
    with pytest.warns(DeprecationWarning, match="windowed"):
        net = feed_forward(time_batched=False)
    assert chosen(net, 10, False).passed_over["windowed"] == (
        "the windowed setting is False")
    with pytest.warns(DeprecationWarning, match="torch_compile"):
        sim = Simulator(recurrent(), progress_bar=False, compile=True)
    with sim:
        assert sim.module.engine.torch_compile
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        Simulator(recurrent(), progress_bar=False, torch_compile=True).close()


# -- the in-place program kept from run to run


def fed_loop(**settings):
    """A recurrent LIF network (in-place runs) with a fed input and a sampled probe."""
    with nengo.Network(seed=3) as net:
        if settings:
            configure_settings(**settings)
        net.stim = nengo.Node(np.zeros(2), label="stim")
        ens = nengo.Ensemble(40, 2, neuron_type=nengo.LIF())
        nengo.Connection(net.stim, ens)
        nengo.Connection(ens, ens, synapse=0.05, transform=0.9)
        net.p = nengo.Probe(ens, synapse=0.01)
        net.q = nengo.Probe(ens.neurons, sample_every=0.003)
    return net


def test_short_runs_continue_as_one_long_run():
    net = fed_loop()
    with Simulator(net, progress_bar=False) as whole:
        whole.run_steps(90)
    with Simulator(net, progress_bar=False) as parts:
        for n in (30, 1, 29, 30):  # the single step runs functionally
            parts.run_steps(n)
            assert parts.module.engine.last_run.strategy == ("in_place" if n > 1 else "functional")
        kept = parts.module.engine.strategy_cache["in_place"][1]
        parts.run_steps(7)
        assert parts.module.engine.strategy_cache["in_place"][1] is kept  # one program, reused
    for probe in (net.p, net.q):
        n = len(whole.data[probe])
        np.testing.assert_allclose(parts.data[probe][:n], whole.data[probe], atol=1e-6)
    assert parts.data[net.q].shape == (32, 40)  # 97 steps, a sample every third


def test_kept_program_takes_each_runs_inputs():
    net = fed_loop()
    rng = np.random.RandomState(0)
    x1, x2 = rng.uniform(-1, 1, (2, 3, 40, 2))
    with Simulator(net, progress_bar=False, minibatch_size=3) as sim:
        out1 = sim.predict_on_batch({net.stim: x1})[net.p]
        out2 = sim.predict_on_batch({net.stim: x2})[net.p]
    with Simulator(net, progress_bar=False, minibatch_size=3) as fresh:
        expected2 = fresh.predict_on_batch({net.stim: x2})[net.p]
    assert not np.allclose(out1, out2)
    np.testing.assert_allclose(out2, expected2, atol=1e-6)


def test_kept_program_never_writes_state_a_user_holds():
    with Simulator(fed_loop(), progress_bar=False) as sim:
        sim.run_steps(20)
        held = sim.module.state()
        copies = {base: value.clone() for base, value in held.items()}
        sim.run_steps(20)
        sim.run_steps(20)
        for base, value in held.items():
            assert torch.equal(value, copies[base]), base


@pytest.mark.parametrize("change", ["in place", "through .data"])
def test_kept_program_sees_changed_parameters(change):
    def run(net, factor=0.5):
        sim = Simulator(net, progress_bar=False)
        sim.run_steps(20)
        weights = [p for p in sim.module.parameters() if p.dim() == 2]
        with torch.no_grad():
            for w in weights:
                if change == "in place":
                    w.mul_(factor)
                else:
                    w.data = w.data * factor
        sim.run_steps(20)
        return sim.data[net.p], sim.module.engine.last_run.strategy

    kept, strategy = run(fed_loop())
    assert strategy == "in_place"
    expected, strategy = run(fed_loop(in_place=False))  # nothing kept between runs
    assert strategy == "functional"
    np.testing.assert_allclose(kept, expected, atol=1e-5)
    unchanged, _ = run(fed_loop(), factor=1.0)
    assert np.abs(unchanged[20:] - kept[20:]).max() > 0.02  # the change shows
