"""Converter: torch models as native Nengo networks (NengoDL's Converter)."""

import nengo
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from nengo.exceptions import ValidationError
from torch import nn

import snntorch_nengo
from snntorch_nengo import Converter
from snntorch_nengo.converter import NotConvertible
from snntorch_nengo.tensor_node import TensorNode


def _predict(converter, x, n_steps=1, **kwargs):
    """Run the converted network on ``x`` (batch, *shape); outputs per step."""
    with snntorch_nengo.Simulator(
        converter.net, minibatch_size=x.shape[0], progress_bar=False, **kwargs
    ) as sim:
        feed = np.repeat(x.reshape(x.shape[0], 1, -1), n_steps, axis=1)
        out = sim.predict({converter.inputs[0]: feed})
    return out[converter.outputs[0]]


def _torch(model, x):
    model.eval()
    with torch.no_grad():
        return model(torch.as_tensor(x, dtype=torch.float32)).numpy()


def _kinds(net):
    return {
        "ensembles": len(net.all_ensembles),
        "tensor_nodes": sum(isinstance(n, TensorNode) for n in net.all_nodes),
    }


def test_mlp():
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Linear(6, 16), nn.ReLU(), nn.Dropout(0.2), nn.Linear(16, 8), nn.Tanh(),
        nn.Linear(8, 8), nn.Sigmoid(), nn.Linear(8, 8), nn.LeakyReLU(0.1),
        nn.Linear(8, 3),
    )
    conv = Converter(model)
    assert conv.verify()
    assert conv.verify(training=True)
    # Linear -> activation is one connection into one Ensemble, as in NengoDL
    assert _kinds(conv.net) == {"ensembles": 4, "tensor_nodes": 0}
    types = sorted(type(e.neuron_type).__name__ for e in conv.net.all_ensembles)
    assert types == ["LeakyReLU", "RectifiedLinear", "Sigmoid", "Tanh"]
    assert isinstance(conv.layers[model[0]], nengo.Connection)
    assert conv.layers[model[1]].ensemble.n_neurons == 16
    # the network runs in Nengo's reference simulator too
    x = np.random.default_rng(1).standard_normal((1, 6))
    conv.inputs[0].output = x[0]
    with nengo.Simulator(conv.net, progress_bar=False) as sim:
        sim.step()
    assert np.allclose(sim.data[conv.outputs[0]][-1], _torch(model, x)[0], atol=1e-5)


class SmallCNN(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 4, 3, padding=1)
        self.bn1 = nn.BatchNorm2d(4)
        self.pool = nn.AvgPool2d(2)
        self.conv2 = nn.Conv2d(4, 6, 3, stride=2, padding=1, groups=2)
        self.bn2 = nn.BatchNorm2d(6)
        self.gap = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(6, 5)

    def forward(self, x):
        x = self.pool(F.relu(self.bn1(self.conv1(x))))
        x = torch.relu(self.bn2(self.conv2(x)))
        return self.fc(torch.flatten(self.gap(x), 1))


def _trained_bn(model, shape):
    """Give BatchNorm layers non-trivial statistics and affine parameters."""
    model.train()
    with torch.no_grad():
        for _ in range(3):
            model(torch.randn((16,) + shape) * 2 + 0.5)
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.5, 0.5)
    return model.eval()


def test_cnn_pooling_batch_norm():
    torch.manual_seed(0)
    model = _trained_bn(SmallCNN(), (1, 8, 8))
    conv = Converter(model, input_shape=(1, 8, 8))
    assert conv.verify()
    assert not conv.fallbacks
    assert [n.name for n in conv.folded] == ["bn1", "bn2"]
    assert _kinds(conv.net) == {"ensembles": 2, "tensor_nodes": 0}
    # with training-mode BatchNorm it falls back to TensorNodes (batch statistics)
    model.train()
    conv = Converter(model, input_shape=(1, 8, 8))
    assert set(n.name for n in conv.fallbacks) == {"bn1", "bn2"}
    model.eval()
    assert conv.verify()
    # ... unless inference_only
    model.train()
    conv = Converter(model, input_shape=(1, 8, 8), inference_only=True)
    assert not conv.fallbacks
    model.eval()
    assert conv.verify()
    # rate ReLUs do not change with firing-rate scaling, per-channel biases included
    scaled = Converter(model, input_shape=(1, 8, 8), scale_firing_rates=5.0)
    assert scaled.verify()
    assert all(np.allclose(e.gain, 5.0) for e in scaled.net.all_ensembles)


@pytest.mark.parametrize(
    "layer, shape",
    [
        (nn.Conv1d(3, 4, 3, stride=2, padding=2), (3, 9)),
        (nn.Conv2d(4, 6, (3, 2), stride=(2, 1), padding=(1, 0), groups=2), (4, 7, 6)),
        (nn.Conv2d(4, 4, (4, 3), padding="same", groups=4, bias=False), (4, 6, 5)),
        (nn.Conv2d(2, 4, 4, stride=2, padding=1), (2, 8, 8)),
        (nn.Conv3d(2, 3, 2, padding=1), (2, 3, 4, 4)),
        (nn.AvgPool2d(3, stride=2, padding=1), (3, 7, 7)),
        (nn.AvgPool1d(2), (3, 9)),
        (nn.AdaptiveAvgPool2d((2, 3)), (2, 5, 7)),
        (nn.AdaptiveAvgPool3d(1), (2, 3, 4, 4)),
    ],
)
@pytest.mark.filterwarnings("ignore:Using padding='same'")
def test_linear_layers(layer, shape):
    torch.manual_seed(0)
    model = nn.Sequential(layer, nn.ReLU())
    conv = Converter(model, input_shape=shape)
    assert not conv.fallbacks
    assert conv.verify()


def test_max_pool():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten())
    conv = Converter(model, input_shape=(1, 6, 6))
    assert [n.name for n in conv.fallbacks] == ["_2"]
    assert conv.verify()
    avg = Converter(model, input_shape=(1, 6, 6), max_to_avg_pool=True)
    assert not avg.fallbacks
    x = np.random.default_rng(0).standard_normal((3, 1, 6, 6))
    ref = nn.Sequential(model[0], model[1], nn.AvgPool2d(2), nn.Flatten())
    assert np.allclose(_predict(avg, x)[:, -1], _torch(ref, x), atol=1e-5)
    assert not np.allclose(_predict(avg, x)[:, -1], _torch(model, x), atol=1e-3)


class Residual(nn.Module):
    def __init__(self, channels=3):
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1)
        self.head = nn.Linear(channels * 16, 4)

    def forward(self, x):
        y = F.relu(self.conv1(x))
        y = F.relu(self.conv2(y) + x)  # fx add: a skip connection
        z = y - 0.5 * x.flip(1)
        return self.head(z.view(z.shape[0], -1))


def test_residual_block():
    torch.manual_seed(0)
    model = Residual()
    conv = Converter(model, input_shape=(3, 4, 4))
    assert not conv.fallbacks
    assert conv.verify()
    assert conv.verify(training=True)


class Concat(nn.Module):
    def __init__(self):
        super().__init__()
        self.a = nn.Linear(5, 4)
        self.b = nn.Linear(5, 3)
        self.c = nn.Conv1d(2, 3, 1)
        self.out = nn.Linear(7 + 5 * 4, 2)

    def forward(self, x, seq):
        h = torch.cat([torch.tanh(self.a(x)), torch.relu(self.b(x))], dim=1)
        s = torch.cat([seq, torch.relu(self.c(seq))], dim=1).transpose(1, 2)
        return self.out(torch.cat([h, s.reshape(-1, 20)], dim=-1))


def test_concatenation_and_two_inputs():
    torch.manual_seed(0)
    model = Concat()
    conv = Converter(model, input_shape={"x": (5,), "seq": (2, 4)})
    assert list(conv.inputs) == ["x", "seq"]
    assert not conv.fallbacks
    assert conv.verify()
    assert conv.verify(training=True)


class Splits(nn.Module):
    def __init__(self):
        super().__init__()
        self.a = nn.Linear(4, 6)
        self.b = nn.Linear(4, 6)

    def forward(self, x):
        p, q = torch.chunk(self.a(x), 2, dim=1)
        r, s = torch.relu(self.b(x)).split([2, 4], 1)
        values, order = torch.sort(x, dim=1)  # two outputs: one TensorNode
        return torch.cat([p * 2, torch.sigmoid(q), r, s, values, order.float()], 1)


def test_ops_with_several_outputs():
    torch.manual_seed(0)
    conv = Converter(Splits())
    assert {n.name: r for n, r in conv.fallbacks.items()} == {
        "sort": "no converter is registered for it"
    }
    assert conv.verify()
    assert conv.verify(training=True)


class Square(nn.Module):
    def forward(self, x):
        return x**2


class Gate(nn.Module):
    """Data-dependent control flow: fx cannot trace it, so it stays whole."""

    def forward(self, x):
        if x.sum() > 0:
            return x * torch.sigmoid(x)
        return -x


def test_custom_layer_fallback():
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Linear(4, 6), Square(), Gate(), nn.GELU(), nn.BatchNorm1d(6), nn.Linear(6, 2)
    )
    model.train()
    conv = Converter(model)
    assert {n.name for n in conv.fallbacks} == {"pow_1", "_2", "_3", "_4"}
    assert isinstance(conv.layers[model[2]], TensorNode)
    assert conv.layers[model[2]].tensor_func.layer is model[2]  # the module itself
    assert conv.verify(training=True)
    with pytest.raises(ValidationError, match=r"'pow_1' \(function pow\): no conv"):
        Converter(model, allow_fallback=False)
    with pytest.raises(ValidationError, match=r"'1' \(Gate\): no converter"):
        Converter(nn.Sequential(nn.Linear(4, 6), Gate()), allow_fallback=False)
    with pytest.raises(ValidationError, match=r"'1' \(BatchNorm1d\): BatchNorm in "):
        Converter(nn.Sequential(nn.Linear(4, 6), nn.BatchNorm1d(6)),
                  allow_fallback=False)


class Scale(nn.Module):
    def __init__(self, n):
        super().__init__()
        self.gain = nn.Parameter(torch.linspace(0.5, 2.0, n))

    def forward(self, x):
        return x * self.gain


def test_registered_converter():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 5), Scale(5), nn.ReLU())
    calls = []

    @Converter.register(Scale)
    def convert_scale(converter, node, layer, args, kwargs):
        calls.append(node.name)
        n = layer.gain.numel()
        return converter.linear(
            args[0], nengo.Dense((n, n), init=layer.gain.detach().numpy()),
            shape=(n,), origin=node,
        )

    try:
        conv = Converter(model)
        assert calls == ["_1"] and not conv.fallbacks
        assert conv.verify()
        assert _kinds(conv.net)["tensor_nodes"] == 0
    finally:
        del snntorch_nengo.converter.layers.LAYERS[Scale]
    # without it the module is traced through and its product converts as well
    conv = Converter(model)
    assert not conv.fallbacks and conv.verify()


def test_errors():
    with pytest.raises(ValidationError, match="input_shape is needed"):
        Converter(nn.Sequential(nn.Conv2d(1, 2, 3)))
    with pytest.raises(ValidationError, match="failed"):
        Converter(nn.Sequential(nn.Linear(4, 2)), input_shape=(5,))
    with pytest.raises(TypeError, match="torch.nn.Module"):
        Converter(lambda x: x)
    shared = nn.Linear(4, 4)
    model = nn.Sequential(shared, nn.ReLU(), shared)
    with pytest.raises(ValidationError, match=r"called 2 times.*split_shared_weights"):
        Converter(model)
    conv = Converter(model, split_shared_weights=True)
    assert conv.verify()
    with pytest.raises(ValueError, match="does not match"):
        conv = Converter(nn.Sequential(nn.Linear(4, 4), nn.ReLU(), nn.Linear(4, 2)),
                         synapse=0.01)
        conv.verify()
    with pytest.raises(ValueError, match="inference_only"):
        Converter(nn.Sequential(nn.Linear(4, 4)), inference_only=True).verify(
            training=True
        )


def test_swap_activations_and_scale_firing_rates():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 32), nn.ReLU(), nn.Linear(32, 16), nn.ReLU(),
                          nn.Linear(16, 2))
    x = np.random.default_rng(0).uniform(0, 1, (8, 4))
    expected = _torch(model, x)
    # scaling does not change a rate ReLU network
    scaled = Converter(model, scale_firing_rates=7.0)
    assert scaled.verify()
    ens = scaled.net.all_ensembles[0]
    assert np.allclose(ens.gain, 7.0) and ens.neuron_type.amplitude == pytest.approx(1 / 7)
    # spiking, low rates: far from the rate output; high rates + synapse: close
    errors = {}
    for scale in (1, 500):
        spiking = Converter(
            model,
            swap_activations={nn.ReLU: nengo.SpikingRectifiedLinear()},
            scale_firing_rates=scale,
            synapse=0.005,
        )
        assert all(isinstance(e.neuron_type, nengo.SpikingRectifiedLinear)
                   for e in spiking.net.all_ensembles)
        out = _predict(spiking, x, n_steps=200)
        errors[scale] = np.abs(out[:, 100:].mean(axis=1) - expected).max()
    assert errors[500] < 0.02 * np.abs(expected).max() < errors[1]
    # keys may be Nengo neuron types, per-layer scales
    spiking = Converter(
        model,
        swap_activations={nengo.RectifiedLinear(): nengo.SpikingRectifiedLinear},
        scale_firing_rates={model[3]: 3.0},
    )
    gains = [e.gain[0] for e in spiking.net.all_ensembles]
    assert gains == [1.0, 3.0]
    # swapping to None makes the activation linear
    linear = Converter(model, swap_activations={F.relu: None})
    plain = nn.Sequential(model[0], model[2], model[4])
    assert np.allclose(_predict(linear, x)[:, -1], _torch(plain, x), atol=1e-5)


def test_synapse():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))
    conv = Converter(model, synapse=nengo.Lowpass(0.01))
    from_neurons = [c for c in conv.net.all_connections
                    if isinstance(c.pre_obj, nengo.ensemble.Neurons)]
    assert len(from_neurons) == 1 and from_neurons[0].synapse == nengo.Lowpass(0.01)
    x = np.random.default_rng(0).uniform(0, 1, (2, 3))
    out = _predict(conv, x, n_steps=50)
    expected = _torch(model, x)
    # the output approaches the rate output as a first-order lowpass step response
    bias = model[2].bias.detach().numpy()
    steps = np.arange(1, 51)
    rise = 1 - np.exp(-(steps - 1) * 0.001 / 0.01)  # Nengo's lowpass: one step late
    predicted = bias + rise[None, :, None] * (expected - bias)[:, None, :]
    assert np.allclose(out, predicted, atol=0.02 * np.abs(expected).max())


def test_trained_params_round_trip():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 3, 3), nn.ReLU(), nn.Flatten(), nn.Linear(27, 2))
    x = torch.randn(64, 1, 5, 5)
    y = torch.stack([x[:, 0, :2].sum((1, 2)), x[:, 0, 3:].mean((1, 2))], dim=1)
    opt = torch.optim.Adam(model.parameters(), 0.01)
    for _ in range(100):
        opt.zero_grad()
        loss = F.mse_loss(model(x), y)
        loss.backward()
        opt.step()
    assert loss.item() < 0.5
    conv = Converter(model, input_shape=(1, 5, 5))
    got = _predict(conv, x.numpy())[:, -1]
    assert np.allclose(got, _torch(model, x), atol=1e-5)
    # freeze_params writes the (unchanged) weights back: Nengo's own simulator agrees
    with snntorch_nengo.Simulator(conv.net, progress_bar=False) as sim:
        sim.freeze_params(conv.net)
    conv.inputs[0].output = x[0].numpy().ravel()
    with nengo.Simulator(conv.net, progress_bar=False) as ref:
        ref.step()
    assert np.allclose(ref.data[conv.outputs[0]][-1], _torch(model, x[:1])[0], atol=1e-5)


def test_temporal_model():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 5), nn.Tanh(), nn.GELU(), nn.Linear(5, 2))
    conv = Converter(model, temporal_model=True, input_shape=(3,))
    assert [n.name for n in conv.fallbacks] == ["_2"]  # GELU: a TensorNode per step
    assert conv.verify()
    assert conv.verify(training=True)
    x = np.random.default_rng(0).standard_normal((2, 7, 3))
    with snntorch_nengo.Simulator(conv.net, minibatch_size=2, progress_bar=False) as sim:
        out = sim.predict({conv.inputs[0]: x})[conv.outputs[0]]
    assert np.allclose(out, _torch(model, x), atol=1e-5)


def test_not_convertible_reason_in_error():
    model = nn.Sequential(nn.Conv2d(1, 2, 3, dilation=2))
    with pytest.raises(ValidationError, match="dilation"):
        Converter(model, input_shape=(1, 7, 7), allow_fallback=False)
    assert issubclass(NotConvertible, Exception)


class TwoHeads(nn.Module):
    def __init__(self):
        super().__init__()
        self.body = nn.Linear(4, 6)
        self.a = nn.Linear(6, 2)
        self.b = nn.Linear(6, 3)

    def forward(self, x):
        h = F.relu(self.body(x))
        return {"first": self.a(h), "second": torch.sigmoid(self.b(h)) + 1.0}


def test_several_outputs():
    torch.manual_seed(0)
    model = TwoHeads()
    conv = Converter(model)
    assert list(conv.outputs) == ["a", "add"]
    assert conv.outputs["a"] is conv.outputs[0] and conv.outputs["add"] is conv.outputs[1]
    assert conv.verify()
    assert conv.verify(training=True)
    with pytest.raises(KeyError, match="is not one of"):
        conv.outputs["nope"]


def test_scale_firing_rates_of_nonlinear_neurons():
    """Sigmoid and Tanh: input times the scale, output divided by it."""
    torch.manual_seed(0)
    x = np.random.default_rng(0).standard_normal((5, 3))
    for act, f in ((nn.Tanh(), np.tanh), (nn.Sigmoid(), lambda v: 1 / (1 + np.exp(-v)))):
        model = nn.Sequential(nn.Linear(3, 4), act, nn.Linear(4, 2))
        conv = Converter(model, scale_firing_rates=3.0)
        w1, b1, w2, b2 = (p.detach().double().numpy() for p in model.parameters())
        expected = f(3.0 * (x @ w1.T + b1)) / 3.0 @ w2.T + b2
        assert np.allclose(_predict(conv, x)[:, -1], expected, atol=1e-5)
        assert not np.allclose(expected, _torch(model, x), atol=1e-2)
