"""TensorNode and Layer: torch functions and modules inside Nengo networks."""

import copy
import pickle

import nengo
import numpy as np
import pytest
import torch
from nengo.exceptions import NetworkContextError, SimulationError, ValidationError

from snntorch_nengo import Layer, NengoModule, Simulator, TensorNode, configure_settings
from snntorch_nengo.engine.operators import SimTensorNode


class MyLayer(torch.nn.Module):
    """The tutorial's custom layer: one trainable weight."""

    def __init__(self):
        super().__init__()
        self.w = torch.nn.Parameter(torch.full((1, 1), 2.0))

    def forward(self, x):
        return x @ self.w


def test_time_plus_input():
    """The tutorial's first cell: ``t + x``."""
    with nengo.Network() as net:
        a = nengo.Node([0.5, -0.1])
        b = TensorNode(lambda t, x: t + x, shape_in=(2,), shape_out=(2,))
        nengo.Connection(a, b, synapse=None)
        p = nengo.Probe(b)
    assert (b.size_in, b.size_out) == (2, 2)
    with Simulator(net, progress_bar=False) as sim:
        assert sim.module.input_nodes == [a]
        out = sim.predict(n_steps=10)[p]
        assert "TensorNode" in repr(sim.module.module_of(b))
    t = 0.001 * np.arange(1, 11)[:, None]
    expected = (t + np.array([0.5, -0.1]))[None]
    assert out.shape == (1, 10, 2)
    assert np.allclose(out, expected)


def test_custom_module_parameters_and_gradients():
    """The tutorial's custom layer: its weight is a parameter that trains."""
    with nengo.Network() as net:
        inp = nengo.Node([0.0], label="inp")
        layer = MyLayer()
        node = TensorNode(layer, shape_in=(1,), pass_time=False, label="mine")
        nengo.Connection(inp, node, synapse=None)
        p = nengo.Probe(node)
    assert node.shape_out == (1,)
    with Simulator(net, progress_bar=False) as sim:
        module = sim.module
        params = list(module.parameters())
        assert any(param is layer.w for param in params)
        assert any(name.endswith("tensor_func.w") for name in module.state_dict())
        x = torch.full((2, 3, 1), 0.5)
        out = module({inp: x}, n_steps=3)[p]
        assert torch.allclose(out, torch.full_like(out, 1.0))
        out.sum().backward()
        # d/dw sum(x * w) = sum(x)
        assert layer.w.grad is not None
        assert torch.allclose(layer.w.grad, torch.tensor([[3.0]]))
        # a float32 module inside a float64 simulation: outputs in the sim dtype
        assert out.dtype == torch.float64


def test_batchnorm_layer_follows_module_mode():
    """The tutorial's BatchNormalization cell; train() batch stats, eval() running."""
    with nengo.Network(seed=0) as net:
        a = nengo.Node([0.5], label="a")
        b_rate = nengo.Ensemble(10, 1, neuron_type=nengo.RectifiedLinear())
        nengo.Connection(a, b_rate, synapse=None)
        bn = torch.nn.BatchNorm1d(10)
        c = Layer(bn)(b_rate.neurons)
        p = nengo.Probe(c)
        p_rates = nengo.Probe(b_rate.neurons)
    assert isinstance(c, TensorNode) and c.shape_in == (10,) and c.shape_out == (10,)
    # shape inference ran the module in eval mode: running stats untouched
    assert bn.training and torch.all(bn.running_mean == 0)

    with Simulator(net, progress_bar=False) as sim:
        sim.predict(n_steps=5)  # runs (eval mode)
        module = sim.module
        assert not bn.training
        x = torch.rand(4, 3, 1)
        module.reset()
        with torch.no_grad():
            data = module({a: x})
        rates, out = data[p_rates], data[p]
        eps = bn.eps
        assert torch.allclose(out, rates / np.sqrt(1 + eps), atol=1e-6)
        assert torch.all(bn.running_mean == 0)

        module.reset()
        module.train()
        assert bn.training
        out = module({a: x})[p].detach()
        # batch statistics: each step's output is normalised over the batch
        assert torch.allclose(out.mean(dim=0), torch.zeros_like(out[0]), atol=1e-6)
        assert not torch.all(bn.running_mean == 0)
        module.eval()
        assert not bn.training


def test_inferred_shape_out_and_errors():
    with nengo.Network():
        timed = TensorNode(lambda t: torch.stack([t, 2 * t]).reshape(1, 2))
    assert timed.shape_out == (2,) and timed.size_in == 0

    with nengo.Network() as net:
        node = TensorNode(lambda x: x.reshape(-1, 2, 3)[:, :, :2], shape_in=(6,),
                          pass_time=False)
        assert node.shape_out == (2, 2)
        assert node.size_out == 4

        with pytest.raises(ValidationError, match="'not_tensor'"):
            TensorNode(lambda t, x: 1.0, shape_in=(2,), label="not_tensor")
        with pytest.raises(ValidationError, match="'raises'.*shape_out"):
            TensorNode(lambda t, x: x @ torch.ones(3, 3), shape_in=(2,),
                       label="raises")
        with pytest.raises(ValidationError, match="callable"):
            TensorNode(3.0, shape_in=(2,))
        with pytest.raises(ValidationError, match="pass_time"):
            TensorNode(lambda: torch.zeros(1, 1), pass_time=False, shape_out=(1,))

        inp = nengo.Node([1.0, 2.0])
        bad = TensorNode(lambda t, x: x[:, :1], shape_in=(2,), shape_out=(2,),
                         label="bad_shape")
        nengo.Connection(inp, bad)
    with Simulator(net, progress_bar=False) as sim:
        with pytest.raises(SimulationError, match="bad_shape.*shape"):
            sim.run_steps(1)


def test_reference_simulator_refuses():
    with nengo.Network() as net:
        a = nengo.Node([0.5])
        b = TensorNode(lambda t, x: x, shape_in=(1,), label="tn")
        nengo.Connection(a, b)
        nengo.Probe(b)
    model = nengo.builder.Model()
    model.build(net)  # building works everywhere
    assert any(isinstance(op, SimTensorNode) for op in model.operators)
    with pytest.raises(SimulationError, match="snntorch_nengo.Simulator"):
        with nengo.Simulator(net, progress_bar=False) as sim:
            sim.run_steps(1)
    with pytest.raises(SimulationError, match="snntorch_nengo"):
        b.output(0.0, np.zeros(1))


def test_layer_with_neuron_type():
    with nengo.Network() as net:
        x = nengo.Node(np.ones(2))
        neurons = Layer(nengo.LIF())(x, transform=np.ones((5, 2)), label="lif")
        rect, conn = Layer(nengo.RectifiedLinear())(x, return_conn=True)
        shaped = Layer(nengo.SpikingRectifiedLinear())(
            x, transform=nengo.Dense((6, 2), init=np.ones((6, 2))), shape_in=(2, 3)
        )
        p = nengo.Probe(rect)
    assert isinstance(neurons, nengo.ensemble.Neurons)
    assert neurons.ensemble.n_neurons == 5 and neurons.ensemble.label == "lif"
    assert isinstance(neurons.ensemble.neuron_type, nengo.LIF)
    assert rect.ensemble.n_neurons == 2
    assert conn.pre is x and conn.post is rect and conn.synapse is None
    assert shaped.ensemble.n_neurons == 6
    with Simulator(net, progress_bar=False) as sim:
        assert sim.predict(n_steps=3)[p].shape == (1, 3, 2)

    with pytest.raises(NetworkContextError):
        Layer(nengo.LIF())(x)
    with pytest.raises(ValidationError):
        Layer("relu")


def test_layer_with_function_and_kwargs():
    with nengo.Network() as net:
        x = nengo.Node(np.arange(4.0), label="x")
        y, conn = Layer(torch.relu)(
            x, transform=-np.eye(4)[:3], synapse=0.01, return_conn=True, label="r"
        )
        z = Layer(lambda v: v.sum(dim=1, keepdim=True))(y, shape_out=(1,))
    assert isinstance(y, TensorNode) and y.label == "r"
    assert y.shape_in == (3,) and y.shape_out == (3,) and not y.pass_time
    assert conn.synapse == nengo.Lowpass(0.01)
    assert z.shape_in == (3,) and z.shape_out == (1,)
    assert str(Layer(torch.relu)) == "Layer(relu)"


def test_minibatch():
    with nengo.Network() as net:
        inp = nengo.Node(np.zeros(3), label="inp")
        lin = torch.nn.Linear(3, 2)
        node = TensorNode(lin, shape_in=(3,), pass_time=False)
        nengo.Connection(inp, node, synapse=None)
        timed = TensorNode(lambda t, x: x * t, shape_in=(2,))
        nengo.Connection(node, timed, synapse=None)
        p, p_t = nengo.Probe(node), nengo.Probe(timed)
    with Simulator(net, minibatch_size=4, progress_bar=False) as sim:
        x = np.random.RandomState(0).rand(8, 5, 3)
        out = sim.predict({inp: x})
        assert out[p].shape == (8, 5, 2)
        with torch.no_grad():
            expected = lin(torch.tensor(x, dtype=torch.float32)).numpy()
        assert np.allclose(out[p], expected, atol=1e-6)
        t = 0.001 * np.arange(1, 6)[None, :, None]
        assert np.allclose(out[p_t], expected * t, atol=1e-6)


def test_gradcheck():
    with nengo.Network() as net:
        inp = nengo.Node(np.zeros(2), label="inp")
        lin = torch.nn.Linear(2, 3).double()
        tn = TensorNode(
            lambda t, x: torch.sin(x) * (1 + t) + x**2, shape_in=(2,), shape_out=(2,)
        )
        nengo.Connection(inp, tn, synapse=0.005)
        layer = Layer(lin)(tn, synapse=None)
        out = nengo.Node(size_in=2)
        nengo.Connection(layer, out, transform=[[1, -1, 0], [0.5, 2, 1]], synapse=0.01)
        p = nengo.Probe(out)
    module = NengoModule(net, dtype=torch.float64)

    def run(x):
        module.reset()
        return module({inp: x})[p]

    x = torch.randn(2, 4, 2, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(run, (x,))
    run(x).sum().backward()
    assert lin.weight.grad is not None and lin.weight.grad.abs().sum() > 0


def test_module_tree():
    with nengo.Network() as net:
        inp = nengo.Node(np.zeros(2))
        lin = torch.nn.Linear(2, 2)
        node = TensorNode(lin, shape_in=(2,), pass_time=False, label="dense")
        fn = TensorNode(lambda t, x: x, shape_in=(2,), label="ident")
        nengo.Connection(inp, node)
        nengo.Connection(node, fn)
    module = NengoModule(net)
    dense = module.nodes["dense"]
    assert dense.tensor_func is lin
    assert "shape_in=(2,)" in repr(dense) and "Linear" in repr(dense)
    assert "tensor_func" not in dict(module.nodes["ident"].named_children())
    state = module.state_dict()
    assert torch.equal(state["nodes.dense.tensor_func.weight"], lin.weight)
    module.double()
    assert lin.weight.dtype == torch.float64
    # starts in eval mode, and follows the NengoModule
    assert not lin.training
    module.train()
    assert lin.training


def test_learning_phase_setting_overrides_mode():
    from snntorch_nengo.config import configure_settings

    seen = []

    class Spy(torch.nn.Module):
        def forward(self, x):
            seen.append(self.training)
            return x

    with nengo.Network() as net:
        configure_settings(learning_phase=True)
        inp = nengo.Node([1.0])
        spy = Spy()
        node = TensorNode(spy, shape_in=(1,), pass_time=False)
        nengo.Connection(inp, node)
    assert seen == [False]  # shape_out inferred in eval mode
    seen.clear()
    module = NengoModule(net)
    module(n_steps=2)
    assert seen == [True, True]
    assert not spy.training  # restored after each call


def test_copy_and_pickle():
    with nengo.Network() as net:
        node = TensorNode(MyLayer(), shape_in=(1,), pass_time=False, label="mine")
    node2 = node.copy(add_to_container=False)
    assert node2.shape_out == (1,) and node2.tensor_func is node.tensor_func
    node3 = pickle.loads(pickle.dumps(node))
    assert node3.shape_in == (1,) and isinstance(node3.tensor_func, MyLayer)
    net2 = copy.deepcopy(net)
    assert isinstance(net2.nodes[0], TensorNode)


def test_input_less_tensor_node_is_not_fed():
    with nengo.Network() as net:
        stim = nengo.Node([1.0], label="stim")
        sin = TensorNode(lambda t: torch.sin(100 * t).reshape(1, 1), label="sin")
        out = nengo.Node(size_in=1)
        nengo.Connection(sin, out, synapse=None)
        nengo.Connection(stim, out, synapse=None)
        p = nengo.Probe(out)
    assert sin.size_in == 0 and sin.shape_out == (1,)
    with Simulator(net, progress_bar=False) as sim:
        assert sim.module.input_nodes == [stim]
        out = sim.predict(np.zeros((1, 3, 1)))[p]
    t = 0.001 * np.arange(1, 4)
    assert np.allclose(out[0, :, 0], np.sin(100 * t))


@pytest.mark.parametrize("windowed", [True, False])
@pytest.mark.parametrize("minibatch_size", [None, 2])
def test_tensor_func_working_in_place_sees_a_copy(windowed, minibatch_size):
    with nengo.Network() as net:
        configure_settings(windowed=windowed)
        a = nengo.Node([1.0])
        doubled = TensorNode(lambda x: x.mul_(2), shape_in=(1,), pass_time=False)
        nengo.Connection(a, doubled, synapse=None)
        p_doubled = nengo.Probe(doubled)
        p_input = nengo.Probe(a)  # another reader of the same signal
    with Simulator(net, minibatch_size=minibatch_size, progress_bar=False) as sim:
        sim.run_steps(5)
    assert np.all(sim.data[p_doubled] == 2.0)
    assert np.all(sim.data[p_input] == 1.0)
