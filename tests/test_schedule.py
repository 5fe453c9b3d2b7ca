"""engine/schedule.py: which nodes are fed, their NodeInput ops, the step order."""

import nengo
import numpy as np
import torch
from nengo.builder.operator import SimPyFunc
from nengo.builder.processes import SimProcess

import snntorch_nengo
from snntorch_nengo.build.model import build_model
from snntorch_nengo.engine.operators import NodeInput, SimTensorNode
from snntorch_nengo.engine.schedule import (
    ConstantNode,
    input_nodes,
    step_order,
    with_input_ops,
)


def network():
    with nengo.Network(seed=0) as net:
        net.constant = nengo.Node([0.5, -0.5], label="constant")
        net.function = nengo.Node(lambda t: np.sin(t), label="function")
        net.process = nengo.Node(nengo.processes.WhiteNoise(), size_out=1, label="process")
        net.bias = ConstantNode([1.0], label="bias")
        net.torch_time = snntorch_nengo.TensorNode(
            lambda t: t.reshape(1, 1), shape_in=None, label="torch_time"
        )
        net.passthrough = nengo.Node(size_in=2, label="passthrough")
        net.with_input = nengo.Node(lambda t, x: x, size_in=1, label="with_input")
        net.sink = nengo.Node(lambda t: None, size_out=0, label="sink")
        ens = nengo.Ensemble(10, 2)
        for node in (net.constant, net.function, net.process, net.bias, net.torch_time):
            nengo.Connection(node, ens[0] if node.size_out == 1 else ens)
        nengo.Connection(ens, net.passthrough)
        nengo.Connection(ens[0], net.with_input)
        net.probe = nengo.Probe(ens, synapse=0.01)
    return net


def test_input_nodes_are_the_nodes_a_user_can_feed():
    net = network()
    model = build_model(net, dt=0.001)
    # in build order; a ConstantNode is part of the model and a TensorNode runs
    # torch code, so neither is fed; nodes with input or no output are not inputs
    assert input_nodes(model) == [net.constant, net.function, net.process]


def test_each_input_node_output_is_set_by_one_node_input():
    net = network()
    model = build_model(net, dt=0.001)
    nodes = input_nodes(model)
    operators = with_input_ops(model, nodes)
    feeds = [op for op in operators if isinstance(op, NodeInput)]
    assert [op.node for op in sorted(feeds, key=lambda op: nodes.index(op.node))] == nodes
    by_node = {op.node: op for op in feeds}
    # the function's and the process's own operators are wrapped, not kept
    assert isinstance(by_node[net.function].original, SimPyFunc)
    assert isinstance(by_node[net.process].original, SimProcess)
    assert by_node[net.constant].original is None  # a constant has no operator
    wrapped = {id(op.original) for op in feeds}
    assert not any(id(op) in wrapped for op in operators if not isinstance(op, NodeInput))
    for node, op in by_node.items():
        assert op.output is model.sig[node]["out"]
    # a wrapped operator's reads and updates stay (so its dependencies keep)
    process = by_node[net.process]
    assert process.reads == process.original.reads
    assert process.updates == process.original.updates
    # everything else is as Nengo built it, the TensorNode's operator included
    assert len(operators) == len(model.operators) + 1  # + the constant's NodeInput
    assert sum(isinstance(op, SimTensorNode) for op in operators) == 1


def test_step_order_respects_sets_incs_reads_updates():
    net = network()
    model = build_model(net, dt=0.001)
    operators = with_input_ops(model, input_nodes(model))
    order = step_order(operators)
    assert sorted(map(id, order)) == sorted(map(id, operators))
    position = {op: i for i, op in enumerate(order)}
    for op in operators:
        for later in operators:
            for sig in op.sets:
                # a signal's setter runs before its incrementers and readers
                bases = {s.base for s in later.incs + later.reads}
                if sig.base in bases and later is not op:
                    assert position[op] < position[later], (op, later)
            for sig in op.updates:
                # an update comes after everything else that touches the signal
                bases = {s.base for s in later.sets + later.incs + later.reads}
                if sig.base in bases and later is not op:
                    assert position[later] < position[op], (later, op)


def test_feeding_replaces_exactly_the_input_nodes():
    """Fed data reach the ensemble through the NodeInputs: as nengo with those outputs."""
    steps = 5
    x = np.linspace(-1, 1, steps)

    def two_inputs(constant_output, function_output):
        with nengo.Network(seed=1) as net:
            net.constant = nengo.Node(constant_output)
            net.function = nengo.Node(function_output)
            ens = nengo.Ensemble(20, 1, neuron_type=nengo.RectifiedLinear())
            nengo.Connection(net.constant, ens, synapse=None)
            nengo.Connection(net.function, ens, synapse=None)
            net.probe = nengo.Probe(ens.neurons)
        return net

    net = two_inputs([0.0], lambda t: 0.0)
    feeds = {net.constant: x[None, :, None], net.function: 2 * x[None, :, None]}
    with snntorch_nengo.Simulator(net, progress_bar=False, dtype=torch.float64) as sim:
        fed = sim.predict(feeds, n_steps=steps)[net.probe][0]

    def at_step(values):
        return lambda t: values[int(round(t / 0.001)) - 1]

    ref_net = two_inputs(at_step(x), at_step(2 * x))
    with nengo.Simulator(ref_net, progress_bar=False) as ref:
        ref.run_steps(steps)
    np.testing.assert_allclose(fed, ref.data[ref_net.probe], atol=1e-9)
    assert np.abs(fed).max() > 10  # the fed currents did drive the neurons
