"""`Converter.verify`: the converted network against the torch model."""

from __future__ import annotations

import copy
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn

from ..module import NengoModule
from ..simulator import Simulator
from .recorder import Recorder

if TYPE_CHECKING:
    from .converter import Converter

DROPOUT = (nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d, nn.AlphaDropout,
           nn.FeatureAlphaDropout)
N_SAMPLES = 4
LEARNING_RATE = 0.1


def verify(
    converter: Converter,
    training: bool = False,
    inputs: Any = None,
    atol: float = 1e-6,
    rtol: float = 1e-5,
) -> bool:
    # the simulator puts the model's fallback modules in eval mode: restore them
    saved = [(m, m.training) for m in converter.model.modules()]
    # and training starts from the model as it is now
    original = copy.deepcopy(converter.model) if training else None
    try:
        return _verify(converter, original, training, inputs, atol, rtol)
    finally:
        for m, mode in saved:
            m.training = mode


def _verify(converter, original, training, inputs, atol, rtol):
    xs = _inputs(converter, inputs)
    batch = xs[0].shape[0]
    n_steps = xs[0].shape[1] if converter.temporal_model else 1

    reference = _torch_copy(converter.graph_module)
    reference.eval()
    expected = _torch_outputs(converter, reference, xs)
    with Simulator(converter.net, minibatch_size=batch, dtype=torch.float64,
                   progress_bar=False) as sim:
        data = sim.predict(_feeds(converter, xs, n_steps, np), n_steps=n_steps)
    got = [data[probe] for probe in converter.outputs.values()]
    _compare(converter, "", got, expected, atol, rtol)
    if training:
        _verify_training(converter, original, xs, n_steps, atol, rtol)
    return True


def _inputs(converter, inputs):
    names = list(converter.inputs)
    if inputs is None:
        gen = np.random.default_rng(0)
        lead = (N_SAMPLES, 5) if converter.temporal_model else (N_SAMPLES,)
        return [gen.standard_normal(lead + tuple(s)) for s in converter.input_shapes]
    if isinstance(inputs, dict):
        inputs = [inputs[n] for n in names]
    elif not isinstance(inputs, (list, tuple)):
        inputs = [inputs]
    if len(inputs) != len(names):
        raise ValueError(f"verify: {len(inputs)} input arrays for inputs {names}")
    xs = []
    for name, x, shape in zip(names, inputs, converter.input_shapes):
        x = np.asarray(x, dtype=np.float64)
        lead = 2 if converter.temporal_model else 1
        if tuple(x.shape[lead:]) != tuple(shape):
            raise ValueError(
                f"verify: input '{name}' has shape {x.shape}, expected "
                f"{'(batch, n_steps, ' if lead == 2 else '(batch, '}*{tuple(shape)})"
            )
        xs.append(x)
    return xs


def _torch_copy(module):
    return copy.deepcopy(module).to(torch.float64)


def _torch_outputs(converter, module, xs, grad=False):
    """The model's outputs, in the order of `converter.outputs`."""
    recorder = Recorder(module)
    tensors = [torch.as_tensor(x, dtype=torch.float64) for x in xs]
    with torch.set_grad_enabled(grad):
        recorder.run(*tensors)
    values = {n.name: v for n, v in recorder.values.items()}
    return [values[name] for name in converter.outputs]


def _feeds(converter, xs, n_steps, lib):
    feeds = {}
    for node, x in zip(converter.inputs.values(), xs):
        batch = x.shape[0]
        if converter.temporal_model:
            feeds[node] = x.reshape(batch, x.shape[1], -1)
        elif lib is np:
            feeds[node] = np.repeat(x.reshape(batch, 1, -1), n_steps, axis=1)
        else:
            feeds[node] = torch.as_tensor(x, dtype=torch.float64).reshape(batch, 1, -1)
    return feeds


def _compare(converter, when, got, expected, atol, rtol):
    for name, g, e in zip(converter.outputs, got, expected):
        g = g.detach().cpu().numpy() if torch.is_tensor(g) else np.asarray(g)
        e = e.detach().cpu().numpy()
        batch = e.shape[0]
        if converter.temporal_model:
            e = e.reshape(batch, e.shape[1], -1)
        else:
            g = g[:, -1]
            e = e.reshape(batch, -1)
        if g.shape != e.shape or not np.allclose(g, e, atol=atol, rtol=rtol):
            err = np.max(np.abs(g - e)) if g.shape == e.shape else "shape mismatch"
            raise ValueError(
                f"Output of the Nengo network does not match the torch model for "
                f"output '{name}'{when}: max |difference| = {err} "
                f"(atol={atol}, rtol={rtol}; shapes {g.shape} and {e.shape})"
            )


def _verify_training(converter, original, xs, n_steps, atol, rtol):
    """One SGD step on a copy of each; compare before (train mode) and after."""
    if converter.inference_only:
        raise ValueError(
            "verify(training=True): the network was converted with inference_only="
            "True, so it is not trained like the torch model"
        )
    if converter.folded:
        raise ValueError(
            "verify(training=True): BatchNorm layers "
            f"{[n.name for n in converter.folded]} were folded into the network, so "
            "their parameters train differently (convert them in training mode to "
            "keep them as TensorNodes)"
        )
    # converted again, by the same class, from the model as it was before
    other = type(converter)(
        original,
        allow_fallback=converter.allow_fallback,
        inference_only=False,
        max_to_avg_pool=converter.max_to_avg_pool,
        split_shared_weights=converter.split_shared_weights,
        swap_activations=converter.swap_activations,
        scale_firing_rates=converter.scale_firing_rates,
        synapse=converter.synapse,
        temporal_model=converter.temporal_model,
        input_shape=converter.input_shapes,
    )
    reference = _torch_copy(other.graph_module)
    batch = xs[0].shape[0]
    module = NengoModule(other.net, minibatch_size=batch, dtype=torch.float64)
    gen = torch.Generator().manual_seed(1)

    def nengo_out():
        module.reset()
        out = module(_feeds(other, xs, n_steps, torch), n_steps=n_steps)
        return [out[p] for p in other.outputs.values()]

    def train_mode(on):
        reference.train(on)
        module.train(on)
        for m in reference.modules():
            if isinstance(m, DROPOUT):
                m.eval()

    train_mode(True)
    got = nengo_out()
    expected = _torch_outputs(converter, reference, xs, grad=True)
    _compare(converter, " in training mode", got, expected, atol, rtol)
    targets = [torch.randn(e.shape, generator=gen, dtype=torch.float64) for e in expected]

    def step(outputs, params, reshape):
        loss = sum(((reshape(o, t) - t) ** 2).mean() for o, t in zip(outputs, targets))
        opt = torch.optim.SGD(params, lr=LEARNING_RATE)
        opt.zero_grad()
        loss.backward()
        opt.step()

    step(expected, list(reference.parameters()), lambda o, t: o)
    if converter.temporal_model:
        step(got, list(module.parameters()), lambda o, t: o.reshape(t.shape))
    else:
        step(got, list(module.parameters()), lambda o, t: o[:, -1].reshape(t.shape))
    train_mode(False)
    with torch.no_grad():
        got = nengo_out()
    expected = _torch_outputs(converter, reference, xs)
    _compare(converter, " after a training step", got, expected, atol, rtol)
