"""Build functions turning torch layers into Nengo objects, one per layer kind.

Registered like Nengo's ``Builder``: `LAYERS` maps a module type, a function or a
method name to ``build(converter, node, layer, args, kwargs) -> Value``; tensors
that depend on the model input arrive as `Value` s, everything else as the
constant it is. A build function raises `NotConvertible` to fall back to a
TensorNode. `Converter.register` adds entries.
"""

from __future__ import annotations

import operator
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import nengo
import numpy as np
import torch
import torch.nn.functional as F
from nengo.transforms import Convolution, Dense, Sparse
from torch import nn

from ..neurons import LeakyReLU
from .values import Bias, NotConvertible, Scale, Value

if TYPE_CHECKING:
    from torch import fx

    from .converter import Converter

LAYERS = {}


def register(*keys: Any) -> Callable[[Callable], Callable]:
    def decorator(build):
        for key in keys:
            LAYERS[key] = build
        return build

    return decorator


def lookup_module(module: nn.Module) -> Callable | None:
    """The build function registered for ``module``'s type or a base class."""
    for cls in type(module).__mro__:
        if cls in LAYERS:
            return LAYERS[cls]
    return None


def _np(tensor):
    return tensor.detach().cpu().to(torch.float64).numpy()


def _single(args, what):
    x = args[0]
    if not isinstance(x, Value):
        raise NotConvertible(f"{what} on a constant")
    return x


# -- activations


ACTIVATION_KINDS = {
    nn.ReLU: (nn.ReLU, F.relu, torch.relu, "relu"),
    nn.LeakyReLU: (nn.LeakyReLU, F.leaky_relu, "leaky_relu"),
    nn.Sigmoid: (nn.Sigmoid, torch.sigmoid, F.sigmoid, "sigmoid"),
    nn.Tanh: (nn.Tanh, torch.tanh, F.tanh, "tanh"),
    nn.Identity: (nn.Identity,),
}


def activation_kind(key: Any) -> type | None:
    """The torch activation class ``key`` (class, instance, function) stands for."""
    for kind, forms in ACTIVATION_KINDS.items():
        if any(key is f or isinstance(f, str) and key == f for f in forms) or (
            isinstance(key, kind) and not isinstance(key, type)
        ):
            return kind
    return None


def default_neuron_type(
    kind: type | None, layer: nn.Module | None = None
) -> nengo.neurons.NeuronType | None:
    """The Nengo neuron type computing torch activation ``kind`` (None: linear)."""
    if kind is nn.ReLU:
        return nengo.RectifiedLinear()
    if kind is nn.LeakyReLU:
        slope = getattr(layer, "negative_slope", 0.01)
        return LeakyReLU(negative_slope=slope)
    if kind is nn.Sigmoid:
        return nengo.Sigmoid(tau_ref=1.0)  # Nengo's sigmoid is f(J) / tau_ref
    if kind is nn.Tanh:
        return nengo.Tanh(tau_ref=1.0)
    return None


def as_neuron_type(value: Any) -> nengo.neurons.NeuronType | None:
    """A ``swap_activations`` value as a neuron type (None: no neurons)."""
    if value is None or isinstance(value, nengo.neurons.NeuronType):
        return value
    if isinstance(value, type) and issubclass(value, nengo.neurons.NeuronType):
        return value()
    kind = activation_kind(value)
    if kind is None:
        raise ValueError(
            f"swap_activations: cannot use {value!r} as an activation (give a Nengo "
            "neuron type, a torch activation or None)"
        )
    return default_neuron_type(kind, value if isinstance(value, nn.Module) else None)


def _activate(conv, node, x, kind, layer=None):
    neuron_type, scale = conv.activation(node, kind, default_neuron_type(kind, layer))
    if neuron_type is None:
        return x
    return conv.neurons(x, neuron_type, label=node.name, scale=scale)


@register(nn.ReLU, nn.Sigmoid, nn.Tanh, nn.LeakyReLU)
def build_activation_module(
    conv: Converter, node: fx.Node, layer: nn.Module, args: tuple, kwargs: dict
) -> Value:
    return _activate(conv, node, _single(args, type(layer).__name__),
                     activation_kind(layer), layer)


@register(F.relu, torch.relu, "relu", torch.sigmoid, F.sigmoid, "sigmoid",
          torch.tanh, F.tanh, "tanh")
def build_activation_function(
    conv: Converter, node: fx.Node, func: Callable | str, args: tuple, kwargs: dict
) -> Value:
    return _activate(conv, node, _single(args, str(func)), activation_kind(func))


@register(F.leaky_relu)
def build_leaky_relu_function(
    conv: Converter, node: fx.Node, func: Callable | str, args: tuple, kwargs: dict
) -> Value:
    slope = args[1] if len(args) > 1 else kwargs.get("negative_slope", 0.01)
    layer = nn.LeakyReLU(slope)
    return _activate(conv, node, _single(args, "leaky_relu"), nn.LeakyReLU, layer)


# -- pass-through and reshaping


@register(nn.Identity, nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d,
          nn.AlphaDropout, nn.FeatureAlphaDropout, F.dropout, "contiguous", "float",
          "double")
def build_identity(
    conv: Converter, node: fx.Node, layer: nn.Module, args: tuple, kwargs: dict
) -> Value:
    # Dropout is the identity at inference, as in NengoDL's converted networks;
    # Nengo signals are floating point whatever the torch dtype
    return _single(args, "identity")


@register(nn.Flatten, nn.Unflatten, torch.flatten, torch.reshape, torch.squeeze,
          torch.unsqueeze, "flatten", "view", "reshape", "squeeze", "unsqueeze")
def build_reshape(
    conv: Converter, node: fx.Node, layer: nn.Module, args: tuple, kwargs: dict
) -> Value:
    return _single(args, "reshape").reshaped(conv.shape_of(node))


def _replay(conv, node, func, args, kwargs):
    """Run an index op on index tensors: where each output element comes from.

    Returns the inputs (Values) and, per output element, ``1 +`` its index into
    the concatenated inputs (0 where the op fills in a zero).
    """
    values = []
    lead = (1, 1) if conv.temporal_model else (1,)

    def index_tensor(value):
        offset = sum(v.size for v in values)
        values.append(value)
        return (torch.arange(value.size, dtype=torch.int64) + 1 + offset).reshape(
            lead + value.shape
        )

    def swap(obj):
        if isinstance(obj, Value):
            return index_tensor(obj)
        if isinstance(obj, (list, tuple)):
            return type(obj)(swap(o) for o in obj)
        if isinstance(obj, dict):
            return {k: swap(v) for k, v in obj.items()}
        return obj

    new_args, new_kwargs = swap(list(args)), swap(dict(kwargs))
    try:
        if isinstance(func, str):
            out = getattr(new_args[0], func)(*new_args[1:], **new_kwargs)
        else:
            out = func(*new_args, **new_kwargs)
    except Exception as e:  # noqa: BLE001 - e.g. an op that needs floats
        raise NotConvertible(f"replaying it on indices failed ({e})") from e
    shape = conv.shape_of(node)
    if not torch.is_tensor(out) or tuple(out.shape[len(lead):]) != shape:
        raise NotConvertible("it mixes samples or steps")
    return values, out.reshape(-1).numpy(), shape


def _select(conv, node, values, where, shape):
    """The Value whose element ``k`` is input element ``where[k] - 1`` (0: zero)."""
    offsets = np.cumsum([0] + [v.size for v in values])
    used = [
        i for i, v in enumerate(values)
        if np.any((where > offsets[i]) & (where <= offsets[i + 1]))
    ]
    if len(used) == 1 and np.all(where > 0):
        i = used[0]
        return conv.gather(values[i], where - 1 - offsets[i], shape)
    positions = []
    for i in used:
        value = values[i]
        pos = np.full(value.size, -1)
        hits = np.nonzero((where > offsets[i]) & (where <= offsets[i + 1]))[0]
        if len(hits) != value.size or len(np.unique(where[hits])) != len(hits):
            raise NotConvertible("it repeats or drops elements of several inputs")
        pos[where[hits] - 1 - offsets[i]] = hits
        positions.append(pos)
    return conv.place([values[i] for i in used], positions, shape, label=node.name)


@register(torch.cat, torch.concat, torch.stack, torch.permute, torch.transpose,
          torch.flip, operator.getitem, "permute", "transpose", "flip", "t")
def build_index_op(
    conv: Converter, node: fx.Node, func: Callable | str, args: tuple, kwargs: dict
) -> Value:
    values, where, shape = _replay(conv, node, func, args, kwargs)
    if not values:
        raise NotConvertible("no input tensor")
    return _select(conv, node, values, where, shape)


@register(torch.split, torch.chunk, torch.unbind, "split", "chunk", "unbind")
def build_split(
    conv: Converter, node: fx.Node, func: Callable | str, args: tuple, kwargs: dict
) -> list[Value]:
    """Ops returning several tensors: one Value (a slice of the input) for each."""
    x = _single(args, "split")
    lead = (1, 1) if conv.temporal_model else (1,)
    index = (torch.arange(x.size, dtype=torch.int64) + 1).reshape(lead + x.shape)
    rest = list(args[1:])
    parts = getattr(index, func)(*rest, **kwargs) if isinstance(func, str) else func(
        index, *rest, **kwargs
    )
    outputs = []
    for part, recorded in zip(parts, conv.recorded(node)):
        shape = conv.shape_of(node, value=recorded)
        if tuple(part.shape[len(lead):]) != shape:
            raise NotConvertible("it mixes samples or steps")
        outputs.append(_select(conv, node, [x], part.reshape(-1).numpy(), shape))
    return outputs


@register(F.pad)
def build_pad(
    conv: Converter, node: fx.Node, func: Callable | str, args: tuple, kwargs: dict
) -> Value:
    mode = args[2] if len(args) > 2 else kwargs.get("mode", "constant")
    value = args[3] if len(args) > 3 else kwargs.get("value", None)
    if mode != "constant" or value not in (None, 0, 0.0):
        raise NotConvertible(f"padding mode {mode!r} with value {value!r}")
    return build_index_op(conv, node, func, args, kwargs)


# -- arithmetic


def _constant_bias(const, shape):
    c = torch.as_tensor(const).detach().to(torch.float64)
    try:
        full = torch.broadcast_to(c, (1,) + tuple(shape))
    except RuntimeError as e:
        raise NotConvertible(f"a constant of shape {tuple(c.shape)} broadcasts "
                             f"beyond {shape}") from e
    if c.dim() > len(shape):
        raise NotConvertible("a constant with a batch axis")
    return full.reshape(-1).numpy()


def _add(conv, a, b, sign=1.0):
    if isinstance(b, Value) and sign != 1.0:
        b = conv.affine(b, Scale(sign))
    if isinstance(a, Value) and isinstance(b, Value):
        if a.shape != b.shape:
            raise NotConvertible(f"adding shapes {a.shape} and {b.shape} (broadcast)")
        return Value(a.terms + b.terms, a.biases + b.biases, a.shape)
    if isinstance(a, Value):
        bias = Bias(sign * _constant_bias(b, a.shape), trainable=False)
        return Value(a.terms, a.biases + [bias], a.shape)
    bias = Bias(_constant_bias(a, b.shape), trainable=False)
    return Value(b.terms, b.biases + [bias], b.shape)


@register(operator.add, operator.iadd, torch.add, "add")
def build_add(
    conv: Converter, node: fx.Node, func: Callable | str, args: tuple, kwargs: dict
) -> Value:
    a, b = args[0], args[1]
    alpha = kwargs.get("alpha", 1)
    if alpha != 1:
        if isinstance(b, Value):
            b = conv.affine(b, Scale(alpha))
        else:
            b = b * alpha
    return _add(conv, a, b)


@register(operator.sub, operator.isub, torch.sub, "sub")
def build_sub(
    conv: Converter, node: fx.Node, func: Callable | str, args: tuple, kwargs: dict
) -> Value:
    a, b = args[0], args[1]
    if isinstance(a, Value):
        return _add(conv, a, b, sign=-1.0)
    return _add(conv, a, conv.affine(b, Scale(-1.0)))


@register(operator.neg, torch.neg, "neg")
def build_neg(
    conv: Converter, node: fx.Node, func: Callable | str, args: tuple, kwargs: dict
) -> Value:
    return conv.affine(_single(args, "neg"), Scale(-1.0))


@register(operator.mul, operator.imul, torch.mul, "mul", operator.truediv,
          torch.div, "div")
def build_mul(
    conv: Converter, node: fx.Node, func: Callable | str, args: tuple, kwargs: dict
) -> Value:
    a, b = args[0], args[1]
    divide = func in (operator.truediv, torch.div, "div")
    if divide and not isinstance(b, Value) and kwargs.get("rounding_mode") is None:
        b = 1.0 / torch.as_tensor(b, dtype=torch.float64)
    elif divide:
        raise NotConvertible("division by a tensor that depends on the input")
    if isinstance(a, Value) and isinstance(b, Value):
        raise NotConvertible("product of two tensors that depend on the input")
    x, c = (a, b) if isinstance(a, Value) else (b, a)
    return conv.affine(x, Scale(_constant_bias(c, x.shape)))


# -- weights


@register(nn.Linear)
def build_linear(
    conv: Converter, node: fx.Node, layer: nn.Module, args: tuple, kwargs: dict
) -> Value:
    return _linear(conv, node, _single(args, "Linear"), layer.weight, layer.bias)


@register(F.linear)
def build_linear_function(
    conv: Converter, node: fx.Node, func: Callable | str, args: tuple, kwargs: dict
) -> Value:
    weight = args[1] if len(args) > 1 else kwargs["weight"]
    bias = args[2] if len(args) > 2 else kwargs.get("bias")
    if isinstance(weight, Value) or isinstance(bias, Value):
        raise NotConvertible("its weights depend on the input")
    return _linear(conv, node, _single(args, "linear"), weight, bias)


def _linear(conv, node, x, weight, bias):
    if len(x.shape) != 1:
        raise NotConvertible(
            f"a linear map on samples of shape {x.shape} (only flat samples convert)"
        )
    w = _np(weight)
    biases = [] if bias is None else [Bias(_np(bias))]
    return conv.linear(x, Dense(w.shape, init=w), biases, shape=(w.shape[0],),
                       origin=node, label=node.name)


def _same_padding(size, kernel, stride):
    """Nengo's (TensorFlow's) 'same' padding: output size and padding before."""
    out = -(-size // stride)
    total = max((out - 1) * stride + kernel - size, 0)
    return out, total // 2


def _conv_padding(in_spatial, kernel, stride, padding):
    """``"valid"``/``"same"`` if Nengo's padding equals torch's, else None."""
    if isinstance(padding, str):
        return padding
    if all(p == 0 for p in padding):
        return "valid"
    for n, k, s, p in zip(in_spatial, kernel, stride, padding):
        torch_out = (n + 2 * p - k) // s + 1
        out, before = _same_padding(n, k, s)
        if out != torch_out or before != p:
            return None
    return "same"


def _pad_value(conv, x, pads, label):
    """``x`` (channels first) zero-padded by ``pads`` on both sides of each axis."""
    channels, spatial = x.shape[0], x.shape[1:]
    new = (channels,) + tuple(n + 2 * p for n, p in zip(spatial, pads))
    grid = np.full(new, -1, dtype=np.int64)
    inner = (slice(None),) + tuple(slice(p, p + n) for n, p in zip(spatial, pads))
    grid[inner] = np.arange(x.size).reshape(x.shape)
    flat = grid.ravel()
    positions = np.empty(x.size, dtype=np.int64)
    hits = np.nonzero(flat >= 0)[0]
    positions[flat[hits]] = hits
    return conv.place([x], [positions], new, label=label)


@register(nn.Conv1d, nn.Conv2d, nn.Conv3d)
def build_conv(
    conv: Converter, node: fx.Node, layer: nn.Module, args: tuple, kwargs: dict
) -> Value:
    x = _single(args, type(layer).__name__)
    dims = len(layer.kernel_size)
    if len(x.shape) != dims + 1:
        raise NotConvertible(f"input of shape {x.shape} (expected channels first)")
    if layer.padding_mode != "zeros":
        raise NotConvertible(f"padding_mode={layer.padding_mode!r}")
    if any(d != 1 for d in layer.dilation):
        raise NotConvertible(f"dilation={layer.dilation} (Nengo has no dilation)")
    kernel, stride = tuple(layer.kernel_size), tuple(layer.stride)
    padding = _conv_padding(x.shape[1:], kernel, stride, layer.padding)
    if padding is None:
        x = _pad_value(conv, x, layer.padding, label=f"{node.name}.pad")
        padding = "valid"
    w = _np(layer.weight)  # (out, in / groups, *kernel) -> (*kernel, in / groups, out)
    init = np.transpose(w, tuple(range(2, 2 + dims)) + (1, 0))
    transform = Convolution(
        layer.out_channels,
        x.shape,
        kernel_size=kernel,
        strides=stride,
        padding=padding,
        channels_last=False,
        init=init,
        groups=layer.groups,
    )
    shape = conv.shape_of(node)
    if tuple(transform.output_shape.shape) != shape:
        raise NotConvertible(
            f"Nengo's convolution gives shape {transform.output_shape.shape}, torch "
            f"{shape}"
        )
    biases = [] if layer.bias is None else [Bias(_np(layer.bias), channel=True)]
    return conv.linear(x, transform, biases, shape=shape, origin=node, label=node.name)


# -- pooling


def _sparse_linear(conv, node, x, func):
    """``x`` through a fixed linear ``func``, as a Sparse transform (not trained)."""
    shape = conv.shape_of(node)
    n, m = x.size, int(np.prod(shape))
    rows, cols, vals = [], [], []
    chunk = max(1, 2**22 // max(n, m))
    for start in range(0, n, chunk):
        stop = min(n, start + chunk)
        basis = torch.zeros((stop - start, n), dtype=torch.float64)
        basis[torch.arange(stop - start), torch.arange(start, stop)] = 1.0
        with torch.no_grad():
            out = func(basis.reshape((stop - start,) + x.shape))
        out = out.reshape(stop - start, m).numpy()
        i, j = np.nonzero(out)
        rows.append(j)
        cols.append(i + start)
        vals.append(out[i, j])
    rows, cols, vals = (np.concatenate(a) for a in (rows, cols, vals))
    transform = Sparse((m, n), indices=np.stack([rows, cols], axis=1), init=vals)
    return conv.linear(x, transform, shape=shape, origin=node, trainable=False,
                       label=node.name)


def _avg_pool(conv, node, x, kernel, stride, padding=0, ceil_mode=False,
              count_include_pad=True, divisor_override=None):
    dims = len(x.shape) - 1
    kernel, stride, padding = (
        _tuple(v, dims) for v in (kernel, stride if stride else kernel, padding)
    )
    shape = conv.shape_of(node)
    channels = x.shape[0]
    if all(p == 0 for p in padding) and divisor_override is None:
        transform = Convolution(
            channels,
            x.shape,
            kernel_size=kernel,
            strides=stride,
            padding="valid",
            channels_last=False,
            init=np.full(kernel + (1, channels), 1.0 / np.prod(kernel)),
            groups=channels,
        )
        if tuple(transform.output_shape.shape) == shape:
            return conv.linear(x, transform, shape=shape, origin=node,
                               trainable=False, label=node.name)
    pool = getattr(F, f"avg_pool{dims}d")
    extra = {} if dims == 1 else {"divisor_override": divisor_override}
    return _sparse_linear(
        conv, node, x,
        lambda b: pool(b, kernel, stride, padding, ceil_mode, count_include_pad, **extra),
    )


def _tuple(value, dims):
    if isinstance(value, (tuple, list)):
        return tuple(int(v) for v in value)
    return (int(value),) * dims


@register(nn.AvgPool1d, nn.AvgPool2d, nn.AvgPool3d)
def build_avg_pool(
    conv: Converter, node: fx.Node, layer: nn.Module, args: tuple, kwargs: dict
) -> Value:
    x = _single(args, type(layer).__name__)
    return _avg_pool(conv, node, x, layer.kernel_size, layer.stride, layer.padding,
                     layer.ceil_mode, layer.count_include_pad,
                     getattr(layer, "divisor_override", None))


@register(nn.MaxPool1d, nn.MaxPool2d, nn.MaxPool3d)
def build_max_pool(
    conv: Converter, node: fx.Node, layer: nn.Module, args: tuple, kwargs: dict
) -> Value:
    x = _single(args, type(layer).__name__)
    if not conv.max_to_avg_pool:
        raise NotConvertible(
            "max pooling is not linear; max_to_avg_pool=True converts it to average "
            "pooling"
        )
    if any(d != 1 for d in _tuple(layer.dilation, len(x.shape) - 1)):
        raise NotConvertible(f"dilation={layer.dilation}")
    # padded maxima ignore the padding: average the real elements only
    return _avg_pool(conv, node, x, layer.kernel_size, layer.stride, layer.padding,
                     layer.ceil_mode, count_include_pad=False)


def _adaptive(conv, node, x, layer):
    shape = conv.shape_of(node)
    in_spatial, out_spatial = x.shape[1:], shape[1:]
    if all(n % m == 0 for n, m in zip(in_spatial, out_spatial)):
        kernel = tuple(n // m for n, m in zip(in_spatial, out_spatial))
        return _avg_pool(conv, node, x, kernel, kernel)
    dims = len(in_spatial)
    pool = getattr(F, f"adaptive_avg_pool{dims}d")
    return _sparse_linear(conv, node, x, lambda b: pool(b, out_spatial))


@register(nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d, nn.AdaptiveAvgPool3d)
def build_adaptive_avg_pool(
    conv: Converter, node: fx.Node, layer: nn.Module, args: tuple, kwargs: dict
) -> Value:
    return _adaptive(conv, node, _single(args, type(layer).__name__), layer)


@register(nn.AdaptiveMaxPool1d, nn.AdaptiveMaxPool2d, nn.AdaptiveMaxPool3d)
def build_adaptive_max_pool(
    conv: Converter, node: fx.Node, layer: nn.Module, args: tuple, kwargs: dict
) -> Value:
    if not conv.max_to_avg_pool:
        raise NotConvertible(
            "max pooling is not linear; max_to_avg_pool=True converts it to average "
            "pooling"
        )
    return _adaptive(conv, node, _single(args, type(layer).__name__), layer)


# -- normalisation


@register(nn.modules.batchnorm._BatchNorm)
def build_batch_norm(
    conv: Converter, node: fx.Node, layer: nn.Module, args: tuple, kwargs: dict
) -> Value:
    x = _single(args, type(layer).__name__)
    trainable = any(p.requires_grad for p in layer.parameters())
    if not (conv.inference_only or not layer.training or not trainable):
        raise NotConvertible(
            "BatchNorm in training mode uses batch statistics; it is folded into the "
            "network with inference_only=True or when in eval mode (model.eval())"
        )
    if layer.running_mean is None:
        raise NotConvertible("BatchNorm without running statistics")
    mean, var = _np(layer.running_mean), _np(layer.running_var)
    scale = 1.0 / np.sqrt(var + layer.eps)
    if layer.weight is not None:
        scale = scale * _np(layer.weight)
    shift = -mean * scale
    if layer.bias is not None:
        shift = shift + _np(layer.bias)
    per = x.size // x.shape[0]
    conv.folded.append(node)
    return conv.affine(x, Scale(np.repeat(scale, per)), Bias(shift, channel=True),
                       origin=node, fold=True)
