"""Surrogate-gradient training through the fused neuron kernels.

In training mode with a surrogate, a windowed run calls each LIF, AdaptiveLIF
and SpikingRectifiedLinear group's fused kernel once over the window (its
hand-derived backward kernel gives the gradients); the stepped run (``windowed
=False``) steps the torch training step with autograd. Losses and the gradients
of every parameter must agree.
"""

import nengo
import numpy as np
import pytest
import torch
from nengo.dists import Uniform

from snntorch_nengo import NengoModule
from snntorch_nengo.config import configure_settings
from snntorch_nengo.engine import window
from snntorch_nengo.kernels import ops
from snntorch_nengo.neurons.surrogates import ATan, FastSigmoid, Surrogate

T, B = 30, 3

NEURONS = {
    "lif": nengo.LIF(tau_rc=0.03, tau_ref=0.002, amplitude=0.5),
    "alif": nengo.AdaptiveLIF(tau_n=0.05, inc_n=0.5, tau_rc=0.03, amplitude=0.5),
    "relu": nengo.SpikingRectifiedLinear(amplitude=0.02),
}


def feed_forward(neuron_type, seed=0, zero_biases=False, **settings):
    """input -> a (neurons) -> b (neurons) -> readout; spikes probed.

    Neuron-to-neuron weights, no synapses: nothing crosses time but the
    neurons' own state, so the model runs windowed.
    """
    rng = np.random.RandomState(seed)
    with nengo.Network(seed=seed) as net:
        configure_settings(**settings)
        net.config[nengo.Connection].synapse = None
        net.inp = nengo.Node(np.zeros(4), label="inp")
        net.a = nengo.Ensemble(40, 1, neuron_type=neuron_type, gain=Uniform(0.5, 2),
                               bias=Uniform(0, 2), label="a")
        net.b = nengo.Ensemble(25, 1, neuron_type=neuron_type, gain=Uniform(0.5, 2),
                               bias=Uniform(0, 1), label="b")
        if zero_biases:  # as deep nets initialise them (trained all the same)
            net.a.bias = net.b.bias = nengo.dists.Choice([0])
        nengo.Connection(net.inp, net.a.neurons, transform=rng.normal(0, 1, (40, 4)))
        nengo.Connection(net.a.neurons, net.b.neurons,
                         transform=rng.normal(0, 0.02, (25, 40)))
        net.out = nengo.Node(size_in=3, label="out")
        nengo.Connection(net.b.neurons, net.out, transform=rng.normal(0, 0.02, (3, 25)))
        net.p_out = nengo.Probe(net.out, label="p_out")
        net.p_a = nengo.Probe(net.a.neurons, label="p_a")
    return net


def train_step(neuron_type, surrogate, windowed, dtype=torch.float64, steady=False,
               zero_biases=False):
    """One training step's loss, outputs, parameter gradients and last run."""
    net = feed_forward(neuron_type, surrogate=surrogate, windowed=windowed,
                       zero_biases=zero_biases)
    module = NengoModule(net, minibatch_size=B, dtype=dtype)
    module.train()
    rng = np.random.RandomState(5)
    if steady:  # an image shown at every step
        x = np.broadcast_to(rng.uniform(-1, 2, (B, 1, 4)), (B, T, 4))
    else:
        x = rng.uniform(-1, 2, (B, T, 4))
    out = module({net.inp: torch.tensor(np.array(x), dtype=dtype)}, n_steps=T)
    target = torch.tensor(rng.normal(0, 1, (B, 3)), dtype=dtype)
    loss = (out[net.p_out].mean(dim=1) - target).square().sum() + 1e-3 * out[net.p_a].sum()
    loss.backward()
    grads = {name: p.grad.clone() for name, p in module.named_parameters()}
    out = {probe.label: value.detach() for probe, value in out.items()}
    return float(loss.detach()), out, grads, module.explain()


def _neuron_fallbacks(last):
    return [f for f in last.fallbacks if "SimNeurons" in str(f.op)]


@pytest.mark.parametrize("kind", list(NEURONS))
@pytest.mark.parametrize("surrogate", ["fast_sigmoid", ATan(alpha=3.0), "triangle"],
                         ids=str)
def test_windowed_training_equals_stepped(kind, surrogate):
    neuron_type = NEURONS[kind]
    loss, out, grads, last = train_step(neuron_type, surrogate, windowed=True)
    assert last.strategy == "windowed"
    assert _neuron_fallbacks(last) == []  # both groups ran their fused kernels
    ref_loss, ref_out, ref_grads, ref_last = train_step(neuron_type, surrogate,
                                                        windowed=False)
    assert ref_last.strategy != "windowed"
    assert abs(loss - ref_loss) <= 1e-10 * abs(ref_loss)
    for key in out:
        torch.testing.assert_close(out[key], ref_out[key], rtol=1e-10, atol=1e-10)
    assert torch.any(out["p_a"] != 0)
    assert set(grads) == set(ref_grads) and grads
    for name, g in grads.items():
        scale = float(ref_grads[name].abs().max())
        # every parameter gets a gradient through the spikes (but the encoders,
        # which connections to .neurons bypass)
        assert scale > 0 or name.endswith("encoders"), name
        torch.testing.assert_close(g, ref_grads[name], rtol=1e-8, atol=1e-9 * scale)


@pytest.mark.parametrize("kind", list(NEURONS))
def test_windowed_training_float32_and_steady_input(kind):
    neuron_type = NEURONS[kind]
    loss, _, grads, last = train_step(neuron_type, "fast_sigmoid", True,
                                      dtype=torch.float32, steady=True)
    assert _neuron_fallbacks(last) == []
    ref_loss, _, ref_grads, _ = train_step(neuron_type, "fast_sigmoid", False,
                                           dtype=torch.float32, steady=True)
    assert abs(loss - ref_loss) <= 1e-4 * abs(ref_loss)
    for name, g in grads.items():
        scale = float(ref_grads[name].abs().max())
        torch.testing.assert_close(g, ref_grads[name], rtol=1e-3, atol=1e-3 * scale)


@pytest.mark.parametrize("steady", [False, True], ids=["varying", "steady"])
def test_zero_biases_get_gradients_windowed(steady):
    """A bias that is all zeros is still a trained parameter: the window must not
    skip adding it to the neurons' input (its gradient would be lost)."""
    _, _, grads, last = train_step(NEURONS["lif"], "fast_sigmoid", True,
                                   steady=steady, zero_biases=True)
    assert last.strategy == "windowed"
    _, _, ref_grads, _ = train_step(NEURONS["lif"], "fast_sigmoid", False,
                                    steady=steady, zero_biases=True)
    biases = [name for name in ref_grads if name.endswith("bias")]
    assert len(biases) == 2, sorted(ref_grads)
    for name in biases:
        scale = float(ref_grads[name].abs().max())
        assert scale > 0, name
        torch.testing.assert_close(grads[name], ref_grads[name], rtol=1e-8,
                                   atol=1e-9 * scale)


def test_fused_training_calls_the_kernels_once_per_window(monkeypatch):
    """No Python loop over time steps: each neuron group's forward and backward
    kernels run once per window."""
    calls = []
    original = ops.fused_lowpass_backward

    def counting(*args, **kwargs):
        calls.append(args[0])
        return original(*args, **kwargs)

    monkeypatch.setattr(ops, "fused_lowpass_backward", counting)
    loss, _, _, last = train_step(NEURONS["lif"], "fast_sigmoid", True)
    assert calls == ["lif_lowpass", "lif_lowpass"]


def test_user_surrogate_without_kernel_form_steps():
    class Bump(Surrogate):
        def derivative(self, x):
            return torch.exp(-x * x)

    loss, _, grads, last = train_step(NEURONS["lif"], Bump(), True)
    fallbacks = _neuron_fallbacks(last)
    assert len(fallbacks) == 2 and all(f.form == window.STEPPED for f in fallbacks)
    assert all("no form of the surrogate" in f.reason for f in fallbacks)
    ref_loss, _, ref_grads, _ = train_step(NEURONS["lif"], Bump(), False)
    assert abs(loss - ref_loss) <= 1e-10 * abs(ref_loss)
    for name, g in grads.items():
        torch.testing.assert_close(g, ref_grads[name], rtol=1e-8, atol=1e-12)


def test_subclass_of_a_builtin_surrogate_steps():
    class Steeper(FastSigmoid):
        def derivative(self, x):
            return 2 * super().derivative(x)

    _, _, _, last = train_step(NEURONS["lif"], Steeper(), True)
    assert len(_neuron_fallbacks(last)) == 2
