"""Functional stepping: every operator once per step, each write a new tensor.

The strategy that always applies, and the only one autograd can record through
(training, gradients of a run): `.SignalValues` replaces tensors instead of
writing into them, so the run is an ordinary autograd graph.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..signals import SignalValues
from ..request import RunRequest, RunResult
from .base import ProbeRecorder

if TYPE_CHECKING:
    from ..engine import Engine

NAME = "functional"


class Functional:
    """Step by step on `.SignalValues`."""

    name = NAME

    def run(self, engine: Engine, request: RunRequest) -> RunResult:
        sv = SignalValues(
            engine.layout, dict(request.values), request.batch_size,
            feeds=request.feeds, training=request.training,
        )
        recorder = ProbeRecorder(engine, request.batch_size)
        functions = [step.fn for step in request.op_steps]
        for k in range(request.n_steps):
            sv.at_step(k)
            for fn in functions:
                fn(sv)
            recorder.after_step(sv, request.start_step + k + 1)
            if request.on_step is not None:
                request.on_step()
        return RunResult(recorder.data(), sv)

    def fallbacks(self, engine: Engine, request: RunRequest) -> list:
        return []


STRATEGY = Functional()
