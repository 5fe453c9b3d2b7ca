"""Lightning callbacks that log what a Nengo network does while it trains.

Each computes its values in `epoch_values`: a `Trainer` logs them from
``on_train_epoch_end``, and ``sim.fit``'s Fabric loop (`.fabric_loop`) records
them in the `History` without a Trainer.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import nengo
import numpy as np
import torch
from lightning.pytorch.callbacks import Callback

if TYPE_CHECKING:
    import lightning as L

    from ..module import NengoModule


def _loggers(trainer):
    return list(getattr(trainer, "loggers", []) or [])


class FiringRateLogger(Callback):
    """Logs each ensemble's mean firing rate (Hz) at the end of every epoch.

    The rates come from running ``n_steps`` steps on ``inputs`` (a dict from input
    Node to a ``(batch, n_steps, d)`` array) with the neurons in inference mode.
    """

    def __init__(
        self,
        inputs: (
            np.ndarray | torch.Tensor | Mapping[Any, np.ndarray | torch.Tensor] | None
        ) = None,
        n_steps: int = 10,
    ) -> None:
        self.inputs = inputs
        self.n_steps = n_steps

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        for name, value in self.epoch_values(pl_module).items():
            pl_module.log(name, value)

    def epoch_values(self, pl_module: L.LightningModule) -> dict[str, float]:
        """``{"rate/<ensemble>": mean rate in Hz}`` for this epoch."""
        rates = mean_firing_rates(pl_module.module, self.inputs, self.n_steps)
        return {
            f"rate/{ens.label or f'ensemble_{i}'}": rate
            for i, (ens, rate) in enumerate(rates.items())
        }


def mean_firing_rates(
    module: NengoModule,
    inputs: (
        np.ndarray | torch.Tensor | Mapping[Any, np.ndarray | torch.Tensor] | None
    ) = None,
    n_steps: int = 10,
) -> dict[nengo.Ensemble, float]:
    """``{ensemble: mean rate in Hz}`` of a NengoModule; its state is kept."""
    ensembles = [
        ens
        for ens in module.model.params
        if isinstance(ens, nengo.Ensemble) and not isinstance(ens.neuron_type, nengo.Direct)
    ]
    with module.preserved_state():
        module.eval()
        batch = next(iter(inputs.values())).shape[0] if inputs else module.batch_size
        module.reset(batch_size=batch)
        totals = {ens: 0.0 for ens in ensembles}
        with torch.no_grad():
            for k in range(n_steps):
                step = {n: torch.as_tensor(v[:, k : k + 1]) for n, v in (inputs or {}).items()}
                module(step or None, n_steps=1)
                values = module.signal_values()
                for ens in ensembles:
                    out = values.read(module.model.sig[ens.neurons]["out"])
                    totals[ens] += out.double().mean().item() / n_steps
    return {
        ens: total / getattr(ens.neuron_type, "amplitude", 1.0)
        for ens, total in totals.items()
    }


class ParameterHistogramLogger(Callback):
    """Logs a histogram of every trainable parameter at the end of every epoch.

    Needs a logger with ``experiment.add_histogram`` (TensorBoard); with other
    loggers it logs each parameter's mean and standard deviation instead.
    """

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        for name, param in pl_module.module.named_parameters():
            logged = False
            for logger in _loggers(trainer):
                experiment = getattr(logger, "experiment", None)
                if hasattr(experiment, "add_histogram"):
                    experiment.add_histogram(
                        name, param.detach().cpu(), trainer.current_epoch
                    )
                    logged = True
            if not logged:
                for key, value in self.parameter_values(name, param).items():
                    pl_module.log(key, value)

    @staticmethod
    def parameter_values(name: str, param: torch.Tensor) -> dict[str, torch.Tensor]:
        return {
            f"param/{name}/mean": param.detach().mean(),
            f"param/{name}/std": param.detach().std(),
        }

    def epoch_values(self, pl_module: L.LightningModule) -> dict[str, torch.Tensor]:
        """Each parameter's mean and standard deviation (there is no logger)."""
        values = {}
        for name, param in pl_module.module.named_parameters():
            values.update(self.parameter_values(name, param))
        return values
