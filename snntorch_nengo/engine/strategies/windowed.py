"""Windowed runs: each operator once over a window of steps (`engine.window`).

For runs of several steps of models that have no loop across time steps (no
recurrent connection through a synapse, no learning rule closing a loop) and
not too many operators. Works with and without autograd.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from nengo.builder.neurons import SimNeurons

from ..request import RunRequest, RunResult

if TYPE_CHECKING:
    from ..engine import Engine

NAME = "windowed"

# Windows pay for a few large operators (layers), whose products batch over
# time; networks of many small operators (nengo.networks: EnsembleArray,
# CircularConvolution) run faster merged and stepped in place, where each
# merged operator costs one instruction per step (measured on cconv: 1,541
# operators, 57 instructions merged; ff_mlp: 23 operators).
MAX_OPERATORS = 256

# Rows (batch x steps) per chunk of a windowed run on the CPU; see `Windowed.run`.
CHUNK_ROWS = 4096


def unavailable(engine: Engine) -> str | None:
    """Why ``engine``'s model cannot run windowed (None when it can).

    Decided once per model, before merging: windowed models stay unmerged.
    """
    if engine.settings.get("windowed") is False:
        return "the windowed setting is False"
    if len(engine.operators) > MAX_OPERATORS:
        return (
            f"{len(engine.operators)} operators (more than {MAX_OPERATORS}): "
            "merged and stepped in place instead"
        )
    stochastic = [
        op for op in engine.operators if isinstance(op, SimNeurons) and op.state_extra
    ]
    if len(stochastic) > 1:
        # windows run unmerged, and nengo's merged stochastic neurons share one
        # random stream: only the merged form draws the reference's numbers
        return (
            f"{len(stochastic)} neuron operators with their own random state "
            f"({type(stochastic[0].neurons).__name__}): stepped, where optimize=True "
            "merges them as nengo's optimizer does, to draw nengo.Simulator's random numbers"
        )
    return engine.window_plan.reason


class Windowed:
    """The window plan, in chunks of steps whose tensors stay in the CPU's caches."""

    name = NAME

    def run(self, engine: Engine, request: RunRequest) -> RunResult:
        """One window over thousands of steps makes every intermediate tensor
        tens of megabytes: each operator then streams it from memory (and the
        allocator maps fresh pages for it), which costs more than the
        arithmetic. Chunks of ``CHUNK_ROWS`` rows (batch x steps) carry their
        final state into the next, so results are the same.
        """
        n_steps, batch_size = request.n_steps, request.batch_size
        on_cpu = request.device_types <= {"cpu"}
        chunk = max(1, CHUNK_ROWS // batch_size) if on_cpu else n_steps
        values, parts, fallbacks = dict(request.values), [], {}
        for k0 in range(0, n_steps, chunk):
            k1 = min(n_steps, k0 + chunk)
            part = {node: data[:, k0:k1] for node, data in request.feeds.items()}
            result = engine.window_plan.run(
                values, request.op_steps, k1 - k0, batch_size, request.start_step + k0,
                part, request.training, engine.probe_period,
            )
            values = result.values.values
            parts.append(result.data)
            for fallback in result.fallbacks:
                fallbacks.setdefault(fallback.op, fallback)
            if request.on_step is not None:
                for _ in range(k1 - k0):
                    request.on_step()
        if len(parts) == 1:
            data = parts[0]
        else:
            data = {
                probe: torch.cat([d[probe] for d in parts], dim=1) for probe in engine.probes
            }
        return RunResult(data, result.values, list(fallbacks.values()))

    def fallbacks(self, engine: Engine, request: RunRequest) -> list:
        """Operators stepped inside the window whatever the data (no series form)."""
        return engine.window_plan.static_fallbacks(request.op_steps)


STRATEGY = Windowed()
