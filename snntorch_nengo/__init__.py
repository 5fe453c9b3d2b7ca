"""snntorch_nengo: Nengo networks simulated, embedded and trained in PyTorch."""

from .module import NengoModule
from .simulator import Simulator
from .tensor_node import Layer, TensorNode
from . import dists
from .config import configure_settings
from .training import losses, metrics
from .training.lightning import NengoLightningModule
from .version import version as __version__

__all__ = [
    "NengoLightningModule",
    "NengoModule",
    "Simulator",
    "configure_settings",
    "dists",
    "losses",
    "metrics",
    "__version__",
]
__all__ += ["Layer", "TensorNode"]
