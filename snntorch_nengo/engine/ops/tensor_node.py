"""TensorNode operators: torch code inside a Nengo network.

How a node's ``tensor_func`` is called and its result checked lives here, in
the engine; `snntorch_nengo.tensor_node` (the user's `TensorNode`) uses the
same functions to infer the node's output shape.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Optional

import torch
from nengo.exceptions import SimulationError
from torch import nn

from ..operators import SimTensorNode
from . import SCANNED, OpRegistry

if TYPE_CHECKING:
    import nengo

    from ..signals import SignalValues
    from . import StepContext


def module_float_tensor(module: nn.Module) -> Optional[torch.Tensor]:
    """A module's first float parameter or buffer (None if it has none)."""
    for tensor in module.parameters():
        if tensor.is_floating_point():
            return tensor
    for tensor in module.buffers():
        if tensor.is_floating_point():
            return tensor
    return None


class ModuleMode:
    """Temporarily put a module (and its submodules) in train or eval mode."""

    def __init__(self, module: Callable, training: Optional[bool]) -> None:
        self.module = module
        self.training = training
        self.saved = None

    def __enter__(self):
        if isinstance(self.module, nn.Module) and self.training is not None:
            self.saved = [(m, m.training) for m in self.module.modules()]
            self.module.train(self.training)
        return self.module

    def __exit__(self, *exc) -> None:
        for m, mode in self.saved or ():
            m.training = mode


def call_tensor_func(
    node: nengo.Node,
    t: torch.Tensor | None,
    x: torch.Tensor | None,
    name_errors: bool = True,
) -> Any:
    """Call ``node.tensor_func`` with the arguments its settings ask for.

    A `torch.nn.Module` gets its inputs cast to the float dtype and device of its
    own tensors (so a float32 module runs inside a float64 simulation); the result
    is returned as is. An error it raises is re-raised naming ``node`` when
    ``name_errors`` (shape inference reports its own).
    """
    func = node.tensor_func
    args = []
    if node.pass_time:
        args.append(t)
    if node.shape_in is not None:
        args.append(x)
    if isinstance(func, nn.Module):
        like = module_float_tensor(func)
        if like is not None:
            args = [
                a.to(dtype=like.dtype, device=like.device)
                if a.is_floating_point()
                else a.to(device=like.device)
                for a in args
            ]
    try:
        return func(*args)
    except Exception as e:
        if not name_errors:
            raise
        # name the node: the traceback alone points into the user's function
        raise SimulationError(
            f"{node}: tensor_func raised {type(e).__name__}: {e}"
        ) from e


def check_output(
    node: nengo.Node,
    y: object,
    batch_size: int,
    error: type[Exception] = SimulationError,
) -> torch.Tensor:
    """``y`` as ``(batch_size,) + shape_out``, or a clear error naming ``node``.

    A leading dimension of 1 broadcasts over the batch (functions of time alone
    cannot know the batch size).
    """
    if not torch.is_tensor(y):
        raise error(
            f"{node}: tensor_func must return a torch.Tensor of shape "
            f"(batch,) + shape_out = (batch,) + {tuple(node.shape_out)}, "
            f"got {type(y).__name__}"
        )
    if y.is_complex():
        # the float simulation would silently drop the imaginary part
        raise error(
            f"{node}: tensor_func returned a {y.dtype} tensor; return real numbers "
            "(e.g. y.real, y.abs() or torch.view_as_real(y) with a larger shape_out)"
        )
    if y.device.type == "meta":
        raise error(
            f"{node}: tensor_func returned a tensor on the 'meta' device (shape only, "
            "no data); create its tensors on the input's device (x.device)"
        )
    shape_out = tuple(node.shape_out)
    if y.dim() != 1 + len(shape_out) or tuple(y.shape[1:]) != shape_out or (
        y.shape[0] not in (1, batch_size)
    ):
        raise error(
            f"{node}: tensor_func returned shape {tuple(y.shape)}, expected "
            f"(batch,) + shape_out = {(batch_size,) + shape_out}"
        )
    if y.shape[0] != batch_size:
        y = y.expand((batch_size,) + shape_out)
    return y



@OpRegistry.declare(SimTensorNode, window=SCANNED)
def make_sim_tensor_node(
    op: SimTensorNode, ctx: StepContext
) -> Callable[[SignalValues], None]:
    """Call the node's torch function on the batched input, once per step.

    The input ``(B, size_in)`` is reshaped to ``(B,) + shape_in`` (broadcast over
    the batch when it is shared); the result, checked to be
    ``(B,) + shape_out``, is flattened into the output signal. Everything stays in
    autograd, so gradients reach the input and the function's parameters.

    A `torch.nn.Module` runs in its own mode, which follows the NengoModule's
    ``train()``/``eval()`` (it is a submodule); a forced ``learning_phase``
    setting overrides it for the duration of the call.
    """
    node = op.node
    shape_in = None if node.shape_in is None else tuple(node.shape_in)
    x_batched = op.input is not None and ctx.batched(op.input)
    forced = ctx.settings.get("learning_phase")
    forced = None if forced is None else bool(forced)
    out_base = op.output.base

    def step_sim_tensor_node(sv):
        batch_size = sv.batch_size
        t = None if op.time is None else sv.read(op.time)
        x = None
        if op.input is not None:
            # a copy: torch code often works in place (x.mul_(2)), and the
            # signal it reads may be held for a whole window or read by others
            x = sv.read(op.input).clone()
            if x_batched:
                x = x.reshape((x.shape[0],) + shape_in)
            else:
                x = x.reshape(shape_in).expand((batch_size,) + shape_in)
        with ModuleMode(node.tensor_func, forced):
            y = call_tensor_func(node, t, x)
        y = check_output(node, y, batch_size)
        like = sv.values[out_base]
        y = y.reshape(batch_size, -1).to(dtype=like.dtype, device=like.device)
        sv.set(op.output, y)

    return step_sim_tensor_node
