"""engine/signals.py: Nengo signals as tensors, checked against numpy's views."""

import nengo
import numpy as np
import pytest
import torch
from nengo.builder.operator import Copy, DotInc, Reset
from nengo.builder.signal import Signal

from snntorch_nengo.engine.signals import (
    SignalLayout,
    SignalValues,
    View,
    sparse_data,
    sparse_indices,
)

BASE = Signal(np.arange(24, dtype=float).reshape(4, 6), name="base")
VIEWS = {
    "full": BASE,
    "reshape": BASE.reshape((6, 4)),
    "rows": BASE[1:3],
    "column": BASE[:, 2],
    "strided": BASE[::2, 1::2],
}


@pytest.mark.parametrize("name", sorted(VIEWS))
def test_view_kinds(name):
    view = View(VIEWS[name])
    expected = {
        "full": "full",
        "reshape": "full",  # the same elements in the same order
        "rows": "slice",
        "column": "index",
        "strided": "index",
    }[name]
    assert view.kind == expected
    assert view.base is BASE
    assert view.same_shape == (name == "full")
    if view.kind == "slice":
        assert (view.start, view.stop) == (6, 18)


def _values(batch):
    layout = SignalLayout([Reset(BASE)], torch.float64)
    for sig in VIEWS.values():
        layout.add(sig)
    start = torch.arange(24, dtype=torch.float64).reshape(4, 6)
    start = start.expand(batch, 4, 6).clone() + 100 * torch.arange(batch)[:, None, None]
    return SignalValues(layout, {BASE: start}, batch), start


@pytest.mark.parametrize("name", sorted(VIEWS))
def test_read_equals_numpy_view(name):
    sig = VIEWS[name]
    sv, start = _values(batch=2)
    for b in range(2):
        expected = sig.initial_value + 100 * b  # numpy's own view of the base
        np.testing.assert_array_equal(sv.read(sig)[b].numpy(), expected)


@pytest.mark.parametrize("name", sorted(VIEWS))
@pytest.mark.parametrize("inc", [False, True])
def test_write_through_a_view_equals_numpy(name, inc):
    sig = VIEWS[name]
    sv, start = _values(batch=2)
    rng = np.random.RandomState(0)
    value = rng.randn(2, *sig.shape)
    (sv.inc if inc else sv.set)(sig, torch.as_tensor(value))
    for b in range(2):
        expected = start[b].numpy().copy()
        target = np.lib.stride_tricks.as_strided(
            expected.reshape(-1)[sig.elemoffset :],
            shape=sig.shape,
            strides=tuple(s * expected.itemsize for s in sig.elemstrides),
        )
        if inc:
            target += value[b]
        else:
            target[...] = value[b]
        np.testing.assert_array_equal(sv.values[BASE][b].numpy(), expected)
    # functional: the tensor that was there is unchanged
    assert sv.values[BASE] is not start


def test_unbatched_value_broadcasts_over_the_batch():
    sig = VIEWS["rows"]
    sv, start = _values(batch=3)
    sv.set(sig, torch.ones(sig.shape, dtype=torch.float64))
    assert torch.equal(sv.values[BASE][:, 1:3], torch.ones(3, 2, 6, dtype=torch.float64))
    assert torch.equal(sv.values[BASE][:, 0], start[:, 0])


def test_layout_dynamic_constant_and_shared():
    x = Signal(np.zeros(3), name="x")
    w = Signal(np.ones((2, 3)), name="w")
    y = Signal(np.zeros(2), name="y")
    t = Signal(np.zeros(1), name="t")
    ops = [DotInc(w, x, y), Copy(x[:2], y, inc=True), Reset(t)]
    layout = SignalLayout(ops, torch.float32, shared=[t])
    assert layout.dynamic == {y, t}  # written; x and w are only read
    assert layout.batched(y) and not layout.batched(x) and not layout.batched(w)
    assert not layout.batched(t)  # written, but the same for every batch item
    assert set(layout.bases) == {x, w, y, t}
    init = layout.initial_value(w)
    assert init.dtype == torch.float32 and torch.equal(init, torch.ones(2, 3))
    steps = Signal(np.zeros(1, dtype=np.int64), name="step")
    assert layout.initial_value(steps).dtype == torch.int64  # integers keep their kind


def test_sparse_data_and_indices_match_scipy_and_nengo():
    scipy_sparse = pytest.importorskip("scipy.sparse")
    dense = np.array([[0, 2.0, 0], [1.0, 0, 3.0]])
    coo = scipy_sparse.csr_matrix(dense)
    rows, cols = sparse_indices(coo)
    np.testing.assert_array_equal(dense[rows, cols], sparse_data(coo))
    nengo_sparse = nengo.transforms.SparseMatrix(
        indices=[[0, 1], [1, 0], [1, 2]], data=[2.0, 1.0, 3.0], shape=(2, 3)
    )
    rows, cols = sparse_indices(nengo_sparse)
    np.testing.assert_array_equal(dense[rows, cols], sparse_data(nengo_sparse))
