"""Lightning callbacks that log what a Nengo network does while it trains."""

import nengo
import torch
from lightning.pytorch.callbacks import Callback


def _loggers(trainer):
    return list(getattr(trainer, "loggers", []) or [])


class FiringRateLogger(Callback):
    """Logs each ensemble's mean firing rate (Hz) at the end of every epoch.

    The rates come from running ``n_steps`` steps on ``inputs`` (a dict from input
    Node to a ``(batch, n_steps, d)`` array) with the neurons in inference mode.
    """

    def __init__(self, inputs=None, n_steps=10):
        self.inputs = inputs
        self.n_steps = n_steps

    def on_train_epoch_end(self, trainer, pl_module):
        module = pl_module.module
        rates = mean_firing_rates(module, self.inputs, self.n_steps)
        for ens, rate in rates.items():
            name = ens.label or f"ensemble_{list(rates).index(ens)}"
            pl_module.log(f"rate/{name}", rate)


def mean_firing_rates(module, inputs=None, n_steps=10):
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

    def on_train_epoch_end(self, trainer, pl_module):
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
                pl_module.log(f"param/{name}/mean", param.detach().mean())
                pl_module.log(f"param/{name}/std", param.detach().std())
