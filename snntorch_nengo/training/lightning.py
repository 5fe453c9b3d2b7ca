"""NengoLightningModule: a NengoModule with its losses, metrics and optimizer.

Lightning runs the loop: ``Trainer.fit/validate/test/predict`` work on it as on
any `lightning.LightningModule`. Batches are tuples of tensors: first one per
input Node (``input_nodes`` order), then one target per trained probe
(``target_probes`` order), each ``(batch, n_steps, d)``.
"""

from __future__ import annotations

import copy
import functools
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, NamedTuple

import lightning as L
import torch
import torchmetrics
from nengo.exceptions import SimulationError, ValidationError
from torch import nn

from ..module import NengoModule
from . import checkpoint as checkpoint_state, tbptt
from .losses import resolve_loss
from .metrics import resolve_metric

if TYPE_CHECKING:
    import nengo

# Lightning's stages that compute metrics, and the prefix of their logged names
STAGES = {"train": "", "val": "val_", "test": ""}

OPTIMIZERS = {
    "adam": functools.partial(torch.optim.Adam, lr=1e-3),
    "sgd": functools.partial(torch.optim.SGD, lr=1e-2),
    "rmsprop": functools.partial(torch.optim.RMSprop, lr=1e-3),
    "adamw": functools.partial(torch.optim.AdamW, lr=1e-3),
}


def probe_names(probes: Iterable[nengo.Probe]) -> dict[nengo.Probe, str]:
    """NengoDL's output names: a probe's label, else ``probe``, ``probe_1``, ..."""
    names, unlabeled = {}, 0
    for probe in probes:
        if probe.label is not None:
            name = str(probe.label)
        else:
            name = "probe" if unlabeled == 0 else f"probe_{unlabeled}"
            unlabeled += 1
        while name in names.values():
            name += "_"
        names[probe] = name
    return names


def resolve_optimizer(
    optimizer: torch.optim.Optimizer | type | Callable | str | None,
    parameters: Iterable[torch.Tensor],
) -> torch.optim.Optimizer:
    """An optimizer instance from an instance, a class/partial, or a name."""
    if optimizer is None:
        optimizer = "adam"
    if isinstance(optimizer, torch.optim.Optimizer):
        return optimizer
    if isinstance(optimizer, str):
        if optimizer.lower() not in OPTIMIZERS:
            raise ValidationError(
                f"unknown optimizer '{optimizer}'; names are {sorted(OPTIMIZERS)}",
                attr="optimizer",
            )
        optimizer = OPTIMIZERS[optimizer.lower()]
    if callable(optimizer):
        return optimizer(parameters)
    raise ValidationError(
        "optimizer must be a torch.optim.Optimizer, an optimizer class or partial, "
        f"or a name; got {optimizer!r}",
        attr="optimizer",
    )


class BatchLosses(NamedTuple):
    """One batch's losses (`NengoLightningModule.batch_losses`)."""

    total: torch.Tensor
    losses: dict
    outputs: dict
    targets: dict
    batch_size: int


class EpochMean(torchmetrics.Metric):
    """The batch-size-weighted mean of a value over an epoch.

    Computes what ``self.log(value, on_epoch=True, batch_size=n)`` reports, but
    updating it costs a tensor addition where each ``self.log`` call costs
    Lightning's per-value bookkeeping (more than a small network's whole step).
    It is logged once per epoch; Lightning computes it at the epoch's end and
    then resets it, which marks it to be logged again.
    """

    full_state_update = False

    def __init__(self) -> None:
        # each process its own mean, as self.log(sync_dist=False)
        super().__init__(sync_on_compute=False)
        self.add_state("total", torch.tensor(0.0), dist_reduce_fx="sum")
        self.add_state("count", torch.tensor(0), dist_reduce_fx="sum")
        self.stale = True

    def update(self, value: torch.Tensor, batch_size: int) -> None:
        # the same arithmetic as Lightning's accumulation, so the same numbers
        value = value.detach()
        if value.dtype not in (torch.float32, torch.float64):
            value = value.to(torch.get_default_dtype())
        self.total = self.total + value * batch_size
        self.count = self.count + batch_size

    def compute(self) -> torch.Tensor:
        return self.total / self.count

    def __setattr__(self, key, value):
        # set every batch and never a parameter or module: skip nn.Module's
        # bookkeeping, as Lightning's own logged-value metric does
        object.__setattr__(self, key, value)

    def reset(self) -> None:
        super().reset()
        self.stale = True


class NengoLightningModule(L.LightningModule):
    """Trains a Nengo network with Lightning.

    Parameters
    ----------
    network : nengo.Network, optional
        Built into a `.NengoModule` (with ``module_kwargs``) unless ``module`` given.
    module : NengoModule, optional
        The module to train.
    loss : str or callable or dict
        ``loss(prediction, target)``, a name (``"mse"``, ``"cross_entropy"``), or a
        dict from probe (or probe name) to loss; probes with a loss are trained.
    metrics : str or torchmetrics.Metric or list or dict, optional
        Metrics for every trained probe, or a dict per probe.
    loss_weights : dict, optional
        Weight of each probe's loss in the total.
    optimizer : torch.optim.Optimizer or class or partial or str
        Built on the module's parameters if not an instance (default Adam).
    stateful : bool
        Keep the simulation state from batch to batch (else each batch starts from
        the initial state, as NengoDL's ``fit`` does).
    tbptt_steps : int, optional
        Train with truncated backpropagation through time in windows of this many
        steps (see `.training.tbptt`); the optimizer then steps once per window.

    Checkpoints hold the simulation state as well as the parameters (see
    `.training.checkpoint`), so resuming a stateful fit continues where it was.

    Losses are logged per epoch (``<probe>_loss``, ``loss``, and ``val_`` ones);
    the total ``loss`` is logged per step as well when a progress bar or a logger
    shows it.
    """

    def __init__(
        self,
        network: nengo.Network | None = None,
        module: NengoModule | None = None,
        loss: str | Callable | Mapping[Any, str | Callable | None] | None = "mse",
        metrics: Any = None,
        loss_weights: Mapping[Any, float] | None = None,
        optimizer: torch.optim.Optimizer | type | Callable | str | None = None,
        stateful: bool = False,
        tbptt_steps: int | None = None,
        **module_kwargs: Any,
    ) -> None:
        super().__init__()
        if module is None:
            if network is None:
                raise ValidationError("give a network or a NengoModule", attr="network")
            module = NengoModule(network, **module_kwargs)
        self.module = module
        self.stateful = stateful
        self.tbptt_steps = tbptt_steps
        self.names = probe_names(module.model.probes)
        self.losses = self._losses(loss)
        self.target_probes = list(self.losses)
        self.loss_weights = self._per_probe(loss_weights or {}, "loss_weights")
        # one metric object per stage: training, validation and test each
        # accumulate their own batches (a shared one would pool validation
        # batches into the training figure, and one updated under Lightning's
        # inference mode cannot be updated again in training)
        self.metrics = nn.ModuleDict()  # training's
        self.val_metrics = nn.ModuleDict()
        self.test_metrics = nn.ModuleDict()
        self.metric_probes = {}
        for probe, metric_list in self._metrics(metrics).items():
            for metric in metric_list:
                name, made = resolve_metric(metric)
                key = f"{self.names[probe]}_{name}"
                self.metrics[key] = made
                self.val_metrics[key] = copy.deepcopy(made)
                self.test_metrics[key] = copy.deepcopy(made)
                self.metric_probes[key] = probe
        self._optimizer = optimizer
        self.default_steps = None
        self._epoch_means = {}
        self._log_steps = True

    def __setattr__(self, name, value):
        # Lightning sets this around each of the dozens of hooks it calls per
        # batch; it is never a parameter, buffer or module, so skip
        # nn.Module's bookkeeping for it
        if name == "_current_fx_name":
            object.__setattr__(self, name, value)
        else:
            super().__setattr__(name, value)

    # -- configuration

    @property
    def input_nodes(self) -> list[nengo.Node]:
        # read every batch: the child module straight from nn.Module's dict
        return self._modules["module"].input_nodes

    def find_probe(self, key: nengo.Probe | str, where: str) -> nengo.Probe:
        if key in self.names:
            return key
        for probe, name in self.names.items():
            if name == key:
                return probe
        raise ValidationError(
            f"{key!r} is not a probe of this network; probes are "
            f"{sorted(self.names.values())}",
            attr=where,
        )

    def _per_probe(self, value, where):
        if isinstance(value, dict):
            return {self.find_probe(k, where): v for k, v in value.items()}
        return {probe: value for probe in self.names}

    def _losses(self, loss):
        if isinstance(loss, dict):
            return {
                self.find_probe(k, "loss"): resolve_loss(v)
                for k, v in loss.items()
                if v is not None
            }
        return {probe: resolve_loss(loss) for probe in self.names}

    def _metrics(self, metrics):
        if metrics is None:
            return {}
        if isinstance(metrics, dict):
            out = self._per_probe(metrics, "metrics")
        else:
            out = {probe: metrics for probe in self.target_probes}
        return {p: m if isinstance(m, (list, tuple)) else [m] for p, m in out.items()}

    def configure_optimizers(self) -> torch.optim.Optimizer:
        if not isinstance(self._optimizer, torch.optim.Optimizer):
            params = [p for p in self.module.parameters() if p.requires_grad]
            if not params:
                raise SimulationError(
                    "the network has no trainable parameters (are all objects "
                    "configured with trainable=False?)"
                )
            self._optimizer = resolve_optimizer(self._optimizer, params)
        return self._optimizer

    # -- running

    def forward(
        self,
        inputs: Mapping[nengo.Node, torch.Tensor] | torch.Tensor | None = None,
        n_steps: int | None = None,
    ) -> dict[nengo.Probe, torch.Tensor]:
        return self.module(inputs, n_steps=n_steps)

    def split_batch(
        self, batch: Sequence[torch.Tensor]
    ) -> tuple[dict[nengo.Node, torch.Tensor], dict[nengo.Probe, torch.Tensor]]:
        """``(inputs by node, targets by probe)`` from a batch tuple."""
        batch = list(batch)
        nodes = self.input_nodes
        n_in = len(nodes) if len(batch) > len(self.target_probes) else 0
        inputs = dict(zip(nodes, batch[:n_in]))
        targets = dict(zip(self.target_probes, batch[n_in:]))
        return inputs, targets

    def batch_steps(
        self,
        inputs: Mapping[nengo.Node, torch.Tensor],
        targets: Mapping[nengo.Probe, torch.Tensor],
    ) -> int:
        """Steps to run a batch for: its inputs' time axis, else its targets'.

        With ``keep_history=False`` probes return (and targets hold) only the
        last step; a batch without inputs then runs ``default_steps`` (the
        ``n_steps`` of `Simulator.fit`/`evaluate`).
        """
        if inputs:
            return next(iter(inputs.values())).shape[1]
        if self.module.settings["keep_history"] is False and self.default_steps:
            return self.default_steps
        return next(iter(targets.values())).shape[1]

    def run_batch(
        self,
        inputs: Mapping[nengo.Node, torch.Tensor],
        n_steps: int | None,
        forward: Callable | None = None,
    ) -> dict[nengo.Probe, torch.Tensor]:
        """Run one batch from the initial state (or on, when stateful).

        ``forward``: what runs the module (the module itself by default; the
        Fabric loop passes its wrapper, which DDP and precision go through).
        """
        module = self.module
        batch_size = next(iter(inputs.values())).shape[0] if inputs else None
        if not self.stateful or (batch_size or module.batch_size) != module.batch_size:
            module.reset(batch_size=batch_size)
        return (forward or module)(inputs or None, n_steps=n_steps)

    def batch_losses(
        self, batch: Sequence[torch.Tensor], forward: Callable | None = None
    ) -> BatchLosses:
        """Run one batch and compute its losses: what both training loops share.

        Returns a `BatchLosses`: the weighted total, each trained probe's loss,
        the outputs and targets by probe, and the batch size. `training_step`
        (a user's `Trainer`) and `.fabric_loop` (``sim.fit``) both compute their
        losses here, so on the same data they give the same numbers.
        """
        inputs, targets = self.split_batch(batch)
        outputs = self.run_batch(inputs, self.batch_steps(inputs, targets), forward)
        total, losses = self.weighted_losses(outputs, targets)
        batch_size = next(iter(targets.values())).shape[0]
        return BatchLosses(total, losses, outputs, targets, batch_size)

    def weighted_losses(
        self,
        outputs: Mapping[nengo.Probe, torch.Tensor],
        targets: Mapping[nengo.Probe, torch.Tensor],
    ) -> tuple[torch.Tensor | float, dict[nengo.Probe, torch.Tensor]]:
        """``(weighted sum, {probe: loss})`` of the trained probes' losses."""
        total, losses = None, {}
        for probe, target in targets.items():
            value = self.losses[probe](outputs[probe], target.to(outputs[probe].dtype))
            losses[probe] = value
            weight = self.loss_weights.get(probe, 1.0)
            # the numbers of 0.0 + 1.0 * value, without the two operations
            term = value if weight == 1 else weight * value
            total = term if total is None else total + term
        return (0.0 if total is None else total), losses

    def _step(self, batch, stage, on_step):
        prefix = STAGES[stage]
        result = self.batch_losses(batch)
        for probe, value in result.losses.items():
            self.log_epoch_mean(
                f"{prefix}{self.names[probe]}_loss", value, result.batch_size
            )
        self.log_loss(f"{prefix}loss", result.total, result.batch_size, on_step)
        self.update_metrics(result.outputs, result.targets, stage)
        return result.total

    def probe_losses(
        self,
        outputs: Mapping[nengo.Probe, torch.Tensor],
        targets: Mapping[nengo.Probe, torch.Tensor],
        prefix: str = "",
    ) -> torch.Tensor | float:
        """The weighted sum of each probe's loss; each is logged per epoch."""
        batch_size = next(iter(targets.values())).shape[0]
        total, losses = self.weighted_losses(outputs, targets)
        for probe, value in losses.items():
            self.log_epoch_mean(f"{prefix}{self.names[probe]}_loss", value, batch_size)
        return total

    def log_loss(
        self, name: str, value: torch.Tensor, batch_size: int, on_step: bool
    ) -> None:
        """Log a total loss per epoch, and per step if ``on_step`` and it is shown."""
        if on_step and self._log_steps:
            self.log(
                name,
                value,
                on_step=True,
                on_epoch=True,
                prog_bar=True,
                batch_size=batch_size,
            )
        else:
            self.log_epoch_mean(name, value, batch_size, prog_bar=True)

    def log_epoch_mean(
        self, name: str, value: torch.Tensor, batch_size: int, prog_bar: bool = False
    ) -> None:
        """Log the epoch's batch-size-weighted mean of ``value`` under ``name``."""
        key = (self._current_fx_name, name)
        mean = self._epoch_means.get(key)
        if mean is None:
            mean = self._epoch_means[key] = EpochMean().to(value.device)
        mean.update(value, batch_size)
        if mean.stale:
            self.log(
                name,
                mean,
                on_step=False,
                on_epoch=True,
                prog_bar=prog_bar,
                # not a submodule (so not in state_dict): name it for Lightning
                metric_attribute=f"_epoch_means[{name!r}]",
            )
            mean.stale = False

    def _restart_epoch_means(self, fx):
        # a new run's Lightning results do not hold the means of an earlier one
        # (e.g. one that stopped on an error mid-epoch)
        for (where, _), mean in self._epoch_means.items():
            if where == fx:
                mean.reset()

    def stage_metrics(self, stage: str = "train") -> nn.ModuleDict:
        """The metric objects of ``stage``: each stage accumulates its own."""
        return {"train": self.metrics, "val": self.val_metrics}.get(
            stage, self.test_metrics
        )

    def update_metric_states(
        self,
        outputs: Mapping[nengo.Probe, torch.Tensor],
        targets: Mapping[nengo.Probe, torch.Tensor],
        stage: str = "train",
        metrics: nn.ModuleDict | None = None,
    ) -> nn.ModuleDict:
        """Update the metrics of ``stage`` (or ``metrics``) with one batch.

        Nothing is logged.
        """
        if metrics is None:
            metrics = self.stage_metrics(stage)
        for key, metric in metrics.items():
            probe = self.metric_probes[key]
            metric.update(outputs[probe].detach(), targets[probe])
        return metrics

    def update_metrics(
        self,
        outputs: Mapping[nengo.Probe, torch.Tensor],
        targets: Mapping[nengo.Probe, torch.Tensor],
        stage: str = "train",
    ) -> None:
        """Update and log the metrics of ``stage`` (``"train"``, ``"val"``, ``"test"``)."""
        batch_size = next(iter(targets.values())).shape[0]
        prefix = STAGES[stage]
        for key, metric in self.update_metric_states(outputs, targets, stage).items():
            self.log(f"{prefix}{key}", metric, on_epoch=True, batch_size=batch_size)

    def on_fit_start(self) -> None:
        # NengoModules start in eval mode (Nengo semantics); training behaviour on
        self.train()
        trainer = self.trainer
        # per-step values cost time; log them only where they are shown
        self._log_steps = trainer.progress_bar_callback is not None or bool(
            trainer.loggers
        )
        self._restart_epoch_means("training_step")

    def on_train_epoch_start(self) -> None:
        self.train()

    def on_validation_start(self) -> None:
        self._restart_epoch_means("validation_step")

    def on_test_start(self) -> None:
        self._restart_epoch_means("test_step")

    @property
    def automatic_optimization(self) -> bool:
        # TBPTT steps the optimizer itself, once per window
        manual = getattr(self, "tbptt_steps", None) is not None
        return not manual and getattr(self, "_automatic_optimization", True)

    @automatic_optimization.setter
    def automatic_optimization(self, value: bool) -> None:
        self._automatic_optimization = value

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint_state.save_state(self.module, checkpoint)

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint_state.load_state(self.module, checkpoint)

    def training_step(self, batch: Sequence[torch.Tensor], batch_idx: int) -> torch.Tensor:
        if self.tbptt_steps is not None:
            return tbptt.training_step(self, batch, batch_idx)
        loss = self._step(batch, "train", on_step=True)
        if not torch.is_tensor(loss) or not loss.requires_grad:
            raise SimulationError(
                "the loss does not depend on any trainable parameter: check that the "
                "probed outputs are reached within n_steps (each synapse delays a "
                "connection by a step) and that the objects on the way are trainable"
            )
        return loss

    def validation_step(self, batch: Sequence[torch.Tensor], batch_idx: int) -> None:
        self._step(batch, "val", on_step=False)

    def test_step(self, batch: Sequence[torch.Tensor], batch_idx: int) -> None:
        self._step(batch, "test", on_step=False)

    def predict_step(
        self, batch: Sequence[torch.Tensor], batch_idx: int
    ) -> dict[nengo.Probe, torch.Tensor]:
        batch = list(batch)
        inputs = dict(zip(self.input_nodes, batch[: len(self.input_nodes)]))
        n_steps = batch[len(self.input_nodes)].shape[1] if not inputs else None
        return self.run_batch(inputs, n_steps)
