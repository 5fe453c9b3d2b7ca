"""``sim.fit`` and ``sim.evaluate`` on Lightning Fabric: a plain training loop.

Lightning's `Trainer` calls dozens of hooks and logging steps per batch, which
for a small network cost more than the network's own step. Fabric keeps what
``fit`` needs from Lightning (accelerators and devices, precision, DDP) without
a per-step loop of its own: each batch here is the loss
(`.NengoLightningModule.batch_losses`, the same computation a `Trainer` runs),
``backward`` and the optimizer step. Losses and metrics stay on the device
until the epoch ends.

The `Trainer` still runs ``fit`` when it is asked for something only it does
(`trainer_reason` says what): Lightning callbacks other than this package's own
(`.training.callbacks`), a logger, ``ckpt_path``, truncated BPTT, or other
`Trainer` arguments. The `History` says which loop ran (``history.loop``).
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import torch
from nengo.exceptions import SimulationError
from torch.utils.data import DataLoader, DistributedSampler

from . import distributed

if TYPE_CHECKING:
    from lightning.fabric import Fabric

    from .api import History
    from .lightning import NengoLightningModule
    from ..module import NengoModule

# Trainer arguments that mean the same to Fabric
FABRIC_KWARGS = frozenset({"accelerator", "devices", "strategy", "num_nodes", "precision", "plugins"})

# seconds between redraws of the loss in the progress bar (each costs a sync)
BAR_INTERVAL = 0.5


def own_callback_types() -> tuple[type, ...]:
    from .callbacks import FiringRateLogger, ParameterHistogramLogger

    return (FiringRateLogger, ParameterHistogramLogger)


def trainer_reason(
    callbacks: Sequence[Any] | None = None,
    ckpt_path: str | None = None,
    tbptt_steps: int | None = None,
    loop: str | None = None,
    **kwargs: Any
) -> str | None:
    """Why ``fit``/``evaluate`` needs Lightning's `Trainer`; None if Fabric will do.

    ``kwargs`` are the Trainer arguments given to ``fit``/``evaluate``;
    ``loop`` is the loop asked for (``"fabric"``, ``"trainer"`` or None: choose).
    """
    if loop not in (None, "fabric", "trainer"):
        from nengo.exceptions import ValidationError

        raise ValidationError(
            f"loop must be 'fabric', 'trainer' or None, got {loop!r}", attr="loop"
        )
    reasons = []
    if loop == "trainer":
        reasons.append("loop='trainer' was asked for")
    ours = own_callback_types()
    for callback in callbacks or []:
        if type(callback) not in ours:
            reasons.append(f"the callback {type(callback).__name__} needs the Trainer's hooks")
    if ckpt_path is not None:
        reasons.append("ckpt_path resumes a Trainer checkpoint")
    if tbptt_steps is not None:
        reasons.append("tbptt_steps steps the optimizer inside the LightningModule")
    logger = kwargs.pop("logger", None)
    if logger not in (None, False):
        reasons.append("a logger is given")
    strategy = kwargs.get("strategy")
    if strategy is not None and not isinstance(strategy, str):
        from lightning.fabric.strategies import Strategy

        if not isinstance(strategy, Strategy):
            reasons.append(f"the strategy {type(strategy).__name__} is a Trainer strategy")
    other = sorted(set(kwargs) - FABRIC_KWARGS)
    if other:
        reasons.append(f"Trainer arguments {other}")
    if not reasons:
        return None
    if loop == "fabric":
        raise SimulationError(
            "loop='fabric' cannot run this: " + "; ".join(reasons)
        )
    return "; ".join(reasons)


def make_fabric(module: NengoModule, kwargs: Mapping[str, Any], verbose: int) -> Fabric:
    """A launched `Fabric` for ``module``'s device (Trainer-style defaults)."""
    from lightning.fabric import Fabric

    kwargs = {k: v for k, v in kwargs.items() if k != "logger"}
    device = module.device
    kwargs.setdefault("accelerator", "gpu" if device.type == "cuda" else "cpu")
    kwargs.setdefault("devices", 1)
    if "strategy" in kwargs:  # DDP keeps each process's simulation state
        kwargs["strategy"] = distributed.resolve_strategy(kwargs["strategy"], fabric=True)
    quiet_lightning(verbose)
    try:
        key = tuple(sorted(kwargs.items()))
        hash(key)
    except TypeError:  # e.g. a strategy object: not kept
        key = None
    fabric = _FABRICS.get(key)
    if fabric is None:
        fabric = Fabric(**kwargs)
        fabric.launch()
        # making one costs more than an epoch of a small network (Fabric reads
        # every installed package's entry points): one process's are kept
        if key is not None and fabric.world_size == 1:
            _FABRICS[key] = fabric
    return fabric


_FABRICS = {}


def quiet_lightning(verbose: int) -> None:
    """Lightning's info messages only with ``verbose=2``."""
    quiet = logging.WARNING if verbose < 2 else logging.INFO
    for name in ("lightning.pytorch.utilities.rank_zero", "lightning.fabric"):
        logger = logging.getLogger(name)
        # setting a level clears every logger's cache: only when it changes
        if logger.level != quiet:
            logger.setLevel(quiet)


class Loop:
    """One ``fit`` or ``evaluate`` on Fabric for a `NengoLightningModule`."""

    def __init__(
        self, lm: NengoLightningModule, fabric_kwargs: Mapping[str, Any], verbose: int = 1
    ) -> None:
        self.lm = lm
        self.verbose = verbose
        self.fabric = make_fabric(lm.module, fabric_kwargs, verbose)
        self.distributed = self.fabric.world_size > 1

    # -- data

    def batches(self, loader: DataLoader, train: bool, epoch: int) -> DataLoader:
        """``loader``'s batches on this process's device (and share, under DDP).

        The data move to the device once; each batch is then a view or one
        indexing of them. Under DDP each process takes its share as the
        `Trainer` gives it: a `DistributedSampler` that shuffles training data
        whatever ``shuffle`` says (seed ``PL_GLOBAL_SEED``), reshuffled each epoch.
        """
        device = self.fabric.device
        dataset = loader.dataset
        moved = self._moved.get(id(dataset))
        if moved is None:
            moved = dataset
            if any(t.device != device for t in dataset.tensors):
                copies = {}
                for t in dataset.tensors:
                    if id(t) not in copies:
                        copies[id(t)] = t.to(device)
                moved = type(dataset)(*[copies[id(t)] for t in dataset.tensors])
            self._moved[id(dataset)] = moved
        if self.distributed:
            sampler = DistributedSampler(
                moved,
                num_replicas=self.fabric.world_size,
                rank=self.fabric.global_rank,
                shuffle=train,
                seed=int(os.getenv("PL_GLOBAL_SEED", 0)),
            )
            sampler.set_epoch(epoch)
            return DataLoader(
                moved, batch_size=loader.batch_size, sampler=sampler,
                collate_fn=loader.collate_fn,
            )
        # the loader's own sampler: the same shuffles (and random numbers
        # drawn) as a Trainer would make with it
        return DataLoader(
            moved, batch_size=loader.batch_size, sampler=loader.sampler,
            collate_fn=loader.collate_fn,
        )

    _moved = None

    # -- running

    def fit(
        self,
        train: DataLoader,
        val: DataLoader | None,
        epochs: int,
        history: History,
        callbacks: Sequence[Any] = (),
    ) -> History:
        lm, fabric = self.lm, self.fabric
        self._moved = {}
        module = lm.module
        optimizer = lm.configure_optimizers()
        if self.plain() and module.device == fabric.device:
            # one device, full precision, the module already there: Fabric's
            # wrappers would only pass the calls on (and hook every output)
            forward, backward = module, _backward
        else:
            forward, optimizer = fabric.setup(module, optimizer)
            backward = fabric.backward
            if self.plain():
                forward, optimizer, backward = module, optimizer.optimizer, _backward
        metrics = lm.stage_metrics("train")
        for epoch in range(epochs):
            module.train()
            means = _Means(lm, "")
            for metric in metrics.values():
                metric.reset()
            batches = self.batches(train, True, epoch)
            bar = _Bar(self.verbose, len(batches), f"Epoch {epoch}")
            for batch in batches:
                result = lm.batch_losses(batch, forward=forward)
                loss = result.total
                if not torch.is_tensor(loss) or not loss.requires_grad:
                    bar.close()
                    raise SimulationError(
                        "the loss does not depend on any trainable parameter: check "
                        "that the probed outputs are reached within n_steps (each "
                        "synapse delays a connection by a step) and that the objects "
                        "on the way are trainable"
                    )
                optimizer.zero_grad()
                backward(loss)
                optimizer.step()
                means.add(result)
                if metrics:
                    lm.update_metric_states(result.outputs, result.targets, metrics=metrics)
                bar.step(loss)
            values = means.compute()
            values.update(_computed(metrics, ""))
            if val is not None:
                values.update(self.run_eval(val, "val", forward, epoch))
            for callback in callbacks:
                values.update(
                    {k: float(v) for k, v in callback.epoch_values(lm).items()}
                )
            bar.close(values.get("loss"))
            history.epoch.append(epoch)
            for name, value in values.items():
                history.history.setdefault(name, []).append(value)
        return history

    def plain(self) -> bool:
        """One process and a precision plugin that changes nothing."""
        from lightning.fabric.plugins import Precision

        return (
            not self.distributed
            and type(self.fabric.strategy.precision) is Precision
        )

    def evaluate(self, loader: DataLoader) -> dict[str, float]:
        self._moved = {}
        module = self.lm.module
        if self.plain() and module.device == self.fabric.device:
            forward = module
        else:
            forward = self.fabric.setup_module(module)
            if self.plain():
                forward = module
        return self.run_eval(loader, "test", forward, 0)

    def run_eval(
        self, loader: DataLoader, stage: str, forward: Callable, epoch: int
    ) -> dict[str, float]:
        """Losses and metrics of ``stage`` (``"val"``, ``"test"``) over ``loader``."""
        from .lightning import STAGES

        lm = self.lm
        module = lm.module
        training = module.training
        prefix = STAGES[stage]
        means = _Means(lm, prefix)
        metrics = lm.stage_metrics(stage)
        for metric in metrics.values():
            metric.reset()
        module.eval()
        batches = self.batches(loader, False, epoch)
        # evaluate shows a bar, as the Trainer's test does (validation within
        # fit does not add one)
        bar = _Bar(self.verbose if stage == "test" else 0, len(batches), "Testing")
        try:
            with torch.no_grad():
                for batch in batches:
                    result = lm.batch_losses(batch, forward=forward)
                    means.add(result)
                    if metrics:
                        lm.update_metric_states(
                            result.outputs, result.targets, metrics=metrics
                        )
                    bar.step(result.total)
        finally:
            bar.close()
            module.train(training)
        values = means.compute()
        values.update(_computed(metrics, prefix))
        return values


def _backward(loss):
    loss.backward()


class _Means:
    """The epoch's batch-size-weighted mean losses, accumulated on the device."""

    def __init__(self, lm, prefix):
        self.lm, self.prefix = lm, prefix
        self.means = {}
        self.same = {}  # name -> the name whose sum it shares
        self._names = {}  # probe -> the name of its loss
        self._total_name = f"{prefix}loss"

    def _mean(self, name):
        mean = self.means.get(name)
        if mean is None:
            mean = self.means[name] = _Sum()
        return mean

    def add(self, result):
        names = self._names
        added = {}
        for probe, value in result.losses.items():
            name = names.get(probe)
            if name is None:
                name = names[probe] = f"{self.prefix}{self.lm.names[probe]}_loss"
            self._add(name, value, result, added)
        self._add(self._total_name, result.total, result, added)

    def _add(self, name, value, result, added):
        mean = self._mean(name)
        same = added.get(id(value))
        if same is not None:
            # one probe of weight 1: its loss is the total, summed once
            self.same[name] = same
            return
        mean.update(value, result.batch_size)
        added[id(value)] = name

    def compute(self):
        values = {}
        for name, mean in self.means.items():
            source = self.same.get(name)
            values[name] = values[source] if source else float(mean.compute())
        return values


class _Sum:
    """A batch-size-weighted mean: `.lightning.EpochMean`'s arithmetic, lighter.

    The sum stays on the device; the count is a Python int.
    """

    def __init__(self):
        self.total, self.count = None, 0

    def update(self, value, batch_size):
        value = value.detach()
        if value.dtype not in (torch.float32, torch.float64):
            value = value.to(torch.get_default_dtype())
        # EpochMean starts from a zero; adding the first term to it is exact
        term = value * batch_size
        self.total = term if self.total is None else self.total + term
        self.count += batch_size

    def compute(self):
        return self.total / self.count


def _computed(metrics, prefix):
    values = {f"{prefix}{key}": float(metric.compute()) for key, metric in metrics.items()}
    for metric in metrics.values():
        metric.reset()
    return values


class _Bar:
    """A tqdm bar over an epoch's batches, as the Trainer's (off when not verbose)."""

    def __init__(self, verbose, total, description):
        self.bar = None
        if verbose:
            from tqdm.auto import tqdm

            self.bar = tqdm(total=total, desc=description, leave=True, dynamic_ncols=True)
        self.shown = 0.0

    def step(self, loss):
        if self.bar is None:
            return
        self.bar.update(1)
        now = time.monotonic()
        if now - self.shown >= BAR_INTERVAL:
            # reading the loss waits for the device: only when it is shown
            self.bar.set_postfix(loss=f"{float(loss.detach()):.4g}", refresh=False)
            self.shown = now

    def close(self, loss=None):
        if self.bar is None:
            return
        if loss is not None:
            self.bar.set_postfix(loss=f"{loss:.4g}", refresh=False)
        self.bar.close()
        self.bar = None
