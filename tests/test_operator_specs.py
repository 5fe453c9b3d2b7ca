"""One declaration per operator type (`engine.ops.OperatorSpec`): what it says,
and that the engine does what it says."""

import warnings

import nengo
import numpy as np
import pytest
import torch
from nengo.builder.learning_rules import SimBCM, SimOja, SimPES, SimRLS, SimVoja
from nengo.builder.neurons import SimNeurons
from nengo.builder.operator import (
    BsrDotInc,
    Copy,
    DotInc,
    ElementwiseInc,
    Operator,
    Reset,
    SimPyFunc,
    SparseDotInc,
    TimeUpdate,
)
from nengo.builder.probe import SimProbe
from nengo.builder.processes import SimProcess
from nengo.builder.transforms import ConvInc, ConvTransposeInc
from nengo.exceptions import BuildError

from snntorch_nengo import NengoModule, TensorNode
from snntorch_nengo.engine import program
from snntorch_nengo.engine.operators import NodeInput, SimTensorNode
from snntorch_nengo.engine.ops import (
    FOLDED,
    SCANNED,
    TIME,
    OpRegistry,
    describe_operator,
    window_kind,
)

# operator type -> (window kind, lowering name): what the engine did before the
# declarations existed, and must go on doing
EXPECTED = {
    TimeUpdate: (TIME, "time_update"),
    Reset: (FOLDED, "reset"),
    Copy: (FOLDED, "copy"),
    DotInc: (FOLDED, "dot_inc"),
    ElementwiseInc: (FOLDED, "elementwise_inc"),
    SparseDotInc: (FOLDED, None),
    BsrDotInc: (FOLDED, "bsr_dot_inc"),
    ConvInc: (FOLDED, None),
    ConvTransposeInc: (FOLDED, None),
    SimNeurons: (SCANNED, "sim_neurons"),
    SimProcess: (SCANNED, "sim_process"),
    SimPyFunc: (SCANNED, None),
    SimTensorNode: (SCANNED, None),
    SimPES: (None, None),
    SimBCM: (None, None),
    SimOja: (None, None),
    SimVoja: (None, None),
    SimRLS: (None, None),
    SimProbe: (None, None),
}


def standard_objects():
    """Nengo's standard objects: every kind of node, neuron type, transform,
    synapse, learning rule and probe, and a TensorNode."""
    with nengo.Network(seed=0) as net:
        const = nengo.Node([0.5, -0.2])
        fn = nengo.Node(lambda t: [np.sin(t), np.cos(t)])
        noise = nengo.Node(nengo.processes.WhiteSignal(1.0, high=5), size_out=2)
        sink = nengo.Node(lambda t, x: None, size_in=2)
        ens = {}
        for neuron_type in [
            nengo.LIF(), nengo.LIFRate(), nengo.RectifiedLinear(),
            nengo.SpikingRectifiedLinear(), nengo.AdaptiveLIF(), nengo.Izhikevich(),
            nengo.Sigmoid(), nengo.Tanh(), nengo.RegularSpiking(nengo.LIFRate()),
            nengo.PoissonSpiking(nengo.LIFRate()),
        ]:
            ens[type(neuron_type).__name__] = e = nengo.Ensemble(16, 2, neuron_type=neuron_type)
            nengo.Connection(const, e)
        direct = nengo.Ensemble(1, 2, neuron_type=nengo.Direct())
        nengo.Connection(fn, direct, function=lambda x: x**2)
        nengo.Connection(direct, sink)
        a, b = ens["LIF"], ens["LIFRate"]
        nengo.Connection(fn, a, synapse=nengo.Alpha(0.01))
        nengo.Connection(noise, b, synapse=nengo.synapses.Triangle(0.01))
        nengo.Connection(a.neurons, b.neurons, transform=np.full((16, 16), 0.01))
        nengo.Connection(a.neurons, b.neurons, transform=nengo.transforms.Sparse(
            (16, 16), indices=[[0, 1], [2, 3]], init=[0.1, 0.2]))
        image = nengo.Node(np.ones(16))
        conv = nengo.Convolution(2, (4, 4, 1), kernel_size=(3, 3))
        features = nengo.Ensemble(conv.output_shape.size, 1,
                                  neuron_type=nengo.RectifiedLinear())
        nengo.Connection(image, features.neurons, transform=conv)
        nengo.Connection(features.neurons, nengo.Node(size_in=16),
                         transform=nengo.ConvolutionTranspose(
                             1, (2, 2, 2), kernel_size=(3, 3), output_shape=(4, 4, 1)))
        torch_node = TensorNode(lambda x: x * 2, shape_in=(2,), pass_time=False)
        nengo.Connection(a, torch_node)
        pre, post = ens["RectifiedLinear"], ens["Sigmoid"]
        conn = nengo.Connection(pre, post, learning_rule_type=nengo.PES())
        nengo.Connection(post, conn.learning_rule)
        nengo.Connection(pre.neurons, post.neurons, transform=np.zeros((16, 16)),
                         learning_rule_type=[nengo.BCM(), nengo.Oja()])
        nengo.Connection(pre, ens["Tanh"], learning_rule_type=nengo.Voja())
        conn = nengo.Connection(pre, ens["AdaptiveLIF"], learning_rule_type=nengo.RLS())
        nengo.Connection(post, conn.learning_rule)
        for e in ens.values():
            nengo.Probe(e, synapse=0.01)
            nengo.Probe(e.neurons)
    return net


@pytest.fixture(scope="module")
def module():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # neuron types without training forms
        # learning rules loop across time steps: merged (BsrDotInc) and stepped
        return NengoModule(standard_objects(), dtype=torch.float64)


def test_every_operator_the_builder_emits_is_declared(module):
    types = {type(op) for op in module.engine.operators}
    assert types == set(EXPECTED) | {NodeInput}  # the network has every kind
    for op_type in types:
        spec = OpRegistry.spec_for(op_type)
        assert spec is OpRegistry.specs[op_type] and not spec.foreign


def test_window_kinds_and_lowerings_as_before():
    assert set(OpRegistry.specs) == set(EXPECTED) | {NodeInput}
    for op_type, (window, lower) in EXPECTED.items():
        spec = OpRegistry.spec_for(op_type)
        assert (spec.window, spec.lower) == (window, lower), op_type
    spec = OpRegistry.spec_for(NodeInput)
    assert spec.lower == "node_input"
    node = nengo.Node([1.0], add_to_container=False)
    sig = nengo.builder.Signal(np.zeros(1))
    assert window_kind(NodeInput(node, sig)) == FOLDED  # a constant
    original = SimPyFunc(sig, lambda t: t, None, None)
    assert window_kind(NodeInput(node, sig, original)) == SCANNED


def test_every_lowering_is_declared_once():
    named = [spec.lower for spec in OpRegistry.specs.values() if spec.lower is not None]
    assert sorted(named) == sorted(program.LOWERINGS)


def test_subclasses_share_their_parents_spec_unless_declared():
    class MyDotInc(DotInc):
        pass

    assert OpRegistry.spec_for(MyDotInc) is OpRegistry.specs[DotInc]
    # a DotInc subclass, declared itself: not lowered like a DotInc
    assert OpRegistry.spec_for(SparseDotInc) is not OpRegistry.specs[DotInc]


class _Foreign(Operator):
    """An extension's operator: its own numpy step."""

    def __init__(self, x):
        super().__init__()
        self.sets, self.incs, self.reads, self.updates = [x], [], [], []

    def make_step(self, signals, dt, rng):
        x = signals[self.sets[0]]

        def step():
            x[...] = 1

        return step


class _Bare(Operator):
    """An operator with no step anywhere."""


def test_foreign_operators_step_their_own_numpy_and_nothing_else():
    spec = OpRegistry.spec_for(_Foreign)
    assert spec.foreign and spec.op_type is _Foreign
    op = _Foreign(nengo.builder.Signal(np.zeros(1)))
    assert window_kind(op) is None and spec.lower is None
    assert spec.no_lower_reason(op) == "no instruction form for _Foreign"
    with pytest.warns(UserWarning, match="no torch implementation of operator type"):
        assert OpRegistry.maker_for(op) is spec.make_step
    text = describe_operator(op)
    assert "own numpy make_step" in text and "no windowed form" in text
    assert "CALL" in text


def test_operators_without_any_step_fail_at_build():
    op = _Bare()
    assert OpRegistry.spec_for(op) is None and window_kind(op) is None
    with pytest.raises(BuildError, match="no torch implementation"):
        OpRegistry.maker_for(op)
    assert "BuildError" in describe_operator(_Bare)


def test_describe_operator_says_what_the_spec_says():
    text = describe_operator(DotInc)
    assert text.startswith("DotInc: ") and "make_dot_inc" in text
    assert "folded" in text and "'dot_inc'" in text
    assert "scanned" in describe_operator(SimNeurons)
    text = describe_operator(SparseDotInc)
    assert "folded" in text and "CALL of its step (sparse matrix (SparseDotInc))" in text
    assert "node_input_window" in describe_operator(NodeInput)
    node = nengo.Node([1.0], add_to_container=False)
    assert "folded" in describe_operator(NodeInput(node, nengo.builder.Signal(np.zeros(1))))


def test_in_place_fallbacks_follow_the_specs(module):
    """The program CALLs exactly the operators whose type has no lowering, for
    the reason the spec gives (the others are lowered or declined by their
    lowering, which says why)."""
    explanation = module.explain(5, grad=False)
    assert explanation.strategy == "in_place"
    reasons = {}
    for fallback in explanation.fallbacks:
        assert fallback.form == "CALL"
        reasons.setdefault(type(fallback.op), set()).add(fallback.reason)
    for op in module.engine.step_order:
        spec = OpRegistry.spec_for(op)
        if spec.lower is None and op.__class__ is not SimProbe:
            assert reasons[type(op)] == {spec.no_lower_reason(op)}
    assert reasons[SparseDotInc] == {"sparse matrix (SparseDotInc)"}
    assert reasons[SimPyFunc] == {"no instruction form for SimPyFunc"}
    assert reasons[SimPES] == {"no instruction form for SimPES"}
    # lowered types CALL only what their lowering declines, saying why
    assert not any(r.startswith("no instruction form") for r in reasons.get(DotInc, ()))
    assert TimeUpdate not in reasons and ElementwiseInc not in reasons


def test_steps_carry_no_attributes():
    """What a step can do is in its `Step`'s fields, never on its functions."""
    with nengo.Network(seed=0) as net:  # windowed: unmerged, so steps have series
        stim = nengo.Node([0.5])
        a = nengo.Ensemble(10, 1, neuron_type=nengo.LIF())
        b = nengo.Ensemble(10, 1, neuron_type=nengo.RectifiedLinear())
        nengo.Connection(stim, a)
        nengo.Connection(a, b, synapse=nengo.Alpha(0.01))
        nengo.Probe(b, synapse=0.01)
    module = NengoModule(net)
    steps = module.engine.make_steps(1, 0, torch.device("cpu"))
    assert any(step.series_held for step in steps)  # the synapses' scans
    for step in steps:
        for fn in (step.fn, step.series):
            assert not getattr(fn, "__dict__", {}), (step.op, fn.__dict__)
