"""Saving, loading and freezing trained parameters (``sim.save_params`` ...).

File format
-----------
`ParamsMixin.save_params` writes, with `torch.save`, one dict (format version 2)::

    {
        "format": "snntorch_nengo.params",
        "version": 2,
        "dtype": "float64",           # the simulator's float type (informative)
        "fingerprint": {...},         # the network's structure, see `fingerprint`
        "trainable": [[name, shape], ...],  # the trained tensors, in module order
        "params": {name: tensor},     # exactly the tensors listed in "trainable"
        "state": {name: tensor} or None,   # the simulation state (include_state)
        "n_steps": int or None,            # steps simulated (include_state)
        "checksum": str,              # sha256 of params and state, see `checksum`
    }

``trainable`` lists what training changes (`trained_tensors`): the module's
parameters (encoders, biases and connection weights of objects that train,
parameters of torch modules in TensorNodes and Layers) and the persistent
buffers of those torch modules (running statistics, say), named as in
`NengoModule.state_dict` (``"ensembles.a.encoders"``,
``"connections.connection_1.weights"``, ...). Built constants (gains of the
neuron model, weights of objects configured ``trainable=False``, decoders of
probes) are not saved: a network loading the file keeps its own. As in NengoDL,
`load_params` matches the file by this list alone, so a file trained with rate
neurons (``LIFRate``) loads into the same network built with ``LIF``, and a
Converter network re-converted with other ``swap_activations``,
``scale_firing_rates`` or ``synapse``, or given another probe, loads the file of
the first conversion. ``fingerprint`` is checked only when the simulation state
is loaded (``include_state=True``): state belongs to one network.

``state`` holds the simulation state (voltages, synapse states, learned
weights, time and step), named after the buffer of the module that owns each
signal, with its leading batch dimension. Memory addresses that Nengo writes
into the names of unlabelled objects (``..._at_0x7f...``) are dropped from the
names, so that a file saved by one process loads into the same network built
by another. Tensors are stored on the CPU; they are loaded onto the simulator's
device and cast to its dtype.

Files of format version 1 (no ``trainable`` entry; ``params`` holds every
tensor of the state dict, built constants included) load as they always did:
into a network with the same `fingerprint` only, every tensor replaced.

``checksum`` lets `load_params` tell a damaged file (flipped bytes inside a
tensor, which ``torch.load`` reads without complaint) from a good one; files
without it load unchecked.

The file is written where ``path`` says, as given: unlike NengoDL no ``.npz`` is
appended.
"""

from __future__ import annotations

import hashlib
import glob
import os
import keyword
import re
import tempfile
from typing import TYPE_CHECKING, Any

import nengo
import numpy as np
import torch
from nengo.exceptions import ValidationError

from . import validation
from .build.base import NengoObjectModule
from .export import freeze

if TYPE_CHECKING:
    from nengo.builder.signal import Signal
    from torch import nn

FORMAT = "snntorch_nengo.params"
VERSION = 2
VERSIONS = (1, 2)  # versions load_params reads
KINDS = ("ensembles", "nodes", "connections", "probes")
_LIST_MAX = 8  # names listed in an error message


class ParamsMixin:
    """`Simulator` methods for parameters; ``self.module`` is the NengoModule."""

    def save_params(self, path: str | os.PathLike, include_state: bool = False) -> None:
        """Save the network's parameters to the file ``path``.

        Parameters
        ----------
        path : str or os.PathLike
            The file to write, used as given (no extension is added). It is written
            to a temporary file in the same folder first and then renamed, so an
            existing file is replaced only by a complete one.
        include_state : bool
            Also save the simulation state (neuron, synapse and learning state,
            time) and the number of steps simulated. The state of random processes
            and of Python functions in Nodes is not saved.

        Notes
        -----
        The trainable parameters are saved (encoders, biases and connection
        weights of objects that train, and the tensors of torch modules in
        TensorNodes and Layers), with their names and shapes; built constants
        are not, a network loading the file keeps its own. See the module
        documentation for the format.
        """
        self._params_check_open("save parameters of")
        module = self.module
        trained = trained_tensors(module)
        payload = {
            "format": FORMAT,
            "version": VERSION,
            "dtype": str(module.dtype).replace("torch.", ""),
            "fingerprint": fingerprint(module),
            "trainable": [[name, list(t.shape)] for name, t in trained.items()],
            "params": {name: _stored(tensor) for name, tensor in trained.items()},
            "state": None,
            "n_steps": None,
        }
        if include_state:
            payload["state"] = {
                name: _stored(tensor)
                for name, (_, tensor) in state_tensors(module).items()
            }
            payload["n_steps"] = int(module.n_steps)
        payload["checksum"] = checksum(payload)
        atomic_save(payload, path)

    def load_params(self, path: str | os.PathLike, include_state: bool = False) -> None:
        """Load parameters saved by `save_params`.

        As in NengoDL the file matches this network when their trainable
        parameters do (names and shapes): the neuron types may differ (train
        with ``LIFRate``, load into the network built with ``LIF``), as may
        synapses, probes and built constants, which stay this network's own.

        Parameters
        ----------
        path : str or os.PathLike
            The file, as given to `save_params`.
        include_state : bool
            Also restore the simulation state and ``n_steps``; the file must have
            been saved with ``include_state=True`` from the same network (same
            neuron types and probes) in a simulator with the same minibatch size.

        Raises
        ------
        nengo.exceptions.ValidationError
            If the file is not a parameter file or its trainable parameters do not
            match this network's (the missing, extra and differently shaped ones
            are named). Nothing is changed then.
        """
        self._params_check_open("load parameters into")
        module = self.module
        payload = read_params_file(path)
        if payload["version"] == 1:
            _check_fingerprint(payload["fingerprint"], fingerprint(module), path)
            targets = param_tensors(module)
            params = _matched(
                payload["params"], targets, "parameters", path, batch=False
            )
        else:
            if include_state:
                _check_fingerprint(payload["fingerprint"], fingerprint(module), path)
            targets = trained_tensors(module)
            params = _matched_trainable(payload, targets, module, path)
        state = None
        if include_state:
            if payload.get("state") is None:
                raise ValidationError(
                    f"{path} holds no simulation state (it was saved with "
                    "include_state=False)",
                    attr="include_state",
                    obj=self,
                )
            live = state_tensors(module)
            state = _matched(
                payload["state"],
                {name: tensor for name, (_, tensor) in live.items()},
                "state tensors",
                path,
                batch=True,
            )
            n_steps = payload.get("n_steps")
            if not isinstance(n_steps, int) or n_steps < 0:
                raise ValidationError(
                    f"{path}: invalid n_steps {n_steps!r}", attr="path", obj=self
                )
        verify_checksum(payload, path)
        # everything checked: now change the module
        with torch.no_grad():
            for name, value in params.items():
                target = targets[name]
                target.copy_(value.to(device=target.device, dtype=target.dtype))
        if state is not None:
            new_state = {}
            for name, value in state.items():
                base, current = live[name]
                new_state[base] = value.to(device=current.device, dtype=current.dtype)
            module.load_state(new_state)
            module.n_steps = n_steps
            module._fresh = False

    def get_nengo_params(
        self, nengo_objs: Any, as_dict: bool = False
    ) -> dict[str, Any] | list[dict[str, Any]] | dict[object, dict[str, Any]]:
        """Trained values as arguments for Nengo objects.

        Parameters
        ----------
        nengo_objs : Ensemble or Connection, or a list of them
            Objects of the simulated network.
        as_dict : bool
            Return a dict keyed by each object's label (the object's key in
            ``sim.module``, e.g. ``"connection_3"``, if it has none) instead of a
            list in the order given. Keys must be unique.

        Returns
        -------
        list of dict, or dict
            One dict per object (a single dict for a single object), to pass as
            keyword arguments when creating an equivalent object, e.g.
            ``nengo.Ensemble(n, d, **params)``; Nengo then builds exactly the
            trained values:

            - Ensemble (not Direct): ``encoders`` (unscaled, such that Nengo's
              ``encoders * gain / radius`` equals the trained scaled encoders),
              ``normalize_encoders=False``, ``gain`` (the built gain), ``bias``
              (trained), and ``max_rates``/``intercepts`` at their defaults (Nengo
              ignores them when gain and bias are given). A Direct ensemble gives
              ``{}``.
            - Connection from an Ensemble (decoded): ``solver`` (a
              `nengo.solvers.NoSolver` holding the trained weights, which include
              the transform; a `.FullWeightsSolver` for a weight solver),
              ``function`` (a `.ZeroFunction` of the output size: only its size
              matters) and ``transform=None``. The connection must keep its
              ``pre``/``post`` (and their slices).
            - Other connections: ``transform``: the trained weights as an array
              for Dense transforms (``None`` for connections without weights),
              or a `nengo.Sparse`/`nengo.Convolution`/`nengo.ConvolutionTranspose`
              with the trained values as ``init``.
        """
        self._params_check_open("get parameters from")
        return freeze.get_nengo_params(self, nengo_objs, as_dict=as_dict)

    def freeze_params(self, objs: Any) -> None:
        """Write the trained values back into Nengo objects.

        Afterwards ``nengo.Simulator`` (or a new ``snntorch_nengo.Simulator``) on
        the network simulates with the trained parameters. Each Ensemble and
        Connection gets the values of `get_nengo_params`: ``encoders``,
        ``normalize_encoders=False``, ``gain``, ``bias``, default ``max_rates`` and
        ``intercepts``; ``function``, ``transform`` and ``solver``.

        Parameters
        ----------
        objs : Network, Ensemble or Connection, or a list of them
            Networks freeze all their Ensembles and Connections (subnetworks
            included); they must be the simulated network or its subnetworks.

        Raises
        ------
        nengo.exceptions.ValidationError
            For objects that are not part of the simulated network, other object
            types, or values Nengo cannot express. Either every object is updated
            or none is.
        """
        self._params_check_open("freeze parameters of")
        freeze.freeze_params(self, objs)

    def _params_check_open(self, action):
        check = getattr(self, "_check_open", None)
        if check is not None:
            check(action)


# -- naming the tensors


def stable_name(name: str) -> str:
    """``name`` without the memory addresses of unlabelled objects.

    Attributes named after a Python keyword carry a trailing ``_`` (``in_``,
    `build.base.attribute_name`); files name them without it, as files saved
    before that rename do."""
    name = re.sub(r"0x[0-9a-fA-F]+", "0x", name)
    return ".".join(
        part[:-1] if part.endswith("_") and keyword.iskeyword(part[:-1]) else part
        for part in name.split(".")
    )


def _stable_names(items):
    out = {}
    for name, value in items:
        key = candidate = stable_name(name)
        i = 1
        while candidate in out:
            candidate, i = f"{key}#{i}", i + 1
        out[candidate] = value
    return out


def param_tensors(module: nn.Module) -> dict[str, torch.Tensor]:
    """``{name: live tensor}`` for every entry of ``module.state_dict()``."""
    return _stable_names(module.state_dict(keep_vars=True).items())


def trained_tensors(module: nn.Module) -> dict[str, torch.Tensor]:
    """``{name: live tensor}`` for what training changes: the `param_tensors`
    less the built constants (buffers that Nengo signals became).

    That is the module's parameters and the persistent buffers of torch modules
    inside it (a TensorNode's ``BatchNorm`` statistics, say), in module order.
    """
    constants = set()
    for path, child in module.named_modules():
        if isinstance(child, NengoObjectModule):
            prefix = f"{path}." if path else ""
            constants.update(
                prefix + name
                for name in child.signal_names.values()
                if name in child._buffers
            )
    items = module.state_dict(keep_vars=True).items()
    named = _stable_names(items)
    # `_stable_names` keeps the order and count of ``items``
    return {
        stable: tensor
        for (raw, _), (stable, tensor) in zip(items, named.items())
        if raw not in constants
    }


def state_tensors(module: nn.Module) -> dict[str, tuple[Signal, torch.Tensor]]:
    """``{name: (base signal, live tensor)}`` for the simulation state."""
    paths = {child: path for path, child in module.named_modules()}
    dynamic = module.engine.module_layout.dynamic
    items = []
    for base, owner in module._slots.items():  # build order: deterministic
        if base in dynamic:
            path = paths[owner]
            name = owner.signal_names[base]
            full = f"{path}.{name}" if path else name
            items.append((full, (base, owner.signal(base))))
    return _stable_names(items)


def _stored(tensor):
    return tensor.detach().to("cpu", copy=True).contiguous()


# -- the network's structure


def fingerprint(module: nn.Module) -> dict[str, Any]:
    """The structure of the simulated network: its objects, in build order.

    Kinds, types, labels and sizes of Ensembles, Nodes, Connections (what they
    connect, learning rules, and the transform type of connections that do not
    decode) and Probes. It does not change when `freeze_params` writes trained
    values into the network.
    """
    keys = {}
    for kind in KINDS:
        for key, child in getattr(module, kind).items():
            keys[child.obj] = f"{kind}.{key}"

    def ref(obj):
        if isinstance(obj, nengo.base.ObjView):
            return ref(obj.obj)
        if isinstance(obj, nengo.ensemble.Neurons):
            return ref(obj.ensemble) + ".neurons"
        if isinstance(obj, nengo.connection.LearningRule):
            return ref(obj.connection) + ".learning_rule"
        return keys.get(obj, type(obj).__name__)

    objects = []
    for kind in KINDS:
        for key, child in getattr(module, kind).items():
            obj = child.obj
            entry = [kind, key, type(obj).__name__, _label(obj)]
            if isinstance(obj, nengo.Ensemble):
                entry += [obj.n_neurons, obj.dimensions, type(obj.neuron_type).__name__]
            elif isinstance(obj, nengo.Node):
                entry += [obj.size_in, obj.size_out]
            elif isinstance(obj, nengo.Connection):
                rules = obj.learning_rule_type
                if rules is None:
                    rules = []
                elif isinstance(rules, dict):
                    rules = [rules[k] for k in sorted(rules)]
                elif not isinstance(rules, (list, tuple)):
                    rules = [rules]
                pre = obj.pre_obj
                decoded = isinstance(pre, nengo.Ensemble) and not isinstance(
                    pre.neuron_type, nengo.Direct
                )
                entry += [
                    ref(pre),
                    ref(obj.post_obj),
                    obj.size_in,
                    obj.size_out,
                    # a decoded connection's weights include its function and
                    # transform (freeze_params replaces them); otherwise the
                    # transform type decides what the weights are
                    "decoded" if decoded else type(obj.transform).__name__,
                    [type(r).__name__ for r in rules],
                ]
            elif isinstance(obj, nengo.Probe):
                entry += [ref(obj.target), str(obj.attr), obj.size_in]
            objects.append([_plain(v) for v in entry])
    return {"objects": objects}


def _label(obj):
    label = getattr(obj, "label", None)
    return None if label is None else str(label)


def _plain(value):
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def _describe(entry):
    kind, key, typename, label = entry[:4]
    where = f"{typename} {key!r}" + ("" if label is None else f" (label {label!r})")
    return f"{where} {entry[4:]}" if len(entry) > 4 else where


def _check_fingerprint(saved, current, path):
    if saved == current:
        return
    raise ValidationError(
        f"{path} was saved from a different network{_difference(saved, current)}",
        attr="path",
    )


def _difference(saved, current):
    """``"; object i is ... in the file but ... in this network"``, or ``""``."""
    if saved == current:
        return ""
    try:
        old, new = list(saved["objects"]), list(current["objects"])
    except (TypeError, KeyError):
        return ""
    for i, (a, b) in enumerate(zip(old, new)):
        if a != b:
            return (
                f"; object {i} is {_describe(a)} in the file but {_describe(b)} "
                "in this network"
            )
    return (
        f"; the file has {len(old)} objects (Ensembles, Nodes, Connections, "
        f"Probes), this network {len(new)}"
    )


# -- reading and writing files


def read_params_file(path: str | os.PathLike) -> dict[str, Any]:
    """The payload of a parameter file, checked for format and version."""
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except (FileNotFoundError, IsADirectoryError, PermissionError):
        raise
    except Exception as e:
        raise ValidationError(
            f"{path} is not a parameter file saved by save_params ({e})", attr="path"
        ) from e
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise ValidationError(
            f"{path} is not a parameter file saved by save_params", attr="path"
        )
    if payload.get("version") not in VERSIONS:
        raise ValidationError(
            f"{path} has format version {payload.get('version')!r}; this version "
            f"reads versions {', '.join(map(str, VERSIONS))}",
            attr="path",
        )
    for key in ("params", "fingerprint"):
        if not isinstance(payload.get(key), dict):
            raise ValidationError(f"{path}: its {key!r} entry is invalid", attr="path")
    return payload


def verify_checksum(payload: dict[str, Any], path: str | os.PathLike) -> None:
    """Raise if ``payload``'s tensors do not match its stored checksum.

    Called after the structural checks, which name missing or mis-shaped
    tensors more helpfully; files without a checksum pass.
    """
    if "checksum" not in payload:
        return
    try:
        actual = checksum(payload)
    except Exception as e:  # noqa: BLE001  # malformed entries: same verdict
        actual = f"unreadable ({e})"
    if actual != payload["checksum"]:
        raise ValidationError(
            f"{path} is corrupted: its tensors do not match the checksum stored "
            "when it was saved",
            attr="path",
        )


def checksum(payload: dict[str, Any]) -> str:
    """sha256 over the names, dtypes, shapes and bytes of params and state."""
    digest = hashlib.sha256()
    for section in ("params", "state"):
        tensors = payload.get(section) or {}
        for name in sorted(tensors):
            tensor = tensors[name]
            digest.update(f"{section}/{name}/{tensor.dtype}/{tuple(tensor.shape)}".encode())
            digest.update(tensor.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy().tobytes())
    digest.update(repr(payload.get("n_steps")).encode())
    return digest.hexdigest()


def _names(names):
    names = sorted(names)
    shown = ", ".join(names[:_LIST_MAX])
    if len(names) > _LIST_MAX:
        shown += f" and {len(names) - _LIST_MAX} more"
    return shown


def _kind(tensor):
    if tensor.is_complex():
        return "complex"
    if tensor.is_floating_point():
        return "float"
    return "bool" if tensor.dtype == torch.bool else "integer"



def _mismatch(name, value, target):
    """How a saved tensor differs from the one it would load into (None if it fits)."""
    if tuple(value.shape) != tuple(target.shape):
        return f"{name} (shape {tuple(value.shape)} in the file, {tuple(target.shape)} here)"
    if _kind(value) != _kind(target):
        return f"{name} ({value.dtype} in the file, {target.dtype} here)"
    return None

def _matched(saved, targets, what, path, batch):
    """The saved tensors, checked against the live ones (names, shapes, kinds)."""
    if not isinstance(saved, dict):
        raise ValidationError(f"{path}: its {what} are invalid", attr="path")
    problems = []
    missing = set(targets) - set(saved)
    unexpected = set(saved) - set(targets)
    if missing:
        problems.append(f"missing {what}: {_names(missing)}")
    if unexpected:
        problems.append(f"unexpected {what}: {_names(unexpected)}")
    bad = []
    for name in sorted(set(saved) & set(targets)):
        value, target = saved[name], targets[name]
        if not torch.is_tensor(value):
            bad.append(f"{name} (not a tensor)")
        elif (mismatch := _mismatch(name, value, target)) is not None:
            bad.append(mismatch)
    if bad:
        problems.append(f"mis-shaped {what}: {_names(bad)}")
        if batch:
            problems.append(
                "(state tensors have a leading minibatch dimension: load the state "
                "into a simulator with the same minibatch size)"
            )
    if problems:
        raise ValidationError(
            f"{path} does not match this network: " + "; ".join(problems), attr="path"
        )
    return saved


def _matched_trainable(payload, targets, module, path):
    """A version-2 file's tensors, checked against this network's trainable ones."""
    listed = payload.get("trainable")
    saved = payload["params"]
    try:
        listed = {str(name): tuple(int(n) for n in shape) for name, shape in listed}
    except (TypeError, ValueError) as e:
        raise ValidationError(
            f"{path}: its 'trainable' entry is invalid ({e})", attr="path"
        ) from e
    if set(listed) != set(saved) or any(
        not torch.is_tensor(saved[name]) or tuple(saved[name].shape) != shape
        for name, shape in listed.items()
    ):
        raise ValidationError(
            f"{path} is corrupted: its tensors are not the trainable parameters it "
            "lists",
            attr="path",
        )
    problems = []
    missing = [name for name in targets if name not in listed]
    extra = [name for name in listed if name not in targets]
    if missing:
        problems.append(
            f"trainable here but not in the file: {_names(missing)}"
        )
    if extra:
        # a constant here (configured trainable=False), or not here at all
        everything = param_tensors(module)
        constant = [name for name in extra if name in everything]
        others = [name for name in extra if name not in everything]
        if others:
            problems.append(f"in the file but not in this network: {_names(others)}")
        if constant:
            problems.append(
                "in the file but not trainable here (configured trainable=False?): "
                + _names(constant)
            )
    bad = []
    for name in listed:
        if name not in targets:
            continue
        mismatch = _mismatch(name, saved[name], targets[name])
        if mismatch:
            bad.append(mismatch)
    if bad:
        problems.append(f"with another shape or type: {_names(bad)}")
    if problems:
        # the first object that differs usually says why
        where = _difference(payload["fingerprint"], fingerprint(module))
        raise ValidationError(
            f"{path} was saved from a different network: its trainable parameters "
            "do not match this network's: " + "; ".join(problems) + where,
            attr="path",
        )
    return saved


def atomic_save(payload: dict[str, Any], path: str | os.PathLike) -> None:
    """`torch.save` to ``path`` through a temporary file in the same folder."""
    path = os.fspath(path)
    validation.check_save_path(path)
    # a symlink stays a link: the file it points to gets the new parameters
    path = os.path.realpath(path)
    folder = os.path.dirname(path)
    prefix = f".{os.path.basename(path)}."
    # temporaries of this target left by a save that was killed (kill -9 runs
    # no cleanup): nothing else writes files with this name pattern
    pattern = os.path.join(glob.escape(folder), glob.escape(prefix) + "*.tmp")
    for stale in glob.glob(pattern):
        try:
            os.unlink(stale)
        except OSError:
            pass
    fd, tmp = tempfile.mkstemp(prefix=prefix, suffix=".tmp", dir=folder)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(payload, f)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, _file_mode(path))
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def _file_mode(path):
    """The existing file's permissions, else what a new file would get."""
    try:
        return os.stat(path).st_mode & 0o7777
    except OSError:
        umask = os.umask(0)
        os.umask(umask)
        return 0o666 & ~umask
