"""Truncated backpropagation through time for `NengoLightningModule`.

With ``tbptt_steps=k`` (``sim.fit(..., tbptt_steps=k)`` or the module's
attribute) each batch of ``n_steps`` steps is cut into windows of ``k`` steps.
The simulation runs window after window, its state carrying over, but the
gradient of a window's loss stops at the window's start (`.NengoModule`
detaches the state it keeps between calls), and the optimizer steps after every
window. The autograd graph, and so memory, grows with ``k``, not ``n_steps``.

Lightning 2 dropped its built-in ``truncated_bptt_steps``; this follows its
recommended replacement: manual optimization in ``training_step``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import torch
from nengo.exceptions import SimulationError, ValidationError

if TYPE_CHECKING:
    from .lightning import NengoLightningModule


def check_window(n_steps: int, tbptt_steps: int, where: str = "fit") -> int:
    """``tbptt_steps`` as an int that divides ``n_steps``, or a clear error."""
    try:
        ok = int(tbptt_steps) == tbptt_steps and tbptt_steps >= 1
    except (TypeError, ValueError):
        ok = False
    if not ok:
        raise ValidationError(
            f"{where}: tbptt_steps must be a positive integer, got {tbptt_steps!r}",
            attr="tbptt_steps",
        )
    if n_steps % int(tbptt_steps) != 0:
        raise ValidationError(
            f"{where}: n_steps ({n_steps}) is not a multiple of tbptt_steps "
            f"({tbptt_steps}); windows must tile the sequence",
            attr="tbptt_steps",
        )
    return int(tbptt_steps)


def training_step(
    lm: NengoLightningModule, batch: Sequence[torch.Tensor], batch_idx: int
) -> torch.Tensor:
    """One batch, window by window; returns the mean window loss (detached)."""
    inputs, targets = lm.split_batch(batch)
    first = next(iter(targets.values()))
    batch_size, n_steps = first.shape[0], first.shape[1]
    k = check_window(n_steps, lm.tbptt_steps)
    module = lm.module
    fed = next(iter(inputs.values())).shape[0] if inputs else None
    if not lm.stateful or (fed or module.batch_size) != module.batch_size:
        module.reset(batch_size=fed)
    optimizer = lm.optimizers()
    total = 0.0
    for start in range(0, n_steps, k):
        window = slice(start, start + k)
        outputs = module(
            {node: x[:, window] for node, x in inputs.items()} or None, n_steps=k
        )
        window_targets = {probe: target[:, window] for probe, target in targets.items()}
        loss = lm.probe_losses(outputs, window_targets)
        if not getattr(loss, "requires_grad", False):
            raise SimulationError(
                f"the loss of the window of steps {start} to {start + k} does not "
                "depend on any trainable parameter: a window must be long enough for "
                "the inputs to reach the probes (each synapse delays by a step)"
            )
        optimizer.zero_grad()
        lm.manual_backward(loss)
        optimizer.step()
        lm.update_metrics(outputs, window_targets)
        total = total + loss.detach()
    mean = total / (n_steps // k)
    lm.log_loss("loss", mean, batch_size, on_step=True)
    return mean
