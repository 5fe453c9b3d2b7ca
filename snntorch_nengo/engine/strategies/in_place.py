"""In-place runs: the operators as instructions on fixed buffers (`engine.program`).

For runs of several steps without autograd (``run_steps``, ``predict``) on the
devices in `DEVICES`, unless the ``in_place`` setting is False or the step is
compiled (``torch_compile=True``). Operators without an instruction form run
their ordinary step as a ``CALL``; each is listed as a fallback.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from ..program import Program
from ..request import RunRequest, RunResult

if TYPE_CHECKING:
    from ..engine import Engine

NAME = "in_place"

# Devices whose runs without autograd step in place. On CUDA the instructions
# run through the Python interpreter, one launch each; that was 3.6-7.8x faster
# than functional stepping on an H100 (docs/benchmarks.md).
DEVICES = ("cpu", "cuda")


class InPlace:
    """The program of instructions, run in C++ when the extension is built."""

    name = NAME

    def run(self, engine: Engine, request: RunRequest) -> RunResult:
        n_steps, on_step = request.n_steps, request.on_step
        prog = self._program(engine, request)
        data = prog.emit_probe_records(
            engine.probes, engine.probe_signal, engine.probe_period,
            request.start_step, n_steps,
        )
        # chunks, so that a progress bar moves; one chunk when nobody watches
        chunk = n_steps if on_step is None else max(1, n_steps // 100)
        for k0 in range(0, n_steps, chunk):
            k1 = min(n_steps, k0 + chunk)
            prog.run(k0, k1)
            if on_step is not None:
                for _ in range(k1 - k0):
                    on_step()
        # reads are cached views: the split afterwards is cheap
        return RunResult(data, prog.sv, list(prog.fallbacks))

    def fallbacks(self, engine: Engine, request: RunRequest) -> list:
        """The operators that would run as CALLs (a program built, not run)."""
        return list(self._program(engine, request).fallbacks)

    def _program(self, engine, request: RunRequest) -> Program:
        buffers = {
            base: value.clone(memory_format=torch.contiguous_format)
            if base in engine.layout.dynamic else value.contiguous()
            for base, value in request.values.items()
        }
        return Program(
            engine.layout, engine.model.dt, request.op_steps, buffers,
            request.batch_size, request.feeds, request.training,
        )


STRATEGY = InPlace()
