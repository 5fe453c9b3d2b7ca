"""snntorch_nengo: Nengo networks simulated, embedded and trained in PyTorch."""

from .module import NengoModule
from .simulator import Simulator
from . import dists
from .version import version as __version__

__all__ = ["NengoModule", "Simulator", "dists", "__version__"]
