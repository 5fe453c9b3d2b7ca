"""NengoDL's Keras-style training API on `Simulator`: compile, fit, evaluate.

``fit`` and ``evaluate`` run a `NengoLightningModule` (which wraps the
simulator's `NengoModule`) on Lightning Fabric (`.fabric_loop`), or hand it to
Lightning's `Trainer` when asked for what only the Trainer does.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from nengo.exceptions import SimulationError, ValidationError
from torch.utils.data import DataLoader, TensorDataset

from .. import validation
from ..module import NengoModule
from . import distributed, tbptt
from .losses import KNOWN_LOSSES, nan_mse, takes_class_indices

if TYPE_CHECKING:
    import nengo
    from lightning.pytorch.callbacks import Callback

    from .lightning import NengoLightningModule


class History:
    """Per-epoch values, as Keras' ``History``: ``history.history["loss"]``.

    `callback` is the Lightning callback that fills it in.
    """

    def __init__(self) -> None:
        self.history = {}
        self.epoch = []
        self.loop = None  # "fabric" or "trainer": which loop ran the fit
        self.trainer_reason = None  # why the Trainer ran it (None: Fabric)

    def callback(self) -> Callback:
        from lightning.pytorch.callbacks import Callback

        history = self

        class RecordHistory(Callback):
            def on_train_epoch_end(self, trainer, pl_module):
                history.epoch.append(trainer.current_epoch)
                history._record(trainer, ("",))

        return RecordHistory()

    def _record(self, trainer, prefixes):
        metrics = trainer.callback_metrics
        for key, value in metrics.items():
            name = key[: -len("_epoch")] if key.endswith("_epoch") else key
            if key.endswith("_step") or f"{key}_epoch" in metrics:
                continue
            if name.startswith(prefixes):
                self.history.setdefault(name, []).append(float(value))

    def __repr__(self):
        return f"History({self.history})"


class TrainingMixin:
    """`Simulator` methods for training; ``self.module`` is the NengoModule."""

    # -- parameters

    def parameters(self) -> Iterator[torch.nn.Parameter]:
        """The trainable tensors (as `torch.nn.Module.parameters`)."""
        return (p for p in self.module.parameters() if p.requires_grad)

    def named_parameters(self) -> Iterator[tuple[str, torch.nn.Parameter]]:
        return ((n, p) for n, p in self.module.named_parameters() if p.requires_grad)

    # -- compile / fit / evaluate

    def compile(
        self,
        optimizer: torch.optim.Optimizer | type | Callable | str | None = None,
        loss: str | Callable | Mapping[Any, str | Callable | None] | None = None,
        metrics: Any = None,
        loss_weights: Mapping[Any, float] | None = None,
    ) -> None:
        """Choose optimizer, loss(es), metrics and loss weights for `fit`/`evaluate`.

        ``loss(prediction, target)`` follows torch's argument order.
        """
        self._check_trainable("compile")
        from .lightning import NengoLightningModule  # lightning is slow to import

        self._lightning = NengoLightningModule(
            module=self.module,
            loss="mse" if loss is None else loss,
            metrics=metrics,
            loss_weights=loss_weights,
            optimizer=optimizer,
        )
        self._lightning.configure_optimizers()  # resolve names now: errors early

    def lightning_module(self) -> NengoLightningModule:
        """The `NengoLightningModule` of the last `compile`, for your own Trainer."""
        if getattr(self, "_lightning", None) is None:
            raise SimulationError("call sim.compile(...) first")
        return self._lightning

    def fit(
        self,
        x: (
            np.ndarray | torch.Tensor | Mapping[Any, np.ndarray | torch.Tensor] | None
        ) = None,
        y: (
            np.ndarray | torch.Tensor | Mapping[Any, np.ndarray | torch.Tensor] | None
        ) = None,
        n_steps: int | None = None,
        epochs: int = 1,
        batch_size: int | None = None,
        validation_data: tuple | None = None,
        stateful: bool = False,
        callbacks: Sequence[Any] | None = None,
        verbose: int = 1,
        shuffle: bool = True,
        tbptt_steps: int | None = None,
        ckpt_path: str | None = None,
        loop: str | None = None,
        **trainer_kwargs: Any,
    ) -> History:
        """Train on inputs ``x`` and targets ``y``; return a Keras-like `History`.

        ``x``: dict from input Node (or label) to ``(n, n_steps, d)`` arrays, or
        one array; ``y``: dict from Probe (or name) to targets, or one array.
        ``tbptt_steps``: truncated backpropagation through time in windows of that
        many steps (`.training.tbptt`). ``ckpt_path``: resume from a Lightning
        checkpoint (e.g. one written by a ``ModelCheckpoint`` callback), as
        ``Trainer.fit(ckpt_path=...)``. Other keyword arguments go to the
        Lightning ``Trainer`` (e.g. ``strategy="ddp", devices=2``).

        The loop runs on Lightning Fabric (devices, precision, DDP; no per-step
        hooks) unless something only the `Trainer` does is asked for: Lightning
        callbacks other than `.training.callbacks`' own, a logger,
        ``ckpt_path``, ``tbptt_steps`` or other Trainer arguments
        (`.fabric_loop.trainer_reason`). ``loop="trainer"`` or ``"fabric"``
        chooses; ``history.loop`` says which ran, ``history.trainer_reason`` why.
        """
        self._check_open("fit")
        epochs = validation.positive_epochs(epochs)
        self._check_stateful(stateful)
        lightning_module = self._compiled("fit")
        lightning_module.stateful = stateful
        train = self._loader(x, y, n_steps, batch_size, shuffle, "fit")
        if tbptt_steps is not None:
            tbptt.check_window(train.dataset.tensors[-1].shape[1], tbptt_steps)
        lightning_module.tbptt_steps = tbptt_steps
        val = None
        if validation_data is not None:
            vx, vy = validation_data
            val = self._loader(vx, vy, n_steps, batch_size, False, "validation_data")
        from . import fabric_loop

        reason = fabric_loop.trainer_reason(
            callbacks, ckpt_path, tbptt_steps, loop, **trainer_kwargs
        )
        history = History()
        history.trainer_reason = reason
        self.last_loop = ("fabric" if reason is None else "trainer", reason)
        if reason is None:
            history.loop = "fabric"
            runner = fabric_loop.Loop(lightning_module, trainer_kwargs, verbose)
            with self._preserving_state(), self._quiet_lightning(), self._checked_inputs():
                runner.fit(train, val, epochs, history, callbacks=list(callbacks or []))
            return history
        history.loop = "trainer"
        trainer = self._trainer(
            callbacks, verbose, history, max_epochs=epochs, **trainer_kwargs
        )
        with self._preserving_state(), self._quiet_lightning(), self._checked_inputs():
            trainer.fit(
                lightning_module,
                train_dataloaders=train,
                val_dataloaders=val,
                ckpt_path=ckpt_path,
            )
        if val is not None:
            for key, value in trainer.callback_metrics.items():
                if key.startswith("val_") and key not in history.history:
                    history.history[key] = [float(value)]
        return history

    def evaluate(
        self,
        x: (
            np.ndarray | torch.Tensor | Mapping[Any, np.ndarray | torch.Tensor] | None
        ) = None,
        y: (
            np.ndarray | torch.Tensor | Mapping[Any, np.ndarray | torch.Tensor] | None
        ) = None,
        n_steps: int | None = None,
        stateful: bool = False,
        verbose: int = 1,
        loop: str | None = None,
        **kw: Any
    ) -> dict[str, float]:
        """Losses and metrics on ``x``/``y``: ``{"loss": ..., "<probe>_loss": ...}``.

        Runs on Lightning Fabric unless ``kw`` (Trainer arguments, callbacks)
        or ``loop="trainer"`` ask for Lightning's `Trainer` (see `fit`);
        ``self.last_loop`` says which ran.
        """
        self._check_open("evaluate")
        self._check_stateful(stateful)
        lightning_module = self._compiled("evaluate")
        lightning_module.stateful = stateful
        loader = self._loader(x, y, n_steps, None, False, "evaluate")
        from . import fabric_loop

        callbacks = kw.pop("callbacks", None)
        reason = fabric_loop.trainer_reason(callbacks, loop=loop, **kw)
        if reason is None:
            self.last_loop = ("fabric", None)
            runner = fabric_loop.Loop(lightning_module, kw, verbose)
            with self._preserving_state(), self._quiet_lightning(), self._checked_inputs():
                return runner.evaluate(loader)
        self.last_loop = ("trainer", reason)
        trainer = self._trainer(callbacks, verbose, None, **kw)
        with self._preserving_state(), self._quiet_lightning(), self._checked_inputs():
            results = trainer.test(lightning_module, dataloaders=loader, verbose=False)
        return {k: float(v) for k, v in results[0].items()}

    def check_gradients(
        self,
        x: (
            np.ndarray | torch.Tensor | Mapping[Any, np.ndarray | torch.Tensor] | None
        ) = None,
        n_steps: int = 1,
        outputs: Sequence[nengo.Probe] | nengo.Probe | None = None,
        atol: float = 1e-5,
        rtol: float = 1e-3,
    ) -> None:
        """Compare autograd's gradients with finite differences; raise if they differ.

        The network runs in float64 and in training mode, on inputs ``x`` (as in
        `predict`; zeros when None), and the gradients of the ``outputs`` probes
        (all by default) with respect to every trainable parameter are checked
        along random directions (`torch.autograd.gradcheck`'s fast mode).
        """
        self._check_open("check gradients of")
        inputs = {self.module.find_node(k): v for k, v in self._input_dict(x).items()}
        if not inputs:
            inputs = {
                node: np.zeros((self.module.batch_size, n_steps, node.size_out))
                for node in self.module.input_nodes
            }
        n_steps = next(iter(inputs.values())).shape[1] if inputs else n_steps
        module = NengoModule(
            self.module.network,
            dt=self.dt,
            seed=self.seed,
            dtype=torch.float64,
            model=None if self.module.network is not None else self.model,
        )
        module.load_state_dict(self.module.state_dict())
        module.train()
        names = [n for n, p in module.named_parameters() if p.requires_grad]
        if not names:
            raise SimulationError("there are no trainable parameters to check")
        probes = list(outputs or self.model.probes)
        feeds = {n: torch.as_tensor(np.asarray(v), dtype=torch.float64) for n, v in inputs.items()}
        batch = next(iter(feeds.values())).shape[0] if feeds else module.batch_size

        def run(*values):
            module.reset(batch_size=batch)
            out = torch.func.functional_call(
                module, dict(zip(names, values)), args=(feeds or None,),
                kwargs={"n_steps": n_steps},
            )
            return tuple(out[p] for p in probes)

        params = dict(module.named_parameters())
        values = tuple(params[n].detach().clone().requires_grad_() for n in names)
        try:
            torch.autograd.gradcheck(run, values, atol=atol, rtol=rtol, fast_mode=True)
        except RuntimeError as e:
            raise SimulationError(f"gradients do not match finite differences: {e}") from e

    # -- helpers

    def _check_trainable(self, action):
        if self.module.settings.get("inference_only"):
            raise SimulationError(
                f"cannot {action}: the network was built with "
                "configure_settings(inference_only=True)"
            )

    def _compiled(self, action):
        self._check_trainable(action)
        if getattr(self, "_lightning", None) is None:
            raise SimulationError(
                f"call sim.compile(optimizer=..., loss=...) before sim.{action}()"
            )
        return self._lightning

    def _trainer(self, callbacks, verbose, history, **kwargs):
        import lightning as L
        from lightning.pytorch.callbacks import ModelCheckpoint

        callbacks = list(callbacks or [])
        if history is not None:
            callbacks.append(history.callback())
        device = self.module.device
        kwargs.setdefault("accelerator", "gpu" if device.type == "cuda" else "cpu")
        kwargs.setdefault("devices", 1)
        kwargs.setdefault("logger", False)
        kwargs.setdefault(
            "enable_checkpointing", any(isinstance(c, ModelCheckpoint) for c in callbacks)
        )
        kwargs.setdefault("enable_model_summary", False)
        kwargs.setdefault("enable_progress_bar", bool(verbose))
        kwargs.setdefault("num_sanity_val_steps", 0)
        if "strategy" in kwargs:  # DDP keeps each process's simulation state
            kwargs["strategy"] = distributed.resolve_strategy(kwargs["strategy"])
        from .fabric_loop import quiet_lightning

        quiet_lightning(verbose)
        return L.Trainer(callbacks=callbacks, **kwargs)

    def _preserving_state(self):
        return self.module.preserved_state()

    def _checked_inputs(self):
        # `_loader` checked the data as a whole: batches need no check each
        return self.module.checked_inputs()

    @staticmethod
    @contextlib.contextmanager
    def _quiet_lightning():
        """Hide Lightning's advice that does not apply to in-memory Nengo data."""
        with warnings.catch_warnings():
            for pattern in (
                ".*does not have many workers.*",
                ".*LeafSpec.*",
                ".*in eval mode at the start of training.*",
                ".*but have no `val_dataloader`.*",
            ):
                warnings.filterwarnings("ignore", pattern)
            yield

    def _loader(self, x, y, n_steps, batch_size, shuffle, where):
        lm = self._lightning
        inputs = self._input_dict(x)
        nodes = [self.module.find_node(k) for k in inputs]
        twice = {str(n) for n in nodes if nodes.count(n) > 1}
        if twice:
            raise ValidationError(
                f"{where}: input for {sorted(twice)} given twice (by the Node and by "
                "its label); give each input once",
                attr="x",
            )
        inputs = dict(zip(nodes, inputs.values()))
        targets = self._target_dict(y, where)
        targets = {
            p: validation.as_array(v, f"targets for probe '{lm.names[p]}'", "y")
            for p, v in targets.items()
        }
        n = _common_length(list(inputs.values()) + list(targets.values()), where)
        if n == 0:
            # Lightning would fail deep in its sampler (fit) or its loop (evaluate)
            raise ValidationError(
                f"{where}: the data hold no samples (their first axis is 0); give at "
                "least one sample, shaped (batch, n_steps, d)",
                attr="x",
            )
        for node, value in inputs.items():
            _check_shape(value, (n, None, node.size_out), f"x[{node}]", where)
        # with keep_history=False a probe's output, so its target, is one step
        history = self.module.settings["keep_history"] is not False
        if n_steps is None and inputs:
            n_steps = np.shape(next(iter(inputs.values())))[1]
        if n_steps is None:
            probe, first = next(iter(targets.items()))
            if np.ndim(first) < 2:
                _check_shape(first, (n, None, None), f"y[{lm.names[probe]}]", where)
            n_steps = np.shape(first)[1]
        validation.positive_steps(n_steps, where)
        lm.default_steps = n_steps  # batches without inputs run this many
        for probe, value in targets.items():
            size = int(np.prod(self.model.sig[probe]["in"].shape))
            loss = lm.losses[probe]
            if takes_class_indices(loss) and np.shape(value)[-1:] == (1,):
                size = 1  # class indices
            elif loss not in KNOWN_LOSSES and not takes_class_indices(loss):
                size = None  # a custom loss decides what its targets hold
            expected = (n, n_steps if history else 1, size)
            _check_shape(value, expected, f"y[{lm.names[probe]}]", where)
        batch = batch_size or self.minibatch_size or 1
        if self.minibatch_size is not None and batch != self.minibatch_size:
            raise ValidationError(
                f"batch_size ({batch}) must equal the simulator's minibatch_size "
                f"({self.minibatch_size})",
                attr="batch_size",
            )
        if self.minibatch_size is not None and n % batch != 0:
            raise ValidationError(
                f"number of samples ({n}) is not a multiple of minibatch_size ({batch})",
                attr="x",
            )
        missing = [node for node in lm.input_nodes if node not in inputs]
        if inputs and missing:
            raise ValidationError(
                f"inputs are missing for {[str(m) for m in missing]}: give data for "
                "every input Node, or for none",
                attr="x",
            )
        dtype = self.module.dtype
        finite = self.module.settings["check_finite"] is not False
        converted = {}

        def tensor(value, name, allow_nan=False, attr="x"):
            # auto-encoders pass the same data as x and y: convert and check it once
            key = (_data_key(value), allow_nan)
            if key not in converted:
                converted[key] = validation.as_tensor(
                    value, name, dtype, "cpu", finite, allow_nan=allow_nan, attr=attr
                )
            return converted[key]

        tensors = [
            tensor(inputs[node], f"x[{node}]") for node in lm.input_nodes if inputs
        ]
        tensors += [
            tensor(
                targets[probe],
                f"targets for probe '{lm.names[probe]}'",
                # nan_mse reads NaN as "no target here"
                allow_nan=lm.losses[probe] is nan_mse,
                attr="y",
            )
            for probe in lm.target_probes
        ]
        return DataLoader(
            TensorBatches(*tensors),
            batch_size=batch,
            shuffle=shuffle,
            collate_fn=_as_batch,
        )

    def _target_dict(self, y, where):
        lm = self._lightning
        if y is None:
            raise ValidationError(f"{where} needs targets y", attr="y")
        if not isinstance(y, dict):
            if len(lm.target_probes) != 1:
                raise ValidationError(
                    "a single target array needs exactly one trained probe; pass a "
                    f"dict keyed by probe (probes: {sorted(lm.names.values())})",
                    attr="y",
                )
            y = {lm.target_probes[0]: y}
        targets = {lm.find_probe(k, "y"): v for k, v in y.items()}
        for probe in lm.target_probes:
            if probe not in targets:
                raise ValidationError(
                    f"no targets for probe '{lm.names[probe]}', which has a loss",
                    attr="y",
                )
        extra = [lm.names[p] for p in targets if p not in lm.losses]
        if extra:
            raise ValidationError(
                f"targets given for probes without a loss: {extra}", attr="y"
            )
        return targets


class TensorBatches(TensorDataset):
    """A `TensorDataset` that hands the DataLoader whole batches.

    The DataLoader's batching stays as it is (its samplers, its shuffling, and
    Lightning's distributed sampler), but each batch is one indexing of each
    tensor instead of one per sample followed by a stack, and a batch of
    consecutive samples is a view of the data.
    """

    def __getitems__(self, indices):
        start = indices[0] if len(indices) else 0
        if list(indices) == list(range(start, start + len(indices))):
            # in order (no shuffling): a view, no copy
            index = slice(start, start + len(indices))
        else:
            index = torch.as_tensor(indices)
        picked = {}
        for tensor in self.tensors:
            if id(tensor) not in picked:
                picked[id(tensor)] = _take(tensor, index)
        return tuple(picked[id(tensor)] for tensor in self.tensors)


def _take(tensor, index):
    """``tensor[index]``, with the dimensions it broadcasts (stride 0) kept so.

    An image held for ``n_steps`` (``np.broadcast_to``) then costs one step per
    sample, not a copy of every step, and the engine sees that it is held
    without comparing the steps.
    """
    broadcast = [d for d in range(1, tensor.dim())
                 if tensor.stride(d) == 0 and tensor.shape[d] > 1]
    if not broadcast:
        return tensor[index]
    compact = tensor
    for d in broadcast:
        compact = compact.narrow(d, 0, 1)
    return compact[index].expand((len(index),) + tuple(tensor.shape[1:]))


def _as_batch(batch):
    # TensorBatches already made the batch; there is nothing to collate
    return list(batch)


def _data_key(value):
    """Equal for arrays or tensors that view the same memory the same way."""
    if isinstance(value, np.ndarray):
        face = value.__array_interface__
        return ("array", face["data"], face["shape"], face["strides"], face["typestr"])
    if torch.is_tensor(value):
        return (
            "tensor", value.data_ptr(), tuple(value.shape), value.stride(),
            value.dtype, value.device,
        )
    return ("object", id(value))


def _common_length(arrays, where):
    lengths = {np.shape(a)[0] for a in arrays}
    if len(lengths) != 1:
        raise ValidationError(
            f"{where}: inputs and targets have different numbers of samples "
            f"({sorted(lengths)})",
            attr="x",
        )
    return lengths.pop()


def _check_shape(value, expected, name, where):
    shape = tuple(np.shape(value))
    ok = len(shape) == len(expected) and all(
        e is None or s == e for s, e in zip(shape, expected)
    )
    if not ok:
        shown = tuple("n_steps" if e is None else e for e in expected)
        raise ValidationError(
            f"{name} must have shape {shown}, got {shape} (in {where})", attr=name
        )
