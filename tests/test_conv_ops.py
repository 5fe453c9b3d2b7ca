"""ConvInc / ConvTransposeInc against Nengo's reference simulator.

Nengo's numpy simulator implements 1-D and 2-D convolutions only, so 3-D
transforms are checked against an independent N-d numpy implementation of the
same conventions (which is itself checked against Nengo for 1-D and 2-D).
"""

import itertools

import nengo
import numpy as np
import pytest

import snntorch_nengo

ATOL = 1e-8
N_STEPS = 20


def _make_transform(transpose, spatial, channels, n_filters, kernel_size, strides,
                    padding, channels_last, groups=1, seed=0):
    shape = spatial + (channels,) if channels_last else (channels,) + spatial
    if transpose:
        return nengo.ConvolutionTranspose(
            n_filters, shape, kernel_size=kernel_size, strides=strides,
            padding=padding, channels_last=channels_last,
            init=nengo.dists.Uniform(-1, 1),
        )
    return nengo.Convolution(
        n_filters, shape, kernel_size=kernel_size, strides=strides, padding=padding,
        channels_last=channels_last, groups=groups,
    )


def _input_fn(size):
    freqs = np.linspace(1, 7, size)
    phases = np.linspace(0, np.pi, size)
    return lambda t: np.sin(2 * np.pi * freqs * t + phases)


def _node_net(transform, seed=0):
    with nengo.Network(seed=seed) as net:
        u = nengo.Node(_input_fn(transform.size_in))
        v = nengo.Node(size_in=transform.size_out)
        conn = nengo.Connection(u, v, transform=transform, synapse=None)
        p = nengo.Probe(v)
    return net, conn, p


def _neurons_net(transform, seed=0):
    with nengo.Network(seed=seed) as net:
        u = nengo.Node(_input_fn(transform.size_in))
        ens = nengo.Ensemble(transform.size_out, 1)
        nengo.Connection(u, ens.neurons, transform=transform, synapse=0.005)
        p_in = nengo.Probe(ens.neurons, "input")
        p_out = nengo.Probe(ens.neurons, synapse=0.01)
    return net, (p_in, p_out)


def _compare(net, probes, n_steps=N_STEPS):
    with nengo.Simulator(net, progress_bar=False) as ref:
        ref.run_steps(n_steps)
    with snntorch_nengo.Simulator(net, progress_bar=False) as sim:
        sim.run_steps(n_steps)
    for p in probes:
        expected, actual = np.asarray(ref.data[p]), np.asarray(sim.data[p])
        assert actual.shape == expected.shape
        assert np.allclose(actual, expected, atol=ATOL, rtol=0), np.max(
            np.abs(actual - expected)
        )
        assert np.max(np.abs(expected)) > 0  # non-trivial comparison


CASES_1D = [((9,), (3,)), ((8,), (2,))]
CASES_2D = [((7, 6), (3, 2)), ((6, 8), (2, 3))]


@pytest.mark.parametrize("transpose", [False, True])
@pytest.mark.parametrize("channels_last", [True, False])
@pytest.mark.parametrize("stride", [1, 2])
@pytest.mark.parametrize("padding", ["same", "valid"])
@pytest.mark.parametrize("spatial, kernel", CASES_1D + CASES_2D)
def test_node_to_node(spatial, kernel, padding, stride, channels_last, transpose):
    tr = _make_transform(transpose, spatial, 3, 4, kernel, (stride,) * len(spatial),
                         padding, channels_last)
    net, _, p = _node_net(tr)
    _compare(net, [p])


@pytest.mark.parametrize("transpose", [False, True])
@pytest.mark.parametrize("channels_last", [True, False])
@pytest.mark.parametrize("stride", [1, 2])
@pytest.mark.parametrize("padding", ["same", "valid"])
@pytest.mark.parametrize("spatial, kernel", [((9,), (3,)), ((6, 7), (3, 3))])
def test_node_to_neurons(spatial, kernel, padding, stride, channels_last, transpose):
    tr = _make_transform(transpose, spatial, 2, 3, kernel, (stride,) * len(spatial),
                         padding, channels_last)
    net, probes = _neurons_net(tr)
    _compare(net, probes, n_steps=100)


@pytest.mark.parametrize("channels_last", [True, False])
@pytest.mark.parametrize("groups", [2, 4])
@pytest.mark.parametrize("spatial, kernel", [((9,), (3,)), ((6, 7), (3, 2))])
def test_groups(spatial, kernel, groups, channels_last):
    tr = _make_transform(False, spatial, 4, 8, kernel, (1,) * len(spatial), "same",
                         channels_last, groups=groups)
    net, _, p = _node_net(tr)
    _compare(net, [p])


@pytest.mark.parametrize("channels_last", [True, False])
@pytest.mark.parametrize("padding", ["same", "valid"])
@pytest.mark.parametrize("stride", [2, 3])
def test_transpose_explicit_output_shape(stride, padding, channels_last):
    """Non-default (larger) valid output shapes of ConvolutionTranspose."""
    spatial, kernel = (4, 3), (3, 2)
    base = _make_transform(True, spatial, 2, 3, kernel, (stride, stride), padding,
                           channels_last)
    default = base.output_shape.spatial_shape
    for extra in itertools.product(range(stride), repeat=2):
        out_spatial = tuple(d + e for d, e in zip(default, extra))
        out_shape = out_spatial + (3,) if channels_last else (3,) + out_spatial
        try:
            tr = nengo.ConvolutionTranspose(
                3, base.input_shape.shape, output_shape=out_shape, kernel_size=kernel,
                strides=(stride, stride), padding=padding, channels_last=channels_last,
            )
        except nengo.exceptions.ValidationError:
            continue
        net, _, p = _node_net(tr)
        _compare(net, [p], n_steps=3)


def test_explicit_kernel():
    """A predefined ``init`` kernel of shape ``kernel_size + (in, filters)``."""
    rng = np.random.RandomState(3)
    kernel = rng.uniform(-1, 1, (3, 2, 3, 5))
    for transpose in (False, True):
        cls = nengo.ConvolutionTranspose if transpose else nengo.Convolution
        tr = cls(5, (6, 5, 3), kernel_size=(3, 2), strides=(2, 1), padding="same",
                 init=kernel)
        net, _, p = _node_net(tr)
        _compare(net, [p], n_steps=3)


# --- 3-D: Nengo's numpy simulator stops at 2-D; use an N-d numpy reference ---


def _pads(n, m, k, s, padding):
    p = max((m - 1) * s + k - n, 0) if padding == "same" else 0
    return p // 2, p - p // 2


def ref_conv(x, w, tr):
    """Forward convolution per nengo's conventions, channels_last arrays."""
    d = tr.dimensions
    in_sp, out_sp = tr.input_shape.spatial_shape, tr.output_shape.spatial_shape
    pads = [_pads(n, m, k, s, tr.padding)
            for n, m, k, s in zip(in_sp, out_sp, tr.kernel_size, tr.strides)]
    xp = np.pad(x, pads + [(0, 0)])
    g = tr.groups
    cg, kg = x.shape[-1] // g, tr.n_filters // g
    y = np.zeros(out_sp + (tr.n_filters,))
    for pos in np.ndindex(*out_sp):
        sl = tuple(slice(p * s, p * s + k)
                   for p, s, k in zip(pos, tr.strides, tr.kernel_size))
        win = xp[sl]
        for gi in range(g):
            wg = w[..., gi * kg:(gi + 1) * kg]
            y[pos + (slice(gi * kg, (gi + 1) * kg),)] = np.tensordot(
                win[..., gi * cg:(gi + 1) * cg], wg, axes=d + 1)
    return y


def ref_conv_transpose(x, w, tr):
    """Adjoint of the forward convolution from output_shape to input_shape."""
    in_sp, out_sp = tr.input_shape.spatial_shape, tr.output_shape.spatial_shape
    pads = [_pads(n, m, k, s, tr.padding)
            for n, m, k, s in zip(out_sp, in_sp, tr.kernel_size, tr.strides)]
    ypad = np.zeros(tuple(n + a + b for n, (a, b) in zip(out_sp, pads))
                    + (tr.n_filters,))
    for pos in np.ndindex(*in_sp):
        sl = tuple(slice(p * s, p * s + k)
                   for p, s, k in zip(pos, tr.strides, tr.kernel_size))
        # w: kernel + (in_channels, n_filters)
        ypad[sl] += np.tensordot(x[pos], w, axes=([0], [-2]))
    crop = tuple(slice(a, a + n) for n, (a, _) in zip(out_sp, pads))
    return ypad[crop]


def _ref_apply(tr, w, xflat):
    x = xflat.reshape(tr.input_shape.shape)
    if not tr.channels_last:
        x = np.moveaxis(x, 0, -1)
    f = ref_conv_transpose if isinstance(tr, nengo.ConvolutionTranspose) else ref_conv
    y = f(x, w, tr)
    if not tr.channels_last:
        y = np.moveaxis(y, -1, 0)
    return y.ravel()


def _check_against_ref(tr, n_steps=3):
    net, conn, p = _node_net(tr)
    with snntorch_nengo.Simulator(net, progress_bar=False) as sim:
        sim.run_steps(n_steps)
        w = np.asarray(sim.data[conn].weights)
    u = _input_fn(tr.size_in)
    expected = np.stack([_ref_apply(tr, w, u(t)) for t in sim.trange()])
    actual = np.asarray(sim.data[p])
    assert actual.shape == expected.shape
    assert np.allclose(actual, expected, atol=ATOL, rtol=0)


@pytest.mark.parametrize("transpose", [False, True])
@pytest.mark.parametrize("padding", ["same", "valid"])
@pytest.mark.parametrize("stride", [1, 2])
def test_reference_matches_nengo_2d(stride, padding, transpose):
    """The N-d numpy reference agrees with Nengo's own 2-D implementation."""
    tr = _make_transform(transpose, (7, 6), 3, 2, (3, 2), (stride, stride), padding,
                         False)
    net, conn, p = _node_net(tr)
    with nengo.Simulator(net, progress_bar=False) as ref:
        ref.run_steps(3)
        w = ref.data[conn].weights
    u = _input_fn(tr.size_in)
    expected = np.stack([_ref_apply(tr, w, u(t)) for t in ref.trange()])
    assert np.allclose(ref.data[p], expected, atol=1e-12, rtol=0)


@pytest.mark.parametrize("transpose", [False, True])
@pytest.mark.parametrize("channels_last", [True, False])
@pytest.mark.parametrize("stride", [1, 2])
@pytest.mark.parametrize("padding", ["same", "valid"])
def test_3d(padding, stride, channels_last, transpose):
    tr = _make_transform(transpose, (5, 4, 6), 2, 3, (3, 2, 3), (stride,) * 3,
                         padding, channels_last)
    _check_against_ref(tr)


def test_3d_groups():
    tr = _make_transform(False, (5, 4, 6), 4, 6, (3, 2, 3), (2, 1, 1), "same",
                         True, groups=2)
    _check_against_ref(tr)


def test_minibatch():
    tr = _make_transform(True, (6, 5), 2, 3, (3, 3), (2, 2), "same", False)
    net, _, p = _node_net(tr)
    with snntorch_nengo.Simulator(net, progress_bar=False) as sim1:
        sim1.run_steps(5)
    with snntorch_nengo.Simulator(net, progress_bar=False, minibatch_size=3) as sim3:
        sim3.run_steps(5)
    batch = np.asarray(sim3.data[p])
    assert batch.shape == (3,) + np.asarray(sim1.data[p]).shape
    for b in range(3):
        assert np.allclose(batch[b], sim1.data[p], atol=ATOL, rtol=0)
