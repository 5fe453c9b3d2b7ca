"""snntorch_nengo: Nengo networks simulated, embedded and trained in PyTorch."""

from .module import NengoModule
from .simulator import Simulator
from .streaming import ProbeStream
from .tensor_node import Layer, TensorNode
from . import dists
from .config import configure_settings
from .converter import Converter
from .neurons import LeakyReLU, SoftLIFRate, SpikingLeakyReLU
from .training import losses
from .version import version as __version__
from .sysinfo import info

__all__ = [
    "NengoLightningModule",
    "NengoModule",
    "ProbeStream",
    "Simulator",
    "configure_settings",
    "dists",
    "info",
    "losses",
    "metrics",
    "__version__",
]
__all__ += ["Converter", "Layer", "TensorNode", "LeakyReLU", "SoftLIFRate", "SpikingLeakyReLU"]


def __getattr__(name):
    # lightning takes seconds to import: load it when training is asked for
    if name == "NengoLightningModule":
        from .training.lightning import NengoLightningModule

        return NengoLightningModule
    if name == "metrics":
        from .training import metrics

        return metrics
    raise AttributeError(f"module 'snntorch_nengo' has no attribute '{name}'")
