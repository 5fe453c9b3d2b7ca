"""Learning rule operators (PES, BCM, Oja, Voja, RLS) in torch.

Each maker follows the ``make_step`` of the matching operator in
``nengo.builder.learning_rules``, with the same order of floating point
operations. Every signal may carry a leading batch dimension (dynamic signals
do, read-only ones do not); batch items are independent, so the formulas are
written for ``(..., n)`` vectors and ``(..., post, pre)`` matrices and rely on
broadcasting. Writes are functional (new tensors), so autograd works.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np
import torch
from nengo.builder.learning_rules import SimBCM, SimOja, SimPES, SimRLS, SimVoja
from nengo.exceptions import BuildError

from . import OpRegistry

if TYPE_CHECKING:
    from ..signals import SignalValues
    from . import StepContext


def _outer(a, b):
    """``np.outer`` on the last axis of ``a`` and ``b``; leading dims broadcast."""
    return a[..., :, None] * b[..., None, :]


def _vector(value, batched):
    """Flatten a (possibly batched) signal value to ``(..., n)`` like np.outer."""
    return value.reshape((value.shape[0], -1) if batched else (-1,))


@OpRegistry.declare(SimPES)
def make_sim_pes(op: SimPES, ctx: StepContext) -> Callable[[SignalValues], None]:
    pre_batched, err_batched = ctx.batched(op.pre_filtered), ctx.batched(op.error)
    n_neurons = op.pre_filtered.shape[0]
    alpha = -op.learning_rate * ctx.dt / n_neurons

    def step_sim_pes(sv):
        pre = _vector(sv.read(op.pre_filtered), pre_batched)
        error = _vector(sv.read(op.error), err_batched)
        sv.set(op.delta, _outer(alpha * error, pre))

    return step_sim_pes


@OpRegistry.declare(SimBCM)
def make_sim_bcm(op: SimBCM, ctx: StepContext) -> Callable[[SignalValues], None]:
    pre_batched = ctx.batched(op.pre_filtered)
    post_batched = ctx.batched(op.post_filtered)
    theta_batched = ctx.batched(op.theta)
    alpha = op.learning_rate * ctx.dt

    def step_sim_bcm(sv):
        pre = _vector(sv.read(op.pre_filtered), pre_batched)
        post = _vector(sv.read(op.post_filtered), post_batched)
        theta = _vector(sv.read(op.theta), theta_batched)
        sv.set(op.delta, _outer(alpha * post * (post - theta), pre))

    return step_sim_bcm


@OpRegistry.declare(SimOja)
def make_sim_oja(op: SimOja, ctx: StepContext) -> Callable[[SignalValues], None]:
    pre_batched = ctx.batched(op.pre_filtered)
    post_batched = ctx.batched(op.post_filtered)
    alpha = op.learning_rate * ctx.dt
    beta = op.beta

    def step_sim_oja(sv):
        weights = sv.read(op.weights)
        pre = _vector(sv.read(op.pre_filtered), pre_batched)
        post = _vector(sv.read(op.post_filtered), post_batched)
        # perform forgetting
        post_squared = alpha * post * post
        delta = -beta * weights * post_squared[..., :, None]
        # perform update
        delta = delta + _outer(alpha * post, pre)
        sv.set(op.delta, delta)

    return step_sim_oja


@OpRegistry.declare(SimVoja)
def make_sim_voja(op: SimVoja, ctx: StepContext) -> Callable[[SignalValues], None]:
    pre_batched = ctx.batched(op.pre_decoded)
    post_batched = ctx.batched(op.post_filtered)
    learn_batched = ctx.batched(op.learning_signal)
    alpha = op.learning_rate * ctx.dt
    scale_np = np.asarray(op.scale, dtype=np.float64)[:, np.newaxis]
    scale = None

    def step_sim_voja(sv):
        nonlocal scale
        pre = _vector(sv.read(op.pre_decoded), pre_batched)
        post = _vector(sv.read(op.post_filtered), post_batched)
        encoders = sv.read(op.scaled_encoders)
        learning = sv.read(op.learning_signal)
        if scale is None or scale.device != post.device or scale.dtype != post.dtype:
            scale = torch.as_tensor(scale_np, dtype=post.dtype, device=post.device)
        # nengo: alpha * learning_signal has the learning signal's shape (1,) and
        # broadcasts against the (post, pre) matrix; keep the batch dim in front
        rate = alpha * learning
        rate = rate.reshape((rate.shape[0], 1, 1) if learn_batched else (1, 1))
        sv.set(
            op.delta,
            rate * (scale * _outer(post, pre) - post[..., :, None] * encoders),
        )

    return step_sim_voja


@OpRegistry.declare(SimRLS)
def make_sim_rls(op: SimRLS, ctx: StepContext) -> Callable[[SignalValues], None]:
    r_batched = ctx.batched(op.pre_filtered)
    e_batched = ctx.batched(op.error)
    if op.pre_filtered.ndim != 1 or op.error.ndim != 1:
        raise BuildError(f"{op}: RLS needs 1-D pre_filtered and error signals")
    if op.delta.ndim != 2 or op.inv_gamma.ndim != 2:
        raise BuildError(f"{op}: RLS needs 2-D delta and inv_gamma signals")
    P0 = np.asarray(op.inv_gamma.initial_value)
    if not np.array_equal(P0, P0.T):
        raise BuildError(f"{op}: P must be symmetric")

    def step_sim_rls(sv):
        r = _vector(sv.read(op.pre_filtered), r_batched)
        error = _vector(sv.read(op.error), e_batched)
        P = sv.read(op.inv_gamma)  # (B, n, n): one estimate per batch item
        # P1 = P - (P r) (r^T P) / (1 + r^T P r);  delta = -error^T (P1 r),
        # using P symmetric and P1 r = P r / (1 + r^T P r), as nengo does
        Pr = torch.matmul(P, r.unsqueeze(-1)).squeeze(-1)
        rPr1 = 1 / (1 + (r * Pr).sum(-1, keepdim=True))  # (..., 1)
        sv.set(op.inv_gamma, P - Pr[..., :, None] * (Pr[..., None, :] * rPr1[..., None]))
        sv.set(op.delta, error[..., :, None] * (-rPr1[..., None] * Pr[..., None, :]))

    return step_sim_rls
