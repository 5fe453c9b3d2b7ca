"""Simulation state in Lightning checkpoints of a `NengoLightningModule`.

Lightning already stores the parameters (``state_dict``), optimizer, loop and
callback state. These hooks add what a stateful simulation needs to continue:
the state tensors (voltages, synapse and learning state, time and step, with
their leading batch dimension), the number of steps simulated and the batch
size, under ``checkpoint["snntorch_nengo"]``. Loading puts them back when the
checkpoint's batch size matches the module's; without that entry (a checkpoint
of another version) the simulation starts from its initial state.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch
from nengo.exceptions import ValidationError

from ..persistence import state_tensors

if TYPE_CHECKING:
    from ..module import NengoModule

KEY = "snntorch_nengo"


def save_state(module: NengoModule, checkpoint: dict[str, Any]) -> None:
    """Add ``module``'s simulation state to a Lightning ``checkpoint`` dict."""
    checkpoint[KEY] = {
        "state": {
            name: tensor.detach().to("cpu", copy=True)
            for name, (_, tensor) in state_tensors(module).items()
        },
        "n_steps": int(module.n_steps),
        "batch_size": int(module.batch_size),
    }


def load_state(module: NengoModule, checkpoint: dict[str, Any]) -> None:
    """Restore the simulation state saved by `save_state` (if there is one)."""
    saved = checkpoint.get(KEY)
    if saved is None:
        return
    live = state_tensors(module)
    if saved["batch_size"] != module.batch_size:
        module.reset(batch_size=saved["batch_size"])
        live = state_tensors(module)
    missing = sorted(set(live) ^ set(saved["state"]))
    if missing:
        raise ValidationError(
            "the checkpoint's simulation state does not match this network (state "
            f"tensors only on one side: {missing[:8]})",
            attr="ckpt_path",
        )
    new_state = {}
    for name, (base, current) in live.items():
        value = saved["state"][name]
        if tuple(value.shape) != tuple(current.shape):
            raise ValidationError(
                f"the checkpoint's state tensor {name} has shape {tuple(value.shape)}, "
                f"this network's {tuple(current.shape)}",
                attr="ckpt_path",
            )
        new_state[base] = torch.as_tensor(value).to(
            device=current.device, dtype=current.dtype
        )
    module.load_state(new_state)
    module.n_steps = saved["n_steps"]
    module._fresh = False
