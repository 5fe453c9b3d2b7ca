"""NengoDL-style settings stored in a Nengo network's config.

``configure_settings(...)`` is called inside a ``with net:`` block. Settings apply
to the network being built (and its subnetworks, unless they override them).
``trainable`` is also a per-object parameter: ``net.config[ens].trainable = False``.
"""

from __future__ import annotations

import logging
import numbers
import warnings
from collections.abc import Iterable
from typing import Any

import nengo
import numpy as np
import torch
from nengo.exceptions import ConfigError, ValidationError
from nengo.params import BoolParam, Parameter
from nengo.rc import RC_DEFAULTS

from .neurons.surrogates import get_surrogate
from .utils import torch_dtype
from .validation import check_dtype

SETTINGS = {
    # name: (default, description)
    "trainable": (None, "per-object trainability (None: everything trains)"),
    "stateful": (True, "keep simulation state between predict/fit calls"),
    "keep_history": (True, "probes keep their whole history (else the last value)"),
    "inference_only": (False, "build for inference only (no gradients, no fit)"),
    "lif_smoothing": (None, "train LIF through SoftLIFRate with this smoothing"),
    "dtype": (
        None,
        "float type of the simulation (default float32, as NengoDL; an nengorc "
        "section [snntorch_nengo] dtype: float64 changes the default; an explicit "
        "dtype= wins)",
    ),
    "learning_phase": (None, "force training (True) or inference (False) behaviour"),
    "windowed": (
        True,
        "run feed-forward models over the whole window at once, operator by "
        "operator, instead of step by step (same results; see engine/window.py)",
    ),
    "in_place": (
        True,
        "run without autograd (run_steps, predict) as in-place instructions on "
        "fixed buffers, in C++ when built (same results; see engine/program.py)",
    ),
    "check_finite": (
        True,
        "reject NaN and infinite values in inputs and targets (False lets them "
        "through; nan_mse targets may always hold NaN)",
    ),
    "surrogate": (
        None,
        "train spiking neurons with real spikes and this surrogate gradient "
        "(a name such as 'fast_sigmoid', or a training.surrogates.Surrogate)",
    ),
}

# NengoDL settings that tune how TensorFlow builds its graph. There is no such
# graph here (torch runs eagerly; see docs/coming_from_nengodl.md), so they are
# accepted, so that NengoDL scripts run unchanged, and have no effect.
IGNORED_SETTINGS = {
    "use_loop": "runs unroll no TensorFlow while-loop here",
    "planner": "operators are scheduled by engine/schedule.py",
    "sorter": "signals are laid out by engine/signals.py",
    "simplifications": "nengo's optimizer merges operators (Simulator(optimize=))",
}

logger = logging.getLogger(__name__)
_noted = set()


def note_ignored(names: Iterable[str], where: str) -> None:
    """Log once per process that NengoDL-only arguments ``names`` have no effect."""
    new = [name for name in names if name not in _noted]
    if new:
        _noted.update(new)
        logger.info(
            "%s(%s): accepted for NengoDL compatibility; no effect in snntorch_nengo",
            where,
            ", ".join(new),
        )

# old setting names, still accepted (with a DeprecationWarning) as the new ones
DEPRECATED_SETTINGS = {"time_batched": "windowed"}

TRAINABLE_TYPES = (nengo.Ensemble, nengo.Connection, nengo.Node, nengo.Network)


def configure_settings(**settings: Any) -> None:
    """Set simulation/training settings on the network in the current context.

    Parameters
    ----------
    trainable : None or bool
        Adds a ``trainable`` parameter to Ensembles, Connections, Nodes and
        Networks (``net.config[obj].trainable = False`` freezes ``obj``). The value
        given becomes the network-wide default (None means trainable).
    stateful, keep_history, inference_only, lif_smoothing, dtype, learning_phase,
    windowed, in_place, surrogate, check_finite
        See `SETTINGS`. ``time_batched`` is the deprecated name of ``windowed``.
    use_loop, planner, sorter, simplifications
        NengoDL's TensorFlow graph options: accepted, no effect (`IGNORED_SETTINGS`).
    """
    if len(nengo.Network.context) == 0:
        raise ConfigError(
            "configure_settings must be called within a Network context "
            "(`with net: configure_settings(...)`)"
        )
    note_ignored([n for n in settings if n in IGNORED_SETTINGS], "configure_settings")
    settings = {
        _current_name(k): v for k, v in settings.items() if k not in IGNORED_SETTINGS
    }
    for name, value in settings.items():
        if name not in SETTINGS:
            raise ConfigError(
                f"'{name}' is not a setting; settings are {sorted(SETTINGS)}"
            )
        # every value is checked before any is stored: a bad call changes nothing
        settings[name] = check_setting(name, value)
    config = nengo.Network.context[-1].config
    for obj_type in (nengo.Network,) + TRAINABLE_TYPES:
        if obj_type not in config.params:
            config.configures(obj_type)
    for name, value in settings.items():
        if name == "trainable":
            for obj_type in TRAINABLE_TYPES:
                params = config[obj_type]
                if "trainable" not in params._extra_params:
                    params.set_param(
                        "trainable", BoolParam("trainable", default=None, optional=True)
                    )
            config[nengo.Network].trainable = value
            continue
        params = config[nengo.Network]
        key = f"snntorch_{name}"
        if key not in params._extra_params:
            params.set_param(key, SettingParam(key, name))
        setattr(params, key, value)


class SettingParam(Parameter):
    """A setting in a network's config; values are checked as they are set.

    So ``net.config[nengo.Network].snntorch_<name> = value`` is checked just as
    `configure_settings` is.
    """

    def __init__(self, key: str, setting: str) -> None:
        super().__init__(key, default=None, optional=True)
        self.setting = setting

    def coerce(self, instance: object, value: Any) -> Any:
        value = super().coerce(instance, value)
        return check_setting(self.setting, value)


def _setting_error(name, value, accepted):
    return ValidationError(
        f"configure_settings({name}={value!r}): {name} must be {accepted}, got "
        f"{value!r} (type {type(value).__name__})",
        attr=name,
    )


def _check_bool(name, value, accepted="True or False"):
    # strings such as "False" are truthy, and 0/1 hide typos: only real booleans
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    raise _setting_error(name, value, accepted)


def _check_lif_smoothing(name, value):
    accepted = "None (train LIF as LIFRate) or a number >= 0 (SoftLIFRate's sigma)"
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise _setting_error(name, value, accepted)
    if not np.isfinite(value) or value < 0:
        raise _setting_error(name, value, accepted)
    return float(value)


def _check_dtype(name, value):
    try:
        return check_dtype(value)
    except ValidationError as e:
        raise ValidationError(
            f"configure_settings({name}={value!r}): {e.args[0]}", attr=name
        ) from None


def _check_surrogate(name, value):
    try:
        get_surrogate(value)
    except ValidationError as e:
        raise ValidationError(
            f"configure_settings({name}={value!r}): {e.args[0]}", attr=name
        ) from None
    return value


# how each setting's value is checked (None always means "the default")
_CHECKS = {
    "trainable": lambda n, v: _check_bool(
        n, v, "None (everything trains), True or False"
    ),
    "stateful": _check_bool,
    "keep_history": _check_bool,
    "inference_only": _check_bool,
    "lif_smoothing": _check_lif_smoothing,
    "dtype": _check_dtype,
    "learning_phase": lambda n, v: _check_bool(
        n, v, "None (follow train()/eval()), True (training) or False (inference)"
    ),
    "windowed": _check_bool,
    "in_place": _check_bool,
    "check_finite": _check_bool,
    "surrogate": _check_surrogate,
}


def check_setting(name: str, value: Any) -> Any:
    """``value`` checked (and normalised) for setting ``name``.

    Raises a `ValidationError` naming the setting and the values it accepts.
    """
    if name not in SETTINGS:
        raise ConfigError(f"'{name}' is not a setting; settings are {sorted(SETTINGS)}")
    if value is None:
        return None
    return _CHECKS[name](name, value)


# NengoDL's default precision. Nengo's own `rc` float_dtype (float64 unless a
# file says otherwise) is not used: it cannot tell an explicit choice from its
# default, and NengoDL users expect float32.
DEFAULT_DTYPE = "float32"


def default_dtype(network: nengo.Network | None = None) -> np.dtype | str:
    """The float type a simulation gets without ``dtype=``.

    In order: the network's ``configure_settings(dtype=)``; nengo's own
    ``rc["precision"]["bits"]`` when it is not nengo's default 64 (a choice made
    for nengo, which nengo.Simulator follows too); an nengorc file's
    ``[snntorch_nengo] dtype`` (a project-wide default; nengo reads nengorc from
    the working directory and the user's config folders); else float32.
    """
    dtype = get_setting(network, "dtype") if network is not None else None
    if dtype is None:
        bits = nengo.rc.get("precision", "bits")
        if str(bits) != str(RC_DEFAULTS["precision"]["bits"]):
            return nengo.rc.float_dtype
        dtype = nengo.rc.get("snntorch_nengo", "dtype", fallback=None)
        if dtype is not None:
            try:
                check_dtype(dtype)
            except ValidationError as e:
                raise ValidationError(
                    f"nengorc [snntorch_nengo] dtype: {dtype!r}: {e.args[0]}", attr="dtype"
                ) from None
    return dtype or DEFAULT_DTYPE


def get_setting(network: nengo.Network | None, name: str, default: Any = None) -> Any:
    """A setting from ``network``'s config (``default`` when it was not set)."""
    name = _current_name(name)
    if name not in SETTINGS:
        raise ValidationError(f"unknown setting '{name}'", attr=name)
    if network is None or nengo.Network not in network.config.params:
        return default
    params = network.config[nengo.Network]
    key = "trainable" if name == "trainable" else f"snntorch_{name}"
    value = getattr(params, key, None) if key in params._extra_params else None
    return default if value is None else value


def _current_name(name):
    """``name``, or the setting that replaced it (with a DeprecationWarning)."""
    if name in DEPRECATED_SETTINGS:
        new = DEPRECATED_SETTINGS[name]
        warnings.warn(
            f"the setting '{name}' is now called '{new}'", DeprecationWarning,
            stacklevel=3,
        )
        return new
    return name


def is_trainable(network: nengo.Network | None, obj: object) -> bool:
    """Whether ``obj``'s parameters train.

    The object's own setting wins (looked up from its innermost network out),
    then the setting of each enclosing subnetwork, then the network-wide default
    given to `configure_settings`; everything trains when nothing is set.
    """
    if network is None:
        return True
    path = _path_to(network, obj) or [network]
    for net in reversed(path):
        value = _lookup(net.config, obj)
        if value is not None:
            return bool(value)
    for parent, child in reversed(list(zip(path[:-1], path[1:]))):
        value = _lookup(parent.config, child)
        if value is not None:
            return bool(value)
    for net in reversed(path):
        value = _lookup(net.config, nengo.Network)
        if value is not None:
            return bool(value)
    return True


def _lookup(config, key):
    try:
        params = config[key]
    except ConfigError:
        return None
    if "trainable" not in getattr(params, "_extra_params", ()) and not hasattr(
        params, "trainable"
    ):
        return None
    try:
        return getattr(params, "trainable", None)
    except (ConfigError, AttributeError):
        return None


def _path_to(network, obj):
    """Networks from ``network`` down to the one that directly holds ``obj``."""
    direct = network.ensembles + network.nodes + network.connections + network.networks
    if obj in direct:
        return [network]
    for sub in network.networks:
        path = _path_to(sub, obj)
        if path:
            return [network] + path
    return None


def torch_float(dtype: torch.dtype | np.dtype | str | None) -> torch.dtype:
    if dtype is None:
        return torch.float32
    return torch_dtype(dtype)
