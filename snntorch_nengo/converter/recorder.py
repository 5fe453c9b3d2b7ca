"""Running a traced torch model once and keeping every node's value.

The converter reads layer shapes from it; `verify` reads the model's outputs.
"""

from __future__ import annotations

from typing import Any

from torch import fx, nn


class Recorder(fx.Interpreter):
    """Runs the traced model once, recording every node's value."""

    def __init__(self, module: nn.Module) -> None:
        super().__init__(module)
        self.values = {}

    def run_node(self, n: fx.Node) -> Any:
        result = super().run_node(n)
        self.values[n] = result
        return result
