"""NengoDL's extra neuron types (numpy and torch steps) and TruncatedNormal."""

import nengo
import numpy as np
import pytest
import torch

import snntorch_nengo
from snntorch_nengo.dists import TruncatedNormal
from snntorch_nengo.neurons import (
    LeakyReLU,
    SoftLIFRate,
    SpikingLeakyReLU,
    is_native,
    neuron_step,
)

DT = 0.001
STEPS = 1000
N = 40

EXTRA_TYPES = [
    SoftLIFRate(),
    SoftLIFRate(sigma=0.02, tau_rc=0.03, tau_ref=0.001, amplitude=2),
    LeakyReLU(),
    LeakyReLU(negative_slope=0.1, amplitude=0.5),
    SpikingLeakyReLU(),
    SpikingLeakyReLU(negative_slope=0.5, amplitude=2),
]


def make_input(nt, rng):
    # spiking ReLUs need currents of hundreds to spike every few steps
    scale = 400 if nt.spiking else 2
    J = (rng.uniform(-1.5, 2.5, size=N) + rng.normal(0, 0.5, size=(STEPS, N))) * scale
    if not nt.spiking:  # far below threshold, at it, and J == 1 exactly
        J[0, :6] = [-1000.0, -800.0, -300.0, 1.0, 1 + 1e-12, 1 - 1e-12]
    return J


def run_numpy(nt, J, state):
    state = {k: v.copy() for k, v in state.items()}
    outs = []
    for j in J:
        out = np.zeros_like(j)
        nt.step(DT, j.copy(), out, **state)
        outs.append(out)
    return np.array(outs), state


def run_torch(nt, J, state, dtype=torch.float64):
    step = neuron_step(nt)
    st = {k: torch.as_tensor(v[None], dtype=dtype) for k, v in state.items()}
    outs = []
    for j in J:
        out, st = step(nt, DT, torch.as_tensor(j[None], dtype=dtype), st, None)
        outs.append(out[0])
    return torch.stack(outs).numpy(), {k: v[0].numpy() for k, v in st.items()}


@pytest.mark.parametrize("nt", EXTRA_TYPES, ids=repr)
def test_torch_step_matches_numpy_step(nt):
    assert is_native(nt)
    J = make_input(nt, np.random.RandomState(0))
    state = nt.make_state(N, np.random.RandomState(1), dtype=np.float64)
    ref, ref_state = run_numpy(nt, J, state)
    out, new_state = run_torch(nt, J, state)
    assert set(new_state) == set(ref_state) == set(nt.state)
    if nt.spiking:
        assert np.array_equal(out, ref)
        # spikes of both signs, of amplitude / dt
        assert np.any(ref > 0) and np.any(ref < 0)
        assert np.all(np.isin(np.abs(ref) * DT / nt.amplitude, [0, 1, 2]))
    else:
        np.testing.assert_allclose(out, ref, rtol=1e-12, atol=1e-12)
    for k in ref_state:
        np.testing.assert_allclose(new_state[k], ref_state[k], rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("nt", [SpikingLeakyReLU(), SpikingLeakyReLU(0.3, 0.5)], ids=repr)
def test_spiking_leaky_relu_averages_to_leaky_relu(nt):
    J = np.linspace(-100, 200, N)
    rate = np.zeros(N)
    LeakyReLU.step(nt, DT, J, rate)
    state = nt.make_state(N, np.random.RandomState(0))
    out, _ = run_numpy(nt, np.tile(J, (STEPS, 1)), state)
    # (an initial voltage in [0, 1) is up to two spikes from the first negative one)
    np.testing.assert_allclose(
        out.mean(axis=0), rate, atol=2 * nt.amplitude / (DT * STEPS) + 1e-9
    )


def test_spiking_leaky_relu_without_slope_is_spiking_rectified_linear():
    J = make_input(SpikingLeakyReLU(), np.random.RandomState(3))
    state = {"voltage": np.random.RandomState(4).uniform(0, 1, size=N)}
    a, _ = run_numpy(SpikingLeakyReLU(negative_slope=0), J, state)
    b, _ = run_numpy(nengo.SpikingRectifiedLinear(), J, state)
    assert np.array_equal(a, b)


def test_soft_lif_rate_curve():
    J = np.linspace(-2, 6, 801)
    lif, soft, sharp = (np.zeros_like(J) for _ in range(3))
    nengo.LIFRate().step(DT, J, lif)
    SoftLIFRate(sigma=1.0).step(DT, J, soft)
    SoftLIFRate(sigma=1e-3).step(DT, J, sharp)
    assert np.all(soft > 0) and np.all(np.diff(soft) > 0)  # smooth, increasing
    assert np.all(soft >= lif)  # softplus(x) >= max(x, 0)
    np.testing.assert_allclose(sharp[J > 1.2], lif[J > 1.2], rtol=1e-3)
    assert np.all(sharp[J < 0.9] < 1)  # far below LIF rates, but not zero

    # the formula, directly
    sigma, x = 0.5, np.array([-1.0, 0.5, 1.0, 3.0])
    j = sigma * np.log1p(np.exp((x - 1) / sigma))
    expected = 1 / (0.002 + 0.02 * np.log1p(1 / j))
    out = np.zeros_like(x)
    SoftLIFRate(sigma=sigma).step(DT, x, out)
    np.testing.assert_allclose(out, expected, rtol=1e-12)


def test_soft_lif_rate_gradients_finite_and_correct():
    nt = SoftLIFRate(sigma=0.3)
    J = torch.tensor(
        [-2000.0, -300.0, -50.0, -1.0, 0.7, 1.0, 1.2, 3.0, 50.0],
        dtype=torch.float64,
        requires_grad=True,
    )
    step = neuron_step(nt)
    out, _ = step(nt, DT, J[None], {}, None)
    (grad,) = torch.autograd.grad(out.sum(), J)
    assert torch.all(torch.isfinite(grad)) and torch.all(grad >= 0)
    assert torch.all(grad[3:] > 0)
    Jc = torch.tensor([[-1.0, 0.7, 1.0, 1.2, 3.0]], dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda J: step(nt, DT, J, {}, None)[0], (Jc,))
    for dtype in (torch.float32, torch.float64):
        Jf = J.detach().to(dtype).requires_grad_(True)
        out, _ = step(nt, DT, Jf[None], {}, None)
        (grad,) = torch.autograd.grad(out.sum(), Jf)
        assert torch.all(torch.isfinite(out)) and torch.all(torch.isfinite(grad))


@pytest.mark.parametrize("nt", EXTRA_TYPES, ids=repr)
def test_nengo_simulator_and_ours_run_a_network(nt):
    with nengo.Network(seed=3) as net:
        stim = nengo.Node(lambda t: [np.sin(10 * t), np.cos(7 * t)])
        ens = nengo.Ensemble(30, 2, neuron_type=nt)
        out = nengo.Node(size_in=2)
        nengo.Connection(stim, ens)
        nengo.Connection(ens, out, synapse=0.01)
        p_neurons = nengo.Probe(ens.neurons)
        p_out = nengo.Probe(out, synapse=0.02)

    # tuning from gain/bias round-trips (ensembles build)
    gain, bias = nt.gain_bias(np.array([200.0, 300.0]), np.array([-0.5, 0.2]))
    max_rates, intercepts = nt.max_rates_intercepts(gain, bias)
    np.testing.assert_allclose(intercepts, [-0.5, 0.2], atol=1e-8)
    if not isinstance(nt, SoftLIFRate):  # SoftLIFRate smooths the LIF curve
        np.testing.assert_allclose(max_rates, [200, 300], rtol=1e-8)
        np.testing.assert_allclose(nt.rates(1.0, gain, bias)[0] / nt.amplitude, [200, 300])

    with nengo.Simulator(net, progress_bar=False) as ref:
        ref.run_steps(300)
    with snntorch_nengo.Simulator(net, progress_bar=False, dtype="float64") as sim:
        sim.run_steps(300)
    if nt.spiking:
        assert np.array_equal(sim.data[p_neurons], ref.data[p_neurons])
    else:
        np.testing.assert_allclose(
            sim.data[p_neurons], ref.data[p_neurons], rtol=1e-10, atol=1e-9
        )
    np.testing.assert_allclose(sim.data[p_out], ref.data[p_out], atol=1e-8)
    # and it represents its input
    t = ref.trange()
    target = np.stack([np.sin(10 * t), np.cos(7 * t)], axis=1)
    assert np.sqrt(np.mean((ref.data[p_out][150:] - target[150:]) ** 2)) < 0.3


def test_truncated_normal_bounds_and_moments():
    rng = np.random.RandomState(0)
    samples = TruncatedNormal().sample(200000, rng=rng)
    assert samples.shape == (200000,)
    assert np.all(np.abs(samples) <= 2)
    # moments of a standard normal truncated at +-2
    assert abs(samples.mean()) < 0.01
    assert abs(samples.std() - 0.8796) < 0.01

    dist = TruncatedNormal(mean=1.5, stddev=0.4, limit=0.3)
    assert dist.limit == 0.3
    samples = dist.sample(300, 50, rng=rng)
    assert samples.shape == (300, 50)
    assert samples.min() >= 1.2 and samples.max() <= 1.8
    assert abs(samples.mean() - 1.5) < 0.01
    # nearly uniform inside a limit much narrower than stddev
    assert abs(samples.std() - 0.6 / np.sqrt(12)) < 0.01

    assert TruncatedNormal(stddev=3).limit == 6
    assert np.array_equal(
        TruncatedNormal().sample(10, rng=np.random.RandomState(5)),
        TruncatedNormal().sample(10, rng=np.random.RandomState(5)),
    )


def test_truncated_normal_as_connection_transform():
    with nengo.Network(seed=0) as net:
        a = nengo.Node(np.ones(20))
        b = nengo.Node(size_in=30)
        conn = nengo.Connection(a, b, transform=TruncatedNormal(stddev=0.1))
    with nengo.Simulator(net, progress_bar=False) as sim:
        weights = sim.data[conn].weights
    assert weights.shape == (30, 20)
    assert np.all(np.abs(weights) <= 0.2)
