import nengo
import numpy as np
import pytest
import torch

from snntorch_nengo.synapses import is_native_synapse, synapse_step

DT = 0.001
STEPS = 500

SYNAPSES = [
    nengo.Lowpass(0.005),
    nengo.Lowpass(0),
    nengo.Alpha(0.01),
    nengo.Lowpass(0.005).combine(nengo.Lowpass(0.02)),  # double exponential
    nengo.LinearFilter([1], [0.001, 1]),
    nengo.LinearFilter([1, 0.5], [0.001, 0.03, 1]),  # NoD with a zero
    nengo.LinearFilter([0.1, 0.2], [1, -0.3], analog=False),  # General (D != 0)
    nengo.LinearFilter([0.5], [1], analog=False),  # NoX gain
    nengo.synapses.Triangle(0.01),
    nengo.synapses.Triangle(0),
]


def nengo_variant(synapse, shape):
    state = synapse.make_state(shape, shape, DT, dtype=np.float64)
    return type(synapse.make_step(shape, shape, DT, None, state)).__name__


def test_variants_covered():
    variants = {
        nengo_variant(s, shape)
        for s in SYNAPSES
        for shape in [(1,), (3,), (2, 3)]
        if isinstance(s, nengo.LinearFilter)
    }
    assert {"NoX", "OneX", "OneXScalar", "NoD", "General"} <= variants


def run_nengo(synapse, x, dtype=np.float64):
    shape = x.shape[1:]
    state = synapse.make_state(shape, shape, DT, dtype=dtype)
    step = synapse.make_step(shape, shape, DT, None, state)
    ys = [np.array(step(i * DT, xi), copy=True).reshape(shape) for i, xi in enumerate(x)]
    return np.array(ys), state


def run_torch(synapse, x, B):
    """x: (steps, B, *shape)"""
    shape = x.shape[2:]
    state0 = synapse.make_state(shape, shape, DT, dtype=x.dtype)
    state = {
        k: torch.as_tensor(np.repeat(v[None], B, axis=0)) for k, v in state0.items()
    }
    step = synapse_step(synapse, DT)
    ys = []
    for xi in x:
        y, state = step(torch.as_tensor(xi), state)
        ys.append(y)
    return torch.stack(ys).numpy(), {k: v.numpy() for k, v in state.items()}


@pytest.mark.parametrize("shape", [(1,), (3,), (2, 3)])
@pytest.mark.parametrize("synapse", SYNAPSES, ids=repr)
def test_matches_nengo(synapse, shape):
    assert is_native_synapse(synapse)
    B = 2
    rng = np.random.RandomState(0)
    x = rng.uniform(-1, 1, size=(STEPS, B) + shape)

    y, state = run_torch(synapse, x, B)
    assert y.shape == (STEPS, B) + shape
    for b in range(B):
        y_ref, state_ref = run_nengo(synapse, x[:, b])
        assert np.allclose(y[:, b], y_ref, atol=1e-12, rtol=1e-12)
        for k in state_ref:
            assert np.allclose(state[k][b], state_ref[k], atol=1e-12, rtol=1e-12), k


@pytest.mark.parametrize(
    "synapse", [nengo.Lowpass(0.005), nengo.Alpha(0.01)], ids=repr
)
def test_float32_and_gradients(synapse):
    shape = (3,)
    x = torch.randn(20, 2, *shape, dtype=torch.float64, requires_grad=True)
    y64, _ = run_torch(synapse, x.detach().numpy(), 2)
    y32, _ = run_torch(synapse, x.detach().numpy().astype(np.float32), 2)
    assert y32.dtype == np.float32
    assert np.allclose(y32, y64, atol=1e-5)

    state0 = synapse.make_state(shape, shape, DT, dtype=np.float64)
    step = synapse_step(synapse, DT)

    def f(x):
        state = {k: torch.as_tensor(np.repeat(v[None], 2, axis=0))
                 for k, v in state0.items()}
        ys = []
        for xi in x:
            y, state = step(xi, state)
            ys.append(y)
        return torch.stack(ys)

    assert torch.autograd.gradcheck(f, (x[:5].detach().requires_grad_(True),))


def test_inputs_not_modified():
    for synapse in SYNAPSES:
        shape = (3,)
        state0 = synapse.make_state(shape, shape, DT, dtype=np.float64)
        state = {
            k: torch.as_tensor(v[None]) + (0.0 if k == "Xi" else 0.5)
            for k, v in state0.items()
        }
        before = {k: v.clone() for k, v in state.items()}
        x = torch.ones((1, 3), dtype=torch.float64)
        synapse_step(synapse, DT)(x, state)
        for k in state:
            assert torch.equal(state[k], before[k])
        assert torch.equal(x, torch.ones((1, 3), dtype=torch.float64))


def test_non_native():
    class MyFilter(nengo.LinearFilter):
        def make_step(self, shape_in, shape_out, dt, rng, state):
            return super().make_step(shape_in, shape_out, dt, rng, state)

    class ParamsOnly(nengo.Lowpass):
        pass

    assert not is_native_synapse(MyFilter([1], [0.1, 1]))
    assert is_native_synapse(ParamsOnly(0.1))
    assert not is_native_synapse(nengo.processes.WhiteNoise())
    with pytest.raises(TypeError):
        synapse_step(nengo.processes.WhiteNoise(), DT)
