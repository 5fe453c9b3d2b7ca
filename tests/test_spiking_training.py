"""Training mode: rate swap (NengoDL's behaviour) and surrogate gradients."""

import warnings

import nengo
import numpy as np
import pytest
import torch
from nengo.dists import Uniform

from snntorch_nengo import NengoModule
from snntorch_nengo.config import configure_settings
from snntorch_nengo.neurons import (
    LeakyReLU,
    SoftLIFRate,
    SpikingLeakyReLU,
    rate_type,
    training_form,
    training_step,
)
from snntorch_nengo.neurons import train_mode
from snntorch_nengo.training.surrogates import (
    SURROGATES,
    ATan,
    FastSigmoid,
    Sigmoid,
    StraightThrough,
    Surrogate,
    Triangle,
    get_surrogate,
)

DT = 0.001


def two_layer_net(neuron_type, seed=0, decoded=False, **settings):
    """stim -> a -> b -> probes. Neuron-to-neuron weights unless ``decoded``.

    (Decoders are solved from the type's ``rates``, so the networks of a
    spiking type and its rate counterpart share parameters only when nothing
    is decoded, or when their ``rates`` agree, as for LIF and LIFRate.)
    """
    # Izhikevich's numeric gain_bias and rates are slow: give gains and biases,
    # and decode nothing
    izhikevich = isinstance(neuron_type, nengo.Izhikevich)
    tuning = dict(gain=Uniform(5, 15), bias=Uniform(0, 10)) if izhikevich else {}
    with nengo.Network(seed=seed) as net:
        if settings:
            configure_settings(**settings)
        net.stim = nengo.Node(lambda t: [np.sin(20 * t), np.cos(15 * t)], label="stim")
        net.a = nengo.Ensemble(30, 2, neuron_type=neuron_type, label="a", **tuning)
        net.b = nengo.Ensemble(20, 1, neuron_type=neuron_type, label="b", **tuning)
        nengo.Connection(net.stim, net.a, synapse=None)
        if decoded:
            nengo.Connection(net.a, net.b, function=lambda x: x[0] * x[1], synapse=0.005)
        else:
            w = np.random.RandomState(seed).normal(0, 0.05, size=(20, 30))
            net.w_ab = nengo.Connection(
                net.a.neurons, net.b.neurons, transform=w, synapse=0.005
            )
        net.p_a = nengo.Probe(net.a.neurons, label="p_a")
        net.p_b = nengo.Probe(net.b.neurons, synapse=0.01, label="p_b")
        if not izhikevich:
            net.p_out = nengo.Probe(net.b, synapse=0.01, label="p_out")
    return net


def run(net, train, n_steps=60, dtype=torch.float64, grad=False, decoded_loss=True):
    module = NengoModule(net, dtype=dtype)
    module.train(train)
    with torch.set_grad_enabled(grad):
        out = module(n_steps=n_steps)
    out = {p.label: v for p, v in out.items()}
    if not grad:
        return module, out
    loss = out["p_b"].sum()
    if decoded_loss and "p_out" in out:
        loss = loss + out["p_out"].sum()
    loss.backward()
    grads = {name: p.grad for name, p in module.named_parameters()}
    return module, out, grads


# ---- (a) rate swap --------------------------------------------------------


def test_eval_mode_is_exact_nengo():
    net = two_layer_net(nengo.LIF(), decoded=True)
    with nengo.Simulator(net, progress_bar=False) as ref:
        ref.run_steps(200)
    module, out = run(net, train=False, n_steps=200)
    assert np.array_equal(out["p_a"][0].numpy(), ref.data[net.p_a])
    np.testing.assert_allclose(out["p_b"][0].numpy(), ref.data[net.p_b], atol=1e-10)
    np.testing.assert_allclose(out["p_out"][0].numpy(), ref.data[net.p_out], atol=1e-10)
    assert np.any(ref.data[net.p_a] != 0)


@pytest.mark.parametrize("decoded", [False, True])
def test_train_mode_lif_equals_lif_rate(decoded):
    lif = two_layer_net(nengo.LIF(tau_rc=0.03, amplitude=0.5), decoded=decoded)
    rate = two_layer_net(nengo.LIFRate(tau_rc=0.03, amplitude=0.5), decoded=decoded)
    _, out, grads = run(lif, train=True, grad=True)
    _, ref, ref_grads = run(rate, train=False, grad=True)
    for key in ("p_a", "p_b", "p_out"):
        torch.testing.assert_close(out[key], ref[key], rtol=1e-12, atol=1e-12)
    # rates, not spikes
    assert not np.all(np.isin(out["p_a"].detach().numpy(), [0, 0.5 / DT]))
    assert set(grads) == set(ref_grads) and grads
    for name in grads:
        torch.testing.assert_close(grads[name], ref_grads[name], rtol=1e-10, atol=1e-12)
        if decoded or name != "ensembles.b.encoders":  # (unused without decoding)
            assert torch.any(grads[name] != 0), name


def test_lif_smoothing_trains_through_soft_lif_rate():
    lif = two_layer_net(nengo.LIF(), lif_smoothing=0.05)
    soft = two_layer_net(SoftLIFRate(sigma=0.05))
    hard = two_layer_net(nengo.LIFRate())
    # (SoftLIFRate's decoders are solved for its own curve: no loss on p_out)
    _, out, grads = run(lif, train=True, grad=True, decoded_loss=False)
    _, ref, ref_grads = run(soft, train=False, grad=True, decoded_loss=False)
    _, hard_out = run(hard, train=False)
    torch.testing.assert_close(out["p_a"], ref["p_a"], rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(out["p_b"], ref["p_b"], rtol=1e-12, atol=1e-12)
    assert not torch.allclose(out["p_a"], hard_out["p_a"])
    for name in grads:
        torch.testing.assert_close(grads[name], ref_grads[name], rtol=1e-10, atol=1e-12)
    # eval mode still spikes
    _, spikes = run(lif, train=False)
    assert np.all(np.isin(spikes["p_a"].numpy(), [0, 1 / DT]))


@pytest.mark.parametrize(
    "spiking, rate",
    [
        (
            nengo.AdaptiveLIF(tau_n=0.05, inc_n=0.1),
            nengo.AdaptiveLIFRate(tau_n=0.05, inc_n=0.1),
        ),
        (nengo.SpikingRectifiedLinear(amplitude=2), nengo.RectifiedLinear(amplitude=2)),
        (SpikingLeakyReLU(negative_slope=0.2), LeakyReLU(negative_slope=0.2)),
        # RatesToSpikes: input is the base rate; train mode outputs amplitude * rate
        (
            nengo.RegularSpiking(nengo.LIFRate(), amplitude=0.5),
            nengo.LIFRate(amplitude=0.5),
        ),
        (
            nengo.PoissonSpiking(nengo.RectifiedLinear(), amplitude=0.5),
            nengo.RectifiedLinear(amplitude=0.5),
        ),
        (nengo.StochasticSpiking(nengo.LIFRate()), nengo.LIFRate()),
    ],
    ids=repr,
)
def test_train_mode_swaps_to_rate_counterpart(spiking, rate):
    # (decoders may differ, e.g. RegularSpiking's ignore its amplitude: no loss on p_out)
    _, out, grads = run(two_layer_net(spiking), train=True, grad=True, decoded_loss=False)
    _, ref, ref_grads = run(two_layer_net(rate), train=False, grad=True, decoded_loss=False)
    torch.testing.assert_close(out["p_a"], ref["p_a"], rtol=1e-12, atol=1e-10)
    torch.testing.assert_close(out["p_b"], ref["p_b"], rtol=1e-12, atol=1e-10)
    for name in grads:
        torch.testing.assert_close(grads[name], ref_grads[name], rtol=1e-9, atol=1e-10)


def test_rate_types_keep_spiking_type_parameters():
    lif = nengo.LIF(tau_rc=0.05, tau_ref=0.001, amplitude=3)
    assert rate_type(lif) == nengo.LIFRate(tau_rc=0.05, tau_ref=0.001, amplitude=3)
    assert rate_type(lif, 0.1) == SoftLIFRate(
        sigma=0.1, tau_rc=0.05, tau_ref=0.001, amplitude=3
    )
    alif = nengo.AdaptiveLIF(tau_n=0.2, inc_n=0.3, tau_rc=0.04)
    assert rate_type(alif) == nengo.AdaptiveLIFRate(tau_n=0.2, inc_n=0.3, tau_rc=0.04)
    assert rate_type(nengo.SpikingRectifiedLinear(amplitude=2)) == nengo.RectifiedLinear(
        amplitude=2
    )
    assert rate_type(SpikingLeakyReLU(0.1, 2)) == LeakyReLU(0.1, 2)
    for nt in (nengo.LIFRate(), nengo.Izhikevich(), nengo.RegularSpiking(nengo.LIFRate())):
        assert rate_type(nt) is None
    # rate types do the same in both modes
    assert training_step(nengo.LIFRate()) is training_step(nengo.LIFRate(), {})


def test_training_form_says_what_the_step_is():
    """The engine's fused kernels read the rate swap and the surrogate from the
    form, not from attributes of the step function."""
    lif = nengo.LIF(tau_rc=0.05)
    form = training_form(lif)
    assert form.rate_type == nengo.LIFRate(tau_rc=0.05) and form.surrogate is None
    assert not vars(form.step)  # nothing on the function itself
    form = training_form(lif, {"surrogate": "fast_sigmoid"})
    assert isinstance(form.surrogate, FastSigmoid) and form.rate_type is None
    assert form.step.keywords == {"surrogate": form.surrogate}
    # RatesToSpikes types train as amplitude * J: neither
    form = training_form(nengo.RegularSpiking(nengo.LIFRate()))
    assert form.rate_type is None and form.surrogate is None
    form = training_form(nengo.LIFRate())
    assert form == train_mode.TrainingForm(training_step(nengo.LIFRate()))


def test_train_mode_passes_state_through():
    net = two_layer_net(nengo.LIF())
    with net:
        p_v = nengo.Probe(net.a.neurons, "voltage")
        p_r = nengo.Probe(net.a.neurons, "refractory_time")
    module = NengoModule(net, dtype=torch.float64)
    module.train()
    out = module(n_steps=20)
    assert torch.all(out[p_v] == out[p_v][:, :1]) and torch.all(out[p_r] == 0)
    # back in eval mode the neurons spike again, from the untouched state
    module.eval()
    out = module(n_steps=50)
    assert torch.any(out[net.p_a] != 0)
    assert np.all(np.isin(out[net.p_a].numpy(), [0, 1 / DT]))


def test_izhikevich_keeps_spiking_with_one_warning():
    train_mode._warned.discard(nengo.Izhikevich)
    net = two_layer_net(nengo.Izhikevich())
    module = NengoModule(net, dtype=torch.float64)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        module(n_steps=5)  # eval: no warning
        assert not caught
        module.train()
        out = module(n_steps=100)
    msgs = [str(w.message) for w in caught if "rate counterpart" in str(w.message)]
    assert len(msgs) == 1 and "surrogate" in msgs[0]
    assert np.all(np.isin(out[net.p_a].numpy(), [0, 1 / DT]))
    assert np.any(out[net.p_a].numpy() != 0)


def test_bad_surrogate_setting_fails_at_build():
    with pytest.raises(Exception, match="unknown surrogate"):
        NengoModule(two_layer_net(nengo.LIF(), surrogate="wiggly"))


# ---- (b) surrogate gradients ----------------------------------------------


def test_surrogate_derivatives():
    x = torch.linspace(-3, 3, 60001, dtype=torch.float64)
    dx = x[1] - x[0]
    cases = [
        (FastSigmoid(), 2 / 25 * (1 - 1 / (1 + 3 * 25))),  # integral over [-3, 3]
        (FastSigmoid(slope=10), 2 / 10 * (1 - 1 / (1 + 3 * 10))),
        (Sigmoid(), 1.0),
        (ATan(), 2 / np.pi * np.arctan(np.pi / 2 * 2 * 3)),  # heavy tails
        (ATan(alpha=4), 2 / np.pi * np.arctan(np.pi / 2 * 4 * 3)),
        (Triangle(), 1.0),
        (Triangle(width=0.5), 1.0),
    ]
    for surrogate, area in cases:
        d = surrogate.derivative(x)
        assert d.shape == x.shape and torch.all(d >= 0)
        peak = d.argmax()
        assert abs(x[peak]) < 1e-9, surrogate  # peaks at the threshold
        torch.testing.assert_close(d, surrogate.derivative(-x))  # symmetric
        assert torch.all(torch.diff(d[x >= 0]) <= 0)  # decays away from it
        assert abs(float(d.sum() * dx) - area) < 1e-3, surrogate
    xs = torch.tensor([0.0, 0.04, 0.5, 1.0, 2.0], dtype=torch.float64)
    torch.testing.assert_close(
        FastSigmoid().derivative(xs), 1 / (25 * xs + 1) ** 2
    )
    torch.testing.assert_close(
        ATan().derivative(xs), 1 / (1 + (np.pi * xs) ** 2)
    )
    triangle = torch.tensor([1.0, 0.96, 0.5, 0, 0], dtype=torch.float64)
    torch.testing.assert_close(Triangle().derivative(xs), triangle)
    torch.testing.assert_close(StraightThrough().derivative(xs), torch.ones_like(xs))
    assert float(ATan(alpha=2).derivative(torch.zeros(1))) == 1.0


@pytest.mark.parametrize("name", sorted(SURROGATES))
def test_surrogate_heaviside_forward_exact_backward_derivative(name):
    surrogate = get_surrogate(name)
    assert isinstance(surrogate, Surrogate) and surrogate.name == name
    x = torch.tensor([-1.0, -0.1, 0.0, 1e-9, 0.1, 2.0], requires_grad=True)
    spikes = surrogate(x)
    assert torch.equal(spikes, (x > 0).float())
    (grad,) = torch.autograd.grad((spikes * torch.arange(6.0)).sum(), x)
    torch.testing.assert_close(grad, torch.arange(6.0) * surrogate.derivative(x.detach()))


def test_get_surrogate():
    assert get_surrogate(None) is None
    s = ATan(alpha=3)
    assert get_surrogate(s) is s
    assert get_surrogate(Triangle) == Triangle()
    assert get_surrogate("Fast-Sigmoid") == FastSigmoid(slope=25)
    assert get_surrogate("arctan") == ATan(alpha=2)
    assert get_surrogate("ste") == StraightThrough()
    with pytest.raises(Exception, match="unknown surrogate"):
        get_surrogate("nope")


def test_staircase_surrogate():
    s = Triangle(width=0.5)
    v = torch.tensor([0.2, 0.9, 1.3, 2.6, -0.9, -1.2, -2.4], requires_grad=True)
    counts = s.staircase(v, torch.trunc(v))
    assert torch.equal(counts, torch.trunc(v.detach()))
    (grad,) = torch.autograd.grad(counts.sum(), v)
    # distance to the nearest step at +-1, +-2, ...
    dist = torch.tensor([0.8, 0.1, 0.3, 0.4, 0.1, 0.2, 0.4])
    torch.testing.assert_close(grad, torch.clamp(1 - dist / 0.5, min=0) / 0.5)


SURROGATE_TYPES = [
    nengo.LIF(),
    nengo.AdaptiveLIF(),
    nengo.SpikingRectifiedLinear(),
    SpikingLeakyReLU(),
    nengo.Izhikevich(),
    nengo.RegularSpiking(nengo.LIFRate()),
    nengo.PoissonSpiking(nengo.LIFRate()),
]


@pytest.mark.parametrize("neuron_type", SURROGATE_TYPES, ids=repr)
def test_surrogate_mode_spikes_forward_and_gradients_flow(neuron_type):
    net = two_layer_net(neuron_type, surrogate="fast_sigmoid")
    _, ref = run(net, train=False)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no rate-counterpart warning
        # (but nengo's own, when it merges stochastic neurons' operators)
        warnings.filterwarnings("ignore", message="Extra state has been modified")
        # (a new module: Poisson's random state, like Nengo's, survives reset)
        _, out, grads = run(net, train=True, grad=True)
    # the forward pass is the exact spiking one
    for key in ("p_a", "p_b"):
        assert torch.equal(out[key].detach(), ref[key]), key
    spikes = out["p_a"].detach().numpy() * DT / getattr(neuron_type, "amplitude", 1)
    np.testing.assert_allclose(spikes, np.round(spikes), atol=1e-12)  # spike counts
    assert np.any(spikes != 0)
    for name, grad in grads.items():
        assert grad is not None and torch.all(torch.isfinite(grad)), name
    # gradients reach every parameter (but b's unused encoders), a's through
    # b's spikes; p_out's decoders are no parameter (probe decoders do not
    # train, as in NengoDL)
    assert len(grads) == 5
    for name, grad in grads.items():
        if name != "ensembles.b.encoders":
            assert torch.any(grad != 0), name


@pytest.mark.parametrize("name", sorted(SURROGATES))
def test_each_surrogate_reaches_earlier_layers(name):
    net = two_layer_net(nengo.LIF(), surrogate=name)
    module = NengoModule(net)  # float32
    module.train()
    out = module(n_steps=50)
    assert np.all(np.isin(out[net.p_a].detach().numpy(), [0, 1 / DT]))
    loss = out[net.p_b][:, 25:].square().mean()
    loss.backward()
    # a's parameters and the a -> b weights get gradients through b's spikes
    a = module.module_of(net.a)
    for param in (a.encoders, a.bias, module.module_of(net.w_ab).weights):
        assert torch.all(torch.isfinite(param.grad)) and torch.any(param.grad != 0)


def test_surrogate_setting_instance_and_eval_mode_unaffected():
    net = two_layer_net(nengo.LIF(), surrogate=ATan(alpha=3))
    _, ref = run(two_layer_net(nengo.LIF()), train=False)
    _, out = run(net, train=False)
    for key in out:
        assert torch.equal(out[key], ref[key])
    _, out, grads = run(net, train=True, grad=True)
    assert torch.equal(out["p_a"].detach(), ref["p_a"])
    assert any(torch.any(g != 0) for g in grads.values())


def test_surrogate_takes_precedence_over_lif_smoothing():
    net = two_layer_net(nengo.LIF(), surrogate="triangle", lif_smoothing=0.1)
    _, out = run(net, train=True)
    assert np.all(np.isin(out["p_a"].detach().numpy(), [0, 1 / DT]))


# ---- (c) training loops ---------------------------------------------------


def training_net(**settings):
    with nengo.Network(seed=2) as net:
        if settings:
            configure_settings(**settings)
        net.stim = nengo.Node([0.5, -0.3], label="stim")
        net.a = nengo.Ensemble(40, 2, neuron_type=nengo.LIF(), label="a")
        net.b = nengo.Ensemble(30, 1, neuron_type=nengo.LIF(), label="b")
        net.out = nengo.Node(size_in=1, label="out")
        nengo.Connection(net.stim, net.a, synapse=None)
        nengo.Connection(net.a, net.b, function=lambda x: x[0] + x[1], synapse=0.005)
        nengo.Connection(net.b, net.out, synapse=None)
        net.p = nengo.Probe(net.out, synapse=0.005, label="p")
    return net


def train(net, n_iter=15, n_steps=30, target=-0.6, lr=1e-4):
    torch.manual_seed(0)
    module = NengoModule(net)
    module.train()
    opt = torch.optim.Adam(module.parameters(), lr=lr)
    losses = []
    for _ in range(n_iter):
        module.reset()
        out = module(n_steps=n_steps)[net.p]
        loss = (out[:, 10:] - target).square().mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    module.reset()
    with torch.no_grad():
        final = float((module(n_steps=n_steps)[net.p][:, 10:] - target).square().mean())
    return module, losses, final


@pytest.mark.parametrize(
    "settings",
    [{}, {"lif_smoothing": 0.05}, {"surrogate": "fast_sigmoid"}],
    ids=lambda s: ",".join(f"{k}={v}" for k, v in s.items()) or "rate_swap",
)
def test_training_lowers_the_loss(settings):
    net = training_net(**settings)
    module, losses, final = train(net)
    assert np.all(np.isfinite(losses))
    assert final < 0.1 * losses[0], (losses[0], final)
    # the spiking network (eval mode) improved too
    before = NengoModule(net)
    with torch.no_grad():
        loss_before = (before(n_steps=30)[net.p][:, 10:] + 0.6).square().mean()
        module.eval()
        module.reset()
        loss_after = (module(n_steps=30)[net.p][:, 10:] + 0.6).square().mean()
    assert loss_after < 0.2 * loss_before, (float(loss_before), float(loss_after))
