"""Stepping with one step compiled by `torch.compile` (``torch_compile=True``).

For runs without autograd that neither a window nor the in-place program takes
(single steps, or ``in_place=False``). The first run pays the compilation; on
CUDA the step is compiled with ``mode="reduce-overhead"`` (a CUDA graph).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from ..signals import SignalValues
from ..request import RunRequest, RunResult
from .base import ProbeRecorder

if TYPE_CHECKING:
    from ..engine import Engine

NAME = "compiled"


class Compiled:
    """Functional stepping, one `torch.compile`d function per step."""

    name = NAME

    def run(self, engine: Engine, request: RunRequest) -> RunResult:
        batch_size, training, op_steps = request.batch_size, request.training, request.op_steps
        key = (id(op_steps), batch_size, training, tuple(request.feeds))
        on_gpu = any(v.is_cuda for v in request.values.values())
        cached = engine.strategy_cache.get(NAME)
        if cached is None or cached[0] != key:
            layout = engine.layout

            def one_step(values, feed_now):
                # each feed holds only this step's data, at index 0
                sv = SignalValues(
                    layout, dict(values), batch_size, training=training,
                    feeds={node: data[:, None] for node, data in feed_now.items()},
                )
                for step in op_steps:
                    step(sv)
                return sv.values

            fn = torch.compile(
                one_step, dynamic=False, mode="reduce-overhead" if on_gpu else None
            )
            engine.strategy_cache[NAME] = cached = (key, fn)
        fn = cached[1]
        values = {k: v.detach() for k, v in request.values.items()}
        recorder = ProbeRecorder(engine, batch_size)
        sv = SignalValues(engine.layout, values, batch_size)
        for k in range(request.n_steps):
            values = fn(values, {node: data[:, k] for node, data in request.feeds.items()})
            if on_gpu:
                # a CUDA graph's outputs are overwritten by its next replay
                values = {base: value.clone() for base, value in values.items()}
            sv = SignalValues(engine.layout, values, batch_size)
            recorder.after_step(sv, request.start_step + k + 1)
            if request.on_step is not None:
                request.on_step()
        return RunResult(recorder.data(), sv)

    def fallbacks(self, engine: Engine, request: RunRequest) -> list:
        return []


STRATEGY = Compiled()
