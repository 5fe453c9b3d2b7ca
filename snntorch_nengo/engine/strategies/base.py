"""The probe sampling the stepping strategies share."""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from ..signals import SignalValues

if TYPE_CHECKING:
    from ..engine import Engine


class ProbeRecorder:
    """Collects the probes due after each step, as Nengo's ``sample_every`` says."""

    def __init__(self, engine: Engine, batch_size: int) -> None:
        self.engine = engine
        self.batch_size = batch_size
        self.records = {probe: [] for probe in engine.probes}
        # (probe, its period, its signal, its records): looked up once per run
        self.due = [
            (probe, engine.probe_period(probe), engine.probe_signal(probe),
             self.records[probe])
            for probe in engine.probes
        ]

    def after_step(self, sv: SignalValues, n: int) -> None:
        """Append the probes due after the simulation's step ``n``."""
        for probe, period, sig, records in self.due:
            if n % period < 1:
                value = sv.read(sig)
                if not sv.is_batched(sig):
                    value = value.expand((sv.batch_size,) + value.shape)
                records.append(value)

    def data(self) -> dict:
        data = {}
        for probe, rec in self.records.items():
            sig = self.engine.probe_signal(probe)
            data[probe] = (
                _stacked(rec)
                if rec
                else torch.zeros(
                    (self.batch_size, 0) + tuple(sig.shape), dtype=self.engine.dtype
                )
            )
        return data


def _stacked(records):
    """The records stacked on a time axis (dim 1)."""
    if len(records) == 1 and records[0].requires_grad:
        # one training step: a view instead of a copy (the output is the graph's;
        # outside autograd the copy keeps outputs apart from the kept state)
        return records[0].unsqueeze(1)
    return torch.stack(records, dim=1)
