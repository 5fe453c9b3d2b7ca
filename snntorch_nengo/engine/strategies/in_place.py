"""In-place runs: the operators as instructions on fixed buffers (`engine.program`).

For runs of several steps without autograd (``run_steps``, ``predict``) on the
devices in `DEVICES`, unless the ``in_place`` setting is False or the step is
compiled (``torch_compile=True``). Operators without an instruction form run
their ordinary step as a ``CALL``; each is listed as a fallback.

A program is kept for the engine's next run while that run would build the
same one (`_ProgramKey`): building costs about as much as a few hundred steps
of a small network, which a loop of short runs (``sim.run_steps`` in a user's
loop, ``predict_on_batch``) would otherwise pay every call.
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
        return RunResult(data, prog.final_values(), list(prog.fallbacks))

    def fallbacks(self, engine: Engine, request: RunRequest) -> list:
        """The operators that would run as CALLs (a program built, not run)."""
        return list(self._build(engine, request).fallbacks)

    def _program(self, engine, request: RunRequest) -> Program:
        """The engine's kept program loaded with ``request``, or a new one."""
        key = _ProgramKey(engine, request)
        kept = engine.strategy_cache.get(NAME)
        if kept is not None and kept[0] == key:
            prog = kept[1]
            prog.load(request.values, request.feeds)
            return prog
        prog = self._build(engine, request)
        # the key's tensors stay referenced with it: their ids cannot be reused
        engine.strategy_cache[NAME] = (key, prog)
        return prog

    def _build(self, engine, request: RunRequest) -> Program:
        buffers = {
            base: value.clone(memory_format=torch.contiguous_format)
            if base in engine.layout.dynamic else value.contiguous()
            for base, value in request.values.items()
        }
        return Program(
            engine.layout, engine.model.dt, request.op_steps, buffers,
            request.batch_size, request.feeds, request.training,
        )


class _ProgramKey:
    """What a program is built from, but the values of state and fed data.

    Two runs with equal keys build the same instructions: the same step
    functions, batch size, training mode and fed nodes; state tensors of the
    same shapes and types (`Program.load` copies them in); and constant
    tensors (parameters, merged bases) that are the very tensors the program
    holds by reference or derived its own copies from, or aliases of them
    (`remember` hands out detached ones), unchanged since: same memory, view
    and version (aliases share the version counter). The program keeps the
    tensors alive, so no other tensor can take their memory meanwhile.
    """

    __slots__ = ("parts", "refs")

    def __init__(self, engine: Engine, request: RunRequest) -> None:
        dynamic = engine.layout.dynamic
        parts = [id(request.op_steps), request.batch_size, request.training]
        for node, data in request.feeds.items():
            parts.append((id(node), data.dtype, data.device, data.shape[0], data.shape[2:]))
        for base, value in request.values.items():
            if base in dynamic:
                parts.append((value.shape, value.dtype, value.device))
            else:
                parts.append((value.data_ptr(), value._version, value.shape,
                              value.stride(), value.dtype, value.device))
        self.parts = tuple(parts)
        # kept alive with the key, so that no other object takes their ids
        self.refs = (request.op_steps, list(request.feeds), request.values)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _ProgramKey) and self.parts == other.parts

    __hash__ = None


STRATEGY = InPlace()
