import warnings

import nengo
import numpy as np
import pytest
import torch

from snntorch_nengo.neurons import is_native, neuron_step
from snntorch_nengo.neurons import fallback as fallback_module

DT = 0.001
N = 50
STEPS = 1000

RATE_TYPES = [
    nengo.RectifiedLinear(),
    nengo.RectifiedLinear(amplitude=0.5),
    nengo.Sigmoid(),
    nengo.Sigmoid(tau_ref=0.005),
    nengo.Tanh(),
    nengo.Tanh(tau_ref=0.01),
    nengo.LIFRate(),
    nengo.LIFRate(tau_rc=0.03, tau_ref=0.001, amplitude=2),
    nengo.AdaptiveLIFRate(),
    nengo.AdaptiveLIFRate(tau_n=0.1, inc_n=0.5, amplitude=0.5),
]
DETERMINISTIC_SPIKING = [
    nengo.SpikingRectifiedLinear(),
    nengo.SpikingRectifiedLinear(amplitude=2),
    nengo.LIF(),
    nengo.LIF(tau_rc=0.03, min_voltage=-1, amplitude=2),
    nengo.AdaptiveLIF(),
    nengo.AdaptiveLIF(tau_n=0.1, inc_n=0.5, min_voltage=-0.5),
    nengo.Izhikevich(),
    nengo.Izhikevich(reset_voltage=-55, reset_recovery=4),
    nengo.RegularSpiking(nengo.LIFRate()),
    nengo.RegularSpiking(nengo.Tanh(), amplitude=0.5),
]
STOCHASTIC = [
    nengo.StochasticSpiking(nengo.RectifiedLinear()),
    nengo.StochasticSpiking(nengo.Tanh()),
    nengo.PoissonSpiking(nengo.LIFRate()),
    nengo.PoissonSpiking(nengo.Tanh(), amplitude=2),
]
ALL_TYPES = RATE_TYPES + DETERMINISTIC_SPIKING + STOCHASTIC


def is_rates_to_spikes(nt):
    return isinstance(nt, nengo.neurons.RatesToSpikesNeuronType)


def make_input(nt, rng, n=N, steps=STEPS):
    """Random input: currents, or (for RatesToSpikes types) base-type rates."""
    if isinstance(nt, nengo.Izhikevich):
        J = rng.uniform(-40, 30, size=(steps, n))
    else:
        J = rng.uniform(-1, 4, size=(steps, n))
    if is_rates_to_spikes(nt):  # the spiking op's input is the base-type rate
        base = nt.base_type
        rates = np.zeros_like(J)
        for j, r in zip(J, rates):
            base.step(DT, j, r)
        J = rates
        if base.negative:
            J = J * np.sign(rng.uniform(-1, 1, size=J.shape))
    return J


def make_state(nt, seed, n=N, dtype=np.float64):
    state = nt.make_state(n, np.random.RandomState(seed), dtype=dtype)
    state.pop("rng", None)
    if is_rates_to_spikes(nt):  # base-type state lives in the other op
        for name in nt.base_type.state:
            state.pop(name, None)
    return state


def run_nengo(nt, J, state, rng):
    state = {k: v.copy() for k, v in state.items()}
    extra = {"rng": rng} if isinstance(
        nt, (nengo.StochasticSpiking, nengo.PoissonSpiking)
    ) else {}
    outs = []
    for j in J:
        out = np.zeros_like(j)
        nt.step(DT, j.copy(), out, **state, **extra)
        outs.append(out)
    return np.array(outs), state


def run_torch(nt, J, state, rng, dtype=torch.float64):
    """J: (steps, B, n); state values: (B, n)."""
    step = neuron_step(nt)
    st = {k: torch.as_tensor(v, dtype=dtype) for k, v in state.items()}
    outs = []
    for j in J:
        out, st = step(nt, DT, torch.as_tensor(j, dtype=dtype), st, rng)
        outs.append(out)
    return torch.stack(outs).numpy(), {k: v.numpy() for k, v in st.items()}


@pytest.mark.parametrize("nt", ALL_TYPES, ids=repr)
def test_matches_nengo(nt):
    assert is_native(nt)
    rng = np.random.RandomState(0)
    J = make_input(nt, rng)
    state = make_state(nt, 1)

    ref_out, ref_state = run_nengo(nt, J, state, np.random.RandomState(3))
    out, new_state = run_torch(
        nt,
        J[:, None, :],
        {k: v[None] for k, v in state.items()},
        np.random.RandomState(3),
    )
    assert out.shape == (STEPS, 1, N)
    if nt.spiking:
        assert np.any(ref_out != 0)
        assert np.array_equal(out[:, 0], ref_out)
    else:
        assert np.allclose(out[:, 0], ref_out, atol=1e-10, rtol=1e-12)
    assert set(new_state) == set(ref_state)
    for k in ref_state:
        assert np.allclose(new_state[k][0], ref_state[k], atol=1e-10, rtol=1e-12), k


@pytest.mark.parametrize("nt", DETERMINISTIC_SPIKING + STOCHASTIC, ids=repr)
def test_float32_spikes_match_nengo(nt):
    J = make_input(nt, np.random.RandomState(0)).astype(np.float32)
    state = make_state(nt, 1, dtype=np.float32)
    ref_out, _ = run_nengo(nt, J, state, np.random.RandomState(3))
    out, _ = run_torch(
        nt,
        J[:, None],
        {k: v[None] for k, v in state.items()},
        np.random.RandomState(3),
        dtype=torch.float32,
    )
    assert out.dtype == np.float32
    assert np.array_equal(out[:, 0], ref_out)


@pytest.mark.parametrize("nt", RATE_TYPES + DETERMINISTIC_SPIKING, ids=repr)
def test_batch_equals_independent_runs(nt):
    B = 3
    rng = np.random.RandomState(5)
    Js = [make_input(nt, rng, steps=200) for _ in range(B)]
    states = [make_state(nt, 10 + b) for b in range(B)]

    out, new_state = run_torch(
        nt,
        np.stack(Js, axis=1),
        {k: np.stack([s[k] for s in states]) for k in states[0]},
        None,
    )
    for b in range(B):
        out_b, state_b = run_torch(
            nt, Js[b][:, None], {k: v[None] for k, v in states[b].items()}, None
        )
        assert np.array_equal(out[:, b], out_b[:, 0])
        for k in state_b:
            assert np.array_equal(new_state[k][b], state_b[k][0])


@pytest.mark.parametrize("nt", RATE_TYPES, ids=repr)
def test_float32_close_to_float64(nt):
    rng = np.random.RandomState(2)
    J = make_input(nt, rng, steps=100)[:, None]
    state = {k: v[None] for k, v in make_state(nt, 1).items()}
    out64, _ = run_torch(nt, J, state, None, dtype=torch.float64)
    out32, _ = run_torch(nt, J, state, None, dtype=torch.float32)
    assert out32.dtype == np.float32
    # LIF rates are ill-conditioned just above threshold (and adaptation feeds
    # float32 rounding back into J), so measure errors against the rate scale
    scale = np.abs(out64).max()
    assert np.allclose(out32, out64, rtol=1e-4, atol=1e-4 * scale)


@pytest.mark.parametrize("nt", RATE_TYPES, ids=repr)
def test_rate_gradcheck(nt):
    # inputs away from the kinks (RectifiedLinear at 0, LIFRate at 1)
    J = torch.tensor(
        [[-0.7, -0.2, 0.3, 0.8, 1.3, 2.5, 4.0]], dtype=torch.float64, requires_grad=True
    )
    state = {k: torch.as_tensor(v[None], dtype=torch.float64) + 0.1
             for k, v in nt.make_state(J.shape[1], np.random.RandomState(0),
                                       dtype=np.float64).items()}
    for v in state.values():
        v.requires_grad_(True)
    step = neuron_step(nt)
    keys = sorted(state)

    def f(J, *svals):
        out, new = step(nt, DT, J, dict(zip(keys, svals)), None)
        return (out,) + tuple(new[k] for k in keys)

    assert torch.autograd.gradcheck(f, (J,) + tuple(state[k] for k in keys))


@pytest.mark.parametrize("amplitude", [1, 0.5])
def test_rectified_linear_matches_torch_relu(amplitude):
    """Values and gradients as ``amplitude * torch.nn.ReLU``, the kink included:
    a net trained here and its torch twin take the same steps."""
    J = torch.tensor([[-1.0, -0.0, 0.0, 1e-30, 2.0]], dtype=torch.float64,
                     requires_grad=True)
    twin = J.detach().clone().requires_grad_(True)
    out, _ = neuron_step(nengo.RectifiedLinear(amplitude=amplitude))(
        nengo.RectifiedLinear(amplitude=amplitude), DT, J, {}, None
    )
    expected = amplitude * torch.nn.ReLU()(twin)
    assert torch.equal(out, expected)
    weights = torch.arange(1.0, 6.0, dtype=torch.float64)
    (out * weights).sum().backward()
    (expected * weights).sum().backward()
    assert torch.equal(J.grad, twin.grad)


@pytest.mark.parametrize(
    "nt",
    [
        nengo.LIFRate(),
        nengo.AdaptiveLIFRate(),
        nengo.RectifiedLinear(),
        nengo.SpikingRectifiedLinear(),
        nengo.LIF(),
        nengo.LIF(min_voltage=-1),
        nengo.AdaptiveLIF(),
        nengo.Izhikevich(),
    ],
    ids=repr,
)
def test_no_nan_gradients(nt):
    n = 40
    # ramps through, below and above threshold (including exactly J == 1)
    J0 = torch.linspace(-2, 3, n, dtype=torch.float64)[None]
    J0[0, n // 2] = 1.0
    J = J0.clone().requires_grad_(True)
    state = {
        k: torch.as_tensor(v[None], dtype=torch.float64).requires_grad_(True)
        for k, v in nt.make_state(n, np.random.RandomState(0), dtype=np.float64).items()
    }
    step = neuron_step(nt)
    st, total = state, 0
    for i in range(100):
        scale = 1.0 - 2.0 * (i % 10) / 10  # J crosses below threshold repeatedly
        out, st = step(nt, DT, J * scale, st, None)
        total = total + out.sum() + sum(v.sum() for v in st.values())
    total.backward()
    assert torch.isfinite(J.grad).all()
    for v in state.values():
        assert torch.isfinite(v.grad).all()


def test_registry_dispatch():
    assert is_native(nengo.LIF())
    assert not is_native(nengo.Direct())

    class ParamsOnly(nengo.LIF):
        def __init__(self):
            super().__init__(tau_rc=0.05)

    assert is_native(ParamsOnly())
    assert neuron_step(ParamsOnly()) is neuron_step(nengo.LIF())


class MyNeuron(nengo.RectifiedLinear):
    state = {"count": nengo.dists.Choice([0])}

    def step(self, dt, J, output, count):
        output[...] = 2 * np.maximum(J, 0.5) ** 2
        count += output


def test_fallback_custom_type(monkeypatch):
    monkeypatch.setattr(fallback_module, "_warned", set())
    nt = MyNeuron()
    assert not is_native(nt)
    step = neuron_step(nt)

    B, n = 2, 5
    rng = np.random.RandomState(0)
    J = rng.uniform(-1, 2, size=(10, B, n))
    state = {"count": torch.zeros((B, n), dtype=torch.float64)}
    ref_state = {"count": np.zeros((B, n))}
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        for j in J:
            Jt = torch.as_tensor(j)
            out, new_state = step(nt, DT, Jt, state, None)
            assert torch.equal(state["count"], torch.as_tensor(ref_state["count"]))
            for b in range(B):
                ref_out = np.zeros(n)
                nt.step(DT, j[b], ref_out, ref_state["count"][b])
                assert np.array_equal(out[b].numpy(), ref_out)
            assert out.dtype == Jt.dtype
            state = new_state
        assert np.array_equal(state["count"].numpy(), ref_state["count"])
    messages = [str(w.message) for w in record]
    assert len(messages) == 1
    assert "MyNeuron" in messages[0] and "numpy" in messages[0]
