"""Torch models as native Nengo networks: `Converter` (NengoDL's, for torch).

See ``docs/converter.md``.
"""

from .converter import Converter, Endpoints
from .values import Bias, NotConvertible, Scale, Term, Value

__all__ = ["Converter", "Endpoints", "NotConvertible", "Value", "Term", "Bias", "Scale"]
