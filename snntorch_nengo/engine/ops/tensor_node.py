"""TensorNode operators: torch code inside a Nengo network."""

from ...tensor_node import SimTensorNode, _ModuleMode, call_tensor_func, check_output
from . import OpRegistry


@OpRegistry.register(SimTensorNode)
def make_sim_tensor_node(op, ctx):
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
            x = sv.read(op.input)
            if x_batched:
                x = x.reshape((x.shape[0],) + shape_in)
            else:
                x = x.reshape(shape_in).expand((batch_size,) + shape_in)
        with _ModuleMode(node.tensor_func, forced):
            y = call_tensor_func(node, t, x)
        y = check_output(node, y, batch_size)
        like = sv.values[out_base]
        y = y.reshape(batch_size, -1).to(dtype=like.dtype, device=like.device)
        sv.set(op.output, y)

    return step_sim_tensor_node
