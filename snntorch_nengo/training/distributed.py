"""Distributed data-parallel training through Lightning (see docs/distributed.md).

Each process simulates its own share of every global batch with its own
`.NengoModule`; DDP averages the gradients, so all processes keep equal
parameters. The simulation state (voltages, synapse state: module buffers) is
per process: it must not be broadcast from rank 0 as DDP does by default with
buffers, since each process simulates different samples.
"""

from __future__ import annotations

import inspect
from typing import Any


def ddp_strategy(fabric: bool = False, **kwargs: Any) -> Any:
    """Lightning's ``DDPStrategy`` with per-process simulation state.

    ``fabric``: Lightning Fabric's ``DDPStrategy`` (for ``sim.fit``'s Fabric
    loop, `.fabric_loop`) instead of the `Trainer`'s.

    ``kwargs`` go to ``DDPStrategy`` (e.g. ``process_group_backend="gloo"``,
    ``start_method="spawn"``). Buffers are not synced before each forward pass
    unless ``kwargs`` say otherwise (torch's ``forward_sync_buffers=False``, or
    ``broadcast_buffers=False`` on torch versions without it; the one sync at
    start-up is harmless: every process starts from the same initial state).
    """
    # lightning is slow to import: only when training asks for it
    if fabric:
        from lightning.fabric.strategies import DDPStrategy
    else:
        from lightning.pytorch.strategies import DDPStrategy
    from torch.nn.parallel import DistributedDataParallel

    if "broadcast_buffers" not in kwargs and "forward_sync_buffers" not in kwargs:
        names = inspect.signature(DistributedDataParallel.__init__).parameters
        key = "forward_sync_buffers" if "forward_sync_buffers" in names else "broadcast_buffers"
        kwargs[key] = False
    return DDPStrategy(**kwargs)


# strategy names that `resolve_strategy` turns into a DDPStrategy and its kwargs
_DDP_NAMES = {
    "ddp": {},
    "ddp_spawn": {"start_method": "spawn"},
    "ddp_fork": {"start_method": "fork"},
    "ddp_notebook": {"start_method": "fork"},
}


def resolve_strategy(strategy: Any, fabric: bool = False) -> Any:
    """``strategy`` for ``Trainer`` (or ``Fabric``): DDP names become `ddp_strategy`.

    Other strategies are returned as given.
    """
    if isinstance(strategy, str) and strategy in _DDP_NAMES:
        return ddp_strategy(fabric=fabric, **_DDP_NAMES[strategy])
    return strategy
