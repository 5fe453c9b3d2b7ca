"""Surrogate gradients: moved to `snntorch_nengo.neurons.surrogates` (neuron math).

Kept so that ``from snntorch_nengo.training.surrogates import ...`` still works.
"""

from snntorch_nengo.neurons.surrogates import *  # noqa: F401, F403
from snntorch_nengo.neurons.surrogates import __all__  # noqa: F401
